/* Internal: optimizers over a flat parameter buffer. The model-facing public calls
 * (mtl_optimizer_create, mtl_optimizer_step) live in model/ glue and call these.
 *
 * The parameter buffer is divided into named parts (the trunk, then each head, in order) that
 * can carry their own learning-rate multiplier. */
#ifndef MTLI_OPTIM_H
#define MTLI_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "mtl/optim.h"

typedef struct mtli_part {
    const char *name; /* "trunk" or the task name of a head (borrowed from the model) */
    size_t offset, count;
} mtli_part;

/* Create an optimizer for nparams floats divided into parts (copied). The handle is the
 * public struct mtl_optimizer; model is stored (borrowed) for the public step call. */
mtl_status mtli_optimizer_create(mtl_optimizer **out, const char *kind, size_t nparams,
                                 const mtli_part *parts, int nparts, mtl_model *model);

/* One update: clip grads in place (clip_value then clip_norm), check they are finite (return
 * MTL_ERR_NUMERIC before changing anything otherwise), apply the update with the scheduled
 * learning rate times each part's multiplier, advance the step count and schedule. */
mtl_status mtli_optimizer_update(mtl_optimizer *opt, float *params, float *grads);

/* The model the optimizer was created for. */
mtl_model *mtli_optimizer_model(const mtl_optimizer *opt);

/* State access for checkpoints: the moment buffers (each nparams floats), the step count,
 * and the hyper-parameters (read/written through the public get/set calls and key list). */
int mtli_optimizer_num_buffers(const mtl_optimizer *opt);
float *mtli_optimizer_buffer(mtl_optimizer *opt, int i);
size_t mtli_optimizer_nparams(const mtl_optimizer *opt);
int64_t *mtli_optimizer_step_ptr(mtl_optimizer *opt);
/* Per-part multipliers, in part order, for checkpoints. */
int mtli_optimizer_num_parts(const mtl_optimizer *opt);
double *mtli_optimizer_part_scale_ptr(mtl_optimizer *opt, int part);
/* String-valued keys (schedule, milestones) for checkpoints. */
const char *mtli_optimizer_get_string(const mtl_optimizer *opt, const char *key);

/* Global L2 norm of n floats, accumulated in double; NaN/Inf propagate. */
double mtli_l2_norm(const float *g, size_t n);

#endif
