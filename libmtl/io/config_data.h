/* Internal: the data a configuration describes, loaded into tensors (config_data.c).
 *
 * Per split (train, validation, test): one input tensor [N, sample...] (or, for multi-input
 * problems, one per task) and one target tensor per task in the layout its loss takes — int32 class ids [N] (-1 missing) for
 * cross_entropy, float32 [N, C] (NaN missing) for bce and the regression losses. CSV tables
 * go through one encoder fitted on the training table; fractions of the training rows become
 * validation/test splits after a seeded shuffle. */
#ifndef MTLI_IO_CONFIG_DATA_H
#define MTLI_IO_CONFIG_DATA_H

#include <stdint.h>

#include "io/config_internal.h"
#include "mtl/data.h"
#include "mtl/tensor.h"

enum { MTLI_SPLIT_TRAIN, MTLI_SPLIT_VALIDATION, MTLI_SPLIT_TEST, MTLI_NSPLITS };

struct mtli_cdata {
    int ntasks;
    int csv;                    /* 1: CSV tables and an encoder; 0: .npy files */
    mtl_dtype in_dtype;
    int in_ndim;
    int64_t in_shape[3];
    int64_t *outputs;           /* per task: output units of the final layer */
    int64_t *classes;           /* per task: number of classes (0: not a class label) */
    int multi;                     /* each task has its own inputs (tasks.*.data) */
    mtl_tensor *x[MTLI_NSPLITS];   /* single input: NULL when there is no such split */
    mtl_tensor **tx[MTLI_NSPLITS]; /* multi-input: ntasks inputs each (NULL: none) */
    mtl_tensor **y[MTLI_NSPLITS];  /* ntasks each; an entry is NULL when the split lacks it */
    mtl_encoder *enc;           /* CSV: fitted on the training table */
    int *label_index;           /* CSV: per task, its encoder label (-1: numeric columns) */
    int *positive;              /* CSV binary tasks: the class id that reads as 1 */
};

/* Load every split the configuration names. Errors name the file (and the node). */
mtl_status mtli_cdata_load(const mtl_config *cfg, mtli_cdata **out);
void mtli_cdata_free(mtli_cdata *d);

/* scikit-learn's "balanced" class weights n / (K * count_k) from the training labels of a
 * class-label task; *w stays NULL for other tasks. */
mtl_status mtli_cdata_balanced_weights(const mtli_cdata *d, int task, float **w, int64_t *n);

/* Load a CSV table with the reading options of a split (data.csv merged with the split's
 * own), for prediction/evaluation of new files with a saved encoder. split: "train",
 * "validation", "test" or NULL (data.csv only). path: NULL for the split's own file. */
mtl_status mtli_cdata_read_csv(const mtl_config *cfg, const char *split, const char *path,
                               mtl_csv **out);

/* Encode the input of a CSV table with the fitted encoder: float32 features, or int32 ids
 * (id column j shifted by the id ranges of columns 0..j-1). */
mtl_status mtli_cdata_encode_input(const mtli_cdata *d, const mtl_csv *table, mtl_tensor **out);

/* Resolve a data path against the configuration's directory and data.dir (mtli_malloc'ed). */
mtl_status mtli_config_data_path(const mtl_config *cfg, const char *rel, char **out);

#endif
