/* Softmax cross-entropy with class weights and label smoothing, as PyTorch's
 * F.cross_entropy(logits, target, weight=w, label_smoothing=eps, reduction='mean'):
 *
 *   nll_i    = lse_i - z_{i,y_i}                         (lse: log-sum-exp of row i)
 *   smooth_i = sum_c w_c (lse_i - z_{i,c})
 *   loss     = [ (1-eps) sum_i w_{y_i} nll_i + (eps/C) sum_i smooth_i ] / sum_i w_{y_i}
 *
 * over the valid samples i (w = 1 without class weights, so the denominator is the count).
 * PyTorch normalises the smoothing term by the same sum of target weights, not by the number
 * of samples. Gradient for row i: [ (1-eps) w_{y_i} (p - e_{y_i}) + (eps/C)(W p - w) ] / D with
 * p = softmax(z_i), W = sum_c w_c and D the denominator above. When D is 0 (every valid
 * target has weight 0) the loss and gradient are 0 instead of PyTorch's NaN.
 *
 * Token level (mtli_loss_eval_ce_rows with per = P positions): the B*P rows are tokens and
 * the mean runs over every valid token of the batch, as F.cross_entropy on the flattened
 * [B*P, C] logits with ignore_index=-1; mask entry i/P covers the P tokens of sample i. */
#include <math.h>
#include <string.h>

#include "losses/loss_impl.h"

void mtli_loss_eval_ce(const mtli_loss *L, const float *logits, size_t B, size_t C,
                       const int32_t *target, const mtl_tensor *mask, double *loss,
                       float *dlogits, float scale, size_t *count)
{
    mtli_loss_eval_ce_rows(L, logits, B, C, target, mask, 1, loss, dlogits, scale, count);
}

void mtli_loss_eval_ce_rows(const mtli_loss *L, const float *logits, size_t B, size_t C,
                            const int32_t *target, const mtl_tensor *mask, size_t per,
                            double *loss, float *dlogits, float scale, size_t *count)
{
    const float *w = L->class_weights;
    const double eps = L->label_smoothing;
    const double a = 1.0 - eps, b = eps / (double)C;

    double wsum = 0.0; /* W = sum_c w_c */
    if (w) {
        for (size_t c = 0; c < C; c++)
            wsum += w[c];
    } else {
        wsum = (double)C;
    }

    size_t n = 0;
    double denom = 0.0;
    for (size_t i = 0; i < B; i++) {
        if (target[i] < 0 || !mtli_loss_keep(mask, i / per))
            continue;
        n++;
        denom += w ? (double)w[target[i]] : 1.0;
    }
    *count = n;
    if (dlogits)
        memset(dlogits, 0, B * C * sizeof *dlogits);
    if (n == 0 || denom == 0.0) {
        *loss = 0.0;
        return;
    }

    const double gs = (double)scale / denom;
    double total = 0.0;
    for (size_t i = 0; i < B; i++) {
        int32_t y = target[i];
        if (y < 0 || !mtli_loss_keep(mask, i / per))
            continue;
        const float *z = logits + i * C;
        double m = z[0];
        for (size_t c = 1; c < C; c++)
            m = z[c] > m ? z[c] : m;
        double s = 0.0;
        for (size_t c = 0; c < C; c++)
            s += exp((double)z[c] - m);
        const double lse = m + log(s);
        const double wy = w ? (double)w[y] : 1.0;
        double term = a * wy * (lse - (double)z[y]);
        if (eps > 0.0) {
            double wz = 0.0;
            for (size_t c = 0; c < C; c++)
                wz += (w ? (double)w[c] : 1.0) * (double)z[c];
            term += b * (wsum * lse - wz);
        }
        total += term;
        if (dlogits) {
            float *g = dlogits + i * C;
            const double coef = a * wy + b * wsum; /* multiplies p_c */
            for (size_t c = 0; c < C; c++) {
                double p = exp((double)z[c] - lse);
                double gc = coef * p - b * (w ? (double)w[c] : 1.0);
                if ((int32_t)c == y)
                    gc -= a * wy;
                g[c] = (float)(gc * gs);
            }
        }
    }
    *loss = total / denom;
}
