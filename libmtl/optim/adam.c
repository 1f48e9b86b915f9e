/* Adam and AdamW as PyTorch 1.13 torch.optim.Adam / AdamW (single-tensor path), with
 * t = step number (1-based), per element:
 *   adam:   g = g + weight_decay * p                 (L2 in the gradient)
 *   adamw:  p = p * (1 - lr * weight_decay)          (decoupled, before the Adam step)
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g * g
 *   amsgrad: vmax = max(vmax, v), used in place of v below
 *   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps) */
#include <math.h>

#include "optim/optim_internal.h"

typedef struct {
    float b1, omb1, b2, omb2, eps, bc2s, nstep, wd, decay;
} adam_coef;

/* always inlined: each call site has constant flags, so the flag tests leave the loop and it
 * vectorises */
static inline __attribute__((always_inline)) void adam_loop(float *restrict p, const float *restrict g, float *restrict m,
                      float *restrict v, float *restrict vmax, size_t n, adam_coef c,
                      int decoupled, int amsgrad)
{
    for (size_t i = 0; i < n; i++) {
        float pi = p[i], gi = g[i];
        if (decoupled)
            pi *= c.decay;
        else
            gi += c.wd * pi;
        float mi = m[i] * c.b1 + c.omb1 * gi;
        float vi = v[i] * c.b2 + c.omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (amsgrad) {
            float x = vmax[i];
            vi = vi > x ? vi : x;
            vmax[i] = vi;
        }
        float den = sqrtf(vi) / c.bc2s + c.eps;
        p[i] = pi + c.nstep * (mi / den);
    }
}

void mtli_adam_update(mtl_optimizer *o, float *p, const float *g, size_t off, size_t n,
                      double lr)
{
    const double b1 = o->v[MTLI_K_BETA1], b2 = o->v[MTLI_K_BETA2];
    const double t = (double)(o->step + 1);
    const double wd = o->v[MTLI_K_WEIGHT_DECAY];
    adam_coef c;
    c.b1 = (float)b1;
    c.omb1 = (float)(1.0 - b1);
    c.b2 = (float)b2;
    c.omb2 = (float)(1.0 - b2);
    c.eps = (float)o->v[MTLI_K_EPS];
    c.bc2s = (float)sqrt(1.0 - pow(b2, t));
    c.nstep = (float)(-lr / (1.0 - pow(b1, t)));
    c.wd = (float)wd;
    c.decay = (float)(1.0 - lr * wd);
    const int decoupled = o->kind == MTLI_OPT_ADAMW;
    const int amsgrad = o->v[MTLI_K_AMSGRAD] != 0.0;
    float *m = o->buf[0] + off, *v = o->buf[1] + off;
    float *vmax = amsgrad ? o->buf[2] + off : NULL;
    /* the flags are loop-invariant: one specialised loop per combination */
    if (decoupled) {
        if (amsgrad)
            adam_loop(p, g, m, v, vmax, n, c, 1, 1);
        else
            adam_loop(p, g, m, v, vmax, n, c, 1, 0);
    } else {
        if (amsgrad)
            adam_loop(p, g, m, v, vmax, n, c, 0, 1);
        else
            adam_loop(p, g, m, v, vmax, n, c, 0, 0);
    }
}
