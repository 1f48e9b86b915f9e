/* Bargaining / fairness weightings: the weights solve (G a)_i = a_i^(-1/alpha), a > 0.
 *
 *   nash_mtl  Nash-MTL (Navon et al., ICML 2022): alpha = 1, i.e. G a = 1/a, the Nash
 *             bargaining solution. Like the official code the Gram is first divided by its
 *             Frobenius norm (key "normalize", default 1), which makes the update
 *             proportional to the gradients' scale; normalize = 0 solves G a = 1/a on the
 *             raw Gram (an update of norm sqrt(k) whatever the gradients' scale). The
 *             official code approximates the solution with at most 20 convex-concave steps;
 *             we solve it to a relative residual of 1e-10. Its max_norm (1.0 there) clips
 *             the trunk's gradient after the backward; here "max_norm" (default 0 = off)
 *             scales all weights, heads included, so that ||sum a_t g_t|| <= max_norm -
 *             leave it 0 and use the optimizer's gradient clipping for the original effect.
 *             "update_every" recomputes the weights every n steps (reusing them between).
 *   fairgrad  FairGrad (Ban & Ji, ICML 2024): alpha-fair allocation on the raw Gram, key
 *             "alpha" (default 1, which is Nash-MTL without normalisation).
 *
 * Both solve the stationarity condition of the strictly convex 1/2 a'Ga - sum h(a_i) by
 * damped Newton (solvers.c). Tasks with a zero gradient get weight 0 (their equation has no
 * solution); if a non-negative combination of the gradients vanishes (the tasks are
 * Pareto-stationary, e.g. two exactly opposite gradients) there is no solution either and
 * the step fails with MTL_ERR_NUMERIC. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "weighting/solvers.h"
#include "weighting/weighting_internal.h"

static size_t gram_ws(int T) { return mtli_wgram_ws(T); }

/* Solve on the tasks with a non-zero gradient; scale is applied to the Gram first. */
static mtl_status fair_solve(mtl_weighting *w, mtli_wctx *c, double p, double gram_scale)
{
    const int k = c->k;
    double *ex = mtli_wgram_extra(c), *Q = ex, *a = Q + (size_t)k * k;
    int *sub = (int *)(void *)(a + k);
    double dmax = 0.0;
    for (int i = 0; i < k; i++)
        dmax = fmax(dmax, c->G[(size_t)i * k + i]);
    int m = 0;
    for (int i = 0; i < k; i++) {
        c->w[i] = 0.0;
        double d = c->G[(size_t)i * k + i];
        if (d > 1e-300 && d > 1e-30 * dmax)
            sub[m++] = i;
    }
    if (m == 0)
        return MTL_OK;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++)
            Q[(size_t)i * m + j] = c->G[(size_t)sub[i] * k + sub[j]] * gram_scale;
    double res;
    int it = mtli_solve_fair(m, Q, p, a, 1e-10, 100, &res, c->ws);
    if (it < 0)
        return mtli_error(MTL_ERR_NUMERIC,
                          "weighting '%s': no positive solution of (G a)_i = a_i^-%g: the "
                          "solver stopped at residual %g (tolerance 1e-10); the task gradients "
                          "may be Pareto-stationary",
                          w->m->name, p, res);
    for (int i = 0; i < m; i++)
        c->w[sub[i]] = a[i];
    return MTL_OK;
}

/* ---- nash_mtl ---------------------------------------------------------------------------- */

static const mtli_wkey nash_keys[] = {
    MTLI_KI("normalize", 1, 0, 1),
    MTLI_KD("max_norm", 0.0, 0.0, 1e30, false),
    MTLI_KI("update_every", 1, 1, 1e12),
};
enum { NASH_NORMALIZE, NASH_MAX_NORM, NASH_EVERY };

/* state: the last solved weights [T] */
static size_t nash_state(const mtl_weighting *w, int T)
{
    (void)w;
    return (size_t)T;
}

static mtl_status nash_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k;
    double *prev = w->ms;
    int64_t every = mtli_wki(w, NASH_EVERY);
    if (every > 1 && fmod(mtli_wsteps(w), (double)every) != 0.0) {
        for (int a = 0; a < k; a++)
            c->w[a] = prev[c->idx[a]];
    } else {
        double scale = 1.0;
        if (mtli_wki(w, NASH_NORMALIZE)) {
            double f = 0.0;
            for (size_t i = 0; i < (size_t)k * k; i++)
                f += c->G[i] * c->G[i];
            f = sqrt(f);
            scale = f > 0.0 ? 1.0 / f : 1.0;
        }
        MTLI_TRY(fair_solve(w, c, 1.0, scale));
        for (int a = 0; a < k; a++)
            prev[c->idx[a]] = c->w[a];
    }
    double mx = mtli_wkd(w, NASH_MAX_NORM);
    if (mx > 0.0) {
        double nrm = sqrt(fmax(mtli_wquad(c->G, k, c->w), 0.0));
        if (nrm > mx)
            for (int a = 0; a < k; a++)
                c->w[a] *= mx / nrm;
    }
    return MTL_OK;
}

const mtli_wmethod mtli_w_nash_mtl = {
    .name = "nash_mtl", .needs = MTLI_NEED_G, .rep_capable = true, .keys = nash_keys,
    .nkeys = 3, .state_size = nash_state, .ws_size = gram_ws, .apply = nash_apply,
};

/* ---- fairgrad ---------------------------------------------------------------------------- */

static const mtli_wkey fairgrad_keys[] = {MTLI_KD("alpha", 1.0, 0.01, 100.0, false)};
enum { FG_ALPHA };

static mtl_status fairgrad_apply(mtl_weighting *w, mtli_wctx *c)
{
    return fair_solve(w, c, 1.0 / mtli_wkd(w, FG_ALPHA), 1.0);
}

const mtli_wmethod mtli_w_fairgrad = {
    .name = "fairgrad", .needs = MTLI_NEED_G, .rep_capable = true, .keys = fairgrad_keys,
    .nkeys = 1, .ws_size = gram_ws, .apply = fairgrad_apply,
};
