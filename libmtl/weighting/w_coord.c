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
#include "weighting/weighting_internal.h"

static size_t rng_state(const mtl_weighting *w, int T)
{
    (void)w;
    (void)T;
    return 8;
}

static double row_norm(const float *g, size_t P)
{
    double s = 0.0;
    for (size_t p = 0; p < P; p++)
        s += (double)g[p] * g[p];
    return sqrt(s);
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
    for (size_t p = 0; p < P; p++) {
        double s = 0.0, sa = 0.0;
        for (int a = 0; a < c->k; a++) {
            double g = c->J[(size_t)c->idx[a] * P + p];
            s += g;
            sa += fabs(g);
        }
        double u = mtli_rng_uniform_double(&r); /* one draw per coordinate, always */
        if (sa == 0.0) {
            c->shared_out[p] = 0.0f;
            continue;
        }
        double purity = 0.5 * (1.0 + s / sa), out = 0.0;
        for (int a = 0; a < c->k; a++) {
            double g = c->J[(size_t)c->idx[a] * P + p];
            bool keep = (purity > u && g > 0.0) || (purity < u && g < 0.0);
            out += (leak + (1.0 - leak) * (keep ? 1.0 : 0.0)) * g;
        }
        c->shared_out[p] = (float)out;
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
    for (int a = 0; a < k; a++) {
        const float *g = c->J + (size_t)c->idx[a] * P;
        scale[a] = c->L[a] / (row_norm(g, P) + 1e-8);
        double *y = w->bs + (size_t)c->idx[a] * P;
        for (size_t p = 0; p < P; p++)
            y[p] -= bk * (y[p] - scale[a] * g[p]);
    }
    for (int a = 0; a < k; a++)
        for (int b = a; b < k; b++) {
            const double *ya = w->bs + (size_t)c->idx[a] * P, *yb = w->bs + (size_t)c->idx[b] * P;
            double s = 0.0;
            for (size_t p = 0; p < P; p++)
                s += ya[p] * yb[p];
            YY[(size_t)a * k + b] = YY[(size_t)b * k + a] = s;
        }
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
    for (size_t p = 0; p < P; p++) {
        double s = 0.0;
        for (int a = 0; a < k; a++)
            s += lam[c->idx[a]] * w->bs[(size_t)c->idx[a] * P + p];
        c->shared_out[p] = (float)s;
    }
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
        double inv = 1.0 / (c->L[a] + 1e-8), s = 0.0;
        double *b = w->bs + (size_t)c->idx[a] * P;
        for (size_t p = 0; p < P; p++) {
            double h = g[p] * inv;
            b[p] = h + bk * (b[p] - h);
            s += b[p] * b[p];
        }
        nrm[a] = sqrt(s);
        umax = fmax(umax, nrm[a]);
    }
    for (int a = 0; a < k; a++)
        nrm[a] = umax / (nrm[a] + 1e-8); /* a_t */
    for (size_t p = 0; p < P; p++) {
        double s = 0.0;
        for (int a = 0; a < k; a++)
            s += nrm[a] * w->bs[(size_t)c->idx[a] * P + p];
        c->shared_out[p] = (float)s;
    }
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
        double *s = w->bs + (size_t)c->idx[a] * P, acc = 0.0;
        for (size_t p = 0; p < P; p++) {
            double gp = g[p];
            s[p] += gp * gp;
            acc += gp * gp / sqrt(s[p] + 1e-7);
        }
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
