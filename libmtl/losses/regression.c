/* Regression losses on raw outputs, as PyTorch's MSELoss, L1Loss and HuberLoss(delta) with
 * reduction 'mean' over the valid (non-NaN, unmasked) entries, d = output - target:
 *   mse    d^2                                   gradient 2 d / n
 *   l1     |d|                                   gradient sign(d) / n (0 at d = 0)
 *   huber  d^2/2 if |d| < delta,                 gradient d / n inside [-delta, delta],
 *          delta (|d| - delta/2) otherwise       delta sign(d) / n outside */
#include <math.h>
#include <string.h>

#include "losses/loss_impl.h"

void mtli_loss_eval_regression(const mtli_loss *L, const float *out, size_t B, size_t C,
                               const float *target, const mtl_tensor *mask, double *loss,
                               float *dlogits, float scale, size_t *count)
{
    size_t n = 0;
    for (size_t i = 0; i < B; i++) {
        if (!mtli_loss_keep(mask, i))
            continue;
        for (size_t c = 0; c < C; c++)
            n += !isnan(target[i * C + c]);
    }
    *count = n;
    if (dlogits)
        memset(dlogits, 0, B * C * sizeof *dlogits);
    if (n == 0) {
        *loss = 0.0;
        return;
    }
    const double gs = (double)scale / (double)n;
    const double delta = L->delta;
    double total = 0.0;
    for (size_t i = 0; i < B; i++) {
        if (!mtli_loss_keep(mask, i))
            continue;
        for (size_t c = 0; c < C; c++) {
            size_t k = i * C + c;
            double y = target[k];
            if (isnan(y))
                continue;
            double d = (double)out[k] - y;
            double l, g;
            switch (L->kind) {
            case MTLI_LOSS_MSE:
                l = d * d;
                g = 2.0 * d;
                break;
            case MTLI_LOSS_L1:
                l = fabs(d);
                g = (d > 0.0) - (d < 0.0);
                break;
            default: /* huber */
                if (fabs(d) < delta) {
                    l = 0.5 * d * d;
                    g = d;
                } else {
                    l = delta * (fabs(d) - 0.5 * delta);
                    g = d > 0.0 ? delta : -delta;
                }
                break;
            }
            total += l;
            if (dlogits)
                dlogits[k] = (float)(g * gs);
        }
    }
    *loss = total / (double)n;
}
