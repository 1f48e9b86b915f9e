/* Task weighting: the handle, its keys, and the loss-based methods. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "model/model_internal.h"
#include "mtl/weighting.h"

typedef enum { W_EW, W_FIXED } wkind;

struct mtl_weighting {
    wkind kind;
    const char *name;
    int T;
    int mean; /* ew: 1 = weights 1/T */
    double *fixed;
    double *last;
};

MTL_API mtl_status mtl_weighting_create(mtl_weighting **out, const char *method, int T)
{
    MTLI_CHECK_NULL(out, "mtl_weighting_create");
    *out = NULL;
    MTLI_CHECK_NULL(method, "mtl_weighting_create");
    if (T < 1 || T > 4096)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_weighting_create: num_tasks is %d, expected 1..4096", T);
    wkind k;
    const char *name;
    if (strcmp(method, "ew") == 0) {
        k = W_EW;
        name = "ew";
    } else if (strcmp(method, "fixed") == 0) {
        k = W_FIXED;
        name = "fixed";
    } else
        return mtli_error(MTL_ERR_NOT_FOUND,
                          "mtl_weighting_create: unknown weighting method '%s' (available: ew, "
                          "fixed)",
                          method);
    mtl_weighting *w = mtli_calloc(1, sizeof *w);
    if (!w)
        return mtli_oom("weighting", sizeof *w);
    w->fixed = mtli_calloc((size_t)T, sizeof(double));
    w->last = mtli_calloc((size_t)T, sizeof(double));
    if (!w->fixed || !w->last) {
        mtli_free(w->fixed);
        mtli_free(w->last);
        mtli_free(w);
        return mtli_oom("weighting weights", (size_t)T * sizeof(double));
    }
    w->kind = k;
    w->name = name;
    w->T = T;
    for (int t = 0; t < T; t++)
        w->fixed[t] = w->last[t] = 1.0;
    *out = w;
    return MTL_OK;
}

MTL_API void mtl_weighting_free(mtl_weighting *w)
{
    if (!w)
        return;
    mtli_free(w->fixed);
    mtli_free(w->last);
    mtli_free(w);
}

static mtl_status unknown_key(const mtl_weighting *w, const char *key)
{
    return mtli_error(MTL_ERR_INVALID_ARGUMENT, "weighting '%s': unknown key '%s'", w->name, key);
}

MTL_API mtl_status mtl_weighting_set_double(mtl_weighting *w, const char *key, double v)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_set_double");
    MTLI_CHECK_NULL(key, "mtl_weighting_set_double");
    (void)v;
    return unknown_key(w, key);
}

MTL_API mtl_status mtl_weighting_set_int(mtl_weighting *w, const char *key, int64_t v)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_set_int");
    MTLI_CHECK_NULL(key, "mtl_weighting_set_int");
    (void)v;
    return unknown_key(w, key);
}

MTL_API mtl_status mtl_weighting_set_string(mtl_weighting *w, const char *key, const char *v)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_set_string");
    MTLI_CHECK_NULL(key, "mtl_weighting_set_string");
    MTLI_CHECK_NULL(v, "mtl_weighting_set_string");
    if (w->kind == W_EW && strcmp(key, "reduction") == 0) {
        if (strcmp(v, "sum") == 0)
            w->mean = 0;
        else if (strcmp(v, "mean") == 0)
            w->mean = 1;
        else
            return mtli_error(MTL_ERR_RANGE,
                              "weighting 'ew': reduction '%s' (expected sum or mean)", v);
        for (int t = 0; t < w->T; t++)
            w->last[t] = w->mean ? 1.0 / w->T : 1.0;
        return MTL_OK;
    }
    return unknown_key(w, key);
}

MTL_API const char *mtl_weighting_key_name(const mtl_weighting *w, int i)
{
    if (!w || i < 0)
        return NULL;
    if (w->kind == W_EW && i == 0)
        return "reduction";
    return NULL;
}

MTL_API mtl_status mtl_weighting_set_weights(mtl_weighting *w, const double *weights, int n)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_set_weights");
    MTLI_CHECK_NULL(weights, "mtl_weighting_set_weights");
    if (w->kind != W_FIXED)
        return mtli_error(MTL_ERR_STATE,
                          "mtl_weighting_set_weights: method '%s' learns its weights; use "
                          "'fixed' for static weights",
                          w->name);
    if (n != w->T)
        return mtli_error(MTL_ERR_SHAPE, "mtl_weighting_set_weights: %d weights for %d tasks", n,
                          w->T);
    for (int t = 0; t < n; t++)
        if (!(weights[t] >= 0.0) || !isfinite(weights[t]))
            return mtli_error(MTL_ERR_RANGE,
                              "mtl_weighting_set_weights: weight %d is %g, expected finite >= 0",
                              t, weights[t]);
    memcpy(w->fixed, weights, (size_t)n * sizeof(double));
    memcpy(w->last, weights, (size_t)n * sizeof(double));
    return MTL_OK;
}

MTL_API mtl_status mtl_weighting_get_weights(const mtl_weighting *w, double *weights, int n)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_get_weights");
    MTLI_CHECK_NULL(weights, "mtl_weighting_get_weights");
    if (n != w->T)
        return mtli_error(MTL_ERR_SHAPE, "mtl_weighting_get_weights: room for %d, %d tasks", n,
                          w->T);
    memcpy(weights, w->last, (size_t)n * sizeof(double));
    return MTL_OK;
}

MTL_API const char *mtl_weighting_method(const mtl_weighting *w) { return w ? w->name : NULL; }
MTL_API int mtl_weighting_num_tasks(const mtl_weighting *w) { return w ? w->T : 0; }

mtl_status mtli_weighting_weights(mtl_weighting *w, const double *losses, const bool *active,
                                  int T, double *weights)
{
    (void)losses;
    if (!w) {
        for (int t = 0; t < T; t++)
            weights[t] = 1.0;
        return MTL_OK;
    }
    if (w->T != T)
        return mtli_error(MTL_ERR_SHAPE, "weighting '%s' was created for %d tasks, the model has %d",
                          w->name, w->T, T);
    for (int t = 0; t < T; t++) {
        double v = w->kind == W_FIXED ? w->fixed[t] : (w->mean ? 1.0 / T : 1.0);
        weights[t] = active[t] ? v : 0.0;
        w->last[t] = weights[t];
    }
    return MTL_OK;
}
