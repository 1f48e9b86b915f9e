/* Loss names, target validation, dispatch to the loss families and inference activations. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "losses/loss_impl.h"

static const struct {
    const char *name;
    mtli_loss_kind kind;
} loss_names[] = {
    {"cross_entropy", MTLI_LOSS_CROSS_ENTROPY},
    {"ce", MTLI_LOSS_CROSS_ENTROPY},
    {"bce", MTLI_LOSS_BCE},
    {"mse", MTLI_LOSS_MSE},
    {"l1", MTLI_LOSS_L1},
    {"huber", MTLI_LOSS_HUBER},
};

mtl_status mtli_loss_kind_from_name(const char *name, mtli_loss_kind *out)
{
    MTLI_CHECK_NULL(name, "mtli_loss_kind_from_name");
    MTLI_CHECK_NULL(out, "mtli_loss_kind_from_name");
    for (size_t i = 0; i < sizeof loss_names / sizeof loss_names[0]; i++) {
        if (strcmp(name, loss_names[i].name) == 0) {
            *out = loss_names[i].kind;
            return MTL_OK;
        }
    }
    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                      "unknown loss '%s' (known: cross_entropy (ce), bce, mse, l1, huber)",
                      name);
}

const char *mtli_loss_kind_name(mtli_loss_kind kind)
{
    switch (kind) {
    case MTLI_LOSS_CROSS_ENTROPY: return "cross_entropy";
    case MTLI_LOSS_BCE: return "bce";
    case MTLI_LOSS_MSE: return "mse";
    case MTLI_LOSS_L1: return "l1";
    case MTLI_LOSS_HUBER: return "huber";
    }
    return "unknown";
}

static int kind_valid(mtli_loss_kind kind)
{
    return kind == MTLI_LOSS_CROSS_ENTROPY || kind == MTLI_LOSS_BCE || kind == MTLI_LOSS_MSE ||
           kind == MTLI_LOSS_L1 || kind == MTLI_LOSS_HUBER;
}

/* "[3, 2]" */
static const char *shape_text(const mtl_tensor *t, char *buf, size_t cap)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

static const char *dtype_text(mtl_dtype d)
{
    return d == MTL_FLOAT32 ? "float32" : d == MTL_INT32 ? "int32" : "unknown";
}

/* [B] or [B, 1] */
static int is_column(const mtl_tensor *t, size_t B)
{
    return (t->ndim == 1 && (size_t)t->shape[0] == B) ||
           (t->ndim == 2 && (size_t)t->shape[0] == B && t->shape[1] == 1);
}

static mtl_status check_config(const mtli_loss *L, const char *task, size_t C)
{
    const char *kn = mtli_loss_kind_name(L->kind);
    if (!(L->label_smoothing >= 0.0 && L->label_smoothing <= 1.0))
        return mtli_error(MTL_ERR_RANGE, "task '%s': label_smoothing %g is outside [0, 1]", task,
                          L->label_smoothing);
    if (L->kind == MTLI_LOSS_HUBER && !(L->delta > 0.0 && isfinite(L->delta)))
        return mtli_error(MTL_ERR_RANGE, "task '%s': huber delta %g must be finite and > 0",
                          task, L->delta);
    if (L->class_weights == NULL && L->nclass_weights == 0)
        return MTL_OK;
    if (L->kind != MTLI_LOSS_CROSS_ENTROPY && L->kind != MTLI_LOSS_BCE)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "task '%s': class weights apply to cross_entropy and bce, not %s", task,
                          kn);
    if (L->class_weights == NULL || L->nclass_weights != C)
        return mtli_error(MTL_ERR_SHAPE, "task '%s': %zu class weights for %zu outputs", task,
                          L->class_weights ? L->nclass_weights : 0, C);
    for (size_t c = 0; c < C; c++) {
        float w = L->class_weights[c];
        if (!(w >= 0.0f && isfinite(w)))
            return mtli_error(MTL_ERR_RANGE,
                              "task '%s': class weight %zu is %g, expected finite and >= 0", task,
                              c, (double)w);
    }
    return MTL_OK;
}

static mtl_status check_mask(const char *task, size_t B, const mtl_tensor *mask)
{
    char sb[96];
    if (mask->dtype != MTL_FLOAT32 && mask->dtype != MTL_INT32)
        return mtli_error(MTL_ERR_SHAPE, "task '%s': mask has dtype %s, expected float32 or int32",
                          task, dtype_text(mask->dtype));
    if (!is_column(mask, B))
        return mtli_error(MTL_ERR_SHAPE, "task '%s': mask has shape %s, expected [%zu]", task,
                          shape_text(mask, sb, sizeof sb), B);
    for (size_t i = 0; i < B; i++) {
        if (mask->dtype == MTL_INT32) {
            int32_t v = ((const int32_t *)mask->data)[i];
            if (v != 0 && v != 1)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "task '%s': mask of sample %zu is %d, expected 0 or 1", task, i,
                                  (int)v);
        } else {
            float v = ((const float *)mask->data)[i];
            if (v != 0.0f && v != 1.0f)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "task '%s': mask of sample %zu is %g, expected 0 or 1", task, i,
                                  (double)v);
        }
    }
    return MTL_OK;
}

mtl_status mtli_loss_check(const mtli_loss *L, const char *task, size_t B, size_t C,
                           const mtl_tensor *target, const mtl_tensor *mask)
{
    char sb[96];
    if (task == NULL)
        task = "?";
    if (L == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "task '%s': loss is NULL", task);
    if (target == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "task '%s': target is NULL", task);
    if (!kind_valid(L->kind))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "task '%s': unknown loss kind %d", task,
                          (int)L->kind);
    if (B == 0 || C == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "task '%s': batch of %zu rows of %zu outputs, expected both >= 1", task,
                          B, C);
    MTLI_TRY(check_config(L, task, C));
    if (mask)
        MTLI_TRY(check_mask(task, B, mask));

    if (L->kind == MTLI_LOSS_CROSS_ENTROPY) {
        if (target->dtype != MTL_INT32)
            return mtli_error(MTL_ERR_SHAPE,
                              "task '%s': cross_entropy target has dtype %s, expected int32 "
                              "class ids",
                              task, dtype_text(target->dtype));
        if (!is_column(target, B))
            return mtli_error(MTL_ERR_SHAPE,
                              "task '%s': cross_entropy target has shape %s, expected [%zu] or "
                              "[%zu, 1]",
                              task, shape_text(target, sb, sizeof sb), B, B);
        const int32_t *y = target->data;
        for (size_t i = 0; i < B; i++) {
            if (!mtli_loss_keep(mask, i))
                continue;
            if (y[i] < -1 || (y[i] >= 0 && (size_t)y[i] >= C))
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "task '%s': target of sample %zu is class %d, expected 0..%zu "
                                  "(or -1 for missing)",
                                  task, i, (int)y[i], C - 1);
        }
        return MTL_OK;
    }

    const char *kn = mtli_loss_kind_name(L->kind);
    if (target->dtype != MTL_FLOAT32)
        return mtli_error(MTL_ERR_SHAPE, "task '%s': %s target has dtype %s, expected float32",
                          task, kn, dtype_text(target->dtype));
    int ok = (target->ndim == 2 && (size_t)target->shape[0] == B &&
              (size_t)target->shape[1] == C) ||
             (C == 1 && target->ndim == 1 && (size_t)target->shape[0] == B);
    if (!ok)
        return mtli_error(MTL_ERR_SHAPE, "task '%s': %s target has shape %s, expected [%zu, %zu]",
                          task, kn, shape_text(target, sb, sizeof sb), B, C);
    const float *y = target->data;
    for (size_t i = 0; i < B; i++) {
        if (!mtli_loss_keep(mask, i))
            continue;
        for (size_t c = 0; c < C; c++) {
            float v = y[i * C + c];
            if (isnan(v))
                continue;
            if (isinf(v))
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "task '%s': target of sample %zu, column %zu is %g, expected a "
                                  "finite value (NaN marks a missing entry)",
                                  task, i, c, (double)v);
            if (L->kind == MTLI_LOSS_BCE && !(v >= 0.0f && v <= 1.0f))
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "task '%s': bce target of sample %zu, column %zu is %g, "
                                  "expected a value in [0, 1] (NaN marks a missing entry)",
                                  task, i, c, (double)v);
        }
    }
    return MTL_OK;
}

mtl_status mtli_loss_check_tokens(const mtli_loss *L, const char *task, size_t B, size_t P,
                                  size_t C, const mtl_tensor *target, const mtl_tensor *mask)
{
    char sb[96];
    if (task == NULL)
        task = "?";
    if (L == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "task '%s': loss is NULL", task);
    if (target == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "task '%s': target is NULL", task);
    if (L->kind != MTLI_LOSS_CROSS_ENTROPY)
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "task '%s': token-level targets need cross_entropy, the loss is %s",
                          task, mtli_loss_kind_name(L->kind));
    if (B == 0 || P == 0 || C == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "task '%s': batch of %zu samples of %zu positions of %zu outputs, "
                          "expected all >= 1",
                          task, B, P, C);
    MTLI_TRY(check_config(L, task, C));
    if (mask)
        MTLI_TRY(check_mask(task, B, mask));
    if (target->dtype != MTL_INT32)
        return mtli_error(MTL_ERR_SHAPE,
                          "task '%s': token-level cross_entropy target has dtype %s, expected "
                          "int32 class ids [%zu, %zu]",
                          task, dtype_text(target->dtype), B, P);
    if (target->ndim != 2 || (size_t)target->shape[0] != B || (size_t)target->shape[1] != P)
        return mtli_error(MTL_ERR_SHAPE,
                          "task '%s': token-level cross_entropy target has shape %s, expected "
                          "[%zu, %zu] (one class id per position, -1 = ignored)",
                          task, shape_text(target, sb, sizeof sb), B, P);
    const int32_t *y = target->data;
    for (size_t i = 0; i < B; i++) {
        if (!mtli_loss_keep(mask, i))
            continue;
        for (size_t t = 0; t < P; t++) {
            int32_t v = y[i * P + t];
            if (v < -1 || (v >= 0 && (size_t)v >= C))
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "task '%s': target of sample %zu, position %zu is class %d, "
                                  "expected 0..%zu (or -1 for padding / missing)",
                                  task, i, t, (int)v, C - 1);
        }
    }
    return MTL_OK;
}

void mtli_loss_eval_tokens(const mtli_loss *L, const float *logits, size_t B, size_t P,
                           size_t C, const mtl_tensor *target, const mtl_tensor *mask,
                           double *loss, float *dlogits, float scale, size_t *count)
{
    double l = 0.0;
    size_t n = 0;
    mtli_loss_eval_ce_rows(L, logits, B * P, C, target->data, mask, P, &l, dlogits, scale, &n);
    if (loss)
        *loss = l;
    if (count)
        *count = n;
}

void mtli_loss_eval(const mtli_loss *L, const float *logits, size_t B, size_t C,
                    const mtl_tensor *target, const mtl_tensor *mask, double *loss,
                    float *dlogits, float scale, size_t *count)
{
    double l = 0.0;
    size_t n = 0;
    switch (L->kind) {
    case MTLI_LOSS_CROSS_ENTROPY:
        mtli_loss_eval_ce(L, logits, B, C, target->data, mask, &l, dlogits, scale, &n);
        break;
    case MTLI_LOSS_BCE:
        mtli_loss_eval_bce(L, logits, B, C, target->data, mask, &l, dlogits, scale, &n);
        break;
    case MTLI_LOSS_MSE:
    case MTLI_LOSS_L1:
    case MTLI_LOSS_HUBER:
        mtli_loss_eval_regression(L, logits, B, C, target->data, mask, &l, dlogits, scale, &n);
        break;
    }
    if (loss)
        *loss = l;
    if (count)
        *count = n;
}

void mtli_loss_activate(const mtli_loss *L, const float *logits, float *out, size_t B,
                        size_t C)
{
    if (L->kind == MTLI_LOSS_CROSS_ENTROPY) {
        for (size_t i = 0; i < B; i++) {
            const float *z = logits + i * C;
            float *o = out + i * C;
            float m = z[0];
            for (size_t c = 1; c < C; c++)
                m = z[c] > m ? z[c] : m;
            double s = 0.0;
            for (size_t c = 0; c < C; c++) {
                double e = exp((double)z[c] - (double)m);
                s += e;
                o[c] = (float)e;
            }
            double inv = 1.0 / s;
            for (size_t c = 0; c < C; c++)
                o[c] = (float)((double)o[c] * inv);
        }
    } else if (L->kind == MTLI_LOSS_BCE) {
        size_t n = B * C;
        for (size_t k = 0; k < n; k++) {
            double x = logits[k];
            /* the branch keeps exp's argument <= 0 so neither side overflows */
            if (x >= 0.0) {
                out[k] = (float)(1.0 / (1.0 + exp(-x)));
            } else {
                double e = exp(x);
                out[k] = (float)(e / (1.0 + e));
            }
        }
    } else if (out != logits) {
        memmove(out, logits, B * C * sizeof *out);
    }
}

void mtli_loss_clear(mtli_loss *L)
{
    if (L == NULL)
        return;
    mtli_free(L->class_weights);
    L->class_weights = NULL;
    L->nclass_weights = 0;
}
