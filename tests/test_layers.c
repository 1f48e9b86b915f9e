/* Layers: finite-difference gradient checks of every kind (input and every parameter),
 * hand-computed and PyTorch-computed forward values, running statistics, dropout behaviour,
 * initialisation distributions, determinism, option errors and accumulation semantics.
 * The tests play the model: they allocate params/grads/state/scratch and bind them. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mtl/mtl.h>

#include "core/rng.h"
#include "layers/layer.h"
#include "test_main.h"

/* ---- harness ----------------------------------------------------------------------------- */

typedef struct {
    mtli_layer l;
    float *params, *grads, *state, *scratch;
    size_t maxB;
} H;

static void h_kind(H *h, const char *kind)
{
    memset(h, 0, sizeof *h);
    h->l.ops = mtli_layer_find(kind);
    ck_assert_msg(h->l.ops != NULL, "kind %s not registered", kind);
    mtli_layer_opts_default(&h->l.opts);
}

static void h_set_int(H *h, const char *key, int64_t v)
{
    ck_assert_ok(mtli_layer_set_int(h->l.ops, &h->l.opts, key, v));
}

static void h_set_double(H *h, const char *key, double v)
{
    ck_assert_ok(mtli_layer_set_double(h->l.ops, &h->l.opts, key, v));
}

static void h_set_string(H *h, const char *key, const char *v)
{
    ck_assert_ok(mtli_layer_set_string(h->l.ops, &h->l.opts, key, v));
}

/* Set up with per-sample dims (d1, d2 = 0 for fewer dims), allocate for batches up to maxB,
 * initialise from seed. */
static void h_setup(H *h, int64_t d0, int64_t d1, int64_t d2, size_t maxB, uint64_t seed)
{
    mtli_layer *l = &h->l;
    l->in_ndim = d2 ? 3 : d1 ? 2 : 1;
    l->in_dims[0] = d0;
    l->in_dims[1] = d1;
    l->in_dims[2] = d2;
    ck_assert_ok(l->ops->setup(l));
    h->maxB = maxB;
    h->params = calloc(l->nparams + 1, sizeof(float));
    h->grads = calloc(l->nparams + 1, sizeof(float));
    h->state = calloc(l->nstate + 1, sizeof(float));
    h->scratch = calloc(l->ops->scratch_floats(l, maxB) + 1, sizeof(float));
    ck_assert(h->params && h->grads && h->state && h->scratch);
    l->params = h->params;
    l->grads = h->grads;
    l->state = h->state;
    mtli_rng r;
    mtli_rng_seed(&r, seed);
    l->ops->init(l, &r);
}

static void h_free(H *h)
{
    free(h->params);
    free(h->grads);
    free(h->state);
    free(h->scratch);
}

static void h_fwd(H *h, const float *x, float *y, size_t B, bool train, mtli_rng *rng)
{
    mtli_fwd f = {.x = x, .y = y, .B = B, .train = train, .scratch = h->scratch, .rng = rng};
    h->l.ops->forward(&h->l, &f);
}

static void h_bwd(H *h, const float *x, const float *y, const float *dy, float *dx, size_t B)
{
    mtli_bwd b = {.x = x, .y = y, .dy = dy, .dx = dx, .dparams = h->grads, .B = B,
                  .scratch = h->scratch};
    h->l.ops->backward(&h->l, &b);
}

static float *fvec(size_t n) { return calloc(n + 1, sizeof(float)); }

static void fill_uniform(float *x, size_t n, float lo, float hi, mtli_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * mtli_rng_uniform(r);
}

static void put_id(float *x, size_t i, int32_t id) { memcpy(&x[i], &id, sizeof id); }

static size_t in_n(const H *h, size_t B) { return B * h->l.in_features; }
static size_t out_n(const H *h, size_t B) { return B * h->l.out_features; }

/* ---- finite-difference gradient check ---------------------------------------------------- */

/* Objective L = sum(y * R), accumulated in double; the rng is restored before each forward so
 * stochastic layers (dropout) see the same mask. Central differences with step FD_EPS in
 * float; analytic a and numeric n must satisfy |a - n| <= FD_ATOL + FD_RTOL * max(|a|, |n|). */
#define FD_EPS 1e-3f
#define FD_RTOL 1e-2
#define FD_ATOL 1e-3

typedef struct {
    H *h;
    float *x, *y, *R;
    size_t B;
    bool train;
    mtli_rng rng0;
} gc_ctx;

static double gc_loss(gc_ctx *c)
{
    mtli_rng r = c->rng0;
    h_fwd(c->h, c->x, c->y, c->B, c->train, &r);
    double s = 0.0;
    size_t n = out_n(c->h, c->B);
    for (size_t i = 0; i < n; i++)
        s += (double)c->y[i] * (double)c->R[i];
    return s;
}

static double gc_numeric(gc_ctx *c, float *v)
{
    float keep = *v;
    *v = keep + FD_EPS;
    double lp = gc_loss(c);
    *v = keep - FD_EPS;
    double lm = gc_loss(c);
    *v = keep;
    /* the step actually taken in float */
    double step = ((double)(keep + FD_EPS) - (double)(keep - FD_EPS));
    return (lp - lm) / step;
}

static double gc_compare(const char *what, size_t i, double a, double n)
{
    double err = fabs(a - n);
    double scale = fmax(fabs(a), fabs(n));
    ck_assert_msg(err <= FD_ATOL + FD_RTOL * scale, "%s[%zu]: analytic %.7g, numeric %.7g", what,
                  i, a, n);
    return err / fmax(scale, 1e-3);
}

/* ids: x holds embedding ids (no input gradient; dx must stay untouched). gap: inputs are
 * kept at least this far from 0 (relu kinks). Returns the largest relative error seen. */
static double gradcheck(H *h, size_t B, bool train, float gap, bool ids, uint64_t seed)
{
    mtli_rng r;
    mtli_rng_seed(&r, seed);
    size_t nin = in_n(h, B), nout = out_n(h, B), np = h->l.nparams;
    gc_ctx c = {.h = h, .x = fvec(nin), .y = fvec(nout), .R = fvec(nout), .B = B,
                .train = train};
    mtli_rng_seed(&c.rng0, seed + 1);
    if (ids) {
        int32_t N = (int32_t)h->l.opts.num_embeddings;
        for (size_t i = 0; i < nin; i++)
            put_id(c.x, i, (int32_t)mtli_rng_below(&r, (uint64_t)N + 1) - 1);
    } else {
        fill_uniform(c.x, nin, -1.5f, 1.5f, &r);
        for (size_t i = 0; i < nin; i++)
            if (fabsf(c.x[i]) < gap)
                c.x[i] = c.x[i] < 0 ? c.x[i] - gap : c.x[i] + gap;
    }
    fill_uniform(c.R, nout, -1.0f, 1.0f, &r);
    /* non-trivial parameters (norm scales would otherwise start at 1 and shifts at 0) */
    fill_uniform(h->params, np, -1.0f, 1.0f, &r);

    float *dx = fvec(nin);
    for (size_t i = 0; i < nin; i++)
        dx[i] = 12345.0f;
    memset(h->grads, 0, np * sizeof(float));
    mtli_rng rr = c.rng0;
    h_fwd(h, c.x, c.y, B, train, &rr);
    h_bwd(h, c.x, c.y, c.R, dx, B);

    double worst = 0.0;
    if (ids) {
        for (size_t i = 0; i < nin; i++)
            ck_assert_msg(dx[i] == 12345.0f, "embedding wrote dx[%zu]", i);
    } else {
        for (size_t i = 0; i < nin; i++)
            worst = fmax(worst, gc_compare("dx", i, dx[i], gc_numeric(&c, &c.x[i])));
    }
    for (size_t i = 0; i < np; i++)
        worst = fmax(worst, gc_compare("dparam", i, h->grads[i], gc_numeric(&c, &h->params[i])));
    free(c.x);
    free(c.y);
    free(c.R);
    free(dx);
    return worst;
}

/* Set up `kind` with dims, run the gradient check, free. */
static void gc_kind(H *h, int64_t d0, int64_t d1, int64_t d2, size_t B, bool train, float gap)
{
    h_setup(h, d0, d1, d2, B, 7);
    gradcheck(h, B, train, gap, false, 99);
    h_free(h);
}

START_TEST(grad_linear)
{
    H h;
    h_kind(&h, "linear");
    h_set_int(&h, "out", 5);
    gc_kind(&h, 7, 0, 0, 4, true, 0.0f);
    h_kind(&h, "linear");
    h_set_int(&h, "out", 3);
    h_set_int(&h, "bias", 0);
    gc_kind(&h, 2, 3, 0, 3, true, 0.0f);
    h_kind(&h, "linear"); /* 3-d input, treated as flattened features */
    h_set_int(&h, "out", 2);
    gc_kind(&h, 2, 2, 3, 2, false, 0.0f);
}
END_TEST

START_TEST(grad_activations)
{
    H h;
    const char *kinds[] = {"relu", "leaky_relu", "gelu", "tanh", "sigmoid"};
    for (size_t k = 0; k < 5; k++) {
        h_kind(&h, kinds[k]);
        gc_kind(&h, 6, 0, 0, 3, true, 0.05f);
        h_kind(&h, kinds[k]);
        gc_kind(&h, 2, 3, 0, 2, false, 0.05f);
    }
    h_kind(&h, "leaky_relu");
    h_set_double(&h, "slope", 0.2);
    gc_kind(&h, 8, 0, 0, 3, true, 0.05f);
    h_kind(&h, "leaky_relu");
    h_set_double(&h, "slope", -0.5);
    gc_kind(&h, 8, 0, 0, 3, true, 0.05f);
    h_kind(&h, "gelu");
    h_set_string(&h, "approximate", "tanh");
    gc_kind(&h, 8, 0, 0, 3, true, 0.0f);
}
END_TEST

START_TEST(grad_dropout_fixed_mask)
{
    H h;
    h_kind(&h, "dropout");
    h_set_double(&h, "p", 0.3);
    gc_kind(&h, 10, 0, 0, 4, true, 0.0f);
    h_kind(&h, "dropout"); /* evaluation: identity */
    gc_kind(&h, 10, 0, 0, 4, false, 0.0f);
}
END_TEST

START_TEST(grad_layer_norm)
{
    H h;
    h_kind(&h, "layer_norm");
    gc_kind(&h, 6, 0, 0, 3, true, 0.0f);
    h_kind(&h, "layer_norm");
    h_set_int(&h, "affine", 0);
    gc_kind(&h, 5, 0, 0, 3, true, 0.0f);
    h_kind(&h, "layer_norm"); /* over all of a [2, 3, 2] sample; 17 features would cross the
                               * 8-wide partial sums too */
    gc_kind(&h, 2, 3, 2, 2, true, 0.0f);
    h_kind(&h, "layer_norm");
    gc_kind(&h, 17, 0, 0, 2, false, 0.0f);
}
END_TEST

START_TEST(grad_batch_norm)
{
    H h;
    h_kind(&h, "batch_norm");
    gc_kind(&h, 4, 0, 0, 5, true, 0.0f); /* [B, C] */
    h_kind(&h, "batch_norm");
    gc_kind(&h, 3, 4, 0, 3, true, 0.0f); /* [B, C, L] per channel over B*L */
    h_kind(&h, "batch_norm");
    gc_kind(&h, 2, 2, 2, 2, true, 0.0f); /* [B, C, H, W] */
    h_kind(&h, "batch_norm");
    h_set_int(&h, "affine", 0);
    gc_kind(&h, 4, 0, 0, 5, true, 0.0f);
    /* evaluation: running statistics are constants */
    h_kind(&h, "batch_norm");
    h_setup(&h, 4, 0, 0, 5, 7);
    for (int c = 0; c < 4; c++) {
        h.state[c] = 0.1f * (float)c;
        h.state[4 + c] = 0.5f + 0.25f * (float)c;
    }
    gradcheck(&h, 5, false, 0.0f, false, 5);
    h_free(&h);
}
END_TEST

START_TEST(grad_batch_norm_many_channels)
{
    /* more channels than one block of the implementation (256) */
    H h;
    h_kind(&h, "batch_norm");
    h_setup(&h, 300, 0, 0, 3, 7);
    gradcheck(&h, 3, true, 0.0f, false, 3);
    h_free(&h);
}
END_TEST

START_TEST(grad_embedding)
{
    H h;
    const char *pool[] = {"sum", "mean"};
    for (int p = 0; p < 2; p++) {
        h_kind(&h, "embedding");
        h_set_int(&h, "out", 3);
        h_set_int(&h, "num_embeddings", 6);
        h_set_string(&h, "pooling", pool[p]);
        h_setup(&h, 4, 0, 0, 5, 7);
        gradcheck(&h, 5, true, 0.0f, true, 11);
        h_free(&h);
    }
}
END_TEST

/* ---- forward values ---------------------------------------------------------------------- */

static void assert_close(const float *got, const double *want, size_t n, double tol,
                         const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - want[i]) <= tol * fmax(1.0, fabs(want[i])),
                      "%s[%zu] = %.9g, expected %.9g", what, i, got[i], want[i]);
}

START_TEST(linear_forward_2x3)
{
    H h;
    h_kind(&h, "linear");
    h_set_int(&h, "out", 2);
    h_setup(&h, 3, 0, 0, 2, 1);
    ck_assert_uint_eq(h.l.nparams, 8);
    const float W[6] = {1, 2, 3, -1, 0, 2}, b[2] = {0.5f, -1};
    memcpy(h.params, W, sizeof W);
    memcpy(h.params + 6, b, sizeof b);
    float x[6] = {1, 0, -1, 2, 1, 0.5f}, y[4];
    h_fwd(&h, x, y, 2, true, NULL);
    /* row 0: [1 + 0 - 3 + .5, -1 + 0 - 2 - 1]; row 1: [2 + 2 + 1.5 + .5, -2 + 0 + 1 - 1] */
    const double want[4] = {-1.5, -4, 6, -2};
    assert_close(y, want, 4, 1e-6, "y");
    /* backward with dy = [[1, 0], [0, 1]]: dW = dy^T x, db = [1, 1], dx = dy W */
    float dy[4] = {1, 0, 0, 1}, dx[6];
    h_bwd(&h, x, y, dy, dx, 2);
    const double dW[8] = {1, 0, -1, 2, 1, 0.5, 1, 1}, dxw[6] = {1, 2, 3, -1, 0, 2};
    assert_close(h.grads, dW, 8, 1e-6, "dparams");
    assert_close(dx, dxw, 6, 1e-6, "dx");
    h_free(&h);
}
END_TEST

START_TEST(layer_norm_forward_values)
{
    /* torch.nn.LayerNorm(4) with weight [1, 2, .5, -1], bias [0, .1, 1, -.5] */
    H h;
    h_kind(&h, "layer_norm");
    h_setup(&h, 4, 0, 0, 2, 1);
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq(h.params[i], 1.0f);
        ck_assert_float_eq(h.params[4 + i], 0.0f);
    }
    const float w[4] = {1, 2, 0.5f, -1}, b[4] = {0, 0.1f, 1, -0.5f};
    memcpy(h.params, w, sizeof w);
    memcpy(h.params + 4, b, sizeof b);
    float x[8] = {1, 2, 3, 4, -1, 0.5f, 0, 2}, y[8];
    h_fwd(&h, x, y, 2, false, NULL);
    const double want[8] = {-1.3416354656219482, -0.7944236993789673, 1.2236058712005615,
                            -1.8416354656219482, -1.270165205001831,  0.33093908429145813,
                            0.8267956376075745,  -2.0011043548583984};
    assert_close(y, want, 8, 2e-6, "y");
    h_free(&h);
}
END_TEST

START_TEST(batch_norm_train_values_and_running_stats)
{
    /* torch.nn.BatchNorm1d(3) in training mode, two steps; values from PyTorch */
    H h;
    h_kind(&h, "batch_norm");
    h_setup(&h, 3, 0, 0, 4, 1);
    ck_assert_uint_eq(h.l.nstate, 6);
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(h.state[c], 0.0f);
        ck_assert_float_eq(h.state[3 + c], 1.0f);
    }
    float x1[12] = {1, 2, 3, 3, -2, 0.5f, 2, 0, -1, 0, 4, 1.5f}, y1[12];
    float x2[6] = {0.5f, 1, 2, 1.5f, -1, 4}, y2[6];
    ck_assert_ok(mtli_layer_check_input(&h.l, x1, 4, true));
    h_fwd(&h, x1, y1, 4, true, NULL);
    const double want1[12] = {-0.4472118616104126, 0.44721314311027527, 1.3719854354858398,
                              1.3416353464126587,  -1.3416393995285034, -0.34299635887145996,
                              0.44721174240112305, -0.44721314311027527, -1.3719854354858398,
                              -1.3416354656219482, 1.3416393995285034,  0.34299635887145996};
    assert_close(y1, want1, 12, 2e-6, "y1");
    /* step 1 by the rule: batch mean [1.5, 1, 1], unbiased var [5/3, 20/3, 8.5/3] */
    const double rm1[3] = {0.15, 0.1, 0.1};
    const double rv1[3] = {0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 20.0 / 3.0, 0.9 + 0.1 * 8.5 / 3.0};
    assert_close(h.state, rm1, 3, 1e-6, "running_mean after 1 step");
    assert_close(h.state + 3, rv1, 3, 1e-6, "running_var after 1 step");
    h_fwd(&h, x2, y2, 2, true, NULL);
    const double rm2[3] = {0.23500001430511475, 0.08999999612569809, 0.39000001549720764};
    const double rv2[3] = {1.0099998712539673, 1.6099998950958252, 1.2649999856948853};
    assert_close(h.state, rm2, 3, 1e-6, "running_mean (PyTorch)");
    assert_close(h.state + 3, rv2, 3, 1e-6, "running_var (PyTorch)");
    /* momentum 0 keeps the running statistics, 1 replaces them */
    h_free(&h);
    h_kind(&h, "batch_norm");
    h_set_double(&h, "momentum", 1.0);
    h_setup(&h, 3, 0, 0, 4, 1);
    h_fwd(&h, x2, y2, 2, true, NULL);
    const double rmb[3] = {1.0, 0.0, 3.0}, rvb[3] = {0.5, 2.0, 2.0};
    assert_close(h.state, rmb, 3, 1e-7, "running_mean momentum 1");
    assert_close(h.state + 3, rvb, 3, 1e-7, "running_var momentum 1");
    h_free(&h);
}
END_TEST

START_TEST(batch_norm_eval_uses_running_stats)
{
    H h;
    h_kind(&h, "batch_norm");
    h_setup(&h, 3, 0, 0, 2, 1);
    const float w[3] = {2, 1, 0.5f}, b[3] = {0, 1, -1};
    const float rm[3] = {1, -1, 0.5f}, rv[3] = {4, 0.25f, 1};
    memcpy(h.params, w, sizeof w);
    memcpy(h.params + 3, b, sizeof b);
    memcpy(h.state, rm, sizeof rm);
    memcpy(h.state + 3, rv, sizeof rv);
    float x[6] = {0.5f, 1, 2, 1.5f, -1, 4}, y[6];
    ck_assert_ok(mtli_layer_check_input(&h.l, x, 1, false)); /* one sample is fine in eval */
    h_fwd(&h, x, y, 2, false, NULL);
    const double want[6] = {-0.49999940395355225, 4.999919891357422, -0.2500038146972656,
                            0.49999940395355225,  1.0,               0.7499911785125732};
    assert_close(y, want, 6, 2e-6, "y");
    /* evaluation does not touch the running statistics */
    ck_assert(memcmp(h.state, rm, sizeof rm) == 0 && memcmp(h.state + 3, rv, sizeof rv) == 0);
    h_free(&h);
}
END_TEST

START_TEST(batch_norm_per_channel_over_positions)
{
    /* [B, C, L] input: after training-mode forward each channel has mean 0 and (biased)
     * variance var/(var+eps) over all B*L values */
    H h;
    h_kind(&h, "batch_norm");
    h_setup(&h, 3, 5, 0, 4, 1);
    mtli_rng r;
    mtli_rng_seed(&r, 3);
    float x[60], y[60];
    fill_uniform(x, 60, -2, 3, &r);
    for (int i = 0; i < 60; i++)
        x[i] += (float)((i / 5) % 3); /* a different offset per channel */
    h_fwd(&h, x, y, 4, true, NULL);
    for (int c = 0; c < 3; c++) {
        double s = 0, q = 0, xs = 0, xq = 0;
        for (int b = 0; b < 4; b++)
            for (int t = 0; t < 5; t++) {
                double v = y[(b * 3 + c) * 5 + t], u = x[(b * 3 + c) * 5 + t];
                s += v;
                q += v * v;
                xs += u;
                xq += u * u;
            }
        double var = xq / 20 - (xs / 20) * (xs / 20);
        ck_assert_msg(fabs(s / 20) < 1e-6, "channel %d mean %g", c, s / 20);
        ck_assert_msg(fabs(q / 20 - var / (var + 1e-5)) < 1e-5, "channel %d var %g", c, q / 20);
        ck_assert_msg(fabs(h.state[c] - 0.1 * xs / 20) < 1e-6, "running mean %d", c);
        ck_assert_msg(fabs(h.state[3 + c] - (0.9 + 0.1 * var * 20 / 19)) < 1e-5,
                      "running var %d", c);
    }
    h_free(&h);
}
END_TEST

START_TEST(gelu_known_values)
{
    const float x[7] = {-3, -1, -0.5f, 0, 0.5f, 1, 2};
    const double exact[7] = {-0.00404969409489031, -0.15865525393145702, -0.15426876936299344,
                             0.0, 0.34573123063700656, 0.841344746068543, 1.9544997361036416};
    const double approx[7] = {-0.0036373920817729943, -0.15880800939172324,
                              -0.15428599017485606,   0.0, 0.34571400982514394,
                              0.8411919906082768,     1.954597694087775};
    float y[7];
    H h;
    h_kind(&h, "gelu");
    h_setup(&h, 7, 0, 0, 1, 1);
    h_fwd(&h, x, y, 1, true, NULL);
    assert_close(y, exact, 7, 1e-6, "gelu");
    h_free(&h);
    h_kind(&h, "gelu");
    h_set_string(&h, "approximate", "tanh");
    h_setup(&h, 7, 0, 0, 1, 1);
    h_fwd(&h, x, y, 1, true, NULL);
    assert_close(y, approx, 7, 1e-6, "gelu tanh");
    h_free(&h);
}
END_TEST

START_TEST(activation_values)
{
    const float x[5] = {-100, -1, 0, 0.5f, 100};
    float y[5];
    struct {
        const char *kind;
        double want[5];
    } c[] = {
        {"relu", {0, 0, 0, 0.5, 100}},
        {"leaky_relu", {-1, -0.01, 0, 0.5, 100}},
        {"tanh", {-1, -0.7615941559557649, 0, 0.46211715726000974, 1}},
        {"sigmoid", {0, 0.2689414213699951, 0.5, 0.6224593312018546, 1}},
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        H h;
        h_kind(&h, c[k].kind);
        h_setup(&h, 5, 0, 0, 1, 1);
        h_fwd(&h, x, y, 1, true, NULL);
        assert_close(y, c[k].want, 5, 1e-6, c[k].kind);
        for (int i = 0; i < 5; i++)
            ck_assert(isfinite(y[i]));
        h_free(&h);
    }
}
END_TEST

START_TEST(embedding_sum_mean_padding)
{
    const char *pool[] = {"sum", "mean"};
    for (int p = 0; p < 2; p++) {
        H h;
        h_kind(&h, "embedding");
        h_set_int(&h, "out", 2);
        h_set_int(&h, "num_embeddings", 4);
        h_set_string(&h, "pooling", pool[p]);
        h_setup(&h, 3, 0, 0, 3, 1);
        ck_assert_uint_eq(h.l.out_features, 2);
        ck_assert_uint_eq(h.l.nparams, 8);
        const float W[8] = {1, 2, 10, 20, 100, 200, -1, -3};
        memcpy(h.params, W, sizeof W);
        /* bags: {0, 2, -1}, {3, 3, 1}, {-1, -1, -1} */
        float x[9], y[6];
        const int32_t ids[9] = {0, 2, -1, 3, 3, 1, -1, -1, -1};
        for (int i = 0; i < 9; i++)
            put_id(x, (size_t)i, ids[i]);
        ck_assert_ok(mtli_embedding_check_ids(&h.l, ids, 3));
        ck_assert_ok(mtli_layer_check_input(&h.l, x, 3, true));
        h_fwd(&h, x, y, 3, true, NULL);
        const double sum[6] = {101, 202, 8, 14, 0, 0};
        const double mean[6] = {50.5, 101, 8.0 / 3, 14.0 / 3, 0, 0};
        assert_close(y, p ? mean : sum, 6, 1e-6, pool[p]);
        /* backward scatters dy (divided by the bag's count for mean) into the rows */
        float dy[6] = {1, 2, 3, 6, 5, 5};
        h_bwd(&h, x, y, dy, NULL, 3);
        const double gsum[8] = {1, 2, 3, 6, 1, 2, 6, 12};
        const double gmean[8] = {0.5, 1, 1, 2, 0.5, 1, 2, 4};
        assert_close(h.grads, p ? gmean : gsum, 8, 1e-6, "dweight");
        h_free(&h);
    }
}
END_TEST

START_TEST(embedding_default_pooling_is_mean)
{
    mtli_layer_opts o;
    mtli_layer_opts_default(&o);
    ck_assert_int_eq(o.pooling, 1);
}
END_TEST

START_TEST(embedding_rejects_bad_ids)
{
    H h;
    h_kind(&h, "embedding");
    h_set_int(&h, "out", 2);
    h_set_int(&h, "num_embeddings", 5);
    h_setup(&h, 2, 0, 0, 2, 1);
    int32_t ids[4] = {0, 4, -1, 5};
    ck_assert_status(mtli_embedding_check_ids(&h.l, ids, 2), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "sample 1"));
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "id 5"));
    ids[3] = -2;
    float x[4];
    for (int i = 0; i < 4; i++)
        put_id(x, (size_t)i, ids[i]);
    ck_assert_status(mtli_layer_check_input(&h.l, x, 2, false), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "id -2"));
    ck_assert_ok(mtli_embedding_check_ids(&h.l, ids, 1));
    /* forward skips them rather than reading out of bounds */
    float y[4];
    put_id(x, 3, 1000000);
    h_fwd(&h, x, y, 2, true, NULL);
    ck_assert(isfinite(y[2]) && isfinite(y[3]));
    /* the check is only for embedding layers */
    H r;
    h_kind(&r, "relu");
    h_setup(&r, 2, 0, 0, 1, 1);
    ck_assert_status(mtli_embedding_check_ids(&r.l, ids, 1), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "relu"));
    ck_assert_ok(mtli_layer_check_input(&r.l, x, 1, true));
    h_free(&r);
    h_free(&h);
}
END_TEST

START_TEST(batch_norm_needs_two_values_in_training)
{
    H h;
    h_kind(&h, "batch_norm");
    h_setup(&h, 3, 0, 0, 2, 1);
    float x[6] = {0};
    ck_assert_status(mtli_layer_check_input(&h.l, x, 1, true), MTL_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "more than 1 value per channel"));
    ck_assert_ok(mtli_layer_check_input(&h.l, x, 2, true));
    ck_assert_ok(mtli_layer_check_input(&h.l, x, 1, false));
    h_free(&h);
    h_kind(&h, "batch_norm"); /* [C, L] with L > 1: one sample is enough */
    h_setup(&h, 3, 2, 0, 1, 1);
    ck_assert_ok(mtli_layer_check_input(&h.l, x, 1, true));
    h_free(&h);
}
END_TEST

/* ---- dropout ----------------------------------------------------------------------------- */

START_TEST(dropout_eval_identity_train_scales)
{
    H h;
    h_kind(&h, "dropout");
    h_set_double(&h, "p", 0.3);
    const size_t F = 1000, B = 100, n = F * B;
    h_setup(&h, (int64_t)F, 0, 0, B, 1);
    ck_assert_uint_ge(h.l.ops->scratch_floats(&h.l, B), n);
    float *x = fvec(n), *y = fvec(n), *dy = fvec(n), *dx = fvec(n);
    mtli_rng r;
    mtli_rng_seed(&r, 5);
    fill_uniform(x, n, 0.5f, 2.0f, &r);
    fill_uniform(dy, n, -1.0f, 1.0f, &r);

    h_fwd(&h, x, y, B, false, &r);
    ck_assert(memcmp(x, y, n * sizeof(float)) == 0);
    h_bwd(&h, x, y, dy, dx, B);
    ck_assert(memcmp(dx, dy, n * sizeof(float)) == 0);

    h_fwd(&h, x, y, B, true, &r);
    h_bwd(&h, x, y, dy, dx, B);
    size_t zeros = 0;
    const float scale = (float)(1.0 / 0.7);
    for (size_t i = 0; i < n; i++) {
        if (y[i] == 0.0f) {
            zeros++;
            ck_assert(dx[i] == 0.0f);
        } else {
            ck_assert_msg(y[i] == x[i] * scale, "kept value %zu not scaled by 1/(1-p)", i);
            ck_assert(dx[i] == dy[i] * scale);
        }
    }
    double frac = (double)zeros / (double)n; /* std of the fraction ~0.0015 */
    ck_assert_msg(fabs(frac - 0.3) < 0.01, "dropped fraction %g, expected 0.3", frac);
    /* the expectation is preserved: mean(y) ~ mean(x) */
    double sx = 0, sy = 0;
    for (size_t i = 0; i < n; i++) {
        sx += x[i];
        sy += y[i];
    }
    ck_assert_msg(fabs(sy / sx - 1.0) < 0.02, "mean ratio %g", sy / sx);

    /* p = 0 in training is the identity, as is a missing rng */
    h_free(&h);
    h_kind(&h, "dropout");
    h_set_double(&h, "p", 0.0);
    h_setup(&h, (int64_t)F, 0, 0, B, 1);
    h_fwd(&h, x, y, B, true, &r);
    ck_assert(memcmp(x, y, n * sizeof(float)) == 0);
    h_free(&h);
    free(x);
    free(y);
    free(dy);
    free(dx);
}
END_TEST

START_TEST(dropout_same_rng_same_mask)
{
    H h;
    h_kind(&h, "dropout");
    h_setup(&h, 64, 0, 0, 8, 1);
    float x[512], y1[512], y2[512];
    for (int i = 0; i < 512; i++)
        x[i] = 1.0f;
    mtli_rng a, b;
    mtli_rng_seed(&a, 77);
    b = a;
    h_fwd(&h, x, y1, 8, true, &a);
    h_fwd(&h, x, y2, 8, true, &b);
    ck_assert(memcmp(y1, y2, sizeof y1) == 0);
    h_fwd(&h, x, y2, 8, true, &b); /* the rng advanced: a new mask */
    ck_assert(memcmp(y1, y2, sizeof y1) != 0);
    h_free(&h);
}
END_TEST

/* ---- initialisation ---------------------------------------------------------------------- */

static void moments(const float *p, size_t n, double *mean, double *std, double *maxabs)
{
    double s = 0, q = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        s += p[i];
        q += (double)p[i] * p[i];
        m = fmax(m, fabs(p[i]));
    }
    *mean = s / (double)n;
    *std = sqrt(q / (double)n - *mean * *mean);
    *maxabs = m;
}

/* Linear [out=300, in=400]: weight spread (bound or std) and bias bound. */
static void check_linear_init(const char *init, double gain, double want_std, double bound)
{
    H h;
    h_kind(&h, "linear");
    h_set_int(&h, "out", 300);
    if (init)
        h_set_string(&h, "init", init);
    h_set_double(&h, "gain", gain);
    h_setup(&h, 400, 0, 0, 1, 2024);
    double mean, std, maxabs;
    moments(h.params, 120000, &mean, &std, &maxabs);
    ck_assert_msg(fabs(std / want_std - 1.0) < 0.05, "%s: std %g, expected %g",
                  init ? init : "default", std, want_std);
    ck_assert_msg(fabs(mean) < 0.05 * want_std, "%s: mean %g", init ? init : "default", mean);
    if (bound > 0)
        ck_assert_msg(maxabs <= bound && maxabs > 0.99 * bound, "%s: max |w| %g, bound %g",
                      init ? init : "default", maxabs, bound);
    /* bias: PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    double bm, bs, bmax;
    moments(h.params + 120000, 300, &bm, &bs, &bmax);
    ck_assert(bmax <= 1.0 / 20.0 && bmax > 0.9 / 20.0);
    h_free(&h);
}

START_TEST(init_distributions)
{
    const double fi = 400, fo = 300;
    /* nn.Linear default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    check_linear_init(NULL, 1.0, 1.0 / sqrt(fi) / sqrt(3.0), 1.0 / sqrt(fi));
    check_linear_init("kaiming_uniform", 2.0, 2.0 / sqrt(fi) / sqrt(3.0), 2.0 / sqrt(fi));
    check_linear_init("kaiming_normal", 1.0, sqrt(2.0 / fi), 0);
    check_linear_init("kaiming_normal", 0.5, 0.5 * sqrt(2.0 / fi), 0);
    check_linear_init("xavier_uniform", 1.0, sqrt(6.0 / (fi + fo)) / sqrt(3.0),
                      sqrt(6.0 / (fi + fo)));
    check_linear_init("xavier_normal", 1.5, 1.5 * sqrt(2.0 / (fi + fo)), 0);

    H h;
    h_kind(&h, "linear");
    h_set_int(&h, "out", 300);
    h_set_string(&h, "init", "normal");
    h_set_double(&h, "std", 0.02);
    h_set_string(&h, "bias_init", "zeros");
    h_setup(&h, 400, 0, 0, 1, 9);
    double mean, std, maxabs;
    moments(h.params, 120000, &mean, &std, &maxabs);
    ck_assert_msg(fabs(std / 0.02 - 1.0) < 0.05, "normal std %g", std);
    for (size_t i = 120000; i < 120300; i++)
        ck_assert_float_eq(h.params[i], 0.0f);
    h_free(&h);

    h_kind(&h, "linear");
    h_set_int(&h, "out", 3);
    h_set_string(&h, "init", "ones");
    h_set_string(&h, "bias_init", "ones");
    h_setup(&h, 4, 0, 0, 1, 9);
    for (size_t i = 0; i < h.l.nparams; i++)
        ck_assert_float_eq(h.params[i], 1.0f);
    h_free(&h);

    /* embedding default: N(0, 1) as nn.Embedding */
    h_kind(&h, "embedding");
    h_set_int(&h, "out", 100);
    h_set_int(&h, "num_embeddings", 1000);
    h_setup(&h, 1, 0, 0, 1, 9);
    moments(h.params, 100000, &mean, &std, &maxabs);
    ck_assert_msg(fabs(std - 1.0) < 0.05 && fabs(mean) < 0.05, "embedding N(0,1): %g %g",
                  mean, std);
    h_free(&h);
}
END_TEST

START_TEST(init_fill_direct)
{
    mtli_rng r;
    mtli_rng_seed(&r, 1);
    float p[4000];
    mtli_init_fill(p, 4000, MTLI_INIT_BIAS_UNIFORM, 16, 8, 3.0, 0.0, &r);
    for (int i = 0; i < 4000; i++)
        ck_assert(fabsf(p[i]) <= 0.25f);
    mtli_init_fill(p, 4000, MTLI_INIT_KAIMING_UNIFORM, 0, 8, 1.0, 0.0, &r); /* no fan: zeros */
    for (int i = 0; i < 4000; i++)
        ck_assert_float_eq(p[i], 0.0f);
    mtli_init_fill(p, 4000, MTLI_INIT_ZEROS, 1, 1, 1.0, 0.0, &r);
    ck_assert_float_eq(p[17], 0.0f);
    mtli_init_fill(NULL, 0, MTLI_INIT_NORMAL, 1, 1, 1.0, 1.0, &r); /* nothing to do */
}
END_TEST

START_TEST(init_same_seed_same_params)
{
    const char *kinds[] = {"linear", "embedding", "layer_norm", "batch_norm"};
    for (size_t k = 0; k < 4; k++) {
        H a, b, c;
        H *hs[3] = {&a, &b, &c};
        for (int i = 0; i < 3; i++) {
            h_kind(hs[i], kinds[k]);
            if (k < 2)
                h_set_int(hs[i], "out", 7);
            if (k == 1)
                h_set_int(hs[i], "num_embeddings", 11);
            h_setup(hs[i], 5, 0, 0, 1, i == 2 ? 43 : 42);
        }
        size_t n = a.l.nparams;
        ck_assert(memcmp(a.params, b.params, n * sizeof(float)) == 0);
        ck_assert(memcmp(a.state, b.state, a.l.nstate * sizeof(float)) == 0);
        if (k < 2)
            ck_assert(memcmp(a.params, c.params, n * sizeof(float)) != 0);
        for (int i = 0; i < 3; i++)
            h_free(hs[i]);
    }
}
END_TEST

/* ---- determinism, accumulation ------------------------------------------------------------ */

typedef struct {
    const char *kind;
    int64_t out, num;
    int64_t d0, d1;
    bool ids;
} kind_case;

static const kind_case all_kinds[] = {
    {"linear", 4, 0, 6, 0, false},     {"relu", 0, 0, 6, 0, false},
    {"leaky_relu", 0, 0, 6, 0, false}, {"gelu", 0, 0, 6, 0, false},
    {"tanh", 0, 0, 6, 0, false},       {"sigmoid", 0, 0, 6, 0, false},
    {"dropout", 0, 0, 6, 0, false},    {"layer_norm", 0, 0, 3, 2, false},
    {"batch_norm", 0, 0, 3, 2, false}, {"embedding", 4, 9, 3, 0, true},
};
#define NKINDS (sizeof all_kinds / sizeof all_kinds[0])

static void setup_case(H *h, const kind_case *c, size_t B, uint64_t seed)
{
    h_kind(h, c->kind);
    if (c->out)
        h_set_int(h, "out", c->out);
    if (c->num)
        h_set_int(h, "num_embeddings", c->num);
    h_setup(h, c->d0, c->d1, 0, B, seed);
}

static void make_input(const H *h, const kind_case *c, float *x, size_t B, mtli_rng *r)
{
    size_t n = in_n(h, B);
    if (c->ids) {
        for (size_t i = 0; i < n; i++)
            put_id(x, i, (int32_t)mtli_rng_below(r, (uint64_t)c->num + 1) - 1);
    } else {
        fill_uniform(x, n, -2, 2, r);
    }
}

START_TEST(every_kind_registered_and_deterministic)
{
    for (size_t k = 0; mtli_layer_kind_at(k); k++)
        ck_assert_ptr_eq(mtli_layer_find(mtli_layer_kind_at(k)),
                         mtli_layer_find(all_kinds[k].kind));
    ck_assert_ptr_nonnull(mtli_layer_kind_at(NKINDS - 1));
    ck_assert_ptr_null(mtli_layer_kind_at(NKINDS));
    const size_t B = 5;
    for (size_t k = 0; k < NKINDS; k++) {
        H h[2];
        float *x = fvec(64), *y[2], *dy = fvec(64), *dx[2];
        mtli_rng r;
        mtli_rng_seed(&r, 1);
        for (int t = 0; t < 2; t++) {
            setup_case(&h[t], &all_kinds[k], B, 5);
            y[t] = fvec(out_n(&h[t], B));
            dx[t] = fvec(in_n(&h[t], B));
        }
        make_input(&h[0], &all_kinds[k], x, B, &r);
        fill_uniform(dy, out_n(&h[0], B), -1, 1, &r);
        for (int t = 0; t < 2; t++) {
            mtli_rng fr;
            mtli_rng_seed(&fr, 8);
            h_fwd(&h[t], x, y[t], B, true, &fr);
            h_bwd(&h[t], x, y[t], dy, all_kinds[k].ids ? NULL : dx[t], B);
        }
        ck_assert(memcmp(y[0], y[1], out_n(&h[0], B) * sizeof(float)) == 0);
        ck_assert(memcmp(dx[0], dx[1], in_n(&h[0], B) * sizeof(float)) == 0);
        ck_assert(memcmp(h[0].grads, h[1].grads, h[0].l.nparams * sizeof(float)) == 0);
        ck_assert(memcmp(h[0].state, h[1].state, h[0].l.nstate * sizeof(float)) == 0);
        for (int t = 0; t < 2; t++) {
            free(y[t]);
            free(dx[t]);
            h_free(&h[t]);
        }
        free(x);
        free(dy);
    }
}
END_TEST

START_TEST(backward_accumulates_params_overwrites_dx)
{
    const size_t B = 4;
    for (size_t k = 0; k < NKINDS; k++) {
        H h;
        setup_case(&h, &all_kinds[k], B, 5);
        size_t nin = in_n(&h, B), nout = out_n(&h, B), np = h.l.nparams;
        float *x = fvec(nin), *y = fvec(nout), *dy = fvec(nout), *dx = fvec(nin),
              *dx2 = fvec(nin), *g1 = fvec(np);
        mtli_rng r;
        mtli_rng_seed(&r, 3);
        make_input(&h, &all_kinds[k], x, B, &r);
        fill_uniform(dy, nout, -1, 1, &r);
        fill_uniform(h.params, np, -1, 1, &r);
        h_fwd(&h, x, y, B, true, &r);
        bool ids = all_kinds[k].ids;
        h_bwd(&h, x, y, dy, ids ? NULL : dx, B);
        memcpy(g1, h.grads, np * sizeof(float));
        for (size_t i = 0; i < nin; i++)
            dx2[i] = 1e6f; /* garbage that must be overwritten */
        h_bwd(&h, x, y, dy, ids ? NULL : dx2, B);
        for (size_t i = 0; i < np; i++)
            ck_assert_msg(fabsf(h.grads[i] - 2.0f * g1[i]) <= 1e-6f * fabsf(g1[i]) + 1e-12f,
                          "%s: grad %zu after two backwards %g, once %g", all_kinds[k].kind, i,
                          h.grads[i], g1[i]);
        if (!ids)
            ck_assert_msg(memcmp(dx, dx2, nin * sizeof(float)) == 0, "%s: dx not overwritten",
                          all_kinds[k].kind);
        /* dx == NULL: parameter gradients only */
        h_bwd(&h, x, y, dy, NULL, B);
        for (size_t i = 0; i < np; i++)
            ck_assert(fabsf(h.grads[i] - 3.0f * g1[i]) <= 1e-5f * fabsf(g1[i]) + 1e-12f);
        free(x);
        free(y);
        free(dy);
        free(dx);
        free(dx2);
        free(g1);
        h_free(&h);
    }
}
END_TEST

START_TEST(elementwise_in_place)
{
    /* relu/tanh/sigmoid/dropout may run with y == x and dx == dy */
    const char *kinds[] = {"relu", "tanh", "sigmoid", "dropout"};
    for (size_t k = 0; k < 4; k++) {
        H h;
        h_kind(&h, kinds[k]);
        h_setup(&h, 16, 0, 0, 4, 1);
        float x[64], y[64], buf[64], dy[64], dx[64], g[64];
        mtli_rng r, r1, r2;
        mtli_rng_seed(&r, 2);
        fill_uniform(x, 64, -2, 2, &r);
        fill_uniform(dy, 64, -1, 1, &r);
        memcpy(buf, x, sizeof x);
        memcpy(g, dy, sizeof dy);
        mtli_rng_seed(&r1, 4);
        r2 = r1;
        h_fwd(&h, x, y, 4, true, &r1);
        h_bwd(&h, x, y, dy, dx, 4);
        h_fwd(&h, buf, buf, 4, true, &r2);
        h_bwd(&h, NULL, buf, g, g, 4);
        ck_assert(memcmp(y, buf, sizeof y) == 0);
        ck_assert(memcmp(dx, g, sizeof dx) == 0);
        h_free(&h);
    }
}
END_TEST

/* ---- descriptors and shapes -------------------------------------------------------------- */

START_TEST(param_descs_and_shapes)
{
    H h;
    h_kind(&h, "linear");
    h_set_int(&h, "out", 5);
    h_setup(&h, 2, 3, 4, 1, 1);
    ck_assert_uint_eq(h.l.in_features, 24);
    ck_assert_int_eq(h.l.out_ndim, 1);
    ck_assert_int_eq(h.l.out_dims[0], 5);
    ck_assert_uint_eq(h.l.out_features, 5);
    ck_assert_int_eq(h.l.ndesc, 2);
    ck_assert_str_eq(h.l.desc[0].name, "weight");
    ck_assert_int_eq(h.l.desc[0].shape[0], 5);
    ck_assert_int_eq(h.l.desc[0].shape[1], 24);
    ck_assert_uint_eq(h.l.desc[0].offset, 0);
    ck_assert(!h.l.desc[0].no_decay && !h.l.desc[0].is_state);
    ck_assert_str_eq(h.l.desc[1].name, "bias");
    ck_assert_uint_eq(h.l.desc[1].offset, 120);
    ck_assert_uint_eq(h.l.desc[1].count, 5);
    ck_assert(h.l.desc[1].no_decay);
    ck_assert_uint_eq(h.l.nparams, 125);
    h_free(&h);

    h_kind(&h, "batch_norm");
    h_setup(&h, 3, 4, 0, 1, 1);
    ck_assert_int_eq(h.l.out_ndim, 2);
    ck_assert_int_eq(h.l.out_dims[1], 4);
    ck_assert_int_eq(h.l.ndesc, 4);
    const char *names[] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(h.l.desc[i].name, names[i]);
        ck_assert_int_eq(h.l.desc[i].shape[0], 3);
        ck_assert(h.l.desc[i].is_state == (i >= 2));
        ck_assert_uint_eq(h.l.desc[i].offset, (size_t)(i % 2) * 3);
    }
    ck_assert(h.l.desc[0].no_decay && h.l.desc[1].no_decay);
    ck_assert_uint_eq(h.l.nparams, 6);
    ck_assert_uint_eq(h.l.nstate, 6);
    h_free(&h);

    h_kind(&h, "batch_norm");
    h_set_int(&h, "affine", 0);
    h_setup(&h, 3, 0, 0, 1, 1);
    ck_assert_uint_eq(h.l.nparams, 0);
    ck_assert_uint_eq(h.l.nstate, 6);
    h_free(&h);

    h_kind(&h, "layer_norm");
    h_setup(&h, 2, 3, 0, 1, 1);
    ck_assert_int_eq(h.l.desc[0].ndim, 2);
    ck_assert_int_eq(h.l.desc[0].shape[1], 3);
    ck_assert_uint_eq(h.l.desc[1].offset, 6);
    ck_assert(h.l.desc[0].no_decay && h.l.desc[1].no_decay);
    h_free(&h);

    h_kind(&h, "embedding");
    h_set_int(&h, "out", 8);
    h_set_int(&h, "num_embeddings", 100);
    h_setup(&h, 5, 0, 0, 1, 1);
    ck_assert_str_eq(h.l.desc[0].name, "weight");
    ck_assert_int_eq(h.l.desc[0].shape[0], 100);
    ck_assert_int_eq(h.l.desc[0].shape[1], 8);
    ck_assert_uint_eq(h.l.in_features, 5);
    ck_assert_uint_eq(h.l.out_features, 8);
    h_free(&h);

    h_kind(&h, "gelu");
    h_setup(&h, 2, 3, 4, 1, 1);
    ck_assert_int_eq(h.l.out_ndim, 3);
    ck_assert_int_eq(h.l.out_dims[2], 4);
    ck_assert_uint_eq(h.l.out_features, 24);
    ck_assert_uint_eq(h.l.nparams, 0);
    h_free(&h);
}
END_TEST

/* ---- option and setup errors ------------------------------------------------------------- */

#define ck_assert_err(expr, status, sub)                                                      \
    do {                                                                                     \
        ck_assert_status(expr, status);                                                      \
        ck_assert_msg(strstr(mtl_last_error(), sub) != NULL, "message '%s' lacks '%s'",      \
                      mtl_last_error(), sub);                                                \
    } while (0)

START_TEST(option_errors)
{
    ck_assert_ptr_null(mtli_layer_find("conv9"));
    ck_assert_ptr_null(mtli_layer_find(NULL));
    const mtli_layer_ops *found = NULL;
    ck_assert_err(mtli_layer_lookup("conv9", &found), MTL_ERR_INVALID_ARGUMENT,
                  "unknown layer kind 'conv9'");
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "batch_norm"));
    ck_assert_ptr_null(found);
    ck_assert_err(mtli_layer_lookup(NULL, &found), MTL_ERR_INVALID_ARGUMENT, "kind");
    ck_assert_ok(mtli_layer_lookup("gelu", &found));
    ck_assert_str_eq(found->kind, "gelu");
    const mtli_layer_ops *lin = mtli_layer_find("linear"), *relu = mtli_layer_find("relu"),
                         *drop = mtli_layer_find("dropout"), *bn = mtli_layer_find("batch_norm"),
                         *ln = mtli_layer_find("layer_norm"), *emb = mtli_layer_find("embedding"),
                         *gelu = mtli_layer_find("gelu"), *lrelu = mtli_layer_find("leaky_relu");
    mtli_layer_opts o;
    mtli_layer_opts_default(&o);

    ck_assert_err(mtli_layer_set_int(NULL, &o, "out", 3), MTL_ERR_INVALID_ARGUMENT, "ops");
    ck_assert_err(mtli_layer_set_int(lin, NULL, "out", 3), MTL_ERR_INVALID_ARGUMENT, "'o'");
    ck_assert_err(mtli_layer_set_int(lin, &o, NULL, 3), MTL_ERR_INVALID_ARGUMENT, "key");
    ck_assert_err(mtli_layer_set_string(lin, &o, "init", NULL), MTL_ERR_INVALID_ARGUMENT, "'v'");
    ck_assert_err(mtli_layer_set_int(lin, &o, "outt", 3), MTL_ERR_INVALID_ARGUMENT,
                  "unknown layer option 'outt' for kind 'linear'");
    ck_assert_err(mtli_layer_set_double(relu, &o, "p", 0.1), MTL_ERR_INVALID_ARGUMENT,
                  "'p' is not used by kind 'relu'");
    ck_assert_err(mtli_layer_set_int(drop, &o, "out", 3), MTL_ERR_INVALID_ARGUMENT,
                  "'out' is not used by kind 'dropout'");
    ck_assert_err(mtli_layer_set_string(lin, &o, "approximate", "tanh"),
                  MTL_ERR_INVALID_ARGUMENT, "kind 'linear'");

    ck_assert_err(mtli_layer_set_double(drop, &o, "p", 1.0), MTL_ERR_RANGE, "'p'");
    ck_assert_err(mtli_layer_set_double(drop, &o, "p", -0.1), MTL_ERR_RANGE, "[0, 1)");
    ck_assert_err(mtli_layer_set_double(drop, &o, "p", NAN), MTL_ERR_RANGE, "'p'");
    ck_assert_err(mtli_layer_set_double(bn, &o, "eps", 0.0), MTL_ERR_RANGE, "'eps'");
    ck_assert_err(mtli_layer_set_double(ln, &o, "eps", INFINITY), MTL_ERR_RANGE, "'eps'");
    ck_assert_err(mtli_layer_set_double(bn, &o, "momentum", 1.5), MTL_ERR_RANGE, "'momentum'");
    ck_assert_err(mtli_layer_set_int(lin, &o, "out", 0), MTL_ERR_RANGE, "'out'");
    ck_assert_err(mtli_layer_set_int(emb, &o, "num_embeddings", -4), MTL_ERR_RANGE, "-4");
    ck_assert_err(mtli_layer_set_int(lin, &o, "bias", 2), MTL_ERR_RANGE, "'bias'");
    ck_assert_err(mtli_layer_set_int(bn, &o, "affine", -1), MTL_ERR_RANGE, "'affine'");
    ck_assert_err(mtli_layer_set_double(lin, &o, "std", -1.0), MTL_ERR_RANGE, "'std'");
    ck_assert_err(mtli_layer_set_double(lin, &o, "gain", NAN), MTL_ERR_RANGE, "'gain'");
    ck_assert_err(mtli_layer_set_double(lrelu, &o, "slope", INFINITY), MTL_ERR_RANGE, "'slope'");
    ck_assert_err(mtli_layer_set_double(lin, &o, "out", 2.5), MTL_ERR_RANGE, "integer");
    ck_assert_err(mtli_layer_set_string(emb, &o, "pooling", "max"), MTL_ERR_INVALID_ARGUMENT,
                  "'max'");
    ck_assert_err(mtli_layer_set_string(gelu, &o, "approximate", "erf"),
                  MTL_ERR_INVALID_ARGUMENT, "'erf'");
    ck_assert_err(mtli_layer_set_string(lin, &o, "init", "he"), MTL_ERR_INVALID_ARGUMENT,
                  "unknown initialisation 'he'");
    ck_assert_err(mtli_layer_set_string(lin, &o, "bias_init", "xavier"),
                  MTL_ERR_INVALID_ARGUMENT, "'bias_init'");
    ck_assert_err(mtli_layer_set_string(lin, &o, "out", "3"), MTL_ERR_INVALID_ARGUMENT,
                  "takes a number");
    ck_assert_err(mtli_layer_set_int(emb, &o, "pooling", 1), MTL_ERR_INVALID_ARGUMENT,
                  "takes a string");

    /* nothing was changed by the failures */
    mtli_layer_opts d;
    mtli_layer_opts_default(&d);
    ck_assert(memcmp(&o, &d, sizeof o) == 0);

    /* typed conversions that are fine */
    ck_assert_ok(mtli_layer_set_double(lin, &o, "out", 16.0));
    ck_assert_int_eq(o.out, 16);
    ck_assert_ok(mtli_layer_set_int(drop, &o, "p", 0));
    ck_assert(o.p == 0.0);
    ck_assert_ok(mtli_layer_set_string(lin, &o, "init", "xavier_normal"));
    ck_assert_int_eq(o.weight_init, MTLI_INIT_XAVIER_NORMAL);
    ck_assert_ok(mtli_layer_set_string(lin, &o, "bias_init", "default"));
    ck_assert_int_eq(o.bias_init, MTLI_INIT_DEFAULT);
    ck_assert_ok(mtli_layer_set_int(lin, &o, "bias", 0));
    ck_assert_int_eq(o.bias, 0);
    ck_assert_ok(mtli_layer_set_string(emb, &o, "pooling", "sum"));
    ck_assert_int_eq(o.pooling, 0);
    ck_assert_ok(mtli_layer_set_string(gelu, &o, "approximate", "tanh"));
    ck_assert_int_eq(o.gelu_tanh, 1);

    ck_assert_int_eq(mtli_layer_key_type(lin, "out"), MTLI_KEY_INT);
    ck_assert_int_eq(mtli_layer_key_type(lin, "p"), MTLI_KEY_NONE);
    ck_assert_int_eq(mtli_layer_key_type(bn, "momentum"), MTLI_KEY_DOUBLE);
    ck_assert_int_eq(mtli_layer_key_type(emb, "pooling"), MTLI_KEY_STRING);
    ck_assert_str_eq(mtli_layer_key_at(bn, 1), "momentum");
    ck_assert_ptr_null(mtli_layer_key_at(bn, 3));
    ck_assert_ptr_null(mtli_layer_key_at(relu, 0));
    /* every key a kind lists has a type and is accepted by the matching setter */
    for (size_t k = 0; mtli_layer_kind_at(k); k++) {
        const mtli_layer_ops *ops = mtli_layer_find(mtli_layer_kind_at(k));
        for (size_t i = 0; mtli_layer_key_at(ops, i); i++) {
            const char *key = mtli_layer_key_at(ops, i);
            mtli_layer_opts t;
            mtli_layer_opts_default(&t);
            mtli_key_type ty = mtli_layer_key_type(ops, key);
            ck_assert_int_ne(ty, MTLI_KEY_NONE);
            if (ty == MTLI_KEY_STRING)
                ck_assert_ok(mtli_layer_set_string(ops, &t, key,
                                                   strcmp(key, "pooling") == 0       ? "sum"
                                                   : strcmp(key, "approximate") == 0 ? "tanh"
                                                                                     : "zeros"));
            else if (ty == MTLI_KEY_DOUBLE)
                ck_assert_ok(mtli_layer_set_double(ops, &t, key, 0.5));
            else
                ck_assert_ok(mtli_layer_set_int(ops, &t, key, 1));
        }
    }

    /* defaults as PyTorch's */
    mtli_layer_opts_default(&d);
    ck_assert(d.p == 0.5 && d.slope == 0.01 && d.eps == 1e-5 && d.momentum == 0.1);
    ck_assert(d.bias == 1 && d.affine == 1 && d.gelu_tanh == 0);
}
END_TEST

START_TEST(setup_errors)
{
    mtli_layer l;
    memset(&l, 0, sizeof l);
    l.ops = mtli_layer_find("linear");
    mtli_layer_opts_default(&l.opts);
    l.in_ndim = 1;
    l.in_dims[0] = 4;
    ck_assert_err(l.ops->setup(&l), MTL_ERR_INVALID_ARGUMENT, "linear: option 'out'");
    l.opts.out = 3;
    l.in_ndim = 0;
    ck_assert_err(l.ops->setup(&l), MTL_ERR_SHAPE, "0 dimensions");
    l.in_ndim = 4;
    ck_assert_err(l.ops->setup(&l), MTL_ERR_SHAPE, "linear: input has 4 dimensions");
    l.in_ndim = 2;
    l.in_dims[1] = 0;
    ck_assert_err(l.ops->setup(&l), MTL_ERR_SHAPE, "dimension 1 is 0");
    l.in_dims[0] = INT64_MAX;
    l.in_dims[1] = INT64_MAX;
    ck_assert_err(l.ops->setup(&l), MTL_ERR_RANGE, "too large");
    l.in_ndim = 1;
    l.in_dims[0] = 4;
    ck_assert_ok(l.ops->setup(&l));

    memset(&l, 0, sizeof l);
    l.ops = mtli_layer_find("embedding");
    mtli_layer_opts_default(&l.opts);
    l.in_ndim = 1;
    l.in_dims[0] = 2;
    l.opts.out = 4;
    ck_assert_err(l.ops->setup(&l), MTL_ERR_INVALID_ARGUMENT, "'num_embeddings'");
    l.opts.num_embeddings = 10;
    l.opts.out = 0;
    ck_assert_err(l.ops->setup(&l), MTL_ERR_INVALID_ARGUMENT, "embedding: option 'out'");

    memset(&l, 0, sizeof l);
    l.ops = mtli_layer_find("dropout");
    mtli_layer_opts_default(&l.opts);
    l.in_ndim = 1;
    l.in_dims[0] = 2;
    l.opts.p = 1.0; /* set directly, bypassing the setter */
    ck_assert_err(l.ops->setup(&l), MTL_ERR_RANGE, "dropout: option 'p'");

    memset(&l, 0, sizeof l);
    l.ops = mtli_layer_find("batch_norm");
    mtli_layer_opts_default(&l.opts);
    l.in_ndim = 1;
    l.in_dims[0] = 2;
    l.opts.eps = -1;
    ck_assert_err(l.ops->setup(&l), MTL_ERR_RANGE, "batch_norm: option 'eps'");

    ck_assert_err(mtli_layer_check_input(NULL, NULL, 1, true), MTL_ERR_INVALID_ARGUMENT, "'l'");
    ck_assert_err(mtli_embedding_check_ids(NULL, NULL, 1), MTL_ERR_INVALID_ARGUMENT, "'l'");
}
END_TEST

static Suite *layers_suite(void)
{
    Suite *s = suite_create("layers");
    TCase *g = tcase_create("gradients");
    tcase_add_test(g, grad_linear);
    tcase_add_test(g, grad_activations);
    tcase_add_test(g, grad_dropout_fixed_mask);
    tcase_add_test(g, grad_layer_norm);
    tcase_add_test(g, grad_batch_norm);
    tcase_add_test(g, grad_batch_norm_many_channels);
    tcase_add_test(g, grad_embedding);
    suite_add_tcase(s, g);
    TCase *v = tcase_create("values");
    tcase_add_test(v, linear_forward_2x3);
    tcase_add_test(v, layer_norm_forward_values);
    tcase_add_test(v, batch_norm_train_values_and_running_stats);
    tcase_add_test(v, batch_norm_eval_uses_running_stats);
    tcase_add_test(v, batch_norm_per_channel_over_positions);
    tcase_add_test(v, gelu_known_values);
    tcase_add_test(v, activation_values);
    tcase_add_test(v, embedding_sum_mean_padding);
    tcase_add_test(v, embedding_default_pooling_is_mean);
    tcase_add_test(v, embedding_rejects_bad_ids);
    tcase_add_test(v, batch_norm_needs_two_values_in_training);
    tcase_add_test(v, dropout_eval_identity_train_scales);
    tcase_add_test(v, dropout_same_rng_same_mask);
    suite_add_tcase(s, v);
    TCase *i = tcase_create("init");
    tcase_add_test(i, init_distributions);
    tcase_add_test(i, init_fill_direct);
    tcase_add_test(i, init_same_seed_same_params);
    suite_add_tcase(s, i);
    TCase *m = tcase_create("semantics");
    tcase_add_test(m, every_kind_registered_and_deterministic);
    tcase_add_test(m, backward_accumulates_params_overwrites_dx);
    tcase_add_test(m, elementwise_in_place);
    tcase_add_test(m, param_descs_and_shapes);
    tcase_add_test(m, option_errors);
    tcase_add_test(m, setup_errors);
    suite_add_tcase(s, m);
    return s;
}

MTL_TEST_MAIN(layers_suite)
