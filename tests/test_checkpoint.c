/* Checkpoints: bit-identical resumption (new handles and existing ones), the documented
 * layout, rejection of every truncation and corruption with nothing changed, architecture
 * mismatches, atomic saves, introspection and allocation failures. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mtl/mtl.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "io/iofile.h"
#include "model/model_internal.h"
#include "optim/optim.h"
#include "weighting/weighting_internal.h"
#include "test_main.h"
#include "test_oom.h"

/* ---- files ------------------------------------------------------------------------------ */

static char g_dir[64];

static void setup(void)
{
    strcpy(g_dir, "/tmp/mtl_ckpt_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void teardown(void) { remove_tree(g_dir); }

static const char *in_dir(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void write_all(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* ---- models and data -------------------------------------------------------------------- */

#define IN 6

/* Dropout, batch norm (running statistics) and layer norm in the trunk, so the random state
 * and the state buffer matter for exact resumption. */
static mtl_model *make_model(uint64_t seed, double dropout_p)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {IN};
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 1, shape));
    mtl_trunk *t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_linear(t, 12));
    ck_assert_ok(mtl_trunk_add_layer(t, "batch_norm", NULL));
    ck_assert_ok(mtl_trunk_set_double(t, -1, "momentum", 0.2));
    ck_assert_ok(mtl_trunk_add_layer(t, "relu", NULL));
    ck_assert_ok(mtl_trunk_add_layer(t, "dropout", NULL));
    ck_assert_ok(mtl_trunk_set_double(t, -1, "p", dropout_p));
    ck_assert_ok(mtl_trunk_add_linear(t, 8));
    ck_assert_ok(mtl_trunk_add_layer(t, "gelu", NULL));
    ck_assert_ok(mtl_trunk_set_string(t, -1, "approximate", "tanh"));
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "cls"));
    ck_assert_ok(mtl_head_add_linear(h, 3));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_ok(mtl_head_set_loss_double(h, "label_smoothing", 0.1));
    const float cw[3] = {1.0f, 2.0f, 0.5f};
    ck_assert_ok(mtl_head_set_class_weights(h, cw, 3));
    ck_assert_ok(mtl_model_add_head(m, &h, "reg"));
    ck_assert_ok(mtl_head_add_linear(h, 5));
    ck_assert_ok(mtl_head_add_layer(h, "layer_norm", NULL));
    ck_assert_ok(mtl_head_add_layer(h, "dropout", NULL));
    ck_assert_ok(mtl_head_set_double(h, -1, "p", 0.2));
    ck_assert_ok(mtl_head_add_linear(h, 2));
    ck_assert_ok(mtl_head_set_loss(h, "huber"));
    ck_assert_ok(mtl_head_set_loss_double(h, "delta", 0.7));
    ck_assert_ok(mtl_model_set_double(m, "l2_trunk", 1e-3));
    ck_assert_ok(mtl_model_build(m, 16, seed));
    return m;
}

/* The smallest model: the corruption sweeps run over every byte of its file. */
static mtl_model *make_tiny(uint64_t seed)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {2};
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 1, shape));
    ck_assert_ok(mtl_trunk_add_linear(mtl_model_trunk(m), 2));
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "a"));
    ck_assert_ok(mtl_head_add_linear(h, 1));
    ck_assert_ok(mtl_model_build(m, 4, seed));
    return m;
}

typedef struct batch {
    mtl_tensor *x, *y[2];
} batch;

static void make_batch(batch *b, int step)
{
    const int64_t B = 8;
    mtli_rng r;
    mtli_rng_seed(&r, 1000 + (uint64_t)step);
    int64_t sx[2] = {B, IN}, sy[1] = {B}, sr[2] = {B, 2};
    ck_assert_ok(mtl_tensor_create(&b->x, MTL_FLOAT32, 2, sx));
    ck_assert_ok(mtl_tensor_create(&b->y[0], MTL_INT32, 1, sy));
    ck_assert_ok(mtl_tensor_create(&b->y[1], MTL_FLOAT32, 2, sr));
    float *x = mtl_tensor_data(b->x), *y1 = mtl_tensor_data(b->y[1]);
    int32_t *y0 = mtl_tensor_data(b->y[0]);
    for (int64_t i = 0; i < B * IN; i++)
        x[i] = 4.0f * mtli_rng_uniform(&r) - 2.0f;
    for (int64_t i = 0; i < B; i++)
        y0[i] = (int32_t)mtli_rng_below(&r, 3);
    for (int64_t i = 0; i < 2 * B; i++)
        y1[i] = 2.0f * mtli_rng_uniform(&r) - 1.0f;
}

static void free_batch(batch *b)
{
    mtl_tensor_free(b->x);
    mtl_tensor_free(b->y[0]);
    mtl_tensor_free(b->y[1]);
}

static void train(mtl_model *m, mtl_optimizer *o, mtl_weighting *w, int from, int to)
{
    for (int s = from; s < to; s++) {
        batch b;
        make_batch(&b, s);
        float L[2];
        ck_assert_ok(mtl_model_train_step(m, o, w, b.x, (const mtl_tensor *const *)b.y, NULL, L));
        free_batch(&b);
    }
}

/* Bitwise equality of everything that carries over between steps. */
static void assert_same_state(mtl_model *a, mtl_optimizer *oa, mtl_model *b, mtl_optimizer *ob)
{
    ck_assert_uint_eq(a->nparams, b->nparams);
    ck_assert_uint_eq(a->nstate, b->nstate);
    ck_assert_msg(memcmp(a->params, b->params, a->nparams * sizeof(float)) == 0,
                  "parameters differ");
    ck_assert_msg(memcmp(a->state, b->state, a->nstate * sizeof(float)) == 0,
                  "state buffers differ");
    ck_assert_msg(memcmp(&a->rng, &b->rng, sizeof a->rng) == 0, "random states differ");
    if (oa && ob) {
        ck_assert_int_eq(mtl_optimizer_step_count(oa), mtl_optimizer_step_count(ob));
        ck_assert_int_eq(mtli_optimizer_num_buffers(oa), mtli_optimizer_num_buffers(ob));
        for (int i = 0; i < mtli_optimizer_num_buffers(oa); i++)
            ck_assert_msg(memcmp(mtli_optimizer_buffer(oa, i), mtli_optimizer_buffer(ob, i),
                                 a->nparams * sizeof(float)) == 0,
                          "optimizer buffer %d differs", i);
        ck_assert(mtl_optimizer_current_lr(oa) == mtl_optimizer_current_lr(ob));
    }
}

typedef void (*config_fn)(mtl_optimizer *o);

static void cfg_adam(mtl_optimizer *o)
{
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 0.01));
    ck_assert_ok(mtl_optimizer_set_double(o, "weight_decay", 1e-3));
    ck_assert_ok(mtl_optimizer_set_int(o, "amsgrad", 1));
    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "cosine"));
    ck_assert_ok(mtl_optimizer_set_int(o, "total_steps", 20));
    ck_assert_ok(mtl_optimizer_set_int(o, "warmup_steps", 3));
    ck_assert_ok(mtl_optimizer_set_lr_scale(o, "trunk", 0.5));
}

static void cfg_sgd(mtl_optimizer *o)
{
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 0.05));
    ck_assert_ok(mtl_optimizer_set_double(o, "momentum", 0.9));
    ck_assert_ok(mtl_optimizer_set_int(o, "nesterov", 1));
    ck_assert_ok(mtl_optimizer_set_double(o, "weight_decay", 1e-4));
    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "multistep"));
    ck_assert_ok(mtl_optimizer_set_string(o, "milestones", "3, 7"));
    ck_assert_ok(mtl_optimizer_set_double(o, "gamma", 0.5));
    ck_assert_ok(mtl_optimizer_set_double(o, "clip_norm", 1.0));
    ck_assert_ok(mtl_optimizer_set_lr_scale(o, "reg", 2.0));
}

static void cfg_adamw(mtl_optimizer *o)
{
    ck_assert_ok(mtl_optimizer_set_double(o, "beta1", 0.8));
    ck_assert_ok(mtl_optimizer_set_double(o, "clip_value", 0.5));
    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "step"));
    ck_assert_ok(mtl_optimizer_set_int(o, "step_size", 4));
}

static void cfg_rmsprop(mtl_optimizer *o)
{
    ck_assert_ok(mtl_optimizer_set_double(o, "momentum", 0.5));
    ck_assert_ok(mtl_optimizer_set_int(o, "centered", 1));
    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "exponential"));
    ck_assert_ok(mtl_optimizer_set_double(o, "gamma", 0.9));
}

static void cfg_adagrad(mtl_optimizer *o)
{
    ck_assert_ok(mtl_optimizer_set_double(o, "initial_accumulator_value", 0.1));
    ck_assert_ok(mtl_optimizer_set_double(o, "lr_decay", 0.01));
    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "linear"));
    ck_assert_ok(mtl_optimizer_set_int(o, "total_steps", 8));
    ck_assert_ok(mtl_optimizer_set_double(o, "min_lr", 0.001));
}

static mtl_weighting *make_weighting(void)
{
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, "fixed", 2));
    const double wt[2] = {1.0, 0.5};
    ck_assert_ok(mtl_weighting_set_weights(w, wt, 2));
    return w;
}

#define TOTAL 10
#define SPLIT 4

/* Uninterrupted training against save at SPLIT -> restore -> continue, both into new handles
 * (mtl_checkpoint_load) and into fresh handles built differently (load_into). */
static void check_resume(const char *kind, config_fn cfg)
{
    mtl_model *ref = make_model(7, 0.3);
    mtl_optimizer *oref = NULL;
    ck_assert_ok(mtl_optimizer_create(&oref, ref, kind));
    cfg(oref);
    mtl_weighting *wref = make_weighting();
    train(ref, oref, wref, 0, TOTAL);

    mtl_model *m = make_model(7, 0.3);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, kind));
    cfg(o);
    mtl_weighting *w = make_weighting();
    train(m, o, w, 0, SPLIT);
    const char *path = in_dir("resume.ckpt");
    ck_assert_ok(mtl_checkpoint_save(path, m, o, w));
    train(m, o, w, SPLIT, TOTAL);
    assert_same_state(ref, oref, m, o); /* saving changed nothing */

    /* new handles */
    mtl_model *m2 = NULL;
    mtl_optimizer *o2 = NULL;
    mtl_weighting *w2 = NULL;
    ck_assert_ok(mtl_checkpoint_load(path, &m2, &o2, &w2));
    ck_assert_str_eq(mtl_optimizer_kind(o2), kind);
    ck_assert_int_eq(mtl_optimizer_step_count(o2), SPLIT);
    ck_assert_str_eq(mtl_weighting_method(w2), "fixed");
    double wt[2];
    ck_assert_ok(mtl_weighting_get_weights(w2, wt, 2));
    ck_assert(wt[0] == 1.0 && wt[1] == 0.5);
    for (int i = 0;; i++) { /* every hyper-parameter restored */
        const char *key = mtl_optimizer_key_name(oref, i);
        if (!key)
            break;
        const char *sa = mtli_optimizer_get_string(oref, key);
        if (sa) {
            ck_assert_str_eq(mtli_optimizer_get_string(o2, key), sa);
            continue;
        }
        double a, b;
        ck_assert_ok(mtl_optimizer_get_double(oref, key, &a));
        ck_assert_ok(mtl_optimizer_get_double(o2, key, &b));
        ck_assert_msg(a == b, "%s: key %s is %g after loading, %g before", kind, key, b, a);
    }
    train(m2, o2, w2, SPLIT, TOTAL);
    assert_same_state(ref, oref, m2, o2);

    /* existing handles: another seed, default hyper-parameters, default weights */
    mtl_model *m3 = make_model(99, 0.3);
    mtl_optimizer *o3 = NULL;
    ck_assert_ok(mtl_optimizer_create(&o3, m3, kind));
    mtl_weighting *w3 = NULL;
    ck_assert_ok(mtl_weighting_create(&w3, "fixed", 2));
    train(m3, o3, w3, 0, 2);
    ck_assert_ok(mtl_checkpoint_load_into(path, m3, o3, w3));
    train(m3, o3, w3, SPLIT, TOTAL);
    assert_same_state(ref, oref, m3, o3);

    mtl_weighting_free(w3);
    mtl_optimizer_free(o3);
    mtl_model_free(m3);
    mtl_weighting_free(w2);
    mtl_optimizer_free(o2);
    mtl_model_free(m2);
    mtl_weighting_free(w);
    mtl_optimizer_free(o);
    mtl_model_free(m);
    mtl_weighting_free(wref);
    mtl_optimizer_free(oref);
    mtl_model_free(ref);
}

START_TEST(resume_is_bit_identical_adam_dropout_batch_norm)
{
    check_resume("adam", cfg_adam);
}
END_TEST

START_TEST(resume_is_bit_identical_sgd_momentum_schedule)
{
    check_resume("sgd", cfg_sgd);
}
END_TEST

START_TEST(resume_is_bit_identical_other_optimizers)
{
    check_resume("adamw", cfg_adamw);
    check_resume("rmsprop", cfg_rmsprop);
    check_resume("adagrad", cfg_adagrad);
}
END_TEST

/* Learned task weightings: their keys and state (learned values with their Adam moments,
 * loss history, random stream, step count) come back exactly. */
static void check_weighting_resume_s(const char *method, const char *key, double value,
                                     const char *skey, const char *sval)
{
    mtl_weighting *wv[3];
    mtl_model *mv[3];
    mtl_optimizer *ov[3];
    for (int k = 0; k < 2; k++) {
        mv[k] = make_model(21, 0.3);
        ck_assert_ok(mtl_optimizer_create(&ov[k], mv[k], "adam"));
        ck_assert_ok(mtl_weighting_create(&wv[k], method, 2));
        if (key)
            ck_assert_ok(mtl_weighting_set_double(wv[k], key, value));
        if (skey)
            ck_assert_ok(mtl_weighting_set_string(wv[k], skey, sval));
    }
    train(mv[0], ov[0], wv[0], 0, TOTAL);
    train(mv[1], ov[1], wv[1], 0, SPLIT);
    const char *path = in_dir("w.ckpt");
    ck_assert_ok(mtl_checkpoint_save(path, mv[1], ov[1], wv[1]));
    mtl_model *m2 = NULL;
    mtl_optimizer *o2 = NULL;
    mtl_weighting *w2 = NULL;
    ck_assert_ok(mtl_checkpoint_load(path, &m2, &o2, &w2));
    ck_assert_str_eq(mtl_weighting_method(w2), method);
    if (key) {
        double v;
        ck_assert_ok(mtl_weighting_get_double(w2, key, &v));
        ck_assert(v == value);
    }
    if (skey) {
        const char *v;
        ck_assert_ok(mtl_weighting_get_string(w2, skey, &v));
        ck_assert_str_eq(v, sval);
    }
    /* load_into a weighting of the same method with default keys, after some steps */
    mv[2] = make_model(22, 0.3);
    ck_assert_ok(mtl_optimizer_create(&ov[2], mv[2], "adam"));
    ck_assert_ok(mtl_weighting_create(&wv[2], method, 2));
    train(mv[2], ov[2], wv[2], 0, 1);
    ck_assert_ok(mtl_checkpoint_load_into(path, mv[2], ov[2], wv[2]));
    train(m2, o2, w2, SPLIT, TOTAL);
    train(mv[2], ov[2], wv[2], SPLIT, TOTAL);
    mtl_weighting *ws[2] = {w2, wv[2]};
    mtl_model *ms[2] = {m2, mv[2]};
    mtl_optimizer *os[2] = {o2, ov[2]};
    for (int k = 0; k < 2; k++) {
        assert_same_state(mv[0], ov[0], ms[k], os[k]);
        size_t n = mtli_weighting_state_size(wv[0]);
        ck_assert_uint_ge(n, 3); /* steps and last weights, then what the method learns */
        ck_assert_uint_eq(mtli_weighting_state_size(ws[k]), n);
        ck_assert_msg(memcmp(mtli_weighting_state(wv[0]), mtli_weighting_state(ws[k]),
                             n * sizeof(double)) == 0,
                      "%s: weighting state differs after resuming", method);
    }
    mtl_weighting_free(w2);
    mtl_optimizer_free(o2);
    mtl_model_free(m2);
    for (int k = 0; k < 3; k++) {
        mtl_weighting_free(wv[k]);
        mtl_optimizer_free(ov[k]);
        mtl_model_free(mv[k]);
    }
}

static void check_weighting_resume(const char *method, const char *key, double value)
{
    check_weighting_resume_s(method, key, value, NULL, NULL);
}

START_TEST(resume_restores_learned_weightings)
{
    check_weighting_resume_s("ew", NULL, 0, "reduction", "mean");
    check_weighting_resume("uw", "lr", 0.01);
    check_weighting_resume("dwa", "temperature", 3.0);
    check_weighting_resume("rlw", "seed", 12345);
    check_weighting_resume("famo", "gamma", 0.01);
    check_weighting_resume("stch", "warmup_steps", 2);
    /* every other method of this build, with its default keys (gradient-based methods bind
     * per-parameter state to the trunk) */
    for (int k = 0; mtl_weighting_available(k); k++) {
        const char *name = mtl_weighting_available(k);
        if (strcmp(name, "fixed") != 0 && strcmp(name, "uw") != 0 && strcmp(name, "dwa") != 0 &&
            strcmp(name, "rlw") != 0 && strcmp(name, "famo") != 0 && strcmp(name, "stch") != 0)
            check_weighting_resume(name, NULL, 0);
    }
    int have_mgda = 0;
    for (int k = 0; mtl_weighting_available(k); k++)
        have_mgda |= strcmp(mtl_weighting_available(k), "mgda") == 0;
    if (have_mgda) /* a string key that changes what the method consumes */
        check_weighting_resume_s("mgda", NULL, 0, "mode", "representation");
}
END_TEST

/* Weights only (no optimizer, no weighting): predictions of the loaded model equal the
 * original's; asking for what the file lacks is NOT_FOUND. */
START_TEST(model_only_checkpoint_predicts_identically)
{
    mtl_model *m = make_model(3, 0.5);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "adam"));
    train(m, o, NULL, 0, 3);
    const char *path = in_dir("weights.ckpt");
    ck_assert_ok(mtl_checkpoint_save(path, m, NULL, NULL));
    mtl_model *m2 = NULL;
    ck_assert_ok(mtl_checkpoint_load(path, &m2, NULL, NULL));
    ck_assert_int_eq(mtl_model_max_batch(m2), 16);
    batch b;
    make_batch(&b, 50);
    ck_assert_ok(mtl_model_predict(m, b.x));
    ck_assert_ok(mtl_model_predict(m2, b.x));
    for (int h = 0; h < 2; h++) {
        mtl_tensor *p1 = NULL, *p2 = NULL;
        int64_t s[1] = {8 * (h == 0 ? 3 : 2)};
        ck_assert_ok(mtl_tensor_create(&p1, MTL_FLOAT32, 1, s));
        ck_assert_ok(mtl_tensor_create(&p2, MTL_FLOAT32, 1, s));
        ck_assert_ok(mtl_model_output(m, h, p1, MTL_OUTPUT_PROBABILITIES));
        ck_assert_ok(mtl_model_output(m2, h, p2, MTL_OUTPUT_PROBABILITIES));
        ck_assert(memcmp(mtl_tensor_data(p1), mtl_tensor_data(p2), (size_t)s[0] * 4) == 0);
        mtl_tensor_free(p1);
        mtl_tensor_free(p2);
    }
    free_batch(&b);
    mtl_model *m3 = (mtl_model *)1;
    mtl_optimizer *o3 = (mtl_optimizer *)1;
    ck_assert_status(mtl_checkpoint_load(path, &m3, &o3, NULL), MTL_ERR_NOT_FOUND);
    ck_assert_ptr_null(m3);
    ck_assert_ptr_null(o3);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "no optimizer state"));
    ck_assert_status(mtl_checkpoint_load_into(path, m2, o, NULL), MTL_ERR_INVALID_ARGUMENT);
    mtl_model_free(m2);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

/* Every layer kind with non-default options, an int32 embedding input, every loss: the
 * rebuilt model has the same architecture (load_into into the original accepts it) and the
 * same outputs. */
START_TEST(architecture_round_trips_every_option)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {4};
    ck_assert_ok(mtl_model_create(&m, MTL_INT32, 1, shape));
    mtl_trunk *t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_layer(t, "embedding", NULL));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "num_embeddings", 11));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "out", 5));
    ck_assert_ok(mtl_trunk_set_string(t, -1, "pooling", "sum"));
    ck_assert_ok(mtl_trunk_set_string(t, -1, "init", "xavier_normal"));
    ck_assert_ok(mtl_trunk_add_layer(t, "layer_norm", NULL));
    ck_assert_ok(mtl_trunk_set_double(t, -1, "eps", 1e-3));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "affine", 0));
    ck_assert_ok(mtl_trunk_add_linear(t, 6));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "bias", 0));
    ck_assert_ok(mtl_trunk_set_string(t, -1, "init", "kaiming_normal"));
    ck_assert_ok(mtl_trunk_set_double(t, -1, "gain", 0.5));
    ck_assert_ok(mtl_trunk_add_layer(t, "leaky_relu", NULL));
    ck_assert_ok(mtl_trunk_set_double(t, -1, "slope", 0.2));
    ck_assert_ok(mtl_trunk_add_layer(t, "batch_norm", NULL));
    ck_assert_ok(mtl_trunk_set_double(t, -1, "eps", 1e-4));
    ck_assert_ok(mtl_trunk_add_layer(t, "tanh", NULL));
    ck_assert_ok(mtl_trunk_add_layer(t, "sigmoid", NULL));
    const char *losses[5] = {"cross_entropy", "bce", "mse", "l1", "huber"};
    for (int i = 0; i < 5; i++) {
        mtl_head *h;
        char name[8];
        snprintf(name, sizeof name, "t%d", i);
        ck_assert_ok(mtl_model_add_head(m, &h, name));
        ck_assert_ok(mtl_head_add_linear(h, 3));
        ck_assert_ok(mtl_head_set_string(h, -1, "init", "normal"));
        ck_assert_ok(mtl_head_set_double(h, -1, "std", 0.3));
        ck_assert_ok(mtl_head_set_string(h, -1, "bias_init", "ones"));
        ck_assert_ok(mtl_head_set_loss(h, losses[i]));
        if (i == 1) {
            const float cw[3] = {0.5f, 1.5f, 2.5f};
            ck_assert_ok(mtl_head_set_class_weights(h, cw, 3));
        }
    }
    ck_assert_ok(mtl_model_set_double(m, "l2_heads", 0.25));
    ck_assert_ok(mtl_model_build(m, 5, 1234));
    const char *path = in_dir("arch.ckpt");
    ck_assert_ok(mtl_checkpoint_save(path, m, NULL, NULL));
    mtl_model *m2 = NULL;
    ck_assert_ok(mtl_checkpoint_load(path, &m2, NULL, NULL));
    ck_assert_int_eq(mtl_model_num_heads(m2), 5);
    ck_assert_str_eq(mtl_head_loss(mtl_model_head(m2, "t4")), "huber");
    ck_assert_int_eq(m2->input_dtype, MTL_INT32);
    ck_assert_uint_eq(m2->seed, 1234);
    double l2;
    ck_assert_ok(mtl_model_get_double(m2, "l2_heads", &l2));
    ck_assert(l2 == 0.25);
    /* the comparison of load_into covers every option of every layer */
    ck_assert_ok(mtl_checkpoint_load_into(path, m, NULL, NULL));
    ck_assert_int_eq(m2->trunk.s.layers[0].opts.pooling, 0);
    ck_assert(m2->trunk.s.layers[3].opts.slope == 0.2);
    ck_assert_int_eq(m2->trunk.s.layers[2].opts.weight_init, MTLI_INIT_KAIMING_NORMAL);
    /* outputs agree */
    mtl_tensor *x = NULL;
    int64_t xs[2] = {5, 4};
    ck_assert_ok(mtl_tensor_create(&x, MTL_INT32, 2, xs));
    int32_t *ids = mtl_tensor_data(x);
    for (int i = 0; i < 20; i++)
        ids[i] = (i * 7) % 11;
    ck_assert_ok(mtl_model_predict(m, x));
    ck_assert_ok(mtl_model_predict(m2, x));
    for (int h = 0; h < 5; h++) {
        float a[15], b[15];
        mtl_tensor *ta = NULL, *tb = NULL;
        int64_t s[1] = {15};
        ck_assert_ok(mtl_tensor_wrap(&ta, MTL_FLOAT32, a, 1, s));
        ck_assert_ok(mtl_tensor_wrap(&tb, MTL_FLOAT32, b, 1, s));
        ck_assert_ok(mtl_model_output(m, h, ta, MTL_OUTPUT_RAW));
        ck_assert_ok(mtl_model_output(m2, h, tb, MTL_OUTPUT_RAW));
        ck_assert(memcmp(a, b, sizeof a) == 0);
        mtl_tensor_free(ta);
        mtl_tensor_free(tb);
    }
    mtl_tensor_free(x);
    mtl_model_free(m2);
    mtl_model_free(m);
}
END_TEST

/* ---- the layout -------------------------------------------------------------------------- */

START_TEST(crc32_matches_the_standard_check_value)
{
    /* the check value of CRC-32/ISO-HDLC */
    ck_assert_uint_eq(mtli_crc32(0, "123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(mtli_crc32(mtli_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
    ck_assert_uint_eq(mtli_crc32(0, "", 0), 0u);
}
END_TEST

typedef struct section {
    uint32_t tag;
    unsigned char *p;
    size_t n;
} section;

/* Split a valid file into its sections (trailer excluded). */
static int split(const unsigned char *b, size_t n, section *out, int cap)
{
    ck_assert_uint_ge(n, 12);
    size_t pos = 12;
    int k = 0;
    for (;;) {
        uint32_t tag = mtli_get_u32(b + pos);
        size_t len = (size_t)mtli_get_u64(b + pos + 4);
        ck_assert_uint_eq(mtli_get_u32(b + pos + 12 + len), mtli_crc32(0, b + pos + 12, len));
        if (tag == mtli_get_u32((const unsigned char *)"TRLR"))
            break;
        ck_assert_int_lt(k, cap);
        out[k].tag = tag;
        out[k].p = malloc(len ? len : 1);
        memcpy(out[k].p, b + pos + 12, len);
        out[k].n = len;
        k++;
        pos += 16 + len;
    }
    return k;
}

/* Reassemble sections into a file with fresh checksums and trailer. */
static unsigned char *join(const section *s, int k, size_t *n, uint32_t version)
{
    size_t total = 12 + 32;
    for (int i = 0; i < k; i++)
        total += 16 + s[i].n;
    unsigned char *b = malloc(total);
    memcpy(b, "MTLCKPT", 8);
    mtli_put_u32(b + 8, version);
    size_t pos = 12;
    for (int i = 0; i < k; i++) {
        mtli_put_u32(b + pos, s[i].tag);
        mtli_put_u64(b + pos + 4, s[i].n);
        memcpy(b + pos + 12, s[i].p, s[i].n);
        mtli_put_u32(b + pos + 12 + s[i].n, mtli_crc32(0, s[i].p, s[i].n));
        pos += 16 + s[i].n;
    }
    unsigned char t[16];
    mtli_put_u64(t, pos);
    mtli_put_u32(t + 8, (uint32_t)k);
    mtli_put_u32(t + 12, mtli_crc32(0, b, pos));
    memcpy(b + pos, "TRLR", 4);
    mtli_put_u64(b + pos + 4, 16);
    memcpy(b + pos + 12, t, 16);
    mtli_put_u32(b + pos + 28, mtli_crc32(0, t, 16));
    *n = total;
    return b;
}

static void free_sections(section *s, int k)
{
    for (int i = 0; i < k; i++)
        free(s[i].p);
}

static uint32_t tag_of(const char *t) { return mtli_get_u32((const unsigned char *)t); }

/* The bytes follow docs/checkpoint-format.md: magic, version 1, the sections in order, each
 * with a correct CRC, the trailer; two saves of the same state are byte-identical. */
START_TEST(layout_is_as_documented_and_deterministic)
{
    mtl_model *m = make_tiny(1);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "sgd"));
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, "ew", 1));
    ck_assert_ok(mtl_checkpoint_save(in_dir("a"), m, o, w));
    ck_assert_ok(mtl_checkpoint_save(in_dir("b"), m, o, w));
    size_t na, nb;
    unsigned char *a = read_all(in_dir("a"), &na);
    unsigned char *b = read_all(in_dir("b"), &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert(memcmp(a, b, na) == 0);
    ck_assert(memcmp(a, "MTLCKPT\0", 8) == 0);
    ck_assert_uint_eq(mtli_get_u32(a + 8), 1);
    section s[16];
    int k = split(a, na, s, 16);
    ck_assert_int_eq(k, 6);
    const char *order[6] = {"info", "MODL", "PARM", "RNGS", "OPTM", "WGHT"};
    for (int i = 0; i < k; i++)
        ck_assert_uint_eq(s[i].tag, tag_of(order[i]));
    /* re-framing with fresh checksums reproduces the file exactly */
    size_t nj;
    unsigned char *j = join(s, k, &nj, 1);
    ck_assert_uint_eq(nj, na);
    ck_assert(memcmp(j, a, na) == 0);
    free(j);
    free_sections(s, k);
    free(a);
    free(b);
    mtl_weighting_free(w);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

/* ---- corruption -------------------------------------------------------------------------- */

static void snapshot(const mtl_model *m, float *out) { memcpy(out, m->params, m->nparams * 4); }

/* Every truncation of the file (every length from 0 to size - 1) is rejected; the target of
 * load_into is unchanged. */
START_TEST(every_truncation_is_rejected)
{
    mtl_model *m = make_tiny(2);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "adam"));
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, "ew", 1));
    const char *good = in_dir("good.ckpt"), *bad = in_dir("bad.ckpt");
    ck_assert_ok(mtl_checkpoint_save(good, m, o, w));
    size_t n;
    unsigned char *b = read_all(good, &n);
    mtl_model *target = make_tiny(3);
    mtl_optimizer *to = NULL;
    ck_assert_ok(mtl_optimizer_create(&to, target, "adam"));
    float before[64];
    snapshot(target, before);
    for (size_t len = 0; len < n; len++) {
        write_all(bad, b, len);
        mtl_model *lm = (mtl_model *)1;
        mtl_status st = mtl_checkpoint_load(bad, &lm, NULL, NULL);
        ck_assert_msg(st == MTL_ERR_FORMAT, "truncated to %zu of %zu bytes: status %d (%s)", len,
                      n, (int)st, mtl_last_error());
        ck_assert_ptr_null(lm);
        ck_assert_ptr_nonnull(strstr(mtl_last_error(), "bad.ckpt"));
        if (len % 5 == 0) {
            ck_assert_status(mtl_checkpoint_load_into(bad, target, to, NULL), MTL_ERR_FORMAT);
            ck_assert(memcmp(before, target->params, target->nparams * 4) == 0);
        }
    }
    write_all(bad, b, 100);
    mtl_checkpoint_load_into(bad, target, NULL, NULL);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "truncated"));
    mtl_optimizer_free(to);
    mtl_model_free(target);
    free(b);
    mtl_weighting_free(w);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

/* Every single byte changed (each byte of the file, xor 0x01 and xor 0xFF) is rejected and
 * load_into changes nothing. */
START_TEST(every_flipped_byte_is_rejected)
{
    mtl_model *m = make_tiny(4);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "sgd"));
    ck_assert_ok(mtl_optimizer_set_double(o, "momentum", 0.9));
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, "fixed", 1));
    const char *good = in_dir("good.ckpt"), *bad = in_dir("bad.ckpt");
    ck_assert_ok(mtl_checkpoint_save(good, m, o, w));
    size_t n;
    unsigned char *b = read_all(good, &n);
    mtl_model *target = make_tiny(5);
    mtl_optimizer *to = NULL;
    ck_assert_ok(mtl_optimizer_create(&to, target, "sgd"));
    mtl_weighting *tw = NULL;
    ck_assert_ok(mtl_weighting_create(&tw, "fixed", 1));
    float before[64];
    snapshot(target, before);
    const unsigned char masks[2] = {0x01, 0xFF};
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 2; k++) {
            b[i] ^= masks[k];
            write_all(bad, b, n);
            b[i] ^= masks[k];
            mtl_model *lm = NULL;
            mtl_optimizer *lo = NULL;
            mtl_weighting *lw = NULL;
            mtl_status st = mtl_checkpoint_load(bad, &lm, &lo, &lw);
            ck_assert_msg(st == MTL_ERR_FORMAT || st == MTL_ERR_UNSUPPORTED,
                          "byte %zu ^ 0x%02x: status %d (%s)", i, masks[k], (int)st,
                          mtl_last_error());
            ck_assert(lm == NULL && lo == NULL && lw == NULL);
            if (i % 3 == 0) {
                st = mtl_checkpoint_load_into(bad, target, to, tw);
                ck_assert(st == MTL_ERR_FORMAT || st == MTL_ERR_UNSUPPORTED);
                ck_assert(memcmp(before, target->params, target->nparams * 4) == 0);
                ck_assert_int_eq(mtli_optimizer_num_buffers(to), 0);
            }
        }
    }
    /* and the untouched file still loads */
    ck_assert_ok(mtl_checkpoint_load_into(good, target, to, tw));
    ck_assert(memcmp(m->params, target->params, target->nparams * 4) == 0);
    mtl_weighting_free(tw);
    mtl_optimizer_free(to);
    mtl_model_free(target);
    free(b);
    mtl_weighting_free(w);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

START_TEST(wrong_magic_version_and_framing_are_reported)
{
    mtl_model *m = make_tiny(6);
    const char *good = in_dir("good.ckpt"), *bad = in_dir("bad.ckpt");
    ck_assert_ok(mtl_checkpoint_save(good, m, NULL, NULL));
    size_t n;
    unsigned char *b = read_all(good, &n);
    mtl_model *lm = NULL;

    unsigned char *c = malloc(n + 8);
    memcpy(c, b, n);
    c[0] = 'X';
    write_all(bad, c, n);
    ck_assert_status(mtl_checkpoint_load(bad, &lm, NULL, NULL), MTL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "bad magic"));
    write_all(bad, (const unsigned char *)"PK\3\4 not a checkpoint", 22);
    ck_assert_status(mtl_checkpoint_load(bad, &lm, NULL, NULL), MTL_ERR_FORMAT);

    /* a newer version, with valid checksums */
    section s[16];
    int k = split(b, n, s, 16);
    size_t nj;
    unsigned char *j = join(s, k, &nj, 2);
    write_all(bad, j, nj);
    ck_assert_status(mtl_checkpoint_load(bad, &lm, NULL, NULL), MTL_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "format version 2 is newer"));
    free(j);
    j = join(s, k, &nj, 0);
    write_all(bad, j, nj);
    ck_assert_status(mtl_checkpoint_load(bad, &lm, NULL, NULL), MTL_ERR_FORMAT);
    free(j);

    /* a section length beyond the file */
    memcpy(c, b, n);
    mtli_put_u64(c + 12 + 4, (uint64_t)1 << 62);
    write_all(bad, c, n);
    ck_assert_status(mtl_checkpoint_load(bad, &lm, NULL, NULL), MTL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "claims"));

    /* bytes after the trailer */
    memcpy(c, b, n);
    memcpy(c + n, "garbage!", 8);
    write_all(bad, c, n + 8);
    ck_assert_status(mtl_checkpoint_load(bad, &lm, NULL, NULL), MTL_ERR_FORMAT);

    /* a section twice (checksums valid) */
    section d[17];
    memcpy(d, s, sizeof(section) * (size_t)k);
    d[k] = s[k - 1];
    j = join(d, k + 1, &nj, 1);
    write_all(bad, j, nj);
    ck_assert_status(mtl_checkpoint_load(bad, &lm, NULL, NULL), MTL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "twice"));
    free(j);

    /* a required section missing */
    j = join(s, k - 1, &nj, 1); /* drops RNGS */
    write_all(bad, j, nj);
    ck_assert_status(mtl_checkpoint_load(bad, &lm, NULL, NULL), MTL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "RNGS"));
    free(j);

    /* the file is a directory, or absent */
    ck_assert_status(mtl_checkpoint_load(g_dir, &lm, NULL, NULL), MTL_ERR_IO);
    ck_assert_status(mtl_checkpoint_load(in_dir("absent"), &lm, NULL, NULL), MTL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "absent"));
    ck_assert_ptr_null(lm);
    free_sections(s, k);
    free(c);
    free(b);
    mtl_model_free(m);
}
END_TEST

/* Readers skip optional sections they do not know (lower-case first letter) and refuse
 * required ones (upper-case), so later versions can add either kind. */
START_TEST(unknown_sections_optional_skipped_required_refused)
{
    mtl_model *m = make_tiny(7);
    const char *good = in_dir("good.ckpt"), *bad = in_dir("bad.ckpt");
    ck_assert_ok(mtl_checkpoint_save(good, m, NULL, NULL));
    size_t n;
    unsigned char *b = read_all(good, &n);
    section s[16], d[17];
    int k = split(b, n, s, 16);
    unsigned char extra[5] = {1, 2, 3, 4, 5};
    for (int i = 0; i <= k; i++) {
        int q = 0;
        for (int t = 0; t < k; t++) {
            if (t == i)
                d[q++] = (section){tag_of("xtra"), extra, sizeof extra};
            d[q++] = s[t];
        }
        if (i == k)
            d[q++] = (section){tag_of("xtra"), extra, sizeof extra};
        size_t nj;
        unsigned char *j = join(d, q, &nj, 1);
        write_all(bad, j, nj);
        mtl_model *lm = NULL;
        ck_assert_ok(mtl_checkpoint_load(bad, &lm, NULL, NULL));
        ck_assert(memcmp(lm->params, m->params, m->nparams * 4) == 0);
        mtl_model_free(lm);
        free(j);
        d[i == k ? k : i].tag = tag_of("XTRA");
        j = join(d, q, &nj, 1);
        write_all(bad, j, nj);
        ck_assert_status(mtl_checkpoint_load(bad, &lm, NULL, NULL), MTL_ERR_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(mtl_last_error(), "XTRA"));
        free(j);
    }
    free_sections(s, k);
    free(b);
    mtl_model_free(m);
}
END_TEST

/* Replace the first occurrence of `from` inside section `tag` by `to` (same length). */
static void patch_section(section *s, int k, const char *tag, const void *from, const void *to,
                          size_t len)
{
    for (int i = 0; i < k; i++) {
        if (s[i].tag != tag_of(tag))
            continue;
        for (size_t p = 0; p + len <= s[i].n; p++)
            if (memcmp(s[i].p + p, from, len) == 0) {
                memcpy(s[i].p + p, to, len);
                return;
            }
    }
    ck_abort_msg("pattern not found in %s", tag);
}

/* Values that pass the checksums but not the checks: each is refused naming the value. */
static void expect_crafted(const unsigned char *b, size_t n, const char *tag, const void *from,
                           const void *to, size_t len, mtl_status want, const char *msg)
{
    section s[16];
    int k = split(b, n, s, 16);
    patch_section(s, k, tag, from, to, len);
    size_t nj;
    unsigned char *j = join(s, k, &nj, 1);
    write_all(in_dir("crafted.ckpt"), j, nj);
    mtl_model *lm = NULL;
    mtl_optimizer *lo = NULL;
    ck_assert_status(mtl_checkpoint_load(in_dir("crafted.ckpt"), &lm, &lo, NULL), want);
    ck_assert_msg(strstr(mtl_last_error(), msg) != NULL, "message '%s' lacks '%s'",
                  mtl_last_error(), msg);
    ck_assert_ptr_null(lm);
    free(j);
    free_sections(s, k);
}

START_TEST(crafted_values_with_valid_checksums_are_refused)
{
    mtl_model *m = make_model(8, 0.3);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "sgd"));
    const char *good = in_dir("good.ckpt");
    ck_assert_ok(mtl_checkpoint_save(good, m, o, NULL));
    size_t n;
    unsigned char *b = read_all(good, &n);
    expect_crafted(b, n, "MODL", "dropout", "dropoux", 7, MTL_ERR_UNSUPPORTED,
                   "layer kind 'dropoux'");
    expect_crafted(b, n, "MODL", "slope", "slopf", 5, MTL_ERR_UNSUPPORTED,
                   "layer option 'slopf'");
    expect_crafted(b, n, "MODL", "huber", "hubex", 5, MTL_ERR_UNSUPPORTED, "loss 'hubex'");
    expect_crafted(b, n, "MODL", "default", "defaulx", 7, MTL_ERR_UNSUPPORTED,
                   "initialisation 'defaulx'");
    expect_crafted(b, n, "MODL", "cls", "c/s", 3, MTL_ERR_FORMAT, "task name 'c/s'");
    /* dropout p = 0.3 -> 3.0 */
    double p = 0.3, q = 3.0;
    unsigned char pb[8], qb[8];
    uint64_t u;
    memcpy(&u, &p, 8);
    mtli_put_u64(pb, u);
    memcpy(&u, &q, 8);
    mtli_put_u64(qb, u);
    expect_crafted(b, n, "MODL", pb, qb, 8, MTL_ERR_FORMAT, "option 'p' is 3");
    /* a layer wider than the stored weights: refused before anything is allocated for it */
    const unsigned char out12[12] = {1, 3, 0, 0, 0, 'o', 'u', 't', 12, 0, 0, 0};
    const unsigned char out99[12] = {1, 3, 0, 0, 0, 'o', 'u', 't', 0x99, 0x99, 0x99, 0};
    expect_crafted(b, n, "MODL", out12, out99, 12, MTL_ERR_FORMAT,
                   "the stored architecture has");
    /* an unknown optimizer kind and an unusable key */
    expect_crafted(b, n, "OPTM", "sgd", "sgx", 3, MTL_ERR_UNSUPPORTED, "'sgx'");
    expect_crafted(b, n, "OPTM", "dampening", "dampenink", 9, MTL_ERR_FORMAT, "dampenink");
    /* a parameter table that does not fit the rebuilt model */
    expect_crafted(b, n, "PARM", "trunk.0.weight", "trunk.0.weighs", 14, MTL_ERR_FORMAT,
                   "does not match");
    free(b);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

/* ---- load_into: mismatches change nothing --------------------------------------------- */

static void expect_mismatch(const char *path, mtl_model *target, mtl_optimizer *to,
                            mtl_weighting *tw, mtl_status want, const char *msg)
{
    float before[512];
    ck_assert_uint_le(target->nparams, 512);
    snapshot(target, before);
    mtli_rng rng = target->rng;
    int64_t step = to ? mtl_optimizer_step_count(to) : 0;
    double lr = to ? mtl_optimizer_current_lr(to) : 0;
    ck_assert_status(mtl_checkpoint_load_into(path, target, to, tw), want);
    ck_assert_msg(strstr(mtl_last_error(), msg) != NULL, "message '%s' lacks '%s'",
                  mtl_last_error(), msg);
    ck_assert(memcmp(before, target->params, target->nparams * 4) == 0);
    ck_assert(memcmp(&rng, &target->rng, sizeof rng) == 0);
    if (to) {
        ck_assert_int_eq(mtl_optimizer_step_count(to), step);
        ck_assert(mtl_optimizer_current_lr(to) == lr);
    }
}

START_TEST(load_into_mismatch_is_refused_and_changes_nothing)
{
    mtl_model *m = make_model(9, 0.3);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "adam"));
    mtl_weighting *w = make_weighting();
    train(m, o, w, 0, 2);
    const char *path = in_dir("src.ckpt");
    ck_assert_ok(mtl_checkpoint_save(path, m, o, w));

    mtl_model *t1 = make_model(10, 0.25); /* dropout p differs */
    expect_mismatch(path, t1, NULL, NULL, MTL_ERR_SHAPE, "option 'p' is 0.3 in the checkpoint");
    mtl_model_free(t1);

    mtl_model *t2 = make_tiny(1);
    expect_mismatch(path, t2, NULL, NULL, MTL_ERR_SHAPE, "input dimension 0");
    mtl_model_free(t2);

    /* a head with another name / another loss / an extra layer */
    for (int variant = 0; variant < 4; variant++) {
        mtl_model *t = NULL;
        int64_t shape[1] = {IN};
        ck_assert_ok(mtl_model_create(&t, MTL_FLOAT32, 1, shape));
        mtl_trunk *tt = mtl_model_trunk(t);
        ck_assert_ok(mtl_trunk_add_linear(tt, 12));
        ck_assert_ok(mtl_trunk_add_layer(tt, "batch_norm", NULL));
        ck_assert_ok(mtl_trunk_set_double(tt, -1, "momentum", 0.2));
        ck_assert_ok(mtl_trunk_add_layer(tt, "relu", NULL));
        ck_assert_ok(mtl_trunk_add_layer(tt, "dropout", NULL));
        ck_assert_ok(mtl_trunk_set_double(tt, -1, "p", 0.3));
        ck_assert_ok(mtl_trunk_add_linear(tt, 8));
        ck_assert_ok(mtl_trunk_add_layer(tt, "gelu", NULL));
        ck_assert_ok(mtl_trunk_set_string(tt, -1, "approximate", variant == 3 ? "none" : "tanh"));
        mtl_head *h;
        ck_assert_ok(mtl_model_add_head(t, &h, variant == 0 ? "klass" : "cls"));
        ck_assert_ok(mtl_head_add_linear(h, 3));
        ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
        const float cw[3] = {1.0f, 2.0f, 0.5f};
        ck_assert_ok(mtl_head_set_class_weights(h, cw, 3));
        if (variant == 1)
            ck_assert_ok(mtl_head_set_loss(h, "bce"));
        else
            ck_assert_ok(mtl_head_set_loss_double(h, "label_smoothing", 0.1));
        if (variant == 2)
            ck_assert_ok(mtl_head_add_layer(h, "relu", NULL));
        ck_assert_ok(mtl_model_add_head(t, &h, "reg"));
        ck_assert_ok(mtl_head_add_linear(h, 5));
        ck_assert_ok(mtl_head_add_layer(h, "layer_norm", NULL));
        ck_assert_ok(mtl_head_add_layer(h, "dropout", NULL));
        ck_assert_ok(mtl_head_set_double(h, -1, "p", 0.2));
        ck_assert_ok(mtl_head_add_linear(h, 2));
        ck_assert_ok(mtl_head_set_loss(h, "huber"));
        ck_assert_ok(mtl_head_set_loss_double(h, "delta", 0.7));
        ck_assert_ok(mtl_model_set_double(t, "l2_trunk", 1e-3));
        ck_assert_ok(mtl_model_build(t, 16, 5));
        const char *want[4] = {"head 0 is 'cls' in the checkpoint, 'klass'",
                               "the loss is cross_entropy in the checkpoint, bce",
                               "head 'cls' has 1 layers in the checkpoint, 2",
                               "option 'gelu_tanh' is 1 in the checkpoint, 0"};
        expect_mismatch(path, t, NULL, NULL, MTL_ERR_SHAPE, want[variant]);
        mtl_model_free(t);
    }

    /* same architecture, other optimizer kind / weighting method */
    mtl_model *t3 = make_model(11, 0.3);
    mtl_optimizer *o3 = NULL;
    ck_assert_ok(mtl_optimizer_create(&o3, t3, "sgd"));
    expect_mismatch(path, t3, o3, NULL, MTL_ERR_SHAPE, "the optimizer is adam in the checkpoint");
    mtl_weighting *w3 = NULL;
    ck_assert_ok(mtl_weighting_create(&w3, "ew", 2));
    expect_mismatch(path, t3, NULL, w3, MTL_ERR_SHAPE, "the weighting is fixed in the checkpoint");
    /* keys the file leaves at their defaults (total_steps = 0: unset) are set back over the
     * values the target was given: the optimizer becomes the checkpoint's */
    mtl_optimizer *o6 = NULL;
    ck_assert_ok(mtl_optimizer_create(&o6, t3, "adam"));
    ck_assert_ok(mtl_optimizer_set_string(o6, "schedule", "cosine"));
    ck_assert_ok(mtl_optimizer_set_int(o6, "total_steps", 20));
    ck_assert_ok(mtl_optimizer_set_int(o6, "amsgrad", 1));
    ck_assert_ok(mtl_checkpoint_load_into(path, t3, o6, NULL));
    double v;
    ck_assert_ok(mtl_optimizer_get_double(o6, "total_steps", &v));
    ck_assert(v == 0.0);
    ck_assert_ok(mtl_optimizer_get_double(o6, "amsgrad", &v));
    ck_assert(v == 0.0);
    ck_assert_str_eq(mtli_optimizer_get_string(o6, "schedule"), "constant");
    mtl_optimizer_free(o6);
    /* a weighting of another task count, an optimizer of another model */
    mtl_weighting *w4 = NULL;
    ck_assert_ok(mtl_weighting_create(&w4, "fixed", 3));
    expect_mismatch(path, t3, NULL, w4, MTL_ERR_INVALID_ARGUMENT, "3 tasks");
    expect_mismatch(path, t3, o, NULL, MTL_ERR_INVALID_ARGUMENT, "another model");
    /* the file lacks what is asked for */
    const char *bare = in_dir("bare.ckpt");
    ck_assert_ok(mtl_checkpoint_save(bare, m, NULL, NULL));
    mtl_optimizer *o5 = NULL;
    ck_assert_ok(mtl_optimizer_create(&o5, t3, "adam"));
    expect_mismatch(bare, t3, o5, NULL, MTL_ERR_NOT_FOUND, "no optimizer state");
    mtl_weighting *w5 = make_weighting();
    expect_mismatch(bare, t3, NULL, w5, MTL_ERR_NOT_FOUND, "no weighting state");
    /* an unbuilt model */
    mtl_model *ub = NULL;
    int64_t shape[1] = {IN};
    ck_assert_ok(mtl_model_create(&ub, MTL_FLOAT32, 1, shape));
    ck_assert_status(mtl_checkpoint_load_into(path, ub, NULL, NULL), MTL_ERR_STATE);
    ck_assert_status(mtl_checkpoint_save(path, ub, NULL, NULL), MTL_ERR_STATE);
    mtl_model_free(ub);
    mtl_weighting_free(w5);
    mtl_optimizer_free(o5);
    mtl_weighting_free(w4);
    mtl_weighting_free(w3);
    mtl_optimizer_free(o3);
    mtl_model_free(t3);
    mtl_weighting_free(w);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

START_TEST(null_arguments_are_errors)
{
    mtl_model *m = make_tiny(1);
    mtl_model *lm = NULL;
    ck_assert_status(mtl_checkpoint_save(NULL, m, NULL, NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_checkpoint_save(in_dir("x"), NULL, NULL, NULL),
                     MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_checkpoint_save("", m, NULL, NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_checkpoint_load(NULL, &lm, NULL, NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_checkpoint_load(in_dir("x"), NULL, NULL, NULL),
                     MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_checkpoint_load_into(NULL, m, NULL, NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_checkpoint_load_into(in_dir("x"), NULL, NULL, NULL),
                     MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_checkpoint_describe(NULL, NULL, 0, NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ok(mtl_checkpoint_save(in_dir("x"), m, NULL, NULL));
    ck_assert_status(mtl_checkpoint_describe(in_dir("x"), NULL, 10, NULL),
                     MTL_ERR_INVALID_ARGUMENT);
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, "ew", 2));
    ck_assert_status(mtl_checkpoint_save(in_dir("x"), m, NULL, w), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "2 tasks"));
    mtl_weighting_free(w);
    mtl_model_free(m);
}
END_TEST

/* ---- atomic saves ---------------------------------------------------------------------- */

START_TEST(failed_saves_leave_the_previous_file_intact)
{
    mtl_model *m = make_model(12, 0.3);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "adam"));
    const char *path = in_dir("model.ckpt");
    ck_assert_ok(mtl_checkpoint_save(path, m, o, NULL));
    size_t n0;
    unsigned char *b0 = read_all(path, &n0);
    train(m, o, NULL, 0, 2);

    /* the path is a directory */
    const char *dir = in_dir("adir");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_status(mtl_checkpoint_save(dir, m, o, NULL), MTL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "adir"));
    struct stat st;
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    /* a missing directory */
    ck_assert_status(mtl_checkpoint_save(in_dir("no/such/dir.ckpt"), m, o, NULL), MTL_ERR_IO);
    ck_assert_int_eq(count_entries(g_dir), 2); /* model.ckpt, adir: no temporary files */

    /* the disk fills up half-way through the write (a file size limit in this forked test) */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {(rlim_t)(n0 / 2), (rlim_t)(n0 / 2)};
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    rl.rlim_max = old.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ck_assert_status(mtl_checkpoint_save(path, m, o, NULL), MTL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "model.ckpt"));
    rl.rlim_cur = old.rlim_cur;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    size_t n1;
    unsigned char *b1 = read_all(path, &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert(memcmp(b0, b1, n0) == 0);
    ck_assert_int_eq(count_entries(g_dir), 2);
    free(b1);

    /* a save that succeeds replaces the file; its mode follows the file it replaces */
    ck_assert_int_eq(chmod(path, 0640), 0);
    ck_assert_ok(mtl_checkpoint_save(path, m, o, NULL));
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    b1 = read_all(path, &n1);
    ck_assert(n1 != n0 || memcmp(b0, b1, n0) != 0);
    ck_assert_int_eq(count_entries(g_dir), 2);
    free(b1);
    free(b0);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

/* ---- describe ----------------------------------------------------------------------------- */

START_TEST(describe_summarises_the_file)
{
    mtl_model *m = make_model(13, 0.3);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "adam"));
    cfg_adam(o);
    mtl_weighting *w = make_weighting();
    train(m, o, w, 0, 5);
    const char *path = in_dir("d.ckpt");
    ck_assert_ok(mtl_checkpoint_save(path, m, o, w));
    size_t need = 0;
    ck_assert_status(mtl_checkpoint_describe(path, NULL, 0, &need), MTL_ERR_RANGE);
    ck_assert_uint_gt(need, 100);
    char *buf = malloc(need);
    size_t need2 = 0;
    ck_assert_ok(mtl_checkpoint_describe(path, buf, need, &need2));
    ck_assert_uint_eq(need, need2);
    ck_assert_uint_eq(strlen(buf) + 1, need);
    const char *expect[] = {"format version 1", "libmtl " MTL_VERSION_STRING,
                            "input: float32 [6]", "trunk: 6 layers", "dropout p=0.3",
                            "batch_norm momentum=0.2", "gelu gelu_tanh=1", "heads: 2",
                            "cls: 1 layers, loss cross_entropy label_smoothing=0.1",
                            "(3 class weights)", "reg: 4 layers, loss huber delta=0.7",
                            "optimizer: adam, step 5", "schedule=\"cosine\"", "amsgrad=1",
                            "lr scale of trunk: 0.5", "weighting: fixed, 2 tasks, weights 1 0.5, 3 state values",
                            "l2: trunk 0.001"};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        ck_assert_msg(strstr(buf, expect[i]) != NULL, "summary lacks '%s':\n%s", expect[i], buf);
    char want[64];
    snprintf(want, sizeof want, "parameters: %lld trainable (%lld shared)",
             (long long)mtl_model_num_params(m), (long long)mtl_model_num_shared_params(m));
    ck_assert_msg(strstr(buf, want) != NULL, "summary lacks '%s':\n%s", want, buf);
    /* a short buffer: truncated, NUL-terminated, RANGE */
    char small[16];
    ck_assert_status(mtl_checkpoint_describe(path, small, sizeof small, &need2), MTL_ERR_RANGE);
    ck_assert_uint_eq(strlen(small), 15);
    ck_assert(strncmp(small, buf, 15) == 0);
    ck_assert_uint_eq(need2, need);
    /* a corrupted file is an error like for a load */
    size_t n;
    unsigned char *b = read_all(path, &n);
    b[n / 2] ^= 0x10;
    write_all(in_dir("bad"), b, n);
    ck_assert_status(mtl_checkpoint_describe(in_dir("bad"), buf, need, NULL), MTL_ERR_FORMAT);
    free(b);
    free(buf);
    mtl_weighting_free(w);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

/* ---- allocation failures ---------------------------------------------------------------- */

static mtl_status load_all(void *ctx)
{
    const char *path = ctx;
    mtl_model *m = (mtl_model *)1;
    mtl_optimizer *o = (mtl_optimizer *)1;
    mtl_weighting *w = (mtl_weighting *)1;
    mtl_status st = mtl_checkpoint_load(path, &m, &o, &w);
    if (st != MTL_OK) {
        ck_assert(m == NULL && o == NULL && w == NULL);
        return st;
    }
    mtl_weighting_free(w);
    mtl_optimizer_free(o);
    mtl_model_free(m);
    return st;
}

typedef struct into_ctx {
    const char *path;
    mtl_model *m;
    mtl_optimizer *o;
    mtl_weighting *w;
    float before[512];
} into_ctx;

static mtl_status load_into_unchanged(void *p)
{
    into_ctx *c = p;
    mtl_status st = mtl_checkpoint_load_into(c->path, c->m, c->o, c->w);
    if (st != MTL_OK) {
        ck_assert(memcmp(c->before, c->m->params, c->m->nparams * 4) == 0);
        ck_assert_int_eq(mtl_optimizer_step_count(c->o), 0);
        double mom;
        ck_assert_ok(mtl_optimizer_get_double(c->o, "momentum", &mom));
        ck_assert(mom == 0.0);
        ck_assert_str_eq(mtli_optimizer_get_string(c->o, "milestones"), "");
        ck_assert_int_eq(mtli_optimizer_num_buffers(c->o), 0);
        double wt[2];
        ck_assert_ok(mtl_weighting_get_weights(c->w, wt, 2));
        ck_assert(wt[0] == 1.0 && wt[1] == 1.0);
        ck_assert(c->w->fixed[1] == 1.0);
    }
    return st;
}

typedef struct save_ctx {
    const char *path;
    mtl_model *m;
    mtl_optimizer *o;
    mtl_weighting *w;
    unsigned char *old;
    size_t nold;
} save_ctx;

static mtl_status save_intact(void *p)
{
    save_ctx *c = p;
    mtl_status st = mtl_checkpoint_save(c->path, c->m, c->o, c->w);
    if (st != MTL_OK) {
        size_t n;
        unsigned char *b = read_all(c->path, &n);
        ck_assert(n == c->nold && memcmp(b, c->old, n) == 0);
        free(b);
        ck_assert_int_eq(count_entries(g_dir), 1);
    }
    return st;
}

START_TEST(allocation_failures_fail_cleanly)
{
    mtl_model *m = make_model(14, 0.3);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "sgd"));
    cfg_sgd(o);
    mtl_weighting *w = make_weighting();
    train(m, o, w, 0, 3);
    const char *path = in_dir("oom.ckpt");
    ck_assert_ok(mtl_checkpoint_save(path, m, o, w));
    ck_assert_int_gt(mtl_test_oom_sweep(load_all, (void *)path), 5);

    /* load_into: a target whose optimizer must allocate its momentum buffer and parse its
     * milestones during the commit */
    mtl_weighting *fresh = NULL;
    ck_assert_ok(mtl_weighting_create(&fresh, "fixed", 2));
    into_ctx ic = {path, make_model(15, 0.3), NULL, fresh, {0}};
    ck_assert_ok(mtl_optimizer_create(&ic.o, ic.m, "sgd"));
    snapshot(ic.m, ic.before);
    ck_assert_int_gt(mtl_test_oom_sweep(load_into_unchanged, &ic), 3);
    ck_assert(memcmp(ic.m->params, m->params, m->nparams * 4) == 0);
    ck_assert_int_eq(mtli_optimizer_num_buffers(ic.o), 1);
    ck_assert(ic.w->fixed[1] == 0.5);

    /* save: the previous file survives every failure */
    save_ctx sc = {path, ic.m, ic.o, ic.w, NULL, 0};
    train(ic.m, ic.o, ic.w, 3, 4);
    sc.old = read_all(path, &sc.nold);
    ck_assert_int_gt(mtl_test_oom_sweep(save_intact, &sc), 1);
    free(sc.old);
    mtl_weighting_free(ic.w);
    mtl_optimizer_free(ic.o);
    mtl_model_free(ic.m);
    mtl_weighting_free(w);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

/* Every layer kind's options survive a checkpoint: a convolutional and a recurrent model are
 * saved, loaded into new handles, and predict exactly what the originals predict. */
static void round_trip_predicts_the_same(mtl_model *m, const mtl_tensor *x, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "/tmp/mtl_ck_kinds_%d_%s.ckpt", (int)getpid(), name);
    ck_assert_ok(mtl_checkpoint_save(path, m, NULL, NULL));
    mtl_model *l = NULL;
    ck_assert_ok(mtl_checkpoint_load(path, &l, NULL, NULL));
    ck_assert_int_eq(mtl_model_num_params(l), mtl_model_num_params(m));
    ck_assert_int_eq(l->grad_layers, m->grad_layers);
    ck_assert_ok(mtl_model_predict(m, x));
    ck_assert_ok(mtl_model_predict(l, x));
    for (int h = 0; h < mtl_model_num_heads(m); h++) {
        int64_t n = mtl_model_output_batch(m) * mtl_head_output_size(mtl_model_head_at(m, h));
        mtl_tensor *a = NULL, *b = NULL;
        ck_assert_ok(mtl_tensor_create(&a, MTL_FLOAT32, 1, &n));
        ck_assert_ok(mtl_tensor_create(&b, MTL_FLOAT32, 1, &n));
        ck_assert_ok(mtl_model_output(m, h, a, MTL_OUTPUT_RAW));
        ck_assert_ok(mtl_model_output(l, h, b, MTL_OUTPUT_RAW));
        ck_assert_mem_eq(mtl_tensor_data(a), mtl_tensor_data(b), (size_t)n * sizeof(float));
        mtl_tensor_free(a);
        mtl_tensor_free(b);
    }
    mtl_model_free(l);
    unlink(path);
}

START_TEST(vision_and_sequence_layers_round_trip)
{
    mtl_model *m = NULL;
    int64_t img[3] = {1, 12, 12};
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 3, img));
    mtl_trunk *t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_layer(t, "conv2d", NULL));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "out", 4));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "kernel", 3));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "stride", 2));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "padding", 1));
    ck_assert_ok(mtl_trunk_add_layer(t, "relu", NULL));
    ck_assert_ok(mtl_trunk_add_layer(t, "avg_pool2d", NULL));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "kernel", 2));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "count_include_pad", 0));
    ck_assert_ok(mtl_trunk_add_layer(t, "conv2d", NULL));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "out", 3));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "kernel", 2));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "dilation", 2));
    ck_assert_ok(mtl_trunk_add_layer(t, "flatten", NULL));
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "a"));
    ck_assert_ok(mtl_head_add_linear(h, 3));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_ok(mtl_model_set_double(m, "grad_layers", 1));
    ck_assert_ok(mtl_model_build(m, 4, 1));
    mtl_tensor *x = NULL;
    int64_t xs[4] = {2, 1, 12, 12};
    ck_assert_ok(mtl_tensor_create(&x, MTL_FLOAT32, 4, xs));
    for (int i = 0; i < 288; i++)
        ((float *)mtl_tensor_data(x))[i] = (float)((i * 37) % 11) - 5.0f;
    round_trip_predicts_the_same(m, x, "conv");
    mtl_tensor_free(x);
    mtl_model_free(m);

    int64_t seq[1] = {6};
    ck_assert_ok(mtl_model_create(&m, MTL_INT32, 1, seq));
    t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_layer(t, "embedding", NULL));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "num_embeddings", 9));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "out", 4));
    ck_assert_ok(mtl_trunk_set_string(t, -1, "pooling", "none"));
    ck_assert_ok(mtl_trunk_add_layer(t, "lstm", NULL));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "hidden", 5));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "bidirectional", 1));
    ck_assert_ok(mtl_model_add_head(m, &h, "tags"));
    ck_assert_ok(mtl_head_add_linear(h, 3));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_ok(mtl_model_add_head(m, &h, "sentence"));
    ck_assert_ok(mtl_head_add_layer(h, "gru", NULL));
    ck_assert_ok(mtl_head_set_int(h, -1, "hidden", 4));
    ck_assert_ok(mtl_head_set_string(h, -1, "pooling", "last"));
    ck_assert_ok(mtl_head_add_linear(h, 2));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_ok(mtl_model_build(m, 4, 2));
    int64_t is[2] = {2, 6};
    ck_assert_ok(mtl_tensor_create(&x, MTL_INT32, 2, is));
    const int32_t ids[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, -1, -1, -1};
    memcpy(mtl_tensor_data(x), ids, sizeof ids);
    round_trip_predicts_the_same(m, x, "seq");
    mtl_tensor_free(x);
    mtl_model_free(m);
}
END_TEST

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, resume_is_bit_identical_adam_dropout_batch_norm);
    tcase_add_test(tc, vision_and_sequence_layers_round_trip);
    tcase_add_test(tc, resume_is_bit_identical_sgd_momentum_schedule);
    tcase_add_test(tc, resume_is_bit_identical_other_optimizers);
    tcase_add_test(tc, resume_restores_learned_weightings);
    tcase_add_test(tc, model_only_checkpoint_predicts_identically);
    tcase_add_test(tc, architecture_round_trips_every_option);
    tcase_add_test(tc, crc32_matches_the_standard_check_value);
    tcase_add_test(tc, layout_is_as_documented_and_deterministic);
    tcase_add_test(tc, every_truncation_is_rejected);
    tcase_add_test(tc, every_flipped_byte_is_rejected);
    tcase_add_test(tc, wrong_magic_version_and_framing_are_reported);
    tcase_add_test(tc, unknown_sections_optional_skipped_required_refused);
    tcase_add_test(tc, crafted_values_with_valid_checksums_are_refused);
    tcase_add_test(tc, load_into_mismatch_is_refused_and_changes_nothing);
    tcase_add_test(tc, null_arguments_are_errors);
    tcase_add_test(tc, failed_saves_leave_the_previous_file_intact);
    tcase_add_test(tc, describe_summarises_the_file);
    tcase_add_test(tc, allocation_failures_fail_cleanly);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(checkpoint_suite)
