/* Parameter initialisation schemes, with PyTorch's torch.nn.init definitions. */
#include <math.h>

#include "layers/layer.h"

static void fill_uniform(float *p, size_t n, double bound, mtli_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(bound * (2.0 * mtli_rng_uniform_double(rng) - 1.0));
}

static void fill_normal(float *p, size_t n, double std, mtli_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(std * mtli_rng_normal(rng));
}

static void fill_const(float *p, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        p[i] = v;
}

void mtli_init_fill(float *p, size_t n, mtli_init scheme, size_t fan_in, size_t fan_out,
                    double gain, double std, mtli_rng *rng)
{
    if (p == NULL || n == 0)
        return;
    double fi = (double)fan_in, fsum = (double)fan_in + (double)fan_out;
    switch (scheme) {
    case MTLI_INIT_ONES:
        fill_const(p, n, 1.0f);
        return;
    case MTLI_INIT_KAIMING_UNIFORM:
        /* kaiming_uniform_(a=sqrt(5)): sqrt(2/(1+5)) * sqrt(3/fan_in) = 1/sqrt(fan_in) */
        fill_uniform(p, n, fan_in ? gain / sqrt(fi) : 0.0, rng);
        return;
    case MTLI_INIT_KAIMING_NORMAL:
        fill_normal(p, n, fan_in ? gain * sqrt(2.0 / fi) : 0.0, rng);
        return;
    case MTLI_INIT_XAVIER_UNIFORM:
        fill_uniform(p, n, fsum > 0 ? gain * sqrt(6.0 / fsum) : 0.0, rng);
        return;
    case MTLI_INIT_XAVIER_NORMAL:
        fill_normal(p, n, fsum > 0 ? gain * sqrt(2.0 / fsum) : 0.0, rng);
        return;
    case MTLI_INIT_NORMAL:
        fill_normal(p, n, std, rng);
        return;
    case MTLI_INIT_BIAS_UNIFORM:
        fill_uniform(p, n, fan_in ? 1.0 / sqrt(fi) : 0.0, rng);
        return;
    case MTLI_INIT_ZEROS:
    case MTLI_INIT_DEFAULT:
    default:
        fill_const(p, n, 0.0f);
        return;
    }
}
