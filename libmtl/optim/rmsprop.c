/* RMSprop as PyTorch 1.13 torch.optim.RMSprop (single-tensor path), per element:
 *   g = g + weight_decay * p
 *   s = alpha * s + (1 - alpha) * g * g
 *   centered:  a = alpha * a + (1 - alpha) * g;  avg = sqrt(max(s - a*a, 0)) + eps
 *   else:      avg = sqrt(s) + eps
 *   momentum > 0:  buf = momentum * buf + g / avg;  p = p - lr * buf
 *   else:          p = p - lr * g / avg
 * (s - a*a is non-negative in exact arithmetic; the max keeps rounding from producing NaN.) */
#include <math.h>

#include "optim/optim_internal.h"

typedef struct {
    float alpha, oma, eps, wd, mom, nlr;
} rms_coef;

static inline __attribute__((always_inline)) void rms_loop(float *restrict p, const float *restrict g, float *restrict s,
                     float *restrict b, float *restrict a, size_t n, rms_coef c, int centered,
                     int momentum)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + c.wd * p[i];
        float si = s[i] * c.alpha + c.oma * gi * gi;
        s[i] = si;
        float avg;
        if (centered) {
            float ai = a[i] * c.alpha + c.oma * gi;
            a[i] = ai;
            float var = si - ai * ai;
            avg = sqrtf(var > 0.0f ? var : 0.0f) + c.eps;
        } else {
            avg = sqrtf(si) + c.eps;
        }
        if (momentum) {
            float bi = b[i] * c.mom + gi / avg;
            b[i] = bi;
            p[i] += c.nlr * bi;
        } else {
            p[i] += c.nlr * (gi / avg);
        }
    }
}

void mtli_rmsprop_update(mtl_optimizer *o, float *p, const float *g, size_t off, size_t n,
                         double lr)
{
    const double alpha = o->v[MTLI_K_ALPHA];
    rms_coef c;
    c.alpha = (float)alpha;
    c.oma = (float)(1.0 - alpha);
    c.eps = (float)o->v[MTLI_K_EPS];
    c.wd = (float)o->v[MTLI_K_WEIGHT_DECAY];
    c.mom = (float)o->v[MTLI_K_MOMENTUM];
    c.nlr = (float)-lr;
    const int centered = o->v[MTLI_K_CENTERED] != 0.0;
    const int momentum = o->v[MTLI_K_MOMENTUM] > 0.0;
    float *s = o->buf[0] + off;
    float *b = momentum ? o->buf[1] + off : NULL;
    float *a = centered ? o->buf[2] + off : NULL;
    if (centered) {
        if (momentum)
            rms_loop(p, g, s, b, a, n, c, 1, 1);
        else
            rms_loop(p, g, s, b, a, n, c, 1, 0);
    } else {
        if (momentum)
            rms_loop(p, g, s, b, a, n, c, 0, 1);
        else
            rms_loop(p, g, s, b, a, n, c, 0, 0);
    }
}
