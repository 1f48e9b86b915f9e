/* libmtl — datasets and batch loaders.
 *
 * A dataset holds N samples: one input tensor [N, sample shape...] and, for each of its
 * num_tasks task slots, an optional target tensor [N, ...] and an optional mask [N]. Task slot
 * t feeds head t of the model (heads in the order they were added). A slot without a target
 * is unlabelled: the task is skipped for every batch of this dataset. Single samples with a
 * missing label use the losses' conventions: class id -1 (int32 targets) or NaN (float32
 * targets), or mask 0.
 *
 *  - Single-input problems: one dataset whose slots hold every task's labels.
 *  - Multi-input problems (each task its own inputs): one dataset per task; the trainer reads
 *    only the slot of that task (slot t, or slot 0 of a dataset with one slot).
 *
 * Ownership. Tensors passed to mtl_dataset_create / set_target / set_mask are BORROWED
 * (zero-copy): they must stay alive and unchanged in shape for as long as the dataset and
 * every view and loader made from it. The adopt variants and everything a dataset loads
 * itself (npy files, CSV tables) are owned by the dataset and freed by mtl_dataset_free.
 * Views (mtl_dataset_split, mtl_dataset_subset) share the parent's tensors: the parent must
 * outlive them. A loader borrows its dataset, which must outlive the loader.
 *
 * Target dtypes follow the heads' losses: int32 class ids [N] for cross_entropy, float32
 * [N, C] (or [N] when C = 1) for bce and the regression losses. Masks are float32 or int32
 * [N] (0 drops the sample for that task).
 *
 * Since 1.0. */
#ifndef MTL_DATASET_H
#define MTL_DATASET_H

#include <stdint.h>

#include "mtl/data.h"
#include "mtl/status.h"
#include "mtl/tensor.h"

MTL_BEGIN_DECLS

/* Opaque dataset handle. Since 1.0. */
typedef struct mtl_dataset mtl_dataset;

/* ---- Creating --------------------------------------------------------------------------- */

/* Create a dataset over inputs [N, ...] (float32 or int32, N >= 1) with num_tasks (>= 1)
 * task slots, all unlabelled. inputs is borrowed (see above). Owned; free with
 * mtl_dataset_free. Errors: invalid argument (NULL, num_tasks < 1), out of memory. Since 1.0. */
MTL_API mtl_status mtl_dataset_create(mtl_dataset **out, const mtl_tensor *inputs,
                                      int num_tasks);

/* As mtl_dataset_create, but on success the dataset takes ownership of inputs (freed with
 * the dataset); on failure the caller keeps it. Since 1.0. */
MTL_API mtl_status mtl_dataset_adopt(mtl_dataset **out, mtl_tensor *inputs, int num_tasks);

/* Create a dataset whose inputs are loaded from an .npy file (mtl_npy_load: large files are
 * memory-mapped); the dataset owns them. Errors: those of mtl_npy_load, invalid argument.
 * Since 1.0. */
MTL_API mtl_status mtl_dataset_create_npy(mtl_dataset **out, const char *inputs_path,
                                          int num_tasks);

/* Create a dataset from a CSV table through a fitted encoder: the inputs are the encoder's
 * feature transforms (float32 [N, features], mtl_encoder_transform) when it has any,
 * otherwise its id transforms stacked as int32 [N, id columns] (for an embedding first
 * layer). Targets are added afterwards (mtl_dataset_set_target_label / _numeric). The
 * dataset owns what it creates; table and enc are not kept. Errors: those of the encoder
 * transforms, state (an encoder with neither features nor ids). Since 1.0. */
MTL_API mtl_status mtl_dataset_create_csv(mtl_dataset **out, const mtl_encoder *enc,
                                          const mtl_csv *table, int num_tasks);

/* Accepts NULL. Frees what the dataset owns (never borrowed tensors). Since 1.0. */
MTL_API void mtl_dataset_free(mtl_dataset *ds);

/* ---- Targets and masks ------------------------------------------------------------------ */

/* Set (or with NULL, clear) the target / mask of task slot `task` (0-based). Borrowed.
 * The first dimension must be N; a mask must be [N] (or [N, 1]) float32/int32. Errors:
 * invalid argument (NULL dataset, task out of range), shape (first dimension, mask shape or
 * dtype), state (the dataset is a view: set labels on the parent before splitting). Since 1.0. */
MTL_API mtl_status mtl_dataset_set_target(mtl_dataset *ds, int task, const mtl_tensor *target);
MTL_API mtl_status mtl_dataset_set_mask(mtl_dataset *ds, int task, const mtl_tensor *mask);

/* As set_target / set_mask, taking ownership of the tensor on success (the caller keeps it
 * on failure). Since 1.0. */
MTL_API mtl_status mtl_dataset_adopt_target(mtl_dataset *ds, int task, mtl_tensor *target);
MTL_API mtl_status mtl_dataset_adopt_mask(mtl_dataset *ds, int task, mtl_tensor *mask);

/* Load the target / mask of a task slot from an .npy file (owned by the dataset). Since 1.0. */
MTL_API mtl_status mtl_dataset_load_target_npy(mtl_dataset *ds, int task, const char *path);
MTL_API mtl_status mtl_dataset_load_mask_npy(mtl_dataset *ds, int task, const char *path);

/* Target of a task slot from label transform label_index of the encoder applied to table
 * (rows must match the dataset's N). as_float 0: int32 class ids [N] (-1 missing; for
 * cross_entropy heads); as_float 1: float32 [N, 1] with the id as a number and NaN for
 * missing (for a bce head of a two-class label: 0/1). Owned by the dataset. Errors: those of
 * mtl_encoder_transform_label, shape (row count), range (as_float 1 with more than two
 * classes). Since 1.0. */
MTL_API mtl_status mtl_dataset_set_target_label(mtl_dataset *ds, int task,
                                                const mtl_encoder *enc, const mtl_csv *table,
                                                int label_index, int as_float);

/* Target of a task slot from numeric columns of table: float32 [N, ncols], missing values
 * NaN (for regression heads). Owned. Errors: those of mtl_csv_numeric (format for a
 * non-numeric field), not found (a column name), shape (row count). Since 1.0. */
MTL_API mtl_status mtl_dataset_set_target_numeric(mtl_dataset *ds, int task,
                                                  const mtl_csv *table,
                                                  const char *const *columns, int ncols);

/* ---- Queries ---------------------------------------------------------------------------- */

/* Number of samples (N, or the view's length); 0 on NULL (last error set). Since 1.0. */
MTL_API int64_t mtl_dataset_size(const mtl_dataset *ds);
/* Number of task slots; 0 on NULL. Since 1.0. */
MTL_API int mtl_dataset_num_tasks(const mtl_dataset *ds);
/* 1 when the task slot has a target, 0 when not or out of range. Since 1.0. */
MTL_API int mtl_dataset_has_target(const mtl_dataset *ds, int task);
/* Borrowed tensors of the whole underlying data (of the parent for a view: index them with
 * mtl_dataset_index); NULL when absent. Since 1.0. */
MTL_API const mtl_tensor *mtl_dataset_inputs(const mtl_dataset *ds);
MTL_API const mtl_tensor *mtl_dataset_target(const mtl_dataset *ds, int task);
MTL_API const mtl_tensor *mtl_dataset_mask(const mtl_dataset *ds, int task);
/* Row of the underlying tensors holding sample i of the dataset (i itself unless a view);
 * -1 when out of range. Since 1.0. */
MTL_API int64_t mtl_dataset_index(const mtl_dataset *ds, int64_t i);

/* ---- Splits and views ------------------------------------------------------------------- */

/* Split into disjoint views covering every sample: a random permutation from seed assigns
 * round(val_fraction * N) samples to *val, round(test_fraction * N) to *test and the rest
 * to *train. Any output may be NULL (those samples are then simply not returned); a
 * fraction of 0 gives no view (the pointer receives NULL). Views are owned (mtl_dataset_free)
 * and borrow the parent's tensors: the parent must outlive them. Deterministic for a seed.
 * Errors: invalid argument (NULL ds, fractions outside [0, 1) or summing to >= 1), shape
 * (the train part would be empty), out of memory. Since 1.0. */
MTL_API mtl_status mtl_dataset_split(const mtl_dataset *ds, mtl_dataset **train,
                                     mtl_dataset **val, mtl_dataset **test,
                                     double val_fraction, double test_fraction, uint64_t seed);

/* A view of the samples indices[0..n-1] of ds (indices into ds, may repeat). Owned; shares
 * ds's tensors. Errors: invalid argument, range (an index out of range), out of memory.
 * Since 1.0. */
MTL_API mtl_status mtl_dataset_subset(mtl_dataset **out, const mtl_dataset *ds,
                                      const int64_t *indices, int64_t n);

/* ---- Gathering -------------------------------------------------------------------------- */

/* Copy samples indices[0..n-1] (dataset positions) into the first n rows of caller tensors:
 * input (same dtype and sample shape as the inputs, first dimension >= n); targets and masks
 * (each array NULL, or num_tasks entries, each NULL to skip or shaped like the dataset's
 * tensor with first dimension >= n; a mask row of an absent mask is written as 1). No
 * allocation. Errors: invalid argument, range (an index), shape. Since 1.0. */
MTL_API mtl_status mtl_dataset_gather(const mtl_dataset *ds, const int64_t *indices, int64_t n,
                                      mtl_tensor *input, mtl_tensor *const *targets,
                                      mtl_tensor *const *masks);

/* ---- Loaders: batches over a dataset ---------------------------------------------------- */

/* Opaque loader: iterates one dataset in batches, reshuffled each pass (or in order), into
 * batch tensors it owns. Buffers are allocated once at creation for batch_size rows; a batch
 * copies (gathers) its rows into them without any allocation. Since 1.0. */
typedef struct mtl_loader mtl_loader;

/* Create a loader over ds (borrowed) with batches of batch_size (>= 1) samples. With shuffle
 * set, pass p visits the samples in a permutation determined by (seed, p) only, so any pass
 * can be replayed; otherwise in order. drop_last set: a last partial batch is skipped.
 * Owned; free with mtl_loader_free. Errors: invalid argument, shape (drop_last with fewer
 * samples than one batch), out of memory. Since 1.0. */
MTL_API mtl_status mtl_loader_create(mtl_loader **out, const mtl_dataset *ds,
                                     int64_t batch_size, int shuffle, uint64_t seed,
                                     int drop_last);
/* Accepts NULL. Since 1.0. */
MTL_API void mtl_loader_free(mtl_loader *ld);

/* Gather the next batch of the current pass into the loader's tensors; *rows receives its
 * size (batch_size, or fewer for the last partial batch). At the end of a pass *rows is 0
 * (no batch) and the loader moves to the next pass. Since 1.0. */
MTL_API mtl_status mtl_loader_next(mtl_loader *ld, int64_t *rows);

/* The current batch (valid until the next mtl_loader_next; first dimension = its rows).
 * Borrowed. input: never NULL after a batch; targets/masks: arrays of num_tasks entries,
 * NULL where the slot has no target / mask (a mask of a slot without a target is left out).
 * The arrays can be passed straight to mtl_model_train_step. Since 1.0. */
MTL_API mtl_tensor *mtl_loader_input(const mtl_loader *ld);
MTL_API const mtl_tensor *const *mtl_loader_targets(const mtl_loader *ld);
MTL_API const mtl_tensor *const *mtl_loader_masks(const mtl_loader *ld);

/* Batches in one pass (a partial last one counted unless drop_last). Since 1.0. */
MTL_API int64_t mtl_loader_num_batches(const mtl_loader *ld);
/* The current pass (0-based) and the number of batches already taken from it. Since 1.0. */
MTL_API int64_t mtl_loader_pass(const mtl_loader *ld);
MTL_API int64_t mtl_loader_position(const mtl_loader *ld);
/* Move to batch `position` of pass `pass` (for resuming). Errors: range. Since 1.0. */
MTL_API mtl_status mtl_loader_seek(mtl_loader *ld, int64_t pass, int64_t position);

MTL_END_DECLS

#endif
