/* libmtl — files: checkpoints (the whole training state) and safetensors (weights only).
 *
 * A checkpoint holds the model's architecture (input, every trunk and head layer with all its
 * options, losses with their options and class weights, L2 settings, max_batch, seed), its
 * weights and non-trained state (BatchNorm running statistics), the random generator state,
 * and optionally an optimizer (kind, every hyper-parameter, moment buffers, step count,
 * per-part learning-rate multipliers) and a task weighting (method, keys, weights, learned
 * state). The format is versioned, little-endian, checksummed section by section and as a
 * whole, and documented in docs/checkpoint-format.md; files written by any 1.x release stay
 * readable.
 *
 * Writes are atomic: the file is written under a temporary name in the target's directory,
 * flushed to disk, then renamed over the target, so a failed or interrupted save leaves the
 * previous file intact. Reads validate everything before anything is created or changed: a
 * truncated, corrupted, wrong-version or mismatched file is an error (MTL_ERR_FORMAT,
 * MTL_ERR_UNSUPPORTED for newer versions or unknown kinds, MTL_ERR_IO for the file system,
 * MTL_ERR_SHAPE for an architecture mismatch) and changes nothing.
 *
 * safetensors files carry the model's named tensors (trainable parameters and state, float32,
 * with the parameter names of mtl_model_param_name) and can be read and written by PyTorch
 * users (safetensors.torch.load_file / save_file). Since 1.0. */
#ifndef MTL_IO_H
#define MTL_IO_H

#include <stddef.h>

#include "mtl/status.h"

MTL_BEGIN_DECLS

typedef struct mtl_model mtl_model;
typedef struct mtl_optimizer mtl_optimizer;
typedef struct mtl_weighting mtl_weighting;

/* Save the training state of a built model to path (atomically, see above). opt (may be
 * NULL) must be an optimizer created for model; w (may be NULL) must be a weighting for as
 * many tasks as the model has heads. Nothing is read from or written to the handles beyond
 * their state. Errors: invalid argument (NULL model or path, a foreign optimizer, a weighting
 * for another task count), state (model not built), io (the file cannot be written; the
 * previous file at path, if any, is unchanged). Since 1.0. */
MTL_API mtl_status mtl_checkpoint_save(const char *path, const mtl_model *model,
                                       const mtl_optimizer *opt, const mtl_weighting *w);

/* Load a checkpoint into new handles: *model receives a model rebuilt from the stored
 * architecture (built, with the stored max_batch and seed) holding the stored weights, state
 * and random state. opt and w may be NULL (not wanted); otherwise *opt receives an optimizer
 * for *model and *w a weighting, restored exactly, and the file must contain them
 * (MTL_ERR_NOT_FOUND otherwise). All three are owned by the caller (free the optimizer
 * before the model). On error every output is NULL and nothing is leaked. Since 1.0. */
MTL_API mtl_status mtl_checkpoint_load(const char *path, mtl_model **model,
                                       mtl_optimizer **opt, mtl_weighting **w);

/* Resume into existing handles: model must be built with exactly the stored architecture
 * (same input, layers and options, heads in the same order with the same names, losses and
 * their options and class weights, L2 settings; max_batch and seed may differ); otherwise
 * MTL_ERR_SHAPE naming the first difference. opt (may be NULL) must be an optimizer of the
 * stored kind created for model; its hyper-parameters, buffers, step count and part
 * multipliers are overwritten. w (may be NULL) must be of the stored method and task count.
 * A handle passed non-NULL whose state the file lacks is MTL_ERR_NOT_FOUND. The whole file
 * is read and checked before anything changes: on any error model, opt and w are exactly as
 * before. Since 1.0. */
MTL_API mtl_status mtl_checkpoint_load_into(const char *path, mtl_model *model,
                                            mtl_optimizer *opt, mtl_weighting *w);

/* A human-readable summary of a checkpoint (format version, writer, input, layers, heads and
 * losses, parameter counts, optimizer and step, weighting), checked as thoroughly as a load.
 * Writes at most cap bytes including the terminating NUL into buf (buf may be NULL when cap
 * is 0); *needed (may be NULL) receives the size the full text needs, NUL included. A
 * truncated summary returns MTL_ERR_RANGE (buf then holds its NUL-terminated beginning).
 * Since 1.0. */
MTL_API mtl_status mtl_checkpoint_describe(const char *path, char *buf, size_t cap,
                                           size_t *needed);

/* Write the model's named tensors (trainable then state, all float32, shapes as
 * mtl_model_param_shape) to a safetensors file, atomically, with "__metadata__" holding
 * {"format": "pt", "producer": "libmtl <version>"}. Since 1.0. */
MTL_API mtl_status mtl_model_save_safetensors(const mtl_model *model, const char *path);

/* Read a safetensors file into a built model: every named tensor of the model must be
 * present as F32 with exactly its shape, and the file must hold no other tensors. The header
 * is parsed strictly (JSON, offsets inside the file, contiguous, no overlap, non-finite
 * values rejected). On any error (MTL_ERR_FORMAT for a malformed file, MTL_ERR_SHAPE or
 * MTL_ERR_NOT_FOUND for a tensor that does not fit the model) the model is unchanged.
 * Since 1.0. */
MTL_API mtl_status mtl_model_load_safetensors(mtl_model *model, const char *path);

MTL_END_DECLS

#endif
