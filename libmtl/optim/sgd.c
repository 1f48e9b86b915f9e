/* SGD as PyTorch 1.13 torch.optim.SGD (single-tensor path), per element:
 *   d = g + weight_decay * p
 *   momentum > 0:  buf = d on the first step, else buf = momentum * buf + (1 - dampening) * d
 *                  d = nesterov ? d + momentum * buf : buf
 *   p = p - lr * d
 * "First step" is step count 0 (creation or reset); a momentum buffer enabled later starts
 * from zero. */
#include "optim/optim_internal.h"

static void plain(float *restrict p, const float *restrict g, size_t n, float nlr, float wd)
{
    if (wd != 0.0f) {
        for (size_t i = 0; i < n; i++)
            p[i] += nlr * (g[i] + wd * p[i]);
    } else {
        for (size_t i = 0; i < n; i++)
            p[i] += nlr * g[i];
    }
}

static void with_momentum(float *restrict p, const float *restrict g, float *restrict b,
                          size_t n, float nlr, float wd, float mom, float damp1, int first,
                          int nesterov)
{
    if (first) {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            b[i] = d;
            p[i] += nlr * (nesterov ? d + mom * d : d);
        }
        return;
    }
    if (nesterov) {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            float bi = b[i] * mom + damp1 * d;
            b[i] = bi;
            p[i] += nlr * (d + mom * bi);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            float bi = b[i] * mom + damp1 * d;
            b[i] = bi;
            p[i] += nlr * bi;
        }
    }
}

void mtli_sgd_update(mtl_optimizer *o, float *p, const float *g, size_t off, size_t n,
                     double lr)
{
    const float nlr = (float)-lr;
    const float wd = (float)o->v[MTLI_K_WEIGHT_DECAY];
    const double mom = o->v[MTLI_K_MOMENTUM];
    if (mom == 0.0) {
        plain(p, g, n, nlr, wd);
        return;
    }
    with_momentum(p, g, o->buf[0] + off, n, nlr, wd, (float)mom,
                  (float)(1.0 - o->v[MTLI_K_DAMPENING]), o->step == 0,
                  o->v[MTLI_K_NESTEROV] != 0.0);
}
