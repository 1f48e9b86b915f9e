/* Datasets, views, splits, gathering, loaders and task samplers: borrowed and owned tensors,
 * npy and CSV sources, disjoint covering splits, partial last batches, seeded shuffling that
 * replays, no allocation per batch, and the samplers' empirical task frequencies. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <mtl/mtl.h>

#include "data/sampler.h"
#include "test_main.h"
#include "test_oom.h"

#define ck_msg_has(sub)                                                                     \
    ck_assert_msg(strstr(mtl_last_error(), (sub)) != NULL, "message '%s' lacks '%s'",        \
                  mtl_last_error(), (sub))

static char tmpdir[256];

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/mtl_ds_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

static const char *tpath(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

/* inputs x[i] = (i, 100 + i, 200 + i): every row names its sample */
static mtl_tensor *rows_tensor(int64_t n)
{
    mtl_tensor *x = NULL;
    ck_assert_ok(mtl_tensor_create(&x, MTL_FLOAT32, 2, (int64_t[]){n, 3}));
    float *d = mtl_tensor_data(x);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < 3; j++)
            d[i * 3 + j] = (float)(100 * j + i);
    return x;
}

static mtl_tensor *ids_tensor(int64_t n, int32_t offset)
{
    mtl_tensor *y = NULL;
    ck_assert_ok(mtl_tensor_create(&y, MTL_INT32, 1, (int64_t[]){n}));
    for (int64_t i = 0; i < n; i++)
        ((int32_t *)mtl_tensor_data(y))[i] = (int32_t)i + offset;
    return y;
}

/* ---- creation, ownership, targets -------------------------------------------------------- */

START_TEST(create_borrows_and_validates)
{
    mtl_tensor *x = rows_tensor(10), *y = ids_tensor(10, 0), *bad = ids_tensor(9, 0);
    mtl_dataset *ds = NULL;
    ck_assert_ok(mtl_dataset_create(&ds, x, 2));
    ck_assert_int_eq(mtl_dataset_size(ds), 10);
    ck_assert_int_eq(mtl_dataset_num_tasks(ds), 2);
    ck_assert_int_eq(mtl_dataset_has_target(ds, 0), 0);
    ck_assert_ok(mtl_dataset_set_target(ds, 1, y));
    ck_assert_int_eq(mtl_dataset_has_target(ds, 1), 1);
    ck_assert_ptr_eq(mtl_dataset_target(ds, 1), y); /* zero-copy */
    ck_assert_ptr_eq(mtl_dataset_inputs(ds), x);
    ck_assert_status(mtl_dataset_set_target(ds, 0, bad), MTL_ERR_SHAPE);
    ck_msg_has("target of task slot 0 has 9 rows, the inputs have 10");
    ck_assert_status(mtl_dataset_set_target(ds, 2, y), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("task slot 2 is out of range (the dataset has 2)");
    ck_assert_status(mtl_dataset_set_mask(ds, 0, x), MTL_ERR_SHAPE);
    ck_msg_has("must be [N] or [N, 1]");
    ck_assert_ok(mtl_dataset_set_target(ds, 1, NULL)); /* clears */
    ck_assert_int_eq(mtl_dataset_has_target(ds, 1), 0);
    mtl_dataset_free(ds);
    /* the borrowed tensors are still the caller's */
    ck_assert_float_eq(((float *)mtl_tensor_data(x))[3], 1.0f);

    ck_assert_status(mtl_dataset_create(&ds, NULL, 1), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(ds);
    ck_assert_status(mtl_dataset_create(&ds, x, 0), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("num_tasks is 0");
    ck_assert_int_eq(mtl_dataset_size(NULL), 0);
    mtl_dataset_free(NULL);
    mtl_tensor_free(x);
    mtl_tensor_free(y);
    mtl_tensor_free(bad);
}
END_TEST

START_TEST(adopted_tensors_are_freed_with_the_dataset)
{
    /* under the address sanitizer a leak or a double free here fails the suite */
    mtl_tensor *x = rows_tensor(6), *y = ids_tensor(6, 0), *y2 = ids_tensor(6, 1);
    mtl_tensor *m = NULL;
    ck_assert_ok(mtl_tensor_create(&m, MTL_FLOAT32, 1, (int64_t[]){6}));
    mtl_dataset *ds = NULL;
    ck_assert_ok(mtl_dataset_adopt(&ds, x, 1));
    ck_assert_ok(mtl_dataset_adopt_target(ds, 0, y));
    ck_assert_ok(mtl_dataset_adopt_target(ds, 0, y2)); /* replaces and frees y */
    ck_assert_ok(mtl_dataset_adopt_mask(ds, 0, m));
    ck_assert_ptr_eq(mtl_dataset_target(ds, 0), y2);
    mtl_tensor *wrong = ids_tensor(5, 0);
    ck_assert_status(mtl_dataset_adopt_target(ds, 0, wrong), MTL_ERR_SHAPE);
    mtl_tensor_free(wrong); /* a failed adopt leaves it with the caller */
    mtl_dataset_free(ds);
}
END_TEST

START_TEST(npy_sources)
{
    make_tmpdir();
    mtl_tensor *x = rows_tensor(7), *y = ids_tensor(7, 3);
    ck_assert_ok(mtl_npy_save(x, tpath("x.npy")));
    ck_assert_ok(mtl_npy_save(y, tpath("y.npy")));
    mtl_dataset *ds = NULL;
    ck_assert_ok(mtl_dataset_create_npy(&ds, tpath("x.npy"), 2));
    ck_assert_int_eq(mtl_dataset_size(ds), 7);
    ck_assert_ok(mtl_dataset_load_target_npy(ds, 1, tpath("y.npy")));
    ck_assert_int_eq(((const int32_t *)mtl_tensor_data_const(mtl_dataset_target(ds, 1)))[6], 9);
    ck_assert_ok(mtl_dataset_load_mask_npy(ds, 1, tpath("y.npy")));
    ck_assert_status(mtl_dataset_load_target_npy(ds, 0, tpath("missing.npy")), MTL_ERR_IO);
    ck_msg_has("missing.npy");
    ck_assert_int_eq(mtl_dataset_has_target(ds, 0), 0);
    mtl_dataset_free(ds);
    ck_assert_status(mtl_dataset_create_npy(&ds, tpath("nope.npy"), 1), MTL_ERR_IO);
    ck_assert_ptr_null(ds);
    mtl_tensor_free(x);
    mtl_tensor_free(y);
    remove_tmpdir();
}
END_TEST

START_TEST(csv_source_with_encoder)
{
    make_tmpdir();
    FILE *f = fopen(tpath("t.csv"), "wb");
    ck_assert_ptr_nonnull(f);
    fputs("age,color,kind,size,score\n"
          "30,red,a,s,1.5\n"
          "40,blue,b,m,?\n"
          "50,red,?,l,2.5\n"
          "20,green,a,s,0.5\n",
          f);
    fclose(f);
    mtl_csv *t = NULL;
    ck_assert_ok(mtl_csv_read(&t, tpath("t.csv"), NULL));
    mtl_encoder *e = NULL;
    ck_assert_ok(mtl_encoder_create(&e));
    ck_assert_ok(mtl_encoder_add_numeric(e, t, "age", 0));
    ck_assert_ok(mtl_encoder_add_onehot(e, t, "color"));
    ck_assert_ok(mtl_encoder_add_label(e, t, "kind"));
    ck_assert_ok(mtl_encoder_add_label(e, t, "size"));
    mtl_dataset *ds = NULL;
    ck_assert_ok(mtl_dataset_create_csv(&ds, e, t, 3));
    const mtl_tensor *x = mtl_dataset_inputs(ds);
    ck_assert_int_eq(mtl_tensor_dim(x, 0), 4);
    ck_assert_int_eq(mtl_tensor_dim(x, 1), 4); /* age + 3 colors */
    ck_assert_float_eq(((const float *)mtl_tensor_data_const(x))[4], 40.0f);
    /* int ids for cross_entropy, float 0/1 with NaN for bce */
    ck_assert_ok(mtl_dataset_set_target_label(ds, 0, e, t, 0, 0));
    const int32_t *k = mtl_tensor_data_const(mtl_dataset_target(ds, 0));
    ck_assert_int_eq(k[0], 0);
    ck_assert_int_eq(k[1], 1);
    ck_assert_int_eq(k[2], -1);
    ck_assert_ok(mtl_dataset_set_target_label(ds, 1, e, t, 0, 1));
    const mtl_tensor *kf = mtl_dataset_target(ds, 1);
    ck_assert_int_eq(mtl_tensor_dtype(kf), MTL_FLOAT32);
    ck_assert_int_eq(mtl_tensor_dim(kf, 1), 1);
    ck_assert_float_eq(((const float *)mtl_tensor_data_const(kf))[1], 1.0f);
    ck_assert(isnan(((const float *)mtl_tensor_data_const(kf))[2]));
    ck_assert_status(mtl_dataset_set_target_label(ds, 1, e, t, 1, 1), MTL_ERR_RANGE);
    ck_msg_has("label 1 has 3 classes");
    /* a regression target from numeric columns */
    const char *cols[1] = {"score"};
    ck_assert_ok(mtl_dataset_set_target_numeric(ds, 2, t, cols, 1));
    const float *sc = mtl_tensor_data_const(mtl_dataset_target(ds, 2));
    ck_assert_float_eq(sc[0], 1.5f);
    ck_assert(isnan(sc[1]));
    const char *nocol[1] = {"height"};
    ck_assert_status(mtl_dataset_set_target_numeric(ds, 2, t, nocol, 1), MTL_ERR_NOT_FOUND);
    ck_msg_has("target column 'height'");
    const char *textcol[1] = {"color"};
    ck_assert_status(mtl_dataset_set_target_numeric(ds, 2, t, textcol, 1), MTL_ERR_FORMAT);
    mtl_dataset_free(ds);

    /* an encoder with only id transforms makes int32 inputs for an embedding */
    mtl_encoder *ei = NULL;
    ck_assert_ok(mtl_encoder_create(&ei));
    ck_assert_ok(mtl_encoder_add_ids(ei, t, "color"));
    ck_assert_ok(mtl_encoder_add_ids(ei, t, "size"));
    ck_assert_ok(mtl_dataset_create_csv(&ds, ei, t, 1));
    x = mtl_dataset_inputs(ds);
    ck_assert_int_eq(mtl_tensor_dtype(x), MTL_INT32);
    ck_assert_int_eq(mtl_tensor_dim(x, 1), 2);
    const int32_t *xi = mtl_tensor_data_const(x);
    ck_assert_int_eq(xi[0], 3); /* red: blue 1, green 2, red 3 */
    ck_assert_int_eq(xi[1], 3); /* s: l 1, m 2, s 3 */
    mtl_dataset_free(ds);
    mtl_encoder *empty = NULL;
    ck_assert_ok(mtl_encoder_create(&empty));
    ck_assert_status(mtl_dataset_create_csv(&ds, empty, t, 1), MTL_ERR_STATE);
    ck_msg_has("no feature or id transform");
    mtl_encoder_free(empty);
    mtl_encoder_free(ei);
    mtl_encoder_free(e);
    mtl_csv_free(t);
    remove_tmpdir();
}
END_TEST

/* ---- splits and views -------------------------------------------------------------------- */

START_TEST(splits_are_disjoint_covering_and_seeded)
{
    const int64_t N = 103;
    mtl_tensor *x = rows_tensor(N), *y = ids_tensor(N, 0);
    mtl_dataset *ds = NULL;
    ck_assert_ok(mtl_dataset_create(&ds, x, 1));
    ck_assert_ok(mtl_dataset_set_target(ds, 0, y));
    mtl_dataset *tr = NULL, *va = NULL, *te = NULL;
    ck_assert_ok(mtl_dataset_split(ds, &tr, &va, &te, 0.2, 0.1, 7));
    ck_assert_int_eq(mtl_dataset_size(va), 21); /* round(20.6) */
    ck_assert_int_eq(mtl_dataset_size(te), 10); /* round(10.3) */
    ck_assert_int_eq(mtl_dataset_size(tr), 72);
    int seen[103] = {0};
    mtl_dataset *parts[3] = {tr, va, te};
    for (int p = 0; p < 3; p++)
        for (int64_t i = 0; i < mtl_dataset_size(parts[p]); i++) {
            int64_t row = mtl_dataset_index(parts[p], i);
            ck_assert(row >= 0 && row < N);
            seen[row]++;
        }
    for (int64_t i = 0; i < N; i++)
        ck_assert_int_eq(seen[i], 1); /* disjoint and covering */
    /* the same seed gives the same split, another seed another one */
    mtl_dataset *tr2 = NULL, *va2 = NULL, *va3 = NULL;
    ck_assert_ok(mtl_dataset_split(ds, &tr2, &va2, NULL, 0.2, 0.1, 7));
    for (int64_t i = 0; i < 21; i++)
        ck_assert_int_eq(mtl_dataset_index(va, i), mtl_dataset_index(va2, i));
    ck_assert_int_eq(mtl_dataset_size(tr2), 72); /* test samples are dropped, not added */
    ck_assert_ok(mtl_dataset_split(ds, NULL, &va3, NULL, 0.2, 0.1, 8));
    int same = 1;
    for (int64_t i = 0; i < 21; i++)
        same &= mtl_dataset_index(va, i) == mtl_dataset_index(va3, i);
    ck_assert_int_eq(same, 0);
    /* views share the parent's tensors; labels are set before splitting */
    ck_assert_ptr_eq(mtl_dataset_target(va, 0), y);
    ck_assert_status(mtl_dataset_set_target(va, 0, y), MTL_ERR_STATE);
    ck_msg_has("the dataset is a view");
    /* a view of a view maps to the underlying rows */
    mtl_dataset *sub = NULL;
    ck_assert_ok(mtl_dataset_subset(&sub, va, (int64_t[]){3, 0, 3}, 3));
    ck_assert_int_eq(mtl_dataset_index(sub, 0), mtl_dataset_index(va, 3));
    ck_assert_int_eq(mtl_dataset_index(sub, 1), mtl_dataset_index(va, 0));
    ck_assert_int_eq(mtl_dataset_index(sub, 2), mtl_dataset_index(va, 3));
    ck_assert_int_eq(mtl_dataset_index(sub, 3), -1);
    mtl_dataset *sub2 = (mtl_dataset *)0x1;
    ck_assert_status(mtl_dataset_subset(&sub2, va, (int64_t[]){21}, 1), MTL_ERR_RANGE);
    ck_msg_has("indices[0] is 21, outside the dataset's 0..20");
    ck_assert_ptr_null(sub2);
    mtl_dataset *z = (mtl_dataset *)0x1;
    mtl_dataset_free(tr2);
    ck_assert_ok(mtl_dataset_split(ds, &tr2, &z, NULL, 0.0, 0.0, 1));
    ck_assert_ptr_null(z);
    ck_assert_int_eq(mtl_dataset_size(tr2), N);
    ck_assert_status(mtl_dataset_split(ds, &z, NULL, NULL, 0.6, 0.4, 1),
                     MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("sum to less than 1");
    ck_assert_status(mtl_dataset_split(ds, &z, NULL, NULL, -0.1, 0.0, 1),
                     MTL_ERR_INVALID_ARGUMENT);
    mtl_dataset *one = NULL, *t1 = NULL;
    ck_assert_ok(mtl_dataset_subset(&one, ds, (int64_t[]){5}, 1));
    ck_assert_status(mtl_dataset_split(one, &t1, &z, NULL, 0.5, 0.0, 1), MTL_ERR_SHAPE);
    ck_msg_has("leave no training sample");
    mtl_dataset_free(one);
    mtl_dataset_free(tr2);
    mtl_dataset_free(va2);
    mtl_dataset_free(va3);
    mtl_dataset_free(sub);
    mtl_dataset_free(tr);
    mtl_dataset_free(va);
    mtl_dataset_free(te);
    mtl_dataset_free(ds);
    mtl_tensor_free(x);
    mtl_tensor_free(y);
}
END_TEST

/* ---- gathering and loaders --------------------------------------------------------------- */

START_TEST(gather_into_caller_tensors)
{
    mtl_tensor *x = rows_tensor(8), *y = ids_tensor(8, 10);
    mtl_dataset *ds = NULL;
    ck_assert_ok(mtl_dataset_create(&ds, x, 2));
    ck_assert_ok(mtl_dataset_set_target(ds, 0, y));
    mtl_tensor *bx = NULL, *by = NULL, *bm = NULL;
    ck_assert_ok(mtl_tensor_create(&bx, MTL_FLOAT32, 2, (int64_t[]){4, 3}));
    ck_assert_ok(mtl_tensor_create(&by, MTL_INT32, 1, (int64_t[]){4}));
    ck_assert_ok(mtl_tensor_create(&bm, MTL_FLOAT32, 1, (int64_t[]){4}));
    mtl_tensor *tg[2] = {by, NULL}, *mk[2] = {bm, NULL};
    int64_t idx[3] = {7, 2, 5};
    ck_assert_ok(mtl_dataset_gather(ds, idx, 3, bx, tg, mk));
    const float *d = mtl_tensor_data(bx);
    ck_assert_float_eq(d[0], 7.0f);
    ck_assert_float_eq(d[2], 207.0f);
    ck_assert_float_eq(d[3], 2.0f);
    ck_assert_float_eq(d[8], 205.0f);
    ck_assert_float_eq(d[9], 0.0f); /* row 3 untouched */
    ck_assert_int_eq(((int32_t *)mtl_tensor_data(by))[1], 12);
    ck_assert_float_eq(((float *)mtl_tensor_data(bm))[2], 1.0f); /* no mask: all kept */
    ck_assert_status(mtl_dataset_gather(ds, (int64_t[]){8}, 1, bx, NULL, NULL), MTL_ERR_RANGE);
    ck_msg_has("indices[0] is 8");
    ck_assert_status(mtl_dataset_gather(ds, (int64_t[]){0, 1, 2, 3, 4}, 5, bx, NULL, NULL),
                     MTL_ERR_SHAPE);
    ck_msg_has("input has 4 rows, 5 samples are gathered");
    ck_assert_status(mtl_dataset_gather(ds, idx, 3, by, NULL, NULL), MTL_ERR_SHAPE);
    ck_msg_has("input is int32, the dataset's is float32");
    mtl_tensor *tg2[2] = {NULL, by};
    ck_assert_status(mtl_dataset_gather(ds, idx, 3, NULL, tg2, NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("task slot 1 has no target");
    mtl_tensor_free(bx);
    mtl_tensor_free(by);
    mtl_tensor_free(bm);
    mtl_dataset_free(ds);
    mtl_tensor_free(x);
    mtl_tensor_free(y);
}
END_TEST

START_TEST(loader_batches_with_partial_last_batch)
{
    mtl_tensor *x = rows_tensor(10), *y = ids_tensor(10, 0);
    mtl_dataset *ds = NULL;
    ck_assert_ok(mtl_dataset_create(&ds, x, 2));
    ck_assert_ok(mtl_dataset_set_target(ds, 1, y));
    mtl_loader *ld = NULL;
    ck_assert_ok(mtl_loader_create(&ld, ds, 4, 0, 0, 0));
    ck_assert_int_eq(mtl_loader_num_batches(ld), 3);
    int64_t want[4] = {4, 4, 2, 0}, rows;
    for (int pass = 0; pass < 2; pass++) {
        int64_t next_row = 0;
        for (int b = 0; b < 4; b++) {
            ck_assert_ok(mtl_loader_next(ld, &rows));
            ck_assert_int_eq(rows, want[b]);
            if (!rows)
                break;
            const mtl_tensor *in = mtl_loader_input(ld);
            const mtl_tensor *const *tg = mtl_loader_targets(ld);
            ck_assert_int_eq(mtl_tensor_dim(in, 0), rows); /* the batch's own size */
            ck_assert_int_eq(mtl_tensor_numel(in), rows * 3);
            ck_assert_ptr_null(tg[0]); /* unlabelled slot */
            ck_assert_int_eq(mtl_tensor_dim(tg[1], 0), rows);
            for (int64_t i = 0; i < rows; i++, next_row++) {
                ck_assert_float_eq(((const float *)mtl_tensor_data_const(in))[i * 3],
                                   (float)next_row);
                ck_assert_int_eq(((const int32_t *)mtl_tensor_data_const(tg[1]))[i], next_row);
            }
        }
        ck_assert_int_eq(next_row, 10);
        ck_assert_int_eq(mtl_loader_pass(ld), pass + 1);
    }
    mtl_loader_free(ld);
    /* drop_last skips the partial batch */
    ck_assert_ok(mtl_loader_create(&ld, ds, 4, 1, 3, 1));
    ck_assert_int_eq(mtl_loader_num_batches(ld), 2);
    ck_assert_ok(mtl_loader_next(ld, &rows));
    ck_assert_ok(mtl_loader_next(ld, &rows));
    ck_assert_int_eq(rows, 4);
    ck_assert_ok(mtl_loader_next(ld, &rows));
    ck_assert_int_eq(rows, 0);
    mtl_loader_free(ld);
    ck_assert_status(mtl_loader_create(&ld, ds, 11, 0, 0, 1), MTL_ERR_SHAPE);
    ck_msg_has("leaves no batch");
    ck_assert_status(mtl_loader_create(&ld, ds, 0, 0, 0, 0), MTL_ERR_INVALID_ARGUMENT);
    /* a batch larger than the dataset gives one batch of everything */
    ck_assert_ok(mtl_loader_create(&ld, ds, 64, 1, 0, 0));
    ck_assert_int_eq(mtl_loader_num_batches(ld), 1);
    ck_assert_ok(mtl_loader_next(ld, &rows));
    ck_assert_int_eq(rows, 10);
    mtl_loader_free(ld);
    mtl_dataset_free(ds);
    mtl_tensor_free(x);
    mtl_tensor_free(y);
}
END_TEST

/* The order in which a loader visits the samples during one pass (first input column). */
static void pass_order(mtl_loader *ld, int64_t *order, int64_t n)
{
    int64_t k = 0, rows;
    for (;;) {
        ck_assert_ok(mtl_loader_next(ld, &rows));
        if (!rows)
            break;
        const float *d = mtl_tensor_data_const(mtl_loader_input(ld));
        for (int64_t i = 0; i < rows; i++) {
            ck_assert_int_lt(k, n);
            order[k++] = (int64_t)d[i * 3];
        }
    }
    ck_assert_int_eq(k, n);
}

START_TEST(shuffling_is_seeded_and_replayable)
{
    const int64_t N = 50;
    mtl_tensor *x = rows_tensor(N);
    mtl_dataset *ds = NULL, *view = NULL;
    ck_assert_ok(mtl_dataset_create(&ds, x, 1));
    mtl_loader *a = NULL, *b = NULL, *c = NULL;
    ck_assert_ok(mtl_loader_create(&a, ds, 8, 1, 42, 0));
    ck_assert_ok(mtl_loader_create(&b, ds, 8, 1, 42, 0));
    ck_assert_ok(mtl_loader_create(&c, ds, 8, 1, 43, 0));
    int64_t oa0[50], oa1[50], ob0[50], oc0[50], again[50];
    pass_order(a, oa0, N);
    pass_order(a, oa1, N);
    pass_order(b, ob0, N);
    pass_order(c, oc0, N);
    int seen[50] = {0}, in_order = 1, same_ab = 1, same_ac = 1, same_passes = 1;
    for (int64_t i = 0; i < N; i++) {
        seen[oa0[i]]++;
        in_order &= oa0[i] == i;
        same_ab &= oa0[i] == ob0[i];
        same_ac &= oa0[i] == oc0[i];
        same_passes &= oa0[i] == oa1[i];
    }
    for (int64_t i = 0; i < N; i++)
        ck_assert_int_eq(seen[i], 1); /* a permutation: each sample once per pass */
    ck_assert_int_eq(in_order, 0);
    ck_assert_int_eq(same_ab, 1);     /* same seed, same order */
    ck_assert_int_eq(same_ac, 0);     /* another seed, another order */
    ck_assert_int_eq(same_passes, 0); /* reshuffled each pass */
    /* seek replays pass 1 from its start */
    ck_assert_ok(mtl_loader_seek(a, 1, 0));
    pass_order(a, again, N);
    for (int64_t i = 0; i < N; i++)
        ck_assert_int_eq(again[i], oa1[i]);
    /* mid-pass: position 2 continues with the third batch */
    ck_assert_ok(mtl_loader_seek(b, 1, 2));
    int64_t rows;
    ck_assert_ok(mtl_loader_next(b, &rows));
    ck_assert_float_eq(((const float *)mtl_tensor_data_const(mtl_loader_input(b)))[0],
                       (float)oa1[16]);
    ck_assert_status(mtl_loader_seek(b, 0, 8), MTL_ERR_RANGE);
    ck_msg_has("position in 0..7");
    /* a loader over a view visits the view's samples only */
    ck_assert_ok(mtl_dataset_subset(&view, ds, (int64_t[]){4, 9, 16}, 3));
    mtl_loader *v = NULL;
    ck_assert_ok(mtl_loader_create(&v, view, 2, 1, 5, 0));
    int64_t ov[3];
    pass_order(v, ov, 3);
    ck_assert_int_eq(ov[0] + ov[1] + ov[2], 29);
    ck_assert_int_eq(ov[0] * ov[1] * ov[2], 4 * 9 * 16);
    mtl_loader_free(v);
    mtl_loader_free(a);
    mtl_loader_free(b);
    mtl_loader_free(c);
    mtl_dataset_free(view);
    mtl_dataset_free(ds);
    mtl_tensor_free(x);
}
END_TEST

START_TEST(loader_does_not_allocate_per_batch)
{
    mtl_tensor *x = rows_tensor(100), *y = ids_tensor(100, 0);
    mtl_tensor *m = NULL;
    ck_assert_ok(mtl_tensor_create(&m, MTL_INT32, 1, (int64_t[]){100}));
    mtl_dataset *ds = NULL;
    ck_assert_ok(mtl_dataset_create(&ds, x, 1));
    ck_assert_ok(mtl_dataset_set_target(ds, 0, y));
    ck_assert_ok(mtl_dataset_set_mask(ds, 0, m));
    mtl_loader *ld = NULL;
    ck_assert_ok(mtl_loader_create(&ld, ds, 16, 1, 1, 0));
    mtli_alloc_reset_count();
    int64_t rows, batches = 0;
    for (int i = 0; i < 40; i++) { /* several passes, partial batches included */
        ck_assert_ok(mtl_loader_next(ld, &rows));
        batches += rows > 0;
    }
    ck_assert_int_eq(mtli_alloc_count(), 0);
    ck_assert_int_gt(batches, 30);
    ck_assert_ptr_nonnull(mtl_loader_masks(ld)[0]);
    mtl_loader_free(ld);
    mtl_dataset_free(ds);
    mtl_tensor_free(x);
    mtl_tensor_free(y);
    mtl_tensor_free(m);
}
END_TEST

typedef struct {
    mtl_tensor *x, *y;
} oom_ctx;

static mtl_status oom_dataset_and_loader(void *p)
{
    oom_ctx *c = p;
    mtl_dataset *ds = NULL, *tr = NULL, *va = NULL;
    mtl_loader *ld = NULL;
    mtl_status st = mtl_dataset_create(&ds, c->x, 2);
    if (st == MTL_OK)
        st = mtl_dataset_set_target(ds, 1, c->y);
    if (st == MTL_OK)
        st = mtl_dataset_split(ds, &tr, &va, NULL, 0.25, 0.0, 3);
    if (st == MTL_OK)
        st = mtl_loader_create(&ld, tr, 4, 1, 0, 0);
    mtl_loader_free(ld);
    mtl_dataset_free(tr);
    mtl_dataset_free(va);
    mtl_dataset_free(ds);
    return st;
}

START_TEST(allocation_failures)
{
    oom_ctx c = {rows_tensor(20), ids_tensor(20, 0)};
    ck_assert_int_gt(mtl_test_oom_sweep(oom_dataset_and_loader, &c), 5);
    mtl_tensor_free(c.x);
    mtl_tensor_free(c.y);
}
END_TEST

/* ---- task samplers ----------------------------------------------------------------------- */

/* Pearson's chi-square statistic of observed counts against probabilities p (cells with
 * p = 0 must have no count). */
static double chi_square(const int64_t *count, const double *p, int k, int64_t n)
{
    double x2 = 0.0;
    for (int t = 0; t < k; t++) {
        if (p[t] == 0.0) {
            ck_assert_int_eq(count[t], 0);
            continue;
        }
        double e = p[t] * (double)n;
        x2 += (count[t] - e) * (count[t] - e) / e;
    }
    return x2;
}

START_TEST(sampler_frequencies_match_each_strategy)
{
    /* four tasks, one without data; 60000 draws. With 2 degrees of freedom the chi-square
     * statistic exceeds 13.8 with probability 0.001 under the right distribution. */
    const int64_t sizes[4] = {100, 0, 400, 1600};
    const int64_t n = 60000;
    struct {
        mtli_sampler_kind kind;
        double temperature;
        double p[4];
    } cases[] = {
        {MTLI_SAMPLER_PROPORTIONAL, 1.0, {100.0 / 2100, 0, 400.0 / 2100, 1600.0 / 2100}},
        /* p ∝ n^(1/2): 10, 20, 40 */
        {MTLI_SAMPLER_TEMPERATURE, 2.0, {10.0 / 70, 0, 20.0 / 70, 40.0 / 70}},
        /* p ∝ n^(1/4): sqrt(10), sqrt(20), sqrt(40) */
        {MTLI_SAMPLER_TEMPERATURE, 4.0, {0, 0, 0, 0}},
        {MTLI_SAMPLER_UNIFORM, 1.0, {1.0 / 3, 0, 1.0 / 3, 1.0 / 3}},
    };
    double s = pow(100, 0.25) + pow(400, 0.25) + pow(1600, 0.25);
    cases[2].p[0] = pow(100, 0.25) / s;
    cases[2].p[2] = pow(400, 0.25) / s;
    cases[2].p[3] = pow(1600, 0.25) / s;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mtli_sampler smp;
        ck_assert_ok(mtli_sampler_init(&smp, cases[c].kind, sizes, 4, cases[c].temperature, 99));
        for (int t = 0; t < 4; t++)
            ck_assert_double_eq_tol(smp.prob[t], cases[c].p[t], 1e-12);
        int64_t count[4] = {0};
        for (int64_t i = 0; i < n; i++)
            count[mtli_sampler_next(&smp)]++;
        double x2 = chi_square(count, cases[c].p, 4, n);
        ck_assert_msg(x2 < 13.8, "sampler %s T=%g: chi-square %g (counts %lld %lld %lld %lld)",
                      mtli_sampler_kind_name(cases[c].kind), cases[c].temperature, x2,
                      (long long)count[0], (long long)count[1], (long long)count[2],
                      (long long)count[3]);
        mtli_sampler_free(&smp);
    }
    /* round robin cycles through the tasks with data, in order */
    mtli_sampler rr;
    ck_assert_ok(mtli_sampler_init(&rr, MTLI_SAMPLER_ROUND_ROBIN, sizes, 4, 1.0, 0));
    int want[7] = {0, 2, 3, 0, 2, 3, 0};
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(mtli_sampler_next(&rr), want[i]);
    mtli_sampler_free(&rr);
    /* seeded: the same seed draws the same sequence, another seed another */
    mtli_sampler a, b, c;
    ck_assert_ok(mtli_sampler_init(&a, MTLI_SAMPLER_UNIFORM, sizes, 4, 1.0, 5));
    ck_assert_ok(mtli_sampler_init(&b, MTLI_SAMPLER_UNIFORM, sizes, 4, 1.0, 5));
    ck_assert_ok(mtli_sampler_init(&c, MTLI_SAMPLER_UNIFORM, sizes, 4, 1.0, 6));
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < 100; i++) {
        int x = mtli_sampler_next(&a);
        same_ab &= x == mtli_sampler_next(&b);
        same_ac &= x == mtli_sampler_next(&c);
    }
    ck_assert_int_eq(same_ab, 1);
    ck_assert_int_eq(same_ac, 0);
    mtli_sampler_free(&a);
    mtli_sampler_free(&b);
    mtli_sampler_free(&c);
    /* errors */
    mtli_sampler_kind k;
    ck_assert_status(mtli_sampler_kind_from_name("random", &k), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("sampler 'random' is unknown");
    ck_assert_ok(mtli_sampler_kind_from_name("temperature", &k));
    ck_assert_int_eq(k, MTLI_SAMPLER_TEMPERATURE);
    const int64_t none[2] = {0, 0};
    ck_assert_status(mtli_sampler_init(&a, MTLI_SAMPLER_UNIFORM, none, 2, 1.0, 0),
                     MTL_ERR_STATE);
    ck_assert_status(mtli_sampler_init(&a, MTLI_SAMPLER_TEMPERATURE, sizes, 4, 0.0, 0),
                     MTL_ERR_RANGE);
}
END_TEST

static Suite *dataset_suite(void)
{
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, create_borrows_and_validates);
    tcase_add_test(tc, adopted_tensors_are_freed_with_the_dataset);
    tcase_add_test(tc, npy_sources);
    tcase_add_test(tc, csv_source_with_encoder);
    tcase_add_test(tc, splits_are_disjoint_covering_and_seeded);
    tcase_add_test(tc, gather_into_caller_tensors);
    tcase_add_test(tc, loader_batches_with_partial_last_batch);
    tcase_add_test(tc, shuffling_is_seeded_and_replayable);
    tcase_add_test(tc, loader_does_not_allocate_per_batch);
    tcase_add_test(tc, allocation_failures);
    tcase_add_test(tc, sampler_frequencies_match_each_strategy);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(dataset_suite)
