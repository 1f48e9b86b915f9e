/* GradNorm (Chen et al., ICML 2018).
 *
 * Weights w = T softmax(xi) (LibMTL's parameterisation: positive, summing to T). Each step,
 * with n_t = ||g_t|| (square roots of the Gram's diagonal; in representation mode, of the
 * representation gradients), G_t = w_t n_t, Gbar = mean_t G_t, inverse training rates
 * r_t = (L_t / L_t(0)) / mean_t(L_t / L_t(0)) and the constant targets Gbar r_t^alpha,
 * the logits follow the gradient of sum_t |G_t - Gbar r_t^alpha| with their own Adam (key
 * "lr", default 1e-3; LibMTL trains them with the model's optimizer). The step uses the
 * weights before this update. L(0): the losses of the first step, or their mean over the
 * first "warmup_steps" steps (LibMTL: the first epoch, during which it uses equal weights;
 * so do we). Key "alpha" (default 1.5) is the restoring force. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "weighting/weighting_internal.h"

static const mtli_wkey gradnorm_keys[] = {
    MTLI_KD("alpha", 1.5, 0.0, 1e3, false),
    MTLI_KD("lr", 1e-3, 0.0, 1e3, true),
    MTLI_KI("warmup_steps", 0, 0, 1e12),
};
enum { GN_ALPHA, GN_LR, GN_WARMUP };

/* state: xi[T], adam[2T+1], L0 sum[T], L0 count[T], L0[T] (0: not set) */
static size_t gradnorm_state(const mtl_weighting *w, int T)
{
    (void)w;
    return (size_t)T + mtli_wadam_size(T) + 3 * (size_t)T;
}

static size_t gradnorm_ws(int T) { return 4 * (size_t)T; }

static mtl_status gradnorm_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k, T = w->T;
    double *xi = w->ms, *adam = xi + T, *l0s = adam + mtli_wadam_size(T), *l0c = l0s + T,
           *l0 = l0c + T;
    double *z = w->ws, *gw = z + T, *ratio = gw + T;
    if (mtli_wsteps(w) < (double)mtli_wki(w, GN_WARMUP)) {
        for (int a = 0; a < k; a++) {
            c->w[a] = 1.0;
            l0s[c->idx[a]] += c->L[a];
            l0c[c->idx[a]] += 1.0;
        }
        return MTL_OK;
    }
    for (int a = 0; a < k; a++) {
        int t = c->idx[a];
        if (l0[t] == 0.0)
            l0[t] = l0c[t] > 0.0 ? l0s[t] / l0c[t] : c->L[a];
    }
    double xmax = -INFINITY, zs = 0.0;
    for (int t = 0; t < T; t++)
        xmax = fmax(xmax, xi[t]);
    for (int t = 0; t < T; t++)
        zs += z[t] = exp(xi[t] - xmax);
    for (int t = 0; t < T; t++)
        z[t] /= zs;
    double gbar = 0.0, rmean = 0.0;
    for (int a = 0; a < k; a++) {
        int t = c->idx[a];
        c->w[a] = T * z[t];
        gbar += c->w[a] * sqrt(c->G[(size_t)a * k + a]);
        ratio[a] = l0[t] > 0.0 && isfinite(c->L[a] / l0[t]) ? c->L[a] / l0[t] : 1.0;
        rmean += ratio[a];
    }
    gbar /= k;
    rmean /= k;
    for (int t = 0; t < T; t++)
        gw[t] = 0.0;
    double alpha = mtli_wkd(w, GN_ALPHA);
    for (int a = 0; a < k; a++) {
        double n = sqrt(c->G[(size_t)a * k + a]);
        double r = rmean > 0.0 ? ratio[a] / rmean : 1.0;
        double diff = c->w[a] * n - gbar * pow(r, alpha);
        gw[c->idx[a]] = (double)((diff > 0.0) - (diff < 0.0)) * n; /* d|diff|/dw_t */
    }
    /* d/dxi_j of sum_t gw_t * T softmax_t(xi) */
    double zg = 0.0;
    for (int t = 0; t < T; t++)
        zg += z[t] * gw[t];
    double *g = ratio + T; /* T more doubles */
    for (int t = 0; t < T; t++)
        g[t] = T * z[t] * (gw[t] - zg);
    mtli_wadam_step(xi, g, adam, T, mtli_wkd(w, GN_LR), 0.0);
    return MTL_OK;
}

const mtli_wmethod mtli_w_gradnorm = {
    .name = "gradnorm", .needs = MTLI_NEED_G, .rep_capable = true, .keys = gradnorm_keys,
    .nkeys = 3, .state_size = gradnorm_state, .ws_size = gradnorm_ws, .apply = gradnorm_apply,
};
