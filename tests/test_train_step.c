/* Multi-input training steps and the per-task-gradient engine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mtl/mtl.h>

#include "core/rng.h"
#include "kernels/conv_direct.h"
#include "model/model_internal.h"
#include "test_main.h"
#include "test_oom.h"

#define IN 6

static mtl_tensor *rand2(int64_t a, int64_t b, uint64_t seed)
{
    mtl_tensor *t = NULL;
    int64_t s[2] = {a, b};
    ck_assert_ok(mtl_tensor_create(&t, MTL_FLOAT32, 2, s));
    mtli_rng r;
    mtli_rng_seed(&r, seed);
    float *d = mtl_tensor_data(t);
    for (int64_t i = 0; i < a * b; i++)
        d[i] = mtli_rng_uniform(&r) * 2.0f - 1.0f;
    return t;
}

static mtl_tensor *labels(int64_t n, int classes, uint64_t seed)
{
    mtl_tensor *t = NULL;
    int64_t s[1] = {n};
    ck_assert_ok(mtl_tensor_create(&t, MTL_INT32, 1, s));
    mtli_rng r;
    mtli_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        ((int32_t *)mtl_tensor_data(t))[i] = (int32_t)mtli_rng_below(&r, (uint64_t)classes);
    return t;
}

/* trunk 6 -> 8 -> 8 (tanh), heads: "a" 3-class, "b" regression 2, "c" 4-class */
static mtl_model *model3(void)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {IN};
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 1, shape));
    mtl_trunk *t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_linear(t, 8));
    ck_assert_ok(mtl_trunk_add_layer(t, "tanh", NULL));
    ck_assert_ok(mtl_trunk_add_linear(t, 8));
    ck_assert_ok(mtl_trunk_add_layer(t, "tanh", NULL));
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "a"));
    ck_assert_ok(mtl_head_add_linear(h, 3));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_ok(mtl_model_add_head(m, &h, "b"));
    ck_assert_ok(mtl_head_add_linear(h, 2));
    ck_assert_ok(mtl_head_set_loss(h, "mse"));
    ck_assert_ok(mtl_model_add_head(m, &h, "c"));
    ck_assert_ok(mtl_head_add_linear(h, 4));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_ok(mtl_model_build(m, 16, 5));
    return m;
}

/* With plain sums, the multi-input gradient is the sum of each task's gradient on its own
 * batch (computed by ordinary single-task steps). */
START_TEST(multi_input_gradient_is_sum_of_task_gradients)
{
    mtl_model *m = model3();
    mtl_tensor *xa = rand2(7, IN, 1), *xb = rand2(12, IN, 2), *xc = rand2(3, IN, 3);
    mtl_tensor *ya = labels(7, 3, 4), *yb = rand2(12, 2, 5), *yc = labels(3, 4, 6);
    const mtl_tensor *inputs[3] = {xa, xb, xc}, *targets[3] = {ya, yb, yc};
    float L[3];
    ck_assert_ok(mtl_model_forward_backward_multi(m, NULL, inputs, targets, NULL, L));
    float *g = malloc(m->nparams * sizeof(float)), *sum = calloc(m->nparams, sizeof(float));
    memcpy(g, m->grads, m->nparams * sizeof(float));
    for (int t = 0; t < 3; t++) {
        const mtl_tensor *one[3] = {NULL, NULL, NULL};
        one[t] = targets[t];
        float Lt[3];
        ck_assert_ok(mtl_model_forward_backward(m, NULL, inputs[t], one, NULL, Lt));
        ck_assert_float_eq_tol(Lt[t], L[t], 1e-6);
        for (size_t i = 0; i < m->nparams; i++)
            sum[i] += m->grads[i];
    }
    for (size_t i = 0; i < m->nparams; i++)
        ck_assert_msg(fabsf(sum[i] - g[i]) <= 1e-6f + 1e-5f * fabsf(g[i]), "param %zu: %g vs %g",
                      i, (double)g[i], (double)sum[i]);
    /* fixed weights scale each task's contribution */
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, "fixed", 3));
    const double wt[3] = {2.0, 0.5, 0.0};
    ck_assert_ok(mtl_weighting_set_weights(w, wt, 3));
    ck_assert_ok(mtl_model_forward_backward_multi(m, w, inputs, targets, NULL, L));
    size_t hc = m->heads[2]->s.param_offset;
    for (size_t i = hc; i < hc + m->heads[2]->s.nparams; i++)
        ck_assert_float_eq(m->grads[i], 0.0f);
    mtl_weighting_free(w);
    free(g);
    free(sum);
    mtl_tensor_free(xa);
    mtl_tensor_free(xb);
    mtl_tensor_free(xc);
    mtl_tensor_free(ya);
    mtl_tensor_free(yb);
    mtl_tensor_free(yc);
    mtl_model_free(m);
}
END_TEST

/* A step that trains one task with its own data leaves the other heads untouched. */
START_TEST(multi_input_step_touches_only_present_heads)
{
    mtl_model *m = model3();
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "sgd"));
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 0.1));
    float *before = malloc(m->nparams * sizeof(float));
    memcpy(before, m->params, m->nparams * sizeof(float));
    mtl_tensor *xb = rand2(9, IN, 2), *yb = rand2(9, 2, 5);
    const mtl_tensor *inputs[3] = {NULL, xb, NULL}, *targets[3] = {NULL, yb, NULL};
    float L[3];
    ck_assert_ok(mtl_model_train_step_multi(m, o, NULL, inputs, targets, NULL, L));
    ck_assert(isnan(L[0]) && isnan(L[2]) && isfinite(L[1]));
    for (int h = 0; h < 3; h++) {
        const mtli_stack *s = &m->heads[h]->s;
        int same = memcmp(before + s->param_offset, m->params + s->param_offset,
                          s->nparams * sizeof(float)) == 0;
        ck_assert_int_eq(same, h != 1);
    }
    ck_assert_int_ne(memcmp(before, m->params, m->trunk.s.nparams * sizeof(float)), 0);
    /* errors: an input without a target; bad shapes name the task */
    const mtl_tensor *half[3] = {NULL, NULL, NULL};
    ck_assert_status(mtl_model_train_step_multi(m, o, NULL, inputs, half, NULL, L),
                     MTL_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(mtl_last_error(), "'b'") != NULL, "%s", mtl_last_error());
    const mtl_tensor *wrong[3] = {NULL, xb, NULL};
    ck_assert_status(mtl_model_train_step_multi(m, o, NULL, inputs, wrong, NULL, L),
                     MTL_ERR_SHAPE);
    ck_assert_status(mtl_model_train_step_multi(m, o, NULL, half, half, NULL, L),
                     MTL_ERR_INVALID_ARGUMENT);
    free(before);
    mtl_tensor_free(xb);
    mtl_tensor_free(yb);
    mtl_optimizer_free(o);
    mtl_model_free(m);
}
END_TEST

/* The engine's per-task gradients of the shared parameters (rows of J) equal the trunk
 * gradients of separate single-task backward passes, and G = J J^T. */
START_TEST(engine_per_task_gradients_and_gram)
{
    mtl_model *m = model3();
    mtl_tensor *x = rand2(10, IN, 1), *ya = labels(10, 3, 2), *yb = rand2(10, 2, 3),
               *yc = labels(10, 4, 4);
    const mtl_tensor *targets[3] = {ya, yb, yc};
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, "mgda", 3));
    float L[3];
    ck_assert_ok(mtl_model_forward_backward(m, w, x, targets, NULL, L));
    size_t P = m->trunk.s.nparams;
    float *J = malloc(3 * P * sizeof(float));
    memcpy(J, m->eng_J, 3 * P * sizeof(float));
    double G[9];
    memcpy(G, m->eng_G, sizeof G);
    double wts[3];
    ck_assert_ok(mtl_weighting_get_weights(w, wts, 3));
    float *combined = malloc(m->nparams * sizeof(float));
    memcpy(combined, m->grads, m->nparams * sizeof(float));
    float *heads_single = calloc(m->nparams, sizeof(float));
    for (int t = 0; t < 3; t++) {
        const mtl_tensor *one[3] = {NULL, NULL, NULL};
        one[t] = targets[t];
        ck_assert_ok(mtl_model_forward_backward(m, NULL, x, one, NULL, L));
        for (size_t i = 0; i < P; i++)
            ck_assert_msg(fabsf(J[t * P + i] - m->grads[i]) <= 1e-6f + 1e-5f * fabsf(m->grads[i]),
                          "task %d param %zu: %g vs %g", t, i, (double)J[t * P + i],
                          (double)m->grads[i]);
        const mtli_stack *hs = &m->heads[t]->s;
        for (size_t i = hs->param_offset; i < hs->param_offset + hs->nparams; i++)
            heads_single[i] = m->grads[i];
    }
    for (int s2 = 0; s2 < 3; s2++)
        for (int t = 0; t < 3; t++) {
            double dot = 0;
            for (size_t i = 0; i < P; i++)
                dot += (double)J[s2 * P + i] * J[t * P + i];
            ck_assert_msg(fabs(dot - G[s2 * 3 + t]) <= 1e-5 * (fabs(dot) + 1e-3), "G[%d][%d]", s2,
                          t);
        }
    /* the combined update: sum_t w_t J_t on the trunk, w_t * own gradient on head t */
    for (size_t i = 0; i < P; i++) {
        double want = 0;
        for (int t = 0; t < 3; t++)
            want += wts[t] * J[t * P + i];
        ck_assert(fabs(combined[i] - want) <= 1e-6 + 1e-4 * fabs(want));
    }
    for (int t = 0; t < 3; t++) {
        const mtli_stack *hs = &m->heads[t]->s;
        for (size_t i = hs->param_offset; i < hs->param_offset + hs->nparams; i++)
            ck_assert(fabsf(combined[i] - (float)wts[t] * heads_single[i]) <=
                      1e-6f + 1e-5f * fabsf(combined[i]));
    }
    /* MGDA's weights are a convex combination */
    ck_assert_double_eq_tol(wts[0] + wts[1] + wts[2], 1.0, 1e-9);
    free(J);
    free(combined);
    free(heads_single);
    mtl_weighting_free(w);
    mtl_tensor_free(x);
    mtl_tensor_free(ya);
    mtl_tensor_free(yb);
    mtl_tensor_free(yc);
    mtl_model_free(m);
}
END_TEST

/* Representation mode: the Gram is of the per-task gradients with respect to Z. */
START_TEST(engine_representation_mode_gram)
{
    mtl_model *m = model3();
    mtl_tensor *x = rand2(10, IN, 1), *ya = labels(10, 3, 2), *yb = rand2(10, 2, 3),
               *yc = labels(10, 4, 4);
    const mtl_tensor *targets[3] = {ya, yb, yc};
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, "mgda_ub", 3));
    float L[3];
    ck_assert_ok(mtl_model_forward_backward(m, w, x, targets, NULL, L));
    size_t D = m->trunk.s.out_features, stride = m->max_batch * D;
    for (int s2 = 0; s2 < 3; s2++)
        for (int t = 0; t < 3; t++) {
            double dot = 0;
            for (size_t i = 0; i < 10 * D; i++)
                dot += (double)m->eng_dz[s2 * stride + i] * m->eng_dz[t * stride + i];
            ck_assert(fabs(dot - m->eng_G[s2 * 3 + t]) <= 1e-5 * (fabs(dot) + 1e-6));
        }
    /* multi-input training cannot use the representation */
    const mtl_tensor *inputs[3] = {x, x, x};
    ck_assert_status(mtl_model_forward_backward_multi(m, w, inputs, targets, NULL, L),
                     MTL_ERR_UNSUPPORTED);
    mtl_weighting_free(w);
    mtl_tensor_free(x);
    mtl_tensor_free(ya);
    mtl_tensor_free(yb);
    mtl_tensor_free(yc);
    mtl_model_free(m);
}
END_TEST

/* Every method trains the model through the public step: losses fall, nothing fails, and the
 * steady state allocates nothing. */
START_TEST(every_method_trains_through_the_step)
{
    mtl_tensor *x = rand2(16, IN, 11), *ya = labels(16, 3, 12), *yb = rand2(16, 2, 13),
               *yc = labels(16, 4, 14);
    const mtl_tensor *targets[3] = {ya, yb, yc};
    for (int i = 0;; i++) {
        const char *name = mtl_weighting_available(i);
        if (!name)
            break;
        mtl_model *m = model3();
        mtl_optimizer *o = NULL;
        ck_assert_ok(mtl_optimizer_create(&o, m, "adam"));
        ck_assert_ok(mtl_optimizer_set_double(o, "lr", 0.01));
        mtl_weighting *w = NULL;
        ck_assert_ok(mtl_weighting_create(&w, name, 3));
        float L0[3], L[3];
        ck_assert_ok(mtl_model_compute_losses(m, x, targets, NULL, L0));
        for (int s2 = 0; s2 < 60; s2++) {
            mtl_status st = mtl_model_train_step(m, o, w, x, targets, NULL, L);
            ck_assert_msg(st == MTL_OK, "%s step %d: %s", name, s2, mtl_last_error());
        }
        ck_assert_ok(mtl_model_compute_losses(m, x, targets, NULL, L));
        ck_assert_msg(L[0] + L[1] + L[2] < L0[0] + L0[1] + L0[2], "%s: %g -> %g", name,
                      (double)(L0[0] + L0[1] + L0[2]), (double)(L[0] + L[1] + L[2]));
        mtl_weighting_free(w);
        mtl_optimizer_free(o);
        mtl_model_free(m);
    }
    mtl_tensor_free(x);
    mtl_tensor_free(ya);
    mtl_tensor_free(yb);
    mtl_tensor_free(yc);
}
END_TEST

/* ---- the stacked per-task backward and the autogram ---------------------------------------- */

/* A trunk layer: kind and up to three integer options (NULL key: unused). */
typedef struct {
    const char *kind;
    const char *k[3];
    int64_t v[3];
} lspec;

#define NSPEC(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Trunks covering the layer kinds the engine meets: linear with and without bias, the
 * activations, layer_norm, batch_norm, conv2d (both chunking paths), batch_norm2d, pools,
 * flatten. */
static const int64_t MLP_IN[1] = {12};
static const lspec MLP[] = {{"linear", {"out"}, {16}},
                            {"relu", {NULL}, {0}},
                            {"linear", {"out", "bias"}, {10, 0}},
                            {"tanh", {NULL}, {0}},
                            {"linear", {"out"}, {8}},
                            {"gelu", {NULL}, {0}}};
static const int64_t NORM_IN[1] = {10};
static const lspec NORM[] = {{"linear", {"out"}, {12}},
                             {"layer_norm", {NULL}, {0}},
                             {"tanh", {NULL}, {0}},
                             {"linear", {"out"}, {9}},
                             {"batch_norm", {NULL}, {0}},
                             {"leaky_relu", {NULL}, {0}},
                             {"linear", {"out"}, {7}},
                             {"sigmoid", {NULL}, {0}}};
static const int64_t CONV_IN[3] = {2, 6, 6};
static const lspec CONV[] = {{"conv2d", {"out", "kernel", "padding"}, {3, 3, 1}},
                             {"batch_norm2d", {NULL}, {0}},
                             {"relu", {NULL}, {0}},
                             {"max_pool2d", {"kernel"}, {2}},
                             {"conv2d", {"out", "kernel", "bias"}, {4, 2, 0}},
                             {"flatten", {NULL}, {0}},
                             {"linear", {"out"}, {8}},
                             {"tanh", {NULL}, {0}}};
/* a float sequence [L, F] (full length): per-position linear, recurrent layers */
static const int64_t SEQ_IN[2] = {4, 3};
static const lspec SEQ[] = {{"linear", {"out"}, {5}},
                            {"tanh", {NULL}, {0}},
                            {"lstm", {"hidden", "bidirectional"}, {4, 1}},
                            {"linear", {"out"}, {3}},
                            {"gru", {"hidden"}, {3}},
                            {"flatten", {NULL}, {0}}};
/* a feature map of 4096 outputs: conv2d's one-sample-per-GEMM path */
static const int64_t BIGCONV_IN[3] = {1, 66, 66};
static const lspec BIGCONV[] = {{"conv2d", {"out", "kernel"}, {2, 3}},
                                {"avg_pool2d", {"kernel"}, {8}},
                                {"flatten", {NULL}, {0}},
                                {"linear", {"out"}, {6}}};
/* with dropout (only where one forward serves both sides of a comparison) */
static const lspec DROP[] = {{"linear", {"out"}, {16}},
                             {"dropout", {NULL}, {0}},
                             {"relu", {NULL}, {0}},
                             {"linear", {"out"}, {8}}};

/* Heads alternate: 3-class cross-entropy, 2-output MSE. */
static mtl_model *build_spec(int ndim, const int64_t *shape, const lspec *L, int nl, int T,
                             int64_t max_batch)
{
    mtl_model *m = NULL;
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, ndim, shape));
    mtl_trunk *tr = mtl_model_trunk(m);
    for (int i = 0; i < nl; i++) {
        ck_assert_ok(mtl_trunk_add_layer(tr, L[i].kind, NULL));
        for (int k = 0; k < 3 && L[i].k[k]; k++)
            ck_assert_ok(mtl_trunk_set_int(tr, -1, L[i].k[k], L[i].v[k]));
    }
    for (int t = 0; t < T; t++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", t);
        mtl_head *h;
        ck_assert_ok(mtl_model_add_head(m, &h, name));
        ck_assert_ok(mtl_head_add_linear(h, t % 2 ? 2 : 3));
        ck_assert_ok(mtl_head_set_loss(h, t % 2 ? "mse" : "cross_entropy"));
    }
    ck_assert_ok(mtl_model_build(m, max_batch, 7));
    return m;
}

static mtl_tensor *rand_input(int ndim, const int64_t *shape, int64_t B, uint64_t seed)
{
    int64_t s[4] = {B, 0, 0, 0};
    for (int d = 0; d < ndim; d++)
        s[d + 1] = shape[d];
    mtl_tensor *t = NULL;
    ck_assert_ok(mtl_tensor_create(&t, MTL_FLOAT32, ndim + 1, s));
    mtli_rng r;
    mtli_rng_seed(&r, seed);
    float *d = mtl_tensor_data(t);
    for (int64_t i = 0; i < mtl_tensor_numel(t); i++)
        d[i] = mtli_rng_uniform(&r) * 2.0f - 1.0f;
    return t;
}

/* targets for build_spec's heads */
static void make_targets(int T, int64_t B, uint64_t seed, mtl_tensor **tg)
{
    for (int t = 0; t < T; t++)
        tg[t] = t % 2 ? rand2(B, 2, seed + (uint64_t)t) : labels(B, 3, seed + (uint64_t)t);
}

static void free_all(mtl_tensor **ts, int n)
{
    for (int i = 0; i < n; i++)
        mtl_tensor_free(ts[i]);
}

static int close_to(float a, float b, float tol) { return fabsf(a - b) <= tol * (1.0f + fabsf(b)); }

/* The stacked backward of T streams gives, for every layer kind, the parameter gradients
 * and input gradients of T separate single-stream backward passes (from the same forward),
 * through the whole trunk and from a middle layer down. */
static void check_stacked(int ndim, const int64_t *shape, const lspec *L, int nl, int lo)
{
    const int T = 3;
    const size_t B = 5;
    mtl_model *m = build_spec(ndim, shape, L, nl, 1, 8);
    mtli_stack *s = &m->trunk.s;
    mtl_tensor *x = rand_input(ndim, shape, (int64_t)B, 3);
    mtli_stack_forward(s, mtl_tensor_data(x), B, true, &m->rng);
    size_t D = s->out_features, P = s->nparams, W = s->max_features;
    size_t in_lo = s->layers[lo].in_features;
    float *dy = malloc(T * B * D * sizeof(float));
    mtli_rng r;
    mtli_rng_seed(&r, 9);
    for (size_t i = 0; i < T * B * D; i++)
        dy[i] = mtli_rng_uniform(&r) - 0.5f;
    float *J = malloc(T * P * sizeof(float)), *Jref = calloc(T * P, sizeof(float));
    for (size_t i = 0; i < T * P; i++)
        J[i] = NAN; /* rows are overwritten, not accumulated */
    float *buf0 = malloc(T * B * W * sizeof(float)), *buf1 = malloc(T * B * W * sizeof(float));
    float *rows[3] = {J, J + P, J + 2 * P};
    size_t P0 = 0;
    for (int i = 0; i < lo; i++)
        P0 += s->layers[i].nparams;
    mtli_stacked st = {.T = T, .B = B, .buf = {buf0, buf1}, .rows = rows, .P0 = P0};
    const float *dx = mtli_stack_backward_stacked(s, mtl_tensor_data(x), lo, dy, true, &st);
    ck_assert_ptr_nonnull(dx);
    float *dxref = malloc(B * in_lo * sizeof(float));
    for (int t = 0; t < T; t++) {
        /* per-task: the layers lo..top into a full-layout buffer, then compare the range */
        float *full = calloc(m->nparams, sizeof(float));
        mtli_stack_backward_range(s, mtl_tensor_data(x), lo, s->nlayers - 1, dy + t * B * D,
                                  dxref, full, B);
        memcpy(Jref + t * P, full + P0, (P - P0) * sizeof(float));
        free(full);
        for (size_t i = 0; i < P - P0; i++)
            ck_assert_msg(close_to(J[t * P + i], Jref[t * P + i], 1e-6f),
                          "%s: stream %d param %zu: %.9g stacked, %.9g alone", L[0].kind, t, i,
                          (double)J[t * P + i], (double)Jref[t * P + i]);
        for (size_t i = 0; i < B * in_lo; i++)
            ck_assert_msg(close_to(dx[t * B * in_lo + i], dxref[i], 1e-6f),
                          "%s: stream %d input gradient %zu: %.9g stacked, %.9g alone",
                          L[0].kind, t, i, (double)dx[t * B * in_lo + i], (double)dxref[i]);
    }
    free(dy);
    free(J);
    free(Jref);
    free(buf0);
    free(buf1);
    free(dxref);
    mtl_tensor_free(x);
    mtl_model_free(m);
}

START_TEST(stacked_backward_equals_per_task_passes)
{
    check_stacked(1, MLP_IN, MLP, NSPEC(MLP), 0);
    check_stacked(1, MLP_IN, MLP, NSPEC(MLP), 2);
    check_stacked(1, NORM_IN, NORM, NSPEC(NORM), 0);
    check_stacked(1, NORM_IN, NORM, NSPEC(NORM), 3);
    check_stacked(3, CONV_IN, CONV, NSPEC(CONV), 0);
    check_stacked(3, CONV_IN, CONV, NSPEC(CONV), 4);
    check_stacked(3, BIGCONV_IN, BIGCONV, NSPEC(BIGCONV), 0);
    /* conv2d's direct kernels on maps too small for them to be chosen by themselves: the
     * second convolution then also passes its input gradient through them */
    if (mtli_convd_available()) {
        mtli_conv_route_choice = MTLI_CONV_DIRECT;
        check_stacked(3, CONV_IN, CONV, NSPEC(CONV), 0);
        check_stacked(3, CONV_IN, CONV, NSPEC(CONV), 4);
        mtli_conv_route_choice = MTLI_CONV_AUTO;
    }
    check_stacked(1, MLP_IN, DROP, NSPEC(DROP), 0);
    check_stacked(2, SEQ_IN, SEQ, NSPEC(SEQ), 0);
    check_stacked(2, SEQ_IN, SEQ, NSPEC(SEQ), 3);
}
END_TEST

/* One forward_backward with mgda; copies of G (T x T), the task weights and the gradient. */
typedef struct {
    double G[16];
    double w[4];
    float *grads;
    float *J;
    size_t P;
} eng_out;

static void run_mgda(mtl_model *m, const char *method, const mtl_tensor *x,
                     const mtl_tensor *const *tg, int T, eng_out *o)
{
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, method, T));
    float L[8];
    ck_assert_ok(mtl_model_forward_backward(m, w, x, tg, NULL, L));
    memcpy(o->G, m->eng_G, (size_t)T * T * sizeof(double));
    ck_assert_ok(mtl_weighting_get_weights(w, o->w, T));
    o->grads = malloc(m->nparams * sizeof(float));
    memcpy(o->grads, m->grads, m->nparams * sizeof(float));
    o->J = NULL;
    o->P = w->P;
    if (!m->eng_autogram) {
        o->J = malloc((size_t)T * o->P * sizeof(float));
        memcpy(o->J, m->eng_J, (size_t)T * o->P * sizeof(float));
    }
    mtl_weighting_free(w);
}

static void free_out(eng_out *o)
{
    free(o->grads);
    free(o->J);
}

/* |G - J J^T| within tol of the largest diagonal entry */
static void check_gram(const double *G, const float *J, size_t P, int T, double tol,
                       const char *what)
{
    double scale = 0.0;
    for (int t = 0; t < T; t++)
        scale = fmax(scale, fabs(G[t * T + t]));
    for (int a = 0; a < T; a++)
        for (int b = 0; b < T; b++) {
            double dot = 0.0;
            for (size_t i = 0; i < P; i++)
                dot += (double)J[a * P + i] * J[b * P + i];
            ck_assert_msg(fabs(dot - G[a * T + b]) <= tol * scale,
                          "%s: G[%d][%d] = %.9g, J J^T gives %.9g (scale %g)", what, a, b,
                          G[a * T + b], dot, scale);
        }
}

static void check_grads_close(const float *a, const float *b, size_t n, double tol,
                              const char *what)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)a[i] - b[i]) <= tol * scale, "%s: gradient %zu: %.9g vs %.9g",
                      what, i, (double)a[i], (double)b[i]);
}

/* Representation mode with heads that start with a linear layer of few outputs takes the Gram
 * from the heads' factors (dZ_t = dY_t W_t, never formed): the same Gram, weights and update as
 * forming every dZ_t (eng_force = 1), with one-layer and two-layer heads and an inactive task. */
START_TEST(representation_mode_factored_heads)
{
    mtl_model *m = NULL;
    int64_t in[1] = {20};
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 1, in));
    mtl_trunk *tr = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_linear(tr, 64));
    ck_assert_ok(mtl_trunk_add_layer(tr, "tanh", NULL));
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "a"));
    ck_assert_ok(mtl_head_add_linear(h, 1));
    ck_assert_ok(mtl_model_add_head(m, &h, "b"));
    ck_assert_ok(mtl_head_add_linear(h, 2));
    ck_assert_ok(mtl_head_add_layer(h, "tanh", NULL));
    ck_assert_ok(mtl_head_add_linear(h, 1));
    ck_assert_ok(mtl_model_add_head(m, &h, "c"));
    ck_assert_ok(mtl_head_add_linear(h, 3));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_ok(mtl_model_add_head(m, &h, "d"));
    ck_assert_ok(mtl_head_add_linear(h, 1));
    ck_assert_ok(mtl_model_build(m, 32, 3));
    mtl_tensor *x = rand_input(1, in, 32, 8), *ya = rand2(32, 1, 1), *yb = rand2(32, 1, 2),
               *yc = labels(32, 3, 3), *yd = rand2(32, 1, 4);
    for (int pass = 0; pass < 2; pass++) {
        const mtl_tensor *tg[4] = {ya, yb, yc, pass ? NULL : yd};
        float *grads[2];
        double G[2][16], wts[2][4];
        for (int force = 0; force <= 1; force += 1) {
            m->eng_force = force;
            mtl_weighting *w = NULL;
            ck_assert_ok(mtl_weighting_create(&w, "mgda_ub", 4));
            float L[4];
            ck_assert_ok(mtl_model_forward_backward(m, w, x, tg, NULL, L));
            memcpy(G[force], m->eng_G, sizeof G[force]);
            ck_assert_ok(mtl_weighting_get_weights(w, wts[force], 4));
            grads[force] = malloc(m->nparams * sizeof(float));
            memcpy(grads[force], m->grads, m->nparams * sizeof(float));
            mtl_weighting_free(w);
        }
        double scale = 0.0;
        for (int t = 0; t < 4; t++)
            scale = fmax(scale, G[1][t * 4 + t]);
        for (int i = 0; i < 16; i++)
            ck_assert_msg(fabs(G[0][i] - G[1][i]) <= 1e-5 * scale, "G[%d]: %.9g factored, %.9g",
                          i, G[0][i], G[1][i]);
        for (int t = 0; t < 4; t++)
            ck_assert(fabs(wts[0][t] - wts[1][t]) <= 1e-5);
        if (pass)
            ck_assert_double_eq(G[0][3 * 4 + 3], 0.0);
        check_grads_close(grads[0], grads[1], m->nparams, 1e-5, "factored heads");
        free(grads[0]);
        free(grads[1]);
    }
    mtl_tensor_free(x);
    mtl_tensor_free(ya);
    mtl_tensor_free(yb);
    mtl_tensor_free(yc);
    mtl_tensor_free(yd);
    mtl_model_free(m);
}
END_TEST

/* The autogram Gram (from each layer's input Gram, no J) equals J J^T on trunks with linear,
 * conv2d, layer_norm, batch_norm and activations, and the update (one backward of
 * sum_t w_t dZ_t) equals sum_t w_t J_t. */
static void check_autogram(int ndim, const int64_t *shape, const lspec *L, int nl, int force,
                           int64_t grad_layers, int64_t B)
{
    const int T = 3;
    mtl_model *m = build_spec(ndim, shape, L, nl, T, B + 3);
    ck_assert_ok(mtl_model_set_double(m, "grad_layers", (double)grad_layers));
    mtl_tensor *x = rand_input(ndim, shape, B, 5), *tg[4];
    make_targets(T, B, 40, tg);
    eng_out a, j;
    m->eng_force = force;
    run_mgda(m, "mgda", x, (const mtl_tensor *const *)tg, T, &a);
    ck_assert_msg(m->eng_autogram, "forced autogram not taken");
    ck_assert_ptr_null(m->eng_J); /* no per-task gradient matrix at all */
    m->eng_force = 1;
    run_mgda(m, "mgda", x, (const mtl_tensor *const *)tg, T, &j);
    ck_assert(!m->eng_autogram);
    ck_assert_uint_eq(a.P, j.P);
    check_gram(a.G, j.J, j.P, T, 2e-5, L[0].kind);
    check_gram(j.G, j.J, j.P, T, 2e-5, L[0].kind);
    for (int t = 0; t < T; t++)
        ck_assert_msg(fabs(a.w[t] - j.w[t]) <= 1e-4, "weight %d: %g vs %g", t, a.w[t], j.w[t]);
    /* the two routes' updates, each with its own weights: compare the autogram update with
     * sum_t w_t J_t for the autogram's weights on the per-task range */
    size_t P = m->trunk.s.nparams, P0 = P - j.P;
    for (size_t i = 0; i < j.P; i++) {
        double want = 0.0;
        for (int t = 0; t < T; t++)
            want += a.w[t] * j.J[(size_t)t * j.P + i];
        ck_assert_msg(fabs(a.grads[P0 + i] - want) <= 1e-5 * (1.0 + fabs(want)),
                      "%s: shared gradient %zu: %.9g, sum_t w_t J_t = %.9g", L[0].kind, i,
                      (double)a.grads[P0 + i], want);
    }
    check_grads_close(a.grads, j.grads, m->nparams, 2e-4, L[0].kind);
    free_out(&a);
    free_out(&j);
    free_all(tg, T);
    mtl_tensor_free(x);
    mtl_model_free(m);
}

START_TEST(autogram_gram_equals_J_Jt)
{
    for (int force = 2; force <= 3; force++) {
        check_autogram(1, MLP_IN, MLP, NSPEC(MLP), force, 0, 9);
        check_autogram(1, NORM_IN, NORM, NSPEC(NORM), force, 0, 9);
        check_autogram(3, CONV_IN, CONV, NSPEC(CONV), force, 0, 9);
        check_autogram(2, SEQ_IN, SEQ, NSPEC(SEQ), force, 0, 9);
    }
    /* batches of more than one row block of the input Gram (64 rows): the triangular split,
     * with a short last block */
    check_autogram(1, MLP_IN, MLP, NSPEC(MLP), 3, 0, 130);
    check_autogram(1, NORM_IN, NORM, NSPEC(NORM), 3, 0, 200);
    /* with the per-task range restricted to the last layers */
    check_autogram(1, NORM_IN, NORM, NSPEC(NORM), 3, 2, 9);
    check_autogram(3, CONV_IN, CONV, NSPEC(CONV), 3, 1, 9);
    if (mtli_convd_available()) { /* conv2d's direct kernels (see stacked_backward_...) */
        mtli_conv_route_choice = MTLI_CONV_DIRECT;
        check_autogram(3, CONV_IN, CONV, NSPEC(CONV), 3, 0, 9);
        mtli_conv_route_choice = MTLI_CONV_AUTO;
    }
}
END_TEST

/* Left to itself, the engine takes the autogram where it costs fewer multiply-adds (wide
 * layers, small batch) and J where it does not (the narrow model3 at batch 16). */
START_TEST(engine_picks_the_cheaper_route)
{
    static const int64_t in[1] = {64};
    static const lspec wide[] = {{"linear", {"out"}, {256}},
                                 {"relu", {NULL}, {0}},
                                 {"linear", {"out"}, {128}},
                                 {"relu", {NULL}, {0}}};
    const int T = 4;
    mtl_model *m = build_spec(1, in, wide, NSPEC(wide), T, 8);
    mtl_tensor *x = rand_input(1, in, 8, 2), *tg[4];
    make_targets(T, 8, 60, tg);
    eng_out a, j;
    run_mgda(m, "mgda", x, (const mtl_tensor *const *)tg, T, &a);
    ck_assert(m->eng_autogram);
    ck_assert_ptr_null(m->eng_J);
    m->eng_force = 1;
    run_mgda(m, "mgda", x, (const mtl_tensor *const *)tg, T, &j);
    check_gram(a.G, j.J, j.P, T, 2e-5, "wide");
    check_grads_close(a.grads, j.grads, m->nparams, 2e-4, "wide");
    free_out(&a);
    free_out(&j);
    free_all(tg, T);
    mtl_tensor_free(x);
    mtl_model_free(m);

    m = model3();
    mtl_tensor *x3 = rand2(16, IN, 1), *ya = labels(16, 3, 2), *yb = rand2(16, 2, 3),
               *yc = labels(16, 4, 4);
    const mtl_tensor *t3[3] = {ya, yb, yc};
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, "mgda", 3));
    float L[3];
    ck_assert_ok(mtl_model_forward_backward(m, w, x3, t3, NULL, L));
    ck_assert(!m->eng_autogram);
    ck_assert_ptr_nonnull(m->eng_J);
    /* J methods always form J */
    mtl_weighting *wj = NULL;
    ck_assert_ok(mtl_weighting_create(&wj, "graddrop", 3));
    m->eng_force = 3;
    ck_assert_ok(mtl_model_forward_backward(m, wj, x3, t3, NULL, L));
    ck_assert(!m->eng_autogram);
    mtl_weighting_free(w);
    mtl_weighting_free(wj);
    mtl_tensor_free(x3);
    mtl_tensor_free(ya);
    mtl_tensor_free(yb);
    mtl_tensor_free(yc);
    mtl_model_free(m);
}
END_TEST

/* grad_layers = 1: J and G cover only the last trunk layer with parameters (its rows equal
 * the single-task gradients of those parameters); the layers below get the gradient of
 * sum_t w_t L_t, as a fixed weighting with the same weights gives it. */
START_TEST(grad_layers_restricts_per_task_gradients)
{
    mtl_model *m = model3();
    double v = -1.0;
    ck_assert_ok(mtl_model_get_double(m, "grad_layers", &v));
    ck_assert_double_eq(v, 0.0);
    ck_assert_status(mtl_model_set_double(m, "grad_layers", -1.0), MTL_ERR_RANGE);
    ck_assert_msg(strstr(mtl_last_error(), "grad_layers") != NULL, "%s", mtl_last_error());
    ck_assert_status(mtl_model_set_double(m, "grad_layers", 1.5), MTL_ERR_RANGE);
    ck_assert_msg(strstr(mtl_last_error(), "whole number") != NULL, "%s", mtl_last_error());
    ck_assert_ok(mtl_model_set_double(m, "grad_layers", 1.0));
    ck_assert_ok(mtl_model_get_double(m, "grad_layers", &v));
    ck_assert_double_eq(v, 1.0);
    mtl_tensor *x = rand2(10, IN, 1), *ya = labels(10, 3, 2), *yb = rand2(10, 2, 3),
               *yc = labels(10, 4, 4);
    const mtl_tensor *targets[3] = {ya, yb, yc};
    const size_t P = m->trunk.s.nparams, Pg = 8 * 8 + 8, P0 = P - Pg;
    for (int route = 1; route <= 3; route += 2) {
        m->eng_force = route;
        eng_out o;
        run_mgda(m, "mgda", x, targets, 3, &o);
        ck_assert_uint_eq(o.P, Pg); /* the weighting is bound to the range */
        if (route == 1) {
            float L[3];
            for (int t = 0; t < 3; t++) {
                const mtl_tensor *one[3] = {NULL, NULL, NULL};
                one[t] = targets[t];
                ck_assert_ok(mtl_model_forward_backward(m, NULL, x, one, NULL, L));
                for (size_t i = 0; i < Pg; i++)
                    ck_assert_msg(close_to(o.J[t * Pg + i], m->grads[P0 + i], 1e-5f),
                                  "task %d param %zu", t, i);
            }
            check_gram(o.G, o.J, Pg, 3, 1e-5, "grad_layers");
        }
        /* the whole update equals plain backward of sum_t w_t L_t (the per-task range of a
         * J method's combination is sum_t w_t J_t, the same thing) */
        mtl_weighting *f = NULL;
        ck_assert_ok(mtl_weighting_create(&f, "fixed", 3));
        ck_assert_ok(mtl_weighting_set_weights(f, o.w, 3));
        float L[3];
        ck_assert_ok(mtl_model_forward_backward(m, f, x, targets, NULL, L));
        check_grads_close(o.grads, m->grads, m->nparams, 1e-5, "grad_layers update");
        mtl_weighting_free(f);
        free_out(&o);
    }
    /* the Gram differs from the full one: it sees only the last layer */
    m->eng_force = 0;
    ck_assert_ok(mtl_model_set_double(m, "grad_layers", 0.0));
    eng_out full;
    run_mgda(m, "mgda", x, targets, 3, &full);
    ck_assert_uint_eq(full.P, P);
    ck_assert_ok(mtl_model_set_double(m, "grad_layers", 1.0));
    eng_out part;
    run_mgda(m, "mgda", x, targets, 3, &part);
    ck_assert(part.G[0] < full.G[0]);
    /* more layers than the trunk has: all of them */
    ck_assert_ok(mtl_model_set_double(m, "grad_layers", 5.0));
    eng_out all;
    run_mgda(m, "mgda", x, targets, 3, &all);
    ck_assert_uint_eq(all.P, P);
    free_out(&full);
    free_out(&part);
    free_out(&all);
    /* J methods train with it */
    ck_assert_ok(mtl_model_set_double(m, "grad_layers", 1.0));
    const char *jm[] = {"graddrop", "gradvac", "moco", "db_mtl", "excessmtl"};
    for (size_t k = 0; k < sizeof jm / sizeof jm[0]; k++) {
        mtl_optimizer *o = NULL;
        ck_assert_ok(mtl_optimizer_create(&o, m, "adam"));
        ck_assert_ok(mtl_optimizer_set_double(o, "lr", 0.01));
        mtl_weighting *w = NULL;
        ck_assert_ok(mtl_weighting_create(&w, jm[k], 3));
        float L0[3], L[3];
        ck_assert_ok(mtl_model_compute_losses(m, x, targets, NULL, L0));
        for (int s2 = 0; s2 < 40; s2++)
            ck_assert_msg(mtl_model_train_step(m, o, w, x, targets, NULL, L) == MTL_OK, "%s: %s",
                          jm[k], mtl_last_error());
        ck_assert_uint_eq(w->P, Pg);
        ck_assert_ok(mtl_model_compute_losses(m, x, targets, NULL, L));
        ck_assert_msg(L[0] + L[1] + L[2] < L0[0] + L0[1] + L0[2], "%s", jm[k]);
        mtl_weighting_free(w);
        mtl_optimizer_free(o);
    }
    mtl_tensor_free(x);
    mtl_tensor_free(ya);
    mtl_tensor_free(yb);
    mtl_tensor_free(yc);
    mtl_model_free(m);
}
END_TEST

/* When the stacked buffers would be too large, tasks are stacked in groups (J route, the
 * autogram needs every stream at once): same results as one stack. An inactive task (no
 * target) has a zero row. */
START_TEST(stacked_groups_and_inactive_tasks)
{
    for (int64_t gl = 0; gl <= 1; gl++) {
        const int T = 4;
        mtl_model *m = build_spec(1, NORM_IN, NORM, NSPEC(NORM), T, 12);
        ck_assert_ok(mtl_model_set_double(m, "grad_layers", (double)gl));
        mtl_tensor *x = rand_input(1, NORM_IN, 9, 5), *tg[4];
        make_targets(T, 9, 80, tg);
        const mtl_tensor *act[4] = {tg[0], NULL, tg[2], tg[3]};
        eng_out one, grouped;
        m->eng_force = 1;
        run_mgda(m, "mgda", x, act, T, &one);
        m->eng_stack_cap = 2 * 12 * m->trunk.s.max_features; /* two tasks per stack */
        m->eng_force = 3;                                    /* not possible: J route */
        run_mgda(m, "mgda", x, act, T, &grouped);
        ck_assert(!m->eng_autogram);
        for (size_t i = 0; i < (size_t)T * one.P; i++)
            ck_assert(close_to(grouped.J[i], one.J[i], 1e-6f));
        for (size_t i = 0; i < one.P; i++)
            ck_assert_float_eq(one.J[one.P + i], 0.0f);
        check_gram(grouped.G, grouped.J, grouped.P, T, 1e-5, "groups");
        check_grads_close(grouped.grads, one.grads, m->nparams, 1e-5, "groups");
        ck_assert_double_eq(one.w[1], 0.0);
        free_out(&one);
        free_out(&grouped);
        free_all(tg, T);
        mtl_tensor_free(x);
        mtl_model_free(m);
    }
}
END_TEST

/* Allocation failures anywhere in building, preparing and running the engine (autogram,
 * J, restricted range) report out of memory and leak nothing. */
typedef struct {
    int force;
    int64_t grad_layers;
    const char *method;
} oom_ctx;

static mtl_status engine_oom_run(void *p)
{
    const oom_ctx *c = p;
    mtl_model *m = NULL;
    mtl_weighting *w = NULL;
    mtl_tensor *x = NULL, *y0 = NULL, *y1 = NULL;
    mtl_status st = MTL_OK;
    int64_t xs[2] = {6, 10}, ys[2] = {6, 2}, in[1] = {10};
    if ((st = mtl_tensor_create(&x, MTL_FLOAT32, 2, xs)) != MTL_OK ||
        (st = mtl_tensor_create(&y0, MTL_FLOAT32, 2, ys)) != MTL_OK ||
        (st = mtl_tensor_create(&y1, MTL_FLOAT32, 2, ys)) != MTL_OK ||
        (st = mtl_model_create(&m, MTL_FLOAT32, 1, in)) != MTL_OK)
        goto out;
    for (size_t i = 0; i < 60; i++)
        ((float *)mtl_tensor_data(x))[i] = (float)(i % 7) * 0.1f - 0.3f;
    for (size_t i = 0; i < 12; i++) {
        ((float *)mtl_tensor_data(y0))[i] = (float)(i % 3) * 0.2f;
        ((float *)mtl_tensor_data(y1))[i] = (float)(i % 5) * -0.1f;
    }
    mtl_trunk *tr = mtl_model_trunk(m);
    mtl_head *h;
    if ((st = mtl_trunk_add_linear(tr, 8)) != MTL_OK ||
        (st = mtl_trunk_add_layer(tr, "layer_norm", NULL)) != MTL_OK ||
        (st = mtl_trunk_add_linear(tr, 8)) != MTL_OK ||
        (st = mtl_model_add_head(m, &h, "a")) != MTL_OK ||
        (st = mtl_head_add_linear(h, 2)) != MTL_OK ||
        (st = mtl_model_add_head(m, &h, "b")) != MTL_OK ||
        (st = mtl_head_add_linear(h, 2)) != MTL_OK || (st = mtl_model_build(m, 6, 1)) != MTL_OK ||
        (st = mtl_model_set_double(m, "grad_layers", (double)c->grad_layers)) != MTL_OK ||
        (st = mtl_weighting_create(&w, c->method, 2)) != MTL_OK)
        goto out;
    m->eng_force = c->force;
    const mtl_tensor *tg[2] = {y0, y1};
    float L[2];
    st = mtl_model_forward_backward(m, w, x, tg, NULL, L);
out:
    mtl_weighting_free(w);
    mtl_model_free(m);
    mtl_tensor_free(x);
    mtl_tensor_free(y0);
    mtl_tensor_free(y1);
    return st;
}

START_TEST(engine_allocation_failures)
{
    const oom_ctx cases[] = {{3, 0, "mgda"}, {1, 0, "mgda"}, {3, 1, "imtl"}, {0, 1, "moco"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_int_gt(mtl_test_oom_sweep(engine_oom_run, (void *)&cases[i]), 0);
}
END_TEST

/* The small-Gram kernel against double loops, for every mode, with a row length that is not
 * a multiple of the chunk or of the vector width. */
START_TEST(layer_dots_modes)
{
    const size_t T = 3, n = 1037, lda = 1040, ldb = 1051;
    float *a = malloc(T * lda * sizeof(float)), *b = malloc(T * ldb * sizeof(float));
    mtli_rng r;
    mtli_rng_seed(&r, 4);
    for (size_t i = 0; i < T * lda; i++)
        a[i] = mtli_rng_uniform(&r) - 0.5f;
    for (size_t i = 0; i < T * ldb; i++)
        b[i] = mtli_rng_uniform(&r) - 0.5f;
    double ab[9], aa[9];
    for (size_t s2 = 0; s2 < T; s2++)
        for (size_t t = 0; t < T; t++) {
            ab[s2 * T + t] = aa[s2 * T + t] = 0.0;
            for (size_t j = 0; j < n; j++) {
                ab[s2 * T + t] += (double)a[s2 * lda + j] * b[t * ldb + j];
                aa[s2 * T + t] += (double)a[s2 * lda + j] * a[t * lda + j];
            }
        }
    for (int mode = 0; mode < 3; mode++) {
        double G[9];
        for (int i = 0; i < 9; i++)
            G[i] = 1.0; /* accumulated into */
        const float *bb = mode == MTLI_DOTS_SYMMETRIC ? a : b;
        size_t ld = mode == MTLI_DOTS_SYMMETRIC ? lda : ldb;
        mtli_layer_dots(T, n, a, lda, bb, ld, (mtli_dots_mode)mode, G);
        for (size_t s2 = 0; s2 < T; s2++)
            for (size_t t = 0; t < T; t++) {
                double want = mode == MTLI_DOTS_PLAIN       ? ab[s2 * T + t]
                              : mode == MTLI_DOTS_SYMMETRIC ? aa[s2 * T + t]
                                                            : ab[s2 * T + t] + ab[t * T + s2];
                want += 1.0;
                ck_assert_msg(fabs(G[s2 * T + t] - want) <= 1e-5,
                              "mode %d G[%zu][%zu] = %.9g, want %.9g", mode, s2, t,
                              G[s2 * T + t], want);
            }
    }
    free(a);
    free(b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("train_step");
    TCase *tc = tcase_create("multi");
    tcase_add_test(tc, multi_input_gradient_is_sum_of_task_gradients);
    tcase_add_test(tc, multi_input_step_touches_only_present_heads);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("engine");
    tcase_set_timeout(te, 120);
    tcase_add_test(te, engine_per_task_gradients_and_gram);
    tcase_add_test(te, engine_representation_mode_gram);
    tcase_add_test(te, every_method_trains_through_the_step);
    tcase_add_test(te, layer_dots_modes);
    tcase_add_test(te, representation_mode_factored_heads);
    tcase_add_test(te, stacked_backward_equals_per_task_passes);
    tcase_add_test(te, autogram_gram_equals_J_Jt);
    tcase_add_test(te, engine_picks_the_cheaper_route);
    tcase_add_test(te, grad_layers_restricts_per_task_gradients);
    tcase_add_test(te, stacked_groups_and_inactive_tasks);
    tcase_add_test(te, engine_allocation_failures);
    suite_add_tcase(s, te);
    return s;
}

MTL_TEST_MAIN(suite)
