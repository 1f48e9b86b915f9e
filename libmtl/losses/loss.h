/* Internal: task losses. Each computes the mean loss over the valid (unmasked) entries of a
 * batch and, optionally, the gradient of that mean with respect to the logits, scaled.
 *
 * Conventions (the same as PyTorch's defaults, so parity tests can compare directly):
 *  - cross_entropy: logits [B, C], target int32 [B] class ids in 0..C-1; id -1 = missing.
 *    Mean over valid samples; with class weights, sum(w_y * l) / sum(w_y) over valid samples.
 *    Label smoothing eps: target distribution (1-eps) one-hot + eps/C uniform.
 *  - bce (with logits): logits [B, C], target float [B, C] in [0, 1]; NaN = missing entry.
 *    Mean over valid entries. Optional pos_weight is not provided; class weights (length C)
 *    weight each column.
 *  - mse, l1, huber(delta): output [B, C], target float [B, C]; NaN = missing entry; mean over
 *    valid entries.
 *  - mask (optional): float32 or int32 [B]; 0 drops the sample from this task entirely.
 * A batch where every entry is missing has loss 0 and zero gradient (count 0).
 * Target values out of range (class id >= C or < -1, BCE target outside [0,1]) are errors
 * (MTL_ERR_INVALID_ARGUMENT naming the sample index and value). */
#ifndef MTLI_LOSS_H
#define MTLI_LOSS_H

#include <stdbool.h>
#include <stddef.h>

#include "mtl/status.h"
#include "mtl/tensor.h"

typedef enum {
    MTLI_LOSS_CROSS_ENTROPY = 0,
    MTLI_LOSS_BCE = 1,
    MTLI_LOSS_MSE = 2,
    MTLI_LOSS_L1 = 3,
    MTLI_LOSS_HUBER = 4
} mtli_loss_kind;

typedef struct mtli_loss {
    mtli_loss_kind kind;
    double label_smoothing; /* cross_entropy, 0..1 (default 0) */
    double delta;           /* huber (default 1.0) */
    float *class_weights;   /* NULL or C floats, owned by the loss (mtli_free) */
    size_t nclass_weights;
} mtli_loss;

/* Look up a loss kind by name ("cross_entropy" / "ce", "bce", "mse", "l1", "huber"). */
mtl_status mtli_loss_kind_from_name(const char *name, mtli_loss_kind *out);
const char *mtli_loss_kind_name(mtli_loss_kind kind);

/* Validate a target (and optional mask) against a batch of B rows of C outputs: dtype, shape
 * ([B] or [B,1] ids for cross_entropy; [B, C] or [B] when C == 1 for the others), values.
 * `task` names the head in messages. */
mtl_status mtli_loss_check(const mtli_loss *L, const char *task, size_t B, size_t C,
                           const mtl_tensor *target, const mtl_tensor *mask);

/* Compute the mean loss; if dlogits != NULL write scale * d(mean loss)/d(logits) into it
 * (overwrite, [B, C]; zero rows for missing samples). *count receives the number of valid
 * entries (samples for cross_entropy, elements otherwise). Inputs must have passed
 * mtli_loss_check. Accumulation is in double. */
void mtli_loss_eval(const mtli_loss *L, const float *logits, size_t B, size_t C,
                    const mtl_tensor *target, const mtl_tensor *mask, double *loss,
                    float *dlogits, float scale, size_t *count);

/* Per-sample predictions for inference: softmax (cross_entropy) or sigmoid (bce) of logits;
 * identity for regression losses. In place allowed (out == logits). */
void mtli_loss_activate(const mtli_loss *L, const float *logits, float *out, size_t B,
                        size_t C);

void mtli_loss_clear(mtli_loss *L);

/* Token-level cross_entropy, for a head whose output is [P, C] per sample (one row of C
 * logits per position of a sequence): logits [B, P, C] are B*P rows; target int32 [B, P]
 * class ids, -1 = ignored (padding or missing); mask (optional) [B] drops whole samples.
 * The loss is the mean over the valid tokens of the batch (F.cross_entropy of the [B*P, C]
 * logits with ignore_index=-1); class weights and label smoothing apply per token. *count
 * receives the number of valid tokens. Other loss kinds are MTL_ERR_UNSUPPORTED; bad shapes
 * or ids as mtli_loss_check (naming sample and position). For the probabilities, call
 * mtli_loss_activate with B*P rows of C. */
mtl_status mtli_loss_check_tokens(const mtli_loss *L, const char *task, size_t B, size_t P,
                                  size_t C, const mtl_tensor *target, const mtl_tensor *mask);
void mtli_loss_eval_tokens(const mtli_loss *L, const float *logits, size_t B, size_t P,
                           size_t C, const mtl_tensor *target, const mtl_tensor *mask,
                           double *loss, float *dlogits, float scale, size_t *count);

#endif
