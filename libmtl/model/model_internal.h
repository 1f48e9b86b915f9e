/* Internal: the model, its stacks (trunk and heads) and workspace. */
#ifndef MTLI_MODEL_INTERNAL_H
#define MTLI_MODEL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "layers/layer.h"
#include "losses/loss.h"
#include "mtl/model.h"
#include "weighting/weighting_internal.h"

/* A stack of layers: the trunk or one head. */
typedef struct mtli_stack {
    mtl_model *model;
    mtli_layer *layers;
    int nlayers, cap;
    /* after build */
    float **act;        /* act[i]: output of layer i, [max_batch, out_features(i)] */
    float **scratch;    /* scratch[i]: layer i's forward scratch */
    size_t max_features; /* largest activation width (input included) */
    size_t param_offset, nparams; /* range in the flat buffer */
    size_t state_offset, nstate;
    int64_t in_dims[3];
    int in_ndim;
    size_t in_features, out_features;
} mtli_stack;

struct mtl_trunk {
    mtli_stack s;
};

struct mtl_head {
    mtli_stack s;
    char *name;
    mtli_loss loss;
    float *dlogits;     /* [max_batch, C] */
    float *pending_class_weights;
    int64_t npending_class_weights;
};

/* One named parameter tensor of the model. */
typedef struct mtli_named_param {
    char *name;
    float *data;        /* into params or state */
    size_t offset;      /* offset within params (trainable) or state */
    size_t count;
    int ndim;
    int64_t shape[4];
    bool is_state;
    bool no_decay;
    int head;           /* -1: trunk */
} mtli_named_param;

struct mtl_model {
    mtl_dtype input_dtype;
    int input_ndim;
    int64_t input_shape[3];
    size_t input_features;
    mtl_trunk trunk;
    mtl_head **heads;
    int nheads, cap_heads;
    double l2_trunk, l2_heads;

    bool built;
    size_t max_batch;
    uint64_t seed;
    float *params, *grads, *state;
    size_t nparams, nstate;
    float *state_backup;        /* restored when a step fails */
    mtli_named_param *named;
    int nnamed;
    mtli_rng rng;
    /* backward ping-pong buffers [max_batch, max width], dZ accumulator and head dx */
    float *bwd_a, *bwd_b, *dz, *dz_tmp;
    size_t bwd_width;
    double *task_weights;       /* [nheads] */
    double *task_loss;          /* [nheads] */
    /* per-task-gradient engine (engine.c), sized on first use */
    float *eng_dz;              /* [T, max_batch * D] per-task gradients w.r.t. Z */
    float *eng_J;               /* [T, P_shared] per-task shared-parameter gradients */
    double *eng_G;              /* [T, T] */
    float *eng_shared;          /* [P_shared] a method's combined shared gradient */
    double *eng_scratch;        /* the method's workspace */
    size_t eng_nscratch;
    size_t eng_nJ;              /* floats of eng_J */
    float *eng_stk[2];          /* stacked backward ping-pong, eng_nstk floats each */
    size_t eng_nstk;
    float *eng_work;            /* layers' Gram workspace (autogram) */
    size_t eng_nwork;
    float *eng_jl;              /* per-task rows of one layer's parameters (autogram fallback) */
    size_t eng_njl;
    unsigned char *eng_route;   /* [trunk layers] autogram route per layer (MTLI_ROUTE_*) */
    int eng_force;              /* tests: route of G methods, 0 cheapest, 1 J, 2 autogram (each
                                 * layer's cheaper way), 3 autogram (Gram op wherever one) */
    size_t eng_stack_cap;       /* tests: floats per stacked buffer (0: the default) */
    bool eng_autogram;          /* the route chosen by the last prepare */
    int64_t grad_layers;        /* key "grad_layers": per-task gradients of the last k trunk
                                 * layers with parameters only (0: all) */
    size_t last_batch;          /* batch of the last predict */
    bool last_predict_valid;
};

/* Stacks */
void mtli_stack_init(mtli_stack *s, mtl_model *m);
void mtli_stack_free(mtli_stack *s);
mtl_status mtli_stack_add(mtli_stack *s, const char *kind, int *index, const char *owner);
mtli_layer *mtli_stack_layer(mtli_stack *s, int layer, const char *owner);
/* Infer shapes from the input dims; returns the needed params/state counts. */
mtl_status mtli_stack_setup(mtli_stack *s, int in_ndim, const int64_t *in_dims,
                            const char *owner);
/* Forward B samples from x; outputs in s->act[]. Returns the top output. */
const float *mtli_stack_forward(mtli_stack *s, const float *x, size_t B, bool train,
                                mtli_rng *rng);
/* Backward from dy_top [B, out]; accumulates parameter grads into dparams_base (a buffer of
 * the flat parameter layout: each layer writes at its own offset); writes the gradient with
 * respect to the stack input into dx (NULL: not needed). Uses the model's ping-pong
 * buffers. x is the stack input used in forward. */
void mtli_stack_backward(mtli_stack *s, const float *x, const float *dy_top, float *dx,
                         float *dparams_base, size_t B);
/* The same through layers lo..hi only (dy: gradient w.r.t. layer hi's output; dx: w.r.t.
 * layer lo's input, NULL: not needed). */
void mtli_stack_backward_range(mtli_stack *s, const float *x, int lo, int hi, const float *dy,
                               float *dx, float *dparams_base, size_t B);

/* What the stacked backward takes per parameter layer (mtli_stacked.route). */
enum {
    MTLI_ROUTE_NONE = 0, /* parameter gradients not wanted (dx only) */
    MTLI_ROUTE_ROWS,     /* per-task gradients into the rows of J */
    MTLI_ROUTE_GRAM,     /* the layer's Gram contribution (gram_stacked), no gradients */
    MTLI_ROUTE_ROWS_GRAM /* per-task gradients into jl, then their Gram into G */
};

/* A stacked backward of T gradient streams through one forward (the per-task-gradient
 * engine). */
typedef struct mtli_stacked {
    int T;
    size_t B;
    float *buf[2];              /* ping-pong, each [T*B, widest layer] */
    /* MTLI_ROUTE_ROWS: stream t's gradient of a layer at rows[t] + (offset of the layer's
     * parameters in the flat buffer) - P0 */
    float *const *rows;
    size_t P0;
    const unsigned char *route; /* [s->nlayers]; NULL: ROUTE_ROWS for every layer */
    double *G;                  /* [T*T] Gram, accumulated by the GRAM routes */
    float *work;                /* gram_stacked workspace */
    float *jl;                  /* ROUTE_ROWS_GRAM: T rows of ldjl floats */
    size_t ldjl;
} mtli_stacked;
/* Backward of the T streams dy ([T*B, out] of the top layer) through layers lo..top.
 * Returns the gradient with respect to layer lo's input ([T*B, in(lo)], in one of st->buf)
 * when want_dx, otherwise NULL. */
const float *mtli_stack_backward_stacked(mtli_stack *s, const float *x, int lo, const float *dy,
                                         bool want_dx, const mtli_stacked *st);

/* Train-step internals shared with the weighting engine. */
mtl_status mtli_model_check_batch(mtl_model *m, const mtl_tensor *input,
                                  const mtl_tensor *const *targets,
                                  const mtl_tensor *const *masks, bool train, const char *fn,
                                  size_t *B);

/* Whether head h (of a built model) is token-level: a cross_entropy head whose output is
 * [positions, classes] per sample; its targets are then int32 [B, positions] (step.c). */
bool mtli_head_tokens(const mtl_head *h, size_t *positions, size_t *classes);
/* A head's loss over B samples, token-level or not: validate the target (and mask; for a
 * token-level head on a sequence batch also that padding positions of input, which may be
 * NULL, have target -1), and evaluate (mtli_loss_eval with scale 1, or its token form). */
mtl_status mtli_head_loss_check(const mtl_model *m, const mtl_head *h,
                                const mtl_tensor *input, size_t B, const mtl_tensor *target,
                                const mtl_tensor *mask);
void mtli_head_loss_eval(const mtl_head *h, const float *out, size_t B,
                         const mtl_tensor *target, const mtl_tensor *mask, double *loss,
                         float *dlogits, size_t *cnt);

/* Per-task-gradient engine (engine.c). */
void mtli_engine_free(mtl_model *m);
/* Size the workspace for single-batch steps with w (NULL: plain sums) and bind w to the
 * shared columns these steps give it (all trunk parameters, or those of the last
 * grad_layers layers with parameters). want_J: the caller reads eng_J (J methods). */
mtl_status mtli_engine_prepare(mtl_model *m, mtl_weighting *w, unsigned needs, bool want_J);
/* The same for multi-input steps: J over all trunk parameters, filled by the caller. */
mtl_status mtli_engine_prepare_multi(mtl_model *m, mtl_weighting *w, unsigned needs);
/* The backward of a single-batch gradient-balancing step (m->grads zero on entry). */
mtl_status mtli_engine_backward(mtl_model *m, mtl_weighting *w, unsigned needs, const float *x,
                                const float *Z, size_t B, const bool *act);
/* Multi-input steps: weights from J (T x all trunk parameters, filled by the caller) and the
 * losses, heads scaled, shared gradient combined. */
mtl_status mtli_engine_combine(mtl_model *m, mtl_weighting *w, unsigned needs, const float *x,
                               size_t B, const bool *act);

#endif
