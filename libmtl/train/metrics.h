/* Internal: metric kernels over raw arrays, shared by the public mtl_metric_* functions and
 * the trainer (which evaluates straight from its batch buffers). Definitions and errors are
 * those documented in mtl/metrics.h; fn names the public caller in messages. */
#ifndef MTLI_METRICS_H
#define MTLI_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "mtl/status.h"

typedef enum {
    MTLI_AVG_MACRO = 0,
    MTLI_AVG_MICRO = 1,
    MTLI_AVG_WEIGHTED = 2,
    MTLI_AVG_BINARY = 3
} mtli_average;

typedef enum { MTLI_PRECISION = 0, MTLI_RECALL = 1, MTLI_F1 = 2 } mtli_prf;

mtl_status mtli_average_from_name(const char *name, mtli_average *out, const char *fn);

/* Per-class counts over n samples, skipping labels of -1: tp[k] (label k predicted k),
 * npred[k] (predicted k), ntrue[k] (label k), for k in 0..C-1; the arrays are overwritten.
 * Predictions are pred_ids[i], or the argmax of scores[i * C .. i * C + C) when scores is
 * not NULL (the first maximum). *valid receives the number of samples counted. Ids out of
 * 0..C-1 (labels: -1..C-1) are range errors; a NaN score on a counted sample is a numeric
 * error. */
mtl_status mtli_metric_counts(int64_t *tp, int64_t *npred, int64_t *ntrue, int C,
                              const int32_t *pred_ids, const float *scores,
                              const int32_t *labels, size_t n, int64_t *valid, const char *fn);

/* The same pass filling conf[C * C] (row = label, column = prediction). */
mtl_status mtli_metric_confusion(int64_t *conf, int C, const int32_t *pred_ids,
                                 const float *scores, const int32_t *labels, size_t n,
                                 int64_t *valid, const char *fn);

/* Precision, recall or F1 from the per-class counts with the given average. */
mtl_status mtli_metric_prf(double *out, const int64_t *tp, const int64_t *npred,
                           const int64_t *ntrue, int C, mtli_prf which, mtli_average avg,
                           const char *fn);

/* ROC AUC from n scores (score of sample i at scores[i * stride]) and 0/1/-1 labels.
 * Allocates a work array of the valid samples. */
mtl_status mtli_metric_auc(double *out, const float *scores, size_t stride,
                           const int32_t *labels, size_t n, const char *fn);

typedef enum { MTLI_MSE = 0, MTLI_MAE = 1, MTLI_R2 = 2 } mtli_regression;

/* Regression metric over n rows of k outputs (row-major), NaN targets skipped, averaged
 * uniformly over the k outputs. */
mtl_status mtli_metric_regression(double *out, mtli_regression which, const float *pred,
                                  const float *target, size_t n, size_t k, const char *fn);

#endif
