/* Layer kinds by name, their option keys, and helpers shared by the layer files. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "layers/layer.h"

/* ---- kinds and the keys each one reads ------------------------------------------------- */

typedef struct {
    const mtli_layer_ops *ops;
    const char *const *keys; /* NULL-terminated */
} kind_entry;

static const char *const k_none[] = {NULL};
static const char *const k_linear[] = {"out", "bias", "init", "bias_init", "std", "gain", NULL};
static const char *const k_leaky[] = {"slope", NULL};
static const char *const k_gelu[] = {"approximate", NULL};
static const char *const k_dropout[] = {"p", NULL};
static const char *const k_layer_norm[] = {"eps", "affine", NULL};
static const char *const k_batch_norm[] = {"eps", "momentum", "affine", NULL};
static const char *const k_embedding[] = {"out", "num_embeddings", "pooling", "init", "std",
                                          "gain", NULL};
static const char *const k_conv2d[] = {"out",       "kernel",     "kernel_h",   "kernel_w",
                                       "stride",    "stride_h",   "stride_w",   "padding",
                                       "padding_h", "padding_w",  "dilation",   "dilation_h",
                                       "dilation_w", "bias",      "init",       "bias_init",
                                       "std",       "gain",       NULL};
static const char *const k_max_pool2d[] = {"kernel",   "kernel_h",  "kernel_w",
                                           "stride",   "stride_h",  "stride_w",
                                           "padding",  "padding_h", "padding_w", NULL};
static const char *const k_avg_pool2d[] = {"kernel",    "kernel_h",  "kernel_w",
                                           "stride",    "stride_h",  "stride_w",
                                           "padding",   "padding_h", "padding_w",
                                           "count_include_pad", NULL};

static const char *const k_rnn[] = {"hidden", "bidirectional", "pooling", "bias", NULL};

static const kind_entry g_kinds[] = {
    {&mtli_linear_ops, k_linear},         {&mtli_relu_ops, k_none},
    {&mtli_leaky_relu_ops, k_leaky},      {&mtli_gelu_ops, k_gelu},
    {&mtli_tanh_ops, k_none},             {&mtli_sigmoid_ops, k_none},
    {&mtli_dropout_ops, k_dropout},       {&mtli_layer_norm_ops, k_layer_norm},
    {&mtli_batch_norm_ops, k_batch_norm}, {&mtli_embedding_ops, k_embedding},
    {&mtli_conv2d_ops, k_conv2d},         {&mtli_max_pool2d_ops, k_max_pool2d},
    {&mtli_avg_pool2d_ops, k_avg_pool2d}, {&mtli_flatten_ops, k_none},
    {&mtli_dropout2d_ops, k_dropout},     {&mtli_batch_norm2d_ops, k_batch_norm},
    {&mtli_lstm_ops, k_rnn},              {&mtli_gru_ops, k_rnn},
};
#define NKINDS (sizeof g_kinds / sizeof g_kinds[0])

typedef struct {
    const char *key;
    mtli_key_type type;
} key_entry;

static const key_entry g_keys[] = {
    {"out", MTLI_KEY_INT},           {"bias", MTLI_KEY_INT},
    {"num_embeddings", MTLI_KEY_INT}, {"affine", MTLI_KEY_INT},
    {"pooling", MTLI_KEY_STRING},    {"approximate", MTLI_KEY_STRING},
    {"init", MTLI_KEY_STRING},       {"bias_init", MTLI_KEY_STRING},
    {"p", MTLI_KEY_DOUBLE},          {"slope", MTLI_KEY_DOUBLE},
    {"eps", MTLI_KEY_DOUBLE},        {"momentum", MTLI_KEY_DOUBLE},
    {"std", MTLI_KEY_DOUBLE},        {"gain", MTLI_KEY_DOUBLE},
    {"kernel", MTLI_KEY_INT},        {"kernel_h", MTLI_KEY_INT},
    {"kernel_w", MTLI_KEY_INT},      {"stride", MTLI_KEY_INT},
    {"stride_h", MTLI_KEY_INT},      {"stride_w", MTLI_KEY_INT},
    {"padding", MTLI_KEY_INT},       {"padding_h", MTLI_KEY_INT},
    {"padding_w", MTLI_KEY_INT},     {"dilation", MTLI_KEY_INT},
    {"dilation_h", MTLI_KEY_INT},    {"dilation_w", MTLI_KEY_INT},
    {"count_include_pad", MTLI_KEY_INT}, {"hidden", MTLI_KEY_INT},
    {"bidirectional", MTLI_KEY_INT},
};

const mtli_layer_ops *mtli_layer_find(const char *kind)
{
    if (kind == NULL)
        return NULL;
    for (size_t i = 0; i < NKINDS; i++)
        if (strcmp(g_kinds[i].ops->kind, kind) == 0)
            return g_kinds[i].ops;
    return NULL;
}

mtl_status mtli_layer_lookup(const char *kind, const mtli_layer_ops **out)
{
    MTLI_CHECK_NULL(out, "mtli_layer_lookup");
    *out = NULL;
    MTLI_CHECK_NULL(kind, "mtli_layer_lookup");
    *out = mtli_layer_find(kind);
    if (*out)
        return MTL_OK;
    char names[512];
    size_t len = 0;
    names[0] = '\0';
    for (size_t i = 0; i < NKINDS && len < sizeof names; i++) {
        int w = snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                         g_kinds[i].ops->kind);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    return mtli_error(MTL_ERR_INVALID_ARGUMENT, "unknown layer kind '%s' (expected one of %s)",
                      kind, names);
}

const char *mtli_layer_kind_at(size_t i) { return i < NKINDS ? g_kinds[i].ops->kind : NULL; }

static const kind_entry *entry_of(const mtli_layer_ops *ops)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (g_kinds[i].ops == ops)
            return &g_kinds[i];
    return NULL;
}

const char *mtli_layer_key_at(const mtli_layer_ops *ops, size_t i)
{
    const kind_entry *e = entry_of(ops);
    if (e == NULL)
        return NULL;
    for (size_t k = 0; e->keys[k]; k++)
        if (k == i)
            return e->keys[k];
    return NULL;
}

static mtli_key_type global_key_type(const char *key)
{
    for (size_t i = 0; i < sizeof g_keys / sizeof g_keys[0]; i++)
        if (strcmp(g_keys[i].key, key) == 0)
            return g_keys[i].type;
    return MTLI_KEY_NONE;
}

mtli_key_type mtli_layer_key_type(const mtli_layer_ops *ops, const char *key)
{
    const kind_entry *e = entry_of(ops);
    if (e == NULL || key == NULL)
        return MTLI_KEY_NONE;
    for (const char *const *k = e->keys; *k; k++)
        if (strcmp(*k, key) == 0)
            return global_key_type(key);
    return MTLI_KEY_NONE;
}

void mtli_layer_opts_default(mtli_layer_opts *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof *o);
    o->out = 0;            /* required where used */
    o->num_embeddings = 0; /* required where used */
    o->bias = 1;
    o->pooling = 1; /* mean, nn.EmbeddingBag's default */
    o->p = 0.5;
    o->slope = 0.01;
    o->eps = 1e-5;
    o->momentum = 0.1;
    o->affine = 1;
    o->gelu_tanh = 0;
    o->weight_init = MTLI_INIT_DEFAULT;
    o->bias_init = MTLI_INIT_DEFAULT;
    o->init_std = 1.0;
    o->init_gain = 1.0;
    /* kernel, stride, padding, dilation: 0 (kernel required, the others the kind's default) */
    o->count_include_pad = 1;
    o->hidden = 0; /* required where used */
    o->bidirectional = 0;
    o->rnn_pooling = MTLI_RNN_NONE;
}

/* Common checks of the setters: arguments, known key, key used by the kind. */
static mtl_status key_for(const mtli_layer_ops *ops, const mtli_layer_opts *o, const char *key,
                          const char *fn, mtli_key_type *type)
{
    MTLI_CHECK_NULL(ops, fn);
    MTLI_CHECK_NULL(o, fn);
    MTLI_CHECK_NULL(key, fn);
    const kind_entry *e = entry_of(ops);
    if (e == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: layer kind '%s' is not registered", fn,
                          ops->kind ? ops->kind : "(null)");
    if (global_key_type(key) == MTLI_KEY_NONE)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "unknown layer option '%s' for kind '%s'",
                          key, ops->kind);
    *type = mtli_layer_key_type(ops, key);
    if (*type == MTLI_KEY_NONE)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "layer option '%s' is not used by kind '%s'", key, ops->kind);
    return MTL_OK;
}

/* The 2-d window keys: "kernel", "stride", "padding", "dilation", each alone (both
 * dimensions) or with "_h" / "_w". Returns the option pair and sets *dim (-1: both), or NULL. */
static int64_t *window_key(mtli_layer_opts *o, const char *key, int *dim)
{
    static const char *const bases[] = {"kernel", "stride", "padding", "dilation"};
    for (size_t i = 0; i < 4; i++) {
        size_t n = strlen(bases[i]);
        if (strncmp(key, bases[i], n) != 0)
            continue;
        const char *rest = key + n;
        if (rest[0] == '\0')
            *dim = -1;
        else if (strcmp(rest, "_h") == 0)
            *dim = 0;
        else if (strcmp(rest, "_w") == 0)
            *dim = 1;
        else
            continue;
        return i == 0 ? o->kernel : i == 1 ? o->stride : i == 2 ? o->padding : o->dilation;
    }
    return NULL;
}

static mtl_status apply_int(const mtli_layer_ops *ops, mtli_layer_opts *o, const char *key,
                            int64_t v)
{
    int dim;
    int64_t *pair = window_key(o, key, &dim);
    if (pair) {
        int64_t lo = pair == o->padding ? 0 : 1;
        if (v < lo || v > INT32_MAX)
            return mtli_error(MTL_ERR_RANGE,
                              "layer option '%s' of kind '%s' must be in %lld..%d, got %lld", key,
                              ops->kind, (long long)lo, INT32_MAX, (long long)v);
        if (dim != 1)
            pair[0] = v;
        if (dim != 0)
            pair[1] = v;
        return MTL_OK;
    }
    if (strcmp(key, "out") == 0 || strcmp(key, "num_embeddings") == 0 ||
        strcmp(key, "hidden") == 0) {
        if (v < 1 || v > INT32_MAX)
            return mtli_error(MTL_ERR_RANGE,
                              "layer option '%s' of kind '%s' must be in 1..%d, got %lld", key,
                              ops->kind, INT32_MAX, (long long)v);
        if (key[0] == 'o')
            o->out = v;
        else if (key[0] == 'h')
            o->hidden = v;
        else
            o->num_embeddings = v;
        return MTL_OK;
    }
    /* bias, affine, count_include_pad, bidirectional: booleans */
    if (v != 0 && v != 1)
        return mtli_error(MTL_ERR_RANGE, "layer option '%s' of kind '%s' must be 0 or 1, got %lld",
                          key, ops->kind, (long long)v);
    if (strcmp(key, "bias") == 0)
        o->bias = (int)v;
    else if (strcmp(key, "count_include_pad") == 0)
        o->count_include_pad = (int)v;
    else if (strcmp(key, "bidirectional") == 0)
        o->bidirectional = (int)v;
    else
        o->affine = (int)v;
    return MTL_OK;
}

static mtl_status apply_double(const mtli_layer_ops *ops, mtli_layer_opts *o, const char *key,
                               double v)
{
    const char *want = NULL;
    if (strcmp(key, "p") == 0) {
        if (!(v >= 0.0 && v < 1.0))
            want = "in [0, 1)";
        else
            o->p = v;
    } else if (strcmp(key, "slope") == 0) {
        if (!isfinite(v))
            want = "finite";
        else
            o->slope = v;
    } else if (strcmp(key, "eps") == 0) {
        if (!(v > 0.0 && isfinite(v)))
            want = "finite and > 0";
        else
            o->eps = v;
    } else if (strcmp(key, "momentum") == 0) {
        if (!(v >= 0.0 && v <= 1.0))
            want = "in [0, 1]";
        else
            o->momentum = v;
    } else if (strcmp(key, "std") == 0) {
        if (!(v >= 0.0 && isfinite(v)))
            want = "finite and >= 0";
        else
            o->init_std = v;
    } else { /* gain */
        if (!(v >= 0.0 && isfinite(v)))
            want = "finite and >= 0";
        else
            o->init_gain = v;
    }
    if (want)
        return mtli_error(MTL_ERR_RANGE, "layer option '%s' of kind '%s' must be %s, got %g",
                          key, ops->kind, want, v);
    return MTL_OK;
}

static const struct {
    const char *name;
    mtli_init scheme;
} g_inits[] = {
    {"kaiming_uniform", MTLI_INIT_KAIMING_UNIFORM},
    {"kaiming_normal", MTLI_INIT_KAIMING_NORMAL},
    {"xavier_uniform", MTLI_INIT_XAVIER_UNIFORM},
    {"xavier_normal", MTLI_INIT_XAVIER_NORMAL},
    {"normal", MTLI_INIT_NORMAL},
    {"zeros", MTLI_INIT_ZEROS},
    {"ones", MTLI_INIT_ONES},
    {"default", MTLI_INIT_DEFAULT},
};

static mtl_status apply_string(const mtli_layer_ops *ops, mtli_layer_opts *o, const char *key,
                               const char *v)
{
    if (strcmp(key, "pooling") == 0 && (ops == &mtli_lstm_ops || ops == &mtli_gru_ops)) {
        static const char *const modes[] = {"none", "last", "mean", "sum"};
        for (int i = 0; i < 4; i++)
            if (strcmp(v, modes[i]) == 0) {
                o->rnn_pooling = i; /* the MTLI_RNN_* order */
                return MTL_OK;
            }
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "layer option 'pooling' of kind '%s': unknown value '%s' (expected "
                          "\"none\", \"last\", \"mean\" or \"sum\")",
                          ops->kind, v);
    }
    if (strcmp(key, "pooling") == 0) {
        if (strcmp(v, "sum") == 0)
            o->pooling = MTLI_POOL_SUM;
        else if (strcmp(v, "mean") == 0)
            o->pooling = MTLI_POOL_MEAN;
        else if (strcmp(v, "none") == 0)
            o->pooling = MTLI_POOL_NONE;
        else
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "layer option 'pooling' of kind '%s': unknown value '%s' "
                              "(expected \"sum\", \"mean\" or \"none\")",
                              ops->kind, v);
        return MTL_OK;
    }
    if (strcmp(key, "approximate") == 0) {
        if (strcmp(v, "none") == 0)
            o->gelu_tanh = 0;
        else if (strcmp(v, "tanh") == 0)
            o->gelu_tanh = 1;
        else
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "layer option 'approximate' of kind '%s': unknown value '%s' "
                              "(expected \"none\" or \"tanh\")",
                              ops->kind, v);
        return MTL_OK;
    }
    /* init, bias_init */
    for (size_t i = 0; i < sizeof g_inits / sizeof g_inits[0]; i++)
        if (strcmp(g_inits[i].name, v) == 0) {
            if (strcmp(key, "init") == 0)
                o->weight_init = g_inits[i].scheme;
            else
                o->bias_init = g_inits[i].scheme;
            return MTL_OK;
        }
    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                      "layer option '%s' of kind '%s': unknown initialisation '%s' (expected "
                      "kaiming_uniform, kaiming_normal, xavier_uniform, xavier_normal, normal, "
                      "zeros, ones or default)",
                      key, ops->kind, v);
}

mtl_status mtli_layer_set_int(const mtli_layer_ops *ops, mtli_layer_opts *o, const char *key,
                              int64_t v)
{
    mtli_key_type t;
    MTLI_TRY(key_for(ops, o, key, "mtli_layer_set_int", &t));
    if (t == MTLI_KEY_DOUBLE)
        return apply_double(ops, o, key, (double)v);
    if (t == MTLI_KEY_STRING)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "layer option '%s' of kind '%s' takes a string, not a number", key,
                          ops->kind);
    return apply_int(ops, o, key, v);
}

mtl_status mtli_layer_set_double(const mtli_layer_ops *ops, mtli_layer_opts *o,
                                 const char *key, double v)
{
    mtli_key_type t;
    MTLI_TRY(key_for(ops, o, key, "mtli_layer_set_double", &t));
    if (t == MTLI_KEY_INT) {
        if (!(v >= -9.2e18 && v <= 9.2e18) || v != floor(v))
            return mtli_error(MTL_ERR_RANGE,
                              "layer option '%s' of kind '%s' takes an integer, got %g", key,
                              ops->kind, v);
        return apply_int(ops, o, key, (int64_t)v);
    }
    if (t == MTLI_KEY_STRING)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "layer option '%s' of kind '%s' takes a string, not a number", key,
                          ops->kind);
    return apply_double(ops, o, key, v);
}

mtl_status mtli_layer_set_string(const mtli_layer_ops *ops, mtli_layer_opts *o,
                                 const char *key, const char *v)
{
    mtli_key_type t;
    MTLI_TRY(key_for(ops, o, key, "mtli_layer_set_string", &t));
    MTLI_CHECK_NULL(v, "mtli_layer_set_string");
    if (t != MTLI_KEY_STRING)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "layer option '%s' of kind '%s' takes a number, not the string '%s'",
                          key, ops->kind, v);
    return apply_string(ops, o, key, v);
}

mtl_status mtli_layer_check_input(const mtli_layer *l, const float *x, size_t B, bool train)
{
    MTLI_CHECK_NULL(l, "mtli_layer_check_input");
    MTLI_CHECK_NULL(l->ops, "mtli_layer_check_input");
    if (l->ops->check == NULL || B == 0)
        return MTL_OK;
    MTLI_CHECK_NULL(x, "mtli_layer_check_input");
    return l->ops->check(l, x, B, train);
}

/* ---- helpers for the implementations ----------------------------------------------------- */

mtl_status mtli_layer_setup_input(mtli_layer *l)
{
    const char *kind = l->ops && l->ops->kind ? l->ops->kind : "layer";
    if (l->in_ndim < 1 || l->in_ndim > 3)
        return mtli_error(MTL_ERR_SHAPE, "%s: input has %d dimensions per sample, expected 1..3",
                          kind, l->in_ndim);
    size_t n = 1;
    for (int i = 0; i < l->in_ndim; i++) {
        if (l->in_dims[i] < 1)
            return mtli_error(MTL_ERR_SHAPE, "%s: input dimension %d is %lld, expected >= 1",
                              kind, i, (long long)l->in_dims[i]);
        if ((uint64_t)l->in_dims[i] > SIZE_MAX || !mtli_mul_size(n, (size_t)l->in_dims[i], &n))
            return mtli_error(MTL_ERR_RANGE, "%s: input of %d dimensions is too large", kind,
                              l->in_ndim);
    }
    if (n > (size_t)INT64_MAX)
        return mtli_error(MTL_ERR_RANGE, "%s: input has too many features", kind);
    l->in_features = n;
    for (int i = l->in_ndim; i < 3; i++)
        l->in_dims[i] = 0;
    l->out_ndim = 0;
    memset(l->out_dims, 0, sizeof l->out_dims);
    l->out_features = 0;
    l->nparams = 0;
    l->nstate = 0;
    l->ndesc = 0;
    memset(l->desc, 0, sizeof l->desc);
    return MTL_OK;
}

void mtli_layer_same_shape(mtli_layer *l)
{
    l->out_ndim = l->in_ndim;
    memcpy(l->out_dims, l->in_dims, sizeof l->out_dims);
    l->out_features = l->in_features;
}

mtl_status mtli_layer_add_param(mtli_layer *l, const char *name, int ndim,
                                const int64_t *shape, bool is_state, bool no_decay)
{
    const char *kind = l->ops && l->ops->kind ? l->ops->kind : "layer";
    if (l->ndesc >= MTLI_MAX_LAYER_PARAMS || ndim < 1 || ndim > 4)
        return mtli_error(MTL_ERR_INTERNAL, "%s: bad parameter desc '%s'", kind, name);
    size_t count = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || !mtli_mul_size(count, (size_t)shape[i], &count))
            return mtli_error(MTL_ERR_RANGE, "%s: parameter '%s' is too large", kind, name);
    size_t *total = is_state ? &l->nstate : &l->nparams;
    size_t end;
    if (!mtli_add_size(*total, count, &end) || end > SIZE_MAX / sizeof(float))
        return mtli_error(MTL_ERR_RANGE, "%s: parameter '%s' is too large", kind, name);
    mtli_param_desc *d = &l->desc[l->ndesc++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        d->shape[i] = shape[i];
    d->count = count;
    d->offset = *total;
    d->is_state = is_state;
    d->no_decay = no_decay;
    *total = end;
    return MTL_OK;
}

/* Blocked so each column keeps a double accumulator on the stack and the inner loop runs
 * along a contiguous row (vectorisable, no allocation). */
#define COLSUM_BLOCK 256

void mtli_layer_colsum_acc(const float *a, size_t rows, size_t cols, float *out)
{
    double acc[COLSUM_BLOCK];
    for (size_t j0 = 0; j0 < cols; j0 += COLSUM_BLOCK) {
        size_t nb = cols - j0 < COLSUM_BLOCK ? cols - j0 : COLSUM_BLOCK;
        for (size_t j = 0; j < nb; j++)
            acc[j] = 0.0;
        for (size_t i = 0; i < rows; i++) {
            const float *r = a + i * cols + j0;
            for (size_t j = 0; j < nb; j++)
                acc[j] += (double)r[j];
        }
        for (size_t j = 0; j < nb; j++)
            out[j0 + j] = (float)((double)out[j0 + j] + acc[j]);
    }
}
