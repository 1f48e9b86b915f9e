/* Fully connected layer, as torch.nn.Linear: weight [out, in], bias [out], y = x W^T + b.
 * A [L, F] sample (a sequence) is L rows of F features, as nn.Linear applies to the last
 * dimension: in = F, the output is [L, out] and the products run over B*L rows. Otherwise
 * the input is each sample's flattened features ([F], or [C, H, W] as C*H*W). */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/gemm.h"
#include "layers/layer.h"

static mtl_status linear_setup(mtli_layer *l)
{
    MTLI_TRY(mtli_layer_setup_input(l));
    if (l->opts.out < 1 || l->opts.out > INT32_MAX)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "linear: option 'out' (output features) must be set to 1..%d, got %lld",
                          INT32_MAX, (long long)l->opts.out);
    int64_t in = (int64_t)l->in_features;
    if (l->in_ndim == 2) {
        size_t n;
        if (!mtli_mul_size((size_t)l->in_dims[0], (size_t)l->opts.out, &n))
            return mtli_error(MTL_ERR_RANGE, "linear: output of %lld x %lld is too large",
                              (long long)l->in_dims[0], (long long)l->opts.out);
        in = l->in_dims[1];
        l->out_ndim = 2;
        l->out_dims[0] = l->in_dims[0];
        l->out_dims[1] = l->opts.out;
        l->out_features = n;
    } else {
        l->out_ndim = 1;
        l->out_dims[0] = l->opts.out;
        l->out_features = (size_t)l->opts.out;
    }
    int64_t wshape[2] = {l->opts.out, in};
    MTLI_TRY(mtli_layer_add_param(l, "weight", 2, wshape, false, false));
    if (l->opts.bias)
        MTLI_TRY(mtli_layer_add_param(l, "bias", 1, &l->opts.out, false, true));
    return MTL_OK;
}

/* Per-row sizes: rows per sample, input and output features per row. */
static void geometry(const mtli_layer *l, size_t *rows, size_t *in, size_t *out)
{
    *rows = l->in_ndim == 2 ? (size_t)l->in_dims[0] : 1;
    *in = l->in_features / *rows;
    *out = (size_t)l->opts.out;
}

static void linear_init(mtli_layer *l, mtli_rng *rng)
{
    size_t rows, in, out;
    geometry(l, &rows, &in, &out);
    const mtli_layer_opts *o = &l->opts;
    mtli_init ws = o->weight_init == MTLI_INIT_DEFAULT ? MTLI_INIT_KAIMING_UNIFORM : o->weight_init;
    mtli_init_fill(l->params, in * out, ws, in, out, o->init_gain, o->init_std, rng);
    if (o->bias) {
        mtli_init bs = o->bias_init == MTLI_INIT_DEFAULT ? MTLI_INIT_BIAS_UNIFORM : o->bias_init;
        mtli_init_fill(l->params + in * out, out, bs, in, out, o->init_gain, o->init_std, rng);
    }
}

static size_t linear_scratch(const mtli_layer *l, size_t B)
{
    (void)l;
    (void)B;
    return 0;
}

/* y[B, out] = x[B, in] W^T (+ b broadcast over rows); B counts rows (samples x positions) */
static void linear_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t rows, in, out;
    geometry(l, &rows, &in, &out);
    size_t B = f->B * rows;
    if (B == 0)
        return;
    const float *W = l->params;
    float beta = 0.0f;
    if (l->opts.bias) {
        const float *b = W + in * out;
        for (size_t i = 0; i < B; i++)
            memcpy(f->y + i * out, b, out * sizeof(float));
        beta = 1.0f;
    }
    mtli_gemm(false, true, B, out, in, 1.0f, f->x, in, W, in, beta, f->y, out);
}

/* dW[out, in] += dy^T x; db[out] += colsum(dy); dx[B, in] = dy W. dx last, so it may share
 * memory with x. */
static void linear_backward(const mtli_layer *l, const mtli_bwd *b)
{
    size_t rows, in, out;
    geometry(l, &rows, &in, &out);
    size_t B = b->B * rows;
    if (B == 0)
        return;
    mtli_gemm(true, false, out, in, B, 1.0f, b->dy, out, b->x, in, 1.0f, b->dparams, in);
    if (l->opts.bias)
        mtli_layer_colsum_acc(b->dy, B, out, b->dparams + in * out);
    if (b->dx)
        mtli_gemm(false, false, B, in, out, 1.0f, b->dy, out, l->params, in, 0.0f, b->dx, in);
}

const mtli_layer_ops mtli_linear_ops = {
    .kind = "linear",
    .setup = linear_setup,
    .init = linear_init,
    .scratch_floats = linear_scratch,
    .forward = linear_forward,
    .backward = linear_backward,
    .check = NULL,
};
