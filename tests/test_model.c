/* Whole-model behaviour: gradients of the joint objective, masks, determinism, numeric
 * failures, parameter names, inference, errors and allocation behaviour. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mtl/mtl.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "model/model_internal.h"
#include "test_main.h"
#include "test_oom.h"

#define IN 5

static mtl_tensor *tensor2(mtl_dtype dt, int64_t a, int64_t b)
{
    mtl_tensor *t = NULL;
    int64_t s[2] = {a, b};
    ck_assert_ok(mtl_tensor_create(&t, dt, 2, s));
    return t;
}

static mtl_tensor *tensor1(mtl_dtype dt, int64_t a)
{
    mtl_tensor *t = NULL;
    int64_t s[1] = {a};
    ck_assert_ok(mtl_tensor_create(&t, dt, 1, s));
    return t;
}

static void fill_uniform(mtl_tensor *t, mtli_rng *r, float lo, float hi)
{
    float *d = mtl_tensor_data(t);
    for (int64_t i = 0; i < mtl_tensor_numel(t); i++)
        d[i] = lo + (hi - lo) * mtli_rng_uniform(r);
}

/* Four heads, one per loss family, over a smooth trunk (no kinks, so finite differences are
 * exact up to rounding). */
static mtl_model *make_model(uint64_t seed, int64_t max_batch)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {IN};
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 1, shape));
    mtl_trunk *t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_linear(t, 8));
    ck_assert_ok(mtl_trunk_add_layer(t, "tanh", NULL));
    ck_assert_ok(mtl_trunk_add_linear(t, 6));
    ck_assert_ok(mtl_trunk_add_layer(t, "layer_norm", NULL));
    ck_assert_ok(mtl_trunk_add_layer(t, "gelu", NULL));
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "cls"));
    ck_assert_ok(mtl_head_add_linear(h, 4));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_ok(mtl_head_set_loss_double(h, "label_smoothing", 0.1));
    ck_assert_ok(mtl_model_add_head(m, &h, "reg"));
    ck_assert_ok(mtl_head_add_linear(h, 5));
    ck_assert_ok(mtl_head_add_layer(h, "sigmoid", NULL));
    ck_assert_ok(mtl_head_add_linear(h, 2));
    ck_assert_ok(mtl_head_set_loss(h, "mse"));
    ck_assert_ok(mtl_model_add_head(m, &h, "tags"));
    ck_assert_ok(mtl_head_add_linear(h, 3));
    ck_assert_ok(mtl_head_set_loss(h, "bce"));
    ck_assert_ok(mtl_model_add_head(m, &h, "robust"));
    ck_assert_ok(mtl_head_add_linear(h, 1));
    ck_assert_ok(mtl_head_set_loss(h, "huber"));
    ck_assert_ok(mtl_head_set_loss_double(h, "delta", 0.5));
    ck_assert_ok(mtl_model_build(m, max_batch, seed));
    return m;
}

typedef struct batch {
    size_t B;
    mtl_tensor *x, *y[4], *mask[4];
} batch;

static void make_batch(batch *b, size_t B, uint64_t seed)
{
    mtli_rng r;
    mtli_rng_seed(&r, seed);
    memset(b, 0, sizeof *b);
    b->B = B;
    b->x = tensor2(MTL_FLOAT32, (int64_t)B, IN);
    fill_uniform(b->x, &r, -2, 2);
    b->y[0] = tensor1(MTL_INT32, (int64_t)B);
    for (size_t i = 0; i < B; i++)
        ((int32_t *)mtl_tensor_data(b->y[0]))[i] = (int32_t)mtli_rng_below(&r, 4);
    b->y[1] = tensor2(MTL_FLOAT32, (int64_t)B, 2);
    fill_uniform(b->y[1], &r, -1, 1);
    b->y[2] = tensor2(MTL_FLOAT32, (int64_t)B, 3);
    for (size_t i = 0; i < 3 * B; i++)
        ((float *)mtl_tensor_data(b->y[2]))[i] = (float)mtli_rng_below(&r, 2);
    b->y[3] = tensor2(MTL_FLOAT32, (int64_t)B, 1);
    fill_uniform(b->y[3], &r, -3, 3);
}

static void free_batch(batch *b)
{
    mtl_tensor_free(b->x);
    for (int t = 0; t < 4; t++) {
        mtl_tensor_free(b->y[t]);
        mtl_tensor_free(b->mask[t]);
    }
}

static const mtl_tensor *const *targets(const batch *b) { return (const mtl_tensor *const *)b->y; }

static double objective(mtl_model *m, const batch *b, const double *w, const mtl_tensor *const *masks)
{
    float L[4];
    ck_assert_ok(mtl_model_compute_losses(m, b->x, targets(b), masks, L));
    double obj = 0;
    for (int t = 0; t < 4; t++)
        obj += w[t] * L[t];
    for (int i = 0; i < m->nnamed; i++) {
        mtli_named_param *p = &m->named[i];
        if (p->is_state || p->no_decay)
            continue;
        double lam = p->head < 0 ? m->l2_trunk : m->l2_heads;
        for (size_t k = 0; k < p->count; k++)
            obj += lam * (double)p->data[k] * p->data[k];
    }
    return obj;
}

/* d(objective)/d(every parameter) against central differences; objective = weighted losses
 * (fixed weights) + L2 penalties. Tolerance |a - n| <= 1e-3 + 1e-2 |n| (float32 forward,
 * eps 1e-3). */
START_TEST(whole_model_gradient_matches_finite_differences)
{
    mtl_model *m = make_model(3, 16);
    ck_assert_ok(mtl_model_set_double(m, "l2_trunk", 0.01));
    ck_assert_ok(mtl_model_set_double(m, "l2_heads", 0.02));
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, "fixed", 4));
    const double wt[4] = {1.0, 0.5, 2.0, 1.5};
    ck_assert_ok(mtl_weighting_set_weights(w, wt, 4));
    batch b;
    make_batch(&b, 7, 11);
    float L[4];
    ck_assert_ok(mtl_model_forward_backward(m, w, b.x, targets(&b), NULL, L));
    float *grad = malloc(m->nparams * sizeof(float));
    memcpy(grad, m->grads, m->nparams * sizeof(float));
    const float eps = 1e-3f;
    double worst = 0;
    for (size_t i = 0; i < m->nparams; i++) {
        float keep = m->params[i];
        m->params[i] = keep + eps;
        double fp = objective(m, &b, wt, NULL);
        m->params[i] = keep - eps;
        double fm = objective(m, &b, wt, NULL);
        m->params[i] = keep;
        double num = (fp - fm) / (2.0 * eps);
        double err = fabs(num - grad[i]);
        ck_assert_msg(err <= 1e-3 + 1e-2 * fabs(num), "param %zu: analytic %g numeric %g", i,
                      (double)grad[i], num);
        if (err > worst)
            worst = err;
    }
    /* the gradient with respect to the input, through the trunk's backward */
    float *dx = calloc(b.B * IN, sizeof(float));
    float *junk = calloc(m->nparams, sizeof(float));
    mtli_stack_forward(&m->trunk.s, mtl_tensor_data(b.x), b.B, true, &m->rng);
    mtli_stack_backward(&m->trunk.s, mtl_tensor_data(b.x), m->dz, dx, junk, b.B);
    float *xd = mtl_tensor_data(b.x);
    for (size_t i = 0; i < b.B * IN; i++) {
        float keep = xd[i];
        xd[i] = keep + eps;
        double fp = objective(m, &b, wt, NULL);
        xd[i] = keep - eps;
        double fm = objective(m, &b, wt, NULL);
        xd[i] = keep;
        double num = (fp - fm) / (2.0 * eps);
        ck_assert_msg(fabs(num - dx[i]) <= 1e-3 + 1e-2 * fabs(num), "input %zu: %g vs %g", i,
                      (double)dx[i], num);
    }
    free(dx);
    free(junk);
    free(grad);
    free_batch(&b);
    mtl_weighting_free(w);
    mtl_model_free(m);
}
END_TEST

/* A masked sample contributes nothing to its task and everything to the others: the masked
 * joint gradient equals the sum of (task 0 on the batch without that sample) and (tasks 1-3
 * on the full batch). */
START_TEST(masked_sample_contributes_nothing_to_its_task_only)
{
    mtl_model *m = make_model(5, 16);
    batch b, small;
    make_batch(&b, 6, 21);
    b.mask[0] = tensor1(MTL_FLOAT32, 6);
    ck_assert_ok(mtl_tensor_fill(b.mask[0], 1));
    ((float *)mtl_tensor_data(b.mask[0]))[2] = 0.0f;
    float L[4], Ls[4], Lr[4];
    ck_assert_ok(mtl_model_forward_backward(m, NULL, b.x, targets(&b),
                                            (const mtl_tensor *const *)b.mask, L));
    float *g = malloc(m->nparams * sizeof(float));
    memcpy(g, m->grads, m->nparams * sizeof(float));
    /* task 0 alone on the 5 other samples */
    make_batch(&small, 5, 99);
    for (size_t i = 0, j = 0; i < 6; i++) {
        if (i == 2)
            continue;
        memcpy((float *)mtl_tensor_data(small.x) + j * IN, (float *)mtl_tensor_data(b.x) + i * IN,
               IN * sizeof(float));
        ((int32_t *)mtl_tensor_data(small.y[0]))[j] = ((int32_t *)mtl_tensor_data(b.y[0]))[i];
        j++;
    }
    const mtl_tensor *only0[4] = {small.y[0], NULL, NULL, NULL};
    ck_assert_ok(mtl_model_forward_backward(m, NULL, small.x, only0, NULL, Ls));
    float *g0 = malloc(m->nparams * sizeof(float));
    memcpy(g0, m->grads, m->nparams * sizeof(float));
    const mtl_tensor *rest[4] = {NULL, b.y[1], b.y[2], b.y[3]};
    ck_assert_ok(mtl_model_forward_backward(m, NULL, b.x, rest, NULL, Lr));
    ck_assert(isnan(Lr[0]));
    ck_assert_float_eq_tol(L[0], Ls[0], 1e-6);
    for (int t = 1; t < 4; t++)
        ck_assert_float_eq_tol(L[t], Lr[t], 1e-6);
    for (size_t i = 0; i < m->nparams; i++)
        ck_assert_msg(fabsf(g[i] - (g0[i] + m->grads[i])) <= 1e-5f + 1e-4f * fabsf(g[i]),
                      "param %zu: %g vs %g", i, (double)g[i], (double)(g0[i] + m->grads[i]));
    /* the class-id sentinel -1 is the same as the mask */
    ((int32_t *)mtl_tensor_data(b.y[0]))[2] = -1;
    float L2[4];
    ck_assert_ok(mtl_model_forward_backward(m, NULL, b.x, targets(&b), NULL, L2));
    for (size_t i = 0; i < m->nparams; i++)
        ck_assert_float_eq_tol(m->grads[i], g[i], 1e-6);
    free(g);
    free(g0);
    free_batch(&b);
    free_batch(&small);
    mtl_model_free(m);
}
END_TEST

static mtl_model *make_dropout_model(uint64_t seed)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {IN};
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 1, shape));
    mtl_trunk *t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_linear(t, 16));
    ck_assert_ok(mtl_trunk_add_layer(t, "batch_norm", NULL));
    ck_assert_ok(mtl_trunk_add_layer(t, "relu", NULL));
    ck_assert_ok(mtl_trunk_add_layer(t, "dropout", NULL));
    ck_assert_ok(mtl_trunk_set_double(t, -1, "p", 0.3));
    mtl_head *h;
    for (int k = 0; k < 4; k++) {
        const char *names[4] = {"a", "b", "c", "d"};
        const char *losses[4] = {"cross_entropy", "mse", "bce", "huber"};
        const int64_t outs[4] = {4, 2, 3, 1};
        ck_assert_ok(mtl_model_add_head(m, &h, names[k]));
        ck_assert_ok(mtl_head_add_linear(h, outs[k]));
        ck_assert_ok(mtl_head_set_loss(h, losses[k]));
    }
    ck_assert_ok(mtl_model_build(m, 32, seed));
    return m;
}

START_TEST(same_seed_gives_bit_identical_training)
{
    float *final[2];
    for (int run = 0; run < 2; run++) {
        mtl_model *m = make_dropout_model(42);
        mtl_optimizer *o = NULL;
        ck_assert_ok(mtl_optimizer_create(&o, m, "adamw"));
        for (int s = 0; s < 20; s++) {
            batch b;
            make_batch(&b, 32, 1000 + (uint64_t)s);
            ck_assert_ok(mtl_model_train_step(m, o, NULL, b.x, targets(&b), NULL, NULL));
            free_batch(&b);
        }
        final[run] = malloc((m->nparams + m->nstate) * sizeof(float));
        memcpy(final[run], m->params, m->nparams * sizeof(float));
        memcpy(final[run] + m->nparams, m->state, m->nstate * sizeof(float));
        if (run == 1)
            ck_assert_mem_eq(final[0], final[1], (m->nparams + m->nstate) * sizeof(float));
        mtl_optimizer_free(o);
        mtl_model_free(m);
    }
    free(final[0]);
    free(final[1]);
}
END_TEST

START_TEST(non_finite_loss_changes_nothing)
{
    mtl_model *m = make_dropout_model(1);
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "sgd"));
    batch b;
    make_batch(&b, 32, 5);
    ck_assert_ok(mtl_model_train_step(m, o, NULL, b.x, targets(&b), NULL, NULL));
    size_t bytes = (m->nparams + m->nstate) * sizeof(float);
    float *before = malloc(bytes);
    memcpy(before, m->params, m->nparams * sizeof(float));
    memcpy(before + m->nparams, m->state, m->nstate * sizeof(float));
    mtli_rng rng_before = m->rng;
    ((float *)mtl_tensor_data(b.x))[7] = NAN;
    float L[4];
    ck_assert_status(mtl_model_train_step(m, o, NULL, b.x, targets(&b), NULL, L),
                     MTL_ERR_NUMERIC);
    /* relu maps the NaN to 0 in the forward, so here it is the gradient that is caught */
    ck_assert_msg(strstr(mtl_last_error(), "not finite") != NULL ||
                      strstr(mtl_last_error(), "nan") != NULL,
                  "%s", mtl_last_error());
    ck_assert_mem_eq(before, m->params, m->nparams * sizeof(float));
    ck_assert_mem_eq(before + m->nparams, m->state, m->nstate * sizeof(float));
    ck_assert_mem_eq(&rng_before, &m->rng, sizeof rng_before);
    ck_assert_int_eq(mtl_optimizer_step_count(o), 1);
    /* an infinite input */
    ((float *)mtl_tensor_data(b.x))[7] = INFINITY;
    ck_assert_status(mtl_model_train_step(m, o, NULL, b.x, targets(&b), NULL, L),
                     MTL_ERR_NUMERIC);
    ck_assert_mem_eq(before, m->params, m->nparams * sizeof(float));
    /* an infinite target is bad input, caught before anything runs */
    ((float *)mtl_tensor_data(b.x))[7] = 0.5f;
    ((float *)mtl_tensor_data(b.y[1]))[0] = INFINITY;
    ck_assert_status(mtl_model_train_step(m, o, NULL, b.x, targets(&b), NULL, L),
                     MTL_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(mtl_last_error(), "inf") != NULL, "%s", mtl_last_error());
    ck_assert_mem_eq(before, m->params, m->nparams * sizeof(float));
    free(before);
    free_batch(&b);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

START_TEST(steady_state_step_allocates_nothing)
{
    mtl_model *m = make_dropout_model(1);
    mtl_optimizer *o = NULL;
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "adam"));
    ck_assert_ok(mtl_weighting_create(&w, "ew", 4));
    batch b;
    make_batch(&b, 32, 5);
    ck_assert_ok(mtl_model_train_step(m, o, w, b.x, targets(&b), NULL, NULL));
    mtli_alloc_reset_count();
    float L[4];
    for (int s = 0; s < 5; s++)
        ck_assert_ok(mtl_model_train_step(m, o, w, b.x, targets(&b), NULL, L));
    ck_assert_ok(mtl_model_predict(m, b.x));
    ck_assert_int_eq(mtli_alloc_count(), 0);
    free_batch(&b);
    mtl_weighting_free(w);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

START_TEST(parameter_names_shapes_and_round_trip)
{
    mtl_model *m = make_dropout_model(2);
    const char *expect[] = {"trunk.0.weight", "trunk.0.bias", "trunk.1.weight", "trunk.1.bias",
                            "heads.a.0.weight", "heads.a.0.bias"};
    for (int i = 0; i < 6; i++)
        ck_assert_str_eq(mtl_model_param_name(m, i), expect[i]);
    int n = mtl_model_param_count(m);
    ck_assert_str_eq(mtl_model_param_name(m, n - 1), "trunk.1.running_var");
    ck_assert_ptr_null(mtl_model_param_name(m, n));
    int64_t shape[4];
    int nd;
    ck_assert_ok(mtl_model_param_shape(m, "trunk.0.weight", shape, 4, &nd));
    ck_assert_int_eq(nd, 2);
    ck_assert_int_eq(shape[0], 16);
    ck_assert_int_eq(shape[1], IN);
    ck_assert_int_eq(mtl_model_num_shared_params(m), 16 * IN + 16 + 16 + 16);
    mtl_tensor *p = tensor2(MTL_FLOAT32, 4, 16);
    ck_assert_ok(mtl_tensor_fill(p, 0.25));
    ck_assert_ok(mtl_model_set_param(m, "heads.a.0.weight", p));
    mtl_tensor *q = tensor1(MTL_FLOAT32, 64);
    ck_assert_ok(mtl_model_get_param(m, "heads.a.0.weight", q));
    ck_assert_float_eq(((float *)mtl_tensor_data(q))[63], 0.25f);
    ck_assert_status(mtl_model_get_param(m, "heads.zz.0.weight", q), MTL_ERR_NOT_FOUND);
    ck_assert_msg(strstr(mtl_last_error(), "heads.zz.0.weight") != NULL, "%s", mtl_last_error());
    mtl_tensor *wrong = tensor1(MTL_FLOAT32, 3);
    ck_assert_status(mtl_model_set_param(m, "heads.a.0.weight", wrong), MTL_ERR_SHAPE);
    ((float *)mtl_tensor_data(p))[0] = NAN;
    ck_assert_status(mtl_model_set_param(m, "heads.a.0.weight", p), MTL_ERR_NUMERIC);
    ck_assert_status(mtl_model_get_grad(m, "trunk.1.running_mean", wrong),
                     MTL_ERR_INVALID_ARGUMENT);
    mtl_tensor_free(p);
    mtl_tensor_free(q);
    mtl_tensor_free(wrong);
    mtl_model_free(m);
}
END_TEST

START_TEST(predict_outputs_and_probabilities)
{
    mtl_model *m = make_model(9, 16);
    batch b;
    make_batch(&b, 5, 3);
    ck_assert_status(mtl_model_output(m, 0, b.y[1], MTL_OUTPUT_RAW), MTL_ERR_STATE);
    ck_assert_ok(mtl_model_predict(m, b.x));
    ck_assert_int_eq(mtl_model_output_batch(m), 5);
    mtl_tensor *p = tensor2(MTL_FLOAT32, 5, 4), *raw = tensor2(MTL_FLOAT32, 5, 4);
    ck_assert_ok(mtl_model_output(m, 0, p, MTL_OUTPUT_PROBABILITIES));
    ck_assert_ok(mtl_model_output(m, 0, raw, MTL_OUTPUT_RAW));
    const float *pd = mtl_tensor_data(p), *rd = mtl_tensor_data(raw);
    for (int i = 0; i < 5; i++) {
        double s = 0, z = 0;
        for (int c = 0; c < 4; c++) {
            s += pd[i * 4 + c];
            z += exp(rd[i * 4 + c]);
        }
        ck_assert_double_eq_tol(s, 1.0, 1e-5);
        ck_assert_double_eq_tol(pd[i * 4], exp(rd[i * 4]) / z, 1e-5);
    }
    mtl_tensor *tags = tensor2(MTL_FLOAT32, 5, 3), *rawtags = tensor2(MTL_FLOAT32, 5, 3);
    ck_assert_ok(mtl_model_output(m, 2, tags, MTL_OUTPUT_PROBABILITIES));
    ck_assert_ok(mtl_model_output(m, 2, rawtags, MTL_OUTPUT_RAW));
    ck_assert_double_eq_tol(((float *)mtl_tensor_data(tags))[4],
                            1.0 / (1.0 + exp(-((float *)mtl_tensor_data(rawtags))[4])), 1e-6);
    /* predictions are what the losses are computed from */
    float L[4];
    ck_assert_ok(mtl_model_compute_losses(m, b.x, targets(&b), NULL, L));
    ck_assert_status(mtl_model_output(m, 0, p, MTL_OUTPUT_RAW), MTL_ERR_STATE);
    ck_assert_ok(mtl_model_predict(m, b.x));
    ck_assert_status(mtl_model_output(m, 0, tags, MTL_OUTPUT_RAW), MTL_ERR_SHAPE);
    ck_assert_status(mtl_model_output(m, 7, p, MTL_OUTPUT_RAW), MTL_ERR_NOT_FOUND);
    mtl_tensor_free(p);
    mtl_tensor_free(raw);
    mtl_tensor_free(tags);
    mtl_tensor_free(rawtags);
    free_batch(&b);
    mtl_model_free(m);
}
END_TEST

START_TEST(build_errors_are_clear)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {4};
    ck_assert_status(mtl_model_create(&m, MTL_FLOAT32, 0, shape), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 1, shape));
    ck_assert_status(mtl_model_build(m, 8, 0), MTL_ERR_STATE); /* no heads */
    ck_assert_status(mtl_trunk_add_layer(mtl_model_trunk(m), "convolution", NULL),
                     MTL_ERR_NOT_FOUND);
    ck_assert_msg(strstr(mtl_last_error(), "convolution") != NULL, "%s", mtl_last_error());
    ck_assert_ok(mtl_trunk_add_linear(mtl_model_trunk(m), 3));
    ck_assert_status(mtl_trunk_set_int(mtl_model_trunk(m), 0, "outt", 3), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(mtl_last_error(), "outt") != NULL, "%s", mtl_last_error());
    ck_assert_status(mtl_trunk_set_int(mtl_model_trunk(m), 5, "out", 3), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_trunk_add_linear(mtl_model_trunk(m), 0), MTL_ERR_RANGE);
    ck_assert_int_eq(mtl_trunk_num_layers(mtl_model_trunk(m)), 1);
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "x"));
    ck_assert_status(mtl_model_add_head(m, NULL, "x"), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_model_add_head(m, NULL, "bad name"), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ok(mtl_head_add_linear(h, 1));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_status(mtl_head_set_loss(h, "hinge"), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_head_set_loss_double(h, "delta", 1.0), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_model_build(m, 8, 0), MTL_ERR_SHAPE); /* CE needs >= 2 outputs */
    ck_assert_msg(strstr(mtl_last_error(), "'x'") != NULL, "%s", mtl_last_error());
    ck_assert_ok(mtl_head_set_int(h, 0, "out", 3));
    ck_assert_status(mtl_model_build(m, 0, 0), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ok(mtl_model_build(m, 8, 0));
    ck_assert_status(mtl_model_build(m, 8, 0), MTL_ERR_STATE);
    ck_assert_status(mtl_trunk_add_linear(mtl_model_trunk(m), 3), MTL_ERR_STATE);
    ck_assert_status(mtl_model_add_head(m, NULL, "y"), MTL_ERR_STATE);
    mtl_model_free(m);
    /* embedding placement */
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 1, shape));
    ck_assert_ok(mtl_trunk_add_linear(mtl_model_trunk(m), 3));
    ck_assert_ok(mtl_trunk_add_layer(mtl_model_trunk(m), "embedding", NULL));
    ck_assert_ok(mtl_trunk_set_int(mtl_model_trunk(m), -1, "num_embeddings", 10));
    ck_assert_ok(mtl_model_add_head(m, &h, "x"));
    ck_assert_ok(mtl_head_add_linear(h, 1));
    ck_assert_status(mtl_model_build(m, 8, 0), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(mtl_last_error(), "embedding") != NULL, "%s", mtl_last_error());
    mtl_model_free(m);
}
END_TEST

START_TEST(batch_errors_are_clear)
{
    mtl_model *m = make_model(1, 8);
    mtl_optimizer *o = NULL, *o2 = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "sgd"));
    batch b;
    make_batch(&b, 8, 1);
    float L[4];
    mtl_tensor *big = tensor2(MTL_FLOAT32, 9, IN), *narrow = tensor2(MTL_FLOAT32, 8, IN - 1);
    ck_assert_status(mtl_model_train_step(m, o, NULL, big, targets(&b), NULL, L), MTL_ERR_SHAPE);
    ck_assert_msg(strstr(mtl_last_error(), "max_batch") != NULL, "%s", mtl_last_error());
    ck_assert_status(mtl_model_train_step(m, o, NULL, narrow, targets(&b), NULL, L), MTL_ERR_SHAPE);
    ck_assert_status(mtl_model_train_step(m, o, NULL, NULL, targets(&b), NULL, L),
                     MTL_ERR_INVALID_ARGUMENT);
    const mtl_tensor *none[4] = {NULL, NULL, NULL, NULL};
    ck_assert_status(mtl_model_train_step(m, o, NULL, b.x, none, NULL, L),
                     MTL_ERR_INVALID_ARGUMENT);
    const mtl_tensor *swapped[4] = {b.y[1], b.y[0], b.y[2], b.y[3]};
    ck_assert_status(mtl_model_train_step(m, o, NULL, b.x, swapped, NULL, L), MTL_ERR_SHAPE);
    ck_assert_msg(strstr(mtl_last_error(), "cls") != NULL, "%s", mtl_last_error());
    ((int32_t *)mtl_tensor_data(b.y[0]))[3] = 4;
    ck_assert_status(mtl_model_train_step(m, o, NULL, b.x, targets(&b), NULL, L),
                     MTL_ERR_INVALID_ARGUMENT);
    ((int32_t *)mtl_tensor_data(b.y[0]))[3] = 0;
    mtl_weighting *w3 = NULL;
    ck_assert_ok(mtl_weighting_create(&w3, "ew", 3));
    ck_assert_status(mtl_model_train_step(m, o, w3, b.x, targets(&b), NULL, L), MTL_ERR_SHAPE);
    mtl_model *other = make_model(1, 8);
    ck_assert_ok(mtl_optimizer_create(&o2, other, "sgd"));
    ck_assert_status(mtl_model_train_step(m, o2, NULL, b.x, targets(&b), NULL, L),
                     MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ok(mtl_model_train_step(m, o, NULL, b.x, targets(&b), NULL, L));
    mtl_model *unbuilt = NULL;
    int64_t shape[1] = {IN};
    ck_assert_ok(mtl_model_create(&unbuilt, MTL_FLOAT32, 1, shape));
    ck_assert_status(mtl_model_predict(unbuilt, b.x), MTL_ERR_STATE);
    mtl_optimizer *o3 = (mtl_optimizer *)&o3;
    ck_assert_status(mtl_optimizer_create(&o3, unbuilt, "sgd"), MTL_ERR_STATE);
    ck_assert_ptr_null(o3);
    mtl_model_free(unbuilt);
    mtl_weighting_free(w3);
    mtl_tensor_free(big);
    mtl_tensor_free(narrow);
    free_batch(&b);
    mtl_optimizer_free(o);
    mtl_optimizer_free(o2);
    mtl_model_free(other);
    mtl_model_free(m);
}
END_TEST

static mtl_status build_model_for_oom(void *ctx)
{
    (void)ctx;
    mtl_model *m = NULL;
    int64_t shape[1] = {3};
    mtl_status st = mtl_model_create(&m, MTL_FLOAT32, 1, shape);
    if (st == MTL_OK)
        st = mtl_trunk_add_linear(mtl_model_trunk(m), 4);
    if (st == MTL_OK)
        st = mtl_trunk_add_layer(mtl_model_trunk(m), "batch_norm", NULL);
    mtl_head *h = NULL;
    if (st == MTL_OK)
        st = mtl_model_add_head(m, &h, "t");
    if (st == MTL_OK)
        st = mtl_head_add_linear(h, 2);
    if (st == MTL_OK)
        st = mtl_model_build(m, 4, 1);
    mtl_optimizer *o = NULL;
    if (st == MTL_OK)
        st = mtl_optimizer_create(&o, m, "adam");
    mtl_weighting *w = NULL;
    if (st == MTL_OK)
        st = mtl_weighting_create(&w, "ew", 1);
    mtl_weighting_free(w);
    mtl_optimizer_free(o);
    mtl_model_free(m);
    return st;
}

START_TEST(model_building_survives_every_allocation_failure)
{
    ck_assert_int_ge(mtl_test_oom_sweep(build_model_for_oom, NULL), 10);
}
END_TEST

/* int32 ids through an embedding trunk (bag of ids per sample, mean pooling). */
START_TEST(embedding_model_trains_and_rejects_bad_ids)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {3};
    ck_assert_ok(mtl_model_create(&m, MTL_INT32, 1, shape));
    mtl_trunk *t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_layer(t, "embedding", NULL));
    ck_assert_ok(mtl_trunk_set_int(t, 0, "num_embeddings", 20));
    ck_assert_ok(mtl_trunk_set_int(t, 0, "out", 8));
    ck_assert_ok(mtl_trunk_set_string(t, 0, "pooling", "mean"));
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "parity"));
    ck_assert_ok(mtl_head_add_linear(h, 2));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_ok(mtl_model_build(m, 64, 3));
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "adam"));
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 0.05));
    mtl_tensor *x = tensor2(MTL_INT32, 64, 3), *y = tensor1(MTL_INT32, 64);
    mtli_rng r;
    mtli_rng_seed(&r, 8);
    int32_t *xd = mtl_tensor_data(x), *yd = mtl_tensor_data(y);
    for (int i = 0; i < 64; i++) {
        int ones = 0;
        for (int j = 0; j < 3; j++) {
            xd[i * 3 + j] = (j == 2 && i % 5 == 0) ? -1 : (int32_t)mtli_rng_below(&r, 20);
            ones += xd[i * 3 + j] >= 10;
        }
        yd[i] = ones > 0; /* any id from the upper half */
    }
    const mtl_tensor *tg[1] = {y};
    float L0[1], L[1];
    ck_assert_ok(mtl_model_compute_losses(m, x, tg, NULL, L0));
    for (int s = 0; s < 200; s++)
        ck_assert_ok(mtl_model_train_step(m, o, NULL, x, tg, NULL, L));
    ck_assert_ok(mtl_model_compute_losses(m, x, tg, NULL, L));
    ck_assert_msg(L[0] < 0.5f * L0[0], "loss %g -> %g", (double)L0[0], (double)L[0]);
    xd[5] = 20;
    ck_assert_status(mtl_model_train_step(m, o, NULL, x, tg, NULL, L), MTL_ERR_INVALID_ARGUMENT);
    xd[5] = -2;
    ck_assert_status(mtl_model_predict(m, x), MTL_ERR_INVALID_ARGUMENT);
    mtl_tensor_free(x);
    mtl_tensor_free(y);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, whole_model_gradient_matches_finite_differences);
    tcase_add_test(tc, masked_sample_contributes_nothing_to_its_task_only);
    tcase_add_test(tc, same_seed_gives_bit_identical_training);
    tcase_add_test(tc, non_finite_loss_changes_nothing);
    tcase_add_test(tc, steady_state_step_allocates_nothing);
    tcase_add_test(tc, parameter_names_shapes_and_round_trip);
    tcase_add_test(tc, predict_outputs_and_probabilities);
    tcase_add_test(tc, build_errors_are_clear);
    tcase_add_test(tc, batch_errors_are_clear);
    tcase_add_test(tc, model_building_survives_every_allocation_failure);
    tcase_add_test(tc, embedding_model_trains_and_rejects_bad_ids);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(suite)
