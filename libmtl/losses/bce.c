/* Binary cross-entropy on logits, as PyTorch's
 * F.binary_cross_entropy_with_logits(x, y, weight=w, reduction='mean'):
 *   l = w_c [ max(x, 0) - x y + log1p(exp(-|x|)) ],  loss = sum l / (number of valid entries)
 * (PyTorch's weight rescales each element; the mean stays over the element count). The form
 * above never overflows. Gradient: w_c (sigmoid(x) - y) / n. */
#include <math.h>
#include <string.h>

#include "losses/loss_impl.h"

static double sigmoid(double x)
{
    if (x >= 0.0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

void mtli_loss_eval_bce(const mtli_loss *L, const float *logits, size_t B, size_t C,
                        const float *target, const mtl_tensor *mask, double *loss,
                        float *dlogits, float scale, size_t *count)
{
    const float *w = L->class_weights;
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
    double total = 0.0;
    for (size_t i = 0; i < B; i++) {
        if (!mtli_loss_keep(mask, i))
            continue;
        for (size_t c = 0; c < C; c++) {
            size_t k = i * C + c;
            double y = target[k];
            if (isnan(y))
                continue;
            double x = logits[k];
            double wc = w ? (double)w[c] : 1.0;
            total += wc * (fmax(x, 0.0) - x * y + log1p(exp(-fabs(x))));
            if (dlogits)
                dlogits[k] = (float)(wc * (sigmoid(x) - y) * gs);
        }
    }
    *loss = total / (double)n;
}
