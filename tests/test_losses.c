/* Task losses: values against hand computation and PyTorch, finite-difference gradients,
 * missing labels and masks, target validation. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mtl/mtl.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "losses/loss.h"
#include "test_main.h"

static mtl_tensor *wrap_f(float *data, int ndim, int64_t d0, int64_t d1)
{
    mtl_tensor *t = NULL;
    int64_t shape[2] = {d0, d1};
    ck_assert_ok(mtl_tensor_wrap(&t, MTL_FLOAT32, data, ndim, shape));
    return t;
}

static mtl_tensor *wrap_i(int32_t *data, int ndim, int64_t d0, int64_t d1)
{
    mtl_tensor *t = NULL;
    int64_t shape[2] = {d0, d1};
    ck_assert_ok(mtl_tensor_wrap(&t, MTL_INT32, data, ndim, shape));
    return t;
}

static mtli_loss make_loss(mtli_loss_kind kind)
{
    mtli_loss L;
    memset(&L, 0, sizeof L);
    L.kind = kind;
    L.delta = 1.0;
    return L;
}

static void set_weights(mtli_loss *L, const float *w, size_t n)
{
    L->class_weights = mtli_malloc(n * sizeof *w);
    ck_assert_ptr_nonnull(L->class_weights);
    memcpy(L->class_weights, w, n * sizeof *w);
    L->nclass_weights = n;
}

#define ck_assert_close(a, b, tol)                                                       \
    do {                                                                                 \
        double a_ = (a), b_ = (b);                                                       \
        ck_assert_msg(fabs(a_ - b_) <= (tol), "%s = %.17g, expected %.17g (tol %g)", #a, \
                      a_, b_, (double)(tol));                                            \
    } while (0)

#define ck_assert_error(expr, status, substr)                                           \
    do {                                                                                \
        ck_assert_status(expr, status);                                                 \
        ck_assert_msg(strstr(mtl_last_error(), (substr)) != NULL,                       \
                      "message '%s' lacks '%s'", mtl_last_error(), (substr));           \
    } while (0)

/* Central differences on the float logits. The step actually taken, (float)(z+h) -
 * (float)(z-h), is the denominator, so float rounding of the perturbed logit does not bias the
 * quotient; the loss itself is accumulated in double. With h = 1e-3 the truncation error is
 * ~1e-7; the analytic gradient is stored as float. Tolerance: 1e-5 + 1e-4 * |numeric|. */
static void fd_check(const mtli_loss *L, float *z, size_t B, size_t C, const mtl_tensor *t,
                     const mtl_tensor *m, float scale, const char *what)
{
    ck_assert_ok(mtli_loss_check(L, "fd", B, C, t, m));
    float *g = malloc(B * C * sizeof *g);
    double l0, lp, lm;
    size_t n;
    mtli_loss_eval(L, z, B, C, t, m, &l0, g, scale, &n);
    ck_assert_msg(isfinite(l0), "%s: loss %g", what, l0);
    const double h = 1e-3;
    for (size_t k = 0; k < B * C; k++) {
        float save = z[k];
        float zp = (float)(save + h), zm = (float)(save - h);
        z[k] = zp;
        mtli_loss_eval(L, z, B, C, t, m, &lp, NULL, 1.0f, &n);
        z[k] = zm;
        mtli_loss_eval(L, z, B, C, t, m, &lm, NULL, 1.0f, &n);
        z[k] = save;
        double num = (double)scale * (lp - lm) / ((double)zp - (double)zm);
        ck_assert_msg(fabs((double)g[k] - num) <= 1e-5 + 1e-4 * fabs(num),
                      "%s: d/dz[%zu] analytic %.9g, numeric %.9g", what, k, (double)g[k], num);
    }
    free(g);
}

static void fill_uniform(mtli_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * mtli_rng_uniform(r);
}

/* ---- hand-computed values ------------------------------------------------------------ */

START_TEST(ce_of_logits_123_target_2)
{
    /* log(e^1 + e^2 + e^3) - 3; gradient softmax - onehot */
    float z[3] = {1, 2, 3};
    int32_t y[1] = {2};
    mtl_tensor *t = wrap_i(y, 1, 1, 0);
    mtli_loss L = make_loss(MTLI_LOSS_CROSS_ENTROPY);
    ck_assert_ok(mtli_loss_check(&L, "cls", 1, 3, t, NULL));
    double loss;
    size_t n;
    float g[3];
    mtli_loss_eval(&L, z, 1, 3, t, NULL, &loss, g, 1.0f, &n);
    double s = exp(1.0) + exp(2.0) + exp(3.0);
    ck_assert_close(loss, log(s) - 3.0, 1e-12);
    ck_assert_close(loss, 0.4076059644443804, 1e-12);
    ck_assert_uint_eq(n, 1);
    ck_assert_close(g[0], exp(1.0) / s, 1e-7);
    ck_assert_close(g[1], exp(2.0) / s, 1e-7);
    ck_assert_close(g[2], exp(3.0) / s - 1.0, 1e-7);
    mtl_tensor_free(t);
}
END_TEST

/* Reference values computed with PyTorch 1.13 in float64:
 *   F.cross_entropy(z, y, weight=w, label_smoothing=eps), then .backward()
 * z = [[1,2,3],[1,0,-1],[0.5,0.5,2]], y = [2,0,1], w = [1,2,0.5]. */
static const double ce_ref_loss[4] = {0.8947310214300255, 1.242677490705486, 0.9447310214300255,
                                      1.2674066533017494};
static const double ce_ref_grad[4][9] = {
    {0.030010191056793478, 0.08157615701826587, -0.1115863480750594, -0.1115863480750594,
     0.08157615701826587, 0.030010191056793478, 0.051426924327295405, -0.2819064090060379,
     0.23047948467874252},
    {0.01286151045291149, 0.03496121015068537, -0.04782272060359689, -0.09564544120719377,
     0.06992242030137075, 0.02572302090582298, 0.08816044170393499, -0.4832681297246364,
     0.39510768802070145},
    {0.018899079945682365, 0.07046504590715476, -0.0893641258528372, -0.08936412585283716,
     0.07046504590715477, 0.01889907994568237, 0.0403158132161843, -0.2596841867838157,
     0.21936837356763145},
    {0.00505256898949017, 0.02057508578982439, -0.02562765477931457, -0.07343000808445657,
     0.052040174925441225, 0.02138983315901527, 0.0749632804424615, -0.4488462433670624,
     0.3738829629246009},
};

START_TEST(ce_weights_and_smoothing_match_pytorch)
{
    float z[9] = {1, 2, 3, 1, 0, -1, 0.5f, 0.5f, 2};
    int32_t y[3] = {2, 0, 1};
    const float w[3] = {1, 2, 0.5f};
    mtl_tensor *t = wrap_i(y, 1, 3, 0);
    for (int v = 0; v < 4; v++) {
        mtli_loss L = make_loss(MTLI_LOSS_CROSS_ENTROPY);
        if (v & 1)
            set_weights(&L, w, 3);
        if (v & 2)
            L.label_smoothing = 0.1;
        ck_assert_ok(mtli_loss_check(&L, "cls", 3, 3, t, NULL));
        double loss;
        size_t n;
        float g[9];
        mtli_loss_eval(&L, z, 3, 3, t, NULL, &loss, g, 1.0f, &n);
        ck_assert_close(loss, ce_ref_loss[v], 1e-12);
        ck_assert_uint_eq(n, 3);
        for (int k = 0; k < 9; k++)
            ck_assert_close(g[k], ce_ref_grad[v][k], 1e-7);
        mtli_loss_clear(&L);
    }
    mtl_tensor_free(t);
}
END_TEST

START_TEST(ce_weighted_by_hand)
{
    /* two samples: sum(w_y * nll) / sum(w_y) */
    float z[4] = {0, 0, 2, 0};
    int32_t y[2] = {1, 1};
    const float w[2] = {1, 3};
    mtl_tensor *t = wrap_i(y, 2, 2, 1);
    mtli_loss L = make_loss(MTLI_LOSS_CROSS_ENTROPY);
    set_weights(&L, w, 2);
    ck_assert_ok(mtli_loss_check(&L, "cls", 2, 2, t, NULL));
    double loss;
    size_t n;
    mtli_loss_eval(&L, z, 2, 2, t, NULL, &loss, NULL, 1.0f, &n);
    double nll0 = log(2.0), nll1 = log(exp(2.0) + 1.0);
    ck_assert_close(loss, (3 * nll0 + 3 * nll1) / 6.0, 1e-12);
    /* smoothing eps with weights:
     * (1-eps) * weighted nll + eps/C * sum_i sum_c w_c nll_ic / sum_i w_y */
    L.label_smoothing = 0.2;
    mtli_loss_eval(&L, z, 2, 2, t, NULL, &loss, NULL, 1.0f, &n);
    double s0 = 1 * log(2.0) + 3 * log(2.0);
    double s1 = 1 * (log(exp(2.0) + 1.0) - 2.0) + 3 * nll1;
    ck_assert_close(loss, 0.8 * (3 * nll0 + 3 * nll1) / 6.0 + 0.1 * (s0 + s1) / 6.0, 1e-12);
    mtli_loss_clear(&L);
    ck_assert_ptr_null(L.class_weights);
    mtl_tensor_free(t);
}
END_TEST

START_TEST(ce_smoothing_by_hand)
{
    /* target distribution (1-eps) onehot + eps/C: loss = sum_c q_c (lse - z_c) */
    float z[3] = {1, 2, 3};
    int32_t y[1] = {0};
    mtl_tensor *t = wrap_i(y, 1, 1, 0);
    mtli_loss L = make_loss(MTLI_LOSS_CROSS_ENTROPY);
    L.label_smoothing = 0.3;
    double loss;
    size_t n;
    mtli_loss_eval(&L, z, 1, 3, t, NULL, &loss, NULL, 1.0f, &n);
    double lse = log(exp(1.0) + exp(2.0) + exp(3.0));
    double q[3] = {0.7 + 0.1, 0.1, 0.1};
    ck_assert_close(loss, q[0] * (lse - 1) + q[1] * (lse - 2) + q[2] * (lse - 3), 1e-12);
    mtl_tensor_free(t);
}
END_TEST

START_TEST(ce_is_stable_for_huge_logits)
{
    float z[3] = {1000, 0, -1000};
    int32_t y[1] = {1};
    mtl_tensor *t = wrap_i(y, 1, 1, 0);
    mtli_loss L = make_loss(MTLI_LOSS_CROSS_ENTROPY);
    double loss;
    size_t n;
    float g[3];
    mtli_loss_eval(&L, z, 1, 3, t, NULL, &loss, g, 1.0f, &n);
    ck_assert_close(loss, 1000.0, 1e-9);
    ck_assert_close(g[0], 1.0, 1e-7);
    ck_assert_close(g[1], -1.0, 1e-7);
    ck_assert_close(g[2], 0.0, 1e-7);
    mtl_tensor_free(t);
}
END_TEST

/* PyTorch 1.13, float64: F.binary_cross_entropy_with_logits(x, t[, weight=wb]) with
 * x = [[0.5,-2],[3,0]], t = [[1,0],[0.25,1]], wb = [2, 0.5]. */
START_TEST(bce_matches_pytorch_and_hand_values)
{
    float x[4] = {0.5f, -2, 3, 0};
    float y[4] = {1, 0, 0.25f, 1};
    mtl_tensor *t = wrap_f(y, 2, 2, 2);
    mtli_loss L = make_loss(MTLI_LOSS_BCE);
    ck_assert_ok(mtli_loss_check(&L, "tags", 2, 2, t, NULL));
    double loss;
    size_t n;
    float g[4];
    mtli_loss_eval(&L, x, 2, 2, t, NULL, &loss, g, 1.0f, &n);
    /* by hand: -[y log s(x) + (1-y) log(1-s(x))] */
    double hand = 0.0;
    for (int k = 0; k < 4; k++) {
        double s = 1.0 / (1.0 + exp(-(double)x[k]));
        hand += -(y[k] * log(s) + (1 - y[k]) * log(1 - s));
    }
    ck_assert_close(loss, hand / 4, 1e-12);
    ck_assert_close(loss, 0.8981848818391917, 1e-12);
    const double gref[4] = {-0.09438516719953635, 0.029800730505529387, 0.17564353170560834,
                            -0.125};
    for (int k = 0; k < 4; k++)
        ck_assert_close(g[k], gref[k], 1e-7);
    const float wb[2] = {2.0f, 0.5f};
    set_weights(&L, wb, 2);
    ck_assert_ok(mtli_loss_check(&L, "tags", 2, 2, t, NULL));
    mtli_loss_eval(&L, x, 2, 2, t, NULL, &loss, g, 1.0f, &n);
    ck_assert_close(loss, 1.4888415668272892, 1e-12);
    const double gw[4] = {-0.1887703343990727, 0.014900365252764693, 0.3512870634112167,
                          -0.0625};
    for (int k = 0; k < 4; k++)
        ck_assert_close(g[k], gw[k], 1e-7);
    mtli_loss_clear(&L);
    mtl_tensor_free(t);
}
END_TEST

START_TEST(bce_is_stable_for_huge_logits)
{
    float x[4] = {100, -100, 100, -100};
    float y[4] = {1, 0, 0, 1};
    mtl_tensor *t = wrap_f(y, 2, 2, 2);
    mtli_loss L = make_loss(MTLI_LOSS_BCE);
    double loss;
    size_t n;
    float g[4];
    mtli_loss_eval(&L, x, 2, 2, t, NULL, &loss, g, 1.0f, &n);
    ck_assert_close(loss, 200.0 / 4, 1e-9);
    ck_assert_close(g[0], 0.0, 1e-9);
    ck_assert_close(g[2], 0.25, 1e-9);
    ck_assert_close(g[3], -0.25, 1e-9);
    mtl_tensor_free(t);
}
END_TEST

START_TEST(huber_on_both_sides_of_delta)
{
    /* delta 1: d = 0.2 -> 0.02; d = -3 -> 2.5; d = 1.5 -> 1.0; d = 0 -> 0; mean 0.88
     * (PyTorch 1.13 F.huber_loss gives 0.88 and grads [0.05, -0.25, 0.25, 0]) */
    float o[4] = {0.2f, -3, 1.5f, 0};
    float y[4] = {0, 0, 0, 0};
    mtl_tensor *t = wrap_f(y, 1, 4, 0);
    mtli_loss L = make_loss(MTLI_LOSS_HUBER);
    ck_assert_ok(mtli_loss_check(&L, "reg", 4, 1, t, NULL));
    double loss;
    size_t n;
    float g[4];
    mtli_loss_eval(&L, o, 4, 1, t, NULL, &loss, g, 1.0f, &n);
    ck_assert_close(loss, (0.5 * 0.2f * 0.2f + 2.5 + 1.0 + 0) / 4, 1e-12);
    ck_assert_close(loss, 0.88, 1e-8);
    ck_assert_close(g[0], 0.05, 1e-8);
    ck_assert_close(g[1], -0.25, 1e-8);
    ck_assert_close(g[2], 0.25, 1e-8);
    ck_assert_close(g[3], 0.0, 0);
    /* delta 2: d = -3 is outside (2 * (3 - 1) = 4), d = 1.5 inside (1.125) */
    L.delta = 2.0;
    mtli_loss_eval(&L, o, 4, 1, t, NULL, &loss, g, 1.0f, &n);
    ck_assert_close(loss, (0.5 * 0.2f * 0.2f + 4.0 + 1.125 + 0) / 4, 1e-12);
    ck_assert_close(g[1], -0.5, 1e-8);
    ck_assert_close(g[2], 1.5 / 4, 1e-8);
    mtl_tensor_free(t);
}
END_TEST

START_TEST(mse_and_l1_by_hand)
{
    float o[4] = {1, 2, 3, 4};
    float y[4] = {0, 2, 5, 3.5f};
    mtl_tensor *t = wrap_f(y, 2, 2, 2);
    mtli_loss L = make_loss(MTLI_LOSS_MSE);
    double loss;
    size_t n;
    float g[4];
    mtli_loss_eval(&L, o, 2, 2, t, NULL, &loss, g, 2.0f, &n);
    ck_assert_close(loss, (1 + 0 + 4 + 0.25) / 4, 1e-12);
    ck_assert_close(g[0], 2.0 * 2 * 1 / 4, 1e-7);
    ck_assert_close(g[2], 2.0 * 2 * -2 / 4, 1e-7);
    L.kind = MTLI_LOSS_L1;
    mtli_loss_eval(&L, o, 2, 2, t, NULL, &loss, g, 1.0f, &n);
    ck_assert_close(loss, (1 + 0 + 2 + 0.5) / 4, 1e-12);
    ck_assert_close(g[0], 0.25, 0);
    ck_assert_close(g[1], 0.0, 0); /* subgradient 0 at d = 0, like torch.sign */
    ck_assert_close(g[2], -0.25, 0);
    ck_assert_close(g[3], 0.25, 0);
    mtl_tensor_free(t);
}
END_TEST

/* ---- finite-difference gradient checks ---------------------------------------------- */

START_TEST(ce_gradient_matches_finite_differences)
{
    enum { B = 6, C = 4 };
    mtli_rng r;
    mtli_rng_seed(&r, 11);
    float z[B * C];
    fill_uniform(&r, z, B * C, -3, 3);
    int32_t y[B] = {0, 3, -1, 2, 1, 3};
    float mask[B] = {1, 1, 1, 0, 1, 1};
    const float w[C] = {0.5f, 2.0f, 1.0f, 1.5f};
    mtl_tensor *t = wrap_i(y, 1, B, 0);
    mtl_tensor *m = wrap_f(mask, 1, B, 0);
    for (int v = 0; v < 8; v++) {
        mtli_loss L = make_loss(MTLI_LOSS_CROSS_ENTROPY);
        if (v & 1)
            set_weights(&L, w, C);
        if (v & 2)
            L.label_smoothing = 0.15;
        fd_check(&L, z, B, C, t, (v & 4) ? m : NULL, (v & 4) ? 0.7f : 1.0f, "ce");
        mtli_loss_clear(&L);
    }
    mtl_tensor_free(t);
    mtl_tensor_free(m);
}
END_TEST

START_TEST(bce_gradient_matches_finite_differences)
{
    enum { B = 5, C = 3 };
    mtli_rng r;
    mtli_rng_seed(&r, 12);
    float z[B * C], y[B * C];
    fill_uniform(&r, z, B * C, -4, 4);
    fill_uniform(&r, y, B * C, 0, 1);
    y[1] = NAN;
    y[7] = NAN;
    y[3] = 0;
    y[4] = 1;
    int32_t mask[B] = {1, 0, 1, 1, 1};
    const float w[C] = {0.5f, 2.0f, 1.25f};
    mtl_tensor *t = wrap_f(y, 2, B, C);
    mtl_tensor *m = wrap_i(mask, 1, B, 0);
    for (int v = 0; v < 4; v++) {
        mtli_loss L = make_loss(MTLI_LOSS_BCE);
        if (v & 1)
            set_weights(&L, w, C);
        fd_check(&L, z, B, C, t, (v & 2) ? m : NULL, (v & 2) ? 3.0f : 1.0f, "bce");
        mtli_loss_clear(&L);
    }
    mtl_tensor_free(t);
    mtl_tensor_free(m);
}
END_TEST

START_TEST(regression_gradients_match_finite_differences)
{
    enum { B = 6, C = 2 };
    mtli_rng r;
    mtli_rng_seed(&r, 13);
    float z[B * C], y[B * C];
    fill_uniform(&r, z, B * C, -3, 3);
    for (int k = 0; k < B * C; k++) {
        /* keep |d| and ||d| - delta| away from the kinks of l1 and huber (delta 0.8) */
        float d = -3 + 6 * mtli_rng_uniform(&r);
        if (fabsf(d) < 0.05f || fabsf(fabsf(d) - 0.8f) < 0.05f)
            d += 0.2f;
        y[k] = z[k] - d;
    }
    y[5] = NAN;
    float mask[B] = {1, 1, 0, 1, 1, 1};
    mtl_tensor *t = wrap_f(y, 2, B, C);
    mtl_tensor *m = wrap_f(mask, 1, B, 0);
    const mtli_loss_kind kinds[3] = {MTLI_LOSS_MSE, MTLI_LOSS_L1, MTLI_LOSS_HUBER};
    for (int k = 0; k < 3; k++) {
        mtli_loss L = make_loss(kinds[k]);
        L.delta = 0.8;
        fd_check(&L, z, B, C, t, NULL, 1.0f, mtli_loss_kind_name(kinds[k]));
        fd_check(&L, z, B, C, t, m, -1.5f, mtli_loss_kind_name(kinds[k]));
    }
    mtl_tensor_free(t);
    mtl_tensor_free(m);
}
END_TEST

/* ---- masks and missing labels ---------------------------------------------------------- */

/* Loss and gradient with sample `drop` masked equal, bit for bit, those of the batch without
 * that sample; the masked row of the gradient is exactly zero. */
static void check_drop(mtli_loss *L, const float *z, size_t B, size_t C, void *ydata,
                       mtl_dtype ydt, size_t drop)
{
    size_t ysz = ydt == MTL_INT32 ? sizeof(int32_t) : sizeof(float);
    size_t ycols = L->kind == MTLI_LOSS_CROSS_ENTROPY ? 1 : C;
    float *g = malloc(B * C * sizeof *g), *g2 = malloc(B * C * sizeof *g);
    float *z2 = malloc(B * C * sizeof *z2);
    char *y2 = malloc(B * ycols * ysz);
    int32_t *mask = malloc(B * sizeof *mask);
    for (size_t i = 0, j = 0; i < B; i++) {
        mask[i] = i != drop;
        if (i == drop)
            continue;
        memcpy(z2 + j * C, z + i * C, C * sizeof *z);
        memcpy(y2 + j * ycols * ysz, (char *)ydata + i * ycols * ysz, ycols * ysz);
        j++;
    }
    mtl_tensor *t = NULL, *t2 = NULL, *m = NULL;
    int64_t s1[2] = {(int64_t)B, (int64_t)ycols}, s2[2] = {(int64_t)B - 1, (int64_t)ycols};
    int64_t sm[1] = {(int64_t)B};
    ck_assert_ok(mtl_tensor_wrap(&t, ydt, ydata, 2, s1));
    ck_assert_ok(mtl_tensor_wrap(&t2, ydt, y2, 2, s2));
    ck_assert_ok(mtl_tensor_wrap(&m, MTL_INT32, mask, 1, sm));
    ck_assert_ok(mtli_loss_check(L, "t", B, C, t, m));
    ck_assert_ok(mtli_loss_check(L, "t", B - 1, C, t2, NULL));
    double l1, l2;
    size_t n1, n2;
    mtli_loss_eval(L, z, B, C, t, m, &l1, g, 0.5f, &n1);
    mtli_loss_eval(L, z2, B - 1, C, t2, NULL, &l2, g2, 0.5f, &n2);
    ck_assert_msg(l1 == l2, "%s: masked loss %.17g != loss without the sample %.17g",
                  mtli_loss_kind_name(L->kind), l1, l2);
    ck_assert_uint_eq(n1, n2);
    for (size_t i = 0, j = 0; i < B; i++) {
        for (size_t c = 0; c < C; c++) {
            if (i == drop)
                ck_assert_msg(g[i * C + c] == 0.0f, "masked row has gradient");
            else
                ck_assert_msg(g[i * C + c] == g2[j * C + c], "row %zu differs", i);
        }
        j += i != drop;
    }
    mtl_tensor_free(t);
    mtl_tensor_free(t2);
    mtl_tensor_free(m);
    free(g);
    free(g2);
    free(z2);
    free(y2);
    free(mask);
}

START_TEST(masked_sample_contributes_exactly_nothing)
{
    enum { B = 5, C = 3 };
    mtli_rng r;
    mtli_rng_seed(&r, 21);
    float z[B * C], yf[B * C];
    fill_uniform(&r, z, B * C, -2, 2);
    fill_uniform(&r, yf, B * C, 0, 1);
    int32_t yi[B] = {0, 2, 1, 1, 0};
    const float w[C] = {0.5f, 2.0f, 1.0f};
    for (size_t drop = 0; drop < B; drop++) {
        mtli_loss L = make_loss(MTLI_LOSS_CROSS_ENTROPY);
        set_weights(&L, w, C);
        L.label_smoothing = 0.1;
        check_drop(&L, z, B, C, yi, MTL_INT32, drop);
        mtli_loss_clear(&L);
        L = make_loss(MTLI_LOSS_BCE);
        set_weights(&L, w, C);
        check_drop(&L, z, B, C, yf, MTL_FLOAT32, drop);
        mtli_loss_clear(&L);
        const mtli_loss_kind reg[3] = {MTLI_LOSS_MSE, MTLI_LOSS_L1, MTLI_LOSS_HUBER};
        for (int k = 0; k < 3; k++) {
            L = make_loss(reg[k]);
            check_drop(&L, z, B, C, yf, MTL_FLOAT32, drop);
        }
    }
}
END_TEST

START_TEST(missing_labels_equal_masking)
{
    /* class id -1 and NaN targets act exactly like a zero mask entry */
    enum { B = 4, C = 2 };
    float z[B * C] = {0.3f, -1, 2, 0.5f, -0.7f, 0.1f, 1, 1};
    int32_t yi[B] = {1, -1, 0, 1};
    int32_t yi_full[B] = {1, 0, 0, 1};
    float yf[B * C] = {0.5f, 1, NAN, NAN, 0, 0.25f, 1, 0};
    float yf_full[B * C] = {0.5f, 1, 0.3f, 0.9f, 0, 0.25f, 1, 0};
    float mask[B] = {1, 0, 1, 1};
    float g1[B * C], g2[B * C];
    double l1, l2;
    size_t n1, n2;
    mtl_tensor *ti = wrap_i(yi, 1, B, 0), *tif = wrap_i(yi_full, 1, B, 0);
    mtl_tensor *tf = wrap_f(yf, 2, B, C), *tff = wrap_f(yf_full, 2, B, C);
    mtl_tensor *m = wrap_f(mask, 1, B, 0);
    mtli_loss L = make_loss(MTLI_LOSS_CROSS_ENTROPY);
    L.label_smoothing = 0.05;
    mtli_loss_eval(&L, z, B, C, ti, NULL, &l1, g1, 1.0f, &n1);
    mtli_loss_eval(&L, z, B, C, tif, m, &l2, g2, 1.0f, &n2);
    ck_assert(l1 == l2);
    ck_assert_uint_eq(n1, 3);
    ck_assert_uint_eq(n2, 3);
    ck_assert(memcmp(g1, g2, sizeof g1) == 0);
    const mtli_loss_kind kinds[4] = {MTLI_LOSS_BCE, MTLI_LOSS_MSE, MTLI_LOSS_L1, MTLI_LOSS_HUBER};
    for (int k = 0; k < 4; k++) {
        L = make_loss(kinds[k]);
        ck_assert_ok(mtli_loss_check(&L, "t", B, C, tf, NULL));
        mtli_loss_eval(&L, z, B, C, tf, NULL, &l1, g1, 1.0f, &n1);
        mtli_loss_eval(&L, z, B, C, tff, m, &l2, g2, 1.0f, &n2);
        ck_assert_msg(l1 == l2, "%s", mtli_loss_kind_name(kinds[k]));
        ck_assert_uint_eq(n1, 6);
        ck_assert(memcmp(g1, g2, sizeof g1) == 0);
    }
    mtl_tensor_free(ti);
    mtl_tensor_free(tif);
    mtl_tensor_free(tf);
    mtl_tensor_free(tff);
    mtl_tensor_free(m);
}
END_TEST

START_TEST(all_missing_batch_gives_zero_loss_and_gradient)
{
    enum { B = 3, C = 2 };
    float z[B * C] = {1, 2, 3, 4, 5, 6};
    int32_t yi[B] = {-1, -1, -1};
    int32_t yi_ok[B] = {0, 1, 0};
    float yf[B * C] = {NAN, NAN, NAN, NAN, NAN, NAN};
    float yf_ok[B * C] = {0, 1, 0, 1, 0, 1};
    int32_t zero_mask[B] = {0, 0, 0};
    mtl_tensor *m = wrap_i(zero_mask, 1, B, 0);
    for (int k = 0; k < 5; k++) {
        mtli_loss L = make_loss((mtli_loss_kind)k);
        L.label_smoothing = k == 0 ? 0.2 : 0.0;
        for (int use_mask = 0; use_mask < 2; use_mask++) {
            mtl_tensor *t;
            if (k == 0)
                t = wrap_i(use_mask ? yi_ok : yi, 1, B, 0);
            else
                t = wrap_f(use_mask ? yf_ok : yf, 2, B, C);
            ck_assert_ok(mtli_loss_check(&L, "t", B, C, t, use_mask ? m : NULL));
            float g[B * C];
            for (int j = 0; j < B * C; j++)
                g[j] = 99.0f;
            double loss = 99.0;
            size_t n = 99;
            mtli_loss_eval(&L, z, B, C, t, use_mask ? m : NULL, &loss, g, 1.0f, &n);
            ck_assert_msg(loss == 0.0, "%s: loss %g", mtli_loss_kind_name(L.kind), loss);
            ck_assert_uint_eq(n, 0);
            for (int j = 0; j < B * C; j++)
                ck_assert(g[j] == 0.0f);
            mtl_tensor_free(t);
        }
    }
    mtl_tensor_free(m);
}
END_TEST

START_TEST(zero_weight_targets_give_zero_instead_of_nan)
{
    float z[4] = {1, 2, 3, 4};
    int32_t y[2] = {0, 0};
    const float w[2] = {0, 1};
    mtl_tensor *t = wrap_i(y, 1, 2, 0);
    mtli_loss L = make_loss(MTLI_LOSS_CROSS_ENTROPY);
    set_weights(&L, w, 2);
    ck_assert_ok(mtli_loss_check(&L, "t", 2, 2, t, NULL));
    double loss;
    size_t n;
    float g[4];
    mtli_loss_eval(&L, z, 2, 2, t, NULL, &loss, g, 1.0f, &n);
    ck_assert(loss == 0.0);
    ck_assert_uint_eq(n, 2);
    for (int j = 0; j < 4; j++)
        ck_assert(g[j] == 0.0f);
    mtli_loss_clear(&L);
    mtl_tensor_free(t);
}
END_TEST

/* ---- validation ------------------------------------------------------------------------ */

START_TEST(check_rejects_bad_targets_with_named_sample)
{
    int32_t yi[3] = {0, 5, 1};
    int32_t yneg[3] = {0, 1, -2};
    float yf[3] = {0, 1, 2};
    float yb[3] = {0, 1.5f, 1};
    float yinf[3] = {0, INFINITY, 1};
    mtl_tensor *ti = wrap_i(yi, 1, 3, 0), *tneg = wrap_i(yneg, 1, 3, 0);
    mtl_tensor *tf = wrap_f(yf, 1, 3, 0), *tb = wrap_f(yb, 1, 3, 0), *tinf = wrap_f(yinf, 1, 3, 0);
    mtl_tensor *tf2 = wrap_f(yf, 2, 1, 3), *ti2 = wrap_i(yi, 2, 1, 3);
    mtli_loss ce = make_loss(MTLI_LOSS_CROSS_ENTROPY);
    mtli_loss bce = make_loss(MTLI_LOSS_BCE), mse = make_loss(MTLI_LOSS_MSE);

    ck_assert_error(mtli_loss_check(&ce, "digit", 3, 3, ti, NULL), MTL_ERR_INVALID_ARGUMENT,
                    "task 'digit': target of sample 1 is class 5, expected 0..2");
    ck_assert_error(mtli_loss_check(&ce, "digit", 3, 3, tneg, NULL), MTL_ERR_INVALID_ARGUMENT,
                    "sample 2 is class -2");
    ck_assert_error(mtli_loss_check(&ce, "digit", 3, 3, tf, NULL), MTL_ERR_SHAPE,
                    "dtype float32, expected int32");
    ck_assert_error(mtli_loss_check(&ce, "digit", 4, 3, ti, NULL), MTL_ERR_SHAPE,
                    "shape [3], expected [4]");
    ck_assert_error(mtli_loss_check(&ce, "digit", 1, 3, ti2, NULL), MTL_ERR_SHAPE,
                    "shape [1, 3]");
    ck_assert_error(mtli_loss_check(&bce, "spam", 3, 1, tb, NULL), MTL_ERR_INVALID_ARGUMENT,
                    "task 'spam': bce target of sample 1, column 0 is 1.5, expected a value in "
                    "[0, 1]");
    ck_assert_error(mtli_loss_check(&mse, "age", 3, 1, ti, NULL), MTL_ERR_SHAPE,
                    "dtype int32, expected float32");
    ck_assert_error(mtli_loss_check(&mse, "age", 3, 2, tf, NULL), MTL_ERR_SHAPE,
                    "task 'age': mse target has shape [3], expected [3, 2]");
    ck_assert_error(mtli_loss_check(&mse, "age", 3, 1, tinf, NULL), MTL_ERR_INVALID_ARGUMENT,
                    "sample 1, column 0 is inf");
    ck_assert_ok(mtli_loss_check(&mse, "age", 3, 1, tf, NULL));
    ck_assert_ok(mtli_loss_check(&mse, "age", 1, 3, tf2, NULL));
    ck_assert_error(mtli_loss_check(&mse, "age", 3, 1, NULL, NULL), MTL_ERR_INVALID_ARGUMENT,
                    "target is NULL");
    ck_assert_error(mtli_loss_check(NULL, "age", 3, 1, tf, NULL), MTL_ERR_INVALID_ARGUMENT,
                    "loss is NULL");
    ck_assert_error(mtli_loss_check(&mse, "age", 0, 1, tf, NULL), MTL_ERR_INVALID_ARGUMENT,
                    "batch of 0 rows");
    mtl_tensor_free(ti);
    mtl_tensor_free(tneg);
    mtl_tensor_free(tf);
    mtl_tensor_free(tb);
    mtl_tensor_free(tinf);
    mtl_tensor_free(tf2);
    mtl_tensor_free(ti2);
}
END_TEST

START_TEST(check_validates_masks_and_config)
{
    int32_t yi[3] = {0, 7, 1};
    float mf[3] = {1, 0.5f, 1};
    float mdrop[3] = {1, 0, 1};
    int32_t mi2[3] = {1, 2, 1};
    float m4[4] = {1, 1, 1, 1};
    float yf[3] = {0, 1, 2};
    mtl_tensor *ti = wrap_i(yi, 1, 3, 0), *tf = wrap_f(yf, 1, 3, 0);
    mtl_tensor *mh = wrap_f(mf, 1, 3, 0), *md = wrap_f(mdrop, 2, 3, 1);
    mtl_tensor *mi = wrap_i(mi2, 1, 3, 0), *mw = wrap_f(m4, 1, 4, 0);
    mtli_loss ce = make_loss(MTLI_LOSS_CROSS_ENTROPY);
    /* the bad id sits in a masked sample: accepted */
    ck_assert_ok(mtli_loss_check(&ce, "digit", 3, 8, ti, NULL));
    ck_assert_ok(mtli_loss_check(&ce, "digit", 3, 3, ti, md));
    ck_assert_error(mtli_loss_check(&ce, "digit", 3, 8, ti, mh), MTL_ERR_INVALID_ARGUMENT,
                    "mask of sample 1 is 0.5, expected 0 or 1");
    ck_assert_error(mtli_loss_check(&ce, "digit", 3, 8, ti, mi), MTL_ERR_INVALID_ARGUMENT,
                    "mask of sample 1 is 2");
    ck_assert_error(mtli_loss_check(&ce, "digit", 3, 8, ti, mw), MTL_ERR_SHAPE,
                    "mask has shape [4], expected [3]");
    ce.label_smoothing = 1.5;
    ck_assert_error(mtli_loss_check(&ce, "digit", 3, 8, ti, NULL), MTL_ERR_RANGE,
                    "label_smoothing 1.5");
    ce.label_smoothing = 0;
    const float w2[2] = {1, 1}, wneg[8] = {1, 1, -1, 1, 1, 1, 1, 1};
    set_weights(&ce, w2, 2);
    ck_assert_error(mtli_loss_check(&ce, "digit", 3, 8, ti, NULL), MTL_ERR_SHAPE,
                    "2 class weights for 8 outputs");
    mtli_loss_clear(&ce);
    set_weights(&ce, wneg, 8);
    ck_assert_error(mtli_loss_check(&ce, "digit", 3, 8, ti, NULL), MTL_ERR_RANGE,
                    "class weight 2 is -1");
    mtli_loss_clear(&ce);
    mtli_loss mse = make_loss(MTLI_LOSS_MSE);
    set_weights(&mse, w2, 1);
    ck_assert_error(mtli_loss_check(&mse, "age", 3, 1, tf, NULL), MTL_ERR_INVALID_ARGUMENT,
                    "class weights apply to cross_entropy and bce, not mse");
    mtli_loss_clear(&mse);
    mtli_loss_clear(&mse); /* twice: the pointer was reset */
    mtli_loss_clear(NULL);
    mtli_loss hub = make_loss(MTLI_LOSS_HUBER);
    hub.delta = 0;
    ck_assert_error(mtli_loss_check(&hub, "age", 3, 1, tf, NULL), MTL_ERR_RANGE,
                    "huber delta 0");
    mtl_tensor_free(ti);
    mtl_tensor_free(tf);
    mtl_tensor_free(mh);
    mtl_tensor_free(md);
    mtl_tensor_free(mi);
    mtl_tensor_free(mw);
}
END_TEST

START_TEST(kind_names_round_trip)
{
    const char *names[6] = {"cross_entropy", "ce", "bce", "mse", "l1", "huber"};
    const mtli_loss_kind kinds[6] = {MTLI_LOSS_CROSS_ENTROPY, MTLI_LOSS_CROSS_ENTROPY,
                                     MTLI_LOSS_BCE, MTLI_LOSS_MSE, MTLI_LOSS_L1,
                                     MTLI_LOSS_HUBER};
    for (int i = 0; i < 6; i++) {
        mtli_loss_kind k;
        ck_assert_ok(mtli_loss_kind_from_name(names[i], &k));
        ck_assert_int_eq(k, kinds[i]);
    }
    ck_assert_str_eq(mtli_loss_kind_name(MTLI_LOSS_CROSS_ENTROPY), "cross_entropy");
    ck_assert_str_eq(mtli_loss_kind_name(MTLI_LOSS_HUBER), "huber");
    mtli_loss_kind k;
    ck_assert_error(mtli_loss_kind_from_name("hinge", &k), MTL_ERR_INVALID_ARGUMENT,
                    "unknown loss 'hinge'");
    ck_assert_status(mtli_loss_kind_from_name(NULL, &k), MTL_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(activations)
{
    float z[6] = {1, 2, 3, 1000, 0, -1000};
    float p[6];
    mtli_loss ce = make_loss(MTLI_LOSS_CROSS_ENTROPY);
    mtli_loss_activate(&ce, z, p, 2, 3);
    double s = exp(1.0) + exp(2.0) + exp(3.0);
    ck_assert_close(p[0], exp(1.0) / s, 1e-7);
    ck_assert_close(p[2], exp(3.0) / s, 1e-7);
    ck_assert_close(p[3], 1.0, 0);
    ck_assert_close(p[5], 0.0, 0);
    mtli_loss_activate(&ce, z, z, 2, 3); /* in place */
    ck_assert(memcmp(z, p, sizeof p) == 0);

    float x[4] = {0, 100, -100, 2};
    float q[4];
    mtli_loss bce = make_loss(MTLI_LOSS_BCE);
    mtli_loss_activate(&bce, x, q, 1, 4);
    ck_assert_close(q[0], 0.5, 0);
    ck_assert_close(q[1], 1.0, 0);
    ck_assert(q[2] > 0.0f && q[2] < 1e-40f);
    ck_assert_close(q[3], 1.0 / (1.0 + exp(-2.0)), 1e-7);

    float o[4] = {1, -2, 3, NAN};
    float r[4];
    mtli_loss mse = make_loss(MTLI_LOSS_HUBER);
    mtli_loss_activate(&mse, o, r, 2, 2);
    ck_assert(memcmp(o, r, sizeof o) == 0);
    mtli_loss_activate(&mse, o, o, 2, 2);
    ck_assert(memcmp(o, r, sizeof o) == 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("losses");
    TCase *tc = tcase_create("losses");
    tcase_add_test(tc, ce_of_logits_123_target_2);
    tcase_add_test(tc, ce_weights_and_smoothing_match_pytorch);
    tcase_add_test(tc, ce_weighted_by_hand);
    tcase_add_test(tc, ce_smoothing_by_hand);
    tcase_add_test(tc, ce_is_stable_for_huge_logits);
    tcase_add_test(tc, bce_matches_pytorch_and_hand_values);
    tcase_add_test(tc, bce_is_stable_for_huge_logits);
    tcase_add_test(tc, huber_on_both_sides_of_delta);
    tcase_add_test(tc, mse_and_l1_by_hand);
    tcase_add_test(tc, ce_gradient_matches_finite_differences);
    tcase_add_test(tc, bce_gradient_matches_finite_differences);
    tcase_add_test(tc, regression_gradients_match_finite_differences);
    tcase_add_test(tc, masked_sample_contributes_exactly_nothing);
    tcase_add_test(tc, missing_labels_equal_masking);
    tcase_add_test(tc, all_missing_batch_gives_zero_loss_and_gradient);
    tcase_add_test(tc, zero_weight_targets_give_zero_instead_of_nan);
    tcase_add_test(tc, check_rejects_bad_targets_with_named_sample);
    tcase_add_test(tc, check_validates_masks_and_config);
    tcase_add_test(tc, kind_names_round_trip);
    tcase_add_test(tc, activations);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(suite)
