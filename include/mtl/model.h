/* libmtl — models: one shared trunk (a stack of layers) and any number of task heads
 * (each a stack of layers and a loss), with hard parameter sharing.
 *
 * Build a model in three steps: mtl_model_create (input description), add layers to the
 * trunk and heads (layer kinds by name, options by key), then mtl_model_build (shapes are
 * inferred, one flat parameter buffer is allocated and initialised from a seed). After the
 * build the architecture is fixed; parameters can be read and written by name.
 *
 * Layer kinds: "linear", "relu", "leaky_relu", "gelu", "tanh", "sigmoid", "dropout",
 * "layer_norm", "batch_norm", "embedding", "conv2d", "max_pool2d", "avg_pool2d", "flatten",
 * "dropout2d", "batch_norm2d" (NCHW: a sample is {C, H, W}), "lstm", "gru" (over token
 * sequences: int32 ids [B, L] with -1 as trailing padding, embedded with pooling "none").
 * Layer option keys: see docs/guide.md and docs/sequence.md.
 * Losses: "cross_entropy" (class ids, int32), "bce" (binary / multi-label with logits),
 * "mse", "l1", "huber". Missing labels: class id -1, NaN targets, or a per-sample mask.
 *
 * Parameter names: "trunk.<layer>.<param>" and "heads.<task>.<layer>.<param>", e.g.
 * "trunk.0.weight", "heads.age.2.bias" (layer numbers count every layer, as nn.Sequential).
 * Since 1.0. */
#ifndef MTL_MODEL_H
#define MTL_MODEL_H

#include <stdint.h>

#include "mtl/status.h"
#include "mtl/tensor.h"

MTL_BEGIN_DECLS

typedef struct mtl_model mtl_model;
typedef struct mtl_trunk mtl_trunk;
typedef struct mtl_head mtl_head;
typedef struct mtl_optimizer mtl_optimizer;
typedef struct mtl_weighting mtl_weighting;

/* Create an empty model whose input samples have the given dtype (MTL_FLOAT32 features or
 * MTL_INT32 token ids for an embedding first layer) and per-sample shape (ndim 1..3). Owned;
 * free with mtl_model_free. Since 1.0. */
MTL_API mtl_status mtl_model_create(mtl_model **out, mtl_dtype input_dtype, int ndim,
                                    const int64_t *sample_shape);
/* Accepts NULL. Frees the trunk and heads too. Since 1.0. */
MTL_API void mtl_model_free(mtl_model *model);

/* The shared trunk (borrowed; lives as long as the model). Since 1.0. */
MTL_API mtl_trunk *mtl_model_trunk(mtl_model *model);

/* Add a task head named task (unique; copied). *out (may be NULL) receives the borrowed
 * head. Since 1.0. */
MTL_API mtl_status mtl_model_add_head(mtl_model *model, mtl_head **out, const char *task);
MTL_API int mtl_model_num_heads(const mtl_model *model);
/* Borrowed head by position (0-based, in the order added) or by task name; NULL (and the
 * last error set) when absent. Since 1.0. */
MTL_API mtl_head *mtl_model_head_at(mtl_model *model, int index);
MTL_API mtl_head *mtl_model_head(mtl_model *model, const char *task);
MTL_API mtl_status mtl_model_head_index(const mtl_model *model, const char *task, int *index);

/* Append a layer of the named kind; *index (may be NULL) receives its position. Options of
 * the layer are set afterwards by key; layer -1 means the last layer added. Since 1.0. */
MTL_API mtl_status mtl_trunk_add_layer(mtl_trunk *trunk, const char *kind, int *index);
MTL_API mtl_status mtl_trunk_set_int(mtl_trunk *trunk, int layer, const char *key,
                                     int64_t value);
MTL_API mtl_status mtl_trunk_set_double(mtl_trunk *trunk, int layer, const char *key,
                                        double value);
MTL_API mtl_status mtl_trunk_set_string(mtl_trunk *trunk, int layer, const char *key,
                                        const char *value);
MTL_API int mtl_trunk_num_layers(const mtl_trunk *trunk);
/* Shorthand for add_layer("linear") + set_int("out", out). Since 1.0. */
MTL_API mtl_status mtl_trunk_add_linear(mtl_trunk *trunk, int64_t out);
/* Output features per sample of the trunk (after build; 0 before). Since 1.0. */
MTL_API int64_t mtl_trunk_output_size(const mtl_trunk *trunk);

MTL_API mtl_status mtl_head_add_layer(mtl_head *head, const char *kind, int *index);
MTL_API mtl_status mtl_head_set_int(mtl_head *head, int layer, const char *key, int64_t value);
MTL_API mtl_status mtl_head_set_double(mtl_head *head, int layer, const char *key,
                                       double value);
MTL_API mtl_status mtl_head_set_string(mtl_head *head, int layer, const char *key,
                                       const char *value);
MTL_API int mtl_head_num_layers(const mtl_head *head);
MTL_API mtl_status mtl_head_add_linear(mtl_head *head, int64_t out);
/* The head's loss by name (default "mse"); its options by key: "label_smoothing"
 * (cross_entropy, [0,1)), "delta" (huber, > 0). Since 1.0. */
MTL_API mtl_status mtl_head_set_loss(mtl_head *head, const char *loss);
MTL_API mtl_status mtl_head_set_loss_double(mtl_head *head, const char *key, double value);
/* Per-class weights for cross_entropy / per-column weights for bce (copied; n must equal the
 * head's output size at build). Since 1.0. */
MTL_API mtl_status mtl_head_set_class_weights(mtl_head *head, const float *weights, int64_t n);
MTL_API const char *mtl_head_name(const mtl_head *head);
MTL_API const char *mtl_head_loss(const mtl_head *head);
/* Output size per sample (after build; 0 before). Since 1.0. */
MTL_API int64_t mtl_head_output_size(const mtl_head *head);

/* Model-level options by key: "l2_trunk", "l2_heads": lambda >= 0 of the L2 penalty
 * lambda * ||theta||^2 added to the objective for that part's weights (biases and
 * normalisation parameters excluded; default 0). Since 1.0.
 * "grad_layers": k >= 0, a whole number (default 0: all). With k > 0, gradient-based
 * weightings see per-task gradients (their Gram matrix, or J) of the parameters of the
 * last k trunk layers that have parameters only, a cheaper approximation; the layers below
 * receive the combined gradient of the task weights. Single-batch steps in parameter mode
 * only (representation mode and multi-input steps take every layer); changing it rebinds
 * a weighting's per-parameter state. Since 1.0. */
MTL_API mtl_status mtl_model_set_double(mtl_model *model, const char *key, double value);
MTL_API mtl_status mtl_model_get_double(const mtl_model *model, const char *key, double *value);

/* Infer shapes, allocate the parameter, gradient and workspace buffers for batches of up to
 * max_batch samples, and initialise the parameters from seed. Since 1.0. */
MTL_API mtl_status mtl_model_build(mtl_model *model, int64_t max_batch, uint64_t seed);
MTL_API int mtl_model_is_built(const mtl_model *model);
MTL_API int64_t mtl_model_max_batch(const mtl_model *model);
/* Total trainable floats, and those of the shared trunk (the first range of the flat
 * buffer). Since 1.0. */
MTL_API int64_t mtl_model_num_params(const mtl_model *model);
MTL_API int64_t mtl_model_num_shared_params(const mtl_model *model);

/* Named parameter tensors (trainable ones first, then state such as BatchNorm running
 * statistics). Index 0..count-1; NULL past the end. Since 1.0. */
MTL_API int mtl_model_param_count(const mtl_model *model);
MTL_API const char *mtl_model_param_name(const mtl_model *model, int index);
/* Shape of a named parameter; *ndim receives its rank. Since 1.0. */
MTL_API mtl_status mtl_model_param_shape(const mtl_model *model, const char *name,
                                         int64_t *shape, int capacity, int *ndim);
/* Copy a parameter (or its gradient) into dst, or overwrite it from src; dst/src must be
 * float32 with the parameter's element count. Since 1.0. */
MTL_API mtl_status mtl_model_get_param(const mtl_model *model, const char *name,
                                       mtl_tensor *dst);
MTL_API mtl_status mtl_model_set_param(mtl_model *model, const char *name,
                                       const mtl_tensor *src);
MTL_API mtl_status mtl_model_get_grad(const mtl_model *model, const char *name,
                                      mtl_tensor *dst);

/* One training step on a batch: forward in training mode, per-task losses, task weighting
 * (weighting may be NULL: the plain sum), backward, clipping and the optimizer update.
 * input: [B, sample shape...] with B <= max_batch. targets: one tensor per head in head order
 * (an entry may be NULL: that task is unlabelled in this batch and skipped); masks: NULL or
 * one entry per head (each NULL or [B] float32/int32, 0 = drop the sample for that task).
 * task_losses (may be NULL): receives num_heads values (unweighted mean loss per task; NaN
 * for a skipped task). On a NaN/Inf loss or gradient, returns MTL_ERR_NUMERIC and changes
 * nothing (parameters, optimizer, statistics and random state are as before). The steady
 * state performs no allocation. Since 1.0. */
MTL_API mtl_status mtl_model_train_step(mtl_model *model, mtl_optimizer *opt,
                                        mtl_weighting *weighting, const mtl_tensor *input,
                                        const mtl_tensor *const *targets,
                                        const mtl_tensor *const *masks, float *task_losses);

/* Forward and backward only: the model's gradients are set (overwritten) to the gradient of
 * the weighted objective; parameters do not change. Same arguments as train_step. For
 * custom loops (then mtl_optimizer_step) and gradient inspection. Since 1.0. */
MTL_API mtl_status mtl_model_forward_backward(mtl_model *model, mtl_weighting *weighting,
                                              const mtl_tensor *input,
                                              const mtl_tensor *const *targets,
                                              const mtl_tensor *const *masks,
                                              float *task_losses);

/* Multi-input training: each task brings its own batch (its own inputs, possibly of another
 * batch size), as when tasks are labelled on different datasets. inputs, targets and masks
 * hold one entry per head; a task whose input and target are both NULL is skipped this step.
 * The trunk runs once per present task; the task gradients of the shared parameters are
 * combined by the weighting (representation-mode methods are not available here, since the
 * shared representation differs between tasks). Otherwise as mtl_model_train_step.
 * Since 1.0. */
MTL_API mtl_status mtl_model_train_step_multi(mtl_model *model, mtl_optimizer *opt,
                                              mtl_weighting *weighting,
                                              const mtl_tensor *const *inputs,
                                              const mtl_tensor *const *targets,
                                              const mtl_tensor *const *masks,
                                              float *task_losses);
/* Forward and backward only, for multi-input batches. Since 1.0. */
MTL_API mtl_status mtl_model_forward_backward_multi(mtl_model *model, mtl_weighting *weighting,
                                                    const mtl_tensor *const *inputs,
                                                    const mtl_tensor *const *targets,
                                                    const mtl_tensor *const *masks,
                                                    float *task_losses);

/* Per-task losses in evaluation mode, without gradients or any state change. Since 1.0. */
MTL_API mtl_status mtl_model_compute_losses(mtl_model *model, const mtl_tensor *input,
                                            const mtl_tensor *const *targets,
                                            const mtl_tensor *const *masks,
                                            float *task_losses);

/* Inference: forward in evaluation mode; the heads' outputs are kept until the next call on
 * this model and read with mtl_model_output. Since 1.0. */
MTL_API mtl_status mtl_model_predict(mtl_model *model, const mtl_tensor *input);

/* What mtl_model_output returns. Since 1.0. */
typedef enum mtl_output_kind {
    MTL_OUTPUT_RAW = 0,          /* logits or regression values */
    MTL_OUTPUT_PROBABILITIES = 1 /* softmax (cross_entropy), sigmoid (bce), raw otherwise */
} mtl_output_kind;

/* Copy head `head`'s outputs from the last predict into dst (float32 with B * output_size
 * elements). Since 1.0. */
MTL_API mtl_status mtl_model_output(const mtl_model *model, int head, mtl_tensor *dst,
                                    mtl_output_kind kind);
/* Batch size of the last predict (0 if none). Since 1.0. */
MTL_API int64_t mtl_model_output_batch(const mtl_model *model);

/* The random seed state (dropout) can be reseeded between steps. Since 1.0. */
MTL_API mtl_status mtl_model_reseed(mtl_model *model, uint64_t seed);

MTL_END_DECLS

#endif
