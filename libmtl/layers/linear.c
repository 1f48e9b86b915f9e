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

/* Dot products of one row a with the rows b[0..nb) (nb <= 4; b has 4 valid pointers) over n
 * floats, in 16 float lanes each (vectorised; a is loaded once for the four products),
 * returned in double. */
#if defined(__GNUC__)
__attribute__((always_inline)) /* into each clone of mtli_layer_dots, with its instructions */
#endif
static inline void dots4(const float *a, const float *const *b, int nb, size_t n, double *out)
{
    float acc[4][16] = {{0.0f}};
    const float *b0 = b[0], *b1 = b[1], *b2 = b[2], *b3 = b[3];
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            float x = a[i + l];
            acc[0][l] += x * b0[i + l];
            acc[1][l] += x * b1[i + l];
            acc[2][l] += x * b2[i + l];
            acc[3][l] += x * b3[i + l];
        }
    for (int k = 0; k < nb; k++) {
        double s = 0.0;
        for (size_t j = i; j < n; j++)
            s += (double)a[j] * b[k][j];
        for (int l = 0; l < 16; l++)
            s += (double)acc[k][l];
        out[k] = s;
    }
}

#define DOTS_CHUNK 512

MTLI_VECTOR_CLONES
void mtli_layer_dots(size_t T, size_t n, const float *a, size_t lda, const float *b,
                     size_t ldb, mtli_dots_mode mode, double *G)
{
    for (size_t j0 = 0; j0 < n; j0 += DOTS_CHUNK) {
        size_t len = n - j0 < DOTS_CHUNK ? n - j0 : DOTS_CHUNK;
        for (size_t s = 0; s < T; s++)
            for (size_t t0 = mode == MTLI_DOTS_SYMMETRIC ? s : 0; t0 < T; t0 += 4) {
                int nb = T - t0 < 4 ? (int)(T - t0) : 4;
                const float *rows[4];
                double d[4];
                for (int k = 0; k < 4; k++) /* unused slots repeat the first row */
                    rows[k] = b + (t0 + (size_t)(k < nb ? k : 0)) * ldb + j0;
                dots4(a + s * lda + j0, rows, nb, len, d);
                for (int k = 0; k < nb; k++) {
                    size_t t = t0 + (size_t)k;
                    G[s * T + t] += d[k];
                    if (mode == MTLI_DOTS_PLUS_TRANSPOSE ||
                        (mode == MTLI_DOTS_SYMMETRIC && t != s))
                        G[t * T + s] += d[k];
                }
            }
    }
}

/* T streams stacked along the batch: dW_t = dY_t^T X (one GEMM per stream, into its own
 * row), db_t = colsum(dY_t), and the input gradient of all streams as ONE GEMM
 * dX[T*B, in] = dY[T*B, out] W. */
static void linear_backward_stacked(const mtli_layer *l, const mtli_bwd *b, int T,
                                    float *const *dparams_t)
{
    /* a sequence sample is `rows` rows: the products run over B*rows rows of per-row sizes */
    size_t rows, in, out;
    geometry(l, &rows, &in, &out);
    const size_t B = b->B * rows;
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
 * K is symmetric: K = U + U^T with U its upper triangle and half its diagonal, so
 *   <dY_s, K dY_t> = <dY_s, U dY_t> + <U dY_s, dY_t>,
 * and U dY_t costs about half of K dY_t. With the rows cut into nb blocks of GRAM_BLOCK,
 * block row i of U dY_t is one GEMM over the columns from block i on (U's diagonal block
 * has its lower part zeroed), and only K's upper block rows are formed: both cost the
 * fraction (nb + 1) / (2 nb) of the full products.
 * Cost: f (B*B*in + T*B*B*out) + T*T*B*out (the inner products), against T*B*in*out +
 * T*T*in*out for forming the gradients and their Gram: cheaper when the batch is small
 * next to the layer's width. Workspace: K and U dY (T*B*out). */
#define GRAM_BLOCK 64

static size_t gram_blocks(size_t B)
{
    return B > GRAM_BLOCK ? (B + GRAM_BLOCK - 1) / GRAM_BLOCK : 1;
}

static double linear_gram_stacked(const mtli_layer *l, const mtli_bwd *b, int T, double *G,
                                  float *work, double *jac_macs, size_t *work_floats)
{
    size_t rows, in, out;
    geometry(l, &rows, &in, &out);
    const size_t B = b->B * rows, Tz = (size_t)T;
    const size_t nb = gram_blocks(B), bs = (B + nb - 1) / nb;
    if (!G) {
        double Bd = (double)B, Td = (double)T, ind = (double)in, outd = (double)out;
        double np = (double)l->nparams, f = (double)(nb + 1) / (double)(2 * nb);
        if (jac_macs)
            *jac_macs = Td * Bd * np + Td * Td * np;
        if (work_floats)
            *work_floats = B * B + Tz * B * out;
        return f * (Bd * Bd * ind + Td * Bd * Bd * outd) + Td * Td * Bd * outd;
    }
    if (B == 0)
        return 0.0;
    float *K = work, *V = work + B * B;
    /* upper block rows of K: rows r0.., columns r0.. */
    for (size_t r0 = 0; r0 < B; r0 += bs) {
        size_t m = B - r0 < bs ? B - r0 : bs;
        mtli_gemm(false, true, m, B - r0, in, 1.0f, b->x + r0 * in, in, b->x + r0 * in, in,
                  0.0f, K + r0 * B + r0, B);
        for (size_t i = r0; i < r0 + m; i++) {
            float *row = K + i * B;
            if (l->opts.bias)
                for (size_t j = i; j < B; j++)
                    row[j] += 1.0f;
            for (size_t j = r0; j < i; j++)
                row[j] = 0.0f;
            row[i] *= 0.5f;
        }
    }
    /* V_t = U dY_t */
    for (size_t t = 0; t < Tz; t++) {
        const float *dy = b->dy + t * B * out;
        for (size_t r0 = 0; r0 < B; r0 += bs) {
            size_t m = B - r0 < bs ? B - r0 : bs;
            mtli_gemm(false, false, m, out, B - r0, 1.0f, K + r0 * B + r0, B, dy + r0 * out,
                      out, 0.0f, V + t * B * out + r0 * out, out);
        }
    }
    mtli_layer_dots(Tz, B * out, b->dy, B * out, V, B * out, MTLI_DOTS_PLUS_TRANSPOSE, G);
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
