/* Per-coordinate weightings (J): they need the full per-task gradients of the shared
 * parameters (row t of J = d loss_t / d shared, float, T x P) and, except ExcessMTL, write
 * the combined shared gradient themselves.
 *
 *   graddrop   GradDrop (Chen et al., NeurIPS 2020)
 *   gradvac    Gradient Vaccine (Wang et al., ICLR 2021)
 *   moco       MoCo (Fernando et al., ICLR 2023)
 *   db_mtl     DB-MTL, dual balancing (Lin et al., 2023)
 *   excessmtl  ExcessMTL (He et al., ICML 2024)
 *
 * The weight returned for task t is what its head's gradient is multiplied by: 1 for
 * GradDrop and GradVac (their shared update is a masked or corrected sum; heads are not in
 * conflict), MoCo's lambda_t, DB-MTL's 1/(L_t + 1e-8) (the heads follow the log-loss
 * gradients, as in LibMTL; the magnitude balance concerns the shared parameters only) and
 * ExcessMTL's weights. None of these works in representation mode. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "kernels/gemm.h"
#include "layers/layer.h"
#include "weighting/weighting_internal.h"

static size_t rng_state(const mtl_weighting *w, int T)
{
    (void)w;
    (void)T;
    return 8;
}

/* out[b:e] = sum_a coef_a J[idx_a, b:e] (one GEMM; the rows of inactive tasks get 0) */
static void combine_rows(mtl_weighting *w, const mtli_wctx *c, const double *coef, size_t b,
                         size_t e)
{
    for (int t = 0; t < w->T; t++)
        w->fw[t] = 0.0f;
    for (int a = 0; a < c->k; a++)
        w->fw[c->idx[a]] = (float)coef[a];
    mtli_gemm(false, false, 1, e - b, (size_t)w->T, 1.0f, w->fw, (size_t)w->T, c->J + b, c->P,
              0.0f, c->shared_out + b, e - b);
}

/* ---- vectorised per-coordinate kernels -------------------------------------------------------
 * Reductions over the P shared coordinates run in CL independent double lanes (the compiler
 * widens them; a single running sum would be serial), combined at the end. Per-coordinate
 * work runs in blocks of CB coordinates, tasks outer and coordinates inner, so that each
 * inner loop is a straight, branch-free loop over contiguous memory. */
#define CL 16
#define CB 512

static double lanes_sum(const double *acc)
{
    double s = 0.0;
    for (int l = 0; l < CL; l++)
        s += acc[l];
    return s;
}

/* sum_p g[p]^2 */
MTLI_VECTOR_CLONES
static double sumsq_f(const float *g, size_t n)
{
    double acc[CL] = {0};
    size_t p = 0;
    for (; p + CL <= n; p += CL)
        for (int l = 0; l < CL; l++)
            acc[l] += (double)g[p + l] * g[p + l];
    for (; p < n; p++)
        acc[0] += (double)g[p] * g[p];
    return lanes_sum(acc);
}

/* y <- y - bk (y - sc g) over n coordinates */
MTLI_VECTOR_CLONES
static void ema_toward(double *y, const float *g, size_t n, double bk, double sc)
{
    for (size_t p = 0; p < n; p++)
        y[p] -= bk * (y[p] - sc * (double)g[p]);
}

/* sum_p a[p] b[p] (double rows) */
MTLI_VECTOR_CLONES
static double dot_d(const double *a, const double *b, size_t n)
{
    double acc[CL] = {0};
    size_t p = 0;
    for (; p + CL <= n; p += CL)
        for (int l = 0; l < CL; l++)
            acc[l] += a[p + l] * b[p + l];
    for (; p < n; p++)
        acc[0] += a[p] * b[p];
    return lanes_sum(acc);
}

/* b <- h + bk (b - h), h = inv g; returns sum_p b[p]^2 */
MTLI_VECTOR_CLONES
static double dbmtl_row(double *b, const float *g, size_t n, double inv, double bk)
{
    double acc[CL] = {0};
    size_t p = 0;
    for (; p + CL <= n; p += CL)
        for (int l = 0; l < CL; l++) {
            double h = (double)g[p + l] * inv, v = h + bk * (b[p + l] - h);
            b[p + l] = v;
            acc[l] += v * v;
        }
    for (; p < n; p++) {
        double h = (double)g[p] * inv, v = h + bk * (b[p] - h);
        b[p] = v;
        acc[0] += v * v;
    }
    return lanes_sum(acc);
}

/* s += g^2; returns sum_p g[p]^2 / sqrt(s[p] + 1e-7) */
MTLI_VECTOR_CLONES
static double excess_row(double *s, const float *g, size_t n)
{
    double acc[CL] = {0};
    size_t p = 0;
    for (; p + CL <= n; p += CL)
        for (int l = 0; l < CL; l++) {
            double g2 = (double)g[p + l] * g[p + l], v = s[p + l] + g2;
            s[p + l] = v;
            acc[l] += g2 / sqrt(v + 1e-7);
        }
    for (; p < n; p++) {
        double g2 = (double)g[p] * g[p], v = s[p] + g2;
        s[p] = v;
        acc[0] += g2 / sqrt(v + 1e-7);
    }
    return lanes_sum(acc);
}

/* out[b + i] = sum_a coef[a] Y[idx[a]*P + b + i] for i < n <= CB (double rows) */
MTLI_VECTOR_CLONES
static void combine_d_block(const double *Y, size_t P, const int *idx, int k,
                            const double *coef, size_t b, size_t n, float *out)
{
    double o[CB];
    for (size_t i = 0; i < n; i++)
        o[i] = 0.0;
    for (int a = 0; a < k; a++) {
        const double *y = Y + (size_t)idx[a] * P + b, ca = coef[a];
        for (size_t i = 0; i < n; i++)
            o[i] += ca * y[i];
    }
    for (size_t i = 0; i < n; i++)
        out[b + i] = (float)o[i];
}

static void combine_d(const double *Y, size_t P, const int *idx, int k, const double *coef,
                      float *out)
{
    for (size_t b = 0; b < P; b += CB)
        combine_d_block(Y, P, idx, k, coef, b, P - b < CB ? P - b : CB, out);
}

/* n uniform doubles in [0, 1), the same draws in the same order as n calls of
 * mtli_rng_uniform_double (xoshiro256**, kept inline so the loop stays in registers) */
static void uniform_block(mtli_rng *r, double *u, size_t n)
{
    uint64_t s0 = r->s[0], s1 = r->s[1], s2 = r->s[2], s3 = r->s[3];
    for (size_t i = 0; i < n; i++) {
        uint64_t x = s1 * 5;
        x = ((x << 7) | (x >> 57)) * 9;
        uint64_t t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = (s3 << 45) | (s3 >> 19);
        u[i] = (double)(x >> 11) * 0x1.0p-53;
    }
    r->s[0] = s0;
    r->s[1] = s1;
    r->s[2] = s2;
    r->s[3] = s3;
}

/* GradDrop on coordinates [b, b + n), n <= CB, with the draws u[0..n) */
MTLI_VECTOR_CLONES
static void graddrop_block(const float *J, size_t P, const int *idx, int k, size_t b,
                           size_t n, const double *u, double leak, float *out)
{
    double s[CB], sa[CB], o[CB];
    for (size_t i = 0; i < n; i++)
        s[i] = sa[i] = o[i] = 0.0;
    for (int a = 0; a < k; a++) {
        const float *g = J + (size_t)idx[a] * P + b;
        for (size_t i = 0; i < n; i++) {
            double v = g[i];
            s[i] += v;
            sa[i] += fabs(v);
        }
    }
    for (size_t i = 0; i < n; i++) { /* s[i] <- purity (unused where sa is 0) */
        double d = sa[i] > 0.0 ? sa[i] : 1.0;
        s[i] = 0.5 * (1.0 + s[i] / d);
    }
    const double kept = leak + (1.0 - leak), dropped = leak;
    for (int a = 0; a < k; a++) {
        const float *g = J + (size_t)idx[a] * P + b;
        for (size_t i = 0; i < n; i++) {
            double v = g[i];
            bool keep = (s[i] > u[i] && v > 0.0) | (s[i] < u[i] && v < 0.0);
            o[i] += (keep ? kept : dropped) * v;
        }
    }
    for (size_t i = 0; i < n; i++)
        out[b + i] = sa[i] > 0.0 ? (float)o[i] : 0.0f;
}

/* ---- graddrop ------------------------------------------------------------------------------
 * Per coordinate: purity P = 1/2 (1 + sum_t g_t / sum_t |g_t|), U ~ uniform[0, 1); keep the
 * positive components if P > U, the negative ones if P < U; out = sum_t (leak_t + (1 - leak)
 * M_t) g_t with the scalar key "leak" (default 0). A coordinate where every gradient is 0
 * stays 0. The paper applies the mask to activation gradients; LibMTL supports only that
 * form, we apply it to the shared parameters' gradients (the J mode of this engine). */

static const mtli_wkey graddrop_keys[] = {MTLI_KD("leak", 0.0, 0.0, 1.0, false), MTLI_KSEED};
enum { GD_LEAK, GD_SEED };

static void graddrop_reset(mtl_weighting *w) { mtli_wrng_seed(w->ms, (uint64_t)mtli_wki(w, GD_SEED)); }

static mtl_status graddrop_on_set(mtl_weighting *w, int key)
{
    if (key == GD_SEED)
        graddrop_reset(w);
    return MTL_OK;
}

static mtl_status graddrop_apply(mtl_weighting *w, mtli_wctx *c)
{
    const size_t P = c->P;
    const double leak = mtli_wkd(w, GD_LEAK);
    mtli_rng r;
    mtli_wrng_load(w->ms, &r);
    double u[CB];
    for (size_t b = 0; b < P; b += CB) { /* one draw per coordinate, always, in order */
        size_t n = P - b < CB ? P - b : CB;
        uniform_block(&r, u, n);
        graddrop_block(c->J, P, c->idx, c->k, b, n, u, leak, c->shared_out);
    }
    mtli_wrng_store(w->ms, &r);
    c->wrote_shared = true;
    for (int a = 0; a < c->k; a++)
        c->w[a] = 1.0;
    return MTL_OK;
}

const mtli_wmethod mtli_w_graddrop = {
    .name = "graddrop", .needs = MTLI_NEED_J, .keys = graddrop_keys, .nkeys = 2,
    .state_size = rng_state, .reset = graddrop_reset, .apply = graddrop_apply,
    .on_set = graddrop_on_set,
};

/* ---- gradvac ---------------------------------------------------------------------------------
 * For each task i, in a random order of the other tasks j, and for each parameter group
 * (key "granularity": whole model, each trunk layer, or each parameter tensor; LibMTL's
 * GradVac_group_type 0/1/2), with rho = cos(g_i^pc, g_j) and the EMA target phi_ij:
 *     if rho < phi: g_i^pc += ||g_i^pc|| (phi sqrt(1-rho^2) - rho sqrt(1-phi^2))
 *                             / (||g_j|| sqrt(1-phi^2)) g_j
 *     phi_ij <- (1 - beta) phi_ij + beta rho          (key "beta", default 0.5)
 * The target is updated every time, as in the paper's Algorithm 1 (LibMTL updates it only
 * when the correction fires, which keeps it <= 0). Targets start at 0 and are part of the
 * state. As for PCGrad, each corrected gradient stays a combination of the original ones,
 * so each group runs on its T x T Gram (one SYRK) and the result is one GEMM per group. */

static const char *const gv_gran[] = {"whole", "layer", "matrix", NULL};
static const mtli_wkey gradvac_keys[] = {
    MTLI_KD("beta", 0.5, 0.0, 1.0, false),
    MTLI_KS("granularity", 0, gv_gran),
    MTLI_KSEED,
};
enum { GV_BETA, GV_GRAN, GV_SEED };

static int gv_ngroups(const mtl_weighting *w, const size_t **ends)
{
    int g = mtli_wks(w, GV_GRAN);
    if (g == 1 && w->nlayer_ends > 0) {
        *ends = w->layer_ends;
        return w->nlayer_ends;
    }
    if (g == 2 && w->ntensor_ends > 0) {
        *ends = w->tensor_ends;
        return w->ntensor_ends;
    }
    *ends = NULL;
    return 1;
}

static size_t gradvac_bound(const mtl_weighting *w, size_t P)
{
    (void)P;
    const size_t *ends;
    return (size_t)w->T * w->T * (size_t)gv_ngroups(w, &ends);
}

static void gradvac_reset(mtl_weighting *w) { mtli_wrng_seed(w->ms, (uint64_t)mtli_wki(w, GV_SEED)); }

static mtl_status gradvac_on_set(mtl_weighting *w, int key)
{
    if (key == GV_SEED)
        gradvac_reset(w);
    if (key == GV_GRAN)
        return mtli_weighting_rebind(w);
    return MTL_OK;
}

/* ws: orders k*k ints (as doubles), C k*k, G k*k, coef k */
static size_t gradvac_ws(int T) { return 3 * (size_t)T * T + (size_t)T; }

static mtl_status gradvac_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k, T = w->T;
    const double beta = mtli_wkd(w, GV_BETA);
    int *order = (int *)(void *)w->ws;
    double *C = w->ws + (size_t)T * T, *G = C + (size_t)T * T, *coef = G + (size_t)T * T;
    mtli_rng r;
    mtli_wrng_load(w->ms, &r);
    for (int i = 0; i < k; i++) { /* one random order of the others per task */
        int *o = order + (size_t)i * k, n = 0;
        for (int j = 0; j < k; j++)
            if (j != i)
                o[n++] = j;
        for (int m = n - 1; m > 0; m--) {
            int q = (int)mtli_rng_below(&r, (uint64_t)m + 1);
            int tmp = o[m];
            o[m] = o[q];
            o[q] = tmp;
        }
    }
    mtli_wrng_store(w->ms, &r);
    const size_t *ends;
    int ng = gv_ngroups(w, &ends);
    for (int g = 0; g < ng; g++) {
        size_t b = ends && g > 0 ? ends[g - 1] : 0, e = ends ? ends[g] : c->P;
        if (e == b)
            continue;
        double *phi = w->bs + (size_t)g * T * T;
        mtli_syrk_full((size_t)T, e - b, 1.0f, c->J + b, c->P, 0.0f, w->fG, (size_t)T);
        for (int a = 0; a < k; a++)
            for (int bb = 0; bb < k; bb++)
                G[(size_t)a * k + bb] = w->fG[(size_t)c->idx[a] * T + c->idx[bb]];
        memset(C, 0, (size_t)k * k * sizeof(double));
        for (int i = 0; i < k; i++)
            C[(size_t)i * k + i] = 1.0;
        for (int i = 0; i < k; i++) {
            double *Ci = C + (size_t)i * k;
            for (int q = 0; q < k - 1; q++) {
                int j = order[(size_t)i * k + q];
                double gjj = G[(size_t)j * k + j];
                double dot = 0.0, nn = 0.0;
                for (int m = 0; m < k; m++) {
                    dot += Ci[m] * G[(size_t)m * k + j];
                    double cm = 0.0;
                    for (int l = 0; l < k; l++)
                        cm += G[(size_t)m * k + l] * Ci[l];
                    nn += Ci[m] * cm;
                }
                double ni = sqrt(fmax(nn, 0.0)), nj = sqrt(fmax(gjj, 0.0));
                if (!(ni > 0.0 && nj > 0.0))
                    continue;
                double rho = dot / (ni * nj);
                rho = rho > 1.0 ? 1.0 : rho < -1.0 ? -1.0 : rho;
                double *ph = phi + (size_t)c->idx[i] * T + c->idx[j], t = *ph;
                double st = sqrt(fmax(1.0 - t * t, 0.0));
                if (rho < t && st > 0.0)
                    Ci[j] += ni * (t * sqrt(fmax(1.0 - rho * rho, 0.0)) - rho * st) / (nj * st);
                *ph = (1.0 - beta) * t + beta * rho;
            }
        }
        for (int m = 0; m < k; m++) {
            double s = 0.0;
            for (int i = 0; i < k; i++)
                s += C[(size_t)i * k + m];
            coef[m] = s;
        }
        combine_rows(w, c, coef, b, e);
    }
    c->wrote_shared = true;
    for (int a = 0; a < k; a++)
        c->w[a] = 1.0;
    return MTL_OK;
}

const mtli_wmethod mtli_w_gradvac = {
    .name = "gradvac", .needs = MTLI_NEED_J, .keys = gradvac_keys, .nkeys = 3,
    .state_size = rng_state, .bound_size = gradvac_bound, .ws_size = gradvac_ws,
    .reset = gradvac_reset, .apply = gradvac_apply, .on_set = gradvac_on_set,
};

/* ---- moco ------------------------------------------------------------------------------------
 * LibMTL's form of MoCo: each task gradient is rescaled to the norm of its loss,
 * h_t = g_t / (||g_t|| + 1e-8) L_t; tracked gradients y_t <- y_t - beta_k (y_t - h_t),
 * beta_k = beta / k^beta_sigma; lambda <- softmax(lambda - gamma_k (Y Y' + rho I) lambda),
 * gamma_k = gamma / k^gamma_sigma (the paper projects onto the simplex; LibMTL and we use a
 * softmax); shared update Y' lambda. Defaults (LibMTL): beta 0.5, beta_sigma 0.5, gamma 0.1,
 * gamma_sigma 0.5, rho 0. Only active tasks take part in a step (their y and lambda); the
 * weight of task t (its head's factor) is lambda_t. */

static const mtli_wkey moco_keys[] = {
    MTLI_KD("beta", 0.5, 0.0, 1.0, false),
    MTLI_KD("beta_sigma", 0.5, 0.0, 10.0, false),
    MTLI_KD("gamma", 0.1, 0.0, 1e6, false),
    MTLI_KD("gamma_sigma", 0.5, 0.0, 10.0, false),
    MTLI_KD("rho", 0.0, 0.0, 1e6, false),
};
enum { MC_BETA, MC_BETA_SIGMA, MC_GAMMA, MC_GAMMA_SIGMA, MC_RHO };

/* state: lambda[T]; bound: y[T*P] */
static size_t moco_state(const mtl_weighting *w, int T)
{
    (void)w;
    return (size_t)T;
}
static size_t moco_bound(const mtl_weighting *w, size_t P) { return (size_t)w->T * P; }
static size_t moco_ws(int T) { return (size_t)T * T + 3 * (size_t)T; }

static void moco_reset(mtl_weighting *w)
{
    for (int t = 0; t < w->T; t++)
        w->ms[t] = 1.0 / w->T;
}

static mtl_status moco_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k;
    const size_t P = c->P;
    double step = mtli_wsteps(w) + 1.0;
    double bk = mtli_wkd(w, MC_BETA) / pow(step, mtli_wkd(w, MC_BETA_SIGMA));
    double gk = mtli_wkd(w, MC_GAMMA) / pow(step, mtli_wkd(w, MC_GAMMA_SIGMA));
    double *lam = w->ms, *YY = w->ws, *scale = YY + (size_t)k * k, *nl = scale + k,
           *lk = nl + k;
    for (int a = 0; a < k; a++)
        scale[a] = c->L[a] / (sqrt(sumsq_f(c->J + (size_t)c->idx[a] * P, P)) + 1e-8);
    for (size_t i = 0; i < (size_t)k * k; i++)
        YY[i] = 0.0;
    for (size_t b = 0; b < P; b += CB) { /* update a block of every y, then its Gram part */
        size_t n = P - b < CB ? P - b : CB;
        for (int a = 0; a < k; a++)
            ema_toward(w->bs + (size_t)c->idx[a] * P + b, c->J + (size_t)c->idx[a] * P + b, n,
                       bk, scale[a]);
        for (int a = 0; a < k; a++)
            for (int q = a; q < k; q++)
                YY[(size_t)a * k + q] += dot_d(w->bs + (size_t)c->idx[a] * P + b,
                                               w->bs + (size_t)c->idx[q] * P + b, n);
    }
    for (int a = 0; a < k; a++)
        for (int q = 0; q < a; q++)
            YY[(size_t)a * k + q] = YY[(size_t)q * k + a];
    double rho = mtli_wkd(w, MC_RHO), mx = -INFINITY, z = 0.0;
    for (int a = 0; a < k; a++)
        lk[a] = lam[c->idx[a]];
    for (int a = 0; a < k; a++) {
        double s = rho * lk[a];
        for (int b = 0; b < k; b++)
            s += YY[(size_t)a * k + b] * lk[b];
        nl[a] = lk[a] - gk * s;
        mx = fmax(mx, nl[a]);
    }
    for (int a = 0; a < k; a++)
        z += nl[a] = exp(nl[a] - mx);
    for (int a = 0; a < k; a++)
        lam[c->idx[a]] = nl[a] / z;
    for (int a = 0; a < k; a++)
        lk[a] = lam[c->idx[a]];
    combine_d(w->bs, P, c->idx, k, lk, c->shared_out);
    c->wrote_shared = true;
    for (int a = 0; a < k; a++)
        c->w[a] = lam[c->idx[a]];
    return MTL_OK;
}

const mtli_wmethod mtli_w_moco = {
    .name = "moco", .needs = MTLI_NEED_J, .keys = moco_keys, .nkeys = 5,
    .state_size = moco_state, .bound_size = moco_bound, .ws_size = moco_ws,
    .reset = moco_reset, .apply = moco_apply,
};

/* ---- db_mtl ------------------------------------------------------------------------------------
 * Loss-scale balance: the gradients of log(L_t + 1e-8), h_t = g_t / (L_t + 1e-8).
 * Gradient-magnitude balance: buffers b_t <- h_t + beta_k (b_t - h_t), beta_k =
 * beta / k^beta_sigma (defaults 0.9 and 0.5, LibMTL's), and the update
 * sum_t (max_s ||b_s|| / (||b_t|| + 1e-8)) b_t. Weight of task t (its head's factor):
 * 1 / (L_t + 1e-8), the gradient of log(L_t + 1e-8). */

static const mtli_wkey dbmtl_keys[] = {
    MTLI_KD("beta", 0.9, 0.0, 1.0, false),
    MTLI_KD("beta_sigma", 0.5, 0.0, 10.0, false),
};
enum { DB_BETA, DB_BETA_SIGMA };

static size_t dbmtl_bound(const mtl_weighting *w, size_t P) { return (size_t)w->T * P; }
static size_t coord_ws_T(int T) { return (size_t)T; }

static mtl_status dbmtl_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k;
    const size_t P = c->P;
    double step = mtli_wsteps(w) + 1.0;
    double bk = mtli_wkd(w, DB_BETA) / pow(step, mtli_wkd(w, DB_BETA_SIGMA));
    double *nrm = w->ws, umax = 0.0;
    for (int a = 0; a < k; a++) {
        if (!(c->L[a] + 1e-8 > 0.0))
            return mtli_error(MTL_ERR_NUMERIC,
                              "weighting 'db_mtl': the loss of task %d is %g; DB-MTL balances "
                              "log losses, which needs losses > 0",
                              c->idx[a], c->L[a]);
    }
    for (int a = 0; a < k; a++) {
        const float *g = c->J + (size_t)c->idx[a] * P;
        double inv = 1.0 / (c->L[a] + 1e-8);
        double s = dbmtl_row(w->bs + (size_t)c->idx[a] * P, g, P, inv, bk);
        nrm[a] = sqrt(s);
        umax = fmax(umax, nrm[a]);
    }
    for (int a = 0; a < k; a++)
        nrm[a] = umax / (nrm[a] + 1e-8); /* a_t */
    combine_d(w->bs, P, c->idx, k, nrm, c->shared_out);
    c->wrote_shared = true;
    for (int a = 0; a < k; a++)
        c->w[a] = 1.0 / (c->L[a] + 1e-8);
    return MTL_OK;
}

const mtli_wmethod mtli_w_db_mtl = {
    .name = "db_mtl", .needs = MTLI_NEED_J, .keys = dbmtl_keys, .nkeys = 2,
    .bound_size = dbmtl_bound, .ws_size = coord_ws_T, .apply = dbmtl_apply,
};

/* ---- excessmtl -----------------------------------------------------------------------------------
 * Excess-risk estimate per task with an AdaGrad-style diagonal: s_t += g_t^2 (per
 * coordinate), e_t = sum_p g_t[p]^2 / sqrt(s_t[p] + 1e-7). The first step records e_t(0)
 * and keeps the weights; afterwards w_t <- w_t exp(step_size e_t / e_t(0)), renormalised to
 * sum T (key "robust_step_size", default 0.01). The update is the ordinary
 * sum_t w_t g_t with the new weights (no shared output is written). */

static const mtli_wkey excess_keys[] = {MTLI_KD("robust_step_size", 1e-2, 0.0, 1e6, false)};
enum { EX_STEP };

/* state: weights[T], e0[T] (0: not yet recorded); bound: s[T*P] */
static size_t excess_state(const mtl_weighting *w, int T)
{
    (void)w;
    return 2 * (size_t)T;
}
static size_t excess_bound(const mtl_weighting *w, size_t P) { return (size_t)w->T * P; }

static void excess_reset(mtl_weighting *w)
{
    for (int t = 0; t < w->T; t++)
        w->ms[t] = 1.0;
}

static mtl_status excess_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k, T = w->T;
    const size_t P = c->P;
    double *lw = w->ms, *e0 = lw + T, *e = w->ws;
    bool changed = false;
    for (int a = 0; a < k; a++) {
        const float *g = c->J + (size_t)c->idx[a] * P;
        double acc = excess_row(w->bs + (size_t)c->idx[a] * P, g, P);
        e[a] = acc;
    }
    for (int a = 0; a < k; a++) {
        int t = c->idx[a];
        if (e0[t] == 0.0) {
            e0[t] = e[a] > 0.0 ? e[a] : -1.0; /* -1: recorded, but zero */
            continue;
        }
        double ratio = e0[t] > 0.0 ? e[a] / e0[t] : 0.0;
        lw[t] *= exp(ratio * mtli_wkd(w, EX_STEP));
        changed = true;
    }
    if (changed) {
        double sum = 0.0;
        for (int t = 0; t < T; t++)
            sum += lw[t];
        for (int t = 0; t < T; t++)
            lw[t] = lw[t] / sum * T;
    }
    for (int a = 0; a < k; a++)
        c->w[a] = lw[c->idx[a]];
    return MTL_OK;
}

const mtli_wmethod mtli_w_excessmtl = {
    .name = "excessmtl", .needs = MTLI_NEED_J, .keys = excess_keys, .nkeys = 1,
    .state_size = excess_state, .bound_size = excess_bound, .ws_size = coord_ws_T,
    .reset = excess_reset, .apply = excess_apply,
};
