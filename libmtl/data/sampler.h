/* Internal: task samplers for multi-input training. Each step either trains one batch of
 * every task ("all") or one task drawn by a strategy. The draws come from the sampler's own
 * random stream (seeded), so a run is reproducible and its state (four words plus the
 * round-robin cursor) can be saved and restored. */
#ifndef MTLI_SAMPLER_H
#define MTLI_SAMPLER_H

#include <stdint.h>

#include "core/rng.h"
#include "mtl/status.h"

typedef enum {
    MTLI_SAMPLER_ALL = 0,
    MTLI_SAMPLER_ROUND_ROBIN = 1,
    MTLI_SAMPLER_PROPORTIONAL = 2,
    MTLI_SAMPLER_TEMPERATURE = 3,
    MTLI_SAMPLER_UNIFORM = 4
} mtli_sampler_kind;

typedef struct mtli_sampler {
    mtli_sampler_kind kind;
    int ntasks;        /* tasks of the model (with or without data) */
    double *prob;      /* [ntasks] probability of each task (0 without data) */
    double *cum;       /* [ntasks] cumulative probabilities */
    int cursor;        /* round robin: the next task to consider */
    mtli_rng rng;
} mtli_sampler;

/* Look up a sampler by name ("all", "round_robin", "proportional", "temperature",
 * "uniform"); unknown names are MTL_ERR_INVALID_ARGUMENT listing the valid ones. */
mtl_status mtli_sampler_kind_from_name(const char *name, mtli_sampler_kind *out);
const char *mtli_sampler_kind_name(mtli_sampler_kind kind);

/* Prepare a sampler for ntasks tasks whose datasets have sizes[t] samples (0 = the task has
 * no data and is never drawn; at least one must be > 0). temperature (> 0) is used by
 * "temperature": p_t proportional to sizes[t]^(1/temperature). */
mtl_status mtli_sampler_init(mtli_sampler *s, mtli_sampler_kind kind, const int64_t *sizes,
                             int ntasks, double temperature, uint64_t seed);
void mtli_sampler_free(mtli_sampler *s);

/* The task of the next step (kind != ALL). */
int mtli_sampler_next(mtli_sampler *s);

#endif
