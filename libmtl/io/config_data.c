/* Loading the data a configuration names (.npy files or CSV tables) into tensors, through
 * the public data API. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "io/config_data.h"

static const char *const g_splits[MTLI_NSPLITS] = {"train", "validation", "test"};

/* ---- paths ----------------------------------------------------------------------------- */

static mtl_status join(char **out, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = mtli_malloc(la + lb + 2);
    if (!p)
        return mtli_oom("path", la + lb + 2);
    memcpy(p, a, la);
    size_t n = la;
    if (la && a[la - 1] != '/')
        p[n++] = '/';
    memcpy(p + n, b, lb + 1);
    *out = p;
    return MTL_OK;
}

mtl_status mtli_config_data_path(const mtl_config *cfg, const char *rel, char **out)
{
    *out = NULL;
    if (rel[0] == '/') {
        *out = mtli_strdup(rel);
        return *out ? MTL_OK : mtli_oom("path", strlen(rel) + 1);
    }
    const mtli_cnode *dir = mtli_cnode_get(mtli_cnode_get(cfg->root, "data"), "dir");
    if (!dir || !strcmp(dir->text, "."))
        return join(out, cfg->dir, rel);
    char *base;
    if (dir->text[0] == '/')
        base = mtli_strdup(dir->text);
    else
        MTLI_TRY(join(&base, cfg->dir, dir->text));
    if (!base)
        return mtli_oom("path", strlen(dir->text) + 1);
    mtl_status st = join(out, base, rel);
    mtli_free(base);
    return st;
}

/* ---- tensors --------------------------------------------------------------------------- */

static int64_t row_elems(const mtl_tensor *t)
{
    int64_t n = mtl_tensor_dim(t, 0);
    return n ? mtl_tensor_numel(t) / n : 0;
}

/* A new tensor holding rows idx[0..n-1] of t. */
static mtl_status gather(const mtl_tensor *t, const int64_t *idx, int64_t n, mtl_tensor **out)
{
    *out = NULL;
    if (!t)
        return MTL_OK;
    int64_t shape[4];
    int nd = mtl_tensor_ndim(t);
    MTLI_TRY(mtl_tensor_shape(t, shape, 4));
    shape[0] = n;
    mtl_tensor *r;
    MTLI_TRY(mtl_tensor_create(&r, (mtl_dtype)mtl_tensor_dtype(t), nd, shape));
    size_t row = (size_t)row_elems(t) * 4;
    const char *src = mtl_tensor_data_const(t);
    char *dst = mtl_tensor_data(r);
    for (int64_t i = 0; i < n; i++)
        memcpy(dst + (size_t)i * row, src + (size_t)idx[i] * row, row);
    *out = r;
    return MTL_OK;
}

/* int32 [N] or [N,1] or integral float32 -> int32 [N] class ids (NaN/negative -> -1). */
static mtl_status to_class_ids(mtl_tensor **t, const char *what)
{
    mtl_tensor *in = *t;
    int64_t n = mtl_tensor_dim(in, 0);
    if (mtl_tensor_numel(in) != n)
        return mtli_error(MTL_ERR_SHAPE, "%s: class labels must have one value per sample, got "
                          "%lld values for %lld samples",
                          what, (long long)mtl_tensor_numel(in), (long long)n);
    mtl_tensor *out;
    MTLI_TRY(mtl_tensor_create(&out, MTL_INT32, 1, &n));
    int32_t *o = mtl_tensor_data(out);
    if (mtl_tensor_dtype(in) == MTL_INT32) {
        const int32_t *s = mtl_tensor_data_const(in);
        for (int64_t i = 0; i < n; i++)
            o[i] = s[i] < 0 ? -1 : s[i];
    } else {
        const float *s = mtl_tensor_data_const(in);
        for (int64_t i = 0; i < n; i++) {
            if (isnan(s[i]) || s[i] < 0) {
                o[i] = -1;
            } else if (s[i] != floorf(s[i]) || s[i] > 2147483647.0f) {
                mtl_tensor_free(out);
                return mtli_error(MTL_ERR_FORMAT, "%s: sample %lld has label %g, not a class id",
                                  what, (long long)i, (double)s[i]);
            } else {
                o[i] = (int32_t)s[i];
            }
        }
    }
    mtl_tensor_free(in);
    *t = out;
    return MTL_OK;
}

/* Any labels -> float32 [N, C] (int32 -1 -> NaN). */
static mtl_status to_float_2d(mtl_tensor **t)
{
    mtl_tensor *in = *t;
    int64_t n = mtl_tensor_dim(in, 0);
    int64_t shape[2] = {n, mtl_tensor_numel(in) / n};
    mtl_tensor *out;
    MTLI_TRY(mtl_tensor_create(&out, MTL_FLOAT32, 2, shape));
    float *o = mtl_tensor_data(out);
    if (mtl_tensor_dtype(in) == MTL_INT32) {
        const int32_t *s = mtl_tensor_data_const(in);
        for (int64_t i = 0; i < shape[0] * shape[1]; i++)
            o[i] = s[i] < 0 ? NAN : (float)s[i];
    } else {
        memcpy(o, mtl_tensor_data_const(in), (size_t)(shape[0] * shape[1]) * sizeof *o);
    }
    mtl_tensor_free(in);
    *t = out;
    return MTL_OK;
}

/* ---- the handle ------------------------------------------------------------------------ */

void mtli_cdata_free(mtli_cdata *d)
{
    if (!d)
        return;
    for (int s = 0; s < MTLI_NSPLITS; s++) {
        mtl_tensor_free(d->x[s]);
        for (int t = 0; d->y[s] && t < d->ntasks; t++)
            mtl_tensor_free(d->y[s][t]);
        for (int t = 0; d->tx[s] && t < d->ntasks; t++)
            mtl_tensor_free(d->tx[s][t]);
        mtli_free(d->y[s]);
        mtli_free(d->tx[s]);
    }
    mtl_encoder_free(d->enc);
    mtli_free(d->outputs);
    mtli_free(d->classes);
    mtli_free(d->label_index);
    mtli_free(d->positive);
    mtli_free(d);
}

static mtl_status cdata_new(int ntasks, mtli_cdata **out)
{
    mtli_cdata *d = mtli_calloc(1, sizeof *d);
    if (!d)
        return mtli_oom("data", sizeof *d);
    d->ntasks = ntasks;
    d->outputs = mtli_calloc((size_t)ntasks, sizeof *d->outputs);
    d->classes = mtli_calloc((size_t)ntasks, sizeof *d->classes);
    d->label_index = mtli_calloc((size_t)ntasks, sizeof *d->label_index);
    d->positive = mtli_calloc((size_t)ntasks, sizeof *d->positive);
    int ok = d->outputs && d->classes && d->label_index && d->positive;
    for (int s = 0; ok && s < MTLI_NSPLITS; s++) {
        d->y[s] = mtli_calloc((size_t)ntasks, sizeof *d->y[s]);
        d->tx[s] = mtli_calloc((size_t)ntasks, sizeof *d->tx[s]);
        ok = d->y[s] != NULL && d->tx[s] != NULL;
    }
    if (!ok) {
        mtli_cdata_free(d);
        return mtli_oom("data", sizeof(int64_t) * (size_t)ntasks);
    }
    for (int t = 0; t < ntasks; t++)
        d->label_index[t] = -1;
    *out = d;
    return MTL_OK;
}

/* Whether task t's targets are class ids (cross_entropy). */
static int uses_class_ids(const mtli_cnode *task)
{
    const char *loss = mtli_task_str(mtli_cnode_get(task, "loss"), "name", "");
    return strcmp(loss, "cross_entropy") == 0;
}

/* ---- splits by fraction ---------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Carve the validation/test fractions named under parent (data, or a task's data) out of
 * the training rows of one source: x[split] and y[split][0..ny-1] (slots replaced in
 * place). */
static mtl_status carve(const mtl_config *cfg, const mtli_cnode *parent, mtl_tensor **x,
                        mtl_tensor **y[MTLI_NSPLITS], int ny)
{
    double frac[MTLI_NSPLITS] = {0, 0, 0};
    const mtli_cnode *fnode[MTLI_NSPLITS] = {NULL, NULL, NULL};
    for (int s = 1; s < MTLI_NSPLITS; s++) {
        fnode[s] = mtli_cnode_get(mtli_cnode_get(parent, g_splits[s]), "fraction");
        if (fnode[s])
            mtli_scalar_double(fnode[s], &frac[s]);
    }
    if ((!fnode[1] && !fnode[2]) || !x[0])
        return MTL_OK;
    int64_t n = mtl_tensor_dim(x[0], 0);
    int64_t take[MTLI_NSPLITS] = {0, 0, 0};
    for (int s = 1; s < MTLI_NSPLITS; s++)
        take[s] = (int64_t)floor(frac[s] * (double)n + 0.5);
    if (take[1] + take[2] >= n || (fnode[1] && take[1] == 0) || (fnode[2] && take[2] == 0))
        return mtli_cfg_error(fnode[1] ? fnode[1] : fnode[2], MTL_ERR_RANGE,
                              "the fractions leave %lld validation and %lld test rows of "
                              "%lld training rows; each must be at least 1 and training must "
                              "keep at least 1",
                              (long long)take[1], (long long)take[2], (long long)n);
    int64_t *perm = mtli_malloc((size_t)n * sizeof *perm);
    if (!perm)
        return mtli_oom("split permutation", (size_t)n * sizeof *perm);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    int64_t seed = 0;
    mtl_config_get_int(cfg, "training.seed", &seed);
    mtli_rng rng;
    mtli_rng_seed(&rng, (uint64_t)seed ^ 0x5b1e7c0ffee5a17ull);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mtli_rng_below(&rng, (uint64_t)i + 1);
        int64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    /* test rows first, then validation rows, then training rows (each in file order) */
    int64_t start[MTLI_NSPLITS] = {take[1] + take[2], take[2], 0};
    int64_t count[MTLI_NSPLITS] = {n - take[1] - take[2], take[1], take[2]};
    for (int s = 0; s < MTLI_NSPLITS; s++)
        qsort(perm + start[s], (size_t)count[s], sizeof *perm, cmp_i64);
    enum { MAXY = 64 };
    mtl_status st = ny > MAXY ? mtli_error(MTL_ERR_RANGE, "at most %d tasks", MAXY) : MTL_OK;
    mtl_tensor *nx[MTLI_NSPLITS] = {NULL, NULL, NULL};
    mtl_tensor *nyt[MTLI_NSPLITS][MAXY];
    memset(nyt, 0, sizeof nyt);
    for (int s = 0; st == MTL_OK && s < MTLI_NSPLITS; s++) {
        if (s && !fnode[s])
            continue;
        st = gather(x[0], perm + start[s], count[s], &nx[s]);
        for (int t = 0; st == MTL_OK && t < ny; t++)
            st = gather(y[0][t], perm + start[s], count[s], &nyt[s][t]);
    }
    mtli_free(perm);
    for (int s = 0; s < MTLI_NSPLITS; s++) {
        if (s && !fnode[s])
            continue;
        if (st != MTL_OK) {
            mtl_tensor_free(nx[s]);
            for (int t = 0; t < ny && t < MAXY; t++)
                mtl_tensor_free(nyt[s][t]);
            continue;
        }
    }
    if (st != MTL_OK)
        return st;
    /* the training split last: the others were gathered from it */
    for (int s = MTLI_NSPLITS - 1; s >= 0; s--) {
        if (s && !fnode[s])
            continue;
        mtl_tensor_free(x[s]);
        x[s] = nx[s];
        for (int t = 0; t < ny; t++) {
            mtl_tensor_free(y[s][t]);
            y[s][t] = nyt[s][t];
        }
    }
    return MTL_OK;
}

static mtl_status carve_fractions(const mtl_config *cfg, mtli_cdata *d)
{
    if (!d->multi)
        return carve(cfg, mtli_cnode_get(cfg->root, "data"), d->x, d->y, d->ntasks);
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    for (int t = 0; t < d->ntasks; t++) {
        mtl_tensor *x[MTLI_NSPLITS], **y[MTLI_NSPLITS];
        for (int s = 0; s < MTLI_NSPLITS; s++) {
            x[s] = d->tx[s][t];
            y[s] = d->y[s] + t;
        }
        mtl_status st = carve(cfg, mtli_cnode_get(tasks->vals[t], "data"), x, y, 1);
        for (int s = 0; s < MTLI_NSPLITS; s++)
            d->tx[s][t] = x[s];
        MTLI_TRY(st);
    }
    return MTL_OK;
}

/* ---- .npy files ------------------------------------------------------------------------ */

static mtl_status load_file(const mtl_config *cfg, const mtli_cnode *pathnode, mtl_tensor **out)
{
    char *path;
    MTLI_TRY(mtli_config_data_path(cfg, pathnode->text, &path));
    mtl_status st = mtl_npy_load(out, path);
    mtli_free(path);
    return st == MTL_OK ? st : mtli_cfg_prefix(pathnode, st);
}

/* One split of .npy files: the input into *xs and the labels of task only_task (a single
 * path under "labels"), or of every task named under "labels" (only_task < 0). */
static mtl_status load_npy_split(const mtl_config *cfg, mtli_cdata *d, const mtli_cnode *sp,
                                 const char *what, mtl_tensor **xs, int s, int only_task)
{
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    const mtli_cnode *input = mtli_cnode_get(sp, "input");
    if (!input)
        return MTL_OK;
    MTLI_TRY(load_file(cfg, input, xs));
    mtl_tensor *x = *xs;
    int64_t n = mtl_tensor_dim(x, 0);
    if (mtl_tensor_ndim(x) == 1) {
        int64_t sh[2] = {n, 1};
        MTLI_TRY(mtl_tensor_reshape(x, 2, sh));
    }
    int nd = mtl_tensor_ndim(x) - 1;
    int64_t shape[4];
    MTLI_TRY(mtl_tensor_shape(x, shape, 4));
    if (!d->in_ndim) {
        d->in_dtype = (mtl_dtype)mtl_tensor_dtype(x);
        d->in_ndim = nd;
        memcpy(d->in_shape, shape + 1, (size_t)nd * sizeof *shape);
    } else if (nd != d->in_ndim || memcmp(d->in_shape, shape + 1, (size_t)nd * sizeof *shape) ||
               (int)d->in_dtype != mtl_tensor_dtype(x)) {
        return mtli_cfg_error(input, MTL_ERR_SHAPE,
                              "%s.input: its samples differ in shape or dtype from those of the "
                              "first input file",
                              what);
    }
    const mtli_cnode *labels = mtli_cnode_get(sp, "labels");
    for (int t = 0; t < tasks->n; t++) {
        if (only_task >= 0 && t != only_task)
            continue;
        const mtli_cnode *task = tasks->vals[t];
        const char *name = mtli_task_str(task, "name", "");
        const mtli_cnode *lf = only_task >= 0 ? labels : mtli_cnode_get(labels, name);
        if (!lf)
            continue;
        mtl_tensor **y = &d->y[s][t];
        MTLI_TRY(load_file(cfg, lf, y));
        if (mtl_tensor_dim(*y, 0) != n)
            return mtli_cfg_error(lf, MTL_ERR_SHAPE, "%s: labels of task '%s' have %lld rows, the "
                                  "input has %lld",
                                  what, name, (long long)mtl_tensor_dim(*y, 0), (long long)n);
        char where[300];
        mtli_cnode_where(lf, where, sizeof where);
        MTLI_TRY(uses_class_ids(task) ? to_class_ids(y, where) : to_float_2d(y));
    }
    return MTL_OK;
}

static mtl_status load_npy(const mtl_config *cfg, mtli_cdata *d)
{
    const mtli_cnode *data = mtli_cnode_get(cfg->root, "data");
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    char what[300];
    for (int s = 0; s < MTLI_NSPLITS; s++) {
        if (!d->multi) {
            snprintf(what, sizeof what, "data.%s", g_splits[s]);
            MTLI_TRY(load_npy_split(cfg, d, mtli_cnode_get(data, g_splits[s]), what, &d->x[s], s, -1));
            continue;
        }
        for (int t = 0; t < tasks->n; t++) {
            const mtli_cnode *sp = mtli_cnode_get(mtli_cnode_get(tasks->vals[t], "data"), g_splits[s]);
            snprintf(what, sizeof what, "tasks.%s.data.%s", mtli_task_str(tasks->vals[t], "name", ""),
                     g_splits[s]);
            MTLI_TRY(load_npy_split(cfg, d, sp, what, &d->tx[s][t], s, t));
        }
    }
    return MTL_OK;
}

/* ---- CSV tables ------------------------------------------------------------------------ */

static mtl_status csv_opt(mtl_csv_options *o, const char *key, const mtli_cnode *v)
{
    mtl_status st;
    int64_t i;
    int b;
    if (strcmp(key, "na_values") == 0 && v->kind == MTLI_CN_SEQ) {
        mtli_sbuf buf = {0};
        for (int k = 0; k < v->n; k++)
            mtli_sbuf_add(&buf, "%s%s", k ? "," : "", v->vals[k]->text);
        if (buf.oom) {
            mtli_free(buf.p);
            return mtli_oom("na_values", buf.len);
        }
        st = mtl_csv_options_set_string(o, key, buf.p ? buf.p : "");
        mtli_free(buf.p);
    } else if (mtli_scalar_bool(v, &b)) {
        st = mtl_csv_options_set_int(o, key, b);
    } else if (mtli_scalar_int(v, &i) && strcmp(key, "delimiter") && strcmp(key, "comment") &&
               strcmp(key, "strip_suffix") && strcmp(key, "na_values")) {
        st = mtl_csv_options_set_int(o, key, i);
    } else {
        st = mtl_csv_options_set_string(o, key, v->text);
    }
    return st == MTL_OK ? st : mtli_cfg_prefix(v, st);
}

static const char *const g_csv_keys[] = {"header", "delimiter", "na_values", "skip_rows",
                                         "comment", "trim", "strip_suffix", NULL};

mtl_status mtli_cdata_read_csv(const mtl_config *cfg, const char *split, const char *path,
                               mtl_csv **out)
{
    *out = NULL;
    const mtli_cnode *data = mtli_cnode_get(cfg->root, "data");
    const mtli_cnode *csv = mtli_cnode_get(data, "csv");
    const mtli_cnode *sp = split ? mtli_cnode_get(data, split) : NULL;
    const mtli_cnode *file = mtli_cnode_get(sp, "file");
    mtl_csv_options *o;
    MTLI_TRY(mtl_csv_options_create(&o));
    mtl_status st = MTL_OK;
    for (const char *const *k = g_csv_keys; st == MTL_OK && *k; k++) {
        const mtli_cnode *v = mtli_cnode_get(sp, *k);
        if (!v)
            v = mtli_cnode_get(csv, *k);
        if (v)
            st = csv_opt(o, *k, v);
    }
    char *full = NULL;
    if (st == MTL_OK) {
        if (path)
            full = mtli_strdup(path), st = full ? MTL_OK : mtli_oom("path", strlen(path) + 1);
        else if (file)
            st = mtli_config_data_path(cfg, file->text, &full);
        else
            st = mtli_error(MTL_ERR_NOT_FOUND, "data.%s: no CSV file", split ? split : "?");
    }
    if (st == MTL_OK) {
        st = mtl_csv_read(out, full, o);
        if (st != MTL_OK && file && !path)
            mtli_cfg_prefix(file, st);
    }
    mtli_free(full);
    mtl_csv_options_free(o);
    return st;
}

/* Index of a column by its configured name (data.columns) or header name. */
static mtl_status column(const mtl_config *cfg, const mtl_csv *table, const mtli_cnode *name,
                         int *idx)
{
    const mtli_cnode *cols = mtli_cnode_get(mtli_cnode_get(cfg->root, "data"), "columns");
    if (cols) {
        for (int i = 0; i < cols->n; i++)
            if (strcmp(cols->vals[i]->text, name->text) == 0) {
                if (i >= mtl_csv_num_cols(table))
                    return mtli_cfg_error(name, MTL_ERR_SHAPE,
                                          "column '%s' is number %d of data.columns, but the "
                                          "table has %d columns",
                                          name->text, i + 1, mtl_csv_num_cols(table));
                *idx = i;
                return MTL_OK;
            }
        return mtli_cfg_error(name, MTL_ERR_NOT_FOUND, "no column '%s' in data.columns",
                              name->text);
    }
    mtl_status st = mtl_csv_col_index(idx, table, name->text);
    return st == MTL_OK ? st : mtli_cfg_prefix(name, st);
}

/* The label columns of a task: tasks.*.label, or the task's name. */
static int label_count(const mtli_cnode *task)
{
    const mtli_cnode *l = mtli_cnode_get(task, "label");
    return !l ? 1 : l->kind == MTLI_CN_SEQ ? l->n : 1;
}

static const mtli_cnode *label_at(const mtli_cnode *task, int i)
{
    const mtli_cnode *l = mtli_cnode_get(task, "label");
    if (!l)
        return mtli_cnode_get(task, "name");
    return l->kind == MTLI_CN_SEQ ? l->vals[i] : l;
}

static int is_class_task(const mtli_cnode *task)
{
    mtli_task_kind k = mtli_task_kind_of(task);
    return k == MTLI_TASK_CLASSIFICATION || k == MTLI_TASK_BINARY;
}

/* Fit the encoder on the training table. */
static mtl_status fit_encoder(const mtl_config *cfg, mtli_cdata *d, const mtl_csv *table)
{
    const mtli_cnode *data = mtli_cnode_get(cfg->root, "data");
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    const mtli_cnode *feats = mtli_cnode_get(data, "features");
    int std_all = 1;
    mtli_scalar_bool(mtli_cnode_get(data, "standardize"), &std_all);
    MTLI_TRY(mtl_encoder_create(&d->enc));
    int ncols = mtl_csv_num_cols(table);
    unsigned char *is_label = mtli_calloc((size_t)ncols + 1, 1);
    if (!is_label)
        return mtli_oom("label columns", (size_t)ncols);
    mtl_status st = MTL_OK;
    /* labels */
    for (int t = 0; st == MTL_OK && t < tasks->n; t++) {
        const mtli_cnode *task = tasks->vals[t];
        const char *name = mtli_task_str(task, "name", "");
        int nl = label_count(task);
        if (is_class_task(task) && nl != 1) {
            st = mtli_cfg_error(mtli_cnode_get(task, "label"), MTL_ERR_INVALID_ARGUMENT,
                                "tasks.%s.label: a %s task reads one label column, got %d", name,
                                mtli_task_str(task, "kind", ""), nl);
            break;
        }
        for (int i = 0; st == MTL_OK && i < nl; i++) {
            int c;
            st = column(cfg, table, label_at(task, i), &c);
            if (st == MTL_OK)
                is_label[c] = 1;
        }
        if (st != MTL_OK || !is_class_task(task))
            continue;
        int c;
        column(cfg, table, label_at(task, 0), &c);
        st = mtl_encoder_add_label(d->enc, table, mtl_csv_col_name(table, c));
        if (st != MTL_OK) {
            st = mtli_cfg_prefix(label_at(task, 0), st);
            break;
        }
        int li = mtl_encoder_num_labels(d->enc) - 1;
        int k = mtl_encoder_num_classes(d->enc, li);
        d->label_index[t] = li;
        d->classes[t] = k;
        if (mtli_task_kind_of(task) == MTLI_TASK_BINARY) {
            const mtli_cnode *pos = mtli_cnode_get(task, "positive");
            if (pos) {
                d->positive[t] = -1;
                for (int j = 0; j < k; j++)
                    if (strcmp(mtl_encoder_class_name(d->enc, li, j), pos->text) == 0)
                        d->positive[t] = j;
                if (d->positive[t] < 0)
                    st = mtli_cfg_error(pos, MTL_ERR_NOT_FOUND,
                                        "tasks.%s.positive: no label '%s' in the training data",
                                        name, pos->text);
            } else if (k != 2) {
                st = mtli_cfg_error(label_at(task, 0), MTL_ERR_INVALID_ARGUMENT,
                                    "tasks.%s: a binary task needs 2 classes, the label column "
                                    "has %d (name the class that counts as 1 with 'positive')",
                                    name, k);
            } else {
                d->positive[t] = 1;
            }
            d->classes[t] = 2; /* the labels become 0/1 */
        }
    }
    /* features: as listed, or every column that is not a label */
    for (int i = 0; st == MTL_OK && i < (feats ? feats->n : ncols); i++) {
        int c = i;
        const mtli_cnode *f = feats ? feats->vals[i] : NULL;
        const mtli_cnode *where = f ? mtli_cnode_get(f, "column") : data;
        if (f)
            st = column(cfg, table, where, &c);
        else if (is_label[c])
            continue;
        if (st != MTL_OK)
            break;
        const char *col = mtl_csv_col_name(table, c);
        const char *enc = f ? mtli_task_str(f, "encode", "auto") : "auto";
        int standardize = std_all;
        if (f)
            mtli_scalar_bool(mtli_cnode_get(f, "standardize"), &standardize);
        if (strcmp(enc, "auto") == 0)
            enc = mtl_csv_col_is_numeric(table, c) == 1 ? "numeric" : "onehot";
        if (strcmp(enc, "numeric") == 0)
            st = mtl_encoder_add_numeric(d->enc, table, col, standardize);
        else if (strcmp(enc, "onehot") == 0)
            st = mtl_encoder_add_onehot(d->enc, table, col);
        else
            st = mtl_encoder_add_ids(d->enc, table, col);
        if (st != MTL_OK)
            st = mtli_cfg_prefix(where, st);
    }
    mtli_free(is_label);
    if (st == MTL_OK && mtl_encoder_num_features(d->enc) + mtl_encoder_num_id_columns(d->enc) == 0)
        st = mtli_cfg_error(data, MTL_ERR_NOT_FOUND, "data: no feature columns (every column is a label)");
    return st;
}

mtl_status mtli_cdata_encode_input(const mtli_cdata *d, const mtl_csv *table, mtl_tensor **out)
{
    *out = NULL;
    int64_t n = mtl_csv_num_rows(table);
    int nid = mtl_encoder_num_id_columns(d->enc);
    if (!nid)
        return mtl_encoder_transform(out, d->enc, table);
    /* id columns side by side, each shifted past the ids of the columns before it, so one
     * embedding table serves them all */
    int64_t shape[2] = {n, nid};
    mtl_tensor *x;
    MTLI_TRY(mtl_tensor_create(&x, MTL_INT32, 2, shape));
    int32_t *xv = mtl_tensor_data(x);
    int32_t offset = 0;
    for (int j = 0; j < nid; j++) {
        mtl_tensor *ids;
        mtl_status st = mtl_encoder_transform_ids(&ids, d->enc, table, j);
        if (st != MTL_OK) {
            mtl_tensor_free(x);
            return st;
        }
        const int32_t *v = mtl_tensor_data_const(ids);
        for (int64_t i = 0; i < n; i++)
            xv[i * nid + j] = v[i] + offset;
        offset += mtl_encoder_num_ids(d->enc, j);
        mtl_tensor_free(ids);
    }
    *out = x;
    return MTL_OK;
}

/* Encode one table: the input tensor and the targets of every task. */
static mtl_status encode_table(const mtl_config *cfg, mtli_cdata *d, const mtl_csv *table,
                               int s, const mtli_cnode *where)
{
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    int64_t n = mtl_csv_num_rows(table);
    mtl_status st = mtli_cdata_encode_input(d, table, &d->x[s]);
    if (st != MTL_OK)
        return mtli_cfg_prefix(where, st);
    for (int t = 0; t < tasks->n; t++) {
        const mtli_cnode *task = tasks->vals[t];
        mtl_tensor **y = &d->y[s][t];
        if (d->label_index[t] < 0) {
            int nl = label_count(task);
            int cols[64];
            if (nl > 64)
                return mtli_cfg_error(mtli_cnode_get(task, "label"), MTL_ERR_RANGE,
                                      "at most 64 label columns per task");
            for (int i = 0; i < nl; i++)
                MTLI_TRY(column(cfg, table, label_at(task, i), &cols[i]));
            st = mtl_csv_numeric(y, table, cols, nl, 0);
            if (st != MTL_OK)
                return mtli_cfg_prefix(label_at(task, 0), st);
            continue;
        }
        st = mtl_encoder_transform_label(y, d->enc, table, d->label_index[t]);
        if (st != MTL_OK)
            return mtli_cfg_prefix(where, st);
        if (mtli_task_kind_of(task) != MTLI_TASK_BINARY)
            continue;
        int32_t *ids = mtl_tensor_data(*y);
        int p = d->positive[t];
        if (uses_class_ids(task)) {
            for (int64_t i = 0; i < n; i++)
                ids[i] = ids[i] < 0 ? -1 : ids[i] == p;
        } else {
            int64_t shape[2] = {n, 1};
            mtl_tensor *f;
            st = mtl_tensor_create(&f, MTL_FLOAT32, 2, shape);
            if (st != MTL_OK)
                return st;
            float *v = mtl_tensor_data(f);
            for (int64_t i = 0; i < n; i++)
                v[i] = ids[i] < 0 ? NAN : (float)(ids[i] == p);
            mtl_tensor_free(*y);
            *y = f;
        }
    }
    return MTL_OK;
}

static mtl_status load_csv(const mtl_config *cfg, mtli_cdata *d)
{
    const mtli_cnode *data = mtli_cnode_get(cfg->root, "data");
    d->csv = 1;
    mtl_csv *table;
    MTLI_TRY(mtli_cdata_read_csv(cfg, "train", NULL, &table));
    const mtli_cnode *where = mtli_cnode_get(mtli_cnode_get(data, "train"), "file");
    mtl_status st = fit_encoder(cfg, d, table);
    if (st == MTL_OK)
        st = encode_table(cfg, d, table, 0, where);
    mtl_csv_free(table);
    for (int s = 1; st == MTL_OK && s < MTLI_NSPLITS; s++) {
        const mtli_cnode *file = mtli_cnode_get(mtli_cnode_get(data, g_splits[s]), "file");
        if (!file)
            continue;
        st = mtli_cdata_read_csv(cfg, g_splits[s], NULL, &table);
        if (st == MTL_OK) {
            st = encode_table(cfg, d, table, s, file);
            mtl_csv_free(table);
        }
    }
    if (st != MTL_OK)
        return st;
    int nid = mtl_encoder_num_id_columns(d->enc);
    d->in_dtype = nid ? MTL_INT32 : MTL_FLOAT32;
    d->in_ndim = 1;
    d->in_shape[0] = nid ? nid : mtl_encoder_num_features(d->enc);
    return MTL_OK;
}

/* ---- output sizes ---------------------------------------------------------------------- */

static mtl_status derive_outputs(const mtl_config *cfg, mtli_cdata *d)
{
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    for (int t = 0; t < tasks->n; t++) {
        const mtli_cnode *task = tasks->vals[t];
        const char *name = mtli_task_str(task, "name", "");
        mtli_task_kind kind = mtli_task_kind_of(task);
        const mtli_cnode *classes = mtli_cnode_get(task, "classes");
        const mtli_cnode *outputs = mtli_cnode_get(task, "outputs");
        int64_t cols = d->y[0][t] ? row_elems(d->y[0][t]) : 0;
        if (!d->y[0][t])
            return mtli_cfg_error(task, MTL_ERR_NOT_FOUND, "tasks.%s: no training labels", name);
        if (uses_class_ids(task)) {
            /* class count: given, or the largest id seen in any split + 1 */
            int64_t k = d->classes[t];
            if (!d->csv) {
                for (int s = 0; s < MTLI_NSPLITS; s++) {
                    const mtl_tensor *y = d->y[s][t];
                    if (!y)
                        continue;
                    const int32_t *v = mtl_tensor_data_const(y);
                    for (int64_t i = 0; i < mtl_tensor_numel(y); i++)
                        if (v[i] + 1 > k)
                            k = v[i] + 1;
                }
            }
            if (kind == MTLI_TASK_BINARY)
                k = k > 2 ? k : 2;
            if (classes) {
                int64_t given;
                mtli_scalar_int(classes, &given);
                if (k > given)
                    return mtli_cfg_error(classes, MTL_ERR_RANGE,
                                          "tasks.%s.classes = %lld, but the labels hold %lld "
                                          "classes",
                                          name, (long long)given, (long long)k);
                k = given;
            }
            if (kind == MTLI_TASK_BINARY && k != 2)
                return mtli_cfg_error(task, MTL_ERR_RANGE,
                                      "tasks.%s: binary labels must be 0 or 1 (found class %lld)",
                                      name, (long long)k - 1);
            if (k < 2)
                return mtli_cfg_error(task, MTL_ERR_RANGE,
                                      "tasks.%s: the labels hold fewer than 2 classes", name);
            d->classes[t] = k;
            d->outputs[t] = k;
        } else if (kind == MTLI_TASK_BINARY) {
            d->outputs[t] = 1;
            if (cols != 1)
                return mtli_cfg_error(task, MTL_ERR_SHAPE,
                                      "tasks.%s: binary labels have %lld columns, expected 1", name,
                                      (long long)cols);
        } else {
            d->outputs[t] = cols;
        }
        if (outputs) {
            int64_t given;
            mtli_scalar_int(outputs, &given);
            if (d->outputs[t] && given != d->outputs[t])
                return mtli_cfg_error(outputs, MTL_ERR_SHAPE,
                                      "tasks.%s.outputs = %lld, but the labels need %lld", name,
                                      (long long)given, (long long)d->outputs[t]);
            d->outputs[t] = given;
        }
    }
    return MTL_OK;
}

mtl_status mtli_cdata_load(const mtl_config *cfg, mtli_cdata **out)
{
    *out = NULL;
    const mtli_cnode *data = mtli_cnode_get(cfg->root, "data");
    const mtli_cnode *train = mtli_cnode_get(data, "train");
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    int multi = mtli_cnode_get(tasks->vals[0], "data") != NULL;
    if (!train && !multi)
        return mtli_error(MTL_ERR_NOT_FOUND, "%s: no training data (data.train is not set)",
                          cfg->path);
    mtli_cdata *d = NULL;
    MTLI_TRY(cdata_new(tasks->n, &d));
    d->multi = multi;
    mtl_status st = !multi && mtli_cnode_get(train, "file") ? load_csv(cfg, d) : load_npy(cfg, d);
    if (st == MTL_OK)
        st = carve_fractions(cfg, d);
    if (st == MTL_OK)
        st = derive_outputs(cfg, d);
    if (st != MTL_OK) {
        mtli_cdata_free(d);
        return st;
    }
    *out = d;
    return MTL_OK;
}

mtl_status mtli_cdata_balanced_weights(const mtli_cdata *d, int task, float **w, int64_t *n)
{
    *w = NULL;
    *n = 0;
    const mtl_tensor *y = d->y[0][task];
    int64_t k = d->classes[task];
    if (!y || k < 2 || mtl_tensor_dtype(y) != MTL_INT32)
        return MTL_OK;
    int64_t *count = mtli_calloc((size_t)k, sizeof *count);
    float *out = mtli_malloc((size_t)k * sizeof *out);
    if (!count || !out) {
        mtli_free(count);
        mtli_free(out);
        return mtli_oom("class weights", (size_t)k * sizeof *out);
    }
    const int32_t *v = mtl_tensor_data_const(y);
    int64_t total = 0;
    for (int64_t i = 0; i < mtl_tensor_numel(y); i++)
        if (v[i] >= 0 && v[i] < k) {
            count[v[i]]++;
            total++;
        }
    for (int64_t c = 0; c < k; c++)
        out[c] = count[c] ? (float)((double)total / ((double)k * (double)count[c])) : 0.0f;
    mtli_free(count);
    *w = out;
    *n = k;
    return MTL_OK;
}
