/* MGDA (Sener & Koltun, NeurIPS 2018; Desideri 2012): the minimum-norm point of the convex
 * hull of the (normalised) task gradients,
 *     alpha = argmin_{alpha in simplex} || sum_t alpha_t g_t / s_t ||^2,
 * with the normaliser s_t chosen by key "normalization": none (1), l2 (||g_t||), loss
 * (L_t), loss+ (L_t ||g_t||). The update is that min-norm point, so the weight of task t
 * (the coefficient of its raw gradient) is alpha_t / s_t. A normaliser that is zero or not
 * finite is replaced by 1 for that task.
 *
 * Two tasks: the exact closed form gamma = clip(<g2 - g1, g2> / ||g1 - g2||^2, 0, 1)
 * (the reference code clips to [0.001, 0.999]; we keep the exact minimiser). More tasks:
 * accelerated projected gradient on the simplex until the Frank-Wolfe gap is <= 1e-12
 * times the largest normalised squared gradient norm (at most 20000 iterations, with an
 * exact active-set polish).
 *
 * mgda_ub (Sener & Koltun's upper bound): the same on the Gram of the per-task gradients
 * with respect to the shared representation; that mode is fixed. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "weighting/solvers.h"
#include "weighting/weighting_internal.h"

static const char *const mgda_norms[] = {"none", "l2", "loss", "loss+", NULL};
static const mtli_wkey mgda_keys[] = {MTLI_KS("normalization", 0, mgda_norms)};
enum { MGDA_NORM };
enum { N_NONE, N_L2, N_LOSS, N_LOSSPLUS };

static mtl_status mgda_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k;
    double *ex = mtli_wgram_extra(c);
    double *s = ex, *Gh = ex + k, *alpha = Gh + (size_t)k * k;
    int norm = mtli_wks(w, MGDA_NORM);
    for (int a = 0; a < k; a++) {
        double n2 = sqrt(c->G[(size_t)a * k + a]);
        double v = norm == N_L2 ? n2 : norm == N_LOSS ? c->L[a] : norm == N_LOSSPLUS ? c->L[a] * n2 : 1.0;
        s[a] = v > 0.0 && isfinite(v) ? v : 1.0;
    }
    double dmax = 0.0;
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++) {
            Gh[(size_t)a * k + b] = c->G[(size_t)a * k + b] / (s[a] * s[b]);
            if (a == b && Gh[(size_t)a * k + b] > dmax)
                dmax = Gh[(size_t)a * k + b];
        }
    if (k == 1)
        alpha[0] = 1.0;
    else if (k == 2) {
        double g11 = Gh[0], g12 = Gh[1], g22 = Gh[3];
        double den = g11 + g22 - 2.0 * g12;
        double gamma = den > 0.0 ? (g22 - g12) / den : 0.5; /* weight of task 0 */
        gamma = gamma < 0.0 ? 0.0 : gamma > 1.0 ? 1.0 : gamma;
        alpha[0] = gamma;
        alpha[1] = 1.0 - gamma;
    } else {
        for (int a = 0; a < k; a++)
            alpha[a] = 1.0 / k;
        double gap;
        int it = mtli_qp_simplex(k, Gh, NULL, alpha, 1e-12 * (dmax > 0.0 ? dmax : 1.0), 20000,
                                 &gap, c->ws);
        if (it < 0)
            return mtli_error(MTL_ERR_NUMERIC,
                              "weighting '%s': the min-norm solver stopped with duality gap %g "
                              "(tolerance %g) after 20000 iterations",
                              w->m->name, gap, 1e-12 * dmax);
    }
    for (int a = 0; a < k; a++)
        c->w[a] = alpha[a] / s[a];
    return MTL_OK;
}

static size_t gram_ws(int T) { return mtli_wgram_ws(T); }

const mtli_wmethod mtli_w_mgda = {
    .name = "mgda", .needs = MTLI_NEED_G, .rep_capable = true, .keys = mgda_keys, .nkeys = 1,
    .ws_size = gram_ws, .apply = mgda_apply,
};

const mtli_wmethod mtli_w_mgda_ub = {
    .name = "mgda_ub", .needs = MTLI_NEED_G, .rep_capable = true, .rep_only = true,
    .keys = mgda_keys, .nkeys = 1, .ws_size = gram_ws, .apply = mgda_apply,
};
