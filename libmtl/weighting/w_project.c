/* Projection-based Gram methods: each works on inner products only, so the combined
 * update is sum_t w_t g_t and the method returns w.
 *
 *   pcgrad   PCGrad (Yu et al., NeurIPS 2020)
 *   cagrad   CAGrad (Liu et al., NeurIPS 2021)
 *   upgrad   UPGrad (Quinton & Rey, 2024, "Jacobian descent for multi-objective
 *            optimization")
 *   dualproj DualProj (the projection of the mean gradient onto the dual cone, as in GEM,
 *            Lopez-Paz & Ranzato 2017; TorchJD's DualProj)
 *   config   ConFIG (Liu et al., ICLR 2025, "ConFIG: towards conflict-free training") */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "weighting/solvers.h"
#include "weighting/weighting_internal.h"

static size_t gram_ws(int T) { return mtli_wgram_ws(T); }
static size_t rng_state(const mtl_weighting *w, int T)
{
    (void)w;
    (void)T;
    return 8;
}

/* ---- pcgrad ------------------------------------------------------------------------------
 * For each task i, in a random order of the OTHER tasks j (a fresh order per i, as in the
 * reference implementations), if <g_i^pc, g_j> < 0 then
 *     g_i^pc -= <g_i^pc, g_j> / ||g_j||^2 g_j.
 * Projections are onto the original gradients g_j. Every g_i^pc stays a combination
 * sum_m C_im g_m, so the whole method runs on the Gram: the weight of task m is
 * sum_i C_im ("sum", default) or that / k ("mean"). The paper's Algorithm 1 excludes j = i;
 * LibMTL and the original code shuffle all tasks including i itself, which is a no-op
 * unless an earlier projection turned g_i^pc against g_i; we follow the paper. */

static const char *const pc_reductions[] = {"sum", "mean", NULL};
static const mtli_wkey pcgrad_keys[] = {MTLI_KSEED, MTLI_KS("reduction", 0, pc_reductions)};
enum { PC_SEED, PC_REDUCTION };

static void pcgrad_reset(mtl_weighting *w) { mtli_wrng_seed(w->ms, (uint64_t)mtli_wki(w, PC_SEED)); }

static mtl_status pcgrad_on_set(mtl_weighting *w, int key)
{
    if (key == PC_SEED)
        pcgrad_reset(w);
    return MTL_OK;
}

static mtl_status pcgrad_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k;
    const double *G = c->G;
    double *ex = mtli_wgram_extra(c), *C = ex;
    int *order = (int *)(void *)(ex + (size_t)k * k); /* k ints fit in k doubles */
    mtli_rng r;
    mtli_wrng_load(w->ms, &r);
    memset(C, 0, (size_t)k * k * sizeof(double));
    for (int i = 0; i < k; i++)
        C[(size_t)i * k + i] = 1.0;
    for (int i = 0; i < k; i++) {
        int n = 0;
        for (int j = 0; j < k; j++)
            if (j != i)
                order[n++] = j;
        for (int m = n - 1; m > 0; m--) { /* Fisher-Yates */
            int q = (int)mtli_rng_below(&r, (uint64_t)m + 1);
            int tmp = order[m];
            order[m] = order[q];
            order[q] = tmp;
        }
        double *Ci = C + (size_t)i * k;
        for (int q = 0; q < n; q++) {
            int j = order[q];
            double gjj = G[(size_t)j * k + j];
            if (!(gjj > 0.0))
                continue;
            double d = 0.0;
            for (int m = 0; m < k; m++)
                d += Ci[m] * G[(size_t)m * k + j];
            if (d < 0.0)
                Ci[j] -= d / gjj;
        }
    }
    mtli_wrng_store(w->ms, &r);
    double scale = mtli_wks(w, PC_REDUCTION) == 1 ? 1.0 / k : 1.0;
    for (int m = 0; m < k; m++) {
        double s = 0.0;
        for (int i = 0; i < k; i++)
            s += C[(size_t)i * k + m];
        c->w[m] = s * scale;
    }
    return MTL_OK;
}

const mtli_wmethod mtli_w_pcgrad = {
    .name = "pcgrad", .needs = MTLI_NEED_G, .rep_capable = true, .keys = pcgrad_keys,
    .nkeys = 2, .state_size = rng_state, .ws_size = gram_ws, .reset = pcgrad_reset,
    .apply = pcgrad_apply, .on_set = pcgrad_on_set,
};

/* ---- cagrad ------------------------------------------------------------------------------
 * g0 = mean gradient; w* = argmin_{w in simplex} <g_w, g0> + c ||g0|| ||g_w||;
 * d = g0 + c ||g0|| / ||g_w*|| g_w*, then divided by 1 + c^2 (rescale 1, the official
 * default), 1 + c (rescale 2) or left (rescale 0). c = 0 gives the mean gradient. Weights:
 * 1/k + c ||g0|| / ||g_w*|| w*_t, rescaled. The dual is solved by accelerated projected
 * gradient with backtracking until the Frank-Wolfe gap is <= 1e-10 (Gram normalised by its
 * largest diagonal entry). */

static const mtli_wkey cagrad_keys[] = {
    MTLI_KD("c", 0.5, 0.0, 1e6, false),
    MTLI_KI("rescale", 1, 0, 2),
};
enum { CA_C, CA_RESCALE };

static mtl_status cagrad_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k;
    double cc = mtli_wkd(w, CA_C);
    double *ex = mtli_wgram_extra(c), *Q = ex, *b = Q + (size_t)k * k, *ww = b + k;
    double S = 0.0;
    for (int a = 0; a < k; a++)
        S = fmax(S, c->G[(size_t)a * k + a]);
    double lam = 0.0;
    for (int a = 0; a < k; a++)
        ww[a] = 0.0;
    if (cc > 0.0 && S > 0.0) {
        for (size_t i = 0; i < (size_t)k * k; i++)
            Q[i] = c->G[i] / S;
        double g0sq = 0.0;
        for (int a = 0; a < k; a++) {
            double s = 0.0;
            for (int bb = 0; bb < k; bb++)
                s += Q[(size_t)a * k + bb];
            b[a] = s / k;
            g0sq += s;
        }
        g0sq /= (double)k * k;
        double g0n = sqrt(g0sq > 0.0 ? g0sq : 0.0);
        double r = cc * g0n;
        for (int a = 0; a < k; a++)
            ww[a] = 1.0 / k;
        double gap;
        int it = mtli_cagrad_dual(k, Q, b, r, ww, 1e-10, 20000, &gap, c->ws);
        if (it < 0)
            return mtli_error(MTL_ERR_NUMERIC,
                              "weighting 'cagrad': the dual solver stopped with duality gap %g "
                              "(tolerance 1e-10) after 20000 iterations",
                              gap);
        double gw = sqrt(fmax(mtli_wquad(Q, k, ww), 0.0));
        lam = gw > 1e-12 * (g0n > 0.0 ? g0n : 1.0) ? r / gw : 0.0;
    }
    int rs = (int)mtli_wki(w, CA_RESCALE);
    double div = rs == 1 ? 1.0 + cc * cc : rs == 2 ? 1.0 + cc : 1.0;
    for (int a = 0; a < k; a++)
        c->w[a] = (1.0 / k + lam * ww[a]) / div;
    return MTL_OK;
}

const mtli_wmethod mtli_w_cagrad = {
    .name = "cagrad", .needs = MTLI_NEED_G, .rep_capable = true, .keys = cagrad_keys,
    .nkeys = 2, .ws_size = gram_ws, .apply = cagrad_apply,
};

/* ---- upgrad and dualproj ------------------------------------------------------------------
 * The projection of J'u onto the dual cone {x : Jx >= 0} of the task gradients is J'v with
 *     v = argmin_{v >= u} v' G v     (TorchJD, Proposition 1 of Quinton & Rey).
 * DualProj projects the mean gradient (u = 1/k); UPGrad projects each g_i / k (u = e_i / k)
 * and sums the projections. Like TorchJD, the Gram is first divided by its trace (when the
 * trace is >= norm_eps) and reg_eps I is added; the defaults (1e-4 both) are TorchJD's.
 * Each QP min 1/2 x'Qx + (Qu)'x over x >= 0 (v = u + x) is solved by accelerated projected
 * gradient with an exact active-set polish until the projected-gradient residual is
 * <= 1e-10 (the Gram has unit trace), at most 20000 iterations. With reg_eps = 0 the result
 * lies in the dual cone: <d, g_i> >= -1e-10 trace(G) for every task gradient g_i. */

static const mtli_wkey dualcone_keys[] = {
    MTLI_KD("norm_eps", 1e-4, 0.0, 1e6, false),
    MTLI_KD("reg_eps", 1e-4, 0.0, 1e6, false),
};
enum { DC_NORM_EPS, DC_REG_EPS };

static mtl_status dualcone_qp(mtl_weighting *w, mtli_wctx *c, const double *Q, const double *u,
                              double *v)
{
    const int k = c->k;
    double *ex = mtli_wgram_extra(c), *cvec = ex, *x = ex + k;
    mtli_symv(k, Q, u, cvec);
    for (int a = 0; a < k; a++)
        x[a] = 0.0;
    double res;
    int it = mtli_qp_orthant(k, Q, cvec, x, 1e-10, 20000, &res, c->ws);
    if (it < 0)
        return mtli_error(MTL_ERR_NUMERIC,
                          "weighting '%s': the dual-cone projection stopped with residual %g "
                          "(tolerance 1e-10) after 20000 iterations",
                          w->m->name, res);
    for (int a = 0; a < k; a++)
        v[a] = u[a] + x[a];
    return MTL_OK;
}

static void dualcone_gram(const mtl_weighting *w, const mtli_wctx *c, double *Q)
{
    const int k = c->k;
    double tr = 0.0;
    for (int a = 0; a < k; a++)
        tr += c->G[(size_t)a * k + a];
    double inv = tr >= mtli_wkd(w, DC_NORM_EPS) && tr > 0.0 ? 1.0 / tr : 0.0;
    for (size_t i = 0; i < (size_t)k * k; i++)
        Q[i] = c->G[i] * inv;
    for (int a = 0; a < k; a++)
        Q[(size_t)a * k + a] += mtli_wkd(w, DC_REG_EPS);
}

static mtl_status upgrad_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k;
    double *ex = mtli_wgram_extra(c);
    double *Q = ex + 2 * (size_t)k, *u = Q + (size_t)k * k, *v = u + k;
    dualcone_gram(w, c, Q);
    for (int a = 0; a < k; a++)
        c->w[a] = 0.0;
    for (int i = 0; i < k; i++) {
        for (int a = 0; a < k; a++)
            u[a] = a == i ? 1.0 / k : 0.0;
        MTLI_TRY(dualcone_qp(w, c, Q, u, v));
        for (int a = 0; a < k; a++)
            c->w[a] += v[a];
    }
    return MTL_OK;
}

static mtl_status dualproj_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k;
    double *ex = mtli_wgram_extra(c);
    double *Q = ex + 2 * (size_t)k, *u = Q + (size_t)k * k;
    dualcone_gram(w, c, Q);
    for (int a = 0; a < k; a++)
        u[a] = 1.0 / k;
    return dualcone_qp(w, c, Q, u, c->w);
}

const mtli_wmethod mtli_w_upgrad = {
    .name = "upgrad", .needs = MTLI_NEED_G, .rep_capable = true, .keys = dualcone_keys,
    .nkeys = 2, .ws_size = gram_ws, .apply = upgrad_apply,
};

const mtli_wmethod mtli_w_dualproj = {
    .name = "dualproj", .needs = MTLI_NEED_G, .rep_capable = true, .keys = dualcone_keys,
    .nkeys = 2, .ws_size = gram_ws, .apply = dualproj_apply,
};

/* ---- config ---------------------------------------------------------------------------------
 * Direction: the minimum-norm v with <u_i, v> = 1 for every unit gradient u_i = g_i/||g_i||
 * (v = U'(UU')^+ 1, the least-squares solution of the reference code); length: the sum of
 * the projections of the gradients on it. d = (sum_i <g_i, v^>) v^, v^ = v/||v||. In Gram
 * terms v = sum_i (x_i / n_i) g_i with x = Uhat^+ 1, Uhat = D^-1 G D^-1 (eigenvalues below
 * 1e-12 times the largest are dropped). Tasks with a zero gradient get weight 0; if no
 * conflict-free direction exists (v = 0) every weight is 0. */

static mtl_status config_apply(mtl_weighting *w, mtli_wctx *c)
{
    (void)w;
    const int k = c->k;
    double *ex = mtli_wgram_extra(c);
    double *U = ex, *n = U + (size_t)k * k, *x = n + k, *ones = x + k, *beta = ones + k;
    int *sub = (int *)(void *)(beta + k);
    int m = 0;
    double nmax = 0.0;
    for (int a = 0; a < k; a++)
        nmax = fmax(nmax, sqrt(c->G[(size_t)a * k + a]));
    for (int a = 0; a < k; a++) {
        c->w[a] = 0.0;
        double na = sqrt(c->G[(size_t)a * k + a]);
        if (na > 1e-150 && na > 1e-15 * nmax)
            sub[m++] = a;
    }
    if (m == 0)
        return MTL_OK;
    for (int i = 0; i < m; i++)
        n[i] = sqrt(c->G[(size_t)sub[i] * k + sub[i]]);
    for (int i = 0; i < m; i++) {
        ones[i] = 1.0;
        for (int j = 0; j < m; j++)
            U[(size_t)i * m + j] = c->G[(size_t)sub[i] * k + sub[j]] / (n[i] * n[j]);
    }
    if (mtli_sym_pinv_solve(m, U, ones, x, 1e-12, c->ws) < 0)
        return mtli_error(MTL_ERR_NUMERIC,
                          "weighting 'config': the eigen-decomposition of the unit-gradient "
                          "Gram did not converge");
    double vv = 0.0, proj = 0.0;
    for (int i = 0; i < m; i++)
        beta[i] = x[i] / n[i];
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double g = c->G[(size_t)sub[i] * k + sub[j]];
            vv += beta[i] * g * beta[j];
            proj += g * beta[j]; /* sum_i <g_i, v> */
        }
    if (!(vv > 0.0))
        return MTL_OK;
    for (int i = 0; i < m; i++)
        c->w[sub[i]] = beta[i] * proj / vv;
    return MTL_OK;
}

const mtli_wmethod mtli_w_config = {
    .name = "config", .needs = MTLI_NEED_G, .rep_capable = true, .ws_size = gram_ws,
    .apply = config_apply,
};
