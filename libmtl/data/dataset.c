/* Datasets (inputs + per-task targets and masks, borrowed or owned), views, splits,
 * gathering, and loaders that batch a dataset into preallocated buffers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor_internal.h"
#include "data/dataset_internal.h"

/* ---- shared helpers ---------------------------------------------------------------------- */

uint64_t mtli_seed_mix(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t z = seed;
    uint64_t parts[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        z += 0x9E3779B97F4A7C15ull * (parts[i] + 1);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
    }
    return z;
}

void mtli_permutation(int64_t *perm, int64_t n, mtli_rng *rng)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mtli_rng_below(rng, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

size_t mtli_row_bytes(const mtl_tensor *t)
{
    return t->numel / (size_t)t->shape[0] * mtli_dtype_size(t->dtype);
}

void mtli_tensor_set_rows(mtl_tensor *t, int64_t rows)
{
    size_t per = t->numel / (size_t)t->shape[0];
    t->shape[0] = rows;
    t->numel = per * (size_t)rows;
}

static const char *dtype_name(int dtype) { return dtype == MTL_INT32 ? "int32" : "float32"; }

/* ---- creation ---------------------------------------------------------------------------- */

static mtl_status check_task(const mtl_dataset *ds, int task, const char *fn)
{
    MTLI_CHECK_NULL(ds, fn);
    if (task < 0 || task >= ds->ntasks)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: task slot %d is out of range (the dataset has %d)", fn, task,
                          ds->ntasks);
    return MTL_OK;
}

static mtl_status alloc_dataset(mtl_dataset **out, int ntasks, const char *fn)
{
    if (ntasks < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: num_tasks is %d, expected >= 1", fn,
                          ntasks);
    mtl_dataset *ds = mtli_calloc(1, sizeof *ds);
    if (!ds)
        return mtli_oom("dataset", sizeof *ds);
    ds->ntasks = ntasks;
    ds->targets = mtli_calloc((size_t)ntasks, sizeof *ds->targets);
    ds->masks = mtli_calloc((size_t)ntasks, sizeof *ds->masks);
    ds->own_targets = mtli_calloc((size_t)ntasks, sizeof *ds->own_targets);
    ds->own_masks = mtli_calloc((size_t)ntasks, sizeof *ds->own_masks);
    if (!ds->targets || !ds->masks || !ds->own_targets || !ds->own_masks) {
        mtl_dataset_free(ds);
        return mtli_oom("dataset task slots", (size_t)ntasks * 4 * sizeof(void *));
    }
    *out = ds;
    return MTL_OK;
}

MTL_API mtl_status mtl_dataset_create(mtl_dataset **out, const mtl_tensor *inputs, int num_tasks)
{
    const char *fn = "mtl_dataset_create";
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    MTLI_CHECK_NULL(inputs, fn);
    mtl_dataset *ds;
    MTLI_TRY(alloc_dataset(&ds, num_tasks, fn));
    ds->inputs = inputs;
    ds->rows = ds->n = inputs->shape[0];
    *out = ds;
    return MTL_OK;
}

MTL_API mtl_status mtl_dataset_adopt(mtl_dataset **out, mtl_tensor *inputs, int num_tasks)
{
    MTLI_TRY(mtl_dataset_create(out, inputs, num_tasks));
    (*out)->own_inputs = inputs;
    return MTL_OK;
}

MTL_API mtl_status mtl_dataset_create_npy(mtl_dataset **out, const char *inputs_path,
                                          int num_tasks)
{
    const char *fn = "mtl_dataset_create_npy";
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    MTLI_CHECK_NULL(inputs_path, fn);
    if (num_tasks < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: num_tasks is %d, expected >= 1", fn,
                          num_tasks);
    mtl_tensor *t;
    MTLI_TRY(mtl_npy_load(&t, inputs_path));
    mtl_status st = mtl_dataset_adopt(out, t, num_tasks);
    if (st != MTL_OK)
        mtl_tensor_free(t);
    return st;
}

/* The id transforms of enc stacked as int32 [rows, k]. */
static mtl_status stack_ids(mtl_tensor **out, const mtl_encoder *enc, const mtl_csv *table)
{
    int k = mtl_encoder_num_id_columns(enc);
    int64_t rows = mtl_csv_num_rows(table);
    *out = NULL;
    if (rows < 1)
        return mtli_error(MTL_ERR_SHAPE, "mtl_dataset_create_csv: the table has no rows");
    mtl_tensor *res;
    MTLI_TRY(mtl_tensor_create(&res, MTL_INT32, 2, (int64_t[]){rows, k}));
    int32_t *dst = res->data;
    for (int j = 0; j < k; j++) {
        mtl_tensor *col;
        mtl_status st = mtl_encoder_transform_ids(&col, enc, table, j);
        if (st != MTL_OK) {
            mtl_tensor_free(res);
            return st;
        }
        const int32_t *src = col->data;
        for (int64_t r = 0; r < rows; r++)
            dst[r * k + j] = src[r];
        mtl_tensor_free(col);
    }
    *out = res;
    return MTL_OK;
}

MTL_API mtl_status mtl_dataset_create_csv(mtl_dataset **out, const mtl_encoder *enc,
                                          const mtl_csv *table, int num_tasks)
{
    const char *fn = "mtl_dataset_create_csv";
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    MTLI_CHECK_NULL(enc, fn);
    MTLI_CHECK_NULL(table, fn);
    if (num_tasks < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: num_tasks is %d, expected >= 1", fn,
                          num_tasks);
    mtl_tensor *x = NULL;
    if (mtl_encoder_num_features(enc) > 0)
        MTLI_TRY(mtl_encoder_transform(&x, enc, table));
    else if (mtl_encoder_num_id_columns(enc) > 0)
        MTLI_TRY(stack_ids(&x, enc, table));
    else
        return mtli_error(MTL_ERR_STATE,
                          "%s: the encoder has no feature or id transform to make inputs from",
                          fn);
    mtl_status st = mtl_dataset_adopt(out, x, num_tasks);
    if (st != MTL_OK)
        mtl_tensor_free(x);
    return st;
}

MTL_API void mtl_dataset_free(mtl_dataset *ds)
{
    if (!ds)
        return;
    mtl_tensor_free(ds->own_inputs);
    for (int t = 0; t < ds->ntasks; t++) {
        if (ds->own_targets)
            mtl_tensor_free(ds->own_targets[t]);
        if (ds->own_masks)
            mtl_tensor_free(ds->own_masks[t]);
    }
    mtli_free(ds->targets);
    mtli_free(ds->masks);
    mtli_free(ds->own_targets);
    mtli_free(ds->own_masks);
    mtli_free(ds->index);
    mtli_free(ds);
}

/* ---- targets and masks ------------------------------------------------------------------- */

static mtl_status check_settable(const mtl_dataset *ds, int task, const char *fn)
{
    MTLI_TRY(check_task(ds, task, fn));
    if (ds->view)
        return mtli_error(MTL_ERR_STATE,
                          "%s: the dataset is a view (split or subset); set labels on the "
                          "dataset it was made from, before making views",
                          fn);
    return MTL_OK;
}

static mtl_status check_target(const mtl_dataset *ds, int task, const mtl_tensor *t,
                               const char *fn)
{
    if (t->shape[0] != ds->rows)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: target of task slot %d has %lld rows, the inputs have %lld", fn,
                          task, (long long)t->shape[0], (long long)ds->rows);
    return MTL_OK;
}

static mtl_status check_mask(const mtl_dataset *ds, int task, const mtl_tensor *m,
                             const char *fn)
{
    if (m->ndim > 2 || (m->ndim == 2 && m->shape[1] != 1))
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: mask of task slot %d must be [N] or [N, 1], got %d dimensions", fn,
                          task, m->ndim);
    if (m->shape[0] != ds->rows)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: mask of task slot %d has %lld rows, the inputs have %lld", fn,
                          task, (long long)m->shape[0], (long long)ds->rows);
    return MTL_OK;
}

static void replace_target(mtl_dataset *ds, int task, const mtl_tensor *t, mtl_tensor *own)
{
    if (ds->own_targets[task] && ds->own_targets[task] != own)
        mtl_tensor_free(ds->own_targets[task]);
    ds->own_targets[task] = own;
    ds->targets[task] = t;
}

static void replace_mask(mtl_dataset *ds, int task, const mtl_tensor *m, mtl_tensor *own)
{
    if (ds->own_masks[task] && ds->own_masks[task] != own)
        mtl_tensor_free(ds->own_masks[task]);
    ds->own_masks[task] = own;
    ds->masks[task] = m;
}

MTL_API mtl_status mtl_dataset_set_target(mtl_dataset *ds, int task, const mtl_tensor *target)
{
    const char *fn = "mtl_dataset_set_target";
    MTLI_TRY(check_settable(ds, task, fn));
    if (target)
        MTLI_TRY(check_target(ds, task, target, fn));
    replace_target(ds, task, target, NULL);
    return MTL_OK;
}

MTL_API mtl_status mtl_dataset_set_mask(mtl_dataset *ds, int task, const mtl_tensor *mask)
{
    const char *fn = "mtl_dataset_set_mask";
    MTLI_TRY(check_settable(ds, task, fn));
    if (mask)
        MTLI_TRY(check_mask(ds, task, mask, fn));
    replace_mask(ds, task, mask, NULL);
    return MTL_OK;
}

MTL_API mtl_status mtl_dataset_adopt_target(mtl_dataset *ds, int task, mtl_tensor *target)
{
    const char *fn = "mtl_dataset_adopt_target";
    MTLI_TRY(check_settable(ds, task, fn));
    MTLI_CHECK_NULL(target, fn);
    MTLI_TRY(check_target(ds, task, target, fn));
    replace_target(ds, task, target, target);
    return MTL_OK;
}

MTL_API mtl_status mtl_dataset_adopt_mask(mtl_dataset *ds, int task, mtl_tensor *mask)
{
    const char *fn = "mtl_dataset_adopt_mask";
    MTLI_TRY(check_settable(ds, task, fn));
    MTLI_CHECK_NULL(mask, fn);
    MTLI_TRY(check_mask(ds, task, mask, fn));
    replace_mask(ds, task, mask, mask);
    return MTL_OK;
}

static mtl_status adopt_or_free(mtl_dataset *ds, int task, mtl_tensor *t, int is_mask)
{
    mtl_status st = is_mask ? mtl_dataset_adopt_mask(ds, task, t)
                            : mtl_dataset_adopt_target(ds, task, t);
    if (st != MTL_OK)
        mtl_tensor_free(t);
    return st;
}

MTL_API mtl_status mtl_dataset_load_target_npy(mtl_dataset *ds, int task, const char *path)
{
    const char *fn = "mtl_dataset_load_target_npy";
    MTLI_TRY(check_settable(ds, task, fn));
    MTLI_CHECK_NULL(path, fn);
    mtl_tensor *t;
    MTLI_TRY(mtl_npy_load(&t, path));
    return adopt_or_free(ds, task, t, 0);
}

MTL_API mtl_status mtl_dataset_load_mask_npy(mtl_dataset *ds, int task, const char *path)
{
    const char *fn = "mtl_dataset_load_mask_npy";
    MTLI_TRY(check_settable(ds, task, fn));
    MTLI_CHECK_NULL(path, fn);
    mtl_tensor *t;
    MTLI_TRY(mtl_npy_load(&t, path));
    return adopt_or_free(ds, task, t, 1);
}

MTL_API mtl_status mtl_dataset_set_target_label(mtl_dataset *ds, int task,
                                                const mtl_encoder *enc, const mtl_csv *table,
                                                int label_index, int as_float)
{
    const char *fn = "mtl_dataset_set_target_label";
    MTLI_TRY(check_settable(ds, task, fn));
    MTLI_CHECK_NULL(enc, fn);
    MTLI_CHECK_NULL(table, fn);
    if (as_float) {
        int k = mtl_encoder_num_classes(enc, label_index);
        if (k == 0)
            return mtl_last_status();
        if (k > 2)
            return mtli_error(MTL_ERR_RANGE,
                              "%s: label %d has %d classes; a float (bce) target needs at most 2",
                              fn, label_index, k);
    }
    mtl_tensor *ids;
    MTLI_TRY(mtl_encoder_transform_label(&ids, enc, table, label_index));
    if (ids->shape[0] != ds->rows) {
        mtl_status st = mtli_error(MTL_ERR_SHAPE,
                                   "%s: the table has %lld rows, the dataset's inputs %lld", fn,
                                   (long long)ids->shape[0], (long long)ds->rows);
        mtl_tensor_free(ids);
        return st;
    }
    if (!as_float)
        return adopt_or_free(ds, task, ids, 0);
    mtl_tensor *f;
    mtl_status st = mtl_tensor_create(&f, MTL_FLOAT32, 2, (int64_t[]){ds->rows, 1});
    if (st != MTL_OK) {
        mtl_tensor_free(ids);
        return st;
    }
    const int32_t *src = ids->data;
    float *dst = f->data;
    for (int64_t i = 0; i < ds->rows; i++)
        dst[i] = src[i] < 0 ? NAN : (float)src[i];
    mtl_tensor_free(ids);
    return adopt_or_free(ds, task, f, 0);
}

MTL_API mtl_status mtl_dataset_set_target_numeric(mtl_dataset *ds, int task,
                                                  const mtl_csv *table,
                                                  const char *const *columns, int ncols)
{
    const char *fn = "mtl_dataset_set_target_numeric";
    MTLI_TRY(check_settable(ds, task, fn));
    MTLI_CHECK_NULL(table, fn);
    MTLI_CHECK_NULL(columns, fn);
    if (ncols < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: ncols is %d, expected >= 1", fn, ncols);
    int *cols = mtli_calloc((size_t)ncols, sizeof *cols);
    if (!cols)
        return mtli_oom("column indices", (size_t)ncols * sizeof *cols);
    mtl_status st = MTL_OK;
    for (int k = 0; k < ncols && st == MTL_OK; k++) {
        if (!columns[k])
            st = mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: columns[%d] is NULL", fn, k);
        else if ((st = mtl_csv_col_index(&cols[k], table, columns[k])) != MTL_OK)
            mtli_error_prefix("%s: target column '%s'", fn, columns[k]);
    }
    mtl_tensor *t = NULL;
    if (st == MTL_OK)
        st = mtl_csv_numeric(&t, table, cols, ncols, 0);
    mtli_free(cols);
    if (st != MTL_OK)
        return st;
    if (t->shape[0] != ds->rows) {
        st = mtli_error(MTL_ERR_SHAPE, "%s: the table has %lld rows, the dataset's inputs %lld",
                        fn, (long long)t->shape[0], (long long)ds->rows);
        mtl_tensor_free(t);
        return st;
    }
    return adopt_or_free(ds, task, t, 0);
}

/* ---- queries ----------------------------------------------------------------------------- */

MTL_API int64_t mtl_dataset_size(const mtl_dataset *ds)
{
    if (!ds) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_dataset_size: argument 'ds' is NULL");
        return 0;
    }
    return ds->n;
}

MTL_API int mtl_dataset_num_tasks(const mtl_dataset *ds)
{
    if (!ds) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_dataset_num_tasks: argument 'ds' is NULL");
        return 0;
    }
    return ds->ntasks;
}

MTL_API int mtl_dataset_has_target(const mtl_dataset *ds, int task)
{
    return ds && task >= 0 && task < ds->ntasks && ds->targets[task] != NULL;
}

MTL_API const mtl_tensor *mtl_dataset_inputs(const mtl_dataset *ds)
{
    if (!ds) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_dataset_inputs: argument 'ds' is NULL");
        return NULL;
    }
    return ds->inputs;
}

MTL_API const mtl_tensor *mtl_dataset_target(const mtl_dataset *ds, int task)
{
    if (check_task(ds, task, "mtl_dataset_target") != MTL_OK)
        return NULL;
    return ds->targets[task];
}

MTL_API const mtl_tensor *mtl_dataset_mask(const mtl_dataset *ds, int task)
{
    if (check_task(ds, task, "mtl_dataset_mask") != MTL_OK)
        return NULL;
    return ds->masks[task];
}

MTL_API int64_t mtl_dataset_index(const mtl_dataset *ds, int64_t i)
{
    if (!ds || i < 0 || i >= ds->n)
        return -1;
    return ds->index ? ds->index[i] : i;
}

/* ---- views ------------------------------------------------------------------------------- */

/* A view of ds over positions pos[0..n-1] (positions in ds). */
static mtl_status make_view(mtl_dataset **out, const mtl_dataset *ds, const int64_t *pos,
                            int64_t n, const char *fn)
{
    mtl_dataset *v;
    MTLI_TRY(alloc_dataset(&v, ds->ntasks, fn));
    v->index = mtli_malloc((size_t)n * sizeof *v->index);
    if (!v->index) {
        mtl_dataset_free(v);
        return mtli_oom("view indices", (size_t)n * sizeof(int64_t));
    }
    for (int64_t i = 0; i < n; i++)
        v->index[i] = ds->index ? ds->index[pos[i]] : pos[i];
    v->inputs = ds->inputs;
    memcpy(v->targets, ds->targets, (size_t)ds->ntasks * sizeof *v->targets);
    memcpy(v->masks, ds->masks, (size_t)ds->ntasks * sizeof *v->masks);
    v->n = n;
    v->rows = ds->rows;
    v->view = true;
    *out = v;
    return MTL_OK;
}

MTL_API mtl_status mtl_dataset_subset(mtl_dataset **out, const mtl_dataset *ds,
                                      const int64_t *indices, int64_t n)
{
    const char *fn = "mtl_dataset_subset";
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    MTLI_CHECK_NULL(ds, fn);
    MTLI_CHECK_NULL(indices, fn);
    if (n < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: n is %lld, expected >= 1", fn,
                          (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= ds->n)
            return mtli_error(MTL_ERR_RANGE,
                              "%s: indices[%lld] is %lld, outside the dataset's 0..%lld", fn,
                              (long long)i, (long long)indices[i], (long long)ds->n - 1);
    return make_view(out, ds, indices, n, fn);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

MTL_API mtl_status mtl_dataset_split(const mtl_dataset *ds, mtl_dataset **train,
                                     mtl_dataset **val, mtl_dataset **test,
                                     double val_fraction, double test_fraction, uint64_t seed)
{
    const char *fn = "mtl_dataset_split";
    if (train)
        *train = NULL;
    if (val)
        *val = NULL;
    if (test)
        *test = NULL;
    MTLI_CHECK_NULL(ds, fn);
    if (!(val_fraction >= 0.0 && val_fraction < 1.0) ||
        !(test_fraction >= 0.0 && test_fraction < 1.0) || val_fraction + test_fraction >= 1.0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: val_fraction %g and test_fraction %g must each be in [0, 1) and "
                          "sum to less than 1",
                          fn, val_fraction, test_fraction);
    int64_t n = ds->n;
    int64_t nval = (int64_t)llround(val_fraction * (double)n);
    int64_t ntest = (int64_t)llround(test_fraction * (double)n);
    int64_t ntrain = n - nval - ntest;
    if (ntrain < 1)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: %lld samples leave no training sample after %lld validation and "
                          "%lld test samples",
                          fn, (long long)n, (long long)nval, (long long)ntest);
    int64_t *perm = mtli_malloc((size_t)n * sizeof *perm);
    if (!perm)
        return mtli_oom("split permutation", (size_t)n * sizeof(int64_t));
    mtli_rng rng;
    mtli_rng_seed(&rng, mtli_seed_mix(seed, 0x5b117, 0));
    mtli_permutation(perm, n, &rng);
    /* parts keep the dataset's order inside them: shuffling is the loader's job */
    int64_t *pval = perm, *ptest = perm + nval, *ptrain = perm + nval + ntest;
    qsort(pval, (size_t)nval, sizeof *perm, cmp_i64);
    qsort(ptest, (size_t)ntest, sizeof *perm, cmp_i64);
    qsort(ptrain, (size_t)ntrain, sizeof *perm, cmp_i64);
    mtl_dataset *vtr = NULL, *vval = NULL, *vtest = NULL;
    mtl_status st = MTL_OK;
    if (train)
        st = make_view(&vtr, ds, ptrain, ntrain, fn);
    if (st == MTL_OK && val && nval > 0)
        st = make_view(&vval, ds, pval, nval, fn);
    if (st == MTL_OK && test && ntest > 0)
        st = make_view(&vtest, ds, ptest, ntest, fn);
    mtli_free(perm);
    if (st != MTL_OK) {
        mtl_dataset_free(vtr);
        mtl_dataset_free(vval);
        mtl_dataset_free(vtest);
        return st;
    }
    if (train)
        *train = vtr;
    if (val)
        *val = vval;
    if (test)
        *test = vtest;
    return MTL_OK;
}

/* ---- gathering --------------------------------------------------------------------------- */

static void gather_rows(void *dst, const mtl_tensor *src, const mtl_dataset *ds,
                        const int64_t *pos, int64_t n)
{
    size_t rb = mtli_row_bytes(src);
    const char *s = src->data;
    char *d = dst;
    for (int64_t i = 0; i < n; i++) {
        int64_t row = ds->index ? ds->index[pos[i]] : pos[i];
        memcpy(d + (size_t)i * rb, s + (size_t)row * rb, rb);
    }
}

static void fill_ones(mtl_tensor *m, int64_t n)
{
    if (m->dtype == MTL_INT32)
        for (int64_t i = 0; i < n; i++)
            ((int32_t *)m->data)[i] = 1;
    else
        for (int64_t i = 0; i < n; i++)
            ((float *)m->data)[i] = 1.0f;
}

/* Same dtype and sizes past the first dimension; dst holds at least n rows. */
static mtl_status check_like(const mtl_tensor *dst, const mtl_tensor *src, int64_t n,
                             const char *what, const char *fn)
{
    if (dst->dtype != src->dtype)
        return mtli_error(MTL_ERR_SHAPE, "%s: %s is %s, the dataset's is %s", fn, what,
                          dtype_name(dst->dtype), dtype_name(src->dtype));
    if (dst->ndim != src->ndim || dst->numel / (size_t)dst->shape[0] !=
                                      src->numel / (size_t)src->shape[0])
        return mtli_error(MTL_ERR_SHAPE, "%s: %s's sample shape differs from the dataset's", fn,
                          what);
    for (int d = 1; d < src->ndim; d++)
        if (dst->shape[d] != src->shape[d])
            return mtli_error(MTL_ERR_SHAPE, "%s: %s dimension %d is %lld, the dataset's %lld",
                              fn, what, d, (long long)dst->shape[d], (long long)src->shape[d]);
    if (dst->shape[0] < n)
        return mtli_error(MTL_ERR_SHAPE, "%s: %s has %lld rows, %lld samples are gathered", fn,
                          what, (long long)dst->shape[0], (long long)n);
    return MTL_OK;
}

MTL_API mtl_status mtl_dataset_gather(const mtl_dataset *ds, const int64_t *indices, int64_t n,
                                      mtl_tensor *input, mtl_tensor *const *targets,
                                      mtl_tensor *const *masks)
{
    const char *fn = "mtl_dataset_gather";
    MTLI_CHECK_NULL(ds, fn);
    MTLI_CHECK_NULL(indices, fn);
    if (n < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: n is %lld, expected >= 1", fn,
                          (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= ds->n)
            return mtli_error(MTL_ERR_RANGE,
                              "%s: indices[%lld] is %lld, outside the dataset's 0..%lld", fn,
                              (long long)i, (long long)indices[i], (long long)ds->n - 1);
    if (input)
        MTLI_TRY(check_like(input, ds->inputs, n, "input", fn));
    char what[48];
    for (int t = 0; t < ds->ntasks; t++) {
        if (targets && targets[t]) {
            snprintf(what, sizeof what, "targets[%d]", t);
            if (!ds->targets[t])
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "%s: %s is given but task slot %d has no target", fn, what, t);
            MTLI_TRY(check_like(targets[t], ds->targets[t], n, what, fn));
        }
        if (masks && masks[t]) {
            snprintf(what, sizeof what, "masks[%d]", t);
            const mtl_tensor *m = masks[t];
            if (ds->masks[t])
                MTLI_TRY(check_like(m, ds->masks[t], n, what, fn));
            else if (m->shape[0] < n || m->numel != (size_t)m->shape[0])
                return mtli_error(MTL_ERR_SHAPE, "%s: %s must be [>= %lld] with one value per "
                                                 "sample",
                                  fn, what, (long long)n);
        }
    }
    if (input)
        gather_rows(input->data, ds->inputs, ds, indices, n);
    for (int t = 0; t < ds->ntasks; t++) {
        if (targets && targets[t])
            gather_rows(targets[t]->data, ds->targets[t], ds, indices, n);
        if (masks && masks[t]) {
            if (ds->masks[t])
                gather_rows(masks[t]->data, ds->masks[t], ds, indices, n);
            else
                fill_ones(masks[t], n);
        }
    }
    return MTL_OK;
}

/* ---- loaders ----------------------------------------------------------------------------- */

static void loader_make_perm(mtl_loader *ld)
{
    if (!ld->shuffle) {
        for (int64_t i = 0; i < ld->n; i++)
            ld->perm[i] = i;
        return;
    }
    mtli_rng rng;
    mtli_rng_seed(&rng, mtli_seed_mix(ld->seed, 0x10ade7, (uint64_t)ld->pass));
    mtli_permutation(ld->perm, ld->n, &rng);
}

static mtl_status batch_like(mtl_tensor **out, const mtl_tensor *src, int64_t bs)
{
    int64_t shape[MTL_TENSOR_MAX_DIMS];
    memcpy(shape, src->shape, sizeof shape);
    shape[0] = bs;
    return mtl_tensor_create(out, src->dtype, src->ndim, shape);
}

MTL_API void mtl_loader_free(mtl_loader *ld)
{
    if (!ld)
        return;
    mtl_tensor_free(ld->input);
    for (int t = 0; ld->ds && t < ld->ds->ntasks; t++) {
        if (ld->targets)
            mtl_tensor_free(ld->targets[t]);
        if (ld->masks)
            mtl_tensor_free(ld->masks[t]);
    }
    mtli_free(ld->targets);
    mtli_free(ld->masks);
    mtli_free(ld->perm);
    mtli_free(ld);
}

MTL_API mtl_status mtl_loader_create(mtl_loader **out, const mtl_dataset *ds,
                                     int64_t batch_size, int shuffle, uint64_t seed,
                                     int drop_last)
{
    const char *fn = "mtl_loader_create";
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    MTLI_CHECK_NULL(ds, fn);
    if (batch_size < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: batch_size is %lld, expected >= 1", fn,
                          (long long)batch_size);
    if (drop_last && ds->n < batch_size)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: drop_last with %lld samples and batch_size %lld leaves no batch",
                          fn, (long long)ds->n, (long long)batch_size);
    mtl_loader *ld = mtli_calloc(1, sizeof *ld);
    if (!ld)
        return mtli_oom("loader", sizeof *ld);
    ld->ds = ds;
    ld->n = ds->n;
    ld->bs = batch_size < ds->n ? batch_size : ds->n;
    ld->shuffle = shuffle != 0;
    ld->drop_last = drop_last != 0;
    ld->seed = seed;
    ld->nbatches = drop_last ? ds->n / batch_size : (ds->n + batch_size - 1) / batch_size;
    mtl_status st = MTL_OK;
    ld->targets = mtli_calloc((size_t)ds->ntasks, sizeof *ld->targets);
    ld->masks = mtli_calloc((size_t)ds->ntasks, sizeof *ld->masks);
    if (!ld->targets || !ld->masks)
        st = mtli_oom("loader task slots", (size_t)ds->ntasks * 2 * sizeof(void *));
    if (st == MTL_OK) {
        ld->perm = mtli_malloc((size_t)ld->n * sizeof *ld->perm);
        if (!ld->perm)
            st = mtli_oom("loader permutation", (size_t)ld->n * sizeof(int64_t));
    }
    if (st == MTL_OK)
        st = batch_like(&ld->input, ds->inputs, ld->bs);
    for (int t = 0; t < ds->ntasks && st == MTL_OK; t++) {
        if (ds->targets[t])
            st = batch_like(&ld->targets[t], ds->targets[t], ld->bs);
        if (st == MTL_OK && ds->masks[t] && ds->targets[t]) /* no target: nothing to mask */
            st = batch_like(&ld->masks[t], ds->masks[t], ld->bs);
    }
    if (st != MTL_OK) {
        mtl_loader_free(ld);
        return st;
    }
    loader_make_perm(ld);
    *out = ld;
    return MTL_OK;
}

MTL_API mtl_status mtl_loader_next(mtl_loader *ld, int64_t *rows)
{
    const char *fn = "mtl_loader_next";
    MTLI_CHECK_NULL(ld, fn);
    MTLI_CHECK_NULL(rows, fn);
    if (ld->pos >= ld->nbatches) {
        ld->pass++;
        ld->pos = 0;
        ld->rows = 0;
        loader_make_perm(ld);
        *rows = 0;
        return MTL_OK;
    }
    int64_t start = ld->pos * ld->bs;
    int64_t r = ld->n - start < ld->bs ? ld->n - start : ld->bs;
    const mtl_dataset *ds = ld->ds;
    const int64_t *pos = ld->perm + start;
    gather_rows(ld->input->data, ds->inputs, ds, pos, r);
    for (int t = 0; t < ds->ntasks; t++) {
        if (ld->targets[t])
            gather_rows(ld->targets[t]->data, ds->targets[t], ds, pos, r);
        if (ld->masks[t])
            gather_rows(ld->masks[t]->data, ds->masks[t], ds, pos, r);
    }
    mtli_tensor_set_rows(ld->input, r);
    for (int t = 0; t < ds->ntasks; t++) {
        if (ld->targets[t])
            mtli_tensor_set_rows(ld->targets[t], r);
        if (ld->masks[t])
            mtli_tensor_set_rows(ld->masks[t], r);
    }
    ld->rows = r;
    ld->pos++;
    *rows = r;
    return MTL_OK;
}

MTL_API mtl_tensor *mtl_loader_input(const mtl_loader *ld)
{
    if (!ld) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_loader_input: argument 'ld' is NULL");
        return NULL;
    }
    return ld->input;
}

MTL_API const mtl_tensor *const *mtl_loader_targets(const mtl_loader *ld)
{
    if (!ld) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_loader_targets: argument 'ld' is NULL");
        return NULL;
    }
    return (const mtl_tensor *const *)ld->targets;
}

MTL_API const mtl_tensor *const *mtl_loader_masks(const mtl_loader *ld)
{
    if (!ld) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_loader_masks: argument 'ld' is NULL");
        return NULL;
    }
    return (const mtl_tensor *const *)ld->masks;
}

MTL_API int64_t mtl_loader_num_batches(const mtl_loader *ld) { return ld ? ld->nbatches : 0; }

MTL_API int64_t mtl_loader_pass(const mtl_loader *ld) { return ld ? ld->pass : -1; }

MTL_API int64_t mtl_loader_position(const mtl_loader *ld) { return ld ? ld->pos : -1; }

MTL_API mtl_status mtl_loader_seek(mtl_loader *ld, int64_t pass, int64_t position)
{
    const char *fn = "mtl_loader_seek";
    MTLI_CHECK_NULL(ld, fn);
    if (pass < 0 || position < 0 || position > ld->nbatches)
        return mtli_error(MTL_ERR_RANGE,
                          "%s: pass %lld, position %lld: expected pass >= 0 and position in "
                          "0..%lld",
                          fn, (long long)pass, (long long)position, (long long)ld->nbatches);
    ld->pass = pass;
    ld->pos = position;
    ld->rows = 0;
    loader_make_perm(ld);
    return MTL_OK;
}
