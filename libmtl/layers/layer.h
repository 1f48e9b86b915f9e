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
 * workspace, sized once for the largest batch: scratch_floats(B) floats.
 *
 * Backward ACCUMULATES into dparams (so several heads or tasks sum naturally) and OVERWRITES
 * dx. dx may be NULL when the input gradient is not needed (first layer of the trunk). */
#ifndef MTLI_LAYER_H
#define MTLI_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "mtl/status.h"

typedef struct mtli_layer mtli_layer;

/* Parameter initialisation schemes. */
typedef enum {
    MTLI_INIT_ZEROS,
    MTLI_INIT_ONES,
    MTLI_INIT_KAIMING_UNIFORM, /* PyTorch's Linear default: bound = gain*sqrt(3/fan_in), a=sqrt(5) */
    MTLI_INIT_KAIMING_NORMAL,  /* std = sqrt(2/fan_in) (ReLU gain) */
    MTLI_INIT_XAVIER_UNIFORM,  /* bound = sqrt(6/(fan_in+fan_out)) */
    MTLI_INIT_XAVIER_NORMAL,   /* std = sqrt(2/(fan_in+fan_out)) */
    MTLI_INIT_NORMAL,          /* std = init_std (embeddings: N(0,1) like PyTorch) */
    MTLI_INIT_BIAS_UNIFORM     /* PyTorch's Linear bias default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
} mtli_init;

#define MTLI_MAX_LAYER_PARAMS 4

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
} mtli_fwd;

typedef struct mtli_bwd {
    const float *x;    /* the forward input */
    const float *y;    /* the forward output */
    const float *dy;   /* [B, out_features] */
    float *dx;         /* [B, in_features], overwritten; NULL if not needed */
    float *dparams;    /* the layer's gradient slice (same layout as params); accumulate */
    size_t B;
    const float *scratch;
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
} mtli_layer_opts;

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
 * "gelu", "tanh", "sigmoid", "dropout", "layer_norm", "batch_norm", "embedding"). */
const mtli_layer_ops *mtli_layer_find(const char *kind);

/* Fill opts with the defaults (called before the user's keys are applied). */
void mtli_layer_opts_default(mtli_layer_opts *o);

/* Apply one option by key; unknown keys or bad values are errors naming the key. The key set
 * (per kind, documented in docs/guide.md): out, bias, num_embeddings, pooling ("sum"/"mean"),
 * p, slope, eps, momentum, affine, approximate ("none"/"tanh"), init ("kaiming_uniform",
 * "kaiming_normal", "xavier_uniform", "xavier_normal", "normal", "zeros"), bias_init, std, gain. */
mtl_status mtli_layer_set_int(const mtli_layer_ops *ops, mtli_layer_opts *o, const char *key,
                              int64_t v);
mtl_status mtli_layer_set_double(const mtli_layer_ops *ops, mtli_layer_opts *o,
                                 const char *key, double v);
mtl_status mtli_layer_set_string(const mtli_layer_ops *ops, mtli_layer_opts *o,
                                 const char *key, const char *v);

/* Initialisation helper shared by the layers: fill n floats of p by scheme with the given
 * fans (fan_in, fan_out) and options (gain, std). */
void mtli_init_fill(float *p, size_t n, mtli_init scheme, size_t fan_in, size_t fan_out,
                    double gain, double std, mtli_rng *rng);

#endif
