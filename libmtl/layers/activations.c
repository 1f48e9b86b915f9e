/* Elementwise activations: relu, leaky_relu, gelu (exact and tanh), tanh, sigmoid, with
 * PyTorch's definitions. No parameters, no scratch. relu, tanh and sigmoid differentiate from
 * the saved output y, leaky_relu and gelu from the saved input x. Forward and backward work
 * elementwise, so y may share memory with x (in place) where the backward reads y, and dx may
 * share memory with dy. */
#include <math.h>

#include "core/error.h"
#include "layers/layer.h"

static mtl_status act_setup(mtli_layer *l)
{
    MTLI_TRY(mtli_layer_setup_input(l));
    mtli_layer_same_shape(l);
    return MTL_OK;
}

static void act_init(mtli_layer *l, mtli_rng *rng)
{
    (void)l;
    (void)rng;
}

static size_t act_scratch(const mtli_layer *l, size_t B)
{
    (void)l;
    (void)B;
    return 0;
}

static size_t act_n(const mtli_layer *l, size_t B) { return B * l->in_features; }

/* ---- relu -------------------------------------------------------------------------------- */

static void relu_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t n = act_n(l, f->B);
    const float *x = f->x;
    float *y = f->y;
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void relu_backward(const mtli_layer *l, const mtli_bwd *b)
{
    if (!b->dx)
        return;
    size_t n = act_n(l, b->B);
    const float *y = b->y, *dy = b->dy;
    float *dx = b->dx;
    for (size_t i = 0; i < n; i++) {
        float d = dy[i]; /* read unconditionally: a select, not a branch */
        dx[i] = y[i] > 0.0f ? d : 0.0f;
    }
}

/* ---- leaky_relu -------------------------------------------------------------------------- */

static void leaky_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t n = act_n(l, f->B);
    float s = (float)l->opts.slope;
    const float *x = f->x;
    float *y = f->y;
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : x[i] * s;
}

static void leaky_backward(const mtli_layer *l, const mtli_bwd *b)
{
    if (!b->dx)
        return;
    size_t n = act_n(l, b->B);
    float s = (float)l->opts.slope;
    const float *x = b->x, *dy = b->dy;
    float *dx = b->dx;
    for (size_t i = 0; i < n; i++)
        dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * s;
}

/* ---- gelu -------------------------------------------------------------------------------- */

#define GELU_SQRT1_2 0.70710678118654752440f
#define GELU_INV_SQRT_2PI 0.39894228040143267794f
#define GELU_BETA 0.79788456080286535588f /* sqrt(2/pi) */
#define GELU_KAPPA 0.044715f

static void gelu_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t n = act_n(l, f->B);
    const float *x = f->x;
    float *y = f->y;
    if (l->opts.gelu_tanh) {
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            float inner = GELU_BETA * (v + GELU_KAPPA * v * v * v);
            y[i] = 0.5f * v * (1.0f + tanhf(inner));
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + erff(v * GELU_SQRT1_2));
        }
    }
}

static void gelu_backward(const mtli_layer *l, const mtli_bwd *b)
{
    if (!b->dx)
        return;
    size_t n = act_n(l, b->B);
    const float *x = b->x, *dy = b->dy;
    float *dx = b->dx;
    if (l->opts.gelu_tanh) {
        for (size_t i = 0; i < n; i++) {
            float v = x[i], v2 = v * v;
            float t = tanhf(GELU_BETA * (v + GELU_KAPPA * v2 * v));
            float left_d = 0.5f * (1.0f + t);
            float right_d = 0.5f * v * (1.0f - t * t) * GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * v2);
            dx[i] = dy[i] * (left_d + right_d);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            float cdf = 0.5f * (1.0f + erff(v * GELU_SQRT1_2));
            float pdf = expf(-0.5f * v * v) * GELU_INV_SQRT_2PI;
            dx[i] = dy[i] * (cdf + v * pdf);
        }
    }
}

/* ---- tanh -------------------------------------------------------------------------------- */

static void tanh_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t n = act_n(l, f->B);
    const float *x = f->x;
    float *y = f->y;
    for (size_t i = 0; i < n; i++)
        y[i] = tanhf(x[i]);
}

static void tanh_backward(const mtli_layer *l, const mtli_bwd *b)
{
    if (!b->dx)
        return;
    size_t n = act_n(l, b->B);
    const float *y = b->y, *dy = b->dy;
    float *dx = b->dx;
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

/* ---- sigmoid ----------------------------------------------------------------------------- */

static void sigmoid_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t n = act_n(l, f->B);
    const float *x = f->x;
    float *y = f->y;
    /* exp(-x) overflows to inf for very negative x, giving exactly 0, never NaN */
    for (size_t i = 0; i < n; i++)
        y[i] = 1.0f / (1.0f + expf(-x[i]));
}

static void sigmoid_backward(const mtli_layer *l, const mtli_bwd *b)
{
    if (!b->dx)
        return;
    size_t n = act_n(l, b->B);
    const float *y = b->y, *dy = b->dy;
    float *dx = b->dx;
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * (1.0f - y[i]) * y[i];
}

#define ACT_OPS(name, kind_str, fwd, bwd)                                                      \
    const mtli_layer_ops name = {.kind = kind_str,                                             \
                                 .setup = act_setup,                                           \
                                 .init = act_init,                                             \
                                 .scratch_floats = act_scratch,                                \
                                 .forward = fwd,                                               \
                                 .backward = bwd,                                              \
                                 .check = NULL}

ACT_OPS(mtli_relu_ops, "relu", relu_forward, relu_backward);
ACT_OPS(mtli_leaky_relu_ops, "leaky_relu", leaky_forward, leaky_backward);
ACT_OPS(mtli_gelu_ops, "gelu", gelu_forward, gelu_backward);
ACT_OPS(mtli_tanh_ops, "tanh", tanh_forward, tanh_backward);
ACT_OPS(mtli_sigmoid_ops, "sigmoid", sigmoid_forward, sigmoid_backward);
