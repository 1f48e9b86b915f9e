/* Internal to optim/: the optimizer struct, the hyper-parameter key ids and the per-kind
 * update loops. */
#ifndef MTLI_OPTIM_INTERNAL_H
#define MTLI_OPTIM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "optim/optim.h"

typedef enum {
    MTLI_OPT_SGD = 0,
    MTLI_OPT_ADAM,
    MTLI_OPT_ADAMW,
    MTLI_OPT_RMSPROP,
    MTLI_OPT_ADAGRAD,
    MTLI_OPT_NKINDS
} mtli_opt_kind;

/* Hyper-parameter ids: indices into mtl_optimizer.v, in the order mtl_optimizer_key_name
 * lists them. String keys (schedule, milestones) keep their value elsewhere. */
typedef enum {
    MTLI_K_LR = 0,
    MTLI_K_WEIGHT_DECAY,
    MTLI_K_MOMENTUM,
    MTLI_K_DAMPENING,
    MTLI_K_NESTEROV,
    MTLI_K_BETA1,
    MTLI_K_BETA2,
    MTLI_K_EPS,
    MTLI_K_AMSGRAD,
    MTLI_K_ALPHA,
    MTLI_K_CENTERED,
    MTLI_K_LR_DECAY,
    MTLI_K_INITIAL_ACCUMULATOR,
    MTLI_K_CLIP_NORM,
    MTLI_K_CLIP_VALUE,
    MTLI_K_SCHEDULE,
    MTLI_K_WARMUP_STEPS,
    MTLI_K_WARMUP_START_FACTOR,
    MTLI_K_STEP_SIZE,
    MTLI_K_GAMMA,
    MTLI_K_MILESTONES,
    MTLI_K_TOTAL_STEPS,
    MTLI_K_MIN_LR,
    MTLI_K_SCHEDULE_INTERVAL,
    MTLI_NKEYS
} mtli_opt_key;

typedef enum {
    MTLI_SCHED_CONSTANT = 0,
    MTLI_SCHED_STEP,
    MTLI_SCHED_MULTISTEP,
    MTLI_SCHED_EXPONENTIAL,
    MTLI_SCHED_COSINE,
    MTLI_SCHED_LINEAR,
    MTLI_SCHED_NKINDS
} mtli_schedule;

/* Moment buffers by role (index into mtl_optimizer.buf); NULL until the options need them.
 *   sgd      0 momentum_buffer (momentum > 0)
 *   adam(w)  0 exp_avg, 1 exp_avg_sq, 2 max_exp_avg_sq (amsgrad)
 *   rmsprop  0 square_avg, 1 momentum_buffer (momentum > 0), 2 grad_avg (centered)
 *   adagrad  0 sum (starts at initial_accumulator_value) */
#define MTLI_OPT_MAX_BUFFERS 3

/* A contiguous range updated with one learning-rate multiplier: a named part, or a gap
 * between parts (part = -1, multiplier 1). */
typedef struct mtli_segment {
    size_t offset, count;
    int part;
} mtli_segment;

struct mtl_optimizer {
    mtli_opt_kind kind;
    double v[MTLI_NKEYS]; /* numeric hyper-parameters (integers stored exactly) */
    mtli_schedule schedule;
    char *milestones_text; /* as set; NULL = "" */
    int64_t *milestones;   /* increasing ticks */
    int nmilestones;
    size_t nparams;
    float *buf[MTLI_OPT_MAX_BUFFERS];
    int64_t step; /* successful updates since creation or reset */
    mtli_part *parts; /* names owned */
    double *part_scale;
    int nparts;
    mtli_segment *segs;
    int nsegs;
    mtl_model *model; /* borrowed */
};

/* One update of params[0..n) (offset `off` into the flat buffers) with learning rate lr,
 * for step number o->step + 1. Gradients are finite and already clipped. */
void mtli_sgd_update(mtl_optimizer *o, float *p, const float *g, size_t off, size_t n,
                     double lr);
void mtli_adam_update(mtl_optimizer *o, float *p, const float *g, size_t off, size_t n,
                      double lr);
void mtli_rmsprop_update(mtl_optimizer *o, float *p, const float *g, size_t off, size_t n,
                         double lr);
void mtli_adagrad_update(mtl_optimizer *o, float *p, const float *g, size_t off, size_t n,
                         double lr);

/* Learning rate for optimizer step number `step` (0-based), see optim.h. */
double mtli_schedule_lr(const mtl_optimizer *o, int64_t step);
const char *mtli_schedule_name(mtli_schedule s);
int mtli_schedule_from_name(const char *name, mtli_schedule *out);
/* Parse "30, 80" into an owned increasing array (NULL for none). Sets the error (range /
 * out of memory) naming `kind`. */
mtl_status mtli_parse_milestones(const char *kind, const char *text, int64_t **out, int *n);

/* Sum of squares of n floats in double (NaN/Inf propagate). */
double mtli_sum_squares(const float *g, size_t n);
/* Clamp to [-v, v]; multiply by s. */
void mtli_clamp(float *g, size_t n, float v);
void mtli_scale(float *g, size_t n, float s);

#endif
