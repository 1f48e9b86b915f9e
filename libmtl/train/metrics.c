/* Evaluation metrics (definitions in mtl/metrics.h). Sums are accumulated in double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor_internal.h"
#include "mtl/metrics.h"
#include "train/metrics.h"

/* ---- kernels over raw arrays ------------------------------------------------------------- */

mtl_status mtli_average_from_name(const char *name, mtli_average *out, const char *fn)
{
    if (!name)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: argument 'average' is NULL", fn);
    static const char *names[] = {"macro", "micro", "weighted", "binary"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (mtli_average)i;
            return MTL_OK;
        }
    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                      "%s: unknown average '%s' (expected macro, micro, weighted or binary)", fn,
                      name);
}

/* The predicted class of sample i, or -1 with the error set. */
static int predicted(const int32_t *ids, const float *scores, int C, size_t i, const char *fn)
{
    if (!scores) {
        int32_t p = ids[i];
        if (p < 0 || p >= C) {
            mtli_error(MTL_ERR_RANGE, "%s: prediction %zu is class %d, expected 0..%d", fn, i,
                       (int)p, C - 1);
            return -1;
        }
        return p;
    }
    const float *row = scores + i * (size_t)C;
    int best = 0;
    for (int c = 0; c < C; c++) {
        if (isnan(row[c])) {
            mtli_error(MTL_ERR_NUMERIC, "%s: score [%zu, %d] is NaN", fn, i, c);
            return -1;
        }
        if (row[c] > row[best])
            best = c;
    }
    return best;
}

static mtl_status check_label(int32_t y, int C, size_t i, const char *fn)
{
    if (y < -1 || y >= C)
        return mtli_error(MTL_ERR_RANGE, "%s: label %zu is %d, expected -1 (missing) or 0..%d", fn,
                          i, (int)y, C - 1);
    return MTL_OK;
}

mtl_status mtli_metric_counts(int64_t *tp, int64_t *npred, int64_t *ntrue, int C,
                              const int32_t *pred_ids, const float *scores,
                              const int32_t *labels, size_t n, int64_t *valid, const char *fn)
{
    memset(tp, 0, (size_t)C * sizeof *tp);
    memset(npred, 0, (size_t)C * sizeof *npred);
    memset(ntrue, 0, (size_t)C * sizeof *ntrue);
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t y = labels[i];
        MTLI_TRY(check_label(y, C, i, fn));
        if (y < 0)
            continue;
        int p = predicted(pred_ids, scores, C, i, fn);
        if (p < 0)
            return mtl_last_status();
        tp[y] += p == y;
        npred[p]++;
        ntrue[y]++;
        v++;
    }
    *valid = v;
    return MTL_OK;
}

mtl_status mtli_metric_confusion(int64_t *conf, int C, const int32_t *pred_ids,
                                 const float *scores, const int32_t *labels, size_t n,
                                 int64_t *valid, const char *fn)
{
    memset(conf, 0, (size_t)C * (size_t)C * sizeof *conf);
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t y = labels[i];
        MTLI_TRY(check_label(y, C, i, fn));
        if (y < 0)
            continue;
        int p = predicted(pred_ids, scores, C, i, fn);
        if (p < 0)
            return mtl_last_status();
        conf[(size_t)y * (size_t)C + (size_t)p]++;
        v++;
    }
    *valid = v;
    return MTL_OK;
}

static double ratio(int64_t a, int64_t b) { return b > 0 ? (double)a / (double)b : 0.0; }

static double class_value(int64_t tp, int64_t np, int64_t nt, mtli_prf which)
{
    switch (which) {
    case MTLI_PRECISION: return ratio(tp, np);
    case MTLI_RECALL: return ratio(tp, nt);
    case MTLI_F1: return np + nt > 0 ? 2.0 * (double)tp / (double)(np + nt) : 0.0;
    }
    return 0.0;
}

mtl_status mtli_metric_prf(double *out, const int64_t *tp, const int64_t *npred,
                           const int64_t *ntrue, int C, mtli_prf which, mtli_average avg,
                           const char *fn)
{
    int64_t stp = 0, snp = 0, snt = 0;
    for (int k = 0; k < C; k++) {
        stp += tp[k];
        snp += npred[k];
        snt += ntrue[k];
    }
    if (snt == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: no valid sample (every label is -1)",
                          fn);
    switch (avg) {
    case MTLI_AVG_MICRO: *out = class_value(stp, snp, snt, which); return MTL_OK;
    case MTLI_AVG_BINARY:
        for (int k = 2; k < C; k++)
            if (npred[k] > 0 || ntrue[k] > 0)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "%s: average 'binary' needs class ids 0 and 1 only; class %d "
                                  "occurs (use macro, micro or weighted)",
                                  fn, k);
        *out = C > 1 ? class_value(tp[1], npred[1], ntrue[1], which) : 0.0;
        return MTL_OK;
    case MTLI_AVG_MACRO: {
        double s = 0.0;
        int present = 0;
        for (int k = 0; k < C; k++)
            if (npred[k] > 0 || ntrue[k] > 0) {
                s += class_value(tp[k], npred[k], ntrue[k], which);
                present++;
            }
        *out = s / present;
        return MTL_OK;
    }
    case MTLI_AVG_WEIGHTED: {
        double s = 0.0;
        for (int k = 0; k < C; k++)
            if (ntrue[k] > 0)
                s += (double)ntrue[k] * class_value(tp[k], npred[k], ntrue[k], which);
        *out = s / (double)snt;
        return MTL_OK;
    }
    }
    return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: unknown average %d", fn, (int)avg);
}

typedef struct {
    float s;
    int32_t y;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x > y) - (x < y);
}

mtl_status mtli_metric_auc(double *out, const float *scores, size_t stride,
                           const int32_t *labels, size_t n, const char *fn)
{
    size_t m = 0;
    int64_t pos = 0, neg = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t y = labels[i];
        if (y < -1 || y > 1)
            return mtli_error(MTL_ERR_RANGE, "%s: label %zu is %d, expected -1 (missing), 0 or 1",
                              fn, i, (int)y);
        if (y < 0)
            continue;
        if (isnan(scores[i * stride]))
            return mtli_error(MTL_ERR_NUMERIC, "%s: score %zu is NaN", fn, i);
        pos += y == 1;
        neg += y == 0;
        m++;
    }
    if (m == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: no valid sample (every label is -1)",
                          fn);
    if (pos == 0 || neg == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: only one class (%d) is present among the %zu valid labels; ROC AUC "
                          "is undefined",
                          fn, pos ? 1 : 0, m);
    scored *v = mtli_malloc(m * sizeof *v);
    if (!v)
        return mtli_oom("roc_auc work array", m * sizeof *v);
    for (size_t i = 0, k = 0; i < n; i++)
        if (labels[i] >= 0) {
            v[k].s = scores[i * stride];
            v[k].y = labels[i];
            k++;
        }
    qsort(v, m, sizeof *v, cmp_scored);
    /* Mann–Whitney U: sum of the positives' ranks, tied scores sharing their average rank */
    double rank_sum = 0.0;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        int64_t tied_pos = 0;
        while (j < m && v[j].s == v[i].s)
            tied_pos += v[j++].y;
        double avg_rank = 0.5 * ((double)(i + 1) + (double)j);
        rank_sum += avg_rank * (double)tied_pos;
        i = j;
    }
    mtli_free(v);
    double p = (double)pos, q = (double)neg;
    *out = (rank_sum - p * (p + 1.0) / 2.0) / (p * q);
    return MTL_OK;
}

mtl_status mtli_metric_regression(double *out, mtli_regression which, const float *pred,
                                  const float *target, size_t n, size_t k, const char *fn)
{
    double total = 0.0;
    for (size_t j = 0; j < k; j++) {
        double st = 0.0, res = 0.0, abs_sum = 0.0;
        size_t cnt = 0;
        for (size_t i = 0; i < n; i++) {
            float t = target[i * k + j];
            if (isnan(t))
                continue;
            float p = pred[i * k + j];
            if (isnan(p))
                return mtli_error(MTL_ERR_NUMERIC, "%s: prediction [%zu, %zu] is NaN", fn, i, j);
            double d = (double)p - (double)t;
            res += d * d;
            abs_sum += fabs(d);
            st += t;
            cnt++;
        }
        if (cnt == 0) {
            if (k == 1)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "%s: no valid sample (every target is NaN)", fn);
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "%s: output %zu has no valid sample (every target is NaN)", fn, j);
        }
        double v;
        if (which == MTLI_MSE) {
            v = res / (double)cnt;
        } else if (which == MTLI_MAE) {
            v = abs_sum / (double)cnt;
        } else {
            double mean = st / (double)cnt, tot = 0.0;
            for (size_t i = 0; i < n; i++) {
                float t = target[i * k + j];
                if (!isnan(t))
                    tot += ((double)t - mean) * ((double)t - mean);
            }
            if (tot == 0.0)
                v = res == 0.0 ? 1.0 : 0.0; /* scikit-learn's force_finite */
            else
                v = 1.0 - res / tot;
        }
        total += v;
    }
    *out = total / (double)k;
    return MTL_OK;
}

/* ---- tensor front ends ------------------------------------------------------------------- */

/* t as a vector: [N] or [N, 1]. */
static mtl_status as_vector(const mtl_tensor *t, const char *what, mtl_dtype dt, size_t *n,
                            const char *fn)
{
    if (!t)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: argument '%s' is NULL", fn, what);
    if (t->dtype != dt)
        return mtli_error(MTL_ERR_SHAPE, "%s: %s must be %s", fn, what,
                          dt == MTL_INT32 ? "int32" : "float32");
    if (!(t->ndim == 1 || (t->ndim == 2 && t->shape[1] == 1)))
        return mtli_error(MTL_ERR_SHAPE, "%s: %s has %d dimensions, expected [N] or [N, 1]", fn,
                          what, t->ndim);
    *n = (size_t)t->shape[0];
    return MTL_OK;
}

typedef struct {
    const int32_t *ids;
    const float *scores;
    const int32_t *labels;
    size_t n;
    int C;
} cls_input;

/* Resolve classification inputs; C is the score width, or 1 + the largest id seen. */
static mtl_status class_input(cls_input *in, const mtl_tensor *pred, const mtl_tensor *labels,
                              const char *fn)
{
    if (!pred)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: argument 'pred' is NULL", fn);
    MTLI_TRY(as_vector(labels, "labels", MTL_INT32, &in->n, fn));
    in->labels = labels->data;
    in->ids = NULL;
    in->scores = NULL;
    size_t pn;
    if (pred->dtype == MTL_FLOAT32) {
        if (pred->ndim != 2 || pred->shape[1] < 2)
            return mtli_error(MTL_ERR_SHAPE,
                              "%s: float32 predictions must be scores [N, C] with C >= 2 (got "
                              "%d dimensions%s); threshold single scores into int32 ids",
                              fn, pred->ndim,
                              pred->ndim == 2 ? ", C = 1" : "");
        if (pred->shape[1] > INT32_MAX)
            return mtli_error(MTL_ERR_SHAPE, "%s: too many classes", fn);
        pn = (size_t)pred->shape[0];
        in->scores = pred->data;
        in->C = (int)pred->shape[1];
    } else {
        MTLI_TRY(as_vector(pred, "pred", MTL_INT32, &pn, fn));
        in->ids = pred->data;
    }
    if (pn != in->n)
        return mtli_error(MTL_ERR_SHAPE, "%s: pred has %zu samples, labels %zu", fn, pn, in->n);
    if (in->ids) {
        int32_t mx = 0;
        for (size_t i = 0; i < in->n; i++) {
            int32_t y = in->labels[i], p = in->ids[i];
            if (y < -1)
                return mtli_error(MTL_ERR_RANGE, "%s: label %zu is %d, expected -1 (missing) or "
                                                 ">= 0", fn, i, (int)y);
            if (y < 0)
                continue;
            if (p < 0)
                return mtli_error(MTL_ERR_RANGE, "%s: prediction %zu is class %d, expected >= 0",
                                  fn, i, (int)p);
            if (y > mx)
                mx = y;
            if (p > mx)
                mx = p;
        }
        if (mx == INT32_MAX)
            return mtli_error(MTL_ERR_RANGE, "%s: class id %d is too large", fn, (int)mx);
        in->C = mx + 1;
    }
    return MTL_OK;
}

static mtl_status prf_public(double *out, const mtl_tensor *pred, const mtl_tensor *labels,
                             const char *average, mtli_prf which, const char *fn)
{
    MTLI_CHECK_NULL(out, fn);
    mtli_average avg;
    MTLI_TRY(mtli_average_from_name(average, &avg, fn));
    cls_input in;
    MTLI_TRY(class_input(&in, pred, labels, fn));
    int64_t *cnt = mtli_malloc(3 * (size_t)in.C * sizeof *cnt);
    if (!cnt)
        return mtli_oom("class counts", 3 * (size_t)in.C * sizeof *cnt);
    int64_t *tp = cnt, *np = cnt + in.C, *nt = cnt + 2 * (size_t)in.C, valid;
    mtl_status st = mtli_metric_counts(tp, np, nt, in.C, in.ids, in.scores, in.labels, in.n,
                                       &valid, fn);
    double v = 0.0;
    if (st == MTL_OK)
        st = mtli_metric_prf(&v, tp, np, nt, in.C, which, avg, fn);
    mtli_free(cnt);
    if (st == MTL_OK)
        *out = v;
    return st;
}

MTL_API mtl_status mtl_metric_accuracy(double *out, const mtl_tensor *pred,
                                       const mtl_tensor *labels)
{
    return prf_public(out, pred, labels, "micro", MTLI_RECALL, "mtl_metric_accuracy");
}

MTL_API mtl_status mtl_metric_precision(double *out, const mtl_tensor *pred,
                                        const mtl_tensor *labels, const char *average)
{
    return prf_public(out, pred, labels, average, MTLI_PRECISION, "mtl_metric_precision");
}

MTL_API mtl_status mtl_metric_recall(double *out, const mtl_tensor *pred,
                                     const mtl_tensor *labels, const char *average)
{
    return prf_public(out, pred, labels, average, MTLI_RECALL, "mtl_metric_recall");
}

MTL_API mtl_status mtl_metric_f1(double *out, const mtl_tensor *pred, const mtl_tensor *labels,
                                 const char *average)
{
    return prf_public(out, pred, labels, average, MTLI_F1, "mtl_metric_f1");
}

/* Classification input checked against a caller's class count. */
static mtl_status class_input_k(cls_input *in, int num_classes, const mtl_tensor *pred,
                                const mtl_tensor *labels, const char *fn)
{
    if (num_classes < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: num_classes is %d, expected >= 1", fn,
                          num_classes);
    MTLI_TRY(class_input(in, pred, labels, fn));
    if (in->scores && in->C != num_classes)
        return mtli_error(MTL_ERR_SHAPE, "%s: scores have %d columns, num_classes is %d", fn,
                          in->C, num_classes);
    in->C = num_classes; /* ids >= num_classes are range errors in the counting pass */
    return MTL_OK;
}

MTL_API mtl_status mtl_metric_per_class(double *precision, double *recall, double *f1,
                                        int64_t *support, int num_classes,
                                        const mtl_tensor *pred, const mtl_tensor *labels)
{
    static const char *fn = "mtl_metric_per_class";
    cls_input in;
    MTLI_TRY(class_input_k(&in, num_classes, pred, labels, fn));
    size_t C = (size_t)num_classes;
    int64_t *cnt = mtli_malloc(3 * C * sizeof *cnt);
    if (!cnt)
        return mtli_oom("class counts", 3 * C * sizeof *cnt);
    int64_t *tp = cnt, *np = cnt + C, *nt = cnt + 2 * C, valid = 0;
    mtl_status st =
        mtli_metric_counts(tp, np, nt, num_classes, in.ids, in.scores, in.labels, in.n, &valid, fn);
    if (st == MTL_OK && valid == 0)
        st = mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: no valid sample (every label is -1)", fn);
    if (st == MTL_OK) {
        for (size_t k = 0; k < C; k++) {
            if (precision)
                precision[k] = class_value(tp[k], np[k], nt[k], MTLI_PRECISION);
            if (recall)
                recall[k] = class_value(tp[k], np[k], nt[k], MTLI_RECALL);
            if (f1)
                f1[k] = class_value(tp[k], np[k], nt[k], MTLI_F1);
            if (support)
                support[k] = nt[k];
        }
    }
    mtli_free(cnt);
    return st;
}

MTL_API mtl_status mtl_metric_confusion(int64_t *out, int num_classes, const mtl_tensor *pred,
                                        const mtl_tensor *labels)
{
    static const char *fn = "mtl_metric_confusion";
    MTLI_CHECK_NULL(out, fn);
    cls_input in;
    MTLI_TRY(class_input_k(&in, num_classes, pred, labels, fn));
    size_t cells;
    if (!mtli_mul_size((size_t)num_classes, (size_t)num_classes, &cells) ||
        !mtli_mul_size(cells, sizeof(int64_t), &cells))
        return MTL_ERR_RANGE;
    int64_t *conf = mtli_malloc(cells);
    if (!conf)
        return mtli_oom("confusion matrix", cells);
    int64_t valid = 0;
    mtl_status st =
        mtli_metric_confusion(conf, num_classes, in.ids, in.scores, in.labels, in.n, &valid, fn);
    if (st == MTL_OK && valid == 0)
        st = mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: no valid sample (every label is -1)", fn);
    if (st == MTL_OK)
        memcpy(out, conf, cells);
    mtli_free(conf);
    return st;
}

MTL_API mtl_status mtl_metric_roc_auc(double *out, const mtl_tensor *scores,
                                      const mtl_tensor *labels)
{
    static const char *fn = "mtl_metric_roc_auc";
    MTLI_CHECK_NULL(out, fn);
    MTLI_CHECK_NULL(scores, fn);
    size_t n;
    MTLI_TRY(as_vector(labels, "labels", MTL_INT32, &n, fn));
    if (scores->dtype != MTL_FLOAT32)
        return mtli_error(MTL_ERR_SHAPE, "%s: scores must be float32", fn);
    size_t sn = (size_t)scores->shape[0], stride = 1, col = 0;
    if (scores->ndim == 2 && (scores->shape[1] == 1 || scores->shape[1] == 2)) {
        stride = (size_t)scores->shape[1];
        col = stride - 1;
    } else if (scores->ndim != 1) {
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: scores must be [N], [N, 1] or [N, 2] (got %d dimensions%s)", fn,
                          scores->ndim, scores->ndim == 2 ? " with more than 2 columns" : "");
    }
    if (sn != n)
        return mtli_error(MTL_ERR_SHAPE, "%s: scores have %zu samples, labels %zu", fn, sn, n);
    double v;
    MTLI_TRY(mtli_metric_auc(&v, (const float *)scores->data + col, stride, labels->data, n, fn));
    *out = v;
    return MTL_OK;
}

static mtl_status regression_public(double *out, const mtl_tensor *pred,
                                    const mtl_tensor *target, mtli_regression which,
                                    const char *fn)
{
    MTLI_CHECK_NULL(out, fn);
    MTLI_CHECK_NULL(pred, fn);
    MTLI_CHECK_NULL(target, fn);
    if (pred->dtype != MTL_FLOAT32 || target->dtype != MTL_FLOAT32)
        return mtli_error(MTL_ERR_SHAPE, "%s: pred and target must be float32", fn);
    size_t n = (size_t)pred->shape[0], k = pred->numel / n;
    size_t tn = (size_t)target->shape[0], tk = target->numel / tn;
    if (n != tn || k != tk)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: pred has %zu rows of %zu outputs, target %zu rows of %zu", fn, n,
                          k, tn, tk);
    double v;
    MTLI_TRY(mtli_metric_regression(&v, which, pred->data, target->data, n, k, fn));
    *out = v;
    return MTL_OK;
}

MTL_API mtl_status mtl_metric_mse(double *out, const mtl_tensor *pred, const mtl_tensor *target)
{
    return regression_public(out, pred, target, MTLI_MSE, "mtl_metric_mse");
}

MTL_API mtl_status mtl_metric_mae(double *out, const mtl_tensor *pred, const mtl_tensor *target)
{
    return regression_public(out, pred, target, MTLI_MAE, "mtl_metric_mae");
}

MTL_API mtl_status mtl_metric_r2(double *out, const mtl_tensor *pred, const mtl_tensor *target)
{
    return regression_public(out, pred, target, MTLI_R2, "mtl_metric_r2");
}

MTL_API mtl_status mtl_metric_delta_m(double *out, const double *values, const double *baselines,
                                      const int *lower_is_better, int T)
{
    static const char *fn = "mtl_metric_delta_m";
    MTLI_CHECK_NULL(out, fn);
    MTLI_CHECK_NULL(values, fn);
    MTLI_CHECK_NULL(baselines, fn);
    if (T < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: T is %d, expected >= 1", fn, T);
    double s = 0.0;
    for (int t = 0; t < T; t++) {
        int lower = lower_is_better ? lower_is_better[t] : 0;
        if (lower != 0 && lower != 1)
            return mtli_error(MTL_ERR_RANGE, "%s: lower_is_better[%d] is %d, expected 0 or 1", fn,
                              t, lower);
        if (!isfinite(values[t]) || !isfinite(baselines[t]))
            return mtli_error(MTL_ERR_NUMERIC, "%s: task %d: value %g or baseline %g is not "
                                               "finite", fn, t, values[t], baselines[t]);
        if (baselines[t] == 0.0)
            return mtli_error(MTL_ERR_RANGE,
                              "%s: task %d: the baseline is 0, the relative change is undefined",
                              fn, t);
        double rel = (values[t] - baselines[t]) / baselines[t];
        s += lower ? -rel : rel;
    }
    *out = 100.0 * s / T;
    return MTL_OK;
}

/* ---- by name ----------------------------------------------------------------------------- */

typedef enum { M_ACC, M_PRF, M_AUC, M_REG, M_RMSE } mgroup;

static const struct {
    const char *name;
    mgroup group;
    int sub;  /* mtli_prf or mtli_regression */
    int avg;  /* mtli_average */
    int lower;
} metric_table[] = {
    {"accuracy", M_ACC, 0, 0, 0},
    {"precision", M_PRF, MTLI_PRECISION, MTLI_AVG_BINARY, 0},
    {"recall", M_PRF, MTLI_RECALL, MTLI_AVG_BINARY, 0},
    {"f1", M_PRF, MTLI_F1, MTLI_AVG_BINARY, 0},
    {"precision_macro", M_PRF, MTLI_PRECISION, MTLI_AVG_MACRO, 0},
    {"precision_micro", M_PRF, MTLI_PRECISION, MTLI_AVG_MICRO, 0},
    {"precision_weighted", M_PRF, MTLI_PRECISION, MTLI_AVG_WEIGHTED, 0},
    {"recall_macro", M_PRF, MTLI_RECALL, MTLI_AVG_MACRO, 0},
    {"recall_micro", M_PRF, MTLI_RECALL, MTLI_AVG_MICRO, 0},
    {"recall_weighted", M_PRF, MTLI_RECALL, MTLI_AVG_WEIGHTED, 0},
    {"f1_macro", M_PRF, MTLI_F1, MTLI_AVG_MACRO, 0},
    {"f1_micro", M_PRF, MTLI_F1, MTLI_AVG_MICRO, 0},
    {"f1_weighted", M_PRF, MTLI_F1, MTLI_AVG_WEIGHTED, 0},
    {"roc_auc", M_AUC, 0, 0, 0},
    {"mse", M_REG, MTLI_MSE, 0, 1},
    {"rmse", M_RMSE, MTLI_MSE, 0, 1},
    {"mae", M_REG, MTLI_MAE, 0, 1},
    {"r2", M_REG, MTLI_R2, 0, 0},
};
#define N_METRICS ((int)(sizeof metric_table / sizeof metric_table[0]))

static int find_metric(const char *name, const char *fn)
{
    if (!name) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: argument 'name' is NULL", fn);
        return -1;
    }
    for (int i = 0; i < N_METRICS; i++)
        if (strcmp(metric_table[i].name, name) == 0)
            return i;
    mtli_error(MTL_ERR_NOT_FOUND, "%s: unknown metric '%s'", fn, name);
    return -1;
}

MTL_API const char *mtl_metric_name(int index)
{
    return index >= 0 && index < N_METRICS ? metric_table[index].name : NULL;
}

MTL_API int mtl_metric_lower_is_better(const char *name)
{
    int i = find_metric(name, "mtl_metric_lower_is_better");
    return i < 0 ? -1 : metric_table[i].lower;
}

MTL_API mtl_status mtl_metric_compute(double *out, const char *name, const mtl_tensor *pred,
                                      const mtl_tensor *target)
{
    static const char *fn = "mtl_metric_compute";
    MTLI_CHECK_NULL(out, fn);
    int i = find_metric(name, fn);
    if (i < 0)
        return mtl_last_status();
    static const char *avg_names[] = {"macro", "micro", "weighted", "binary"};
    switch (metric_table[i].group) {
    case M_ACC: return mtl_metric_accuracy(out, pred, target);
    case M_PRF:
        return prf_public(out, pred, target, avg_names[metric_table[i].avg],
                          (mtli_prf)metric_table[i].sub, name);
    case M_AUC: return mtl_metric_roc_auc(out, pred, target);
    case M_REG:
        return regression_public(out, pred, target, (mtli_regression)metric_table[i].sub, name);
    case M_RMSE: {
        double v;
        MTLI_TRY(regression_public(&v, pred, target, MTLI_MSE, name));
        *out = sqrt(v);
        return MTL_OK;
    }
    }
    return mtli_error(MTL_ERR_INTERNAL, "%s: metric table entry %d is broken", fn, i);
}

/* ---- entity-level F1 (BIO / IOBES tags) ------------------------------------------------- */

/* One tag: its prefix ('O', 'B', 'I', 'E', 'S') and its entity type as the index of the
 * first tag with the same type text. */
typedef struct {
    char prefix;
    int type;
} ent_tag;

/* Chunk boundaries as conlleval defines them (seqeval's port, which adds the IOBES 'S'):
 * whether a chunk ends before / starts at a token with prefix `tag` and type `type`, given
 * the previous token's. For BIO this is conlleval exactly; an I- after O or after another
 * type starts a new entity. */
static bool ent_end(char prev, char tag, int prev_type, int type)
{
    if (prev == 'E' || prev == 'S')
        return true;
    if ((prev == 'B' || prev == 'I') && (tag == 'B' || tag == 'S' || tag == 'O'))
        return true;
    return prev != 'O' && prev_type != type;
}

static bool ent_start(char prev, char tag, int prev_type, int type)
{
    if (tag == 'B' || tag == 'S')
        return true;
    if ((prev == 'E' || prev == 'S' || prev == 'O') && (tag == 'E' || tag == 'I'))
        return true;
    return tag != 'O' && prev_type != type;
}

/* Streaming chunker of one tag sequence. */
typedef struct {
    char prev;
    int prev_type;
    int64_t start; /* start of the open chunk */
} ent_state;

/* Feed the token at position k (the tag, or the closing 'O' after the sequence); returns
 * whether a chunk closed before it and reports that chunk's start and type. */
static bool ent_feed(ent_state *s, char tag, int type, int64_t k, int64_t *cstart, int *ctype)
{
    bool closed = ent_end(s->prev, tag, s->prev_type, type);
    if (closed) {
        *cstart = s->start;
        *ctype = s->prev_type;
    }
    if (ent_start(s->prev, tag, s->prev_type, type))
        s->start = k;
    s->prev = tag;
    s->prev_type = type;
    return closed;
}

static mtl_status parse_tags(ent_tag *tags, const char *const *names, int ntags, const char *fn)
{
    for (int i = 0; i < ntags; i++) {
        const char *s = names[i];
        if (!s)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: tag name %d is NULL", fn, i);
        const char *type = NULL;
        if (strcmp(s, "O") == 0) {
            tags[i].prefix = 'O';
            tags[i].type = -1;
            continue;
        }
        if (strchr("BIES", s[0]) && s[0] != '\0' && s[1] == '-' && s[2] != '\0')
            type = s + 2;
        if (!type)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "%s: tag %d is '%s', expected \"O\" or B-, I-, E-, S- and a type "
                              "(\"B-PER\")",
                              fn, i, s);
        tags[i].prefix = s[0];
        tags[i].type = i;
        for (int j = 0; j < i; j++)
            if (tags[j].prefix != 'O' && strcmp(names[j] + 2, type) == 0) {
                tags[i].type = tags[j].type;
                break;
            }
    }
    return MTL_OK;
}

MTL_API mtl_status mtl_metric_entity_f1(double *f1, const mtl_tensor *pred_tags,
                                        const mtl_tensor *true_tags,
                                        const char *const *tag_names, int ntags)
{
    static const char *fn = "mtl_metric_entity_f1";
    MTLI_CHECK_NULL(f1, fn);
    MTLI_CHECK_NULL(pred_tags, fn);
    MTLI_CHECK_NULL(true_tags, fn);
    MTLI_CHECK_NULL(tag_names, fn);
    if (ntags < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: ntags is %d, expected >= 1", fn, ntags);
    const mtl_tensor *y = true_tags, *p = pred_tags;
    if (y->dtype != MTL_INT32 || (y->ndim != 1 && y->ndim != 2))
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: true_tags must be int32 [B, L] (or [L]), got %s with %d "
                          "dimensions",
                          fn, y->dtype == MTL_INT32 ? "int32" : "float32", y->ndim);
    size_t B = y->ndim == 2 ? (size_t)y->shape[0] : 1;
    size_t L = (size_t)y->shape[y->ndim - 1];
    bool scores = p->dtype == MTL_FLOAT32;
    bool ok = p->ndim == y->ndim + (scores ? 1 : 0);
    for (int d = 0; ok && d < y->ndim; d++)
        ok = p->shape[d] == y->shape[d];
    if (ok && scores)
        ok = p->shape[p->ndim - 1] == ntags;
    if (!ok) {
        if (scores)
            return mtli_error(MTL_ERR_SHAPE,
                              "%s: float32 pred_tags must be scores of the true_tags' shape and "
                              "%d tags (one column per tag name)",
                              fn, ntags);
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: int32 pred_tags must have the true_tags' shape (%zu x %zu)", fn,
                          B, L);
    }
    ent_tag *tags = mtli_malloc((size_t)ntags * sizeof *tags);
    if (!tags)
        return mtli_oom("entity tags", (size_t)ntags * sizeof *tags);
    mtl_status st = parse_tags(tags, tag_names, ntags, fn);
    int64_t n_true = 0, n_pred = 0, n_correct = 0, n_tokens = 0;
    const int32_t *yt = y->data;
    for (size_t b = 0; b < B && st == MTL_OK; b++) {
        ent_state sy = {'O', -1, 0}, sp = {'O', -1, 0};
        int64_t k = 0; /* position among the sample's valid tokens */
        for (size_t t = 0; t <= L && st == MTL_OK; t++) {
            char ty = 'O', tp = 'O';
            int typ_y = -1, typ_p = -1;
            if (t < L) {
                size_t i = b * L + t;
                int32_t v = yt[i];
                if (v < -1 || v >= ntags) {
                    st = mtli_error(MTL_ERR_RANGE,
                                    "%s: true tag [%zu, %zu] is %d, expected -1 (padding) or "
                                    "0..%d",
                                    fn, b, t, (int)v, ntags - 1);
                    break;
                }
                if (v < 0)
                    continue;
                int q = predicted(scores ? NULL : p->data, scores ? p->data : NULL, ntags, i, fn);
                if (q < 0) {
                    st = mtl_last_status();
                    break;
                }
                ty = tags[v].prefix;
                typ_y = tags[v].type;
                tp = tags[q].prefix;
                typ_p = tags[q].type;
                n_tokens++;
            }
            int64_t s1 = 0, s2 = 0;
            int c1 = 0, c2 = 0;
            bool cy = ent_feed(&sy, ty, typ_y, k, &s1, &c1);
            bool cp = ent_feed(&sp, tp, typ_p, k, &s2, &c2);
            n_true += cy;
            n_pred += cp;
            /* both chunks end before token k: equal when they start together, same type */
            n_correct += cy && cp && s1 == s2 && c1 == c2;
            k++;
        }
    }
    mtli_free(tags);
    if (st != MTL_OK)
        return st;
    if (n_tokens == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: no valid token (every true tag is -1)",
                          fn);
    double prec = n_pred ? (double)n_correct / (double)n_pred : 0.0;
    double rec = n_true ? (double)n_correct / (double)n_true : 0.0;
    *f1 = prec + rec > 0.0 ? 2.0 * prec * rec / (prec + rec) : 0.0;
    return MTL_OK;
}
