/* libmtl — optimizers, learning-rate schedules, gradient clipping, per-part learning rates.
 *
 * An optimizer is bound to one built model and updates its flat parameter buffer. Kinds:
 * "sgd", "adam", "adamw", "rmsprop", "adagrad". Hyper-parameters are set by key (the same keys
 * as the configuration file); an unknown key, a key the kind does not use, or an out-of-range
 * value is an error. Keys and defaults (PyTorch's, so results compare directly):
 *   lr            learning rate (sgd 0.01, adam/adamw 0.001, rmsprop 0.01, adagrad 0.01), > 0
 *   weight_decay  L2 added to the gradient (adamw: decoupled), >= 0 (0; adamw 0.01)
 *   momentum      sgd, rmsprop: [0, 1) (0)
 *   dampening     sgd: [0, 1] (0)
 *   nesterov      sgd: 0/1 (0; needs momentum > 0 and dampening 0)
 *   beta1, beta2  adam, adamw: [0, 1) (0.9, 0.999)
 *   eps           adam/adamw 1e-8, rmsprop 1e-8, adagrad 1e-10; > 0
 *   amsgrad       adam, adamw: 0/1 (0)
 *   alpha         rmsprop smoothing: [0, 1) (0.99)
 *   centered      rmsprop: 0/1 (0)
 *   lr_decay      adagrad: >= 0 (0)
 *   initial_accumulator_value  adagrad: >= 0 (0)
 *   clip_norm     clip the global L2 norm of all gradients to this value; 0 = off (0)
 *   clip_value    clamp each gradient element to [-v, v]; 0 = off (0)
 *   schedule      "constant", "step", "multistep", "exponential", "cosine", "linear" (constant)
 *   warmup_steps  linear warm-up from warmup_start_factor*lr over this many ticks (0)
 *   warmup_start_factor  (0.0), in [0, 1]
 *   step_size     step: ticks between decays (1)
 *   gamma         step, multistep, exponential: decay factor in (0, 1] (0.1)
 *   milestones    multistep: comma-separated increasing ticks, as a string ("")
 *   total_steps   cosine, linear: ticks to reach min_lr (required for them), >= 1;
 *                 0 (the default) means not set
 *   min_lr        cosine, linear: final learning rate (0)
 *   schedule_interval  optimizer steps per schedule tick (1; set it to the steps of an epoch
 *                 for epoch-based schedules)
 * total_steps reads 0 until set. warmup_steps, step_size, total_steps and schedule_interval are
 * integers, nesterov/amsgrad/centered are 0 or 1: set them with set_int or with an integral
 * set_double. Errors: an unknown key, a key the kind does not use, a string key given to
 * set_double/set_int or a numeric key to set_string, an unknown schedule name:
 * MTL_ERR_INVALID_ARGUMENT; a value outside its range (or milestones that are not increasing
 * integers >= 0): MTL_ERR_RANGE. Options that are only wrong together (nesterov without
 * momentum > 0 and dampening 0; cosine or linear without total_steps) fail the next step with
 * MTL_ERR_STATE.
 *
 * Learning rate of a step: with t = step_count / schedule_interval (integer division),
 * W = warmup_steps, s0 = warmup_start_factor and u = max(t - W, 0),
 *   lr(t) = f(t) * S(u),   f(t) = s0 + (1 - s0) * t / W  for t < W,  1 otherwise
 *   constant     S(u) = lr
 *   step         S(u) = lr * gamma^floor(u / step_size)
 *   multistep    S(u) = lr * gamma^(number of milestones <= u)
 *   exponential  S(u) = lr * gamma^u
 *   cosine       S(u) = min_lr + (lr - min_lr) * (1 + cos(pi * min(u, T) / T)) / 2
 *                (T = total_steps)
 *   linear       S(u) = lr + (min_lr - lr) * min(u, T) / T
 * (PyTorch's StepLR, MultiStepLR, ExponentialLR and CosineAnnealingLR closed forms, counted
 * from the end of the warm-up; cosine and linear stay at min_lr after T). Each part's
 * multiplier (mtl_optimizer_set_lr_scale) then scales lr(t).
 *
 * One step: clip_value clamps every gradient, then clip_norm scales all of them by
 * clip_norm / (norm + 1e-6) when that is below 1 (torch.nn.utils.clip_grad_norm_), both in
 * place; then the update of the kind, with PyTorch 1.13's equations (Adam's weight_decay is
 * L2 added to the gradient, AdamW's is p -= lr * weight_decay * p before the Adam step).
 * Since 1.0. */
#ifndef MTL_OPTIM_H
#define MTL_OPTIM_H

#include <stdint.h>

#include "mtl/status.h"

MTL_BEGIN_DECLS

typedef struct mtl_model mtl_model;
/* Opaque optimizer handle. Since 1.0. */
typedef struct mtl_optimizer mtl_optimizer;

/* Create an optimizer of the named kind for a built model; the model must outlive it.
 * Owned; free with mtl_optimizer_free. Since 1.0. */
MTL_API mtl_status mtl_optimizer_create(mtl_optimizer **out, mtl_model *model,
                                        const char *kind);
/* Accepts NULL. Since 1.0. */
MTL_API void mtl_optimizer_free(mtl_optimizer *opt);

/* Set a hyper-parameter by key (see above). Since 1.0. */
MTL_API mtl_status mtl_optimizer_set_double(mtl_optimizer *opt, const char *key, double value);
MTL_API mtl_status mtl_optimizer_set_int(mtl_optimizer *opt, const char *key, int64_t value);
MTL_API mtl_status mtl_optimizer_set_string(mtl_optimizer *opt, const char *key,
                                            const char *value);
/* Read a numeric hyper-parameter. Since 1.0. */
MTL_API mtl_status mtl_optimizer_get_double(const mtl_optimizer *opt, const char *key,
                                            double *value);

/* Introspection: the i-th key this optimizer accepts (NULL past the end) and its default
 * value. The string keys (schedule, milestones) have no numeric value: get_double and
 * key_default return MTL_ERR_UNSUPPORTED for them (and set *value to NaN), which is how a
 * caller tells them apart. Since 1.0. */
MTL_API const char *mtl_optimizer_key_name(const mtl_optimizer *opt, int index);
MTL_API mtl_status mtl_optimizer_key_default(const mtl_optimizer *opt, const char *key,
                                             double *value);

/* Multiply the learning rate of one part of the model: "trunk", a head's task name (or
 * "heads.<task>"), or "heads" for all heads. scale >= 0 (0 freezes the part; its moment
 * buffers still advance, as with a PyTorch parameter group at lr 0). Errors: an unknown part
 * is MTL_ERR_NOT_FOUND, a negative or non-finite scale MTL_ERR_RANGE. Since 1.0. */
MTL_API mtl_status mtl_optimizer_set_lr_scale(mtl_optimizer *opt, const char *part,
                                              double scale);

/* The kind name, the learning rate the next step will use (before part multipliers), and
 * the number of steps taken. On a NULL handle: NULL, 0.0 and -1, with the last error set.
 * Since 1.0. */
MTL_API const char *mtl_optimizer_kind(const mtl_optimizer *opt);
MTL_API double mtl_optimizer_current_lr(const mtl_optimizer *opt);
MTL_API int64_t mtl_optimizer_step_count(const mtl_optimizer *opt);

/* Apply one update from the model's current gradients (for callers who run their own
 * backward, e.g. through mtl_model_backward). Clipping is applied first. Returns
 * MTL_ERR_NUMERIC and changes nothing when a gradient is NaN/Inf. Since 1.0. */
MTL_API mtl_status mtl_optimizer_step(mtl_optimizer *opt);

/* Clear the moment buffers and the step count (hyper-parameters are kept). Since 1.0. */
MTL_API mtl_status mtl_optimizer_reset(mtl_optimizer *opt);

MTL_END_DECLS

#endif
