/* Evaluation: a model over one dataset (or one per head) in evaluation mode, per-task losses
 * and metrics, and the named-value result. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor_internal.h"
#include "data/dataset_internal.h"
#include "losses/loss.h"
#include "model/model_internal.h"
#include "mtl/metrics.h"
#include "train/trainer_internal.h"

/* ---- results ----------------------------------------------------------------------------- */

mtl_status mtli_eval_result_new(mtl_eval_result **out)
{
    *out = mtli_calloc(1, sizeof **out);
    if (!*out)
        return mtli_oom("evaluation result", sizeof **out);
    return MTL_OK;
}

static mtl_status add_name(mtl_eval_result *r, double value, char *name)
{
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        char **names = mtli_realloc(r->names, (size_t)cap * sizeof *names);
        if (!names) {
            mtli_free(name);
            return mtli_oom("evaluation names", (size_t)cap * sizeof *names);
        }
        r->names = names;
        double *values = mtli_realloc(r->values, (size_t)cap * sizeof *values);
        if (!values) {
            mtli_free(name);
            return mtli_oom("evaluation values", (size_t)cap * sizeof *values);
        }
        r->values = values;
        r->cap = cap;
    }
    r->names[r->n] = name;
    r->values[r->n] = value;
    r->n++;
    return MTL_OK;
}

mtl_status mtli_eval_add(mtl_eval_result *r, double value, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
        return mtli_error(MTL_ERR_INTERNAL, "evaluation: cannot format a value name");
    char *name = mtli_malloc((size_t)len + 1);
    if (!name)
        return mtli_oom("evaluation name", (size_t)len + 1);
    va_start(ap, fmt);
    vsnprintf(name, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return add_name(r, value, name);
}

mtl_status mtli_eval_append(mtl_eval_result *r, const mtl_eval_result *src)
{
    for (int i = 0; i < src->n; i++)
        MTLI_TRY(mtli_eval_add(r, src->values[i], "%s", src->names[i]));
    return MTL_OK;
}

int mtli_eval_find(const mtl_eval_result *r, const char *name)
{
    for (int i = 0; r && name && i < r->n; i++)
        if (strcmp(r->names[i], name) == 0)
            return i;
    return -1;
}

MTL_API void mtl_eval_result_free(mtl_eval_result *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++)
        mtli_free(r->names[i]);
    mtli_free(r->names);
    mtli_free(r->values);
    mtli_free(r);
}

MTL_API int mtl_eval_result_count(const mtl_eval_result *r) { return r ? r->n : 0; }

MTL_API const char *mtl_eval_result_name(const mtl_eval_result *r, int index)
{
    if (!r || index < 0 || index >= r->n) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_eval_result_name: index %d is out of range",
                   index);
        return NULL;
    }
    return r->names[index];
}

MTL_API double mtl_eval_result_value(const mtl_eval_result *r, int index)
{
    if (!r || index < 0 || index >= r->n) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_eval_result_value: index %d is out of range",
                   index);
        return NAN;
    }
    return r->values[index];
}

MTL_API mtl_status mtl_eval_result_get(const mtl_eval_result *r, const char *name, double *value)
{
    const char *fn = "mtl_eval_result_get";
    MTLI_CHECK_NULL(r, fn);
    MTLI_CHECK_NULL(name, fn);
    MTLI_CHECK_NULL(value, fn);
    int i = mtli_eval_find(r, name);
    if (i < 0)
        return mtli_error(MTL_ERR_NOT_FOUND, "%s: no value named '%s' (%d values)", fn, name,
                          r->n);
    *value = r->values[i];
    return MTL_OK;
}

/* ---- metric lists ------------------------------------------------------------------------ */

/* Next name of a comma-separated list into buf (spaces trimmed); returns the position after
 * it, or NULL at the end. */
static const char *next_name(const char *p, char *buf, size_t size)
{
    while (*p == ' ' || *p == ',')
        p++;
    if (!*p)
        return NULL;
    size_t n = 0;
    while (*p && *p != ',') {
        if (n + 1 < size)
            buf[n++] = *p;
        p++;
    }
    while (n > 0 && buf[n - 1] == ' ')
        n--;
    buf[n] = '\0';
    return p;
}

mtl_status mtli_eval_check_metrics(const char *list, const char *fn, const char *task)
{
    char name[64];
    for (const char *p = list; p && (p = next_name(p, name, sizeof name)) != NULL;) {
        if (strcmp(name, "per_class") == 0)
            continue;
        int ok = 0;
        for (int i = 0; mtl_metric_name(i); i++)
            ok |= strcmp(mtl_metric_name(i), name) == 0;
        if (!ok)
            return mtli_error(MTL_ERR_NOT_FOUND,
                              "%s: task '%s': unknown metric '%s' (expected per_class or a name "
                              "of mtl_metric_compute: accuracy, f1_macro, roc_auc, mse, ...)",
                              fn, task, name);
    }
    return MTL_OK;
}

int mtli_eval_slot(const mtl_dataset *ds, int head, int nheads, int multi)
{
    if (!ds)
        return -1;
    if (ds->ntasks == nheads)
        return head;
    if (multi && ds->ntasks == 1)
        return 0;
    return -1;
}

/* ---- one head ---------------------------------------------------------------------------- */

typedef struct {
    int head, slot;
    size_t C;            /* outputs per sample */
    size_t P;            /* positions per sample: 1, or a token-level head's P (C = P x classes) */
    float *raw;          /* [N, C] outputs */
    mtl_tensor *target;  /* gathered [N, ...] */
    mtl_tensor *mask;    /* gathered [N] or NULL */
} head_eval;

static void head_eval_free(head_eval *e)
{
    mtli_free(e->raw);
    mtl_tensor_free(e->target);
    mtl_tensor_free(e->mask);
    memset(e, 0, sizeof *e);
}

static mtl_status wrap(mtl_tensor **out, mtl_dtype dtype, void *data, int64_t n, int64_t c)
{
    if (c == 0)
        return mtl_tensor_wrap(out, dtype, data, 1, (int64_t[]){n});
    return mtl_tensor_wrap(out, dtype, data, 2, (int64_t[]){n, c});
}

/* One metric value: NaN when undefined on the data (no valid sample; AUC with one class). */
static mtl_status metric(double *out, const char *name, mtl_tensor *pred, mtl_tensor *labels,
                         int64_t nvalid, int has_both)
{
    if (nvalid == 0 || (strcmp(name, "roc_auc") == 0 && !has_both)) {
        *out = NAN;
        return MTL_OK;
    }
    return mtl_metric_compute(out, name, pred, labels);
}

static mtl_status add_per_class(mtl_eval_result *r, const char *prefix, const char *task, int K,
                                mtl_tensor *pred, mtl_tensor *labels, int64_t nvalid)
{
    double *p = mtli_calloc((size_t)K * 3, sizeof *p);
    if (!p)
        return mtli_oom("per-class metrics", (size_t)K * 3 * sizeof(double));
    mtl_status st = MTL_OK;
    if (nvalid > 0)
        st = mtl_metric_per_class(p, p + K, p + 2 * K, NULL, K, pred, labels);
    else
        for (int i = 0; i < 3 * K; i++)
            p[i] = NAN;
    static const char *what[3] = {"precision", "recall", "f1"};
    for (int w = 0; w < 3 && st == MTL_OK; w++)
        for (int k = 0; k < K && st == MTL_OK; k++)
            st = mtli_eval_add(r, p[w * K + k], "%s.%s.%s.%d", prefix, task, what[w], k);
    mtli_free(p);
    return st;
}

/* Classification metrics for a cross_entropy head or a one-output bce head. A token-level
 * head's rows are its tokens: P per sample, each of C classes (-1 targets skipped). */
static mtl_status class_metrics(mtl_eval_result *r, const char *prefix, const mtl_head *h,
                                head_eval *e, size_t nsamples, const char *list)
{
    const size_t P = e->P, C = e->C / P, N = nsamples * P;
    static const char *ce_default = "accuracy,precision_macro,recall_macro,f1_macro";
    static const char *bce_default = "accuracy,precision,recall,f1,roc_auc";
    bool bce = h->loss.kind == MTLI_LOSS_BCE;
    int K = bce ? 2 : (int)C;
    int32_t *labels = mtli_malloc(N * sizeof *labels);
    int32_t *ids = mtli_malloc(N * sizeof *ids);
    float *prob = mtli_malloc(N * C * sizeof *prob);
    mtl_tensor *tl = NULL, *tids = NULL, *tscores = NULL;
    mtl_status st = MTL_OK;
    if (!labels || !ids || !prob) {
        st = mtli_oom("evaluation labels", N * (8 + C * 4));
        goto done;
    }
    mtli_loss_activate(&h->loss, e->raw, prob, N, C);
    int64_t nvalid = 0;
    int seen[2] = {0, 0};
    for (size_t i = 0; i < N; i++) {
        int32_t y;
        if (bce) {
            float v = ((const float *)e->target->data)[i];
            y = isnan(v) ? -1 : (v >= 0.5f ? 1 : 0);
            ids[i] = prob[i] >= 0.5f ? 1 : 0;
        } else {
            y = ((const int32_t *)e->target->data)[i];
            const float *row = prob + i * C;
            int best = 0;
            for (size_t c = 1; c < C; c++)
                if (row[c] > row[best])
                    best = (int)c;
            ids[i] = best;
        }
        if (e->mask) {
            size_t s = i / P; /* the sample of row i */
            bool drop = e->mask->dtype == MTL_INT32 ? ((const int32_t *)e->mask->data)[s] == 0
                                                     : ((const float *)e->mask->data)[s] == 0.0f;
            if (drop)
                y = -1;
        }
        labels[i] = y;
        if (y >= 0) {
            nvalid++;
            if (y < 2)
                seen[y] = 1;
        }
    }
    if ((st = wrap(&tl, MTL_INT32, labels, (int64_t)N, 0)) != MTL_OK ||
        (st = wrap(&tids, MTL_INT32, ids, (int64_t)N, 0)) != MTL_OK)
        goto done;
    /* AUC reads the positive class's score: sigmoid output, or softmax [N, 2] */
    if ((st = wrap(&tscores, MTL_FLOAT32, prob, (int64_t)N, bce ? 0 : (int64_t)C)) != MTL_OK)
        goto done;
    const char *p = list && *list ? list : (bce ? bce_default : ce_default);
    char name[64];
    while (st == MTL_OK && (p = next_name(p, name, sizeof name)) != NULL) {
        if (strcmp(name, "per_class") == 0) {
            st = add_per_class(r, prefix, h->name, K, tids, tl, nvalid);
            continue;
        }
        double v;
        bool auc = strcmp(name, "roc_auc") == 0;
        bool reg = mtl_metric_lower_is_better(name) == 1 || strcmp(name, "r2") == 0;
        if (reg)
            st = mtli_error(MTL_ERR_INVALID_ARGUMENT,
                            "evaluation: task '%s': metric '%s' is for regression heads (this "
                            "head's loss is %s)",
                            h->name, name, mtli_loss_kind_name(h->loss.kind));
        else
            st = metric(&v, name, auc ? tscores : tids, tl, nvalid, seen[0] && seen[1]);
        if (st == MTL_OK)
            st = mtli_eval_add(r, v, "%s.%s.%s", prefix, h->name, name);
        else
            mtli_error_prefix("evaluation: task '%s', metric '%s'", h->name, name);
    }
done:
    mtl_tensor_free(tl);
    mtl_tensor_free(tids);
    mtl_tensor_free(tscores);
    mtli_free(labels);
    mtli_free(ids);
    mtli_free(prob);
    return st;
}

/* Multi-label bce: element-wise accuracy (threshold 0.5) and the mean per-column AUC over the
 * columns with both classes. */
static mtl_status multilabel_metrics(mtl_eval_result *r, const char *prefix, const mtl_head *h,
                                     head_eval *e, size_t N, const char *list)
{
    const char *p = list && *list ? list : "accuracy";
    size_t C = e->C;
    const float *y = e->target->data;
    char name[64];
    mtl_status st = MTL_OK;
    while (st == MTL_OK && (p = next_name(p, name, sizeof name)) != NULL) {
        double v = NAN;
        if (strcmp(name, "accuracy") == 0) {
            int64_t ok = 0, cnt = 0;
            for (size_t i = 0; i < N; i++) {
                if (e->mask && (e->mask->dtype == MTL_INT32
                                    ? ((const int32_t *)e->mask->data)[i] == 0
                                    : ((const float *)e->mask->data)[i] == 0.0f))
                    continue;
                for (size_t c = 0; c < C; c++) {
                    float t = y[i * C + c];
                    if (isnan(t))
                        continue;
                    cnt++;
                    ok += (e->raw[i * C + c] >= 0.0f) == (t >= 0.5f);
                }
            }
            if (cnt)
                v = (double)ok / (double)cnt;
        } else if (strcmp(name, "roc_auc") == 0) {
            int32_t *lab = mtli_malloc(N * sizeof *lab);
            if (!lab)
                return mtli_oom("evaluation labels", N * sizeof(int32_t));
            double sum = 0.0;
            int cols = 0;
            for (size_t c = 0; c < C && st == MTL_OK; c++) {
                int seen[2] = {0, 0};
                for (size_t i = 0; i < N; i++) {
                    float t = y[i * C + c];
                    lab[i] = isnan(t) ? -1 : (t >= 0.5f);
                    if (e->mask && (e->mask->dtype == MTL_INT32
                                        ? ((const int32_t *)e->mask->data)[i] == 0
                                        : ((const float *)e->mask->data)[i] == 0.0f))
                        lab[i] = -1;
                    if (lab[i] >= 0)
                        seen[lab[i]] = 1;
                }
                if (!seen[0] || !seen[1])
                    continue;
                /* raw logits rank like probabilities */
                float *col = mtli_malloc(N * sizeof *col);
                if (!col) {
                    st = mtli_oom("evaluation column", N * sizeof(float));
                    break;
                }
                for (size_t i = 0; i < N; i++)
                    col[i] = e->raw[i * C + c];
                mtl_tensor *ts = NULL, *tl = NULL;
                double a;
                st = wrap(&ts, MTL_FLOAT32, col, (int64_t)N, 0);
                if (st == MTL_OK)
                    st = wrap(&tl, MTL_INT32, lab, (int64_t)N, 0);
                if (st == MTL_OK)
                    st = mtl_metric_roc_auc(&a, ts, tl);
                if (st == MTL_OK) {
                    sum += a;
                    cols++;
                }
                mtl_tensor_free(ts);
                mtl_tensor_free(tl);
                mtli_free(col);
            }
            mtli_free(lab);
            if (st != MTL_OK)
                return st;
            if (cols)
                v = sum / cols;
        } else {
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "evaluation: task '%s': metric '%s' is not available for a "
                              "multi-label bce head (accuracy, roc_auc)",
                              h->name, name);
        }
        st = mtli_eval_add(r, v, "%s.%s.%s", prefix, h->name, name);
    }
    return st;
}

static mtl_status regression_metrics(mtl_eval_result *r, const char *prefix, const mtl_head *h,
                                     head_eval *e, size_t N, const char *list)
{
    const char *p = list && *list ? list : "mse,mae,r2";
    float *y = e->target->data;
    size_t C = e->C;
    int64_t nvalid = 0;
    for (size_t i = 0; i < N; i++) {
        bool drop = e->mask && (e->mask->dtype == MTL_INT32
                                    ? ((const int32_t *)e->mask->data)[i] == 0
                                    : ((const float *)e->mask->data)[i] == 0.0f);
        for (size_t c = 0; c < C; c++) {
            if (drop)
                y[i * C + c] = NAN; /* a gathered copy: masked samples leave the metrics */
            nvalid += !isnan(y[i * C + c]);
        }
    }
    mtl_tensor *tp = NULL, *tt = NULL;
    mtl_status st = wrap(&tp, MTL_FLOAT32, e->raw, (int64_t)N, (int64_t)C);
    if (st == MTL_OK)
        st = wrap(&tt, MTL_FLOAT32, y, (int64_t)N, (int64_t)C);
    char name[64];
    while (st == MTL_OK && (p = next_name(p, name, sizeof name)) != NULL) {
        double v;
        if (mtl_metric_lower_is_better(name) != 1 && strcmp(name, "r2") != 0) {
            st = mtli_error(MTL_ERR_INVALID_ARGUMENT,
                            "evaluation: task '%s': metric '%s' is for classification heads "
                            "(this head's loss is %s)",
                            h->name, name, mtli_loss_kind_name(h->loss.kind));
            break;
        }
        st = metric(&v, name, tp, tt, nvalid, 1);
        if (st == MTL_OK)
            st = mtli_eval_add(r, v, "%s.%s.%s", prefix, h->name, name);
        else
            mtli_error_prefix("evaluation: task '%s', metric '%s'", h->name, name);
    }
    mtl_tensor_free(tp);
    mtl_tensor_free(tt);
    return st;
}

/* ---- the pass ---------------------------------------------------------------------------- */

/* Gather a whole dataset's tensor into a new contiguous tensor in dataset order. */
static mtl_status gather_all(mtl_tensor **out, const mtl_tensor *src, const mtl_dataset *ds)
{
    int64_t shape[MTL_TENSOR_MAX_DIMS];
    memcpy(shape, src->shape, sizeof shape);
    shape[0] = ds->n;
    MTLI_TRY(mtl_tensor_create(out, src->dtype, src->ndim, shape));
    size_t rb = mtli_row_bytes(src);
    for (int64_t i = 0; i < ds->n; i++) {
        int64_t row = ds->index ? ds->index[i] : i;
        memcpy((char *)(*out)->data + (size_t)i * rb, (const char *)src->data + (size_t)row * rb,
               rb);
    }
    return MTL_OK;
}

/* Run the model over ds and keep the raw outputs of heads e[0..ne-1]. */
static mtl_status predict_all(mtl_model *m, const mtl_dataset *ds, int64_t bs, head_eval *e,
                              int ne)
{
    mtl_loader *ld;
    MTLI_TRY(mtl_loader_create(&ld, ds, bs, 0, 0, 0));
    mtl_tensor *dst = NULL;
    mtl_status st = MTL_OK;
    int64_t done = 0;
    for (;;) {
        int64_t rows;
        if ((st = mtl_loader_next(ld, &rows)) != MTL_OK || rows == 0)
            break;
        if ((st = mtl_model_predict(m, mtl_loader_input(ld))) != MTL_OK)
            break;
        for (int k = 0; k < ne && st == MTL_OK; k++) {
            float *at = e[k].raw + (size_t)done * e[k].C;
            st = mtl_tensor_wrap(&dst, MTL_FLOAT32, at, 2, (int64_t[]){rows, (int64_t)e[k].C});
            if (st == MTL_OK)
                st = mtl_model_output(m, e[k].head, dst, MTL_OUTPUT_RAW);
            mtl_tensor_free(dst);
            dst = NULL;
        }
        if (st != MTL_OK)
            break;
        done += rows;
    }
    mtl_loader_free(ld);
    return st;
}

static mtl_status evaluate_group(mtl_eval_result *r, mtl_model *m, const mtl_dataset *ds,
                                 head_eval *e, int ne, int64_t bs, const char *prefix,
                                 const char *const *metrics, double *loss_sum, int *loss_n)
{
    const char *fn = "mtl_evaluate";
    size_t N = (size_t)ds->n;
    mtl_status st = MTL_OK;
    for (int k = 0; k < ne && st == MTL_OK; k++) {
        mtl_head *h = m->heads[e[k].head];
        e[k].C = h->s.out_features;
        size_t ncls;
        bool tokens = mtli_head_tokens(h, &e[k].P, &ncls);
        if (!tokens)
            e[k].P = 1;
        e[k].raw = mtli_malloc(N * e[k].C * sizeof(float));
        if (!e[k].raw) {
            st = mtli_oom("evaluation outputs", N * e[k].C * sizeof(float));
            break;
        }
        st = gather_all(&e[k].target, ds->targets[e[k].slot], ds);
        if (st == MTL_OK && ds->masks[e[k].slot])
            st = gather_all(&e[k].mask, ds->masks[e[k].slot], ds);
        mtl_tensor *input = NULL; /* a token-level head's padding needs target -1 */
        if (st == MTL_OK && tokens)
            st = gather_all(&input, ds->inputs, ds);
        if (st == MTL_OK)
            st = mtli_head_loss_check(m, h, input, N, e[k].target, e[k].mask);
        mtl_tensor_free(input);
        if (st != MTL_OK)
            mtli_error_prefix("%s", fn);
    }
    if (st == MTL_OK)
        st = predict_all(m, ds, bs, e, ne);
    for (int k = 0; k < ne && st == MTL_OK; k++) {
        mtl_head *h = m->heads[e[k].head];
        for (size_t i = 0; i < N * e[k].C; i++)
            if (!isfinite(e[k].raw[i])) {
                st = mtli_error(MTL_ERR_NUMERIC, "%s: head '%s' output %zu is %g (not finite)",
                                fn, h->name, i, (double)e[k].raw[i]);
                break;
            }
        if (st != MTL_OK)
            break;
        double L;
        size_t cnt;
        mtli_head_loss_eval(h, e[k].raw, N, e[k].target, e[k].mask, &L, NULL, &cnt);
        if (cnt == 0) {
            L = NAN;
        } else {
            *loss_sum += L;
            (*loss_n)++;
        }
        st = mtli_eval_add(r, L, "%s.%s.loss", prefix, h->name);
        const char *list = metrics ? metrics[e[k].head] : NULL;
        if (st != MTL_OK)
            break;
        if (h->loss.kind == MTLI_LOSS_CROSS_ENTROPY || (h->loss.kind == MTLI_LOSS_BCE &&
                                                        e[k].C == 1))
            st = class_metrics(r, prefix, h, &e[k], N, list);
        else if (h->loss.kind == MTLI_LOSS_BCE)
            st = multilabel_metrics(r, prefix, h, &e[k], N, list);
        else
            st = regression_metrics(r, prefix, h, &e[k], N, list);
    }
    for (int k = 0; k < ne; k++)
        head_eval_free(&e[k]);
    return st;
}

MTL_API mtl_status mtl_evaluate(mtl_eval_result **out, mtl_model *model,
                                const mtl_dataset *const *datasets, int ndatasets,
                                int64_t batch_size, const char *prefix,
                                const char *const *metrics)
{
    const char *fn = "mtl_evaluate";
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    MTLI_CHECK_NULL(model, fn);
    MTLI_CHECK_NULL(datasets, fn);
    if (!model->built)
        return mtli_error(MTL_ERR_STATE, "%s: the model is not built (call mtl_model_build)", fn);
    int T = model->nheads;
    if (T < 1)
        return mtli_error(MTL_ERR_STATE, "%s: the model has no head", fn);
    if (ndatasets != 1 && ndatasets != T)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: ndatasets is %d, expected 1 (one dataset for every head) or %d "
                          "(one per head)",
                          fn, ndatasets, T);
    if (batch_size < 1 || (size_t)batch_size > model->max_batch)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: batch_size is %lld, expected 1..%zu (the model's max_batch)", fn,
                          (long long)batch_size, model->max_batch);
    if (!prefix)
        prefix = "val";
    int multi = ndatasets > 1;
    for (int d = 0; d < ndatasets; d++) {
        const mtl_dataset *ds = datasets[d];
        if (!ds) {
            if (!multi)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: datasets[0] is NULL", fn);
            continue;
        }
        if (ds->ntasks != T && !(multi && ds->ntasks == 1))
            return mtli_error(MTL_ERR_SHAPE,
                              "%s: datasets[%d] has %d task slots, expected %d (one per head)%s",
                              fn, d, ds->ntasks, T, multi ? " or 1" : "");
    }
    for (int h = 0; h < T; h++)
        if (metrics)
            MTLI_TRY(mtli_eval_check_metrics(metrics[h], fn, model->heads[h]->name));
    mtl_eval_result *r;
    MTLI_TRY(mtli_eval_result_new(&r));
    head_eval *e = mtli_calloc((size_t)T, sizeof *e);
    mtl_status st = e ? mtli_eval_add(r, NAN, "%s.loss", prefix)
                      : mtli_oom("evaluation heads", (size_t)T * sizeof *e);
    double loss_sum = 0.0;
    int loss_n = 0;
    if (st == MTL_OK && !multi) {
        int ne = 0;
        for (int h = 0; h < T; h++)
            if (datasets[0]->targets[h]) {
                e[ne].head = h;
                e[ne].slot = h;
                ne++;
            }
        if (ne == 0)
            st = mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: the dataset has no target", fn);
        else
            st = evaluate_group(r, model, datasets[0], e, ne, batch_size, prefix, metrics,
                                &loss_sum, &loss_n);
    } else if (st == MTL_OK) {
        int any = 0;
        for (int h = 0; h < T && st == MTL_OK; h++) {
            const mtl_dataset *ds = datasets[h];
            int slot = mtli_eval_slot(ds, h, T, 1);
            if (slot < 0 || !ds->targets[slot])
                continue;
            any = 1;
            e[0].head = h;
            e[0].slot = slot;
            st = evaluate_group(r, model, ds, e, 1, batch_size, prefix, metrics, &loss_sum,
                                &loss_n);
        }
        if (st == MTL_OK && !any)
            st = mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: no dataset has a target for its head",
                            fn);
    }
    mtli_free(e);
    if (st != MTL_OK) {
        mtl_eval_result_free(r);
        return st;
    }
    r->values[0] = loss_n ? loss_sum / loss_n : NAN;
    *out = r;
    return MTL_OK;
}
