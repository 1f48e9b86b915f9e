/* Task weighting methods: analytic cases, invariances, determinism, state round trips and
 * error paths. The methods are driven through the internal step contract
 * (weighting/weighting_internal.h) with hand-made losses, Gram matrices and per-task
 * gradients, so this suite does not depend on the model. */
#include <math.h>
#include <string.h>

#include <mtl/mtl.h>

#include "core/alloc.h"
#include "test_main.h"
#include "test_oom.h"
#include "weighting/solvers.h"
#include "weighting/weighting_internal.h"

#define MAXT 16
#define MAXP 64

static mtl_weighting *make(const char *name, int T)
{
    mtl_weighting *w = NULL;
    ck_assert_ok(mtl_weighting_create(&w, name, T));
    ck_assert_ptr_nonnull(w);
    return w;
}

static void ck_error_has(const char *needle)
{
    ck_assert_msg(strstr(mtl_last_error(), needle) != NULL, "error '%s' lacks '%s'",
                  mtl_last_error(), needle);
}

/* One step of a loss-based method. */
static mtl_status step_L(mtl_weighting *w, const double *L, int T, double *wt)
{
    return mtli_weighting_weights(w, L, NULL, T, wt);
}

/* One step of a Gram method. */
static mtl_status step_G(mtl_weighting *w, const double *G, const double *L, int T, double *wt)
{
    mtli_wstep s;
    memset(&s, 0, sizeof s);
    s.T = T;
    s.losses = L;
    s.G = G;
    s.weights = wt;
    return mtli_weighting_apply(w, &s);
}

/* G = J J' in double. */
static void gram(const double *J, int T, int P, double *G)
{
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) {
            double s = 0.0;
            for (int p = 0; p < P; p++)
                s += J[i * P + p] * J[j * P + p];
            G[i * T + j] = s;
        }
}

/* d = sum_t w_t J_t */
static void combine(const double *J, const double *wt, int T, int P, double *d)
{
    for (int p = 0; p < P; p++) {
        double s = 0.0;
        for (int t = 0; t < T; t++)
            s += wt[t] * J[t * P + p];
        d[p] = s;
    }
}

static double dotp(const double *a, const double *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* ---- handle, keys, registry -------------------------------------------------------------- */

START_TEST(every_method_is_listed_created_and_lists_its_keys)
{
    int n = 0;
    for (int i = 0; mtl_weighting_available(i); i++, n++) {
        const char *name = mtl_weighting_available(i);
        mtl_weighting *w = make(name, 3);
        ck_assert_str_eq(mtl_weighting_method(w), name);
        ck_assert_int_eq(mtl_weighting_num_tasks(w), 3);
        for (int k = 0; mtl_weighting_key_name(w, k); k++) {
            const char *key = mtl_weighting_key_name(w, k);
            double d;
            int64_t iv;
            const char *sv;
            /* every key reads back through exactly one getter family */
            int ok = mtl_weighting_get_double(w, key, &d) == MTL_OK;
            int oks = mtl_weighting_get_string(w, key, &sv) == MTL_OK;
            ck_assert_msg(ok ^ oks, "%s: key %s readable as both or neither", name, key);
            if (mtl_weighting_get_int(w, key, &iv) == MTL_OK)
                ck_assert(ok && (double)iv == d);
        }
        ck_assert_ptr_null(mtl_weighting_key_name(w, 1000));
        ck_assert_ptr_null(mtl_weighting_key_name(w, -1));
        double wt[3];
        ck_assert_ok(mtl_weighting_get_weights(w, wt, 3));
        for (int t = 0; t < 3; t++)
            ck_assert(isfinite(wt[t]) && wt[t] >= 0.0);
        mtl_weighting_free(w);
    }
    ck_assert_int_ge(n, 8);
    ck_assert_ptr_null(mtl_weighting_available(-1));
    ck_assert_ptr_null(mtl_weighting_available(n));
}
END_TEST

START_TEST(create_rejects_bad_arguments)
{
    mtl_weighting *w = (mtl_weighting *)1;
    ck_assert_status(mtl_weighting_create(&w, "nope", 2), MTL_ERR_NOT_FOUND);
    ck_assert_ptr_null(w);
    ck_error_has("unknown weighting method 'nope'");
    ck_error_has("available: ew, fixed");
    ck_assert_status(mtl_weighting_create(&w, "ew", 0), MTL_ERR_INVALID_ARGUMENT);
    ck_error_has("num_tasks is 0");
    ck_assert_status(mtl_weighting_create(NULL, "ew", 2), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_weighting_create(&w, NULL, 2), MTL_ERR_INVALID_ARGUMENT);
    mtl_weighting_free(NULL);
    ck_assert_ptr_null(mtl_weighting_method(NULL));
    ck_assert_int_eq(mtl_weighting_num_tasks(NULL), 0);
}
END_TEST

START_TEST(keys_reject_unknown_names_wrong_types_and_out_of_range_values)
{
    mtl_weighting *w = make("uw", 2);
    ck_assert_status(mtl_weighting_set_double(w, "lrr", 0.1), MTL_ERR_INVALID_ARGUMENT);
    ck_error_has("unknown key 'lrr'");
    ck_error_has("keys: lr, init");
    ck_assert_status(mtl_weighting_set_double(w, "lr", -1.0), MTL_ERR_RANGE);
    ck_error_has("lr = -1");
    ck_assert_status(mtl_weighting_set_double(w, "lr", 0.0), MTL_ERR_RANGE);
    ck_assert_status(mtl_weighting_set_double(w, "lr", NAN), MTL_ERR_RANGE);
    ck_assert_status(mtl_weighting_set_string(w, "lr", "big"), MTL_ERR_INVALID_ARGUMENT);
    ck_error_has("takes a double value");
    ck_assert_ok(mtl_weighting_set_double(w, "lr", 0.5));
    double d;
    ck_assert_ok(mtl_weighting_get_double(w, "lr", &d));
    ck_assert_double_eq(d, 0.5);
    ck_assert_ok(mtl_weighting_set_int(w, "lr", 2)); /* ints convert to double keys */
    ck_assert_ok(mtl_weighting_get_double(w, "lr", &d));
    ck_assert_double_eq(d, 2.0);
    ck_assert_status(mtl_weighting_set_string(w, "mode", "representation"),
                     MTL_ERR_INVALID_ARGUMENT); /* L methods have no mode */
    ck_assert_status(mtl_weighting_set_double(NULL, "lr", 1.0), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_weighting_set_double(w, NULL, 1.0), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_weighting_set_string(w, "lr", NULL), MTL_ERR_INVALID_ARGUMENT);
    mtl_weighting_free(w);

    w = make("dwa", 2);
    ck_assert_status(mtl_weighting_set_int(w, "window", 0), MTL_ERR_RANGE);
    ck_error_has("window = 0");
    ck_assert_status(mtl_weighting_set_double(w, "window", 1.5), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ok(mtl_weighting_set_double(w, "window", 3.0)); /* integral doubles are fine */
    int64_t iv;
    ck_assert_ok(mtl_weighting_get_int(w, "window", &iv));
    ck_assert_int_eq(iv, 3);
    ck_assert_status(mtl_weighting_get_int(w, "temperature", &iv), MTL_ERR_INVALID_ARGUMENT);
    mtl_weighting_free(w);

    w = make("ew", 2);
    ck_assert_status(mtl_weighting_set_string(w, "reduction", "avg"), MTL_ERR_RANGE);
    ck_error_has("expected one of: sum, mean");
    const char *sv;
    ck_assert_ok(mtl_weighting_get_string(w, "reduction", &sv));
    ck_assert_str_eq(sv, "sum");
    ck_assert_status(mtl_weighting_get_double(w, "reduction", &d), MTL_ERR_INVALID_ARGUMENT);
    mtl_weighting_free(w);
}
END_TEST

static mtl_status create_named(void *ctx)
{
    mtl_weighting *w = NULL;
    mtl_status st = mtl_weighting_create(&w, ctx, 4);
    if (st != MTL_OK && w != NULL)
        return MTL_ERR_INTERNAL;
    mtl_weighting_free(w);
    return st;
}

static mtl_status create_and_bind(void *ctx)
{
    mtl_weighting *w = NULL;
    mtl_status st = mtl_weighting_create(&w, ctx, 3);
    if (st != MTL_OK)
        return st;
    size_t layers[2] = {10, 30}, tensors[3] = {5, 10, 30};
    st = mtli_weighting_bind(w, 30, layers, 2, tensors, 3);
    if (st == MTL_OK) /* a second layout re-sizes the state */
        st = mtli_weighting_bind(w, 40, NULL, 0, NULL, 0);
    if (st == MTL_OK && strcmp(ctx, "gradvac") == 0)
        st = mtl_weighting_set_string(w, "granularity", "matrix");
    mtl_weighting_free(w);
    return st;
}

START_TEST(create_survives_every_allocation_failure)
{
    for (int i = 0; mtl_weighting_available(i); i++)
        ck_assert_int_ge(mtl_test_oom_sweep(create_named, (void *)mtl_weighting_available(i)),
                         5);
    ck_assert_int_ge(mtl_test_oom_sweep(create_named, "imtl_l"), 5);
    const char *bound[] = {"gradvac", "moco", "db_mtl", "excessmtl", "graddrop"};
    for (int i = 0; i < 5; i++)
        ck_assert_int_ge(mtl_test_oom_sweep(create_and_bind, (void *)bound[i]), 7);
}
END_TEST

/* ---- loss-based methods -------------------------------------------------------------------- */

START_TEST(ew_sums_or_averages_and_zeroes_inactive_tasks)
{
    mtl_weighting *w = make("ew", 4);
    double L[4] = {1, 2, 3, 4}, wt[4];
    bool act[4] = {true, false, true, true};
    ck_assert_ok(mtli_weighting_weights(w, L, act, 4, wt));
    ck_assert_double_eq(wt[0], 1.0);
    ck_assert_double_eq(wt[1], 0.0);
    ck_assert_ok(mtl_weighting_set_string(w, "reduction", "mean"));
    ck_assert_ok(mtl_weighting_get_weights(w, wt, 4));
    ck_assert_double_eq(wt[2], 0.25);
    ck_assert_ok(step_L(w, L, 4, wt));
    for (int t = 0; t < 4; t++)
        ck_assert_double_eq(wt[t], 0.25);
    /* wrong task count and non-finite losses */
    ck_assert_status(step_L(w, L, 3, wt), MTL_ERR_SHAPE);
    ck_error_has("created for 4 tasks");
    L[1] = NAN;
    ck_assert_status(step_L(w, L, 4, wt), MTL_ERR_NUMERIC);
    ck_error_has("loss of task 1");
    bool none[4] = {false, false, false, false};
    ck_assert_status(mtli_weighting_weights(w, L, none, 4, wt), MTL_ERR_INVALID_ARGUMENT);
    ck_error_has("no task is active");
    ck_assert_uint_eq(mtli_weighting_needs(w), MTLI_NEED_L);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(fixed_uses_the_set_weights)
{
    mtl_weighting *w = make("fixed", 3);
    double v[3] = {0.5, 2.0, 0.0}, L[3] = {1, 1, 1}, wt[3];
    ck_assert_ok(mtl_weighting_set_weights(w, v, 3));
    ck_assert_ok(step_L(w, L, 3, wt));
    for (int t = 0; t < 3; t++)
        ck_assert_double_eq(wt[t], v[t]);
    v[1] = -1;
    ck_assert_status(mtl_weighting_set_weights(w, v, 3), MTL_ERR_RANGE);
    ck_error_has("weight 1 is -1");
    ck_assert_status(mtl_weighting_set_weights(w, v, 2), MTL_ERR_SHAPE);
    ck_assert_status(mtl_weighting_get_weights(w, wt, 2), MTL_ERR_SHAPE);
    mtl_weighting_free(w);
    w = make("uw", 3);
    ck_assert_status(mtl_weighting_set_weights(w, wt, 3), MTL_ERR_STATE);
    ck_error_has("learns its weights");
    mtl_weighting_free(w);
}
END_TEST

START_TEST(uw_log_variances_converge_to_the_loss_scales)
{
    /* The UW objective L/(2 e^s) + s/2 is minimised at s = log L: with losses fluctuating
     * around fixed scales the learned log-variances settle at the log of the mean loss. */
    const int T = 3;
    mtl_weighting *w = make("uw", T);
    ck_assert_ok(mtl_weighting_set_double(w, "lr", 0.02));
    double scale[3] = {0.25, 1.0, 6.0}, L[3], wt[3];
    for (int it = 0; it < 6000; it++) {
        double wiggle = (it % 2 == 0) ? 1.1 : 0.9; /* mean 1 */
        for (int t = 0; t < T; t++)
            L[t] = scale[t] * wiggle;
        ck_assert_ok(step_L(w, L, T, wt));
    }
    const double *s = mtli_weighting_state(w) + 1 + T;
    for (int t = 0; t < T; t++) {
        ck_assert_msg(fabs(s[t] - log(scale[t])) < 0.02, "task %d: s %g, log scale %g", t, s[t],
                      log(scale[t]));
        ck_assert_double_eq_tol(wt[t], 0.5 / scale[t], 0.02 / scale[t]);
    }
    /* init key before the first step sets the starting log-variance */
    mtl_weighting_free(w);
    w = make("uw", 2);
    ck_assert_ok(mtl_weighting_set_double(w, "init", 0.0));
    ck_assert_ok(mtl_weighting_get_weights(w, wt, 2));
    ck_assert_double_eq_tol(wt[0], 0.5, 1e-15);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(dwa_weights_follow_the_loss_ratios)
{
    const int T = 3;
    mtl_weighting *w = make("dwa", T);
    double hist[4][3] = {{1, 1, 1}, {0.5, 0.9, 1.2}, {0.4, 0.3, 1.0}, {0.3, 0.3, 0.3}};
    double wt[3];
    for (int k = 0; k < 4; k++) {
        ck_assert_ok(step_L(w, hist[k], T, wt));
        if (k < 2) {
            for (int t = 0; t < T; t++)
                ck_assert_double_eq(wt[t], 1.0);
            continue;
        }
        double e[3], z = 0;
        for (int t = 0; t < T; t++)
            z += e[t] = exp(hist[k - 1][t] / hist[k - 2][t] / 2.0);
        for (int t = 0; t < T; t++)
            ck_assert_double_eq_tol(wt[t], 3.0 * e[t] / z, 1e-14);
    }
    mtl_weighting_free(w);

    /* window 2: ratios of window means */
    w = make("dwa", 2);
    ck_assert_ok(mtl_weighting_set_int(w, "window", 2));
    ck_assert_ok(mtl_weighting_set_double(w, "temperature", 1.0));
    double seq[6][2] = {{1, 2}, {3, 2}, {1, 1}, {1, 3}, {5, 5}, {5, 5}};
    for (int k = 0; k < 6; k++) {
        ck_assert_ok(step_L(w, seq[k], 2, wt));
        if (k < 4)
            ck_assert_double_eq(wt[0], 1.0);
    }
    /* windows: (2, 2), (1, 2): ratios 0.5, 1 */
    double e0 = exp(0.5), e1 = exp(1.0);
    ck_assert_double_eq_tol(wt[0], 2 * e0 / (e0 + e1), 1e-14);
    ck_assert_double_eq_tol(wt[1], 2 * e1 / (e0 + e1), 1e-14);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(gls_weights_are_the_geometric_mean_gradient)
{
    mtl_weighting *w = make("gls", 3);
    double L[3] = {2.0, 0.5, 8.0}, wt[3];
    ck_assert_ok(step_L(w, L, 3, wt));
    double gm = cbrt(2.0 * 0.5 * 8.0);
    for (int t = 0; t < 3; t++)
        ck_assert_double_eq_tol(wt[t], gm / (3.0 * L[t]), 1e-14);
    /* finite-difference check of d (prod L)^(1/3) / dL */
    for (int t = 0; t < 3; t++) {
        double Lp[3], Lm[3], h = 1e-6;
        memcpy(Lp, L, sizeof L);
        memcpy(Lm, L, sizeof L);
        Lp[t] += h;
        Lm[t] -= h;
        double fd = (cbrt(Lp[0] * Lp[1] * Lp[2]) - cbrt(Lm[0] * Lm[1] * Lm[2])) / (2 * h);
        ck_assert_double_eq_tol(wt[t], fd, 1e-8);
    }
    L[1] = 0.0;
    ck_assert_status(step_L(w, L, 3, wt), MTL_ERR_NUMERIC);
    ck_error_has("needs positive losses");
    mtl_weighting_free(w);
}
END_TEST

START_TEST(rlw_is_a_seeded_random_point_of_the_simplex)
{
    double L[4] = {1, 2, 3, 4}, a[20][4], b[4];
    mtl_weighting *w = make("rlw", 4);
    ck_assert_ok(mtl_weighting_set_int(w, "seed", 7));
    for (int k = 0; k < 20; k++) {
        ck_assert_ok(step_L(w, L, 4, a[k]));
        double s = 0;
        for (int t = 0; t < 4; t++) {
            ck_assert(a[k][t] > 0.0);
            s += a[k][t];
        }
        ck_assert_double_eq_tol(s, 1.0, 1e-15);
    }
    ck_assert(a[0][0] != a[1][0]);
    /* same seed, same sequence; reset restarts it */
    ck_assert_ok(mtl_weighting_reset(w));
    for (int k = 0; k < 20; k++) {
        ck_assert_ok(step_L(w, L, 4, b));
        ck_assert_mem_eq(b, a[k], sizeof b);
    }
    ck_assert_ok(mtl_weighting_set_int(w, "seed", 8));
    ck_assert_ok(step_L(w, L, 4, b));
    ck_assert(memcmp(b, a[0], sizeof b) != 0);
    ck_assert_status(mtl_weighting_set_int(w, "seed", -1), MTL_ERR_RANGE);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(stch_is_the_smooth_max_of_log_losses)
{
    mtl_weighting *w = make("stch", 3);
    double L[3] = {0.5, 2.0, 1.0}, wt[3];
    ck_assert_ok(mtl_weighting_set_double(w, "mu", 0.5));
    ck_assert_ok(step_L(w, L, 3, wt));
    /* f(L) = 3 mu log sum exp(log L / mu); finite differences of f */
    for (int t = 0; t < 3; t++) {
        double h = 1e-6, fp = 0, fm = 0;
        for (int u = 0; u < 3; u++) {
            double lp = L[u] + (u == t ? h : 0), lm = L[u] - (u == t ? h : 0);
            fp += exp(log(lp) / 0.5);
            fm += exp(log(lm) / 0.5);
        }
        double fd = 3 * 0.5 * (log(fp) - log(fm)) / (2 * h);
        ck_assert_double_eq_tol(wt[t], fd, 1e-7);
    }
    /* small mu concentrates the weight on the largest loss */
    ck_assert_ok(mtl_weighting_set_double(w, "mu", 0.01));
    ck_assert_ok(step_L(w, L, 3, wt));
    ck_assert_double_eq_tol(wt[1], 3.0 / 2.0, 1e-6);
    ck_assert_double_eq_tol(wt[0], 0.0, 1e-12);
    mtl_weighting_free(w);

    /* warm-up: log-loss sum, then losses are normalised by their warm-up mean */
    w = make("stch", 2);
    ck_assert_ok(mtl_weighting_set_int(w, "warmup_steps", 2));
    double a[2] = {1.0, 4.0}, b[2] = {3.0, 8.0};
    ck_assert_ok(step_L(w, a, 2, wt));
    ck_assert_double_eq_tol(wt[1], 0.25, 1e-15);
    ck_assert_ok(step_L(w, b, 2, wt));
    double c[2] = {2.0, 6.0}; /* equal to the nadir point: softmax is uniform */
    ck_assert_ok(step_L(w, c, 2, wt));
    ck_assert_double_eq_tol(wt[0], 1.0 / 2.0, 1e-12);
    ck_assert_double_eq_tol(wt[1], 1.0 / 6.0, 1e-12);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(famo_balances_log_loss_improvement)
{
    const int T = 2;
    mtl_weighting *w = make("famo", T);
    ck_assert_uint_eq(mtli_weighting_needs(w), MTLI_NEED_L | MTLI_NEED_AFTER);
    double L[2] = {1.0, 4.0}, wt[2];
    ck_assert_status(mtli_weighting_after_step(w, L), MTL_ERR_STATE);
    ck_error_has("after_step without a preceding step");
    ck_assert_ok(step_L(w, L, T, wt));
    /* equal logits: weights proportional to 1/L, normalised to sum 1 */
    ck_assert_double_eq_tol(wt[0], 0.8, 1e-8);
    ck_assert_double_eq_tol(wt[1], 0.2, 1e-8);
    /* task 0 improves (log 2), task 1 does not: the logit of task 1 must grow */
    double after[2] = {0.5, 4.0};
    ck_assert_ok(mtli_weighting_after_step(w, after));
    const double *xi = mtli_weighting_state(w) + 1 + T;
    ck_assert(xi[1] > xi[0]);
    /* first Adam step moves each logit by lr (0.025) in the sign of its gradient */
    ck_assert_double_eq_tol(xi[1] - xi[0], 2 * 0.025, 1e-6);
    ck_assert_status(mtli_weighting_after_step(w, after), MTL_ERR_STATE);
    mtl_weighting_free(w);
}
END_TEST

/* state round trip: run n steps, save, continue m steps; a fresh handle loaded with the
 * saved state continues bit-identically. */
static void roundtrip_L(const char *name, int T)
{
    mtl_weighting *a = make(name, T), *b = make(name, T);
    double L[MAXT], wa[MAXT], wb[MAXT], saved[64];
    size_t n = mtli_weighting_state_size(a);
    ck_assert_uint_le(n, 64);
    unsigned needs = mtli_weighting_needs(a);
    for (int k = 0; k < 12; k++) {
        for (int t = 0; t < T; t++)
            L[t] = 1.0 + 0.3 * sin(1.7 * k + t);
        if (k == 7)
            memcpy(saved, mtli_weighting_state(a), n * sizeof(double));
        if (k >= 7) {
            if (k == 7)
                memcpy(mtli_weighting_state(b), saved, n * sizeof(double));
            ck_assert_ok(step_L(b, L, T, wb));
        }
        ck_assert_ok(step_L(a, L, T, wa));
        if (k >= 7)
            ck_assert_mem_eq(wa, wb, (size_t)T * sizeof(double));
        if (needs & MTLI_NEED_AFTER) {
            for (int t = 0; t < T; t++)
                L[t] *= 0.9 + 0.05 * t;
            ck_assert_ok(mtli_weighting_after_step(a, L));
            if (k >= 7)
                ck_assert_ok(mtli_weighting_after_step(b, L));
        }
    }
    ck_assert_mem_eq(mtli_weighting_state(a), mtli_weighting_state(b), n * sizeof(double));
    mtl_weighting_free(a);
    mtl_weighting_free(b);
}

START_TEST(loss_methods_resume_bit_identically_from_their_state)
{
    const char *names[] = {"uw", "dwa", "rlw", "stch", "famo", "gls", "ew"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        roundtrip_L(names[i], 3);
}
END_TEST


/* ---- Gram methods ------------------------------------------------------------------------ */

/* Deterministic pseudo-random numbers in [-1, 1). */
static double urand(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (double)(*state >> 8) / 8388608.0 - 1.0;
}

static void random_J(double *J, int T, int P, unsigned seed)
{
    unsigned st = seed;
    for (int i = 0; i < T * P; i++)
        J[i] = urand(&st);
}

/* weights of one G step from per-task gradients J (T x P) */
static mtl_status step_J_as_G(mtl_weighting *w, const double *J, int T, int P, const double *L,
                              double *wt)
{
    double G[MAXT * MAXT];
    gram(J, T, P, G);
    return step_G(w, G, L, T, wt);
}

static const double ones16[MAXT] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

START_TEST(mgda_two_gradients_have_the_closed_form_min_norm_point)
{
    mtl_weighting *w = make("mgda", 2);
    /* g1 = (1, 0), g2 = (0.5, 1): gamma = <g2 - g1, g2> / ||g1 - g2||^2 = 0.75/1.25 */
    double J[4] = {1, 0, 0.5, 1}, wt[2];
    ck_assert_ok(step_J_as_G(w, J, 2, 2, ones16, wt));
    ck_assert_double_eq_tol(wt[0], 0.6, 1e-15);
    ck_assert_double_eq_tol(wt[1], 0.4, 1e-15);
    double d[2];
    combine(J, wt, 2, 2, d);
    ck_assert_double_eq_tol(dotp(d, J, 2), dotp(d, J + 2, 2), 1e-15); /* on both: equal */
    /* g2 beyond g1 (<g1, g2> >= ||g1||^2): the min-norm point is g1 itself, exactly */
    double J2[4] = {1, 0, 3, 0.5};
    ck_assert_ok(step_J_as_G(w, J2, 2, 2, ones16, wt));
    ck_assert_double_eq(wt[0], 1.0);
    ck_assert_double_eq(wt[1], 0.0);
    /* normalisation l2: the min-norm point of the unit gradients, weights alpha_t/||g_t|| */
    ck_assert_ok(mtl_weighting_set_string(w, "normalization", "l2"));
    double J3[4] = {2, 0, 0, 4};
    ck_assert_ok(step_J_as_G(w, J3, 2, 2, ones16, wt));
    ck_assert_double_eq_tol(wt[0], 0.5 / 2, 1e-15);
    ck_assert_double_eq_tol(wt[1], 0.5 / 4, 1e-15);
    ck_assert_ok(mtl_weighting_set_string(w, "normalization", "loss"));
    double L[2] = {2.0, 0.5};
    ck_assert_ok(step_J_as_G(w, J3, 2, 2, L, wt)); /* g/L: (1,0), (0,8) */
    ck_assert_double_eq_tol(wt[0] * 2, 64.0 / 65.0, 1e-14);
    ck_assert_double_eq_tol(wt[1] * 0.5, 1.0 / 65.0, 1e-14);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(mgda_many_tasks_satisfies_the_min_norm_optimality_conditions)
{
    const int T = 6, P = 9;
    double J[MAXT * MAXP], G[MAXT * MAXT], wt[MAXT];
    for (unsigned seed = 1; seed <= 20; seed++) {
        random_J(J, T, P, seed);
        for (int p = 0; p < P; p++) /* a shared component makes some tasks agree */
            for (int t = 0; t < T; t++)
                J[t * P + p] += (p == 0) ? 0.8 : 0.0;
        gram(J, T, P, G);
        mtl_weighting *w = make("mgda", T);
        ck_assert_ok(step_G(w, G, ones16, T, wt));
        double sum = 0, Gw[MAXT], q = 0, dmax = 0;
        for (int t = 0; t < T; t++) {
            ck_assert(wt[t] >= 0.0);
            sum += wt[t];
            dmax = fmax(dmax, G[t * T + t]);
        }
        ck_assert_double_eq_tol(sum, 1.0, 1e-12);
        for (int i = 0; i < T; i++) {
            Gw[i] = 0;
            for (int j = 0; j < T; j++)
                Gw[i] += G[i * T + j] * wt[j];
            q += wt[i] * Gw[i];
        }
        /* KKT: (G a)_i >= a'Ga for all i, with equality where a_i > 0 */
        for (int i = 0; i < T; i++) {
            ck_assert_msg(Gw[i] >= q - 1e-9 * dmax, "seed %u task %d: %g < %g", seed, i, Gw[i], q);
            if (wt[i] > 1e-6)
                ck_assert_double_eq_tol(Gw[i], q, 1e-9 * dmax);
        }
        mtl_weighting_free(w);
    }
}
END_TEST

START_TEST(pcgrad_removes_exactly_the_conflicting_component)
{
    mtl_weighting *w = make("pcgrad", 2);
    double J[4] = {1, 0, -1, 1}, wt[2], d[2];
    ck_assert_ok(step_J_as_G(w, J, 2, 2, ones16, wt));
    /* g1' = g1 - (-1/2) g2 = (0.5, 0.5) (orthogonal to g2); g2' = g2 - (-1/1) g1 = (0, 1) */
    ck_assert_double_eq_tol(wt[0], 2.0, 1e-15);
    ck_assert_double_eq_tol(wt[1], 1.5, 1e-15);
    combine(J, wt, 2, 2, d);
    ck_assert_double_eq_tol(d[0], 0.5, 1e-15);
    ck_assert_double_eq_tol(d[1], 1.5, 1e-15);
    /* no conflict: plain sum; "mean" halves it */
    double J2[4] = {1, 0, 1, 1};
    ck_assert_ok(step_J_as_G(w, J2, 2, 2, ones16, wt));
    ck_assert_double_eq(wt[0], 1.0);
    ck_assert_double_eq(wt[1], 1.0);
    ck_assert_ok(mtl_weighting_set_string(w, "reduction", "mean"));
    ck_assert_ok(step_J_as_G(w, J, 2, 2, ones16, wt));
    ck_assert_double_eq_tol(wt[0], 1.0, 1e-15);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(pcgrad_random_order_is_seeded)
{
    const int T = 5, P = 4;
    double J[MAXT * MAXP], a[10][MAXT], b[MAXT];
    random_J(J, T, P, 3);
    mtl_weighting *w = make("pcgrad", T);
    ck_assert_ok(mtl_weighting_set_int(w, "seed", 42));
    int differ = 0;
    for (int k = 0; k < 10; k++) {
        ck_assert_ok(step_J_as_G(w, J, T, P, ones16, a[k]));
        differ |= memcmp(a[k], a[0], sizeof b) != 0;
    }
    ck_assert_msg(differ, "the task order never changed the result");
    mtl_weighting *v = make("pcgrad", T);
    ck_assert_ok(mtl_weighting_set_int(v, "seed", 42));
    for (int k = 0; k < 10; k++) {
        ck_assert_ok(step_J_as_G(v, J, T, P, ones16, b));
        ck_assert_mem_eq(b, a[k], (size_t)T * sizeof(double));
    }
    mtl_weighting_free(v);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(cagrad_with_c_zero_is_the_mean_and_otherwise_maximises_the_worst_improvement)
{
    const int T = 3, P = 4;
    double J[MAXT * MAXP], wt[MAXT], d[MAXP], g0[MAXP];
    random_J(J, T, P, 11);
    mtl_weighting *w = make("cagrad", T);
    ck_assert_ok(mtl_weighting_set_double(w, "c", 0.0));
    ck_assert_ok(step_J_as_G(w, J, T, P, ones16, wt));
    for (int t = 0; t < T; t++)
        ck_assert_double_eq(wt[t], 1.0 / 3.0);
    /* c = 0.4, no rescaling: d = argmax_{||d - g0|| <= c ||g0||} min_i <g_i, d> */
    ck_assert_ok(mtl_weighting_set_double(w, "c", 0.4));
    ck_assert_ok(mtl_weighting_set_int(w, "rescale", 0));
    ck_assert_ok(step_J_as_G(w, J, T, P, ones16, wt));
    combine(J, wt, T, P, d);
    double third[3] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    combine(J, third, T, P, g0);
    double r = 0.4 * sqrt(dotp(g0, g0, P)), dist = 0;
    for (int p = 0; p < P; p++)
        dist += (d[p] - g0[p]) * (d[p] - g0[p]);
    ck_assert_double_eq_tol(sqrt(dist), r, 1e-8);
    double best = INFINITY;
    for (int t = 0; t < T; t++)
        best = fmin(best, dotp(J + t * P, d, P));
    unsigned st = 5;
    for (int trial = 0; trial < 20000; trial++) {
        double e[MAXP], n = 0, dd[MAXP], m = INFINITY;
        for (int p = 0; p < P; p++) {
            e[p] = urand(&st);
            n += e[p] * e[p];
        }
        n = sqrt(n);
        double rad = r * cbrt(0.5 + 0.5 * urand(&st));
        for (int p = 0; p < P; p++)
            dd[p] = g0[p] + rad * e[p] / n;
        for (int t = 0; t < T; t++)
            m = fmin(m, dotp(J + t * P, dd, P));
        ck_assert_msg(m <= best + 1e-9, "a point of the ball improves the worst task: %g > %g",
                      m, best);
    }
    /* rescale 1 divides by 1 + c^2 */
    double raw[MAXT];
    memcpy(raw, wt, sizeof raw);
    ck_assert_ok(mtl_weighting_set_int(w, "rescale", 1));
    ck_assert_ok(step_J_as_G(w, J, T, P, ones16, wt));
    for (int t = 0; t < T; t++)
        ck_assert_double_eq_tol(wt[t], raw[t] / 1.16, 1e-9);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(nash_mtl_solves_its_bargaining_fixed_point)
{
    const int T = 4, P = 7;
    double J[MAXT * MAXP], G[MAXT * MAXT], wt[MAXT];
    random_J(J, T, P, 21);
    for (int t = 0; t < T; t++)
        for (int p = 0; p < P; p++)
            J[t * P + p] = J[t * P + p] * (1 + t) + (p == 0 ? 1.5 : 0.0);
    gram(J, T, P, G);
    mtl_weighting *w = make("nash_mtl", T);
    for (int norm = 0; norm <= 1; norm++) {
        ck_assert_ok(mtl_weighting_set_int(w, "normalize", norm));
        ck_assert_ok(step_G(w, G, ones16, T, wt));
        double f = 0;
        for (int i = 0; i < T * T; i++)
            f += G[i] * G[i];
        double s = norm ? 1.0 / sqrt(f) : 1.0;
        for (int i = 0; i < T; i++) {
            double Ga = 0;
            for (int j = 0; j < T; j++)
                Ga += s * G[i * T + j] * wt[j];
            ck_assert(wt[i] > 0.0);
            ck_assert_double_eq_tol(Ga * wt[i], 1.0, 1e-9); /* (G a)_i = 1 / a_i */
        }
    }
    /* max_norm scales the update down to that norm */
    ck_assert_ok(mtl_weighting_set_double(w, "max_norm", 0.01));
    ck_assert_ok(step_G(w, G, ones16, T, wt));
    double q = 0;
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++)
            q += wt[i] * G[i * T + j] * wt[j];
    ck_assert_double_eq_tol(sqrt(q), 0.01, 1e-12);
    mtl_weighting_free(w);
    /* exactly opposite gradients: no bargaining solution */
    w = make("nash_mtl", 2);
    double Jo[4] = {1, 2, -1, -2};
    ck_assert_status(step_J_as_G(w, Jo, 2, 2, ones16, wt), MTL_ERR_NUMERIC);
    ck_error_has("Pareto-stationary");
    mtl_weighting_free(w);
}
END_TEST

START_TEST(fairgrad_solves_the_alpha_fair_condition)
{
    const int T = 3, P = 5;
    double J[MAXT * MAXP], G[MAXT * MAXT], wt[MAXT], wn[MAXT];
    random_J(J, T, P, 8);
    for (int t = 0; t < T; t++)
        J[t * P] += 2.0;
    gram(J, T, P, G);
    mtl_weighting *w = make("fairgrad", T);
    ck_assert_ok(mtl_weighting_set_double(w, "alpha", 2.0));
    ck_assert_ok(step_G(w, G, ones16, T, wt));
    for (int i = 0; i < T; i++) {
        double Ga = 0;
        for (int j = 0; j < T; j++)
            Ga += G[i * T + j] * wt[j];
        ck_assert_double_eq_tol(Ga, pow(wt[i], -0.5), 1e-9 * Ga);
    }
    /* alpha = 1 is Nash-MTL on the raw Gram */
    ck_assert_ok(mtl_weighting_set_double(w, "alpha", 1.0));
    ck_assert_ok(step_G(w, G, ones16, T, wt));
    mtl_weighting *n = make("nash_mtl", T);
    ck_assert_ok(mtl_weighting_set_int(n, "normalize", 0));
    ck_assert_ok(step_G(n, G, ones16, T, wn));
    for (int i = 0; i < T; i++)
        ck_assert_double_eq_tol(wt[i], wn[i], 1e-12 * wn[i]);
    ck_assert_status(mtl_weighting_set_double(w, "alpha", 0.0), MTL_ERR_RANGE);
    mtl_weighting_free(n);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(imtl_g_update_has_equal_projections_on_every_unit_gradient)
{
    const int T = 4, P = 6;
    double J[MAXT * MAXP], wt[MAXT], d[MAXP];
    random_J(J, T, P, 5);
    for (int t = 0; t < T; t++)
        for (int p = 0; p < P; p++)
            J[t * P + p] *= 1.0 + 3.0 * t; /* very different magnitudes */
    mtl_weighting *w = make("imtl_g", T);
    ck_assert_str_eq(mtl_weighting_method(w), "imtl");
    ck_assert_uint_eq(mtli_weighting_needs(w), MTLI_NEED_G);
    ck_assert_ok(step_J_as_G(w, J, T, P, ones16, wt));
    combine(J, wt, T, P, d);
    double sum = 0, proj0 = dotp(d, J, P) / sqrt(dotp(J, J, P));
    for (int t = 0; t < T; t++) {
        sum += wt[t];
        double pt = dotp(d, J + t * P, P) / sqrt(dotp(J + t * P, J + t * P, P));
        ck_assert_double_eq_tol(pt, proj0, 1e-10 * fabs(proj0));
    }
    ck_assert_double_eq_tol(sum, 1.0, 1e-12);
    mtl_weighting_free(w);

    /* imtl_l: weights e^s, s driven to -log L */
    w = make("imtl_l", 2);
    ck_assert_uint_eq(mtli_weighting_needs(w), MTLI_NEED_L);
    ck_assert_ok(mtl_weighting_set_double(w, "lr", 0.05));
    double L[2] = {4.0, 0.5};
    for (int k = 0; k < 3000; k++)
        ck_assert_ok(step_L(w, L, 2, wt));
    ck_assert_double_eq_tol(wt[0], 0.25, 0.01);
    ck_assert_double_eq_tol(wt[1], 2.0, 0.05);
    mtl_weighting_free(w);

    /* full: the projections of the update on the unit gradients are equal as well (scaling a
     * task's gradient does not change its unit vector) */
    w = make("imtl", T);
    ck_assert_ok(mtl_weighting_set_double(w, "lr", 0.1));
    double L4[4] = {1, 2, 3, 4};
    for (int k = 0; k < 5; k++)
        ck_assert_ok(step_J_as_G(w, J, T, P, L4, wt));
    combine(J, wt, T, P, d);
    proj0 = dotp(d, J, P) / sqrt(dotp(J, J, P));
    for (int t = 1; t < T; t++)
        ck_assert_double_eq_tol(dotp(d, J + t * P, P) / sqrt(dotp(J + t * P, J + t * P, P)),
                                proj0, 1e-10 * fabs(proj0));
    /* dependent gradients with unequal projections: an error, not a garbage update */
    double Jd[6] = {1, 0, 0, 1, 1, 1};
    mtl_weighting *g = make("imtl_g", 3);
    ck_assert_status(step_J_as_G(g, Jd, 3, 2, ones16, wt), MTL_ERR_NUMERIC);
    ck_error_has("linearly dependent");
    mtl_weighting_free(g);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(aligned_mtl_balanced_gradients_have_equal_singular_values)
{
    const int T = 4, P = 6;
    double J[MAXT * MAXP], G[MAXT * MAXT], B[MAXT * MAXT], ws[4 * MAXT * MAXT], wt[MAXT];
    random_J(J, T, P, 9);
    for (int p = 0; p < P; p++)
        J[P + p] = 3 * J[p] + 0.1 * J[P + p]; /* an ill-conditioned pair */
    gram(J, T, P, G);
    ck_assert_int_eq(mtli_aligned_balance(T, G, B, ws), T);
    /* B G B = lambda_min I on the range: eigenvalues all equal */
    double M[MAXT * MAXT], V[MAXT * MAXT], ev[MAXT];
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) {
            double s = 0;
            for (int a = 0; a < T; a++)
                for (int b = 0; b < T; b++)
                    s += B[i * T + a] * G[a * T + b] * B[b * T + j];
            M[i * T + j] = s;
        }
    ck_assert_int_ge(mtli_sym_eig(T, M, ev, V), 0);
    for (int i = 1; i < T; i++)
        ck_assert_double_eq_tol(ev[i], ev[0], 1e-9 * ev[0]);
    mtl_weighting *w = make("aligned_mtl", T);
    ck_assert_ok(step_G(w, G, ones16, T, wt));
    for (int i = 0; i < T; i++) {
        double s = 0;
        for (int j = 0; j < T; j++)
            s += B[i * T + j];
        ck_assert_double_eq_tol(wt[i], s, 1e-12);
    }
    /* orthonormal gradients are already aligned: weights 1 */
    double Jo[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    mtl_weighting_free(w);
    w = make("aligned_mtl", 3);
    ck_assert_ok(step_J_as_G(w, Jo, 3, 3, ones16, wt));
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq_tol(wt[i], 1.0, 1e-14);
    mtl_weighting_free(w);
}
END_TEST

START_TEST(upgrad_and_dualproj_never_conflict_with_a_task)
{
    const char *names[2] = {"upgrad", "dualproj"};
    const int T = 5, P = 6;
    double J[MAXT * MAXP], wt[MAXT], d[MAXP];
    for (int m = 0; m < 2; m++)
        for (unsigned seed = 1; seed <= 10; seed++) {
            random_J(J, T, P, seed * 7);
            mtl_weighting *w = make(names[m], T);
            ck_assert_ok(mtl_weighting_set_double(w, "reg_eps", 0.0));
            ck_assert_ok(step_J_as_G(w, J, T, P, ones16, wt));
            combine(J, wt, T, P, d);
            double dd = sqrt(dotp(d, d, P));
            for (int t = 0; t < T; t++)
                ck_assert_msg(dotp(d, J + t * P, P) >= -1e-10 * dd,
                              "%s seed %u: <d, g_%d> = %g", names[m], seed, t,
                              dotp(d, J + t * P, P));
            mtl_weighting_free(w);
        }
    /* without conflict both are the mean gradient (default regularisation is tiny) */
    double Jn[6] = {1, 0.2, 0.3, 1, 0.5, 0.5};
    for (int m = 0; m < 2; m++) {
        mtl_weighting *w = make(names[m], 3);
        ck_assert_ok(mtl_weighting_set_double(w, "reg_eps", 0.0));
        ck_assert_ok(step_J_as_G(w, Jn, 3, 2, ones16, wt));
        for (int t = 0; t < 3; t++)
            ck_assert_double_eq_tol(wt[t], 1.0 / 3.0, 1e-12);
        mtl_weighting_free(w);
    }
}
END_TEST

START_TEST(config_update_has_equal_cosine_with_every_task_gradient)
{
    const int T = 3, P = 5;
    double J[MAXT * MAXP], wt[MAXT], d[MAXP];
    random_J(J, T, P, 13);
    for (int p = 0; p < P; p++)
        J[2 * P + p] *= 5.0;
    mtl_weighting *w = make("config", T);
    ck_assert_ok(step_J_as_G(w, J, T, P, ones16, wt));
    combine(J, wt, T, P, d);
    double nd = sqrt(dotp(d, d, P)), c0 = 0, len = 0;
    for (int t = 0; t < T; t++) {
        double c = dotp(d, J + t * P, P) / (nd * sqrt(dotp(J + t * P, J + t * P, P)));
        if (t == 0)
            c0 = c;
        ck_assert(c > 0.0);
        ck_assert_double_eq_tol(c, c0, 1e-10);
        len += dotp(J + t * P, d, P) / nd;
    }
    ck_assert_double_eq_tol(nd, len, 1e-10 * nd); /* length: sum of the projections */
    mtl_weighting_free(w);
}
END_TEST

START_TEST(gradnorm_equalises_the_weighted_gradient_norms)
{
    const int T = 3;
    double G[9] = {1, 0.5, 0.2, 0.5, 9, 1, 0.2, 1, 81}, L[3] = {1, 1, 1}, wt[3];
    mtl_weighting *w = make("gradnorm", T);
    ck_assert_ok(mtl_weighting_set_double(w, "lr", 0.01));
    for (int k = 0; k < 3000; k++)
        ck_assert_ok(step_G(w, G, L, T, wt));
    double n[3] = {1, 3, 9}, sum = 0;
    for (int t = 0; t < T; t++)
        sum += wt[t];
    ck_assert_double_eq_tol(sum, 3.0, 1e-12);
    for (int t = 1; t < T; t++)
        ck_assert_msg(fabs(wt[t] * n[t] / (wt[0] * n[0]) - 1.0) < 0.03,
                      "w n: %g %g %g", wt[0] * n[0], wt[1] * n[1], wt[2] * n[2]);
    mtl_weighting_free(w);
    /* a task whose loss decreases slower (ratio 2) gets 2^alpha times the norm */
    w = make("gradnorm", 2);
    ck_assert_ok(mtl_weighting_set_double(w, "lr", 0.01));
    ck_assert_ok(mtl_weighting_set_double(w, "alpha", 1.0));
    double G2[4] = {1, 0, 0, 1}, L0[2] = {1, 1}, L1[2] = {0.25, 0.5};
    ck_assert_ok(step_G(w, G2, L0, 2, wt));
    for (int k = 0; k < 3000; k++)
        ck_assert_ok(step_G(w, G2, L1, 2, wt));
    /* r = (0.25, 0.5) / 0.375 = (2/3, 4/3): targets in ratio 2 */
    ck_assert_msg(fabs(wt[1] / wt[0] - 2.0) < 0.05, "ratio %g", wt[1] / wt[0]);
    mtl_weighting_free(w);
}
END_TEST

/* Every deterministic Gram method: permuting the tasks permutes the weights; duplicated
 * tasks get equal weights; scaling all gradients leaves the weights of the scale-free
 * methods unchanged. */
START_TEST(gram_methods_are_permutation_equivariant_and_treat_identical_tasks_alike)
{
    const char *names[] = {"mgda", "cagrad", "nash_mtl", "imtl_g", "aligned_mtl", "fairgrad",
                           "upgrad", "dualproj", "config", "gradnorm", "imtl"};
    const int T = 4, P = 8;
    const int perm[4] = {2, 0, 3, 1};
    double J[MAXT * MAXP], Jp[MAXT * MAXP], wt[MAXT], wp[MAXT], L[4] = {1, 2, 3, 4}, Lp[4];
    random_J(J, T, P, 17);
    for (int t = 0; t < T; t++)
        J[t * P] += 1.0;
    for (int t = 0; t < T; t++) {
        memcpy(Jp + t * P, J + perm[t] * P, P * sizeof(double));
        Lp[t] = L[perm[t]];
    }
    for (size_t m = 0; m < sizeof names / sizeof names[0]; m++) {
        mtl_weighting *a = make(names[m], T), *b = make(names[m], T);
        ck_assert_ok(step_J_as_G(a, J, T, P, L, wt));
        ck_assert_ok(step_J_as_G(b, Jp, T, P, Lp, wp));
        for (int t = 0; t < T; t++)
            ck_assert_msg(fabs(wp[t] - wt[perm[t]]) <= 1e-8 * (1 + fabs(wt[perm[t]])),
                          "%s: permuted weight %d is %g, expected %g", names[m], t, wp[t],
                          wt[perm[t]]);
        mtl_weighting_free(a);
        mtl_weighting_free(b);
        /* tasks 0 and 1 identical */
        double Ji[MAXT * MAXP];
        memcpy(Ji, J, sizeof Ji);
        memcpy(Ji + P, Ji, P * sizeof(double));
        double Li[4] = {1, 1, 3, 4};
        a = make(names[m], T);
        mtl_status st = step_J_as_G(a, Ji, T, P, Li, wt);
        if (strcmp(names[m], "imtl_g") == 0 || strcmp(names[m], "imtl") == 0 ||
            strcmp(names[m], "config") == 0 || strcmp(names[m], "aligned_mtl") == 0 ||
            strcmp(names[m], "mgda") == 0 || st == MTL_OK) {
            ck_assert_msg(st == MTL_OK, "%s: %s", names[m], mtl_last_error());
            ck_assert_msg(fabs(wt[0] - wt[1]) <= 1e-8 * (1 + fabs(wt[0])),
                          "%s: identical tasks got %g and %g", names[m], wt[0], wt[1]);
        }
        mtl_weighting_free(a);
    }
    /* scale invariance of the weights (all gradients times 10) */
    const char *scalefree[] = {"mgda", "cagrad", "imtl_g", "aligned_mtl", "upgrad",
                               "dualproj", "config", "nash_mtl", "pcgrad"};
    for (size_t m = 0; m < sizeof scalefree / sizeof scalefree[0]; m++) {
        double Js[MAXT * MAXP];
        for (int i = 0; i < T * P; i++)
            Js[i] = 10.0 * J[i];
        mtl_weighting *a = make(scalefree[m], T), *b = make(scalefree[m], T);
        ck_assert_ok(step_J_as_G(a, J, T, P, L, wt));
        ck_assert_ok(step_J_as_G(b, Js, T, P, L, wp));
        for (int t = 0; t < T; t++)
            ck_assert_msg(fabs(wp[t] - wt[t]) <= 1e-8 * (1 + fabs(wt[t])), "%s: %g vs %g",
                          scalefree[m], wp[t], wt[t]);
        mtl_weighting_free(a);
        mtl_weighting_free(b);
    }
}
END_TEST

START_TEST(gram_methods_skip_inactive_tasks_and_check_their_input)
{
    const int T = 3, P = 4;
    double J[MAXT * MAXP], G[MAXT * MAXT], wt[MAXT], w2[2];
    random_J(J, T, P, 4);
    gram(J, T, P, G);
    bool act[3] = {true, false, true};
    mtl_weighting *w = make("mgda", T);
    mtli_wstep s;
    memset(&s, 0, sizeof s);
    s.T = T;
    s.losses = ones16;
    s.active = act;
    s.G = G;
    s.weights = wt;
    ck_assert_ok(mtli_weighting_apply(w, &s));
    ck_assert_double_eq(wt[1], 0.0);
    /* same as the two-task problem of tasks 0 and 2 */
    double J2[2 * MAXP];
    memcpy(J2, J, P * sizeof(double));
    memcpy(J2 + P, J + 2 * P, P * sizeof(double));
    mtl_weighting *v = make("mgda", 2);
    ck_assert_ok(step_J_as_G(v, J2, 2, P, ones16, w2));
    ck_assert_double_eq_tol(wt[0], w2[0], 1e-15);
    ck_assert_double_eq_tol(wt[2], w2[1], 1e-15);
    mtl_weighting_free(v);
    /* errors */
    ck_assert_status(mtli_weighting_weights(w, ones16, NULL, T, wt), MTL_ERR_UNSUPPORTED);
    ck_error_has("needs per-task gradients");
    s.G = NULL;
    ck_assert_status(mtli_weighting_apply(w, &s), MTL_ERR_INVALID_ARGUMENT);
    ck_error_has("needs the Gram matrix");
    s.G = G;
    G[4] = NAN; /* inactive task: ignored */
    ck_assert_ok(mtli_weighting_apply(w, &s));
    G[0] = NAN;
    ck_assert_status(mtli_weighting_apply(w, &s), MTL_ERR_NUMERIC);
    ck_error_has("Gram entry (0, 0)");
    G[0] = -1.0;
    ck_assert_status(mtli_weighting_apply(w, &s), MTL_ERR_INVALID_ARGUMENT);
    ck_error_has("negative");
    mtl_weighting_free(w);
}
END_TEST

START_TEST(representation_mode_is_a_key_of_gram_methods)
{
    mtl_weighting *w = make("mgda", 2);
    ck_assert_uint_eq(mtli_weighting_needs(w), MTLI_NEED_G);
    ck_assert_ok(mtl_weighting_set_string(w, "mode", "representation"));
    ck_assert_uint_eq(mtli_weighting_needs(w), MTLI_NEED_G | MTLI_NEED_R);
    const char *sv;
    ck_assert_ok(mtl_weighting_get_string(w, "mode", &sv));
    ck_assert_str_eq(sv, "representation");
    ck_assert_status(mtl_weighting_set_string(w, "mode", "layers"), MTL_ERR_RANGE);
    ck_error_has("expected parameters or representation");
    mtl_weighting_free(w);
    w = make("mgda_ub", 2);
    ck_assert_uint_eq(mtli_weighting_needs(w), MTLI_NEED_G | MTLI_NEED_R);
    ck_assert_status(mtl_weighting_set_string(w, "mode", "parameters"), MTL_ERR_RANGE);
    ck_error_has("use method 'mgda'");
    mtl_weighting_free(w);
    const char *all[] = {"pcgrad", "cagrad", "nash_mtl", "imtl", "aligned_mtl", "fairgrad",
                         "upgrad", "dualproj", "gradnorm", "config"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        w = make(all[i], 3);
        ck_assert_ok(mtl_weighting_set_string(w, "mode", "representation"));
        ck_assert(mtli_weighting_needs(w) & MTLI_NEED_R);
        mtl_weighting_free(w);
    }
}
END_TEST

/* Gram methods with state: bit-identical continuation from saved state. */
static void roundtrip_G(const char *name, int T)
{
    mtl_weighting *a = make(name, T), *b = make(name, T);
    double J[MAXT * MAXP], L[MAXT], wa[MAXT], wb[MAXT], saved[256];
    size_t n = mtli_weighting_state_size(a);
    ck_assert_uint_le(n, 256);
    for (int k = 0; k < 10; k++) {
        random_J(J, T, 6, 100 + (unsigned)k);
        for (int t = 0; t < T; t++) {
            L[t] = 1.0 + 0.5 * cos(k + 2.0 * t);
            J[t * 6] += 1.0;
        }
        if (k == 6) {
            memcpy(saved, mtli_weighting_state(a), n * sizeof(double));
            memcpy(mtli_weighting_state(b), saved, n * sizeof(double));
        }
        ck_assert_ok(step_J_as_G(a, J, T, 6, L, wa));
        if (k >= 6) {
            ck_assert_ok(step_J_as_G(b, J, T, 6, L, wb));
            ck_assert_mem_eq(wa, wb, (size_t)T * sizeof(double));
        }
    }
    mtl_weighting_free(a);
    mtl_weighting_free(b);
}

START_TEST(gram_methods_resume_bit_identically_from_their_state)
{
    roundtrip_G("pcgrad", 4);
    roundtrip_G("gradnorm", 3);
    roundtrip_G("imtl", 3);
    mtl_weighting *w = make("nash_mtl", 3);
    ck_assert_ok(mtl_weighting_set_int(w, "update_every", 3));
    mtl_weighting_free(w);
    roundtrip_G("nash_mtl", 3);
}
END_TEST

/* ---- per-coordinate methods ---------------------------------------------------------------- */

typedef struct {
    mtl_weighting *w;
    int T;
    size_t P;
    float J[MAXT * 4096];
    float out[4096];
    double wt[MAXT];
    bool wrote;
} jrun;

static mtl_status step_Jf(jrun *r, const double *L)
{
    mtli_wstep s;
    memset(&s, 0, sizeof s);
    s.T = r->T;
    s.losses = L;
    s.J = r->J;
    s.P = r->P;
    s.weights = r->wt;
    s.shared_out = r->out;
    s.wrote_shared = &r->wrote;
    return mtli_weighting_apply(r->w, &s);
}

static jrun *jrun_new(const char *name, int T, size_t P)
{
    static jrun runs[2];
    static int next;
    jrun *r = &runs[next++ % 2];
    memset(r, 0, sizeof *r);
    r->w = make(name, T);
    r->T = T;
    r->P = P;
    ck_assert_ok(mtli_weighting_bind(r->w, P, NULL, 0, NULL, 0));
    return r;
}

START_TEST(per_coordinate_methods_need_j_a_binding_and_parameter_mode)
{
    const char *names[] = {"graddrop", "gradvac", "moco", "db_mtl", "excessmtl"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        mtl_weighting *w = make(names[i], 2);
        ck_assert_uint_eq(mtli_weighting_needs(w), MTLI_NEED_J);
        ck_assert_status(mtl_weighting_set_string(w, "mode", "representation"),
                         MTL_ERR_UNSUPPORTED);
        ck_error_has("works coordinate-wise");
        ck_assert_ok(mtl_weighting_set_string(w, "mode", "parameters"));
        float J[4] = {1, 2, 3, 4}, out[2];
        double wt[2];
        bool wrote;
        mtli_wstep s;
        memset(&s, 0, sizeof s);
        s.T = 2;
        s.losses = ones16;
        s.J = J;
        s.P = 2;
        s.weights = wt;
        s.shared_out = out;
        s.wrote_shared = &wrote;
        ck_assert_status(mtli_weighting_apply(w, &s), MTL_ERR_SHAPE);
        ck_error_has("call mtli_weighting_bind");
        ck_assert_ok(mtli_weighting_bind(w, 2, NULL, 0, NULL, 0));
        ck_assert_ok(mtli_weighting_apply(w, &s));
        s.J = NULL;
        ck_assert_status(mtli_weighting_apply(w, &s), MTL_ERR_INVALID_ARGUMENT);
        ck_error_has("needs the per-task gradients");
        size_t ends[2] = {1, 3};
        ck_assert_status(mtli_weighting_bind(w, 2, ends, 2, NULL, 0), MTL_ERR_INVALID_ARGUMENT);
        ck_error_has("layer end 1 is 3");
        ck_assert_status(mtli_weighting_bind(w, 0, NULL, 0, NULL, 0), MTL_ERR_INVALID_ARGUMENT);
        mtl_weighting_free(w);
    }
}
END_TEST

START_TEST(graddrop_keeps_one_sign_per_coordinate_with_the_purity_probability)
{
    const size_t P = 4000;
    jrun *r = jrun_new("graddrop", 2, P);
    ck_assert_ok(mtl_weighting_set_int(r->w, "seed", 3));
    for (size_t p = 0; p < P; p++) {
        r->J[p] = 3.0f;
        r->J[P + p] = p % 2 ? -1.0f : 2.0f; /* odd: conflict (purity 0.75); even: agree */
    }
    ck_assert_ok(step_Jf(r, ones16));
    ck_assert(r->wrote);
    ck_assert_double_eq(r->wt[0], 1.0);
    int pos = 0;
    for (size_t p = 0; p < P; p++) {
        if (p % 2 == 0) {
            ck_assert_float_eq(r->out[p], 5.0f);
            continue;
        }
        ck_assert(r->out[p] == 3.0f || r->out[p] == -1.0f);
        pos += r->out[p] == 3.0f;
    }
    double frac = pos / (P / 2.0); /* 2000 Bernoulli(0.75): sd 0.0097 */
    ck_assert_msg(fabs(frac - 0.75) < 0.04, "kept the positive sign %g of the time", frac);
    /* seeded: the same seed gives the same masks; leak 1 is the plain sum */
    float first[4000];
    memcpy(first, r->out, sizeof first);
    mtl_weighting *w2 = r->w;
    ck_assert_ok(mtl_weighting_set_int(w2, "seed", 3));
    ck_assert_ok(step_Jf(r, ones16));
    ck_assert_mem_eq(first, r->out, sizeof first);
    ck_assert_ok(step_Jf(r, ones16));
    ck_assert(memcmp(first, r->out, sizeof first) != 0);
    ck_assert_ok(mtl_weighting_set_double(w2, "leak", 1.0));
    ck_assert_ok(step_Jf(r, ones16));
    for (size_t p = 0; p < P; p++)
        ck_assert_float_eq(r->out[p], r->J[p] + r->J[P + p]);
    mtl_weighting_free(r->w);
}
END_TEST

static double dotf(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

START_TEST(gradvac_moves_each_pair_to_its_cosine_target)
{
    /* two tasks at cosine -0.6; target 0 (initial): the first step is PCGrad */
    jrun *r = jrun_new("gradvac", 2, 2);
    float g1[2] = {1, 0}, g2[2] = {-0.6f, 0.8f};
    memcpy(r->J, g1, sizeof g1);
    memcpy(r->J + 2, g2, sizeof g2);
    ck_assert_ok(step_Jf(r, ones16));
    ck_assert(r->wrote);
    /* PCGrad: g1' = g1 + 0.6 g2, g2' = g2 + 0.6 g1 */
    ck_assert_float_eq_tol(r->out[0], 1 + 0.6f * -0.6f + -0.6f + 0.6f, 1e-6f);
    ck_assert_float_eq_tol(r->out[1], 0.6f * 0.8f + 0.8f, 1e-6f);
    /* targets moved to beta * rho = -0.3 */
    const double *phi = mtli_weighting_state(r->w) + mtli_weighting_state_size(r->w) - 4;
    ck_assert_double_eq_tol(phi[1], -0.3, 1e-6);
    ck_assert_double_eq_tol(phi[2], -0.3, 1e-6);
    /* a positive target: with phi_12 = phi_21 = 0.5 and orthogonal gradients the corrected
     * gradients have cosine exactly 0.5 with the other task */
    double *ph = mtli_weighting_state(r->w) + mtli_weighting_state_size(r->w) - 4;
    ph[1] = ph[2] = 0.5;
    float o1[2] = {2, 0}, o2[2] = {0, 1};
    memcpy(r->J, o1, sizeof o1);
    memcpy(r->J + 2, o2, sizeof o2);
    ck_assert_ok(step_Jf(r, ones16));
    /* g1' = g1 + c g2 with cos(g1', g2) = 0.5: g1' = (2, 2/sqrt(3)) */
    float g1p[2] = {2.0f, (float)(2.0 / sqrt(3.0))}, g2p[2] = {(float)(1.0 / sqrt(3.0)), 1.0f};
    ck_assert_float_eq_tol(r->out[0], g1p[0] + g2p[0], 1e-5f);
    ck_assert_float_eq_tol(r->out[1], g1p[1] + g2p[1], 1e-5f);
    ck_assert_double_eq_tol(dotf(g1p, o2, 2) / sqrt(dotf(g1p, g1p, 2)), 0.5, 1e-6);
    mtl_weighting_free(r->w);

    /* per layer: a conflicting first layer is corrected, an agreeing second one is summed */
    r = jrun_new("gradvac", 2, 4);
    ck_assert_ok(mtl_weighting_set_string(r->w, "granularity", "layer"));
    size_t ends[2] = {2, 4};
    ck_assert_ok(mtli_weighting_bind(r->w, 4, ends, 2, NULL, 0));
    ck_assert_uint_eq(mtli_weighting_state_size(r->w), 1 + 2 + 8 + 2 * 4);
    float J[8] = {1, 0, 1, 1, -0.6f, 0.8f, 1, 2};
    memcpy(r->J, J, sizeof J);
    ck_assert_ok(step_Jf(r, ones16));
    ck_assert_float_eq_tol(r->out[0], 1 + 0.6f * -0.6f + -0.6f + 0.6f, 1e-6f);
    ck_assert_float_eq(r->out[2], 2.0f);
    ck_assert_float_eq(r->out[3], 3.0f);
    mtl_weighting_free(r->w);
}
END_TEST

START_TEST(moco_tracks_loss_scaled_gradients_and_their_min_norm_weights)
{
    const int T = 2;
    const size_t P = 3;
    jrun *r = jrun_new("moco", T, P);
    float J[6] = {3, 0, 4, 0, 1, 0};
    memcpy(r->J, J, sizeof J);
    double L[2] = {2.0, 0.5}, y[2][3] = {{0}}, lam[2] = {0.5, 0.5};
    for (int step = 1; step <= 3; step++) {
        ck_assert_ok(step_Jf(r, L));
        /* reference */
        double bk = 0.5 / sqrt(step), gk = 0.1 / sqrt(step), YY[2][2], nl[2], z = 0;
        for (int t = 0; t < T; t++) {
            double n = sqrt(dotf(J + t * P, J + t * P, P));
            for (size_t p = 0; p < P; p++)
                y[t][p] -= bk * (y[t][p] - J[t * P + p] / (n + 1e-8) * L[t]);
        }
        for (int a = 0; a < T; a++)
            for (int b = 0; b < T; b++)
                YY[a][b] = dotp(y[a], y[b], (int)P);
        for (int a = 0; a < T; a++)
            nl[a] = lam[a] - gk * (YY[a][0] * lam[0] + YY[a][1] * lam[1]);
        for (int a = 0; a < T; a++)
            z += exp(nl[a]);
        for (int a = 0; a < T; a++)
            lam[a] = exp(nl[a]) / z;
        for (size_t p = 0; p < P; p++)
            ck_assert_float_eq_tol(r->out[p], (float)(lam[0] * y[0][p] + lam[1] * y[1][p]),
                                   1e-6f);
        ck_assert_double_eq_tol(r->wt[0], lam[0], 1e-15);
    }
    mtl_weighting_free(r->w);
}
END_TEST

START_TEST(db_mtl_gives_every_log_loss_gradient_the_largest_norm)
{
    const int T = 3;
    const size_t P = 4;
    jrun *r = jrun_new("db_mtl", T, P);
    ck_assert_ok(mtl_weighting_set_double(r->w, "beta", 0.0)); /* no momentum */
    float J[12] = {1, 0, 0, 0, 0, 4, 0, 0, 1, 1, 1, 1};
    memcpy(r->J, J, sizeof J);
    double L[3] = {0.5, 2.0, 1.0};
    ck_assert_ok(step_Jf(r, L));
    /* log-loss gradients g/L: norms 2, 2, 2 -> all alpha 1; update = sum g_t / L_t */
    for (size_t p = 0; p < P; p++) {
        double want = J[p] / 0.5 + J[P + p] / 2.0 + J[2 * P + p] / 1.0;
        ck_assert_float_eq_tol(r->out[p], (float)want, 1e-5f);
    }
    ck_assert_double_eq_tol(r->wt[1], 1.0 / 2.0, 1e-7);
    /* unequal norms: each term is scaled up to the largest */
    double L2[3] = {1.0, 1.0, 1.0};
    ck_assert_ok(step_Jf(r, L2)); /* norms 1, 4, 2 -> alpha 4, 1, 2 */
    ck_assert_double_eq_tol(r->wt[0], 1.0, 1e-7); /* heads: the log-loss gradient */
    ck_assert_float_eq_tol(r->out[0], 4.0f + 2.0f, 1e-5f);
    ck_assert_float_eq_tol(r->out[1], 4.0f + 2.0f, 1e-5f);
    /* with momentum the buffer is an average: beta 0.9 at step k: beta_k = 0.9/sqrt(k) */
    mtl_weighting_free(r->w);
    r = jrun_new("db_mtl", 1, 1);
    r->J[0] = 1.0f;
    double L1 = 1.0;
    ck_assert_ok(step_Jf(r, &L1)); /* b = 1 + 0.9 (0 - 1) = 0.1 */
    ck_assert_float_eq_tol(r->out[0], 0.1f, 1e-6f);
    r->J[0] = 2.0f;
    ck_assert_ok(step_Jf(r, &L1)); /* b = 2 + 0.9/sqrt2 (0.1 - 2) */
    ck_assert_float_eq_tol(r->out[0], (float)(2 + 0.9 / sqrt(2.0) * (0.1 - 2)), 1e-6f);
    L1 = 0.0 - 1.0;
    ck_assert_status(step_Jf(r, &L1), MTL_ERR_NUMERIC);
    mtl_weighting_free(r->w);
}
END_TEST

START_TEST(excessmtl_raises_the_weight_of_the_task_with_more_excess_risk)
{
    const int T = 2;
    const size_t P = 2;
    jrun *r = jrun_new("excessmtl", T, P);
    float J[4] = {1, 0, 0, 1};
    memcpy(r->J, J, sizeof J);
    ck_assert_ok(step_Jf(r, ones16));
    ck_assert(!r->wrote); /* the ordinary weighted sum */
    ck_assert_double_eq(r->wt[0], 1.0);
    /* e_t(0) = 1/sqrt(1+1e-7) for both. Step 2: task 0's gradient doubles. */
    r->J[0] = 2.0f;
    ck_assert_ok(step_Jf(r, ones16));
    double e00 = 1.0 / sqrt(1 + 1e-7);
    double e0 = 4.0 / sqrt(5 + 1e-7) / e00, e1 = 1.0 / sqrt(2 + 1e-7) / e00;
    double w0 = exp(0.01 * e0), w1 = exp(0.01 * e1);
    ck_assert_double_eq_tol(r->wt[0], 2 * w0 / (w0 + w1), 1e-12);
    ck_assert_double_eq_tol(r->wt[1], 2 * w1 / (w0 + w1), 1e-12);
    ck_assert(r->wt[0] > r->wt[1]);
    mtl_weighting_free(r->w);
}
END_TEST

static void roundtrip_J(const char *name, int T, size_t P)
{
    jrun *a = jrun_new(name, T, P), *b = jrun_new(name, T, P);
    double L[MAXT], saved[4096], wa[MAXT];
    float oa[64];
    size_t n = mtli_weighting_state_size(a->w);
    ck_assert_uint_le(n, 4096);
    for (int k = 0; k < 8; k++) {
        unsigned st = 50 + (unsigned)k;
        for (size_t i = 0; i < (size_t)T * P; i++)
            a->J[i] = b->J[i] = (float)urand(&st);
        for (int t = 0; t < T; t++)
            L[t] = 1.0 + 0.3 * sin(k + t);
        if (k == 5) {
            memcpy(saved, mtli_weighting_state(a->w), n * sizeof(double));
            memcpy(mtli_weighting_state(b->w), saved, n * sizeof(double));
        }
        ck_assert_ok(step_Jf(a, L));
        memcpy(oa, a->out, P * sizeof(float));
        memcpy(wa, a->wt, (size_t)T * sizeof(double));
        if (k >= 5) {
            ck_assert_ok(step_Jf(b, L));
            ck_assert_mem_eq(wa, b->wt, (size_t)T * sizeof(double));
            if (a->wrote)
                ck_assert_mem_eq(oa, b->out, P * sizeof(float));
        }
    }
    mtl_weighting_free(a->w);
    mtl_weighting_free(b->w);
}

START_TEST(per_coordinate_methods_resume_bit_identically_from_their_state)
{
    roundtrip_J("graddrop", 3, 40);
    roundtrip_J("gradvac", 3, 40);
    roundtrip_J("moco", 3, 40);
    roundtrip_J("db_mtl", 3, 40);
    roundtrip_J("excessmtl", 3, 40);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("weighting");
    TCase *tc = tcase_create("handle");
    tcase_add_test(tc, every_method_is_listed_created_and_lists_its_keys);
    tcase_add_test(tc, create_rejects_bad_arguments);
    tcase_add_test(tc, keys_reject_unknown_names_wrong_types_and_out_of_range_values);
    tcase_add_test(tc, create_survives_every_allocation_failure);
    suite_add_tcase(s, tc);
    tc = tcase_create("loss");
    tcase_add_test(tc, ew_sums_or_averages_and_zeroes_inactive_tasks);
    tcase_add_test(tc, fixed_uses_the_set_weights);
    tcase_add_test(tc, uw_log_variances_converge_to_the_loss_scales);
    tcase_add_test(tc, dwa_weights_follow_the_loss_ratios);
    tcase_add_test(tc, gls_weights_are_the_geometric_mean_gradient);
    tcase_add_test(tc, rlw_is_a_seeded_random_point_of_the_simplex);
    tcase_add_test(tc, stch_is_the_smooth_max_of_log_losses);
    tcase_add_test(tc, famo_balances_log_loss_improvement);
    tcase_add_test(tc, loss_methods_resume_bit_identically_from_their_state);
    suite_add_tcase(s, tc);
    tc = tcase_create("gram");
    tcase_add_test(tc, mgda_two_gradients_have_the_closed_form_min_norm_point);
    tcase_add_test(tc, mgda_many_tasks_satisfies_the_min_norm_optimality_conditions);
    tcase_add_test(tc, pcgrad_removes_exactly_the_conflicting_component);
    tcase_add_test(tc, pcgrad_random_order_is_seeded);
    tcase_add_test(tc, cagrad_with_c_zero_is_the_mean_and_otherwise_maximises_the_worst_improvement);
    tcase_add_test(tc, nash_mtl_solves_its_bargaining_fixed_point);
    tcase_add_test(tc, fairgrad_solves_the_alpha_fair_condition);
    tcase_add_test(tc, imtl_g_update_has_equal_projections_on_every_unit_gradient);
    tcase_add_test(tc, aligned_mtl_balanced_gradients_have_equal_singular_values);
    tcase_add_test(tc, upgrad_and_dualproj_never_conflict_with_a_task);
    tcase_add_test(tc, config_update_has_equal_cosine_with_every_task_gradient);
    tcase_add_test(tc, gradnorm_equalises_the_weighted_gradient_norms);
    tcase_add_test(tc, gram_methods_are_permutation_equivariant_and_treat_identical_tasks_alike);
    tcase_add_test(tc, gram_methods_skip_inactive_tasks_and_check_their_input);
    tcase_add_test(tc, representation_mode_is_a_key_of_gram_methods);
    tcase_add_test(tc, gram_methods_resume_bit_identically_from_their_state);
    suite_add_tcase(s, tc);
    tc = tcase_create("coordinate");
    tcase_add_test(tc, per_coordinate_methods_need_j_a_binding_and_parameter_mode);
    tcase_add_test(tc, graddrop_keeps_one_sign_per_coordinate_with_the_purity_probability);
    tcase_add_test(tc, gradvac_moves_each_pair_to_its_cosine_target);
    tcase_add_test(tc, moco_tracks_loss_scaled_gradients_and_their_min_norm_weights);
    tcase_add_test(tc, db_mtl_gives_every_log_loss_gradient_the_largest_norm);
    tcase_add_test(tc, excessmtl_raises_the_weight_of_the_task_with_more_excess_risk);
    tcase_add_test(tc, per_coordinate_methods_resume_bit_identically_from_their_state);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(suite)
