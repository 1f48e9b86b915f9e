/* The configuration schema: every fixed key with its type, range and default; validation
 * and normalisation of the tree; dotted-key resolution. docs/config.md documents each entry
 * (a test checks that every path below appears there). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/config_internal.h"
#include "mtl/metrics.h"

#define I32MAX 2147483647.0
#define BIG 1e18

#define CSV_KEYS(p)                                                                         \
    {p ".header", MTLI_ST_BOOL, 0, NULL, NULL, 0, 0, NULL},                                 \
    {p ".delimiter", MTLI_ST_STRING, 0, NULL, NULL, 0, 0, NULL},                            \
    {p ".na_values", MTLI_ST_STRINGS, 0, NULL, NULL, 0, 0, NULL},                           \
    {p ".skip_rows", MTLI_ST_INT, 0, NULL, NULL, 0, I32MAX, NULL},                          \
    {p ".comment", MTLI_ST_STRING, 0, NULL, NULL, 0, 0, NULL},                              \
    {p ".trim", MTLI_ST_BOOL, 0, NULL, NULL, 0, 0, NULL},                                   \
    {p ".strip_suffix", MTLI_ST_STRING, 0, NULL, NULL, 0, 0, NULL}

#define SPLIT_KEYS(p)                                                                       \
    {p, MTLI_ST_MAP, 0, "file", NULL, 0, 0, NULL},                                          \
    {p ".file", MTLI_ST_PATH, 0, NULL, NULL, 0, 0, NULL},                                   \
    {p ".input", MTLI_ST_PATH, 0, NULL, NULL, 0, 0, NULL},                                  \
    {p ".labels", MTLI_ST_DICT, 0, NULL, NULL, 0, 0, NULL},                                 \
    {p ".labels.*", MTLI_ST_PATH, 0, NULL, NULL, 0, 0, NULL},                               \
    CSV_KEYS(p)

#define TASK_SPLIT(p)                                                                       \
    {p, MTLI_ST_MAP, 0, "input", NULL, 0, 0, NULL},                                            \
    {p ".input", MTLI_ST_PATH, 0, NULL, NULL, 0, 0, NULL},                                  \
    {p ".labels", MTLI_ST_PATH, 0, NULL, NULL, 0, 0, NULL}

#define LAYERS(p) {p, MTLI_ST_SEQ, 0, NULL, NULL, 0, 0, NULL}, \
                  {p ".*", MTLI_ST_LAYER, 0, "kind", NULL, 0, 0, NULL}

#define SCHEDULE_KEYS(p)                                                                    \
    {p ".milestones", MTLI_ST_NUMBERS, 0, NULL, NULL, 0, 0, NULL},                          \
    {p ".schedule_interval", MTLI_ST_INT, MTLI_SF_NUMBER_OR_ENUM, NULL, NULL, 1, BIG, "epoch"}, \
    {p ".total_steps", MTLI_ST_INT, MTLI_SF_NUMBER_OR_ENUM, NULL, NULL, 1, BIG, "auto"}

/* Mappings other than those in g_always exist only when the file has them (data,
 * model.input: their absence means "derived" or "none"). */
static const mtli_skey g_schema[] = {
    {"", MTLI_ST_MAP, 0, NULL, NULL, 0, 0, NULL},

    {"data", MTLI_ST_MAP, 0, NULL, NULL, 0, 0, NULL},
    {"data.dir", MTLI_ST_PATH, 0, NULL, NULL, 0, 0, NULL},
    SPLIT_KEYS("data.train"),
    SPLIT_KEYS("data.validation"),
    {"data.validation.fraction", MTLI_ST_DOUBLE, MTLI_SF_LO_OPEN | MTLI_SF_HI_OPEN, NULL, NULL, 0, 1, NULL},
    SPLIT_KEYS("data.test"),
    {"data.test.fraction", MTLI_ST_DOUBLE, MTLI_SF_LO_OPEN | MTLI_SF_HI_OPEN, NULL, NULL, 0, 1, NULL},
    {"data.csv", MTLI_ST_MAP, 0, NULL, NULL, 0, 0, NULL},
    {"data.csv.header", MTLI_ST_BOOL, 0, NULL, "true", 0, 0, NULL},
    {"data.csv.delimiter", MTLI_ST_STRING, 0, NULL, ",", 0, 0, NULL},
    {"data.csv.na_values", MTLI_ST_STRINGS, 0, NULL, "?,NA,", 0, 0, NULL},
    {"data.csv.skip_rows", MTLI_ST_INT, 0, NULL, "0", 0, I32MAX, NULL},
    {"data.csv.comment", MTLI_ST_STRING, 0, NULL, "", 0, 0, NULL},
    {"data.csv.trim", MTLI_ST_BOOL, 0, NULL, "true", 0, 0, NULL},
    {"data.csv.strip_suffix", MTLI_ST_STRING, 0, NULL, "", 0, 0, NULL},
    {"data.features", MTLI_ST_SEQ, 0, NULL, NULL, 0, 0, NULL},
    {"data.features.*", MTLI_ST_MAP, 0, "column", NULL, 0, 0, NULL},
    {"data.features.*.column", MTLI_ST_STRING, MTLI_SF_REQUIRED, NULL, NULL, 0, 0, NULL},
    {"data.features.*.encode", MTLI_ST_ENUM, 0, NULL, "auto", 0, 0, "auto|numeric|onehot|ids"},
    {"data.features.*.standardize", MTLI_ST_BOOL, 0, NULL, NULL, 0, 0, NULL},
    {"data.standardize", MTLI_ST_BOOL, 0, NULL, "true", 0, 0, NULL},
    {"data.columns", MTLI_ST_SEQ, 0, NULL, NULL, 0, 0, NULL},
    {"data.columns.*", MTLI_ST_STRING, 0, NULL, NULL, 0, 0, NULL},

    {"model", MTLI_ST_MAP, 0, NULL, NULL, 0, 0, NULL},
    {"model.input", MTLI_ST_MAP, 0, NULL, NULL, 0, 0, NULL},
    {"model.input.dtype", MTLI_ST_ENUM, 0, NULL, "float32", 0, 0, "float32|int32"},
    {"model.input.shape", MTLI_ST_SEQ, MTLI_SF_REQUIRED, NULL, NULL, 0, 0, NULL},
    {"model.input.shape.*", MTLI_ST_INT, 0, NULL, NULL, 1, I32MAX, NULL},
    LAYERS("model.trunk"),
    {"model.l2_trunk", MTLI_ST_DOUBLE, 0, NULL, "0", 0, INFINITY, NULL},
    {"model.l2_heads", MTLI_ST_DOUBLE, 0, NULL, "0", 0, INFINITY, NULL},

    {"tasks", MTLI_ST_TASKS, MTLI_SF_REQUIRED, NULL, NULL, 0, 0, NULL},
    {"tasks.*", MTLI_ST_MAP, 0, NULL, NULL, 0, 0, NULL},
    {"tasks.*.name", MTLI_ST_STRING, MTLI_SF_REQUIRED, NULL, NULL, 0, 0, NULL},
    {"tasks.*.kind", MTLI_ST_ENUM, MTLI_SF_REQUIRED, NULL, NULL, 0, 0,
     "classification|binary|multilabel|regression"},
    {"tasks.*.label", MTLI_ST_STRINGS, 0, NULL, NULL, 0, 0, NULL},
    {"tasks.*.classes", MTLI_ST_INT, 0, NULL, NULL, 2, I32MAX, NULL},
    {"tasks.*.outputs", MTLI_ST_INT, 0, NULL, NULL, 1, I32MAX, NULL},
    LAYERS("tasks.*.head"),
    {"tasks.*.output_layer", MTLI_ST_BOOL, 0, NULL, "true", 0, 0, NULL},
    {"tasks.*.loss", MTLI_ST_OPEN, 0, "name", NULL, 0, 0, NULL},
    {"tasks.*.loss.name", MTLI_ST_STRING, 0, NULL, NULL, 0, 0, NULL},
    {"tasks.*.loss.class_weights", MTLI_ST_NUMBERS, MTLI_SF_NUMBER_OR_ENUM, NULL, NULL, 0, 0, "balanced"},
    {"tasks.*.metrics", MTLI_ST_STRINGS, 0, NULL, NULL, 0, 0, NULL},
    /* default 1, filled in for method "fixed" only (other methods refuse static weights) */
    {"tasks.*.weight", MTLI_ST_DOUBLE, 0, NULL, NULL, 0, INFINITY, NULL},
    {"tasks.*.positive", MTLI_ST_STRING, 0, NULL, NULL, 0, 0, NULL},
    /* multi-input problems: each task its own .npy inputs and labels */
    {"tasks.*.data", MTLI_ST_MAP, 0, NULL, NULL, 0, 0, NULL},
    TASK_SPLIT("tasks.*.data.train"),
    TASK_SPLIT("tasks.*.data.validation"),
    {"tasks.*.data.validation.fraction", MTLI_ST_DOUBLE, MTLI_SF_LO_OPEN | MTLI_SF_HI_OPEN, NULL, NULL, 0, 1, NULL},
    TASK_SPLIT("tasks.*.data.test"),
    {"tasks.*.data.test.fraction", MTLI_ST_DOUBLE, MTLI_SF_LO_OPEN | MTLI_SF_HI_OPEN, NULL, NULL, 0, 1, NULL},

    {"weighting", MTLI_ST_OPEN, 0, "method", NULL, 0, 0, NULL},
    {"weighting.method", MTLI_ST_STRING, 0, NULL, NULL, 0, 0, NULL},

    {"optimizer", MTLI_ST_OPEN, 0, "kind", NULL, 0, 0, NULL},
    {"optimizer.kind", MTLI_ST_STRING, 0, NULL, "adam", 0, 0, NULL},
    {"optimizer.schedule", MTLI_ST_OPEN, 0, "name", NULL, 0, 0, NULL},
    {"optimizer.schedule.name", MTLI_ST_STRING, 0, NULL, "constant", 0, 0, NULL},
    SCHEDULE_KEYS("optimizer"),
    SCHEDULE_KEYS("optimizer.schedule"),
    {"optimizer.lr_scale", MTLI_ST_DICT, 0, NULL, NULL, 0, 0, NULL},
    {"optimizer.lr_scale.*", MTLI_ST_DOUBLE, 0, NULL, NULL, 0, INFINITY, NULL},

    /* the trainer's keys (mtl_trainer_set_*), with its defaults; other keys pass to it */
    {"training", MTLI_ST_OPEN, 0, NULL, NULL, 0, 0, NULL},
    {"training.epochs", MTLI_ST_INT, 0, NULL, "10", 1, 1e15, NULL},
    {"training.batch_size", MTLI_ST_INT, 0, NULL, "32", 1, 16777216, NULL},
    {"training.eval_batch_size", MTLI_ST_INT, 0, NULL, "0", 0, 16777216, NULL},
    {"training.seed", MTLI_ST_INT, 0, NULL, "0", 0, 9.2e18, NULL},
    {"training.shuffle", MTLI_ST_BOOL, 0, NULL, "true", 0, 0, NULL},
    {"training.drop_last", MTLI_ST_BOOL, 0, NULL, "false", 0, 0, NULL},
    {"training.eval_every", MTLI_ST_INT, 0, NULL, "1", 0, 1e15, NULL},
    {"training.eval_every_steps", MTLI_ST_INT, 0, NULL, "0", 0, 1e15, NULL},
    {"training.max_steps", MTLI_ST_INT, 0, NULL, "0", 0, 1e15, NULL},
    {"training.sampler", MTLI_ST_ENUM, 0, NULL, "all", 0, 0,
     "all|round_robin|proportional|temperature|uniform"},
    {"training.temperature", MTLI_ST_DOUBLE, MTLI_SF_LO_OPEN, NULL, "2", 0, INFINITY, NULL},
    {"training.early_stopping_metric", MTLI_ST_STRING, 0, NULL, "", 0, 0, NULL},
    {"training.early_stopping_patience", MTLI_ST_INT, 0, NULL, "0", 0, 1e15, NULL},
    {"training.early_stopping_min_delta", MTLI_ST_DOUBLE, 0, NULL, "0", 0, INFINITY, NULL},
    {"training.early_stopping_mode", MTLI_ST_ENUM, 0, NULL, "auto", 0, 0, "auto|min|max"},
    {"training.checkpoint_path", MTLI_ST_STRING, 0, NULL, "", 0, 0, NULL},
    {"training.checkpoint_every", MTLI_ST_INT, 0, NULL, "0", 0, 1e15, NULL},
    {"training.checkpoint_pattern", MTLI_ST_STRING, 0, NULL, "", 0, 0, NULL},
    {"training.log_path", MTLI_ST_STRING, 0, NULL, "", 0, 0, NULL},
    /* read by the mtl program, not the trainer */
    {"training.threads", MTLI_ST_INT, 0, NULL, "1", 1, 1024, NULL},
    {"training.resume", MTLI_ST_STRING, 0, NULL, "", 0, 0, NULL},
    {"training.progress", MTLI_ST_ENUM, 0, NULL, "auto", 0, 0, "auto|bar|lines|none"},
};
#define NSCHEMA ((int)(sizeof g_schema / sizeof g_schema[0]))

/* Maps that are created (with their defaults) when the file leaves them out. */
static const char *const g_always[] = {"model", "training", "optimizer", "weighting", NULL};

const mtli_skey *mtli_schema_at(int i) { return i >= 0 && i < NSCHEMA ? &g_schema[i] : NULL; }

const mtli_skey *mtli_schema_find(const char *pattern)
{
    for (int i = 0; i < NSCHEMA; i++)
        if (strcmp(g_schema[i].path, pattern) == 0)
            return &g_schema[i];
    return NULL;
}

/* ---- task kinds ------------------------------------------------------------------------ */

mtli_task_kind mtli_task_kind_of(const mtli_cnode *task)
{
    const mtli_cnode *k = mtli_cnode_get(task, "kind");
    const char *s = k && k->kind == MTLI_CN_SCALAR ? k->text : "";
    if (strcmp(s, "binary") == 0)
        return MTLI_TASK_BINARY;
    if (strcmp(s, "multilabel") == 0)
        return MTLI_TASK_MULTILABEL;
    if (strcmp(s, "regression") == 0)
        return MTLI_TASK_REGRESSION;
    return MTLI_TASK_CLASSIFICATION;
}

const char *mtli_task_default_loss(mtli_task_kind k)
{
    switch (k) {
    case MTLI_TASK_CLASSIFICATION: return "cross_entropy";
    case MTLI_TASK_BINARY:
    case MTLI_TASK_MULTILABEL: return "bce";
    case MTLI_TASK_REGRESSION: return "mse";
    }
    return "mse";
}

const char *const *mtli_task_default_metrics(const mtli_cnode *task)
{
    /* the trainer's defaults, by loss (see mtl/train.h) */
    static const char *const ce[] = {"accuracy", "precision_macro", "recall_macro", "f1_macro", NULL};
    static const char *const bin[] = {"accuracy", "precision", "recall", "f1", "roc_auc", NULL};
    static const char *const ml[] = {"accuracy", NULL};
    static const char *const reg[] = {"mse", "mae", "r2", NULL};
    mtli_task_kind k = mtli_task_kind_of(task);
    const char *loss = mtli_task_str(mtli_cnode_get(task, "loss"), "name", mtli_task_default_loss(k));
    if (strcmp(loss, "cross_entropy") == 0)
        return ce;
    if (strcmp(loss, "bce") == 0)
        return k == MTLI_TASK_MULTILABEL ? ml : bin;
    return reg;
}

const char *mtli_task_str(const mtli_cnode *task, const char *key, const char *def)
{
    const mtli_cnode *v = mtli_cnode_get(task, key);
    return v && v->kind == MTLI_CN_SCALAR ? v->text : def;
}

const mtli_cnode *mtli_config_tasks(const mtl_config *cfg)
{
    return mtli_cnode_get(cfg->root, "tasks");
}

/* ---- validation ------------------------------------------------------------------------ */

typedef struct {
    char pattern[256]; /* "tasks.*.loss" */
    char path[512];    /* "tasks.income.loss" (for messages) */
} vpath;

/* dst = a "." b (or b when a is empty), truncated to cap */
static void join_dot(char *dst, size_t cap, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), n = 0;
    if (la >= cap)
        la = cap - 1;
    memmove(dst, a, la);
    n = la;
    if (la && n + 1 < cap)
        dst[n++] = '.';
    if (lb > cap - 1 - n)
        lb = cap - 1 - n;
    memcpy(dst + n, b, lb);
    dst[n + lb] = '\0';
}

static void vpath_push(vpath *out, const vpath *in, const char *pat, const char *concrete)
{
    join_dot(out->pattern, sizeof out->pattern, in->pattern, pat);
    join_dot(out->path, sizeof out->path, in->path, concrete);
}

static const char *type_name(const mtli_skey *e, char *buf, size_t cap)
{
    switch (e->type) {
    case MTLI_ST_MAP:
    case MTLI_ST_OPEN:
    case MTLI_ST_DICT: return "a mapping";
    case MTLI_ST_SEQ: return "a list";
    case MTLI_ST_TASKS: return "a list of tasks or a mapping of task names";
    case MTLI_ST_INT: return "an integer";
    case MTLI_ST_DOUBLE: return "a number";
    case MTLI_ST_BOOL: return "true or false";
    case MTLI_ST_STRING: return "a string";
    case MTLI_ST_PATH: return "a file name";
    case MTLI_ST_STRINGS: return "a string or a list of strings";
    case MTLI_ST_NUMBERS: return "a list of numbers";
    case MTLI_ST_SCALAR: return "a value";
    case MTLI_ST_LAYER: return "a layer ({kind: ..., options})";
    case MTLI_ST_ENUM:
        snprintf(buf, cap, "one of %s", e->values);
        for (char *p = buf; *p; p++)
            if (*p == '|')
                *p = ',';
        return buf;
    }
    return "a value";
}

static mtl_status wrong_type(const mtli_cnode *n, const vpath *p, const mtli_skey *e)
{
    char tb[200], db[100];
    return mtli_cfg_error(n, MTL_ERR_FORMAT, "%s: expected %s, got %s", p->path,
                          type_name(e, tb, sizeof tb), mtli_cnode_describe(n, db, sizeof db));
}

static void range_text(const mtli_skey *e, char *buf, size_t cap)
{
    int integer = e->type == MTLI_ST_INT;
    char lo[40], hi[40];
    if (integer) {
        snprintf(lo, sizeof lo, "%.0f", e->lo);
        snprintf(hi, sizeof hi, "%.0f", e->hi);
    } else {
        snprintf(lo, sizeof lo, "%g", e->lo);
        snprintf(hi, sizeof hi, "%g", e->hi);
    }
    if (isinf(e->hi) || e->hi >= 1e12)
        snprintf(buf, cap, "%s %s", e->flags & MTLI_SF_LO_OPEN ? ">" : ">=", lo);
    else
        snprintf(buf, cap, "in %s%s, %s%s", e->flags & MTLI_SF_LO_OPEN ? "(" : "[", lo, hi,
                 e->flags & MTLI_SF_HI_OPEN ? ")" : "]");
}

static int in_range(const mtli_skey *e, double v)
{
    if (isnan(v))
        return 0;
    if (v < e->lo || (v == e->lo && (e->flags & MTLI_SF_LO_OPEN)))
        return 0;
    if (v > e->hi || (v == e->hi && (e->flags & MTLI_SF_HI_OPEN)))
        return 0;
    return 1;
}

static int enum_has(const char *values, const char *s)
{
    size_t n = strlen(s);
    for (const char *p = values; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0)
            return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

static mtl_status check_scalar(const mtli_cnode *n, const vpath *p, const mtli_skey *e)
{
    char rb[100];
    if (n->kind == MTLI_CN_NULL) {
        if (e->flags & MTLI_SF_NULLABLE)
            return MTL_OK;
        return wrong_type(n, p, e);
    }
    if (n->kind != MTLI_CN_SCALAR)
        return wrong_type(n, p, e);
    if ((e->flags & MTLI_SF_NUMBER_OR_ENUM) && !n->quoted && enum_has(e->values, n->text))
        return MTL_OK;
    switch (e->type) {
    case MTLI_ST_INT: {
        int64_t v;
        if (!mtli_scalar_int(n, &v))
            return wrong_type(n, p, e);
        if (!in_range(e, (double)v)) {
            range_text(e, rb, sizeof rb);
            return mtli_cfg_error(n, MTL_ERR_RANGE, "%s = %lld is out of range (expected %s)",
                                  p->path, (long long)v, rb);
        }
        return MTL_OK;
    }
    case MTLI_ST_DOUBLE: {
        double v;
        if (!mtli_scalar_double(n, &v))
            return wrong_type(n, p, e);
        if (!in_range(e, v) || (isinf(v) && !isinf(e->hi))) {
            range_text(e, rb, sizeof rb);
            return mtli_cfg_error(n, MTL_ERR_RANGE, "%s = %s is out of range (expected %s)",
                                  p->path, n->text, rb);
        }
        if (isinf(v))
            return mtli_cfg_error(n, MTL_ERR_RANGE, "%s = %s: expected a finite number", p->path,
                                  n->text);
        return MTL_OK;
    }
    case MTLI_ST_BOOL: {
        int b;
        if (!mtli_scalar_bool(n, &b))
            return wrong_type(n, p, e);
        return MTL_OK;
    }
    case MTLI_ST_ENUM:
        if (!enum_has(e->values, n->text)) {
            char tb[200];
            return mtli_cfg_error(n, MTL_ERR_INVALID_ARGUMENT, "%s: unknown value '%s' (expected %s)",
                                  p->path, n->text, type_name(e, tb, sizeof tb));
        }
        return MTL_OK;
    case MTLI_ST_PATH:
        if (!n->text[0])
            return mtli_cfg_error(n, MTL_ERR_FORMAT, "%s: expected a file name, got ''", p->path);
        return MTL_OK;
    default:
        return MTL_OK; /* strings and free scalars */
    }
}

/* Edit distance, for "did you mean" hints. */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    int d[41][41];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* The direct child keys of a pattern, comma-separated; *best receives the closest to key. */
static void child_keys(const char *pattern, const char *key, char *buf, size_t cap,
                       const char **best)
{
    size_t plen = strlen(pattern), used = 0;
    int bestd = 3;
    *best = NULL;
    buf[0] = '\0';
    for (int i = 0; i < NSCHEMA; i++) {
        const char *p = g_schema[i].path;
        const char *k;
        if (plen == 0)
            k = p;
        else if (strncmp(p, pattern, plen) == 0 && p[plen] == '.')
            k = p + plen + 1;
        else
            continue;
        if (!*k || strchr(k, '.') || strcmp(k, "*") == 0)
            continue;
        int w = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", k);
        if (w > 0 && (size_t)w < cap - used)
            used += (size_t)w;
        int d = distance(key, k);
        if (d < bestd) {
            bestd = d;
            *best = k;
        }
    }
}

static mtl_status validate(mtli_cnode **slot, const vpath *p, const mtli_cnode *owner);

/* A scalar where a mapping with a shorthand key is expected becomes {shorthand: scalar}. */
static mtl_status expand_shorthand(mtli_cnode **slot, const vpath *p, const mtli_skey *e)
{
    mtli_cnode *n = *slot;
    const char *key = e->shorthand;
    if (strcmp(p->pattern, "data.validation") == 0 || strcmp(p->pattern, "data.test") == 0 ||
        strcmp(p->pattern, "tasks.*.data.validation") == 0 ||
        strcmp(p->pattern, "tasks.*.data.test") == 0) {
        double d;
        if (mtli_scalar_double(n, &d))
            key = "fraction";
    }
    mtli_cnode *map = mtli_cnode_new(MTLI_CN_MAP, n);
    mtli_cnode *k = mtli_cnode_scalar(key, 1, n);
    if (!map || !k) {
        mtli_cnode_free(map);
        mtli_cnode_free(k);
        return mtli_oom("configuration mapping", sizeof *map);
    }
    *slot = map;
    return mtli_cnode_map_add(map, k, n); /* on failure frees k and n; map stays in slot */
}

static mtl_status validate_map(mtli_cnode **slot, const vpath *p, const mtli_skey *e)
{
    mtli_cnode *n = *slot;
    if (n->kind == MTLI_CN_NULL) {
        n->kind = MTLI_CN_MAP; /* "training:" with nothing under it: an empty mapping */
    } else if (n->kind == MTLI_CN_SCALAR && e->shorthand) {
        MTLI_TRY(expand_shorthand(slot, p, e));
        n = *slot;
    } else if (n->kind != MTLI_CN_MAP) {
        return wrong_type(n, p, e);
    }
    for (int i = 0; i < n->n; i++) {
        const char *key = n->keys[i]->text;
        vpath c;
        if (e->type == MTLI_ST_DICT) {
            vpath_push(&c, p, "*", key);
        } else {
            vpath_push(&c, p, key, key);
            if (!mtli_schema_find(c.pattern) || !key[0] || strcmp(key, "*") == 0) {
                if (e->type == MTLI_ST_OPEN) {
                    /* passed to the API, which validates name and value; a near miss of a
                     * documented key is most likely a typo of it */
                    char keys[1200];
                    const char *best;
                    child_keys(p->pattern, key, keys, sizeof keys, &best);
                    if (best && distance(key, best) <= 2 && strlen(key) > 3)
                        return mtli_cfg_error(n->keys[i], MTL_ERR_INVALID_ARGUMENT,
                                              "unknown key '%s' in %s (did you mean '%s'?)", key,
                                              p->path, best);
                    const mtli_cnode *v = n->vals[i];
                    if (v->kind != MTLI_CN_SCALAR) {
                        char db[100];
                        return mtli_cfg_error(v, MTL_ERR_FORMAT, "%s: expected a single value, got %s",
                                              c.path, mtli_cnode_describe(v, db, sizeof db));
                    }
                    continue;
                }
                char keys[1200];
                const char *best;
                child_keys(p->pattern, key, keys, sizeof keys, &best);
                if (best)
                    return mtli_cfg_error(n->keys[i], MTL_ERR_INVALID_ARGUMENT,
                                          "unknown key '%s' in %s (did you mean '%s'?)", key,
                                          p->path[0] ? p->path : "the top level", best);
                return mtli_cfg_error(n->keys[i], MTL_ERR_INVALID_ARGUMENT,
                                      "unknown key '%s' in %s (expected one of: %s)", key,
                                      p->path[0] ? p->path : "the top level", keys);
            }
        }
        MTLI_TRY(validate(&n->vals[i], &c, n->keys[i]));
    }
    /* required keys */
    size_t plen = strlen(p->pattern);
    for (int i = 0; i < NSCHEMA; i++) {
        const char *path = g_schema[i].path;
        const char *k;
        if (!(g_schema[i].flags & MTLI_SF_REQUIRED))
            continue;
        if (plen == 0)
            k = path;
        else if (strncmp(path, p->pattern, plen) == 0 && path[plen] == '.')
            k = path + plen + 1;
        else
            continue;
        if (strchr(k, '.') || mtli_cnode_index(n, k) >= 0)
            continue;
        return mtli_cfg_error(n, MTL_ERR_NOT_FOUND, "missing required key '%s' in %s", k,
                              p->path[0] ? p->path : "the configuration");
    }
    return MTL_OK;
}

/* tasks: a mapping of name -> settings becomes a list of settings with a name each. */
static mtl_status normalise_tasks(mtli_cnode **slot, const vpath *p, const mtli_skey *e)
{
    mtli_cnode *n = *slot;
    if (n->kind == MTLI_CN_SEQ)
        return MTL_OK;
    if (n->kind != MTLI_CN_MAP)
        return wrong_type(n, p, e);
    mtli_cnode *seq = mtli_cnode_new(MTLI_CN_SEQ, n);
    if (!seq)
        return mtli_oom("task list", sizeof *seq);
    mtl_status st = MTL_OK;
    for (int i = 0; st == MTL_OK && i < n->n; i++) {
        mtli_cnode *v = n->vals[i];
        if (v->kind == MTLI_CN_NULL)
            v->kind = MTLI_CN_MAP;
        if (v->kind != MTLI_CN_MAP) {
            char db[100];
            st = mtli_cfg_error(v, MTL_ERR_FORMAT, "tasks.%s: expected a mapping of task settings, got %s",
                                n->keys[i]->text, mtli_cnode_describe(v, db, sizeof db));
            break;
        }
        int at = mtli_cnode_index(v, "name");
        if (at >= 0) {
            st = mtli_cfg_error(v->keys[at], MTL_ERR_INVALID_ARGUMENT,
                                "tasks.%s: the task's name is its key here; remove 'name' (or "
                                "write tasks as a list)",
                                n->keys[i]->text);
            break;
        }
        /* move: the key becomes the name value (first), the value becomes the item */
        mtli_cnode *name = mtli_cnode_scalar(n->keys[i]->text, 1, n->keys[i]);
        mtli_cnode *nk = mtli_cnode_scalar("name", 1, n->keys[i]);
        if (!name || !nk) {
            mtli_cnode_free(name);
            mtli_cnode_free(nk);
            st = mtli_oom("task name", 64);
            break;
        }
        st = mtli_cnode_map_add(v, nk, name);
        if (st != MTL_OK)
            break;
        /* rotate the name pair to the front */
        mtli_cnode *kk = v->keys[v->n - 1], *vv = v->vals[v->n - 1];
        memmove(v->keys + 1, v->keys, (size_t)(v->n - 1) * sizeof *v->keys);
        memmove(v->vals + 1, v->vals, (size_t)(v->n - 1) * sizeof *v->vals);
        v->keys[0] = kk;
        v->vals[0] = vv;
        st = mtli_cnode_seq_add(seq, v);
        if (st == MTL_OK)
            n->vals[i] = NULL;
        else
            n->vals[i] = NULL; /* seq_add freed it */
    }
    if (st != MTL_OK) {
        mtli_cnode_free(seq);
        return st;
    }
    /* the mapping's values now live in seq */
    for (int i = 0; i < n->n; i++) {
        mtli_cnode_free(n->keys[i]);
        n->keys[i] = NULL;
    }
    n->n = 0;
    mtli_cnode_free(n);
    *slot = seq;
    return MTL_OK;
}

static mtl_status validate(mtli_cnode **slot, const vpath *p, const mtli_cnode *owner)
{
    (void)owner;
    const mtli_skey *e = mtli_schema_find(p->pattern);
    if (!e)
        return mtli_error(MTL_ERR_INTERNAL, "configuration schema has no entry '%s'", p->pattern);
    mtli_cnode *n = *slot;
    switch (e->type) {
    case MTLI_ST_MAP:
    case MTLI_ST_OPEN:
    case MTLI_ST_DICT:
        return validate_map(slot, p, e);
    case MTLI_ST_TASKS: {
        if (n->kind == MTLI_CN_NULL)
            return mtli_cfg_error(n, MTL_ERR_NOT_FOUND, "tasks: at least one task is required");
        MTLI_TRY(normalise_tasks(slot, p, e));
        n = *slot;
        if (n->n == 0)
            return mtli_cfg_error(n, MTL_ERR_NOT_FOUND, "tasks: at least one task is required");
        for (int i = 0; i < n->n; i++) {
            vpath c;
            char idx[24];
            const char *nm = mtli_task_str(n->vals[i], "name", NULL);
            snprintf(idx, sizeof idx, "%d", i);
            vpath_push(&c, p, "*", nm ? nm : idx);
            if (n->vals[i]->kind != MTLI_CN_MAP && n->vals[i]->kind != MTLI_CN_NULL) {
                char db[100];
                return mtli_cfg_error(n->vals[i], MTL_ERR_FORMAT,
                                      "tasks.%d: expected a mapping of task settings, got %s", i,
                                      mtli_cnode_describe(n->vals[i], db, sizeof db));
            }
            MTLI_TRY(validate(&n->vals[i], &c, NULL));
            const mtli_cnode *name = mtli_cnode_get(n->vals[i], "name");
            for (int j = 0; j < i; j++) {
                const mtli_cnode *other = mtli_cnode_get(n->vals[j], "name");
                if (strcmp(other->text, name->text) == 0)
                    return mtli_cfg_error(name, MTL_ERR_INVALID_ARGUMENT,
                                          "duplicate task name '%s' (first defined at line %d, "
                                          "column %d)",
                                          name->text, other->line, other->col);
            }
        }
        return MTL_OK;
    }
    case MTLI_ST_SEQ:
        if (n->kind == MTLI_CN_NULL)
            n->kind = MTLI_CN_SEQ;
        if (n->kind != MTLI_CN_SEQ)
            return wrong_type(n, p, e);
        for (int i = 0; i < n->n; i++) {
            vpath c;
            char idx[24];
            snprintf(idx, sizeof idx, "%d", i);
            vpath_push(&c, p, "*", idx);
            MTLI_TRY(validate(&n->vals[i], &c, NULL));
        }
        return MTL_OK;
    case MTLI_ST_LAYER: {
        if (n->kind == MTLI_CN_SCALAR && e->shorthand) {
            MTLI_TRY(expand_shorthand(slot, p, e));
            n = *slot;
        }
        if (n->kind != MTLI_CN_MAP)
            return wrong_type(n, p, e);
        const mtli_cnode *kind = mtli_cnode_get(n, "kind");
        if (!kind)
            return mtli_cfg_error(n, MTL_ERR_NOT_FOUND, "%s: missing required key 'kind'", p->path);
        for (int i = 0; i < n->n; i++)
            if (n->vals[i]->kind != MTLI_CN_SCALAR) {
                char db[100];
                return mtli_cfg_error(n->vals[i], MTL_ERR_FORMAT,
                                      "%s.%s: expected a single value, got %s", p->path,
                                      n->keys[i]->text, mtli_cnode_describe(n->vals[i], db, sizeof db));
            }
        return MTL_OK;
    }
    case MTLI_ST_STRINGS:
        if (n->kind == MTLI_CN_SCALAR)
            return MTL_OK;
        if (n->kind != MTLI_CN_SEQ)
            return wrong_type(n, p, e);
        for (int i = 0; i < n->n; i++)
            if (n->vals[i]->kind != MTLI_CN_SCALAR)
                return wrong_type(n->vals[i], p, e);
        return MTL_OK;
    case MTLI_ST_NUMBERS:
        if ((e->flags & MTLI_SF_NUMBER_OR_ENUM) && n->kind == MTLI_CN_SCALAR && !n->quoted &&
            enum_has(e->values, n->text))
            return MTL_OK;
        if (n->kind != MTLI_CN_SEQ) {
            /* a comma-separated string is also accepted (milestones as the API takes them) */
            if (n->kind == MTLI_CN_SCALAR && !(e->flags & MTLI_SF_NUMBER_OR_ENUM))
                return MTL_OK;
            return wrong_type(n, p, e);
        }
        for (int i = 0; i < n->n; i++) {
            double d;
            if (!mtli_scalar_double(n->vals[i], &d)) {
                char db[100];
                return mtli_cfg_error(n->vals[i], MTL_ERR_FORMAT, "%s.%d: expected a number, got %s",
                                      p->path, i, mtli_cnode_describe(n->vals[i], db, sizeof db));
            }
        }
        return MTL_OK;
    default:
        return check_scalar(n, p, e);
    }
}

/* ---- semantic checks ------------------------------------------------------------------- */

static int is_split_npy(const mtli_cnode *s)
{
    return s && (mtli_cnode_get(s, "input") || mtli_cnode_get(s, "labels"));
}

static const char *const g_csv_keys[] = {"header", "delimiter", "na_values", "skip_rows",
                                         "comment", "trim", "strip_suffix", NULL};

/* Multi-input problems: every task has its own data, and data holds no splits. */
static mtl_status check_task_data(const mtli_cnode *root, int *multi)
{
    static const char *const splits[] = {"train", "validation", "test"};
    const mtli_cnode *data = mtli_cnode_get(root, "data");
    const mtli_cnode *tasks = mtli_cnode_get(root, "tasks");
    const mtli_cnode *first = NULL;
    *multi = 0;
    for (int t = 0; t < tasks->n; t++) {
        const mtli_cnode *td = mtli_cnode_get(tasks->vals[t], "data");
        const char *name = mtli_task_str(tasks->vals[t], "name", "");
        if (td && !first)
            first = td;
        if (!td)
            continue;
        for (int s = 0; s < 3; s++) {
            const mtli_cnode *sp = mtli_cnode_get(td, splits[s]);
            if (!sp)
                continue;
            int frac = mtli_cnode_get(sp, "fraction") != NULL;
            if (frac && sp->n > 1)
                return mtli_cfg_error(sp, MTL_ERR_INVALID_ARGUMENT,
                                      "tasks.%s.data.%s: 'fraction' goes alone", name, splits[s]);
            if (!frac && (!mtli_cnode_get(sp, "input") || !mtli_cnode_get(sp, "labels")))
                return mtli_cfg_error(sp, MTL_ERR_NOT_FOUND,
                                      "tasks.%s.data.%s: expected 'input' and 'labels' (.npy "
                                      "files)%s",
                                      name, splits[s], s ? " or 'fraction'" : "");
        }
        if (!mtli_cnode_get(td, "train"))
            return mtli_cfg_error(td, MTL_ERR_NOT_FOUND, "tasks.%s.data: missing required key 'train'",
                                  name);
    }
    if (!first)
        return MTL_OK;
    *multi = 1;
    for (int t = 0; t < tasks->n; t++)
        if (!mtli_cnode_get(tasks->vals[t], "data"))
            return mtli_cfg_error(tasks->vals[t], MTL_ERR_NOT_FOUND,
                                  "tasks.%s: missing 'data' (when one task has its own data, "
                                  "every task needs it)",
                                  mtli_task_str(tasks->vals[t], "name", ""));
    for (int i = 0; data && i < data->n; i++)
        if (strcmp(data->keys[i]->text, "dir") != 0)
            return mtli_cfg_error(data->keys[i], MTL_ERR_INVALID_ARGUMENT,
                                  "data.%s: the tasks have their own data (tasks.*.data); only "
                                  "data.dir applies",
                                  data->keys[i]->text);
    for (int t = 0; t < tasks->n; t++) {
        int at = mtli_cnode_index(tasks->vals[t], "label");
        if (at >= 0)
            return mtli_cfg_error(tasks->vals[t]->keys[at], MTL_ERR_INVALID_ARGUMENT,
                                  "tasks.%s.label: label columns are for CSV data",
                                  mtli_task_str(tasks->vals[t], "name", ""));
    }
    return MTL_OK;
}

static mtl_status check_data(const mtli_cnode *root)
{
    const mtli_cnode *data = mtli_cnode_get(root, "data");
    const mtli_cnode *tasks = mtli_cnode_get(root, "tasks");
    int multi;
    MTLI_TRY(check_task_data(root, &multi));
    if (!data || multi)
        return MTL_OK;
    static const char *const splits[] = {"train", "validation", "test"};
    int npy = -1; /* unknown */
    const mtli_cnode *first = NULL;
    for (int s = 0; s < 3; s++) {
        const mtli_cnode *sp = mtli_cnode_get(data, splits[s]);
        if (!sp)
            continue;
        const mtli_cnode *frac = mtli_cnode_get(sp, "fraction");
        int has_file = mtli_cnode_get(sp, "file") != NULL;
        int has_npy = is_split_npy(sp);
        int parts = (frac != NULL) + has_file + (has_npy != 0);
        if (parts == 0)
            return mtli_cfg_error(sp, MTL_ERR_NOT_FOUND,
                                  "data.%s: expected 'file' (a CSV file), 'input' and 'labels' "
                                  "(.npy files)%s",
                                  splits[s], s ? " or 'fraction'" : "");
        if (parts > 1)
            return mtli_cfg_error(sp, MTL_ERR_INVALID_ARGUMENT,
                                  "data.%s: give only one of 'file' (CSV), 'input'/'labels' (npy)%s",
                                  splits[s], s ? " and 'fraction'" : "");
        if (frac) {
            for (int i = 0; i < sp->n; i++)
                if (strcmp(sp->keys[i]->text, "fraction") != 0)
                    return mtli_cfg_error(sp->keys[i], MTL_ERR_INVALID_ARGUMENT,
                                          "data.%s: '%s' does not go with 'fraction'", splits[s],
                                          sp->keys[i]->text);
            continue;
        }
        if (npy >= 0 && npy != has_npy)
            return mtli_cfg_error(sp, MTL_ERR_INVALID_ARGUMENT,
                                  "data.%s: every split must be CSV ('file') or every split npy "
                                  "('input'), as data.%s is",
                                  splits[s], first ? "train" : "train");
        npy = has_npy;
        first = sp;
        if (has_npy) {
            if (!mtli_cnode_get(sp, "input"))
                return mtli_cfg_error(sp, MTL_ERR_NOT_FOUND, "data.%s: missing required key 'input'",
                                      splits[s]);
            for (const char *const *k = g_csv_keys; *k; k++) {
                int at = mtli_cnode_index(sp, *k);
                if (at >= 0)
                    return mtli_cfg_error(sp->keys[at], MTL_ERR_INVALID_ARGUMENT,
                                          "data.%s.%s: CSV options do not apply to .npy input",
                                          splits[s], *k);
            }
            const mtli_cnode *labels = mtli_cnode_get(sp, "labels");
            for (int i = 0; labels && i < labels->n; i++) {
                int found = 0;
                for (int t = 0; t < tasks->n; t++)
                    found |= strcmp(mtli_task_str(tasks->vals[t], "name", ""), labels->keys[i]->text) == 0;
                if (!found)
                    return mtli_cfg_error(labels->keys[i], MTL_ERR_NOT_FOUND,
                                          "data.%s.labels: '%s' is not a task", splits[s],
                                          labels->keys[i]->text);
            }
            if (s == 0)
                for (int t = 0; t < tasks->n; t++) {
                    const char *name = mtli_task_str(tasks->vals[t], "name", "");
                    if (!mtli_cnode_get(labels, name))
                        return mtli_cfg_error(labels ? labels : sp, MTL_ERR_NOT_FOUND,
                                              "data.train.labels: no labels for task '%s'", name);
                }
        }
    }
    if (npy == 1) {
        for (const char *const *k = (const char *const[]){"features", "csv", "standardize", "columns", NULL}; *k; k++) {
            int at = mtli_cnode_index(data, *k);
            if (at >= 0)
                return mtli_cfg_error(data->keys[at], MTL_ERR_INVALID_ARGUMENT,
                                      "data.%s: applies to CSV data only (the splits are .npy files)", *k);
        }
        for (int t = 0; t < tasks->n; t++) {
            int at = mtli_cnode_index(tasks->vals[t], "label");
            if (at >= 0)
                return mtli_cfg_error(tasks->vals[t]->keys[at], MTL_ERR_INVALID_ARGUMENT,
                                      "tasks.%s.label: label columns are for CSV data; .npy labels "
                                      "are given in data.<split>.labels",
                                      mtli_task_str(tasks->vals[t], "name", "?"));
        }
    }
    if (npy == -1 && mtli_cnode_get(data, "validation") && !mtli_cnode_get(data, "train"))
        return mtli_cfg_error(data, MTL_ERR_NOT_FOUND, "data: missing required key 'train'");
    /* ids encoding: the model has one input, so ids (int32) cannot mix with float features */
    const mtli_cnode *feats = mtli_cnode_get(data, "features");
    int ids = 0, other = 0;
    const mtli_cnode *first_ids = NULL;
    for (int i = 0; feats && i < feats->n; i++) {
        const char *enc = mtli_task_str(feats->vals[i], "encode", "auto");
        if (strcmp(enc, "ids") == 0) {
            ids++;
            if (!first_ids)
                first_ids = mtli_cnode_get(feats->vals[i], "encode");
        } else {
            other++;
        }
    }
    if (ids && other)
        return mtli_cfg_error(first_ids, MTL_ERR_INVALID_ARGUMENT,
                              "data.features: 'ids' encoding (int32 input for an embedding layer) "
                              "cannot be mixed with numeric or one-hot features; encode every "
                              "feature as ids or none");
    return MTL_OK;
}

static int metric_fits(mtli_task_kind k, const char *m)
{
    int reg = strcmp(m, "mse") == 0 || strcmp(m, "rmse") == 0 || strcmp(m, "mae") == 0 ||
              strcmp(m, "r2") == 0;
    if (k == MTLI_TASK_REGRESSION)
        return reg;
    if (reg)
        return 0;
    if (strcmp(m, "roc_auc") == 0)
        return k == MTLI_TASK_BINARY;
    return 1;
}

static int loss_fits(mtli_task_kind k, const char *loss)
{
    switch (k) {
    case MTLI_TASK_CLASSIFICATION: return strcmp(loss, "cross_entropy") == 0;
    case MTLI_TASK_BINARY: return strcmp(loss, "bce") == 0 || strcmp(loss, "cross_entropy") == 0;
    case MTLI_TASK_MULTILABEL: return strcmp(loss, "bce") == 0;
    case MTLI_TASK_REGRESSION:
        return strcmp(loss, "mse") == 0 || strcmp(loss, "l1") == 0 || strcmp(loss, "huber") == 0;
    }
    return 0;
}

static mtl_status check_tasks(const mtli_cnode *root)
{
    const mtli_cnode *tasks = mtli_cnode_get(root, "tasks");
    const mtli_cnode *w = mtli_cnode_get(root, "weighting");
    const mtli_cnode *method = mtli_cnode_get(w, "method");
    for (int t = 0; t < tasks->n; t++) {
        const mtli_cnode *task = tasks->vals[t];
        const char *name = mtli_task_str(task, "name", "?");
        mtli_task_kind kind = mtli_task_kind_of(task);
        const mtli_cnode *weight = mtli_cnode_get(task, "weight");
        if (weight && method && strcmp(method->text, "fixed") != 0)
            return mtli_cfg_error(weight, MTL_ERR_INVALID_ARGUMENT,
                                  "tasks.%s.weight: static task weights need weighting method "
                                  "'fixed' (weighting.method is '%s')",
                                  name, method->text);
        const mtli_cnode *classes = mtli_cnode_get(task, "classes");
        if (classes && kind != MTLI_TASK_CLASSIFICATION)
            return mtli_cfg_error(classes, MTL_ERR_INVALID_ARGUMENT,
                                  "tasks.%s.classes: only for classification tasks", name);
        const mtli_cnode *positive = mtli_cnode_get(task, "positive");
        if (positive && kind != MTLI_TASK_BINARY)
            return mtli_cfg_error(positive, MTL_ERR_INVALID_ARGUMENT,
                                  "tasks.%s.positive: only for binary tasks", name);
        const mtli_cnode *loss = mtli_cnode_get(mtli_cnode_get(task, "loss"), "name");
        if (loss && !loss_fits(kind, loss->text)) {
            const char *hint = kind == MTLI_TASK_CLASSIFICATION ? "cross_entropy"
                               : kind == MTLI_TASK_BINARY       ? "bce or cross_entropy"
                               : kind == MTLI_TASK_MULTILABEL   ? "bce"
                                                                : "mse, l1 or huber";
            return mtli_cfg_error(loss, MTL_ERR_INVALID_ARGUMENT,
                                  "tasks.%s.loss: '%s' does not fit a %s task (expected %s)", name,
                                  loss->text, mtli_task_str(task, "kind", "?"), hint);
        }
        const mtli_cnode *metrics = mtli_cnode_get(task, "metrics");
        int nm = metrics ? (metrics->kind == MTLI_CN_SEQ ? metrics->n : 1) : 0;
        for (int i = 0; i < nm; i++) {
            const mtli_cnode *m = metrics->kind == MTLI_CN_SEQ ? metrics->vals[i] : metrics;
            if (strcmp(m->text, "per_class") == 0) {
                /* per-class precision/recall/F1 of a class label (the trainer's extra) */
                if (kind == MTLI_TASK_REGRESSION || kind == MTLI_TASK_MULTILABEL)
                    return mtli_cfg_error(m, MTL_ERR_INVALID_ARGUMENT,
                                          "tasks.%s.metrics: 'per_class' applies to "
                                          "classification and binary tasks",
                                          name);
                continue;
            }
            if (mtl_metric_lower_is_better(m->text) < 0)
                return mtli_cfg_prefix(m, mtl_last_status() == MTL_OK ? MTL_ERR_NOT_FOUND
                                                                       : mtl_last_status());
            if (!metric_fits(kind, m->text))
                return mtli_cfg_error(m, MTL_ERR_INVALID_ARGUMENT,
                                      "tasks.%s.metrics: '%s' does not apply to a %s task", name,
                                      m->text, mtli_task_str(task, "kind", "?"));
        }
    }
    return MTL_OK;
}

/* Whether evaluation reports metric for task (its list, or the trainer's defaults). */
static int task_has_metric(const mtli_cnode *task, const char *metric)
{
    const mtli_cnode *metrics = mtli_cnode_get(task, "metrics");
    if (!metrics) {
        for (const char *const *m = mtli_task_default_metrics(task); *m; m++)
            if (strcmp(*m, metric) == 0)
                return 1;
        return 0;
    }
    if (metrics->kind == MTLI_CN_SCALAR)
        return strcmp(metrics->text, metric) == 0;
    for (int i = 0; i < metrics->n; i++)
        if (strcmp(metrics->vals[i]->text, metric) == 0)
            return 1;
    return 0;
}

static int has_validation(const mtli_cnode *root)
{
    const mtli_cnode *tasks = mtli_cnode_get(root, "tasks");
    if (mtli_cnode_get(mtli_cnode_get(root, "data"), "validation"))
        return 1;
    for (int t = 0; t < tasks->n; t++)
        if (mtli_cnode_get(mtli_cnode_get(tasks->vals[t], "data"), "validation"))
            return 1;
    return 0;
}

/* early_stopping_metric: "train.loss", "val.loss", "<split>.<task>.loss",
 * "val.<task>.<metric>" or "val.<task>.<precision|recall|f1>.<class>" (with per_class). */
static mtl_status check_training(const mtli_cnode *root)
{
    const mtli_cnode *tasks = mtli_cnode_get(root, "tasks");
    const mtli_cnode *metric = mtli_cnode_get(mtli_cnode_get(root, "training"), "early_stopping_metric");
    if (!metric || !metric->text[0])
        return MTL_OK;
    const char *m = metric->text;
    int val = strncmp(m, "val.", 4) == 0;
    if (!val && strncmp(m, "train.", 6) != 0)
        return mtli_cfg_error(metric, MTL_ERR_INVALID_ARGUMENT,
                              "training.early_stopping_metric: '%s' does not start with 'val.' "
                              "or 'train.'",
                              m);
    if (val && mtli_cnode_get(root, "data") && !has_validation(root))
        return mtli_cfg_error(metric, MTL_ERR_INVALID_ARGUMENT,
                              "training.early_stopping_metric: '%s' needs validation data "
                              "(data.validation)",
                              m);
    const char *rest = m + (val ? 4 : 6);
    if (strcmp(rest, "loss") == 0)
        return MTL_OK;
    const char *dot = strchr(rest, '.');
    size_t tl = dot ? (size_t)(dot - rest) : strlen(rest);
    const mtli_cnode *task = NULL;
    for (int t = 0; t < tasks->n; t++) {
        const char *name = mtli_task_str(tasks->vals[t], "name", "");
        if (strlen(name) == tl && strncmp(name, rest, tl) == 0)
            task = tasks->vals[t];
    }
    if (!task)
        return mtli_cfg_error(metric, MTL_ERR_NOT_FOUND,
                              "training.early_stopping_metric: '%s' names no task (expected "
                              "'%s.loss' or '%s.<task>.<metric>')",
                              m, val ? "val" : "train", val ? "val" : "train");
    const char *name = dot ? dot + 1 : "";
    if (strcmp(name, "loss") == 0)
        return MTL_OK;
    char base[64];
    snprintf(base, sizeof base, "%s", name);
    char *cls = strchr(base, '.');
    int ok;
    if (cls) {
        *cls = '\0';
        ok = (!strcmp(base, "precision") || !strcmp(base, "recall") || !strcmp(base, "f1")) &&
             task_has_metric(task, "per_class");
    } else {
        ok = task_has_metric(task, base);
    }
    if (!val || !ok)
        return mtli_cfg_error(metric, MTL_ERR_NOT_FOUND,
                              "training.early_stopping_metric: %s does not report '%s' for "
                              "task '%s'%s",
                              val ? "validation" : "training", name,
                              mtli_task_str(task, "name", ""),
                              val ? " (add it to the task's metrics)" : " (only its loss)");
    return MTL_OK;
}

static mtl_status check_model(const mtli_cnode *root)
{
    const mtli_cnode *shape = mtli_cnode_get(mtli_cnode_get(mtli_cnode_get(root, "model"), "input"), "shape");
    if (shape && (shape->n < 1 || shape->n > 3))
        return mtli_cfg_error(shape, MTL_ERR_RANGE,
                              "model.input.shape: a sample has 1 to 3 dimensions, got %d", shape->n);
    return MTL_OK;
}

/* ---- defaults -------------------------------------------------------------------------- */

static mtl_status put_default(mtli_cnode *map, const char *key, const char *text, int quoted)
{
    if (mtli_cnode_index(map, key) >= 0)
        return MTL_OK;
    mtli_cnode *k = mtli_cnode_scalar(key, 1, map);
    mtli_cnode *v = mtli_cnode_scalar(text, quoted, map);
    if (!k || !v) {
        mtli_cnode_free(k);
        mtli_cnode_free(v);
        return mtli_oom("configuration default", strlen(text) + 1);
    }
    return mtli_cnode_map_add(map, k, v);
}

/* Add the schema defaults of a present mapping (pattern p) that the file left out. */
static mtl_status fill_map(mtli_cnode *map, const char *pattern)
{
    size_t plen = strlen(pattern);
    for (int i = 0; i < NSCHEMA; i++) {
        const mtli_skey *e = &g_schema[i];
        if (!e->def || strncmp(e->path, pattern, plen) != 0 || e->path[plen] != '.')
            continue;
        const char *k = e->path + plen + 1;
        if (strchr(k, '.'))
            continue;
        MTLI_TRY(put_default(map, k, e->def,
                             e->type == MTLI_ST_STRING || e->type == MTLI_ST_PATH ||
                                 e->type == MTLI_ST_STRINGS));
    }
    return MTL_OK;
}

static mtl_status ensure_map(mtli_cnode *parent, const char *key, mtli_cnode **out)
{
    *out = mtli_cnode_get(parent, key);
    if (*out)
        return MTL_OK;
    mtli_cnode *k = mtli_cnode_scalar(key, 1, parent);
    mtli_cnode *v = mtli_cnode_new(MTLI_CN_MAP, parent);
    if (!k || !v) {
        mtli_cnode_free(k);
        mtli_cnode_free(v);
        return mtli_oom("configuration mapping", sizeof *v);
    }
    MTLI_TRY(mtli_cnode_map_add(parent, k, v));
    *out = v;
    return MTL_OK;
}

static mtl_status fill_defaults(mtli_cnode *root)
{
    for (const char *const *k = g_always; *k; k++) {
        mtli_cnode *m;
        MTLI_TRY(ensure_map(root, *k, &m));
        MTLI_TRY(fill_map(m, *k));
    }
    mtli_cnode *model = mtli_cnode_get(root, "model");
    mtli_cnode *trunk;
    MTLI_TRY(ensure_map(model, "trunk", &trunk));
    if (trunk->kind == MTLI_CN_MAP && trunk->n == 0)
        trunk->kind = MTLI_CN_SEQ;
    mtli_cnode *input = mtli_cnode_get(model, "input");
    if (input)
        MTLI_TRY(fill_map(input, "model.input"));
    mtli_cnode *opt = mtli_cnode_get(root, "optimizer");
    mtli_cnode *sched = mtli_cnode_get(opt, "schedule");
    if (sched) {
        MTLI_TRY(fill_map(sched, "optimizer.schedule"));
        /* cosine and linear run to total_steps: by default the end of training */
        const char *name = mtli_task_str(sched, "name", "");
        if ((strcmp(name, "cosine") == 0 || strcmp(name, "linear") == 0) &&
            !mtli_cnode_get(opt, "total_steps"))
            MTLI_TRY(put_default(sched, "total_steps", "auto", 0));
    }
    mtli_cnode *data = mtli_cnode_get(root, "data");
    mtli_cnode *train = mtli_cnode_get(data, "train");
    if (train && mtli_cnode_get(train, "file")) {
        mtli_cnode *csv;
        MTLI_TRY(fill_map(data, "data"));
        MTLI_TRY(ensure_map(data, "csv", &csv));
        MTLI_TRY(fill_map(csv, "data.csv"));
        mtli_cnode *feats = mtli_cnode_get(data, "features");
        for (int i = 0; feats && i < feats->n; i++)
            MTLI_TRY(fill_map(feats->vals[i], "data.features.*"));
    }
    mtli_cnode *tasks = mtli_cnode_get(root, "tasks");
    int any_weight = 0;
    for (int t = 0; t < tasks->n; t++)
        any_weight |= mtli_cnode_get(tasks->vals[t], "weight") != NULL;
    mtli_cnode *w = mtli_cnode_get(root, "weighting");
    MTLI_TRY(put_default(w, "method", any_weight ? "fixed" : "ew", 1));
    for (int t = 0; t < tasks->n; t++) {
        mtli_cnode *task = tasks->vals[t];
        mtli_task_kind kind = mtli_task_kind_of(task);
        MTLI_TRY(fill_map(task, "tasks.*"));
        if (strcmp(mtli_task_str(w, "method", ""), "fixed") == 0)
            MTLI_TRY(put_default(task, "weight", "1", 0));
        mtli_cnode *head;
        MTLI_TRY(ensure_map(task, "head", &head));
        if (head->kind == MTLI_CN_MAP && head->n == 0)
            head->kind = MTLI_CN_SEQ;
        mtli_cnode *loss;
        MTLI_TRY(ensure_map(task, "loss", &loss));
        MTLI_TRY(put_default(loss, "name", mtli_task_default_loss(kind), 1));
    }
    return MTL_OK;
}

/* ---- entry point ----------------------------------------------------------------------- */


/* Schema and semantic checks of the user's tree (normalised in place). */
mtl_status mtli_config_validate_tree(mtli_cnode **root)
{
    vpath p = {"", ""};
    if ((*root)->kind == MTLI_CN_NULL)
        (*root)->kind = MTLI_CN_MAP;
    if ((*root)->kind != MTLI_CN_MAP) {
        char db[100];
        return mtli_cfg_error(*root, MTL_ERR_FORMAT,
                              "the configuration must be a mapping of sections (data, model, "
                              "tasks, ...), got %s",
                              mtli_cnode_describe(*root, db, sizeof db));
    }
    MTLI_TRY(validate(root, &p, NULL));
    MTLI_TRY(check_model(*root));
    MTLI_TRY(check_tasks(*root));
    MTLI_TRY(check_data(*root));
    MTLI_TRY(check_training(*root));
    return MTL_OK;
}

/* Materialise the defaults (on a copy the caller owns). */
mtl_status mtli_config_fill(mtli_cnode *root) { return fill_defaults(root); }

/* ---- dotted keys ----------------------------------------------------------------------- */

mtl_status mtli_config_resolve(const mtl_config *cfg, const char *key, const mtli_cnode **node,
                               char *pattern, size_t cap)
{
    *node = NULL;
    pattern[0] = '\0';
    if (!key || !*key || key[0] == '.' || key[strlen(key) - 1] == '.' || strstr(key, ".."))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "malformed configuration key '%s'",
                          key ? key : "(null)");
    const mtli_cnode *n = cfg->root;
    char pat[256] = "";
    const char *p = key;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        char comp[256];
        if (len >= sizeof comp)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT, "configuration key '%s' is too long", key);
        memcpy(comp, p, len);
        comp[len] = '\0';
        const char *next = dot ? dot + 1 : p + len;
        char trial[256];
        const mtli_skey *e = mtli_schema_find(pat);
        int wildcard = e && (e->type == MTLI_ST_SEQ || e->type == MTLI_ST_TASKS ||
                             e->type == MTLI_ST_DICT || e->type == MTLI_ST_STRINGS ||
                             e->type == MTLI_ST_NUMBERS);
        join_dot(trial, sizeof trial, pat, wildcard ? "*" : comp);
        const mtli_cnode *child = NULL;
        if (n && n->kind == MTLI_CN_MAP) {
            child = mtli_cnode_get(n, comp);
            /* keys holding dots ("heads.income" under lr_scale): take the longest match */
            if (e && e->type == MTLI_ST_DICT && dot) {
                char joined[512];
                snprintf(joined, sizeof joined, "%s", comp);
                for (const char *q = next; *q;) {
                    const char *d2 = strchr(q, '.');
                    size_t l2 = d2 ? (size_t)(d2 - q) : strlen(q);
                    size_t jl = strlen(joined);
                    if (jl + 1 + l2 >= sizeof joined)
                        break;
                    joined[jl] = '.';
                    memcpy(joined + jl + 1, q, l2);
                    joined[jl + 1 + l2] = '\0';
                    q = d2 ? d2 + 1 : q + l2;
                    if (mtli_cnode_get(n, joined)) {
                        child = mtli_cnode_get(n, joined);
                        next = q;
                    }
                }
            }
        } else if (n && n->kind == MTLI_CN_SEQ) {
            int idx = -1;
            if (e && e->type == MTLI_ST_TASKS)
                for (int i = 0; i < n->n; i++)
                    if (strcmp(mtli_task_str(n->vals[i], "name", ""), comp) == 0)
                        idx = i;
            if (idx < 0) {
                char *end;
                long v = strtol(comp, &end, 10);
                if (*end || end == comp || v < 0 || v >= n->n) {
                    if (e && e->type == MTLI_ST_TASKS)
                        return mtli_error(MTL_ERR_NOT_FOUND, "configuration key '%s': no task '%s'",
                                          key, comp);
                    return mtli_error(MTL_ERR_NOT_FOUND,
                                      "configuration key '%s': '%s' is not an index of the list "
                                      "(0..%d)",
                                      key, comp, n->n - 1);
                }
                idx = (int)v;
            }
            child = n->vals[idx];
        } else if (n && n->kind == MTLI_CN_SCALAR && e && e->type == MTLI_ST_STRINGS &&
                   strcmp(comp, "0") == 0) {
            child = n; /* a single string counts as a list of one */
        }
        memcpy(pat, trial, sizeof pat);
        n = child;
        p = next;
    }
    *node = n;
    /* a key of an open mapping or of a layer has no schema entry: report an empty pattern */
    snprintf(pattern, cap, "%s", mtli_schema_find(pat) ? pat : "");
    return MTL_OK;
}
