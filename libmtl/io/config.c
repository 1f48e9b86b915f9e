/* The configuration handle: loading, overrides, effective values and the builders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "data/fileio.h"
#include "io/config_data.h"
#include "io/config_internal.h"



static mtl_status add_source(mtl_config *cfg, const char *name, int is_file, mtli_csrc **out)
{
    mtli_csrc *s = mtli_calloc(1, sizeof *s);
    if (!s)
        return mtli_oom("configuration source", sizeof *s);
    s->name = mtli_strdup(name);
    if (!s->name) {
        mtli_free(s);
        return mtli_oom("configuration source", strlen(name) + 1);
    }
    s->is_file = is_file;
    s->next = cfg->sources;
    cfg->sources = s;
    *out = s;
    return MTL_OK;
}

MTL_API void mtl_config_free(mtl_config *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; i < cfg->nds; i++)
        mtl_dataset_free(cfg->ds[i]);
    mtli_free(cfg->ds);
    mtli_cnode_free(cfg->root);
    mtli_cnode_free(cfg->user);
    mtli_cdata_free(cfg->data);
    for (mtli_csrc *s = cfg->sources; s;) {
        mtli_csrc *next = s->next;
        mtli_free(s->name);
        mtli_free(s);
        s = next;
    }
    mtli_free(cfg->path);
    mtli_free(cfg->dir);
    mtli_free(cfg);
}

/* Validate *user (normalising it in place), fill in the defaults on a copy, replay the
 * settings through the API; on success the copy becomes cfg->root. */
static mtl_status rebuild(mtl_config *cfg, mtli_cnode **user)
{
    MTLI_TRY(mtli_config_validate_tree(user));
    mtli_cnode *eff;
    MTLI_TRY(mtli_cnode_clone(&eff, *user));
    mtl_status st = mtli_config_fill(eff);
    if (st != MTL_OK) {
        mtli_cnode_free(eff);
        return st;
    }
    mtli_cnode *old = cfg->root;
    cfg->root = eff;
    st = mtli_config_dry_run(cfg);
    if (st != MTL_OK) {
        cfg->root = old;
        mtli_cnode_free(eff);
        return st;
    }
    mtli_cnode_free(old);
    return MTL_OK;
}

static mtl_status config_new(mtl_config **out, const char *name, const char *dir)
{
    mtl_config *c = mtli_calloc(1, sizeof *c);
    if (!c)
        return mtli_oom("configuration", sizeof *c);
    c->path = mtli_strdup(name);
    c->dir = mtli_strdup(dir);
    if (!c->path || !c->dir) {
        mtl_config_free(c);
        return mtli_oom("configuration", strlen(name) + strlen(dir) + 2);
    }
    *out = c;
    return MTL_OK;
}

static mtl_status parse_into(mtl_config *cfg, const char *text, size_t len)
{
    mtli_csrc *src;
    MTLI_TRY(add_source(cfg, cfg->path, 1, &src));
    mtli_cnode *tree;
    MTLI_TRY(mtli_yaml_parse(&tree, text, len, src));
    if (!tree) {
        mtli_cnode where = {0};
        where.src = src;
        where.line = where.col = 1;
        return mtli_cfg_error(&where, MTL_ERR_NOT_FOUND,
                              "the configuration is empty (it needs at least 'tasks')");
    }
    cfg->user = tree;
    return rebuild(cfg, &cfg->user);
}

MTL_API mtl_status mtl_config_parse(mtl_config **out, const char *text, size_t len,
                                    const char *name, const char *base_dir)
{
    MTLI_CHECK_NULL(out, "mtl_config_parse");
    *out = NULL;
    MTLI_CHECK_NULL(text, "mtl_config_parse");
    mtl_config *cfg;
    MTLI_TRY(config_new(&cfg, name ? name : "<string>", base_dir ? base_dir : "."));
    mtl_status st = parse_into(cfg, text, len);
    if (st != MTL_OK) {
        mtl_config_free(cfg);
        return st;
    }
    *out = cfg;
    return MTL_OK;
}

MTL_API mtl_status mtl_config_load(mtl_config **out, const char *path)
{
    MTLI_CHECK_NULL(out, "mtl_config_load");
    *out = NULL;
    MTLI_CHECK_NULL(path, "mtl_config_load");
    char *text;
    size_t len;
    MTLI_TRY(mtli_data_read_file(&text, &len, path, "mtl_config_load"));
    /* the directory of the file: relative data paths start there */
    char *dir = mtli_strdup(path);
    if (!dir) {
        mtli_free(text);
        return mtli_oom("path", strlen(path) + 1);
    }
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    mtl_config *cfg;
    mtl_status st = config_new(&cfg, path, dir);
    mtli_free(dir);
    if (st == MTL_OK) {
        st = parse_into(cfg, text, len);
        if (st != MTL_OK)
            mtl_config_free(cfg);
        else
            *out = cfg;
    }
    mtli_free(text);
    return st;
}

/* ---- overrides ------------------------------------------------------------------------- */

/* Split key into components; a component below a free-keyed mapping (DICT) takes the rest
 * of the key (lr_scale keys may hold dots). The schema pattern is built alongside. */
typedef struct {
    char comp[16][128];
    int n;
    char pattern[512];
} keyparts;

static mtl_status split_key(const char *key, keyparts *kp)
{
    kp->n = 0;
    kp->pattern[0] = '\0';
    if (!*key || key[0] == '.' || key[strlen(key) - 1] == '.' || strstr(key, ".."))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "malformed configuration key '%s'", key);
    const char *p = key;
    while (*p) {
        const mtli_skey *e = mtli_schema_find(kp->pattern);
        int dict = e && e->type == MTLI_ST_DICT;
        const char *dot = dict ? NULL : strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (kp->n == 16 || len >= sizeof kp->comp[0])
            return mtli_error(MTL_ERR_INVALID_ARGUMENT, "configuration key '%s' is too long", key);
        memcpy(kp->comp[kp->n], p, len);
        kp->comp[kp->n][len] = '\0';
        int wildcard = e && (e->type == MTLI_ST_SEQ || e->type == MTLI_ST_TASKS || dict ||
                             e->type == MTLI_ST_STRINGS || e->type == MTLI_ST_NUMBERS);
        size_t pl = strlen(kp->pattern);
        snprintf(kp->pattern + pl, sizeof kp->pattern - pl, "%s%s", pl ? "." : "",
                 wildcard ? "*" : kp->comp[kp->n]);
        kp->n++;
        p += len;
        if (*p == '.')
            p++;
    }
    return MTL_OK;
}

static mtl_status value_node(mtl_config *cfg, const char *key, const char *value,
                             const keyparts *kp, mtli_cnode **out)
{
    *out = NULL;
    size_t need = strlen(key) + strlen(value) + 16;
    char *name = mtli_malloc(need);
    if (!name)
        return mtli_oom("override", need);
    snprintf(name, need, "--set '%s=%s'", key, value);
    mtli_csrc *src;
    mtl_status st = add_source(cfg, name, 0, &src);
    mtli_free(name);
    MTLI_TRY(st);
    const mtli_skey *e = mtli_schema_find(kp->pattern);
    int literal = e && (e->type == MTLI_ST_STRING || e->type == MTLI_ST_PATH ||
                        e->type == MTLI_ST_ENUM ||
                        (e->type == MTLI_ST_STRINGS && value[0] != '['));
    mtli_cnode where = {0};
    where.src = src;
    where.line = where.col = 1;
    if (literal) {
        *out = mtli_cnode_scalar(value, 1, &where);
        return *out ? MTL_OK : mtli_oom("override", strlen(value) + 1);
    }
    MTLI_TRY(mtli_yaml_parse(out, value, strlen(value), src));
    if (!*out) {
        *out = mtli_cnode_new(MTLI_CN_NULL, &where);
        if (!*out)
            return mtli_oom("override", sizeof **out);
    }
    return MTL_OK;
}

/* Put val at the key's place in tree (taking ownership of val). */
static mtl_status place(mtli_cnode *tree, const keyparts *kp, const char *key, mtli_cnode *val)
{
    mtli_cnode *n = tree;
    char pat[512] = "";
    for (int i = 0; i < kp->n; i++) {
        const char *c = kp->comp[i];
        int last = i == kp->n - 1;
        const mtli_skey *e = mtli_schema_find(pat);
        if (n->kind == MTLI_CN_NULL)
            n->kind = MTLI_CN_MAP;
        if (n->kind == MTLI_CN_MAP) {
            int idx = mtli_cnode_index(n, c);
            if (last) {
                if (idx >= 0) {
                    mtli_cnode_free(n->vals[idx]);
                    n->vals[idx] = val;
                    return MTL_OK;
                }
                mtli_cnode *k = mtli_cnode_scalar(c, 1, val);
                if (!k) {
                    mtli_cnode_free(val);
                    return mtli_oom("override key", strlen(c) + 1);
                }
                return mtli_cnode_map_add(n, k, val);
            }
            if (idx < 0) {
                mtli_cnode *k = mtli_cnode_scalar(c, 1, val);
                mtli_cnode *m = mtli_cnode_new(MTLI_CN_MAP, val);
                if (!k || !m) {
                    mtli_cnode_free(k);
                    mtli_cnode_free(m);
                    mtli_cnode_free(val);
                    return mtli_oom("override", sizeof *m);
                }
                mtl_status st = mtli_cnode_map_add(n, k, m);
                if (st != MTL_OK) {
                    mtli_cnode_free(val);
                    return st;
                }
                n = m;
            } else {
                n = n->vals[idx];
            }
        } else if (n->kind == MTLI_CN_SEQ) {
            int idx = -1;
            if (e && e->type == MTLI_ST_TASKS)
                for (int j = 0; j < n->n; j++)
                    if (strcmp(mtli_task_str(n->vals[j], "name", ""), c) == 0)
                        idx = j;
            if (idx < 0) {
                char *end;
                long v = strtol(c, &end, 10);
                if (*end || end == c || v < 0 || v > n->n || (v == n->n && !last)) {
                    mtli_cnode_free(val);
                    if (e && e->type == MTLI_ST_TASKS)
                        return mtli_error(MTL_ERR_NOT_FOUND, "--set %s: no task '%s'", key, c);
                    return mtli_error(MTL_ERR_NOT_FOUND,
                                      "--set %s: '%s' is not a position in the list (0..%d)", key,
                                      c, n->n);
                }
                idx = (int)v;
            }
            if (last) {
                if (idx == n->n)
                    return mtli_cnode_seq_add(n, val);
                mtli_cnode_free(n->vals[idx]);
                n->vals[idx] = val;
                return MTL_OK;
            }
            n = n->vals[idx];
        } else {
            mtli_cnode_free(val);
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "--set %s: the setting before '%s' holds a single value, not a "
                              "mapping or list",
                              key, c);
        }
        size_t pl = strlen(pat);
        int wildcard = e && (e->type == MTLI_ST_SEQ || e->type == MTLI_ST_TASKS ||
                             e->type == MTLI_ST_DICT);
        snprintf(pat + pl, sizeof pat - pl, "%s%s", pl ? "." : "", wildcard ? "*" : c);
    }
    mtli_cnode_free(val);
    return MTL_OK;
}

MTL_API mtl_status mtl_config_set(mtl_config *cfg, const char *key, const char *value)
{
    MTLI_CHECK_NULL(cfg, "mtl_config_set");
    MTLI_CHECK_NULL(key, "mtl_config_set");
    MTLI_CHECK_NULL(value, "mtl_config_set");
    if (cfg->data_lent)
        return mtli_error(MTL_ERR_STATE,
                          "mtl_config_set: '%s': the configuration's data is in use by datasets "
                          "or a trainer made from it; change settings before building them",
                          key);
    keyparts kp;
    MTLI_TRY(split_key(key, &kp));
    mtli_cnode *val;
    MTLI_TRY(value_node(cfg, key, value, &kp, &val));
    mtli_cnode *user;
    mtl_status st = mtli_cnode_clone(&user, cfg->user);
    if (st != MTL_OK) {
        mtli_cnode_free(val);
        return st;
    }
    st = place(user, &kp, key, val);
    if (st == MTL_OK)
        st = rebuild(cfg, &user);
    if (st != MTL_OK) {
        mtli_cnode_free(user);
        return st;
    }
    mtli_cnode_free(cfg->user);
    cfg->user = user;
    mtli_cdata_free(cfg->data);
    cfg->data = NULL;
    return MTL_OK;
}

/* ---- reading --------------------------------------------------------------------------- */

static mtl_status lookup(const mtl_config *cfg, const char *key, const char *fn,
                         const mtli_cnode **n)
{
    MTLI_CHECK_NULL(cfg, fn);
    MTLI_CHECK_NULL(key, fn);
    char pattern[256];
    MTLI_TRY(mtli_config_resolve(cfg, key, n, pattern, sizeof pattern));
    if (!*n || (*n)->kind == MTLI_CN_NULL)
        return mtli_error(MTL_ERR_NOT_FOUND, "%s: configuration key '%s' is not set", fn, key);
    return MTL_OK;
}

MTL_API mtl_status mtl_config_get_int(const mtl_config *cfg, const char *key, int64_t *value)
{
    const mtli_cnode *n;
    MTLI_TRY(lookup(cfg, key, "mtl_config_get_int", &n));
    MTLI_CHECK_NULL(value, "mtl_config_get_int");
    int b;
    if (mtli_scalar_int(n, value))
        return MTL_OK;
    if (mtli_scalar_bool(n, &b)) {
        *value = b;
        return MTL_OK;
    }
    char db[100];
    return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_config_get_int: '%s' is %s, not an integer",
                      key, mtli_cnode_describe(n, db, sizeof db));
}

MTL_API mtl_status mtl_config_get_double(const mtl_config *cfg, const char *key, double *value)
{
    const mtli_cnode *n;
    MTLI_TRY(lookup(cfg, key, "mtl_config_get_double", &n));
    MTLI_CHECK_NULL(value, "mtl_config_get_double");
    int b;
    if (mtli_scalar_double(n, value))
        return MTL_OK;
    if (mtli_scalar_bool(n, &b)) {
        *value = b;
        return MTL_OK;
    }
    char db[100];
    return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_config_get_double: '%s' is %s, not a number",
                      key, mtli_cnode_describe(n, db, sizeof db));
}

MTL_API mtl_status mtl_config_get_string(const mtl_config *cfg, const char *key,
                                         const char **value)
{
    const mtli_cnode *n;
    MTLI_TRY(lookup(cfg, key, "mtl_config_get_string", &n));
    MTLI_CHECK_NULL(value, "mtl_config_get_string");
    if (n->kind != MTLI_CN_SCALAR) {
        char db[100];
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_config_get_string: '%s' is %s, not a single value", key,
                          mtli_cnode_describe(n, db, sizeof db));
    }
    *value = n->text;
    return MTL_OK;
}

MTL_API mtl_status mtl_config_count(const mtl_config *cfg, const char *key, int *count)
{
    MTLI_CHECK_NULL(cfg, "mtl_config_count");
    MTLI_CHECK_NULL(key, "mtl_config_count");
    MTLI_CHECK_NULL(count, "mtl_config_count");
    const mtli_cnode *n;
    char pattern[256];
    MTLI_TRY(mtli_config_resolve(cfg, key, &n, pattern, sizeof pattern));
    *count = !n || n->kind == MTLI_CN_NULL ? 0 : n->kind == MTLI_CN_SCALAR ? 1 : n->n;
    return MTL_OK;
}

static mtl_status copy_out(const char *s, char *buf, size_t cap, size_t *needed)
{
    size_t n = strlen(s) + 1;
    if (needed)
        *needed = n;
    if (cap && buf) {
        size_t m = n <= cap ? n : cap;
        memcpy(buf, s, m - 1);
        buf[m - 1] = '\0';
    }
    if (n > cap)
        return mtli_error(MTL_ERR_RANGE, "the text needs %zu bytes, the buffer has %zu", n, cap);
    return MTL_OK;
}

MTL_API mtl_status mtl_config_data_path(const mtl_config *cfg, const char *key, char *buf,
                                        size_t cap, size_t *needed)
{
    const char *rel;
    MTLI_TRY(mtl_config_get_string(cfg, key, &rel));
    if (!buf && cap)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_config_data_path: buf is NULL with cap %zu",
                          cap);
    char *full;
    MTLI_TRY(mtli_config_data_path(cfg, rel, &full));
    mtl_status st = copy_out(full, buf, cap, needed);
    mtli_free(full);
    return st;
}

MTL_API int mtl_config_num_tasks(const mtl_config *cfg)
{
    if (!cfg) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_config_num_tasks: argument 'cfg' is NULL");
        return 0;
    }
    return mtli_config_tasks(cfg)->n;
}

MTL_API const char *mtl_config_task_name(const mtl_config *cfg, int index)
{
    if (!cfg) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_config_task_name: argument 'cfg' is NULL");
        return NULL;
    }
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    if (index < 0 || index >= tasks->n) {
        mtli_error(MTL_ERR_NOT_FOUND, "mtl_config_task_name: index %d outside 0..%d", index,
                   tasks->n - 1);
        return NULL;
    }
    return mtli_task_str(tasks->vals[index], "name", NULL);
}

MTL_API mtl_status mtl_config_dump(const mtl_config *cfg, char *buf, size_t cap, size_t *needed)
{
    MTLI_CHECK_NULL(cfg, "mtl_config_dump");
    if (!buf && cap)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_config_dump: buf is NULL with cap %zu",
                          cap);
    mtli_sbuf b = {0};
    mtli_sbuf_add(&b, "# effective configuration of %s (defaults filled in)\n", cfg->path);
    mtli_yaml_emit(&b, cfg->root, 0);
    if (b.oom) {
        mtli_free(b.p);
        return mtli_oom("configuration text", b.len);
    }
    mtl_status st = copy_out(b.p, buf, cap, needed);
    mtli_free(b.p);
    return st;
}

/* ---- builders -------------------------------------------------------------------------- */

static mtl_status ensure_data(mtl_config *cfg)
{
    if (cfg->data)
        return MTL_OK;
    return mtli_cdata_load(cfg, &cfg->data);
}

/* Output size of task t known from the file alone (0: from the data). */
static int64_t file_outputs(const mtli_cnode *task)
{
    int64_t v;
    if (mtli_scalar_int(mtli_cnode_get(task, "outputs"), &v))
        return v;
    mtli_task_kind k = mtli_task_kind_of(task);
    const char *loss = mtli_task_str(mtli_cnode_get(task, "loss"), "name", "");
    if (k == MTLI_TASK_CLASSIFICATION && mtli_scalar_int(mtli_cnode_get(task, "classes"), &v))
        return v;
    if (k == MTLI_TASK_BINARY)
        return strcmp(loss, "cross_entropy") == 0 ? 2 : 1;
    return 0;
}

MTL_API mtl_status mtl_config_build_model(mtl_config *cfg, mtl_model **out)
{
    MTLI_CHECK_NULL(out, "mtl_config_build_model");
    *out = NULL;
    MTLI_CHECK_NULL(cfg, "mtl_config_build_model");
    const mtli_cnode *model = mtli_cnode_get(cfg->root, "model");
    const mtli_cnode *input = mtli_cnode_get(model, "input");
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    int need_data = input == NULL;
    for (int t = 0; t < tasks->n; t++) {
        int b = 1;
        mtli_scalar_bool(mtli_cnode_get(tasks->vals[t], "output_layer"), &b);
        if (b && file_outputs(tasks->vals[t]) == 0)
            need_data = 1;
    }
    if (need_data)
        MTLI_TRY(ensure_data(cfg));
    const mtli_cdata *d = cfg->data;
    int64_t shape[3] = {1, 1, 1};
    int ndim;
    mtl_dtype dtype;
    if (input) {
        const mtli_cnode *s = mtli_cnode_get(input, "shape");
        ndim = s->n;
        for (int i = 0; i < ndim; i++)
            mtli_scalar_int(s->vals[i], &shape[i]);
        dtype = strcmp(mtli_task_str(input, "dtype", "float32"), "int32") == 0 ? MTL_INT32
                                                                                : MTL_FLOAT32;
        if (d && (d->in_ndim != ndim || memcmp(d->in_shape, shape, (size_t)ndim * sizeof *shape) ||
                  d->in_dtype != dtype))
            return mtli_cfg_error(input, MTL_ERR_SHAPE,
                                  "model.input does not match the training data (%d dimensions, "
                                  "first %lld, %s)",
                                  d->in_ndim, (long long)d->in_shape[0],
                                  d->in_dtype == MTL_INT32 ? "int32" : "float32");
    } else {
        ndim = d->in_ndim;
        memcpy(shape, d->in_shape, sizeof shape);
        dtype = d->in_dtype;
    }
    int64_t *outputs = mtli_calloc((size_t)tasks->n, sizeof *outputs);
    if (!outputs)
        return mtli_oom("output sizes", (size_t)tasks->n * sizeof *outputs);
    for (int t = 0; t < tasks->n; t++) {
        outputs[t] = d ? d->outputs[t] : 0;
        if (!outputs[t])
            outputs[t] = file_outputs(tasks->vals[t]);
    }
    mtl_model *m;
    mtl_status st = mtli_config_make_model(cfg, &m, dtype, ndim, shape, outputs, d);
    mtli_free(outputs);
    MTLI_TRY(st);
    /* an embedding first layer sized by the id columns when num_embeddings is not given */
    const mtli_cnode *trunk = mtli_cnode_get(model, "trunk");
    if (st == MTL_OK && d && d->csv && d->in_dtype == MTL_INT32 && trunk && trunk->n &&
        strcmp(mtli_task_str(trunk->vals[0], "kind", ""), "embedding") == 0 &&
        !mtli_cnode_get(trunk->vals[0], "num_embeddings")) {
        int total = 0;
        for (int j = 0; j < mtl_encoder_num_id_columns(d->enc); j++)
            total += mtl_encoder_num_ids(d->enc, j);
        st = mtl_trunk_set_int(mtl_model_trunk(m), 0, "num_embeddings", total);
        if (st != MTL_OK)
            st = mtli_cfg_prefix(trunk->vals[0], st);
    }
    int64_t bs = 32, ebs = 32, seed = 0;
    mtl_config_get_int(cfg, "training.batch_size", &bs);
    mtl_config_get_int(cfg, "training.eval_batch_size", &ebs);
    mtl_config_get_int(cfg, "training.seed", &seed);
    if (st == MTL_OK) {
        st = mtl_model_build(m, bs > ebs ? bs : ebs, (uint64_t)seed);
        if (st != MTL_OK)
            mtli_error_prefix("%s: building the model", cfg->path);
    }
    if (st != MTL_OK) {
        mtl_model_free(m);
        return st;
    }
    *out = m;
    return MTL_OK;
}

/* Optimizer steps in one epoch, as the trainer counts them (see mtl/train.h). */
static int64_t epoch_steps(const mtl_config *cfg)
{
    const mtli_cdata *d = cfg->data;
    int64_t bs = 32, drop = 0, steps = 0;
    mtl_config_get_int(cfg, "training.batch_size", &bs);
    mtl_config_get_int(cfg, "training.drop_last", &drop);
    const char *sampler = "all";
    mtl_config_get_string(cfg, "training.sampler", &sampler);
    for (int t = 0; t < (d->multi ? d->ntasks : 1); t++) {
        const mtl_tensor *x = d->multi ? d->tx[MTLI_SPLIT_TRAIN][t] : d->x[MTLI_SPLIT_TRAIN];
        int64_t n = x ? mtl_tensor_dim(x, 0) : 0;
        int64_t b = drop ? n / bs : (n + bs - 1) / bs;
        if (!d->multi || strcmp(sampler, "all") != 0)
            steps += b;
        else if (b > steps)
            steps = b;
    }
    return steps > 0 ? steps : 1;
}

static int needs_epoch_steps(const mtli_cnode *on)
{
    const mtli_cnode *maps[2] = {on, mtli_cnode_get(on, "schedule")};
    for (int i = 0; i < 2; i++) {
        const mtli_cnode *a = mtli_cnode_get(maps[i], "schedule_interval");
        const mtli_cnode *b = mtli_cnode_get(maps[i], "total_steps");
        if ((a && !a->quoted && a->text && strcmp(a->text, "epoch") == 0) ||
            (b && !b->quoted && b->text && strcmp(b->text, "auto") == 0))
            return 1;
    }
    return 0;
}

MTL_API mtl_status mtl_config_build_optimizer(mtl_config *cfg, mtl_model *model,
                                              int64_t steps_per_epoch, mtl_optimizer **out)
{
    MTLI_CHECK_NULL(out, "mtl_config_build_optimizer");
    *out = NULL;
    MTLI_CHECK_NULL(cfg, "mtl_config_build_optimizer");
    MTLI_CHECK_NULL(model, "mtl_config_build_optimizer");
    if (steps_per_epoch < 0)
        return mtli_error(MTL_ERR_RANGE, "mtl_config_build_optimizer: steps_per_epoch %lld < 0",
                          (long long)steps_per_epoch);
    if (steps_per_epoch == 0 && needs_epoch_steps(mtli_cnode_get(cfg->root, "optimizer"))) {
        MTLI_TRY(ensure_data(cfg));
        steps_per_epoch = epoch_steps(cfg);
    }
    return mtli_config_apply_optimizer(cfg, out, model, steps_per_epoch);
}

MTL_API mtl_status mtl_config_build_weighting(const mtl_config *cfg, mtl_weighting **out)
{
    MTLI_CHECK_NULL(out, "mtl_config_build_weighting");
    *out = NULL;
    MTLI_CHECK_NULL(cfg, "mtl_config_build_weighting");
    return mtli_config_make_weighting(cfg, out);
}

/* ---- datasets and the trainer ---------------------------------------------------------- */

static int split_index(const char *split)
{
    static const char *const names[MTLI_NSPLITS] = {"train", "validation", "test"};
    for (int s = 0; s < MTLI_NSPLITS; s++)
        if (strcmp(split, names[s]) == 0)
            return s;
    return -1;
}

static mtl_status make_dataset(mtl_config *cfg, int s, int task, mtl_dataset **out)
{
    *out = NULL;
    const mtli_cdata *d = cfg->data;
    const mtl_tensor *x = task >= 0 ? d->tx[s][task] : d->x[s];
    if (!x)
        return MTL_OK;
    mtl_dataset *ds;
    MTLI_TRY(mtl_dataset_create(&ds, x, d->ntasks));
    mtl_status st = MTL_OK;
    for (int t = 0; st == MTL_OK && t < d->ntasks; t++)
        if ((task < 0 || t == task) && d->y[s][t])
            st = mtl_dataset_set_target(ds, t, d->y[s][t]);
    if (st != MTL_OK) {
        mtl_dataset_free(ds);
        return st;
    }
    cfg->data_lent = 1;
    *out = ds;
    return MTL_OK;
}

MTL_API mtl_status mtl_config_build_dataset(mtl_config *cfg, const char *split, const char *task,
                                            mtl_dataset **out)
{
    MTLI_CHECK_NULL(out, "mtl_config_build_dataset");
    *out = NULL;
    MTLI_CHECK_NULL(cfg, "mtl_config_build_dataset");
    MTLI_CHECK_NULL(split, "mtl_config_build_dataset");
    int s = split_index(split);
    if (s < 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_config_build_dataset: unknown split '%s' (expected train, "
                          "validation or test)",
                          split);
    MTLI_TRY(ensure_data(cfg));
    int t = -1;
    if (cfg->data->multi) {
        if (!task)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "mtl_config_build_dataset: the tasks have their own data; name "
                              "the task");
        const mtli_cnode *tasks = mtli_config_tasks(cfg);
        for (int i = 0; i < tasks->n; i++)
            if (strcmp(mtli_task_str(tasks->vals[i], "name", ""), task) == 0)
                t = i;
        if (t < 0)
            return mtli_error(MTL_ERR_NOT_FOUND, "mtl_config_build_dataset: no task '%s'", task);
    } else if (task) {
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_config_build_dataset: the tasks share one input (task must be "
                          "NULL, got '%s')",
                          task);
    }
    MTLI_TRY(make_dataset(cfg, s, t, out));
    if (!*out)
        return mtli_error(MTL_ERR_NOT_FOUND, "%s: no %s data%s%s", cfg->path, split,
                          task ? " for task " : "", task ? task : "");
    return MTL_OK;
}

/* A dataset the configuration keeps (for the trainer); NULL when the split is absent. */
static mtl_status kept_dataset(mtl_config *cfg, int s, int task, mtl_dataset **out)
{
    MTLI_TRY(make_dataset(cfg, s, task, out));
    if (!*out)
        return MTL_OK;
    mtl_dataset **ds = mtli_realloc(cfg->ds, (size_t)(cfg->nds + 1) * sizeof *ds);
    if (!ds) {
        mtl_dataset_free(*out);
        *out = NULL;
        return mtli_oom("dataset list", (size_t)(cfg->nds + 1) * sizeof *ds);
    }
    cfg->ds = ds;
    cfg->ds[cfg->nds++] = *out;
    return MTL_OK;
}

MTL_API mtl_status mtl_config_build_trainer(mtl_config *cfg, mtl_model *model, mtl_optimizer *opt,
                                            mtl_weighting *w, mtl_trainer **out)
{
    MTLI_CHECK_NULL(out, "mtl_config_build_trainer");
    *out = NULL;
    MTLI_CHECK_NULL(cfg, "mtl_config_build_trainer");
    MTLI_TRY(ensure_data(cfg));
    mtl_trainer *tr;
    MTLI_TRY(mtl_trainer_create(&tr, model, opt, w));
    mtl_status st = mtli_config_apply_trainer(cfg, tr);
    const mtli_cdata *d = cfg->data;
    if (st == MTL_OK && !d->multi) {
        mtl_dataset *train = NULL, *val = NULL;
        st = kept_dataset(cfg, MTLI_SPLIT_TRAIN, -1, &train);
        if (st == MTL_OK)
            st = kept_dataset(cfg, MTLI_SPLIT_VALIDATION, -1, &val);
        if (st == MTL_OK)
            st = mtl_trainer_set_data(tr, train, val);
    }
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    for (int t = 0; st == MTL_OK && d->multi && t < d->ntasks; t++) {
        mtl_dataset *train = NULL, *val = NULL;
        st = kept_dataset(cfg, MTLI_SPLIT_TRAIN, t, &train);
        if (st == MTL_OK)
            st = kept_dataset(cfg, MTLI_SPLIT_VALIDATION, t, &val);
        if (st == MTL_OK)
            st = mtl_trainer_set_task_data(tr, mtli_task_str(tasks->vals[t], "name", ""), train,
                                           val);
    }
    if (st != MTL_OK) {
        mtl_trainer_free(tr);
        return st;
    }
    *out = tr;
    return MTL_OK;
}

MTL_API mtl_status mtl_config_encode_csv(mtl_config *cfg, const char *path, mtl_tensor **out)
{
    MTLI_CHECK_NULL(out, "mtl_config_encode_csv");
    *out = NULL;
    MTLI_CHECK_NULL(cfg, "mtl_config_encode_csv");
    MTLI_CHECK_NULL(path, "mtl_config_encode_csv");
    MTLI_TRY(ensure_data(cfg));
    if (!cfg->data->csv)
        return mtli_error(MTL_ERR_STATE, "mtl_config_encode_csv: %s describes .npy data, not CSV",
                          cfg->path);
    mtl_csv *table;
    MTLI_TRY(mtli_cdata_read_csv(cfg, "test", path, &table));
    mtl_status st = mtli_cdata_encode_input(cfg->data, table, out);
    mtl_csv_free(table);
    return st;
}
