/* libmtl — evaluation metrics, defined as scikit-learn defines them.
 *
 * Classification. Predictions are int32 class ids [N] (or [N, 1]), or float32 scores [N, C]
 * with C >= 2 (logits or probabilities; the predicted class is the first column holding the
 * row's maximum). Labels are int32 class ids [N] (or [N, 1]); a label of -1 is missing and
 * its sample is skipped. Predicted ids must be >= 0, labels >= -1, and both < C when scores
 * are given. A zero division (a class never predicted, or never present) counts as 0, like
 * scikit-learn's zero_division=0. Averages ("average" arguments):
 *   "macro"     unweighted mean over the classes present among the valid labels or the
 *               predictions (scikit-learn's labels=None)
 *   "micro"     from the pooled counts; for single-label data precision = recall = F1 =
 *               accuracy
 *   "weighted"  mean over classes weighted by their number of valid labels (support)
 *   "binary"    the value of class 1; every id must be 0 or 1
 *
 * Regression. Predictions and targets are float32 with the same first dimension N and the
 * same number of elements per row K ([N], [N, 1] and [N, K]); a NaN target is missing and its
 * entry is skipped. With K > 1 each output is scored over its valid entries and the K scores
 * are averaged (scikit-learn's multioutput="uniform_average").
 *
 * Every function accumulates in double and returns MTL_ERR_INVALID_ARGUMENT for NULL
 * arguments or when no valid sample is left, MTL_ERR_SHAPE when shapes or dtypes do not fit,
 * MTL_ERR_RANGE for an id out of range (naming the index and value), MTL_ERR_NUMERIC for a
 * NaN prediction on a valid sample, and MTL_ERR_OUT_OF_MEMORY. Results go to *out only on
 * success. Since 1.0. */
#ifndef MTL_METRICS_H
#define MTL_METRICS_H

#include <stdint.h>

#include "mtl/status.h"
#include "mtl/tensor.h"

MTL_BEGIN_DECLS

/* Fraction of valid samples whose predicted class equals the label. Since 1.0. */
MTL_API mtl_status mtl_metric_accuracy(double *out, const mtl_tensor *pred,
                                       const mtl_tensor *labels);

/* Precision, recall and F1 with the given average ("macro", "micro", "weighted", "binary").
 * Errors: also invalid argument for an unknown average, or "binary" with an id above 1.
 * Since 1.0. */
MTL_API mtl_status mtl_metric_precision(double *out, const mtl_tensor *pred,
                                        const mtl_tensor *labels, const char *average);
MTL_API mtl_status mtl_metric_recall(double *out, const mtl_tensor *pred,
                                     const mtl_tensor *labels, const char *average);
MTL_API mtl_status mtl_metric_f1(double *out, const mtl_tensor *pred, const mtl_tensor *labels,
                                 const char *average);

/* Per-class precision, recall, F1 and support (number of valid labels) for classes
 * 0..num_classes-1, written to caller arrays of num_classes entries; any of them may be NULL.
 * Scores must have num_classes columns. Errors: also range (an id >= num_classes). Since 1.0. */
MTL_API mtl_status mtl_metric_per_class(double *precision, double *recall, double *f1,
                                        int64_t *support, int num_classes,
                                        const mtl_tensor *pred, const mtl_tensor *labels);

/* Confusion matrix into out[num_classes * num_classes], row-major: out[i * num_classes + j]
 * counts valid samples of label i predicted as j (scikit-learn's layout). Since 1.0. */
MTL_API mtl_status mtl_metric_confusion(int64_t *out, int num_classes, const mtl_tensor *pred,
                                        const mtl_tensor *labels);

/* Area under the ROC curve for binary labels (0, 1; -1 missing). scores: float32 [N] or
 * [N, 1] (the positive class's score), or [N, 2] (column 1 is used). Tied scores count one
 * half (average ranks), so the value equals sklearn.metrics.roc_auc_score. Errors: also
 * invalid argument when only one class is present among the valid labels (the AUC is
 * undefined), range for a label other than -1, 0, 1. Since 1.0. */
MTL_API mtl_status mtl_metric_roc_auc(double *out, const mtl_tensor *scores,
                                      const mtl_tensor *labels);

/* Mean squared error, mean absolute error, and the coefficient of determination R² =
 * 1 - SS_res / SS_tot. For a constant target (SS_tot = 0) R² is 1 when the predictions are
 * exact and 0 otherwise (scikit-learn's force_finite=True). Since 1.0. */
MTL_API mtl_status mtl_metric_mse(double *out, const mtl_tensor *pred, const mtl_tensor *target);
MTL_API mtl_status mtl_metric_mae(double *out, const mtl_tensor *pred, const mtl_tensor *target);
MTL_API mtl_status mtl_metric_r2(double *out, const mtl_tensor *pred, const mtl_tensor *target);

/* Multi-task improvement over a baseline, in percent:
 *   Δm% = (100 / T) Σ_t (-1)^{s_t} (M_t - B_t) / B_t
 * with M_t = values[t], B_t = baselines[t] and s_t = lower_is_better[t] (1 when lower is
 * better, e.g. an error; 0 when higher is better, e.g. accuracy), so that a positive Δm is an
 * improvement. lower_is_better may be NULL (every s_t = 0). Errors: invalid argument (NULL,
 * T < 1), range (B_t = 0, or an s_t other than 0/1), numeric (a value not finite). Since 1.0. */
MTL_API mtl_status mtl_metric_delta_m(double *out, const double *values, const double *baselines,
                                      const int *lower_is_better, int T);

/* Compute a metric by name, as configuration files name them: "accuracy", "precision",
 * "recall", "f1" (average "binary"), "precision_macro", "precision_micro",
 * "precision_weighted" and likewise for recall_ and f1_, "roc_auc", "mse", "rmse", "mae",
 * "r2". Errors: as the metric's own function; not found for an unknown name. Since 1.0. */
MTL_API mtl_status mtl_metric_compute(double *out, const char *name, const mtl_tensor *pred,
                                      const mtl_tensor *target);

/* 1 when lower values of the named metric are better (mse, rmse, mae), 0 when higher are,
 * -1 for an unknown name (the last error is set). Since 1.0. */
MTL_API int mtl_metric_lower_is_better(const char *name);

/* The index-th metric name accepted by mtl_metric_compute (0-based), NULL past the end.
 * Static storage. Since 1.0. */
MTL_API const char *mtl_metric_name(int index);

/* Entity-level F1 of sequence tagging (named entities), as conlleval and seqeval's default
 * mode compute it. true_tags: int32 [B, L] (or [L]) tag ids, -1 = padding or ignored: such
 * positions are skipped, the others of a sample are read in order, and entities never cross
 * samples. pred_tags: int32 ids of the same shape, or float32 scores [B, L, ntags] (argmax,
 * the first maximum). tag_names[i] names tag id i: "O", or a prefix B-, I- (and IOBES's E-,
 * S-) with an entity type ("B-PER", "I-PER"). Entities are read with conlleval's chunk rules:
 * B- starts an entity, I- continues one of the same type, and an I- after O or after another
 * type starts a new entity. A predicted entity is correct when its type, first and last
 * token all equal a true entity's. F1 = 2PR / (P + R) with precision P = correct /
 * predicted entities and recall R = correct / true entities; 0 when no entity is correct
 * (also when neither side has any). Errors: invalid argument (NULL, ntags < 1, a tag name
 * not of that form, no valid token), shape, range (a tag id out of range), numeric (a NaN
 * score), out of memory. Since 1.0. */
MTL_API mtl_status mtl_metric_entity_f1(double *f1, const mtl_tensor *pred_tags,
                                        const mtl_tensor *true_tags,
                                        const char *const *tag_names, int ntags);

MTL_END_DECLS

#endif
