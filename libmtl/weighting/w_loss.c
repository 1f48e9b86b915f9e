/* Loss-based weightings (L): they see only the task losses and their own history.
 *
 *   ew     equal weights: 1 ("sum", default) or 1/T ("mean")
 *   fixed  static weights (mtl_weighting_set_weights)
 *   uw     uncertainty weighting (Kendall et al., CVPR 2018)
 *   dwa    dynamic weight average (Liu et al., CVPR 2019)
 *   gls    geometric loss strategy (Chennupati et al., CVPRW 2019)
 *   rlw    random loss weighting (Lin et al., TMLR 2022)
 *   stch   smooth Tchebycheff scalarisation (Lin et al., ICML 2024)
 *   famo   fast adaptive multitask optimisation (Liu et al., NeurIPS 2023)
 *
 * The weight returned for a task is the coefficient of its loss in the scalar the method
 * differentiates, i.e. d(objective)/d(loss_t) at the current losses. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "weighting/weighting_internal.h"

static double *last_weights(mtl_weighting *w) { return w->state + 1; }

/* ---- ew ---------------------------------------------------------------------------------------- */

static const char *const ew_reductions[] = {"sum", "mean", NULL};
static const mtli_wkey ew_keys[] = {MTLI_KS("reduction", 0, ew_reductions)};
enum { EW_REDUCTION };

static double ew_value(const mtl_weighting *w)
{
    return mtli_wks(w, EW_REDUCTION) == 1 ? 1.0 / w->T : 1.0;
}

static void ew_reset(mtl_weighting *w)
{
    for (int t = 0; t < w->T; t++)
        last_weights(w)[t] = ew_value(w);
}

static mtl_status ew_on_set(mtl_weighting *w, int key)
{
    if (key == EW_REDUCTION)
        ew_reset(w);
    return MTL_OK;
}

static mtl_status ew_apply(mtl_weighting *w, mtli_wctx *c)
{
    for (int a = 0; a < c->k; a++)
        c->w[a] = ew_value(w);
    return MTL_OK;
}

const mtli_wmethod mtli_w_ew = {
    .name = "ew", .needs = MTLI_NEED_L, .keys = ew_keys, .nkeys = 1, .reset = ew_reset,
    .apply = ew_apply, .on_set = ew_on_set,
};

/* ---- fixed ------------------------------------------------------------------------------------- */

static void fixed_reset(mtl_weighting *w)
{
    memcpy(last_weights(w), w->fixed, (size_t)w->T * sizeof(double));
}

static mtl_status fixed_apply(mtl_weighting *w, mtli_wctx *c)
{
    for (int a = 0; a < c->k; a++)
        c->w[a] = w->fixed[c->idx[a]];
    return MTL_OK;
}

const mtli_wmethod mtli_w_fixed = {
    .name = "fixed", .needs = MTLI_NEED_L, .reset = fixed_reset, .apply = fixed_apply,
};

/* ---- uw: loss_t / (2 exp(s_t)) + s_t / 2, s_t = log sigma_t^2 learned -------------------------- */

static const mtli_wkey uw_keys[] = {
    MTLI_KD("lr", 1e-3, 0.0, 1e3, true),
    MTLI_KD("init", -0.5, -50.0, 50.0, false),
};
enum { UW_LR, UW_INIT };

/* state: s[T], adam[2T+1] */
static size_t uw_state(const mtl_weighting *w, int T)
{
    (void)w;
    return (size_t)T + mtli_wadam_size(T);
}

static void uw_reset(mtl_weighting *w)
{
    for (int t = 0; t < w->T; t++) {
        w->ms[t] = mtli_wkd(w, UW_INIT);
        last_weights(w)[t] = 0.5 * exp(-w->ms[t]);
    }
    memset(w->ms + w->T, 0, mtli_wadam_size(w->T) * sizeof(double));
}

static mtl_status uw_on_set(mtl_weighting *w, int key)
{
    if (key == UW_INIT && mtli_wsteps(w) == 0.0)
        uw_reset(w);
    return MTL_OK;
}

static mtl_status uw_apply(mtl_weighting *w, mtli_wctx *c)
{
    double *s = w->ms, *grad = w->ws;
    for (int t = 0; t < w->T; t++)
        grad[t] = 0.0;
    for (int a = 0; a < c->k; a++) {
        int t = c->idx[a];
        double e = exp(-s[t]);
        c->w[a] = 0.5 * e;
        grad[t] = 0.5 - 0.5 * c->L[a] * e; /* d/ds of L/(2e^s) + s/2 */
    }
    mtli_wadam_step(s, grad, w->ms + w->T, w->T, mtli_wkd(w, UW_LR), 0.0);
    return MTL_OK;
}

static size_t ws_T(int T) { return (size_t)T; }

const mtli_wmethod mtli_w_uw = {
    .name = "uw", .needs = MTLI_NEED_L, .keys = uw_keys, .nkeys = 2, .state_size = uw_state,
    .ws_size = ws_T, .reset = uw_reset, .apply = uw_apply, .on_set = uw_on_set,
};

/* ---- dwa: T softmax(r / temperature), r_t = Lbar_t(k-1) / Lbar_t(k-2) ------------------------- */

static const mtli_wkey dwa_keys[] = {
    MTLI_KD("temperature", 2.0, 0.0, 1e6, true),
    MTLI_KI("window", 1, 1, 1e12),
};
enum { DWA_TEMP, DWA_WINDOW };

/* state: sum[T], cnt[T], prev1[T], prev2[T], completed windows, steps in the open window */
static size_t dwa_state(const mtl_weighting *w, int T)
{
    (void)w;
    return 4 * (size_t)T + 2;
}

static mtl_status dwa_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int T = w->T;
    double *sum = w->ms, *cnt = sum + T, *p1 = cnt + T, *p2 = p1 + T, *nwin = p2 + T,
           *inwin = nwin + 1;
    if (*nwin >= 2.0) {
        double tau = mtli_wkd(w, DWA_TEMP), *r = w->ws, rmax = -INFINITY, z = 0.0;
        for (int t = 0; t < T; t++) {
            r[t] = p2[t] > 0.0 && isfinite(p1[t] / p2[t]) ? p1[t] / p2[t] / tau : 1.0 / tau;
            rmax = fmax(rmax, r[t]);
        }
        for (int t = 0; t < T; t++)
            z += exp(r[t] - rmax);
        for (int a = 0; a < c->k; a++)
            c->w[a] = T * exp(r[c->idx[a]] - rmax) / z;
    } else
        for (int a = 0; a < c->k; a++)
            c->w[a] = 1.0;
    for (int a = 0; a < c->k; a++) {
        sum[c->idx[a]] += c->L[a];
        cnt[c->idx[a]] += 1.0;
    }
    *inwin += 1.0;
    if (*inwin >= (double)mtli_wki(w, DWA_WINDOW)) {
        for (int t = 0; t < T; t++)
            if (cnt[t] > 0.0) {
                p2[t] = p1[t];
                p1[t] = sum[t] / cnt[t];
                sum[t] = cnt[t] = 0.0;
            }
        *nwin += 1.0;
        *inwin = 0.0;
    }
    return MTL_OK;
}

const mtli_wmethod mtli_w_dwa = {
    .name = "dwa", .needs = MTLI_NEED_L, .keys = dwa_keys, .nkeys = 2, .state_size = dwa_state,
    .ws_size = ws_T, .apply = dwa_apply,
};

/* ---- gls: (prod_t L_t)^(1/k); weight_t = GLS / (k L_t) ------------------------------------------ */

static mtl_status gls_apply(mtl_weighting *w, mtli_wctx *c)
{
    (void)w;
    double lm = 0.0;
    for (int a = 0; a < c->k; a++) {
        if (!(c->L[a] > 0.0))
            return mtli_error(MTL_ERR_NUMERIC,
                              "weighting 'gls': the loss of task %d is %g; the geometric mean "
                              "needs positive losses",
                              c->idx[a], c->L[a]);
        lm += log(c->L[a]);
    }
    lm /= c->k;
    for (int a = 0; a < c->k; a++)
        c->w[a] = exp(lm - log(c->L[a])) / c->k;
    return MTL_OK;
}

const mtli_wmethod mtli_w_gls = {
    .name = "gls", .needs = MTLI_NEED_L, .apply = gls_apply,
};

/* ---- rlw: softmax of standard normal draws ------------------------------------------------------ */

static const mtli_wkey rlw_keys[] = {MTLI_KSEED};
enum { RLW_SEED };

static size_t rng_state(const mtl_weighting *w, int T)
{
    (void)w;
    (void)T;
    return 8;
}

static void rlw_reset(mtl_weighting *w) { mtli_wrng_seed(w->ms, (uint64_t)mtli_wki(w, RLW_SEED)); }

static mtl_status rlw_on_set(mtl_weighting *w, int key)
{
    if (key == RLW_SEED)
        rlw_reset(w);
    return MTL_OK;
}

static mtl_status rlw_apply(mtl_weighting *w, mtli_wctx *c)
{
    mtli_rng r;
    mtli_wrng_load(w->ms, &r);
    double *z = w->ws, zmax = -INFINITY, sum = 0.0;
    for (int t = 0; t < w->T; t++) /* one draw per task, active or not: a stable stream */
        z[t] = mtli_rng_normal(&r);
    mtli_wrng_store(w->ms, &r);
    for (int a = 0; a < c->k; a++)
        zmax = fmax(zmax, z[c->idx[a]]);
    for (int a = 0; a < c->k; a++) {
        c->w[a] = exp(z[c->idx[a]] - zmax);
        sum += c->w[a];
    }
    for (int a = 0; a < c->k; a++)
        c->w[a] /= sum;
    return MTL_OK;
}

const mtli_wmethod mtli_w_rlw = {
    .name = "rlw", .needs = MTLI_NEED_L, .keys = rlw_keys, .nkeys = 1, .state_size = rng_state,
    .ws_size = ws_T, .reset = rlw_reset, .apply = rlw_apply, .on_set = rlw_on_set,
};

/* ---- stch: k mu log sum_t exp(log(L_t / z_t) / mu) ---------------------------------------------- */

static const mtli_wkey stch_keys[] = {
    MTLI_KD("mu", 1.0, 0.0, 1e6, true),
    MTLI_KI("warmup_steps", 0, 0, 1e12),
};
enum { STCH_MU, STCH_WARMUP };

/* state: nadir sum[T], count[T], nadir[T], nadir ready */
static size_t stch_state(const mtl_weighting *w, int T)
{
    (void)w;
    return 3 * (size_t)T + 1;
}

static mtl_status stch_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int T = w->T;
    const double eps = 1e-20;
    double *sum = w->ms, *cnt = sum + T, *nadir = cnt + T, *ready = nadir + T;
    double warm = (double)mtli_wki(w, STCH_WARMUP);
    for (int a = 0; a < c->k; a++)
        if (!(c->L[a] > -eps))
            return mtli_error(MTL_ERR_NUMERIC,
                              "weighting 'stch': the loss of task %d is %g; the scalarisation "
                              "takes the logarithm of non-negative losses",
                              c->idx[a], c->L[a]);
    if (mtli_wsteps(w) < warm) { /* warm-up: sum of log losses; collect the nadir point */
        for (int a = 0; a < c->k; a++) {
            c->w[a] = 1.0 / (c->L[a] + eps);
            sum[c->idx[a]] += c->L[a];
            cnt[c->idx[a]] += 1.0;
        }
        return MTL_OK;
    }
    if (*ready == 0.0) {
        for (int t = 0; t < T; t++)
            nadir[t] = cnt[t] > 0.0 && sum[t] > 0.0 ? sum[t] / cnt[t] : 1.0;
        *ready = 1.0;
    }
    double mu = mtli_wkd(w, STCH_MU), *l = w->ws, lmax = -INFINITY, z = 0.0;
    for (int a = 0; a < c->k; a++) {
        l[a] = log(c->L[a] / nadir[c->idx[a]] + eps) / mu;
        lmax = fmax(lmax, l[a]);
    }
    for (int a = 0; a < c->k; a++)
        z += exp(l[a] - lmax);
    for (int a = 0; a < c->k; a++) {
        double zt = nadir[c->idx[a]];
        c->w[a] = c->k * exp(l[a] - lmax) / z / (zt * (c->L[a] / zt + eps));
    }
    return MTL_OK;
}

const mtli_wmethod mtli_w_stch = {
    .name = "stch", .needs = MTLI_NEED_L, .keys = stch_keys, .nkeys = 2,
    .state_size = stch_state, .ws_size = ws_T, .apply = stch_apply,
};

/* ---- famo ----------------------------------------------------------------------------------------- */

static const mtli_wkey famo_keys[] = {
    MTLI_KD("lr", 0.025, 0.0, 1e3, true),
    MTLI_KD("gamma", 1e-3, 0.0, 1e3, false),
};
enum { FAMO_LR, FAMO_GAMMA };
#define FAMO_EPS 1e-8

/* state: logits xi[T], adam[2T+1], losses at apply prev[T] (NaN: inactive), pending */
static size_t famo_state(const mtl_weighting *w, int T)
{
    (void)w;
    return 2 * (size_t)T + mtli_wadam_size(T) + 1;
}

static void famo_reset(mtl_weighting *w)
{
    for (int t = 0; t < w->T; t++)
        last_weights(w)[t] = 1.0 / w->T;
}

static mtl_status famo_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int T = w->T;
    double *xi = w->ms, *prev = xi + T + mtli_wadam_size(T), *pending = prev + T;
    double xmax = -INFINITY, zs = 0.0, cs = 0.0;
    for (int a = 0; a < c->k; a++) {
        if (!(c->L[a] + FAMO_EPS > 0.0))
            return mtli_error(MTL_ERR_NUMERIC,
                              "weighting 'famo': the loss of task %d is %g; FAMO needs losses "
                              "> 0 (it balances their logarithms)",
                              c->idx[a], c->L[a]);
        xmax = fmax(xmax, xi[c->idx[a]]);
    }
    for (int a = 0; a < c->k; a++)
        zs += exp(xi[c->idx[a]] - xmax);
    for (int a = 0; a < c->k; a++) {
        double z = exp(xi[c->idx[a]] - xmax) / zs;
        c->w[a] = z / (c->L[a] + FAMO_EPS);
        cs += c->w[a];
    }
    for (int a = 0; a < c->k; a++)
        c->w[a] /= cs;
    for (int t = 0; t < T; t++)
        prev[t] = NAN;
    for (int a = 0; a < c->k; a++)
        prev[c->idx[a]] = c->L[a];
    *pending = 1.0;
    return MTL_OK;
}

static mtl_status famo_after(mtl_weighting *w, const double *new_losses)
{
    const int T = w->T;
    double *xi = w->ms, *adam = xi + T, *prev = adam + mtli_wadam_size(T), *pending = prev + T;
    if (*pending == 0.0)
        return mtli_error(MTL_ERR_STATE,
                          "weighting 'famo': after_step without a preceding step (the losses "
                          "after an update are compared with those of the same step)");
    double *delta = w->ws, *g = w->ws + T, xmax = -INFINITY, zs = 0.0, zd = 0.0;
    for (int t = 0; t < T; t++) {
        delta[t] = 0.0;
        if (isnan(prev[t]))
            continue;
        if (!(new_losses[t] + FAMO_EPS > 0.0) || !isfinite(new_losses[t]))
            return mtli_error(MTL_ERR_NUMERIC,
                              "weighting 'famo': the loss of task %d after the step is %g", t,
                              new_losses[t]);
        delta[t] = log(prev[t] + FAMO_EPS) - log(new_losses[t] + FAMO_EPS);
    }
    for (int t = 0; t < T; t++)
        xmax = fmax(xmax, xi[t]);
    for (int t = 0; t < T; t++)
        zs += exp(xi[t] - xmax);
    for (int t = 0; t < T; t++)
        zd += exp(xi[t] - xmax) / zs * delta[t];
    for (int t = 0; t < T; t++) /* d softmax(xi)'delta / d xi */
        g[t] = exp(xi[t] - xmax) / zs * (delta[t] - zd);
    mtli_wadam_step(xi, g, adam, T, mtli_wkd(w, FAMO_LR), mtli_wkd(w, FAMO_GAMMA));
    *pending = 0.0;
    return MTL_OK;
}

static size_t ws_2T(int T) { return 2 * (size_t)T; }

const mtli_wmethod mtli_w_famo = {
    .name = "famo", .needs = MTLI_NEED_L | MTLI_NEED_AFTER, .keys = famo_keys, .nkeys = 2,
    .state_size = famo_state, .ws_size = ws_2T, .reset = famo_reset, .apply = famo_apply,
    .after_step = famo_after,
};
