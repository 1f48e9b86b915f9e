/* Aligned-MTL (Senushkin et al., CVPR 2023, "Independent component alignment for
 * multi-task learning").
 *
 * With G = V diag(lambda) V' (eigenvalues descending, rank r: eigenvalues above
 * lambda_max * k * 1.19e-7, the float32 tolerance of the reference code, which works on
 * float gradients), the balancing matrix is
 *     B = sqrt(lambda_r) V_r diag(lambda_r^-1/2) V_r'
 * and the aligned gradients are the rows of B J: their Gram B G B = lambda_r V_r V_r' has
 * all r non-zero eigenvalues equal (a condition number of 1). The update is their sum,
 * so the weights are B 1 (sum scale, as in the reference code's default equal preference).
 * Eigen-decomposition: cyclic Jacobi (solvers.c). */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "weighting/solvers.h"
#include "weighting/weighting_internal.h"

static size_t gram_ws(int T) { return mtli_wgram_ws(T); }

int mtli_aligned_balance(int k, const double *G, double *B, double *ws)
{
    double *A = ws, *V = A + (size_t)k * k, *ev = V + (size_t)k * k;
    memcpy(A, G, (size_t)k * k * sizeof(double));
    if (mtli_sym_eig(k, A, ev, V) < 0)
        return -1;
    double tol = ev[0] * k * 1.1920928955078125e-07;
    int r = 0;
    while (r < k && ev[r] > tol && ev[r] > 0.0)
        r++;
    memset(B, 0, (size_t)k * k * sizeof(double));
    if (r == 0)
        return 0;
    double lmin = ev[r - 1];
    for (int j = 0; j < r; j++) {
        double f = sqrt(lmin / ev[j]);
        for (int a = 0; a < k; a++) {
            double va = V[(size_t)a * k + j] * f;
            for (int b = 0; b < k; b++)
                B[(size_t)a * k + b] += va * V[(size_t)b * k + j];
        }
    }
    return r;
}

static mtl_status aligned_apply(mtl_weighting *w, mtli_wctx *c)
{
    (void)w;
    const int k = c->k;
    double *ex = mtli_wgram_extra(c), *B = ex, *aws = ex + (size_t)k * k;
    int r = mtli_aligned_balance(k, c->G, B, aws);
    if (r < 0)
        return mtli_error(MTL_ERR_NUMERIC,
                          "weighting 'aligned_mtl': the eigen-decomposition of the Gram did "
                          "not converge in 64 Jacobi sweeps");
    for (int a = 0; a < k; a++) {
        double s = 0.0;
        for (int b = 0; b < k; b++)
            s += B[(size_t)a * k + b];
        c->w[a] = r == 0 ? 1.0 : s; /* every gradient zero: nothing to align */
    }
    return MTL_OK;
}

const mtli_wmethod mtli_w_aligned_mtl = {
    .name = "aligned_mtl", .needs = MTLI_NEED_G, .rep_capable = true, .ws_size = gram_ws,
    .apply = aligned_apply,
};
