/* Adagrad as PyTorch 1.13 torch.optim.Adagrad (dense, single-tensor path), with t = step
 * number (1-based), per element:
 *   g = g + weight_decay * p
 *   clr = lr / (1 + (t - 1) * lr_decay)
 *   sum = sum + g * g                (sum starts at initial_accumulator_value)
 *   p = p - clr * g / (sqrt(sum) + eps) */
#include <math.h>

#include "optim/optim_internal.h"

void mtli_adagrad_update(mtl_optimizer *o, float *p, const float *g, size_t off, size_t n,
                         double lr)
{
    const double t = (double)(o->step + 1);
    const float nclr = (float)(-lr / (1.0 + (t - 1.0) * o->v[MTLI_K_LR_DECAY]));
    const float eps = (float)o->v[MTLI_K_EPS];
    const float wd = (float)o->v[MTLI_K_WEIGHT_DECAY];
    float *restrict s = o->buf[0] + off;
    float *restrict pp = p;
    const float *restrict gg = g;
    for (size_t i = 0; i < n; i++) {
        float gi = gg[i] + wd * pp[i];
        float si = s[i] + gi * gi;
        s[i] = si;
        pp[i] += nclr * (gi / (sqrtf(si) + eps));
    }
}
