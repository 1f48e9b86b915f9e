/* Fully connected layer, as torch.nn.Linear: weight [out, in], bias [out], y = x W^T + b.
 * The input is each sample's flattened features, whatever its per-sample dims. */
#include <string.h>

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
    l->out_ndim = 1;
    l->out_dims[0] = l->opts.out;
    l->out_features = (size_t)l->opts.out;
    int64_t wshape[2] = {l->opts.out, (int64_t)l->in_features};
    MTLI_TRY(mtli_layer_add_param(l, "weight", 2, wshape, false, false));
    if (l->opts.bias)
        MTLI_TRY(mtli_layer_add_param(l, "bias", 1, &l->opts.out, false, true));
    return MTL_OK;
}

static void linear_init(mtli_layer *l, mtli_rng *rng)
{
    size_t in = l->in_features, out = l->out_features;
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

/* y[B, out] = x[B, in] W^T (+ b broadcast over rows) */
static void linear_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t in = l->in_features, out = l->out_features, B = f->B;
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
    size_t in = l->in_features, out = l->out_features, B = b->B;
    if (B == 0)
        return;
    mtli_gemm(true, false, out, in, B, 1.0f, b->dy, out, b->x, in, 1.0f, b->dparams, in);
    if (l->opts.bias)
        mtli_layer_colsum_acc(b->dy, B, out, b->dparams + in * out);
    if (b->dx)
        mtli_gemm(false, false, B, in, out, 1.0f, b->dy, out, l->params, in, 0.0f, b->dx, in);
}

/* T streams stacked along the batch: dW_t = dY_t^T X (one GEMM per stream, into its own
 * row), db_t = colsum(dY_t), and the input gradient of all streams as ONE GEMM
 * dX[T*B, in] = dY[T*B, out] W. */
static void linear_backward_stacked(const mtli_layer *l, const mtli_bwd *b, int T,
                                    float *const *dparams_t)
{
    size_t in = l->in_features, out = l->out_features, B = b->B;
    if (dparams_t)
        for (int t = 0; t < T; t++) {
            float *dp = dparams_t[t];
            const float *dy = b->dy + (size_t)t * B * out;
            if (B == 0) {
                memset(dp, 0, l->nparams * sizeof(float));
                continue;
            }
            mtli_gemm(true, false, out, in, B, 1.0f, dy, out, b->x, in, 0.0f, dp, in);
            if (l->opts.bias) {
                memset(dp + in * out, 0, out * sizeof(float));
                mtli_layer_colsum_acc(dy, B, out, dp + in * out);
            }
        }
    if (b->dx && B > 0)
        mtli_gemm(false, false, (size_t)T * B, in, out, 1.0f, b->dy, out, l->params, in, 0.0f,
                  b->dx, in);
}

/* The Gram of the T streams' parameter gradients from the input Gram. With X~ = [X, 1] (the
 * ones column only with a bias) and K = X~ X~^T (B x B), the gradients are
 * [dW_t, db_t] = dY_t^T X~, so
 *   <grad_s, grad_t> = trace(X~^T dY_s dY_t^T X~) = <dY_s, K dY_t>   (Frobenius).
 * Cost: K (B*B*in) + K dY_t for every stream (T*B*B*out) + the T x T inner products
 * (T*T*B*out), against T*B*in*out + T*T*in*out for forming the gradients and their Gram:
 * cheaper when the batch is small next to the layer's width. Workspace: K, K dY (T*B*out)
 * and the T x T float result. */
static double linear_gram_stacked(const mtli_layer *l, const mtli_bwd *b, int T, double *G,
                                  float *work, double *jac_macs, size_t *work_floats)
{
    const size_t in = l->in_features, out = l->out_features, B = b->B, Tz = (size_t)T;
    if (!G) {
        double Bd = (double)B, Td = (double)T, ind = (double)in, outd = (double)out;
        double np = (double)l->nparams;
        if (jac_macs)
            *jac_macs = Td * Bd * np + Td * Td * np;
        if (work_floats)
            *work_floats = B * B + Tz * B * out + Tz * Tz;
        return Bd * Bd * ind + Td * Bd * Bd * outd + Td * Td * Bd * outd;
    }
    if (B == 0)
        return 0.0;
    float *K = work, *KdY = work + B * B, *Gf = KdY + Tz * B * out;
    mtli_gemm(false, true, B, B, in, 1.0f, b->x, in, b->x, in, 0.0f, K, B);
    if (l->opts.bias)
        for (size_t i = 0; i < B * B; i++)
            K[i] += 1.0f;
    for (size_t t = 0; t < Tz; t++)
        mtli_gemm(false, false, B, out, B, 1.0f, K, B, b->dy + t * B * out, out, 0.0f,
                  KdY + t * B * out, out);
    mtli_gemm(false, true, Tz, Tz, B * out, 1.0f, b->dy, B * out, KdY, B * out, 0.0f, Gf, Tz);
    for (size_t s = 0; s < Tz; s++)
        for (size_t t = 0; t < Tz; t++)
            G[s * Tz + t] += 0.5 * ((double)Gf[s * Tz + t] + (double)Gf[t * Tz + s]);
    return 0.0;
}

const mtli_layer_ops mtli_linear_ops = {
    .kind = "linear",
    .setup = linear_setup,
    .init = linear_init,
    .scratch_floats = linear_scratch,
    .forward = linear_forward,
    .backward = linear_backward,
    .check = NULL,
    .backward_stacked = linear_backward_stacked,
    .gram_stacked = linear_gram_stacked,
};
