/* Gradient norms and clipping over the flat gradient buffer. */
#include <math.h>

#include "optim/optim_internal.h"

double mtli_sum_squares(const float *g, size_t n)
{
    /* four independent accumulators: a fixed summation order (deterministic) that does not
     * serialise on one addition chain */
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        double a = g[i], b = g[i + 1], c = g[i + 2], d = g[i + 3];
        s0 += a * a;
        s1 += b * b;
        s2 += c * c;
        s3 += d * d;
    }
    for (; i < n; i++) {
        double a = g[i];
        s0 += a * a;
    }
    return (s0 + s1) + (s2 + s3);
}

double mtli_l2_norm(const float *g, size_t n) { return sqrt(mtli_sum_squares(g, n)); }

void mtli_clamp(float *restrict g, size_t n, float v)
{
    const float lo = -v;
    for (size_t i = 0; i < n; i++) {
        float x = g[i];
        x = x < lo ? lo : x;
        g[i] = x > v ? v : x;
    }
}

void mtli_scale(float *restrict g, size_t n, float s)
{
    for (size_t i = 0; i < n; i++)
        g[i] *= s;
}
