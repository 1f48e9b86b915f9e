/* Internal: the weighting handle, the contract between the train step and the weighting
 * methods, and the method table.
 *
 * THE CONTRACT (what the train step does each step)
 *
 *   once, after the model is built (and again whenever the shared parameter count changes):
 *     mtli_weighting_bind(w, P, layer_ends, nlayers, tensor_ends, ntensors)
 *        P: the number of shared (trunk) parameters, i.e. the columns of J;
 *        layer_ends / tensor_ends: cumulative end offsets (within 0..P) of the trunk's
 *        layers and of its parameter tensors (GradVac's "layer" and "matrix" granularity).
 *        Allocates what the method remembers per parameter (MoCo, DB-MTL, ExcessMTL,
 *        GradVac). Must precede mtli_weighting_state when checkpoints are loaded.
 *     scratch = P-sized workspace of mtli_weighting_workspace(w, T, P) doubles (may be 0).
 *
 *   each step:
 *     needs = mtli_weighting_needs(w)
 *     forward; losses[t] (unweighted), active[t] (task has targets this step)
 *     if needs & MTLI_NEED_J: J = T x P per-task gradients of the shared parameters
 *                             (row t = d loss_t / d shared params, float, row-major)
 *     if needs & MTLI_NEED_G: G = T x T Gram (double) of the per-task shared gradients,
 *                             or, if needs & MTLI_NEED_R, of the per-task gradients with
 *                             respect to the shared representation Z (flattened B x D);
 *                             rows/columns of inactive tasks are ignored.
 *     mtli_weighting_apply(w, &step)  -> weights[t] (and maybe shared_out)
 *     heads:  head t's parameter gradient = weights[t] * d loss_t / d head_t
 *     trunk:  if *wrote_shared: shared gradient = shared_out
 *             else             shared gradient = sum_t weights[t] * d loss_t / d shared
 *                              (one ordinary backward of sum_t weights[t] * loss_t)
 *     optimizer step
 *     if needs & MTLI_NEED_AFTER (FAMO): re-evaluate the losses on the same batch with the
 *        updated parameters (no backward) and call mtli_weighting_after_step(w, new_losses).
 *
 *   L methods need only the losses: mtli_weighting_weights(w, losses, active, T, weights)
 *   is the short form of apply for them (and returns MTL_ERR_UNSUPPORTED for the others).
 *
 * apply never allocates; every solver converges to a stated tolerance within an iteration
 * cap or returns MTL_ERR_NUMERIC naming the method and the residual (the handle's learned
 * state is then unchanged, except for a stochastic method's random stream). */
#ifndef MTLI_WEIGHTING_INTERNAL_H
#define MTLI_WEIGHTING_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "mtl/weighting.h"

/* What a method consumes (mtli_weighting_needs). */
#define MTLI_NEED_L 1u     /* the task losses only */
#define MTLI_NEED_G 2u     /* the T x T Gram matrix of per-task shared gradients */
#define MTLI_NEED_J 4u     /* the T x P per-task shared gradients */
#define MTLI_NEED_R 8u     /* with G: the Gram is taken w.r.t. the shared representation */
#define MTLI_NEED_AFTER 16u /* call mtli_weighting_after_step after the optimizer step */

/* Largest task count accepted by the gradient-based (G and J) methods; their small dense
 * solvers are O(T^3) per step. L methods accept up to 4096 tasks. */
#define MTLI_WMAX_GRAD_TASKS 256

/* One step's inputs and outputs. */
typedef struct mtli_wstep {
    int T;                 /* tasks; must equal the handle's */
    const double *losses;  /* [T] unweighted task losses (entries of inactive tasks ignored) */
    const bool *active;    /* [T] task has a target this step (NULL: all active) */
    const double *G;       /* [T*T] Gram (row-major, symmetric) or NULL */
    const float *J;        /* [T*P] per-task shared gradients, row-major, or NULL */
    size_t P;              /* columns of J (the bound P) */
    double *weights;       /* out [T]: coefficient of each task's gradient (0 if inactive) */
    float *shared_out;     /* out [P] or NULL: J methods write the combined shared gradient */
    bool *wrote_shared;    /* out: true when shared_out was written (may be NULL if no J) */
    double *scratch;       /* mtli_weighting_workspace(w, T, P) doubles (NULL if that is 0) */
} mtli_wstep;

unsigned mtli_weighting_needs(const mtl_weighting *w);
mtl_status mtli_weighting_bind(mtl_weighting *w, size_t P, const size_t *layer_ends,
                               int nlayers, const size_t *tensor_ends, int ntensors);
/* Doubles of per-step workspace the caller passes as step.scratch (0 for most methods). */
size_t mtli_weighting_workspace(const mtl_weighting *w, int T, size_t P);
mtl_status mtli_weighting_apply(mtl_weighting *w, const mtli_wstep *s);
/* FAMO: losses on the same batch after the update. A no-op (MTL_OK) for other methods. */
mtl_status mtli_weighting_after_step(mtl_weighting *w, const double *new_losses);
/* Everything the method learns or remembers, as one flat vector of doubles (learned
 * parameters and their optimizer moments, loss history, step count, the random stream's
 * four 64-bit words as eight exact 32-bit halves). Saving these doubles and writing them
 * back later gives bit-identical continuation. The size depends on the method, T and the
 * bound P; the pointer stays valid until the next bind or free. */
size_t mtli_weighting_state_size(const mtl_weighting *w);
double *mtli_weighting_state(mtl_weighting *w);
/* The L-method short form used by the model's train step (see the contract). */
mtl_status mtli_weighting_weights(mtl_weighting *w, const double *losses, const bool *active,
                                  int T, double *weights);

/* ---------------------------------------------------------------------------------------
 * Method table (one entry per method; the files w_*.c define them). */

typedef enum { MTLI_WKEY_DOUBLE, MTLI_WKEY_INT, MTLI_WKEY_STRING } mtli_wkey_type;

typedef struct mtli_wkey {
    const char *name;
    mtli_wkey_type type;
    double def;                 /* default (STRING: index into choices) */
    double lo, hi;              /* inclusive range for DOUBLE/INT */
    bool lo_open;               /* lo itself excluded */
    const char *const *choices; /* STRING: NULL-terminated list */
} mtli_wkey;

#define MTLI_WMAX_KEYS 12

#define MTLI_KD(name, def, lo, hi, lo_open) \
    { (name), MTLI_WKEY_DOUBLE, (def), (lo), (hi), (lo_open), NULL }
#define MTLI_KI(name, def, lo, hi) { (name), MTLI_WKEY_INT, (def), (lo), (hi), false, NULL }
#define MTLI_KS(name, def, choices) { (name), MTLI_WKEY_STRING, (def), 0.0, 0.0, false, (choices) }
/* Seeds are 0 .. 2^53 so that every value survives a round trip through a double. */
#define MTLI_KSEED MTLI_KI("seed", 0, 0, 9007199254740992.0)

/* Per-step view handed to a method: only the active tasks, compacted. */
typedef struct mtli_wctx {
    int T;               /* all tasks */
    int k;               /* active tasks */
    const int *idx;      /* [k] their indices */
    const double *L;     /* [k] their losses */
    const double *G;     /* [k*k] their Gram (NULL unless needs G) */
    const float *J;      /* full J (rows by idx) or NULL */
    size_t P;
    double *w;           /* out [k] weights of the active tasks */
    float *shared_out;   /* J methods */
    bool wrote_shared;
    double *ws;          /* method's T-sized workspace (handle-owned) */
    double *pws;         /* method's P-sized workspace (caller's scratch) */
} mtli_wctx;

typedef struct mtli_wmethod {
    const char *name;
    unsigned needs;         /* MTLI_NEED_L, _G or _J, plus _AFTER (R is added by "mode") */
    unsigned (*needs_fn)(const mtl_weighting *w); /* non-NULL: needs depend on the keys */
    bool rep_capable;       /* G methods: key "mode" accepts "representation" */
    bool rep_only;          /* the method is defined in representation mode (mgda_ub) */
    const mtli_wkey *keys;
    int nkeys;
    /* doubles of method state for T tasks (the common part is added by the handle) */
    size_t (*state_size)(const mtl_weighting *w, int T);
    /* doubles of state that depend on the bound P (NULL: none) */
    size_t (*bound_size)(const mtl_weighting *w, size_t P);
    /* doubles of handle-owned workspace for T tasks */
    size_t (*ws_size)(int T);
    /* doubles of caller workspace for P columns (NULL: none) */
    size_t (*pws_size)(const mtl_weighting *w, int T, size_t P);
    void (*reset)(mtl_weighting *w);                 /* fill the state's initial values */
    mtl_status (*apply)(mtl_weighting *w, mtli_wctx *c);
    mtl_status (*after_step)(mtl_weighting *w, const double *new_losses); /* NULL: no-op */
    /* after key `key` changed (key -1: after mtli_weighting_bind); may reject the value
     * (the old value is then restored). NULL: nothing to do. */
    mtl_status (*on_set)(mtl_weighting *w, int key);
} mtli_wmethod;

struct mtl_weighting {
    const mtli_wmethod *m;
    const char *alias;      /* name used at create when it selects a variant */
    int T;
    double kd[MTLI_WMAX_KEYS];  /* DOUBLE/STRING(choice index) values */
    int64_t ki[MTLI_WMAX_KEYS]; /* INT values */
    bool rep;               /* key "mode" = "representation" */
    double *fixed;          /* [T] weights of "fixed" */
    /* state: [0] steps, [1..T] last weights, then the method's part (ms), then the bound
     * part (bs) */
    double *state;
    size_t nstate, nfixed;  /* total, and common + method part */
    double *ms, *bs;
    size_t P;               /* bound P (0: not bound) */
    size_t *layer_ends, *tensor_ends; /* trunk layout given to mtli_weighting_bind */
    int nlayer_ends, ntensor_ends;
    /* per-step compaction and workspace (sized at create) */
    int *idx;
    double *cL, *cG, *cw, *ws;
    size_t nws;
    float *fG, *fw;         /* J methods: a T x T float Gram and T float weights */
};

/* Key values by index. */
static inline double mtli_wkd(const mtl_weighting *w, int key) { return w->kd[key]; }
static inline int64_t mtli_wki(const mtl_weighting *w, int key) { return w->ki[key]; }
static inline int mtli_wks(const mtl_weighting *w, int key) { return (int)w->kd[key]; }

/* Steps taken so far (state[0]). */
static inline double mtli_wsteps(const mtl_weighting *w) { return w->state[0]; }

/* The random stream lives in the state as 8 doubles (32-bit halves of the 4 words). */
void mtli_wrng_load(const double *st, mtli_rng *r);
void mtli_wrng_store(double *st, const mtli_rng *r);
void mtli_wrng_seed(double *st, uint64_t seed);

/* A small Adam (PyTorch's update, betas 0.9/0.999, eps 1e-8, L2 weight decay added to the
 * gradient) over n learned values; state layout [m(n), v(n), t]. */
size_t mtli_wadam_size(int n);
void mtli_wadam_step(double *param, const double *grad, double *adam, int n, double lr,
                     double weight_decay);

/* Re-size the P-dependent state after a key changed its size (content restarts at 0). */
mtl_status mtli_weighting_rebind(mtl_weighting *w);

/* Gram helpers on the compacted problem. */
double mtli_wquad(const double *G, int k, const double *x); /* x^T G x */
/* Handle-owned workspace of the Gram methods: the solvers' part (mtli_solver_ws) followed
 * by MTLI_WGRAM_EXTRA(T) doubles for the method's own arrays. */
#define MTLI_WGRAM_EXTRA(T) (4 * (size_t)(T) * (size_t)(T) + 12 * (size_t)(T))
size_t mtli_wgram_ws(int T);
/* Start of the method's own part of the Gram workspace. */
double *mtli_wgram_extra(const mtli_wctx *c);

/* Aligned-MTL's balancing matrix B (k x k) for the Gram G; returns the rank used, or -1
 * when the eigen-decomposition fails. ws: 2k^2 + k doubles. */
int mtli_aligned_balance(int k, const double *G, double *B, double *ws);

/* The method entries. */
extern const mtli_wmethod mtli_w_ew, mtli_w_fixed, mtli_w_uw, mtli_w_dwa, mtli_w_gls,
    mtli_w_rlw, mtli_w_stch, mtli_w_famo, mtli_w_mgda, mtli_w_mgda_ub, mtli_w_pcgrad,
    mtli_w_cagrad, mtli_w_nash_mtl, mtli_w_imtl, mtli_w_aligned_mtl, mtli_w_fairgrad,
    mtli_w_upgrad, mtli_w_dualproj, mtli_w_gradnorm, mtli_w_config, mtli_w_graddrop,
    mtli_w_gradvac, mtli_w_moco, mtli_w_db_mtl, mtli_w_excessmtl;

#endif
