/* Internal: the one layer interface. Every layer kind (one file each under layers/) fills
 * an mtli_layer_ops table; stacks (trunk, heads) only talk to layers through it.
 *
 * Shapes: activations are row-major [B, features]; a layer sees each sample as `in_features`
 * floats (for images: C*H*W with in_dims = {C, H, W}). Embedding is the exception: its input
 * is int32 ids (stored in the same 4-byte slots), see embedding.c.
 *
 * Memory: the model owns one flat parameter buffer, one flat gradient buffer of the same
 * layout and one flat buffer of non-trained state (BatchNorm running statistics). A layer's
 * params/grads/state pointers are views into them, bound by the model after setup. Forward
 * scratch (dropout masks, normalisation statistics) is a per-layer slice of the model's
 * workspace, sized once for the largest batch: scratch_floats(B) floats. The model's scratch
 * is writable memory: a layer whose scratch is pure workspace that forward leaves nothing in
 * (conv2d) may also use it as temporary space in backward, since no later backward of the
 * same forward depends on it (backward may run several times per forward).
 *
 * Backward ACCUMULATES into dparams (so several heads or tasks sum naturally) and OVERWRITES
 * dx. dx may be NULL when the input gradient is not needed (first layer of the trunk). */
#ifndef MTLI_LAYER_H
#define MTLI_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/im2col.h"
#include "mtl/status.h"

typedef struct mtli_layer mtli_layer;

/* Parameter initialisation schemes. */
typedef enum {
    MTLI_INIT_ZEROS,
    MTLI_INIT_ONES,
    MTLI_INIT_KAIMING_UNIFORM, /* PyTorch's Linear default, kaiming_uniform_(a=sqrt(5)):
                                * bound = g*sqrt(3/fan_in) with g = sqrt(2/(1+a^2)) = sqrt(1/3),
                                * i.e. U(-gain/sqrt(fan_in), gain/sqrt(fan_in)) */
    MTLI_INIT_KAIMING_NORMAL,  /* std = gain*sqrt(2/fan_in) (ReLU gain) */
    MTLI_INIT_XAVIER_UNIFORM,  /* bound = gain*sqrt(6/(fan_in+fan_out)) */
    MTLI_INIT_XAVIER_NORMAL,   /* std = gain*sqrt(2/(fan_in+fan_out)) */
    MTLI_INIT_NORMAL,          /* std = init_std (embeddings: N(0,1) like PyTorch) */
    MTLI_INIT_BIAS_UNIFORM,    /* PyTorch's Linear bias default: U(+-1/sqrt(fan_in)) */
    MTLI_INIT_DEFAULT          /* option value only: the kind's own default ("default") */
} mtli_init;

#define MTLI_MAX_LAYER_PARAMS 8 /* a bidirectional lstm/gru has 8 */

/* One named parameter (or state) tensor of a layer, e.g. "weight" [out, in]. */
typedef struct mtli_param_desc {
    char name[24];     /* "weight", "bias", "running_mean", ... */
    int ndim;
    int64_t shape[4];
    size_t count;      /* product of shape */
    size_t offset;     /* within the layer's params (or state) slice */
    bool is_state;     /* true: lives in the state buffer, not trained (running statistics) */
    bool no_decay;     /* true: excluded from L2 regularisation (norm scales/shifts, biases) */
} mtli_param_desc;

typedef struct mtli_fwd {
    const float *x;    /* [B, in_features] (int32 ids for embedding) */
    float *y;          /* [B, out_features] */
    size_t B;
    bool train;        /* training mode: dropout active, batch statistics used and updated */
    float *scratch;    /* scratch_floats(B) floats, kept until the matching backward */
    mtli_rng *rng;     /* for stochastic layers */
    /* Sequence batches: lengths[b] = number of valid leading positions of sample b (the ids
     * before its first -1 padding), B entries; NULL when the batch is not a sequence batch
     * (then every sample is full length). Read by lstm/gru. */
    const int32_t *lengths;
} mtli_fwd;

typedef struct mtli_bwd {
    const float *x;    /* the forward input */
    const float *y;    /* the forward output */
    const float *dy;   /* [B, out_features] */
    float *dx;         /* [B, in_features], overwritten; NULL if not needed */
    float *dparams;    /* the layer's gradient slice (same layout as params); accumulate */
    size_t B;
    const float *scratch;
    const int32_t *lengths; /* as in mtli_fwd (the same values as the matching forward) */
} mtli_bwd;

typedef struct mtli_layer_ops {
    const char *kind; /* "linear", "relu", ... */
    /* Parse/validate options and infer the output shape from l->in_dims/in_ndim; fill
     * out_dims/out_ndim/out_features, nparams, nstate and the param descs. Sets the last
     * error on bad options or shapes. */
    mtl_status (*setup)(mtli_layer *l);
    /* Initialise l->params (and l->state) from rng. */
    void (*init)(mtli_layer *l, mtli_rng *rng);
    /* Scratch floats needed for batch size B (may be 0). */
    size_t (*scratch_floats)(const mtli_layer *l, size_t B);
    void (*forward)(mtli_layer *l, const mtli_fwd *f);
    void (*backward)(const mtli_layer *l, const mtli_bwd *b);
    /* Optional (may be NULL): validate a batch before forward, which cannot fail. Called
     * through mtli_layer_check_input. */
    mtl_status (*check)(const mtli_layer *l, const float *x, size_t B, bool train);
    /* Optional (NULL: mtli_layer_backward_stacked loops over the streams calling backward).
     * The backward of T gradient streams through the same forward, stacked along the batch:
     * b->dy is [T*B, out_features] (stream t in rows t*B .. t*B+B-1), b->dx, when not NULL,
     * receives [T*B, in_features] (overwritten); b->x, b->y, b->scratch and b->B are the
     * single forward's values, shared by the T streams; b->dparams is unused. dparams_t[t]
     * (when dparams_t is not NULL) receives stream t's parameter gradient, OVERWRITTEN, not
     * accumulated (per-task gradient rows start from nothing). With dparams_t NULL only dx
     * is computed. The result equals T separate calls of backward. */
    void (*backward_stacked)(const mtli_layer *l, const mtli_bwd *b, int T,
                             float *const *dparams_t);
    /* Optional (NULL: the per-task gradient engine forms this layer's per-task gradients
     * and takes their Gram from them). The layer's contribution to the Gram matrix of the T
     * streams' parameter gradients, G[s*T + t] += <dparams_s, dparams_t>, without forming
     * the gradients (for a linear layer from the B x B input Gram: sum over outputs k of
     * dY_s[:,k]^T (X X^T + 1 1^T) dY_t[:,k]). b is as for backward_stacked (dx and dparams
     * unused). work: *work_floats floats of workspace.
     * With G == NULL nothing is computed: the call reports, for b->B rows and T streams, the
     * multiply-adds of this route (returned), those of forming the T gradients and their
     * Gram instead (*jac_macs) and the workspace this route needs (*work_floats). */
    double (*gram_stacked)(const mtli_layer *l, const mtli_bwd *b, int T, double *G,
                           float *work, double *jac_macs, size_t *work_floats);
} mtli_layer_ops;

/* Layer options set by key before setup; each layer kind documents which keys it reads. */
typedef struct mtli_layer_opts {
    int64_t out;            /* linear: output features; embedding: embedding dim */
    int64_t num_embeddings; /* embedding: vocabulary size */
    int bias;               /* linear: 1 (default) or 0 */
    int pooling;            /* embedding: 0 = sum, 1 = mean */
    double p;               /* dropout probability */
    double slope;           /* leaky relu negative slope (default 0.01) */
    double eps;             /* norms (default 1e-5) */
    double momentum;        /* batch norm running-stat momentum (default 0.1, PyTorch's) */
    int affine;             /* norms: learnable scale/shift (default 1) */
    int gelu_tanh;          /* gelu: 1 = tanh approximation, 0 = exact erf (default) */
    mtli_init weight_init;  /* default per kind */
    mtli_init bias_init;
    double init_std;        /* for MTLI_INIT_NORMAL */
    double init_gain;       /* multiplier for kaiming/xavier (default 1) */
    int64_t ints[8];        /* reserved for later layer kinds (conv: kernel, stride, ...) */
    double doubles[4];
    /* 2-d windows (conv2d, max_pool2d, avg_pool2d), [0] = height, [1] = width. 0 means "not
     * set": kernel is then missing (required), stride takes the kind's default (conv2d 1, the
     * pools their kernel), dilation is 1. */
    int64_t kernel[2], stride[2], padding[2], dilation[2];
    int count_include_pad;  /* avg_pool2d: padded zeros count in the divisor (default 1) */
    /* Sequences. embedding: pooling MTLI_POOL_NONE keeps one vector per position. */
    int64_t hidden;         /* lstm, gru: hidden size (required) */
    int bidirectional;      /* lstm, gru: 0 (default) or 1 */
    int rnn_pooling;        /* lstm, gru: MTLI_RNN_* (default MTLI_RNN_NONE) */
} mtli_layer_opts;

/* opts.pooling of embedding: sum, mean (default), none (per-position vectors [L, E]). */
enum { MTLI_POOL_SUM = 0, MTLI_POOL_MEAN = 1, MTLI_POOL_NONE = 2 };
/* opts.rnn_pooling of lstm/gru ("pooling" key): none = per-token states [L, H*dirs]
 * (zeros at padding); last = [H*dirs]: the forward direction's state at the last valid
 * token and the backward direction's state at token 0; mean / sum over the valid tokens. */
enum { MTLI_RNN_NONE = 0, MTLI_RNN_LAST = 1, MTLI_RNN_MEAN = 2, MTLI_RNN_SUM = 3 };

struct mtli_layer {
    const mtli_layer_ops *ops;
    mtli_layer_opts opts;
    int in_ndim, out_ndim;   /* per-sample dims (1..3) */
    int64_t in_dims[3], out_dims[3];
    size_t in_features, out_features;
    size_t nparams, nstate;
    int ndesc;
    mtli_param_desc desc[MTLI_MAX_LAYER_PARAMS];
    /* bound by the model after setup */
    float *params;   /* nparams floats */
    float *grads;    /* nparams floats (the model's main gradient buffer) */
    float *state;    /* nstate floats */
};

/* Registry (layers/registry.c): find the ops for a kind name ("linear", "relu", "leaky_relu",
 * "gelu", "tanh", "sigmoid", "dropout", "layer_norm", "batch_norm", "embedding", "conv2d",
 * "max_pool2d", "avg_pool2d", "flatten", "dropout2d", "batch_norm2d", "lstm", "gru"). */
const mtli_layer_ops *mtli_layer_find(const char *kind);
/* The same, failing with MTL_ERR_INVALID_ARGUMENT ("unknown layer kind 'x' (expected ...)")
 * when the name is not registered. */
mtl_status mtli_layer_lookup(const char *kind, const mtli_layer_ops **out);

/* Fill opts with the defaults (called before the user's keys are applied). */
void mtli_layer_opts_default(mtli_layer_opts *o);

/* Apply one option by key; a key the kind does not use, or an unknown one, is
 * MTL_ERR_INVALID_ARGUMENT naming the key and kind; a value out of range is MTL_ERR_RANGE.
 * Keys by kind (documented in docs/guide.md), defaults as PyTorch's:
 *   linear      out (int >= 1, required), bias (0/1, default 1), init, bias_init, std, gain;
 *               on a [L, F] input it applies to each position (as nn.Linear on the last
 *               dimension), giving [L, out]; [C, H, W] inputs are flattened
 *   leaky_relu  slope (double, default 0.01)
 *   gelu        approximate ("none" default, "tanh")
 *   dropout     p (double in [0, 1), default 0.5)
 *   layer_norm  eps (> 0, default 1e-5), affine (0/1, default 1)
 *   batch_norm  eps, momentum ([0, 1], default 0.1), affine
 *   embedding   out (embedding dim, required), num_embeddings (required), pooling ("sum",
 *               "mean" default as EmbeddingBag, "none": one vector per position, [L, out]),
 *               init, std, gain
 *   lstm, gru   hidden (required), bidirectional (0), pooling ("none" default: per-token
 *               states, "last", "mean", "sum"), bias (1); input [L, features] per sample;
 *               parameters and initialisation as nn.LSTM / nn.GRU (see rnn.c)
 *   conv2d      out (channels, required), kernel (or kernel_h and kernel_w, required),
 *               stride (1), padding (0), dilation (1) (each also as _h/_w), bias (1), init,
 *               bias_init, std, gain; defaults as nn.Conv2d (kaiming_uniform(a=sqrt(5))
 *               weight and U(+-1/sqrt(fan_in)) bias, fan_in = in_channels * kh * kw)
 *   max_pool2d  kernel (required), stride (default: the kernel), padding (0, at most half
 *               the kernel), each also as _h/_w
 *   avg_pool2d  the same keys, and count_include_pad (0/1, default 1)
 *   dropout2d   p (double in [0, 1), default 0.5)
 *   batch_norm2d  as batch_norm (input must be [C, H, W])
 *   relu, tanh, sigmoid, flatten: none.
 * Window sizes (kernel, stride, dilation) take 1..2^31-1, padding 0..2^31-1; the kind's
 * setup checks them against the input (MTL_ERR_SHAPE naming the sizes).
 * init/bias_init: "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal",
 * "normal", "zeros", "ones", "default" (linear: kaiming_uniform(a=sqrt(5)) weight and
 * U(+-1/sqrt(fan_in)) bias; embedding: normal). std (>= 0, default 1) is for "normal", gain
 * (>= 0, default 1) multiplies kaiming/xavier. Integer keys accept integral doubles; double
 * keys accept integers; string keys take only strings. */
mtl_status mtli_layer_set_int(const mtli_layer_ops *ops, mtli_layer_opts *o, const char *key,
                              int64_t v);
mtl_status mtli_layer_set_double(const mtli_layer_ops *ops, mtli_layer_opts *o,
                                 const char *key, double v);
mtl_status mtli_layer_set_string(const mtli_layer_ops *ops, mtli_layer_opts *o,
                                 const char *key, const char *v);

/* Introspection: the i-th registered kind name and the i-th key a kind reads (NULL past the
 * end), and the value type a key takes for a kind (MTLI_KEY_NONE: not used by the kind). */
typedef enum { MTLI_KEY_NONE, MTLI_KEY_INT, MTLI_KEY_DOUBLE, MTLI_KEY_STRING } mtli_key_type;
const char *mtli_layer_kind_at(size_t i);
const char *mtli_layer_key_at(const mtli_layer_ops *ops, size_t i); /* i-th key of a kind */
mtli_key_type mtli_layer_key_type(const mtli_layer_ops *ops, const char *key);

/* Validate a batch for a set-up layer; the model calls it before every forward (which cannot
 * fail) on data it has not checked yet: embedding ids in range
 * (MTL_ERR_INVALID_ARGUMENT naming sample and id), batch_norm in training mode needs more
 * than one value per channel (MTL_ERR_SHAPE, as PyTorch). OK for kinds without checks. */
mtl_status mtli_layer_check_input(const mtli_layer *l, const float *x, size_t B, bool train);

/* Embedding ids of B samples (l->in_features each) must be -1 (padding) or
 * 0..num_embeddings-1; otherwise MTL_ERR_INVALID_ARGUMENT naming the sample and id. */
mtl_status mtli_embedding_check_ids(const mtli_layer *l, const int32_t *ids, size_t B);

/* Initialisation helper shared by the layers: fill n floats of p by scheme with the given
 * fans (fan_in, fan_out) and options (gain, std). */
void mtli_init_fill(float *p, size_t n, mtli_init scheme, size_t fan_in, size_t fan_out,
                    double gain, double std, mtli_rng *rng);

/* ---- helpers for the layer implementations (layers/ only) ---------------------------- */

/* Validate l->in_ndim/in_dims and set l->in_features (their product); resets the outputs,
 * params and descs. Error messages name l->ops->kind. */
mtl_status mtli_layer_setup_input(mtli_layer *l);
/* Output shape equal to the input shape (elementwise layers). */
void mtli_layer_same_shape(mtli_layer *l);
/* Append a parameter (or state, with is_state) desc at the end of the params (or state)
 * slice; grows l->nparams (or l->nstate). Fails with MTL_ERR_RANGE on size overflow. */
mtl_status mtli_layer_add_param(mtli_layer *l, const char *name, int ndim,
                                const int64_t *shape, bool is_state, bool no_decay);

/* out[j] += sum over rows of a[i*cols + j], accumulated in double (column sums for bias
 * gradients). */
void mtli_layer_colsum_acc(const float *a, size_t rows, size_t cols, float *out);

/* Small T x T Gram matrices of T long rows a_s = a + s*lda, b_t = b + t*ldb (n floats each)
 * (linear.c), which a GEMM library runs far below its speed (m = n = T): chunks of the rows
 * stay in L1, each chunk's dot products are summed in float and added in double.
 *   MTLI_DOTS_PLAIN            G[s*T + t] += <a_s, b_t>
 *   MTLI_DOTS_SYMMETRIC        the same when the result is symmetric (b == a): only s <= t
 *                              is computed, then mirrored
 *   MTLI_DOTS_PLUS_TRANSPOSE   G[s*T + t] += <a_s, b_t> + <a_t, b_s> */
typedef enum {
    MTLI_DOTS_PLAIN,
    MTLI_DOTS_SYMMETRIC,
    MTLI_DOTS_PLUS_TRANSPOSE
} mtli_dots_mode;
void mtli_layer_dots(size_t T, size_t n, const float *a, size_t lda, const float *b,
                     size_t ldb, mtli_dots_mode mode, double *G);

/* The library is compiled for the baseline of its architecture (x86-64: SSE2), so a long
 * elementwise or reduction loop runs at a quarter of what AVX-512 gives. Kernels where that
 * matters are compiled in several versions, the best one chosen when the library loads
 * (GCC's target_clones, an ifunc: x86-64 Linux with glibc). The result of a run is the same
 * on the same machine. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    defined(__GLIBC__)
#define MTLI_VECTOR_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MTLI_VECTOR_CLONES
#endif

/* 2-d window layers (conv.c): validate l's window options against its [C, H, W] input and
 * fill g (out_channels 0: the pools, which keep C channels and need no dilation). Errors name
 * l->ops->kind and the sizes: MTL_ERR_SHAPE for an input that is not [C, H, W] or smaller than
 * the (dilated) kernel after padding, MTL_ERR_INVALID_ARGUMENT for a missing kernel,
 * MTL_ERR_RANGE for sizes that overflow. */
mtl_status mtli_layer_window_setup(const mtli_layer *l, bool pool, mtli_conv_geom *g);
/* The geometry of a set-up window layer (cannot fail). */
void mtli_layer_window(const mtli_layer *l, bool pool, mtli_conv_geom *g);

/* The kinds' tables (one file each). */
extern const mtli_layer_ops mtli_linear_ops;
extern const mtli_layer_ops mtli_relu_ops, mtli_leaky_relu_ops, mtli_gelu_ops, mtli_tanh_ops,
    mtli_sigmoid_ops;
extern const mtli_layer_ops mtli_dropout_ops;
extern const mtli_layer_ops mtli_layer_norm_ops, mtli_batch_norm_ops;
extern const mtli_layer_ops mtli_embedding_ops;
extern const mtli_layer_ops mtli_conv2d_ops;                          /* conv.c */
extern const mtli_layer_ops mtli_max_pool2d_ops, mtli_avg_pool2d_ops; /* pool.c */
extern const mtli_layer_ops mtli_flatten_ops, mtli_batch_norm2d_ops;  /* shape.c */
extern const mtli_layer_ops mtli_dropout2d_ops;                       /* dropout.c */
extern const mtli_layer_ops mtli_lstm_ops, mtli_gru_ops;              /* rnn.c */

/* Sequences (embedding.c). An embedding with pooling "none" on ids [L] per sample is a
 * sequence embedding: its forward writes the batch's lengths (int32, B entries) into its
 * scratch, and its check requires each sample to be valid ids followed only by -1 padding,
 * with at least one valid id (MTL_ERR_INVALID_ARGUMENT naming the sample and position).
 * mtli_embedding_lengths returns those lengths for such a layer and its scratch (valid after
 * its forward until the next one), NULL for any other layer. */
bool mtli_embedding_is_sequence(const mtli_layer *l);
const int32_t *mtli_embedding_lengths(const mtli_layer *l, const float *scratch);

/* The backward of T stacked gradient streams (see backward_stacked in mtli_layer_ops):
 * the kind's own implementation, or T calls of backward (dparams_t zeroed first, since
 * backward accumulates). dparams_t may be NULL only for a layer without parameters or one
 * that implements backward_stacked. */
static inline void mtli_layer_backward_stacked(const mtli_layer *l, const mtli_bwd *b, int T,
                                               float *const *dparams_t)
{
    if (l->ops->backward_stacked) {
        l->ops->backward_stacked(l, b, T, dparams_t);
        return;
    }
    const size_t B = b->B, in = l->in_features, out = l->out_features;
    for (int t = 0; t < T; t++) {
        mtli_bwd one = *b;
        one.dy = b->dy + (size_t)t * B * out;
        one.dx = b->dx ? b->dx + (size_t)t * B * in : NULL;
        one.dparams = dparams_t ? dparams_t[t] : NULL;
        if (one.dparams && l->nparams)
            memset(one.dparams, 0, l->nparams * sizeof(float));
        l->ops->backward(l, &one);
    }
}

/* Read the int32 id stored in the i-th 4-byte slot of an activation buffer. */
static inline int32_t mtli_layer_id_at(const float *x, size_t i)
{
    int32_t id;
    memcpy(&id, (const char *)x + i * sizeof(float), sizeof id);
    return id;
}

#endif
