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
__attribute__((unused)) static mtl_status step_G(mtl_weighting *w, const double *G, const double *L, int T, double *wt)
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
__attribute__((unused)) static void gram(const double *J, int T, int P, double *G)
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
__attribute__((unused)) static void combine(const double *J, const double *wt, int T, int P, double *d)
{
    for (int p = 0; p < P; p++) {
        double s = 0.0;
        for (int t = 0; t < T; t++)
            s += wt[t] * J[t * P + p];
        d[p] = s;
    }
}

__attribute__((unused)) static double dotp(const double *a, const double *b, int n)
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

START_TEST(create_survives_every_allocation_failure)
{
    for (int i = 0; mtl_weighting_available(i); i++)
        ck_assert_int_ge(mtl_test_oom_sweep(create_named, (void *)mtl_weighting_available(i)),
                         5);
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
    return s;
}

MTL_TEST_MAIN(suite)
