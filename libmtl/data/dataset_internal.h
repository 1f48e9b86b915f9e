/* Internal: datasets, loaders and the seeded permutations they share with the trainer. */
#ifndef MTLI_DATASET_INTERNAL_H
#define MTLI_DATASET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/rng.h"
#include "mtl/dataset.h"

struct mtl_dataset {
    int ntasks;
    int64_t n;                    /* samples of this dataset (view length) */
    int64_t rows;                 /* rows of the underlying tensors */
    const mtl_tensor *inputs;
    const mtl_tensor **targets;   /* [ntasks], NULL = unlabelled slot */
    const mtl_tensor **masks;     /* [ntasks] */
    mtl_tensor *own_inputs;       /* owned copies of the pointers above, or NULL */
    mtl_tensor **own_targets;     /* [ntasks] */
    mtl_tensor **own_masks;       /* [ntasks] */
    int64_t *index;               /* view: underlying row of each sample; NULL = identity */
    bool view;
};

struct mtl_loader {
    const mtl_dataset *ds;
    int64_t bs, n, nbatches;
    int shuffle, drop_last;
    uint64_t seed;
    int64_t pass, pos, rows;
    int64_t *perm;                /* [n] dataset positions in the order of the current pass */
    mtl_tensor *input;            /* [bs, ...] owned batch buffers */
    mtl_tensor **targets;         /* [ntasks] owned, NULL where the slot has none */
    mtl_tensor **masks;           /* [ntasks] */
};

/* A 64-bit mix of a seed and up to two stream numbers (splitmix64 finaliser), so that
 * passes and tasks draw from independent streams that depend on nothing else. */
uint64_t mtli_seed_mix(uint64_t seed, uint64_t a, uint64_t b);

/* perm[0..n-1] = a permutation of 0..n-1 determined by rng (Fisher-Yates from identity). */
void mtli_permutation(int64_t *perm, int64_t n, mtli_rng *rng);

/* Bytes of one row (sample) of a tensor: element size times the elements past dim 0. */
size_t mtli_row_bytes(const mtl_tensor *t);

/* Set the first dimension of a tensor whose buffer holds at least rows rows (the loader's
 * batch buffers; used for the last partial batch). */
void mtli_tensor_set_rows(mtl_tensor *t, int64_t rows);

#endif
