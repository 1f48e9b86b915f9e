/* IMTL (Liu et al., ICLR 2021, "Towards impartial multi-task learning").
 *
 *   imtl_g  gradient balance: the update g = sum_t a_t g_t with sum_t a_t = 1 has equal
 *           projections on every unit task gradient u_t = g_t/||g_t||. Equivalently
 *           G a = c n (n_t = ||g_t||), so a = G^+ n / (1'G^+ n); the paper's closed form
 *           a_{2..k} = g_1'U'(DU')^-1 is the same solution when DU' is invertible. The
 *           pseudo-inverse (eigenvalues below 1e-12 of the largest dropped) also gives the
 *           symmetric answer for duplicated tasks; when no exact solution exists (linearly
 *           dependent gradients with unequal projections, residual above 1e-6 ||n||) the
 *           step fails with MTL_ERR_NUMERIC. Tasks with a zero gradient get weight 0.
 *   imtl_l  loss balance: learned scales s_t, objective sum_t e^s_t L_t - s_t; weight
 *           e^s_t; s is updated by its own Adam (key "lr", default 1e-3) with the gradient
 *           e^s_t L_t - 1, which drives e^s_t L_t to 1.
 *   full    (default) both, as in LibMTL: IMTL-G on the gradients of the scaled losses
 *           (Gram diag(e^s) G diag(e^s)), weight a_t e^s_t.
 * Key "variant" selects; the names imtl_g and imtl_l create the variants directly. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "weighting/solvers.h"
#include "weighting/weighting_internal.h"

static const char *const imtl_variants[] = {"full", "imtl_g", "imtl_l", NULL};
static const mtli_wkey imtl_keys[] = {
    MTLI_KS("variant", 0, imtl_variants),
    MTLI_KD("lr", 1e-3, 0.0, 1e3, true),
};
enum { IMTL_VARIANT, IMTL_LR };
enum { V_FULL, V_G, V_L };

static unsigned imtl_needs(const mtl_weighting *w)
{
    return mtli_wks(w, IMTL_VARIANT) == V_L ? MTLI_NEED_L : MTLI_NEED_G;
}

/* state: s[T], adam[2T+1] */
static size_t imtl_state(const mtl_weighting *w, int T)
{
    (void)w;
    return (size_t)T + mtli_wadam_size(T);
}

static size_t imtl_ws(int T) { return mtli_wgram_ws(T) + 2 * (size_t)T; }

/* a = G^+ n / sum(G^+ n) on the tasks with non-zero gradients; G is k x k. */
static mtl_status imtl_g(const mtl_weighting *w, mtli_wctx *c, const double *G, double *a)
{
    const int k = c->k;
    double *ex = mtli_wgram_extra(c), *Gs = ex, *n = Gs + (size_t)k * k, *x = n + k,
           *chk = x + k;
    int *sub = (int *)(void *)(chk + k);
    double nmax = 0.0;
    for (int i = 0; i < k; i++)
        nmax = fmax(nmax, sqrt(G[(size_t)i * k + i]));
    int m = 0;
    for (int i = 0; i < k; i++) {
        a[i] = 0.0;
        double ni = sqrt(G[(size_t)i * k + i]);
        if (ni > 1e-150 && ni > 1e-15 * nmax)
            sub[m++] = i;
    }
    if (m == 0) {
        for (int i = 0; i < k; i++)
            a[i] = 1.0 / k;
        return MTL_OK;
    }
    for (int i = 0; i < m; i++) {
        n[i] = sqrt(G[(size_t)sub[i] * k + sub[i]]);
        for (int j = 0; j < m; j++)
            Gs[(size_t)i * m + j] = G[(size_t)sub[i] * k + sub[j]];
    }
    if (mtli_sym_pinv_solve(m, Gs, n, x, 1e-12, c->ws) < 0)
        return mtli_error(MTL_ERR_NUMERIC,
                          "weighting '%s': the eigen-decomposition of the Gram did not converge",
                          w->m->name);
    mtli_symv(m, Gs, x, chk);
    double res = 0.0, nn = 0.0, sum = 0.0;
    for (int i = 0; i < m; i++) {
        res += (chk[i] - n[i]) * (chk[i] - n[i]);
        nn += n[i] * n[i];
        sum += x[i];
    }
    res = sqrt(res / nn);
    if (!(res <= 1e-6) || !(fabs(sum) * nmax > 1e-12))
        return mtli_error(MTL_ERR_NUMERIC,
                          "weighting '%s': no combination of the task gradients has equal "
                          "projections on all of them (relative residual %g, tolerance 1e-6): "
                          "the gradients are linearly dependent",
                          w->m->name, res);
    for (int i = 0; i < m; i++)
        a[sub[i]] = x[i] / sum;
    return MTL_OK;
}

static mtl_status imtl_apply(mtl_weighting *w, mtli_wctx *c)
{
    const int k = c->k, T = w->T;
    int variant = mtli_wks(w, IMTL_VARIANT);
    /* after the Gram workspace: e[T] (scales of the active tasks), grad[T] */
    double *s = w->ms, *e = w->ws + mtli_wgram_ws(T), *grad = e + T;
    for (int a = 0; a < k; a++)
        e[a] = variant == V_G ? 1.0 : exp(s[c->idx[a]]);
    if (variant == V_L) {
        for (int a = 0; a < k; a++)
            c->w[a] = e[a];
    } else {
        double *ex = mtli_wgram_extra(c);
        double *Gp = ex + (size_t)k * k + 4 * (size_t)k; /* beyond imtl_g's arrays */
        double *alpha = Gp + (size_t)k * k;
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                Gp[(size_t)a * k + b] = c->G[(size_t)a * k + b] * e[a] * e[b];
        MTLI_TRY(imtl_g(w, c, Gp, alpha));
        for (int a = 0; a < k; a++)
            c->w[a] = alpha[a] * e[a];
    }
    if (variant != V_G) { /* d/ds (e^s L - s) = e^s L - 1; inactive tasks: 0 */
        for (int t = 0; t < T; t++)
            grad[t] = 0.0;
        for (int a = 0; a < k; a++)
            grad[c->idx[a]] = e[a] * c->L[a] - 1.0;
        mtli_wadam_step(s, grad, s + T, T, mtli_wkd(w, IMTL_LR), 0.0);
    }
    return MTL_OK;
}

const mtli_wmethod mtli_w_imtl = {
    .name = "imtl", .needs = MTLI_NEED_G, .needs_fn = imtl_needs, .rep_capable = true,
    .keys = imtl_keys, .nkeys = 2, .state_size = imtl_state, .ws_size = imtl_ws,
    .apply = imtl_apply,
};
