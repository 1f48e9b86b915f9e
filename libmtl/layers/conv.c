/* 2-d convolution, as torch.nn.Conv2d (groups = 1, zero padding): input [C, H, W] per
 * sample, weight [out, C, kh, kw], bias [out], output [out, Ho, Wo] with
 * Ho = (H + 2*ph - dh*(kh-1) - 1)/sh + 1 (and Wo alike).
 *
 * Lowering: the input windows of nb samples are laid side by side in one column matrix
 * col [K = C*kh*kw, nb*Ho*Wo] (kernels/im2col.c), and the convolution is ONE GEMM
 *   Y[out, nb*Ho*Wo] = W[out, K] * col
 * per chunk of nb samples. Backward per chunk: dW[out, K] += dY * col^T (one GEMM), and for
 * the input gradient dcol = W^T * dY (one GEMM) scattered back by col2im.
 *
 * Chunks: nb samples so that one GEMM has about CONV_COLS columns (small feature maps are
 * batched, large ones go one sample at a time), bounded so the column matrix stays within
 * CONV_COL_MAX floats. With nb > 1, Y and dY pass through a [out, nb*Ho*Wo] buffer that is
 * reordered to and from the NCHW layout (out*Ho*Wo copies per sample, K times fewer than
 * the GEMM's multiply-adds); with nb = 1 the GEMMs read and write the activations in place.
 *
 * Scratch: the column matrix (nb*K*Ho*Wo floats) then, when nb > 1, the Y/dY buffer
 * (nb*out*Ho*Wo). It is pure workspace: forward leaves nothing there that backward needs
 * (backward recomputes the columns from its input), so backward uses it too. Its size is
 * bounded by the chunk, not by the batch.
 *
 * Where the windows move one column at a time (stride_w = 1) over maps at least 8 wide with
 * at most 64 output channels, the direct kernels of kernels/conv_direct.c replace the
 * lowering on AVX-512 CPUs: no column matrix, the multiply-adds in vector registers (the
 * LeNet layers of the Multi-Fashion recipe run about twice as fast). The scratch is then the
 * larger of the two routes' needs, still independent of the batch. */
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/conv_direct.h"
#include "kernels/gemm.h"
#include "layers/layer.h"

#define CONV_COLS 4096
#define CONV_COL_MAX ((size_t)1 << 22)

/* ---- window geometry, shared with the pools -------------------------------------------- */

static int64_t opt_or(int64_t v, int64_t dflt) { return v != 0 ? v : dflt; }

void mtli_layer_window(const mtli_layer *l, bool pool, mtli_conv_geom *g)
{
    const mtli_layer_opts *o = &l->opts;
    g->C = (size_t)l->in_dims[0];
    g->H = (size_t)l->in_dims[1];
    g->W = (size_t)l->in_dims[2];
    g->kh = (size_t)o->kernel[0];
    g->kw = (size_t)o->kernel[1];
    g->sh = (size_t)opt_or(o->stride[0], pool ? o->kernel[0] : 1);
    g->sw = (size_t)opt_or(o->stride[1], pool ? o->kernel[1] : 1);
    g->ph = (size_t)o->padding[0];
    g->pw = (size_t)o->padding[1];
    g->dh = pool ? 1 : (size_t)opt_or(o->dilation[0], 1);
    g->dw = pool ? 1 : (size_t)opt_or(o->dilation[1], 1);
    g->Ho = (g->H + 2 * g->ph - g->dh * (g->kh - 1) - 1) / g->sh + 1;
    g->Wo = (g->W + 2 * g->pw - g->dw * (g->kw - 1) - 1) / g->sw + 1;
}

mtl_status mtli_layer_window_setup(const mtli_layer *l, bool pool, mtli_conv_geom *g)
{
    const char *kind = l->ops->kind;
    const mtli_layer_opts *o = &l->opts;
    if (l->in_ndim != 3)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: input has %d dimension(s) per sample, expected 3 (channels, "
                          "height, width)",
                          kind, l->in_ndim);
    if (o->kernel[0] == 0 || o->kernel[1] == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: option 'kernel' (or 'kernel_h' and 'kernel_w') must be set", kind);
    const struct {
        const char *name;
        const int64_t *v;
        int64_t lo;
    } checks[] = {{"kernel", o->kernel, 1},
                  {"stride", o->stride, 0},
                  {"padding", o->padding, 0},
                  {"dilation", o->dilation, 0}};
    for (size_t c = 0; c < sizeof checks / sizeof checks[0]; c++)
        for (int d = 0; d < 2; d++)
            if (checks[c].v[d] < checks[c].lo || checks[c].v[d] > INT32_MAX)
                return mtli_error(MTL_ERR_RANGE, "%s: option '%s_%c' must be in %lld..%d, got %lld",
                                  kind, checks[c].name, d ? 'w' : 'h', (long long)checks[c].lo,
                                  INT32_MAX, (long long)checks[c].v[d]);
    if (pool && (o->padding[0] > o->kernel[0] / 2 || o->padding[1] > o->kernel[1] / 2))
        return mtli_error(MTL_ERR_RANGE,
                          "%s: padding %lldx%lld must be at most half the kernel %lldx%lld",
                          kind, (long long)o->padding[0], (long long)o->padding[1],
                          (long long)o->kernel[0], (long long)o->kernel[1]);
    for (int d = 0; d < 3; d++)
        if (l->in_dims[d] > INT32_MAX)
            return mtli_error(MTL_ERR_RANGE, "%s: input dimension %d is %lld, at most %d", kind,
                              d, (long long)l->in_dims[d], INT32_MAX);
    /* all values below 2^31: the sums and products of two fit in 64 bits */
    int64_t H = l->in_dims[1], W = l->in_dims[2];
    int64_t dh = pool ? 1 : opt_or(o->dilation[0], 1), dw = pool ? 1 : opt_or(o->dilation[1], 1);
    int64_t eh = dh * (o->kernel[0] - 1) + 1, ew = dw * (o->kernel[1] - 1) + 1;
    int64_t Hp = H + 2 * o->padding[0], Wp = W + 2 * o->padding[1];
    if (eh > Hp || ew > Wp)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: kernel %lldx%lld (dilation %lldx%lld, spanning %lldx%lld) is larger "
                          "than the padded input %lldx%lld (input %lldx%lld, padding %lldx%lld)",
                          kind, (long long)o->kernel[0], (long long)o->kernel[1], (long long)dh,
                          (long long)dw, (long long)eh, (long long)ew, (long long)Hp,
                          (long long)Wp, (long long)H, (long long)W, (long long)o->padding[0],
                          (long long)o->padding[1]);
    mtli_layer_window(l, pool, g);
    size_t k = 0, n = 0;
    if (!mtli_mul_size(g->C, g->kh, &k) || !mtli_mul_size(k, g->kw, &k) ||
        !mtli_mul_size(g->Ho, g->Wo, &n) || !mtli_mul_size(k, n, &k) ||
        k > SIZE_MAX / (2 * sizeof(float)))
        return mtli_error(MTL_ERR_RANGE,
                          "%s: window of %zux%zu taps over %zu channels is too large", kind,
                          g->kh, g->kw, g->C);
    return MTL_OK;
}

/* ---- conv2d ------------------------------------------------------------------------------ */

static size_t conv_k(const mtli_conv_geom *g) { return g->C * g->kh * g->kw; }

/* Samples per GEMM for a batch of B. */
static size_t conv_chunk(const mtli_conv_geom *g, size_t B)
{
    size_t K = conv_k(g), N = g->Ho * g->Wo;
    size_t nc = (CONV_COLS + N - 1) / N;
    size_t cap = CONV_COL_MAX / (K * N);
    if (nc > cap)
        nc = cap;
    if (nc < 1)
        nc = 1;
    return nc < B ? nc : B;
}

static mtl_status conv_setup(mtli_layer *l)
{
    MTLI_TRY(mtli_layer_setup_input(l));
    if (l->opts.out < 1 || l->opts.out > INT32_MAX)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "conv2d: option 'out' (output channels) must be set to 1..%d, got %lld",
                          INT32_MAX, (long long)l->opts.out);
    mtli_conv_geom g;
    MTLI_TRY(mtli_layer_window_setup(l, false, &g));
    size_t N = g.Ho * g.Wo, outf;
    if (!mtli_mul_size((size_t)l->opts.out, N, &outf) || outf > (size_t)INT64_MAX ||
        outf > SIZE_MAX / (4 * sizeof(float)) / CONV_COLS)
        return mtli_error(MTL_ERR_RANGE, "conv2d: output of %lld x %zu x %zu is too large",
                          (long long)l->opts.out, g.Ho, g.Wo);
    l->out_ndim = 3;
    l->out_dims[0] = l->opts.out;
    l->out_dims[1] = (int64_t)g.Ho;
    l->out_dims[2] = (int64_t)g.Wo;
    l->out_features = outf;
    int64_t wshape[4] = {l->opts.out, (int64_t)g.C, (int64_t)g.kh, (int64_t)g.kw};
    MTLI_TRY(mtli_layer_add_param(l, "weight", 4, wshape, false, false));
    if (l->opts.bias)
        MTLI_TRY(mtli_layer_add_param(l, "bias", 1, &l->opts.out, false, true));
    return MTL_OK;
}

static void conv_init(mtli_layer *l, mtli_rng *rng)
{
    mtli_conv_geom g;
    mtli_layer_window(l, false, &g);
    const mtli_layer_opts *o = &l->opts;
    size_t out = (size_t)o->out, K = conv_k(&g);
    size_t fan_in = K, fan_out = out * g.kh * g.kw;
    mtli_init ws = o->weight_init == MTLI_INIT_DEFAULT ? MTLI_INIT_KAIMING_UNIFORM : o->weight_init;
    mtli_init_fill(l->params, out * K, ws, fan_in, fan_out, o->init_gain, o->init_std, rng);
    if (o->bias) {
        mtli_init bs = o->bias_init == MTLI_INIT_DEFAULT ? MTLI_INIT_BIAS_UNIFORM : o->bias_init;
        mtli_init_fill(l->params + out * K, out, bs, fan_in, fan_out, o->init_gain, o->init_std,
                       rng);
    }
}

static size_t conv_scratch(const mtli_layer *l, size_t B)
{
    mtli_conv_geom g;
    mtli_layer_window(l, false, &g);
    size_t nc = conv_chunk(&g, B), N = g.Ho * g.Wo;
    size_t cols = nc * conv_k(&g) * N + (nc > 1 ? nc * (size_t)l->opts.out * N : 0);
    size_t direct = B ? mtli_convd_work(&g, (size_t)l->opts.out) : 0;
    return cols > direct ? cols : direct;
}

/* The direct kernels' backward (kernels/conv_direct.c) applies when they apply to the forward
 * and, if the input gradient is needed, to it as well. */
static bool conv_direct_backward(const mtli_conv_geom *g, size_t O, bool dx)
{
    return mtli_convd_applies(g, O) && (!dx || mtli_convd_dx_applies(g, O));
}

static void conv_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t B = f->B;
    if (B == 0)
        return;
    mtli_conv_geom g;
    mtli_layer_window(l, false, &g);
    const size_t K = conv_k(&g), N = g.Ho * g.Wo, O = (size_t)l->opts.out, F = l->in_features;
    const size_t nc = conv_chunk(&g, B);
    const float *Wt = l->params, *bias = l->opts.bias ? l->params + O * K : NULL;
    if (mtli_convd_applies(&g, O)) {
        mtli_convd_forward(&g, O, Wt, bias, f->x, B, f->y, f->scratch);
        return;
    }
    float *col = f->scratch, *ybuf = f->scratch + nc * K * N;
    for (size_t b0 = 0; b0 < B; b0 += nc) {
        size_t nb = B - b0 < nc ? B - b0 : nc, ld = nb * N;
        for (size_t t = 0; t < nb; t++)
            mtli_im2col(&g, f->x + (b0 + t) * F, col + t * N, ld);
        float *y = f->y + b0 * O * N;
        if (nb == 1) {
            float beta = 0.0f;
            if (bias) {
                for (size_t o = 0; o < O; o++) {
                    float v = bias[o], *r = y + o * N;
                    for (size_t n = 0; n < N; n++)
                        r[n] = v;
                }
                beta = 1.0f;
            }
            mtli_gemm(false, false, O, N, K, 1.0f, Wt, K, col, ld, beta, y, N);
            continue;
        }
        mtli_gemm(false, false, O, ld, K, 1.0f, Wt, K, col, ld, 0.0f, ybuf, ld);
        for (size_t t = 0; t < nb; t++)
            for (size_t o = 0; o < O; o++) {
                const float *s = ybuf + o * ld + t * N;
                float *r = y + (t * O + o) * N, v = bias ? bias[o] : 0.0f;
                for (size_t n = 0; n < N; n++)
                    r[n] = s[n] + v;
            }
    }
}

/* Sum of n floats in double with eight fixed partial sums (deterministic, vectorisable). */
MTLI_VECTOR_CLONES
static double sum_f(const float *x, size_t n)
{
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            a[k] += (double)x[i + k];
    double t = 0.0;
    for (; i < n; i++)
        t += (double)x[i];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])) + t;
}

static void conv_backward(const mtli_layer *l, const mtli_bwd *b)
{
    size_t B = b->B;
    if (B == 0)
        return;
    mtli_conv_geom g;
    mtli_layer_window(l, false, &g);
    const size_t K = conv_k(&g), N = g.Ho * g.Wo, O = (size_t)l->opts.out, F = l->in_features;
    const size_t nc = conv_chunk(&g, B);
    const float *Wt = l->params;
    float *dW = b->dparams;
    /* workspace, see the top of the file */
    float *col = (float *)b->scratch, *ybuf = col + nc * K * N;
    if (l->opts.bias) {
        float *db = dW + O * K;
        for (size_t o = 0; o < O; o++) {
            double s = 0.0;
            for (size_t t = 0; t < B; t++)
                s += sum_f(b->dy + (t * O + o) * N, N);
            db[o] = (float)((double)db[o] + s);
        }
    }
    if (conv_direct_backward(&g, O, b->dx != NULL)) {
        mtli_convd_backward(&g, O, Wt, b->x, b->dy, B, dW, b->dx, col);
        return;
    }
    for (size_t b0 = 0; b0 < B; b0 += nc) {
        size_t nb = B - b0 < nc ? B - b0 : nc, ld = nb * N;
        const float *dy = b->dy + b0 * O * N;
        size_t ldd = N;
        if (nb > 1) {
            for (size_t t = 0; t < nb; t++)
                for (size_t o = 0; o < O; o++)
                    memcpy(ybuf + o * ld + t * N, dy + (t * O + o) * N, N * sizeof(float));
            dy = ybuf;
            ldd = ld;
        }
        for (size_t t = 0; t < nb; t++)
            mtli_im2col(&g, b->x + (b0 + t) * F, col + t * N, ld);
        mtli_gemm(false, true, O, K, ld, 1.0f, dy, ldd, col, ld, 1.0f, dW, K);
        if (!b->dx)
            continue;
        mtli_gemm(true, false, K, ld, O, 1.0f, Wt, K, dy, ldd, 0.0f, col, ld);
        float *dx = b->dx + b0 * F;
        memset(dx, 0, nb * F * sizeof(float));
        for (size_t t = 0; t < nb; t++)
            mtli_col2im(&g, col + t * N, ld, dx + t * F);
    }
}

/* T streams stacked along the batch (see mtli_layer_ops.backward_stacked). Per chunk of
 * samples the input columns are built once and serve every stream's weight gradient; then
 * each stream's input gradient reuses the column buffer as dcol. The GEMMs are those of T
 * calls of conv_backward, so the results are the same. */
static void conv_backward_stacked(const mtli_layer *l, const mtli_bwd *b, int T,
                                  float *const *dparams_t)
{
    const size_t B = b->B;
    mtli_conv_geom g;
    mtli_layer_window(l, false, &g);
    const size_t K = conv_k(&g), N = g.Ho * g.Wo, O = (size_t)l->opts.out, F = l->in_features;
    const size_t OF = l->out_features;
    if (dparams_t)
        for (int t = 0; t < T; t++) {
            float *dW = dparams_t[t];
            memset(dW, 0, l->nparams * sizeof(float));
            if (!l->opts.bias)
                continue;
            const float *dyt = b->dy + (size_t)t * B * OF;
            for (size_t o = 0; o < O; o++) {
                double s = 0.0;
                for (size_t i = 0; i < B; i++)
                    s += sum_f(dyt + (i * O + o) * N, N);
                dW[O * K + o] = (float)s;
            }
        }
    if (B == 0)
        return;
    const size_t nc = conv_chunk(&g, B);
    const float *Wt = l->params;
    float *col = (float *)b->scratch, *ybuf = col + nc * K * N;
    if (conv_direct_backward(&g, O, b->dx != NULL)) {
        for (int t = 0; t < T; t++)
            mtli_convd_backward(&g, O, Wt, b->x, b->dy + (size_t)t * B * OF, B,
                                dparams_t ? dparams_t[t] : NULL,
                                b->dx ? b->dx + (size_t)t * B * F : NULL, col);
        return;
    }
    for (size_t b0 = 0; b0 < B; b0 += nc) {
        size_t nb = B - b0 < nc ? B - b0 : nc, ld = nb * N;
        if (dparams_t) {
            for (size_t i = 0; i < nb; i++)
                mtli_im2col(&g, b->x + (b0 + i) * F, col + i * N, ld);
            for (int t = 0; t < T; t++) {
                const float *dy = b->dy + ((size_t)t * B + b0) * OF;
                size_t ldd = N;
                if (nb > 1) {
                    for (size_t i = 0; i < nb; i++)
                        for (size_t o = 0; o < O; o++)
                            memcpy(ybuf + o * ld + i * N, dy + (i * O + o) * N,
                                   N * sizeof(float));
                    dy = ybuf;
                    ldd = ld;
                }
                mtli_gemm(false, true, O, K, ld, 1.0f, dy, ldd, col, ld, 1.0f, dparams_t[t], K);
            }
        }
        if (!b->dx)
            continue;
        for (int t = 0; t < T; t++) {
            const float *dy = b->dy + ((size_t)t * B + b0) * OF;
            size_t ldd = N;
            if (nb > 1) {
                for (size_t i = 0; i < nb; i++)
                    for (size_t o = 0; o < O; o++)
                        memcpy(ybuf + o * ld + i * N, dy + (i * O + o) * N, N * sizeof(float));
                dy = ybuf;
                ldd = ld;
            }
            mtli_gemm(true, false, K, ld, O, 1.0f, Wt, K, dy, ldd, 0.0f, col, ld);
            float *dx = b->dx + ((size_t)t * B + b0) * F;
            memset(dx, 0, nb * F * sizeof(float));
            for (size_t i = 0; i < nb; i++)
                mtli_col2im(&g, col + i * N, ld, dx + i * F);
        }
    }
}

const mtli_layer_ops mtli_conv2d_ops = {
    .kind = "conv2d",
    .setup = conv_setup,
    .init = conv_init,
    .scratch_floats = conv_scratch,
    .forward = conv_forward,
    .backward = conv_backward,
    .check = NULL,
    .backward_stacked = conv_backward_stacked,
};
