/* 2-d pooling, as torch.nn.MaxPool2d and torch.nn.AvgPool2d (dilation 1, floor mode):
 * input [C, H, W] per sample, output [C, Ho, Wo], Ho = (H + 2*ph - kh)/sh + 1; stride
 * defaults to the kernel, padding is at most half the kernel (as PyTorch requires).
 *
 * max_pool2d: the maximum over the window's positions inside the input (padding never
 *   wins), scanned row by row; the first maximum wins ties and a NaN wins over numbers, as
 *   PyTorch's CPU kernel. Scratch: the position (h*W + w within its channel) of each
 *   output's maximum, B*C*Ho*Wo int32 values, used by backward to route dy.
 * avg_pool2d: the window's sum divided by kh*kw (count_include_pad = 1, PyTorch's default:
 *   padded zeros count) or by the number of positions inside the input (0). No scratch. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "layers/layer.h"

static mtl_status pool_setup(mtli_layer *l)
{
    MTLI_TRY(mtli_layer_setup_input(l));
    mtli_conv_geom g;
    MTLI_TRY(mtli_layer_window_setup(l, true, &g));
    if (l->in_dims[1] * l->in_dims[2] > INT32_MAX)
        return mtli_error(MTL_ERR_RANGE, "%s: input planes of %lldx%lld positions are too large",
                          l->ops->kind, (long long)l->in_dims[1], (long long)l->in_dims[2]);
    l->out_ndim = 3;
    l->out_dims[0] = l->in_dims[0];
    l->out_dims[1] = (int64_t)g.Ho;
    l->out_dims[2] = (int64_t)g.Wo;
    l->out_features = g.C * g.Ho * g.Wo;
    return MTL_OK;
}

static void pool_init(mtli_layer *l, mtli_rng *rng)
{
    (void)l;
    (void)rng;
}

/* Window of output (oh, ow) clipped to the input: rows [h0, h1), columns [w0, w1). */
typedef struct {
    ptrdiff_t h0, h1, w0, w1;
} window;

static window window_at(const mtli_conv_geom *g, size_t oh, size_t ow)
{
    window w;
    w.h0 = (ptrdiff_t)(oh * g->sh) - (ptrdiff_t)g->ph;
    w.w0 = (ptrdiff_t)(ow * g->sw) - (ptrdiff_t)g->pw;
    w.h1 = w.h0 + (ptrdiff_t)g->kh;
    w.w1 = w.w0 + (ptrdiff_t)g->kw;
    if (w.h0 < 0)
        w.h0 = 0;
    if (w.w0 < 0)
        w.w0 = 0;
    if (w.h1 > (ptrdiff_t)g->H)
        w.h1 = (ptrdiff_t)g->H;
    if (w.w1 > (ptrdiff_t)g->W)
        w.w1 = (ptrdiff_t)g->W;
    return w;
}

/* ======================================= max_pool2d ====================================== */

static size_t maxpool_scratch(const mtli_layer *l, size_t B) { return B * l->out_features; }

/* Without padding every window lies inside the input, so the windows of one output row can
 * be updated together, tap by tap: a running maximum per output, vectorised over the row with
 * selects instead of unpredictable branches. The taps are visited in the window's row-major
 * order and the comparisons are the general loop's, so the results are identical. */
static void maxpool_forward_nopad(const mtli_conv_geom *g, const mtli_fwd *f, int32_t *idx)
{
    const size_t HW = g->H * g->W, planes = f->B * g->C, W = g->W, Wo = g->Wo, sw = g->sw;
    for (size_t p = 0; p < planes; p++) {
        const float *x = f->x + p * HW;
        for (size_t oh = 0; oh < g->Ho; oh++) {
            size_t h0 = oh * g->sh;
            float *y = f->y + (p * g->Ho + oh) * Wo;
            int32_t *ix = idx + (p * g->Ho + oh) * Wo;
            for (size_t ow = 0; ow < Wo; ow++) {
                y[ow] = -INFINITY;
                ix[ow] = (int32_t)(h0 * W + ow * sw);
            }
            for (size_t i = 0; i < g->kh; i++)
                for (size_t j = 0; j < g->kw; j++) {
                    const float *r = x + (h0 + i) * W + j;
                    int32_t base = (int32_t)((h0 + i) * W + j), step = (int32_t)sw;
                    for (size_t ow = 0; ow < Wo; ow++) {
                        float v = r[ow * sw], m = y[ow];
                        bool c = (v > m) | (v != v);
                        y[ow] = c ? v : m;
                        ix[ow] = c ? base + (int32_t)ow * step : ix[ow];
                    }
                }
        }
    }
}

static void maxpool_forward(mtli_layer *l, const mtli_fwd *f)
{
    mtli_conv_geom g;
    mtli_layer_window(l, true, &g);
    const size_t HW = g.H * g.W, planes = f->B * g.C;
    int32_t *idx = (int32_t *)f->scratch;
    if (g.ph == 0 && g.pw == 0) {
        maxpool_forward_nopad(&g, f, idx);
        return;
    }
    for (size_t p = 0; p < planes; p++) {
        const float *x = f->x + p * HW;
        float *y = f->y + p * g.Ho * g.Wo;
        int32_t *ix = idx + p * g.Ho * g.Wo;
        for (size_t oh = 0; oh < g.Ho; oh++)
            for (size_t ow = 0; ow < g.Wo; ow++) {
                window w = window_at(&g, oh, ow);
                ptrdiff_t best = w.h0 * (ptrdiff_t)g.W + w.w0;
                float m = -INFINITY;
                for (ptrdiff_t h = w.h0; h < w.h1; h++) {
                    const float *r = x + h * (ptrdiff_t)g.W;
                    for (ptrdiff_t c = w.w0; c < w.w1; c++) {
                        float v = r[c];
                        if (v > m || isnan(v)) {
                            m = v;
                            best = h * (ptrdiff_t)g.W + c;
                        }
                    }
                }
                y[oh * g.Wo + ow] = m;
                ix[oh * g.Wo + ow] = (int32_t)best;
            }
    }
}

static void maxpool_backward(const mtli_layer *l, const mtli_bwd *b)
{
    if (!b->dx)
        return;
    mtli_conv_geom g;
    mtli_layer_window(l, true, &g);
    const size_t HW = g.H * g.W, N = g.Ho * g.Wo, planes = b->B * g.C;
    const int32_t *idx = (const int32_t *)b->scratch;
    memset(b->dx, 0, planes * HW * sizeof(float));
    for (size_t p = 0; p < planes; p++) {
        float *dx = b->dx + p * HW;
        const float *dy = b->dy + p * N;
        const int32_t *ix = idx + p * N;
        for (size_t n = 0; n < N; n++)
            dx[ix[n]] += dy[n];
    }
}

const mtli_layer_ops mtli_max_pool2d_ops = {
    .kind = "max_pool2d",
    .setup = pool_setup,
    .init = pool_init,
    .scratch_floats = maxpool_scratch,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .check = NULL,
};

/* ======================================= avg_pool2d ====================================== */

static size_t avgpool_scratch(const mtli_layer *l, size_t B)
{
    (void)l;
    (void)B;
    return 0;
}

static float avg_divisor(const mtli_layer *l, const mtli_conv_geom *g, const window *w)
{
    if (l->opts.count_include_pad)
        return (float)(g->kh * g->kw);
    return (float)((w->h1 - w->h0) * (w->w1 - w->w0));
}

static void avgpool_forward(mtli_layer *l, const mtli_fwd *f)
{
    mtli_conv_geom g;
    mtli_layer_window(l, true, &g);
    const size_t HW = g.H * g.W, planes = f->B * g.C;
    for (size_t p = 0; p < planes; p++) {
        const float *x = f->x + p * HW;
        float *y = f->y + p * g.Ho * g.Wo;
        for (size_t oh = 0; oh < g.Ho; oh++)
            for (size_t ow = 0; ow < g.Wo; ow++) {
                window w = window_at(&g, oh, ow);
                float s = 0.0f;
                for (ptrdiff_t h = w.h0; h < w.h1; h++) {
                    const float *r = x + h * (ptrdiff_t)g.W;
                    for (ptrdiff_t c = w.w0; c < w.w1; c++)
                        s += r[c];
                }
                y[oh * g.Wo + ow] = s / avg_divisor(l, &g, &w);
            }
    }
}

static void avgpool_backward(const mtli_layer *l, const mtli_bwd *b)
{
    if (!b->dx)
        return;
    mtli_conv_geom g;
    mtli_layer_window(l, true, &g);
    const size_t HW = g.H * g.W, planes = b->B * g.C;
    memset(b->dx, 0, planes * HW * sizeof(float));
    for (size_t p = 0; p < planes; p++) {
        float *dx = b->dx + p * HW;
        const float *dy = b->dy + p * g.Ho * g.Wo;
        for (size_t oh = 0; oh < g.Ho; oh++)
            for (size_t ow = 0; ow < g.Wo; ow++) {
                window w = window_at(&g, oh, ow);
                float d = dy[oh * g.Wo + ow] / avg_divisor(l, &g, &w);
                for (ptrdiff_t h = w.h0; h < w.h1; h++) {
                    float *r = dx + h * (ptrdiff_t)g.W;
                    for (ptrdiff_t c = w.w0; c < w.w1; c++)
                        r[c] += d;
                }
            }
    }
}

const mtli_layer_ops mtli_avg_pool2d_ops = {
    .kind = "avg_pool2d",
    .setup = pool_setup,
    .init = pool_init,
    .scratch_floats = avgpool_scratch,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .check = NULL,
};
