/* Vision layers: conv2d, max_pool2d, avg_pool2d, flatten, dropout2d and batch_norm2d.
 * Finite-difference gradient checks (input and every parameter) over stride, padding and
 * dilation corner cases; conv2d against a direct double-precision convolution on both of its
 * lowering paths (samples batched into one GEMM, one sample per GEMM); forward values against
 * PyTorch; the im2col/col2im adjoint identity; option and shape errors; and a small
 * convolutional model trained through the public API. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mtl/mtl.h>

#include "core/rng.h"
#include "kernels/conv_direct.h"
#include "kernels/im2col.h"
#include "layers/layer.h"
#include "test_main.h"

#define ck_assert_err(expr, status, sub)                                                     \
    do {                                                                                     \
        ck_assert_status(expr, status);                                                      \
        ck_assert_msg(strstr(mtl_last_error(), sub) != NULL, "message '%s' lacks '%s'",      \
                      mtl_last_error(), sub);                                                \
    } while (0)

/* ---- harness: the test plays the model ---------------------------------------------------- */

typedef struct {
    mtli_layer l;
    float *params, *grads, *state, *scratch;
} H;

static void h_kind(H *h, const char *kind)
{
    memset(h, 0, sizeof *h);
    h->l.ops = mtli_layer_find(kind);
    ck_assert_msg(h->l.ops != NULL, "kind %s not registered", kind);
    mtli_layer_opts_default(&h->l.opts);
}

static void h_int(H *h, const char *key, int64_t v)
{
    ck_assert_ok(mtli_layer_set_int(h->l.ops, &h->l.opts, key, v));
}

static void h_dims(H *h, int64_t C, int64_t Hh, int64_t W)
{
    h->l.in_ndim = W ? 3 : Hh ? 2 : 1;
    h->l.in_dims[0] = C;
    h->l.in_dims[1] = Hh;
    h->l.in_dims[2] = W;
}

static void h_setup(H *h, int64_t C, int64_t Hh, int64_t W, size_t maxB, uint64_t seed)
{
    mtli_layer *l = &h->l;
    h_dims(h, C, Hh, W);
    ck_assert_ok(l->ops->setup(l));
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

/* Distinct values k*0.05 - n*0.025 in random order: no two within a finite-difference step,
 * so max pooling's choices stay put while the check perturbs an input. */
static void fill_distinct(float *x, size_t n, mtli_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)i * 0.05f - (float)n * 0.025f;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)mtli_rng_below(r, i);
        float t = x[i - 1];
        x[i - 1] = x[j];
        x[j] = t;
    }
}

static size_t in_n(const H *h, size_t B) { return B * h->l.in_features; }
static size_t out_n(const H *h, size_t B) { return B * h->l.out_features; }

/* ---- finite-difference gradient check ---------------------------------------------------- */

/* Objective L = sum(y * R) accumulated in double; the rng is restored before each forward so
 * dropout2d sees the same mask. Central differences with step FD_EPS in float (the step
 * actually taken is used); analytic a and numeric n must satisfy
 * |a - n| <= FD_ATOL + FD_RTOL * max(|a|, |n|). */
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
    for (size_t i = 0; i < out_n(c->h, c->B); i++)
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
    return (lp - lm) / ((double)(keep + FD_EPS) - (double)(keep - FD_EPS));
}

static double gc_compare(const char *kind, const char *what, size_t i, double a, double n)
{
    double err = fabs(a - n), scale = fmax(fabs(a), fabs(n));
    ck_assert_msg(err <= FD_ATOL + FD_RTOL * scale, "%s %s[%zu]: analytic %.7g, numeric %.7g",
                  kind, what, i, a, n);
    return err / (FD_ATOL + FD_RTOL * scale); /* the fraction of the tolerance used */
}

/* Check dx and every parameter of a set-up layer on a batch of B. distinct: inputs from
 * fill_distinct (max pooling), else uniform in [-1.5, 1.5]. Returns the largest fraction of
 * the tolerance used. */
static double gradcheck(H *h, size_t B, bool train, bool distinct, uint64_t seed)
{
    mtli_rng r;
    mtli_rng_seed(&r, seed);
    size_t nin = in_n(h, B), nout = out_n(h, B), np = h->l.nparams;
    gc_ctx c = {.h = h, .x = fvec(nin), .y = fvec(nout), .R = fvec(nout), .B = B,
                .train = train};
    mtli_rng_seed(&c.rng0, seed + 1);
    if (distinct)
        fill_distinct(c.x, nin, &r);
    else
        fill_uniform(c.x, nin, -1.5f, 1.5f, &r);
    fill_uniform(c.R, nout, -1.0f, 1.0f, &r);
    fill_uniform(h->params, np, -1.0f, 1.0f, &r);
    float *dx = fvec(nin);
    for (size_t i = 0; i < nin; i++)
        dx[i] = 12345.0f;
    memset(h->grads, 0, np * sizeof(float));
    mtli_rng rr = c.rng0;
    h_fwd(h, c.x, c.y, B, train, &rr);
    h_bwd(h, c.x, c.y, c.R, dx, B);
    const char *kind = h->l.ops->kind;
    double worst = 0.0;
    for (size_t i = 0; i < nin; i++)
        worst = fmax(worst, gc_compare(kind, "dx", i, dx[i], gc_numeric(&c, &c.x[i])));
    for (size_t i = 0; i < np; i++)
        worst = fmax(worst,
                     gc_compare(kind, "dparam", i, h->grads[i], gc_numeric(&c, &h->params[i])));
    free(c.x);
    free(c.y);
    free(c.R);
    free(dx);
    return worst;
}

/* ---- conv2d geometry cases --------------------------------------------------------------- */

typedef struct {
    int64_t C, H, W, out, kh, kw, sh, sw, ph, pw, dh, dw;
    int bias;
    size_t B;
} conv_case;

static const conv_case conv_cases[] = {
    {2, 5, 6, 3, 3, 3, 1, 1, 0, 0, 1, 1, 1, 2}, /* plain */
    {2, 5, 6, 3, 2, 3, 2, 1, 1, 2, 1, 1, 1, 3}, /* rectangular kernel, mixed stride/padding */
    {1, 7, 7, 2, 3, 3, 2, 2, 1, 1, 2, 2, 1, 2}, /* dilation with stride and padding */
    {3, 4, 4, 2, 1, 1, 1, 1, 0, 0, 1, 1, 0, 2}, /* 1x1, no bias */
    {2, 6, 5, 2, 3, 2, 3, 2, 2, 1, 1, 2, 1, 2}, /* stride 3, dilation along width only */
    {1, 3, 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 4}, /* "same" padding on a tiny input */
    {2, 4, 4, 1, 4, 4, 1, 1, 0, 0, 1, 1, 1, 2}, /* kernel as large as the input: 1x1 out */
    {1, 4, 4, 2, 2, 2, 5, 5, 3, 3, 1, 1, 1, 2}, /* windows entirely in the padding */
    {2, 3, 8, 2, 1, 5, 1, 3, 0, 4, 1, 2, 1, 2}, /* 1-row kernel, wide dilated padding */
};
#define NCONV (sizeof conv_cases / sizeof conv_cases[0])

static void conv_make(H *h, const conv_case *c)
{
    h_kind(h, "conv2d");
    h_int(h, "out", c->out);
    h_int(h, "kernel_h", c->kh);
    h_int(h, "kernel_w", c->kw);
    h_int(h, "stride_h", c->sh);
    h_int(h, "stride_w", c->sw);
    h_int(h, "padding_h", c->ph);
    h_int(h, "padding_w", c->pw);
    h_int(h, "dilation_h", c->dh);
    h_int(h, "dilation_w", c->dw);
    h_int(h, "bias", c->bias);
}

START_TEST(grad_conv2d)
{
    double worst = 0.0;
    for (size_t k = 0; k < NCONV; k++) {
        H h;
        conv_make(&h, &conv_cases[k]);
        h_setup(&h, conv_cases[k].C, conv_cases[k].H, conv_cases[k].W, conv_cases[k].B, 7);
        worst = fmax(worst, gradcheck(&h, conv_cases[k].B, true, false, 100 + k));
        h_free(&h);
    }
    if (getenv("MTL_TEST_VERBOSE"))
        fprintf(stderr, "conv2d gradient check: at most %.3g of the tolerance used\n", worst);
}
END_TEST

/* Direct convolution in double: y[b][o][oh][ow] = bias[o] + sum w[o][c][i][j] x[...]; ya
 * receives the same sums of absolute values (the scale of float rounding errors). */
static void naive_conv(const conv_case *c, const mtli_conv_geom *g, const float *x,
                       const float *w, const float *bias, double *y, double *ya, size_t B)
{
    size_t O = (size_t)c->out;
    for (size_t b = 0; b < B; b++)
        for (size_t o = 0; o < O; o++)
            for (size_t oh = 0; oh < g->Ho; oh++)
                for (size_t ow = 0; ow < g->Wo; ow++) {
                    double s = bias ? bias[o] : 0.0, sa = fabs(s);
                    for (size_t ch = 0; ch < g->C; ch++)
                        for (size_t i = 0; i < g->kh; i++)
                            for (size_t j = 0; j < g->kw; j++) {
                                long ih = (long)(oh * g->sh + i * g->dh) - (long)g->ph;
                                long iw = (long)(ow * g->sw + j * g->dw) - (long)g->pw;
                                if (ih < 0 || iw < 0 || ih >= (long)g->H || iw >= (long)g->W)
                                    continue;
                                double p =
                                    (double)w[((o * g->C + ch) * g->kh + i) * g->kw + j] *
                                    x[((b * g->C + ch) * g->H + (size_t)ih) * g->W + (size_t)iw];
                                s += p;
                                sa += fabs(p);
                            }
                    y[((b * O + o) * g->Ho + oh) * g->Wo + ow] = s;
                    ya[((b * O + o) * g->Ho + oh) * g->Wo + ow] = sa;
                }
}

/* The adjoints of naive_conv: dW, db and dx in double; the *a arrays receive the sums of
 * absolute values. */
static void naive_conv_bwd(const conv_case *c, const mtli_conv_geom *g, const float *x,
                           const float *w, const float *dy, double *dw, double *db, double *dx,
                           double *dwa, double *dba, double *dxa, size_t B)
{
    size_t O = (size_t)c->out;
    size_t nw = O * g->C * g->kh * g->kw, nx = B * g->C * g->H * g->W;
    memset(dw, 0, nw * sizeof(double));
    memset(db, 0, O * sizeof(double));
    memset(dx, 0, nx * sizeof(double));
    memset(dwa, 0, nw * sizeof(double));
    memset(dba, 0, O * sizeof(double));
    memset(dxa, 0, nx * sizeof(double));
    for (size_t b = 0; b < B; b++)
        for (size_t o = 0; o < O; o++)
            for (size_t oh = 0; oh < g->Ho; oh++)
                for (size_t ow = 0; ow < g->Wo; ow++) {
                    double d = dy[((b * O + o) * g->Ho + oh) * g->Wo + ow];
                    db[o] += d;
                    dba[o] += fabs(d);
                    for (size_t ch = 0; ch < g->C; ch++)
                        for (size_t i = 0; i < g->kh; i++)
                            for (size_t j = 0; j < g->kw; j++) {
                                long ih = (long)(oh * g->sh + i * g->dh) - (long)g->ph;
                                long iw = (long)(ow * g->sw + j * g->dw) - (long)g->pw;
                                if (ih < 0 || iw < 0 || ih >= (long)g->H || iw >= (long)g->W)
                                    continue;
                                size_t wi = ((o * g->C + ch) * g->kh + i) * g->kw + j;
                                size_t xi = ((b * g->C + ch) * g->H + (size_t)ih) * g->W +
                                            (size_t)iw;
                                dw[wi] += d * x[xi];
                                dx[xi] += d * w[wi];
                                dwa[wi] += fabs(d * x[xi]);
                                dxa[xi] += fabs(d * w[wi]);
                            }
                }
}

/* |got - want| <= rtol * (sum of |terms| + 1e-6): float rounding relative to the scale of
 * the summed terms. Returns the largest error in those units. */
static double assert_close_d(const char *what, const float *got, const double *want,
                             const double *abs_sum, size_t n, double rtol)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]) / (abs_sum[i] + 1e-6);
        ck_assert_msg(e <= rtol, "%s[%zu]: got %.8g, want %.8g (terms' absolute sum %.4g)",
                      what, i, got[i], want[i], abs_sum[i]);
        worst = fmax(worst, e);
    }
    return worst;
}

/* Forward and backward against the direct convolution, for one batch size; returns the
 * largest error relative to the terms' absolute sums. */
static double conv_vs_naive(const conv_case *c, size_t B, double rtol)
{
    H h;
    conv_make(&h, c);
    h_setup(&h, c->C, c->H, c->W, B, 3);
    mtli_conv_geom g;
    mtli_layer_window(&h.l, false, &g);
    size_t nin = in_n(&h, B), nout = out_n(&h, B), np = h.l.nparams;
    size_t nw = (size_t)c->out * g.C * g.kh * g.kw;
    float *x = fvec(nin), *y = fvec(nout), *dy = fvec(nout), *dx = fvec(nin);
    double *yw = calloc(nout, sizeof(double)), *dww = calloc(nw, sizeof(double)),
           *dbw = calloc((size_t)c->out, sizeof(double)), *dxw = calloc(nin, sizeof(double));
    double *ya = calloc(nout, sizeof(double)), *dwa = calloc(nw, sizeof(double)),
           *dba = calloc((size_t)c->out, sizeof(double)), *dxa = calloc(nin, sizeof(double));
    mtli_rng r;
    mtli_rng_seed(&r, 11);
    fill_uniform(x, nin, -1, 1, &r);
    fill_uniform(dy, nout, -1, 1, &r);
    fill_uniform(h.params, np, -0.5f, 0.5f, &r);
    const float *bias = c->bias ? h.params + nw : NULL;
    h_fwd(&h, x, y, B, true, NULL);
    naive_conv(c, &g, x, h.params, bias, yw, ya, B);
    double worst = assert_close_d("y", y, yw, ya, nout, rtol);
    h_bwd(&h, x, y, dy, dx, B);
    naive_conv_bwd(c, &g, x, h.params, dy, dww, dbw, dxw, dwa, dba, dxa, B);
    worst = fmax(worst, assert_close_d("dW", h.grads, dww, dwa, nw, rtol));
    if (bias)
        worst = fmax(worst, assert_close_d("db", h.grads + nw, dbw, dba, (size_t)c->out, rtol));
    worst = fmax(worst, assert_close_d("dx", dx, dxw, dxa, nin, rtol));
    free(ya);
    free(dwa);
    free(dba);
    free(dxa);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(yw);
    free(dww);
    free(dbw);
    free(dxw);
    h_free(&h);
    return worst;
}

/* Errors within 1e-5 of the absolute sum of the terms (float32 has 6e-8 per operation; the
 * longest sums here have about 7000 terms). */
START_TEST(conv2d_matches_direct_convolution)
{
    double worst = 0.0;
    /* small maps: all samples of a batch share one GEMM */
    for (size_t k = 0; k < NCONV; k++)
        worst = fmax(worst, conv_vs_naive(&conv_cases[k], 5, 1e-5));
    /* 32x32 outputs (1024 columns): four samples per GEMM, a batch of 6 leaves a chunk of 2 */
    const conv_case mid = {2, 34, 34, 3, 3, 3, 1, 1, 0, 0, 1, 1, 1, 6};
    worst = fmax(worst, conv_vs_naive(&mid, 6, 1e-5));
    /* 64x64 outputs (4096 columns): one sample per GEMM, written in place */
    const conv_case big = {2, 64, 64, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 3};
    worst = fmax(worst, conv_vs_naive(&big, 3, 1e-5));
    /* the LeNet layers of the Multi-Fashion recipe */
    const conv_case lenet1 = {1, 36, 36, 10, 9, 9, 1, 1, 0, 0, 1, 1, 1, 7};
    worst = fmax(worst, conv_vs_naive(&lenet1, 7, 1e-5));
    const conv_case lenet2 = {10, 14, 14, 20, 5, 5, 1, 1, 0, 0, 1, 1, 1, 9};
    worst = fmax(worst, conv_vs_naive(&lenet2, 9, 1e-5));
    if (getenv("MTL_TEST_VERBOSE"))
        fprintf(stderr, "conv2d vs direct: worst error %.3g of the terms' absolute sum\n", worst);
}
END_TEST

START_TEST(conv2d_scratch_bounded_by_chunk)
{
    /* im2col (stride 2 along the width): the column buffer holds one GEMM's samples (here a
     * 64x64 map, one sample), not the whole batch */
    H h;
    const conv_case strided = {2, 64, 128, 3, 3, 3, 1, 2, 1, 1, 1, 1, 1, 3};
    conv_make(&h, &strided);
    h_dims(&h, 2, 64, 128);
    ck_assert_ok(h.l.ops->setup(&h.l));
    size_t one = h.l.ops->scratch_floats(&h.l, 1);
    ck_assert_uint_eq(one, (size_t)2 * 9 * 64 * 64);
    ck_assert_uint_eq(h.l.ops->scratch_floats(&h.l, 256), one);
    ck_assert_uint_eq(h.l.ops->scratch_floats(&h.l, 0), 0);
    /* stride 1: room for either route, whichever is chosen; the direct kernels' buffers are
     * per group of samples too */
    const conv_case big = {2, 64, 64, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 3};
    conv_make(&h, &big);
    h_dims(&h, 2, 64, 64);
    ck_assert_ok(h.l.ops->setup(&h.l));
    mtli_conv_geom g;
    mtli_layer_window(&h.l, false, &g);
    one = h.l.ops->scratch_floats(&h.l, 1);
    ck_assert_uint_ge(one, (size_t)2 * 9 * 64 * 64);
    ck_assert_uint_ge(one, mtli_convd_work(&g, 3));
    ck_assert_uint_eq(h.l.ops->scratch_floats(&h.l, 256), one);
    ck_assert_uint_eq(h.l.ops->scratch_floats(&h.l, 0), 0);
}
END_TEST

/* Geometries for the direct kernels (stride 1 along the width): output-channel counts that
 * fill no register block exactly, maps wider than one tile with short last tiles, padding
 * wider than the dilated kernel, stride along the height, batches of more than one group. */
static const conv_case direct_cases[] = {
    {3, 20, 21, 7, 3, 3, 1, 1, 1, 2, 1, 1, 1, 3},
    {2, 19, 40, 13, 5, 7, 2, 1, 2, 3, 1, 2, 1, 3},
    {4, 17, 33, 6, 4, 5, 1, 1, 3, 2, 2, 1, 0, 4},
    {1, 12, 18, 9, 1, 1, 1, 1, 2, 2, 1, 1, 1, 2},
    {5, 9, 26, 16, 3, 9, 1, 1, 0, 4, 1, 1, 1, 11},
    {3, 10, 10, 11, 3, 3, 1, 1, 1, 1, 2, 2, 1, 9},
};
#define NDIRECT (sizeof direct_cases / sizeof direct_cases[0])

/* Both routes of conv2d (the direct kernels wherever they apply, and the im2col lowering)
 * against the double-precision convolution, values and gradients. */
START_TEST(conv2d_routes_match_direct_convolution)
{
    const mtli_conv_route routes[2] = {MTLI_CONV_DIRECT, MTLI_CONV_IM2COL};
    double worst = 0.0;
    for (int r = 0; r < 2; r++) {
        if (routes[r] == MTLI_CONV_DIRECT && !mtli_convd_available())
            continue;
        mtli_conv_route_choice = routes[r];
        for (size_t k = 0; k < NDIRECT; k++) { /* the route taken is the one asked for */
            H h;
            conv_make(&h, &direct_cases[k]);
            h_dims(&h, direct_cases[k].C, direct_cases[k].H, direct_cases[k].W);
            ck_assert_ok(h.l.ops->setup(&h.l));
            mtli_conv_geom g;
            mtli_layer_window(&h.l, false, &g);
            ck_assert(mtli_convd_applies(&g, (size_t)direct_cases[k].out) ==
                      (routes[r] == MTLI_CONV_DIRECT));
            ck_assert(mtli_convd_dx_applies(&g, (size_t)direct_cases[k].out) ==
                      (routes[r] == MTLI_CONV_DIRECT && direct_cases[k].sh == 1));
            h_free(&h);
        }
        for (size_t k = 0; k < NCONV; k++)
            worst = fmax(worst, conv_vs_naive(&conv_cases[k], 10, 1e-5));
        for (size_t k = 0; k < NDIRECT; k++)
            worst = fmax(worst, conv_vs_naive(&direct_cases[k], direct_cases[k].B, 1e-5));
        const conv_case lenet1 = {1, 36, 36, 10, 9, 9, 1, 1, 0, 0, 1, 1, 1, 9};
        worst = fmax(worst, conv_vs_naive(&lenet1, 9, 1e-5));
        const conv_case lenet2 = {10, 14, 14, 20, 5, 5, 1, 1, 0, 0, 1, 1, 1, 9};
        worst = fmax(worst, conv_vs_naive(&lenet2, 9, 1e-5));
    }
    mtli_conv_route_choice = MTLI_CONV_AUTO;
    if (getenv("MTL_TEST_VERBOSE"))
        fprintf(stderr, "conv2d routes vs direct: worst error %.3g of the terms' absolute sum\n",
                worst);
}
END_TEST

/* Finite differences through the direct kernels on every geometry. */
START_TEST(grad_conv2d_direct)
{
    if (!mtli_convd_available())
        return;
    mtli_conv_route_choice = MTLI_CONV_DIRECT;
    double worst = 0.0;
    for (size_t k = 0; k < NCONV + NDIRECT; k++) {
        const conv_case *c = k < NCONV ? &conv_cases[k] : &direct_cases[k - NCONV];
        if (c->H * c->W * c->C > 400) /* the gradient check's cost grows with the input */
            continue;
        H h;
        conv_make(&h, c);
        h_setup(&h, c->C, c->H, c->W, 2, 7);
        worst = fmax(worst, gradcheck(&h, 2, true, false, 300 + k));
        h_free(&h);
    }
    mtli_conv_route_choice = MTLI_CONV_AUTO;
    if (getenv("MTL_TEST_VERBOSE"))
        fprintf(stderr, "conv2d direct gradient check: at most %.3g of the tolerance used\n",
                worst);
}
END_TEST

/* ---- PyTorch forward values ---------------------------------------------------------------- */

/* Generated with torch 1.13 by:
 *
 *   import torch, math
 *   def seq(n, f): return torch.tensor([f(i) for i in range(n)], dtype=torch.float32)
 *   X = lambda n: seq(n, lambda i: math.sin(0.37*i + 0.1))
 *   Wf = lambda n: seq(n, lambda i: 0.5*math.cos(0.23*i + 0.3))
 *   F = torch.nn.functional
 *   x = X(2*2*5*5).view(2,2,5,5); w = Wf(3*2*3*3).view(3,2,3,3)
 *   b = seq(3, lambda i: 0.1*(i+1)-0.2)
 *   conv_a_want = F.conv2d(x, w, b, stride=2, padding=1)
 *   x = X(1*2*6*7).view(1,2,6,7); w = Wf(2*2*2*3).view(2,2,2,3)
 *   conv_b_want = F.conv2d(x, w, None, stride=(1,2), padding=(2,1), dilation=(2,1))
 *   x = X(1*2*5*5).view(1,2,5,5)
 *   maxpool_want = F.max_pool2d(x, 3, 2, 1)
 *   avgpool_incl_want = F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)
 *   avgpool_excl_want = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
 *   maxpool_23_want = F.max_pool2d(x, (2,3)); avgpool_23_want = F.avg_pool2d(x, (2,3))
 *   x = seq(3*2*2*3, lambda i: 2*math.sin(0.37*i+0.1)+0.5).view(3,2,2,3)
 *   bn = torch.nn.BatchNorm2d(2); bn.weight = [1.5, -0.5]; bn.bias = [0.1, 0.2]
 *   bn.train(); bn2d_train_want = bn(x)
 *   bn2d_running_want = torch.cat([bn.running_mean, bn.running_var])
 *   bn.eval(); bn2d_eval_want = bn(x)
 */
static const float conv_a_want[54] = {
    0.22029191f,  1.5253478f,   1.3538014f,   0.47310814f,  -0.8804552f,  -1.329859f,
    0.14606324f,  1.7897694f,   1.7929565f,   1.3381248f,   1.1110446f,   -0.085350677f,
    -1.6749146f,  -0.97999096f, 0.62028337f,  0.87134641f,  0.37762478f,  -0.59824479f,
    -1.6698604f,  -2.7289248f,  -1.2613426f,  1.3412994f,   1.9420636f,   0.65791631f,
    -1.0899786f,  -2.198844f,   -1.1448878f,  -0.21305516f, 1.0118914f,   1.2946987f,
    0.98900163f,  -0.064791426f, -0.97451288f, -0.48742938f, 0.98088717f, 1.5524219f,
    1.3705238f,   1.5819865f,   0.32412344f,  -1.9966274f,  -1.9280522f,  -0.11160275f,
    1.0268265f,   0.92290998f,  -0.21041328f, -1.2716109f,  -2.7256315f,  -1.6458164f,
    1.1739122f,   2.1534185f,   1.0954105f,   -0.62491488f, -1.9806603f,  -1.3244848f};
static const float conv_b_want[64] = {
    0.15691529f,  1.0928471f,   1.6823237f,   1.0891895f,   0.44622084f,  -0.2505081f,
    -1.3166343f,  -1.2048552f,  -0.64093423f, 0.5629853f,   2.2501965f,   1.9150904f,
    1.4967422f,   0.9462114f,   -1.0625714f,  -1.546997f,   -1.9085896f,  -2.1747446f,
    -0.44023147f, 0.72003615f,  1.7543149f,   2.7582095f,   1.8124537f,   0.32050031f,
    -1.1099532f,  -1.6630806f,  -1.0254848f,  -0.10367899f, 0.69602567f,  1.5739249f,
    1.5773615f,   0.66813713f,  -0.23633634f, -1.2402231f,  -1.7908316f,  -1.0763237f,
    -0.4356643f,  0.37627921f,  1.4613121f,   1.2246813f,   0.68946838f,  -0.45667043f,
    -2.044811f,   -1.685567f,   -1.4953885f,  -0.93815345f, 0.92289633f,  1.3232043f,
    1.8577497f,   2.0547042f,   0.4727661f,   -0.56835556f, -1.6690687f,  -2.5617929f,
    -1.7281977f,  -0.35507777f, 0.95549381f,  1.3031659f,   0.72577667f,  0.013761602f,
    -0.63258886f, -1.2937526f,  -1.2143934f,  -0.44647864f};
static const float maxpool_want[18] = {
    0.92895973f, 0.93561602f,  0.99995762f, 0.92895973f, 0.73223144f, 0.74917436f,
    0.99987173f, 0.99987173f,  0.74917436f, 0.07470829f, -0.25357145f, 0.11338502f,
    0.75367081f, 0.99973935f,  0.99973935f, 0.72288138f, 0.42409584f, -0.29746535f};
static const float avgpool_incl_want[18] = {
    0.2459901f,   0.37591976f,  0.19251667f,  -0.073224187f, -0.14073952f, -0.090947099f,
    0.12066652f,  0.32880735f,  0.26288405f,  -0.2261029f,   -0.38304961f, -0.22072069f,
    0.060773466f, 0.13433422f,  0.095926084f, -0.078208938f, -0.28960407f, -0.25961137f};
static const float avgpool_excl_want[18] = {
    0.5534777f,  0.56387967f,  0.43316251f, -0.10983628f, -0.14073952f, -0.13642065f,
    0.27149966f, 0.49321103f,  0.59148914f, -0.50873154f, -0.57457441f, -0.49662155f,
    0.091160201f, 0.13433422f, 0.14388913f, -0.17597011f, -0.43440607f, -0.58412558f};
static const float maxpool_23_want[4] = {0.92895973f, 0.10661169f, 0.07470829f, 0.9403404f};
static const float avgpool_23_want[4] = {0.56582552f, -0.53312916f, -0.53972811f, 0.56231576f};
static const float bn2d_train_want[36] = {
    0.50986761f,  1.2673109f,   1.8932489f,   2.3029642f,   2.4410036f,   2.2886837f,
    -0.25711128f, -0.035079554f, 0.23128209f, 0.50592279f,  0.7516712f,   0.93526649f,
    -1.8179265f,  -1.8079731f,  -1.5132997f,  -0.97378874f, -0.26246062f, 0.52440977f,
    -0.052005835f, -0.26982749f, -0.41154721f, -0.45798397f, -0.40285265f, -0.25361517f,
    1.2187626f,   0.45596388f,  -0.32852811f, -1.0285358f,  -1.5493168f,  -1.8203855f,
    1.0273566f,   0.92252731f,  0.73242033f,  0.48276567f,  0.20735295f,  -0.056541987f};
static const float bn2d_running_want[4] = {0.031757902f, 0.0746364f, 1.1070347f, 1.0879673f};
static const float bn2d_eval_want[36] = {
    1.0521951f,   2.0588448f,   2.890723f,    3.4352386f,   3.6186943f,   3.4162598f,
    -0.70590371f, -0.42228442f, -0.082038924f, 0.26878205f, 0.58269662f,  0.81721789f,
    -2.041467f,   -2.0282388f,  -1.6366149f,  -0.91959929f, 0.02576302f,  1.0715218f,
    -0.44390574f, -0.72214717f, -0.90317732f, -0.96249479f, -0.89207107f, -0.70143783f,
    1.9943238f,   0.98055649f,  -0.062041335f, -0.9923588f, -1.6844819f,  -2.044735f,
    0.93485212f,  0.8009451f,   0.55810589f,  0.23920159f,  -0.11260556f, -0.44970015f};

static void seq_x(float *x, size_t n, double scale, double shift)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * sin(0.37 * (double)i + 0.1) + shift);
}

static void seq_w(float *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        w[i] = (float)(0.5 * cos(0.23 * (double)i + 0.3));
}

/* PyTorch's float32 results against ours: |got - want| <= 1e-5 (1 + |want|). */
static void assert_torch(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-5f * (1.0f + fabsf(want[i])),
                      "%s[%zu]: got %.8g, PyTorch %.8g", what, i, got[i], want[i]);
}

START_TEST(conv2d_forward_matches_pytorch)
{
    H h;
    h_kind(&h, "conv2d");
    h_int(&h, "out", 3);
    h_int(&h, "kernel", 3);
    h_int(&h, "stride", 2);
    h_int(&h, "padding", 1);
    h_setup(&h, 2, 5, 5, 2, 1);
    ck_assert_int_eq(h.l.out_dims[0], 3);
    ck_assert_int_eq(h.l.out_dims[1], 3);
    ck_assert_int_eq(h.l.out_dims[2], 3);
    float x[100], y[54];
    seq_x(x, 100, 1.0, 0.0);
    seq_w(h.params, 54);
    for (int i = 0; i < 3; i++)
        h.params[54 + i] = (float)(0.1 * (i + 1) - 0.2);
    h_fwd(&h, x, y, 2, false, NULL);
    assert_torch("conv a", y, conv_a_want, 54);
    h_free(&h);

    h_kind(&h, "conv2d");
    h_int(&h, "out", 2);
    h_int(&h, "kernel_h", 2);
    h_int(&h, "kernel_w", 3);
    h_int(&h, "stride_h", 1);
    h_int(&h, "stride_w", 2);
    h_int(&h, "padding_h", 2);
    h_int(&h, "padding_w", 1);
    h_int(&h, "dilation_h", 2);
    h_int(&h, "bias", 0);
    h_setup(&h, 2, 6, 7, 1, 1);
    ck_assert_int_eq(h.l.out_dims[1], 8);
    ck_assert_int_eq(h.l.out_dims[2], 4);
    ck_assert_uint_eq(h.l.nparams, 24);
    float xb[84], yb[64];
    seq_x(xb, 84, 1.0, 0.0);
    seq_w(h.params, 24);
    h_fwd(&h, xb, yb, 1, true, NULL);
    assert_torch("conv b", yb, conv_b_want, 64);
    h_free(&h);
}
END_TEST

static void pool_torch(const char *kind, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                       int incl, const float *want, size_t n)
{
    H h;
    h_kind(&h, kind);
    h_int(&h, "kernel_h", kh);
    h_int(&h, "kernel_w", kw);
    if (stride)
        h_int(&h, "stride", stride);
    h_int(&h, "padding", pad);
    if (incl >= 0)
        h_int(&h, "count_include_pad", incl);
    h_setup(&h, 2, 5, 5, 1, 1);
    ck_assert_uint_eq(h.l.out_features, n);
    float x[50], y[18];
    seq_x(x, 50, 1.0, 0.0);
    h_fwd(&h, x, y, 1, true, NULL);
    assert_torch(kind, y, want, n);
    h_free(&h);
}

START_TEST(pool_forward_matches_pytorch)
{
    pool_torch("max_pool2d", 3, 3, 2, 1, -1, maxpool_want, 18);
    pool_torch("avg_pool2d", 3, 3, 2, 1, -1, avgpool_incl_want, 18); /* default: include */
    pool_torch("avg_pool2d", 3, 3, 2, 1, 0, avgpool_excl_want, 18);
    pool_torch("max_pool2d", 2, 3, 0, 0, -1, maxpool_23_want, 4); /* stride = kernel */
    pool_torch("avg_pool2d", 2, 3, 0, 0, -1, avgpool_23_want, 4);
}
END_TEST

START_TEST(batch_norm2d_matches_pytorch)
{
    H h;
    h_kind(&h, "batch_norm2d");
    h_setup(&h, 2, 2, 3, 3, 1);
    ck_assert_uint_eq(h.l.nparams, 4);
    ck_assert_uint_eq(h.l.nstate, 4);
    ck_assert_str_eq(h.l.desc[2].name, "running_mean");
    float x[36], y[36];
    seq_x(x, 36, 2.0, 0.5);
    h.params[0] = 1.5f;
    h.params[1] = -0.5f;
    h.params[2] = 0.1f;
    h.params[3] = 0.2f;
    h_fwd(&h, x, y, 3, true, NULL);
    assert_torch("bn2d train", y, bn2d_train_want, 36);
    assert_torch("bn2d running stats", h.state, bn2d_running_want, 4);
    h_fwd(&h, x, y, 3, false, NULL);
    assert_torch("bn2d eval", y, bn2d_eval_want, 36);
    gradcheck(&h, 3, true, false, 5);
    h_free(&h);
    /* the same numbers as batch_norm on [C, H, W] */
    h_kind(&h, "batch_norm");
    h_setup(&h, 2, 2, 3, 3, 1);
    h.params[0] = 1.5f;
    h.params[1] = -0.5f;
    h.params[2] = 0.1f;
    h.params[3] = 0.2f;
    h_fwd(&h, x, y, 3, true, NULL);
    assert_torch("batch_norm on [C,H,W]", y, bn2d_train_want, 36);
    h_free(&h);
}
END_TEST

/* ---- pools, flatten, dropout2d: gradients and behaviour ---------------------------------- */

START_TEST(grad_pools)
{
    const struct {
        int64_t C, H, W, kh, kw, s, p;
        size_t B;
    } pc[] = {
        {2, 4, 4, 2, 2, 0, 0, 2}, /* LeNet's 2x2 */
        {1, 5, 5, 3, 3, 2, 1, 3}, /* overlapping windows, padding */
        {2, 5, 7, 2, 3, 1, 1, 2}, /* rectangular, stride 1 */
        {1, 7, 6, 3, 2, 3, 0, 2}, /* stride > kernel: some inputs unused */
        {1, 3, 3, 3, 3, 0, 1, 2}, /* windows mostly in the padding */
    };
    const char *kinds[] = {"max_pool2d", "avg_pool2d"};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++)
            for (int incl = 1; incl >= (k == 1 ? 0 : 1); incl--) {
                H h;
                h_kind(&h, kinds[k]);
                h_int(&h, "kernel_h", pc[i].kh);
                h_int(&h, "kernel_w", pc[i].kw);
                if (pc[i].s)
                    h_int(&h, "stride", pc[i].s);
                h_int(&h, "padding", pc[i].p);
                if (k == 1)
                    h_int(&h, "count_include_pad", incl);
                h_setup(&h, pc[i].C, pc[i].H, pc[i].W, pc[i].B, 1);
                gradcheck(&h, pc[i].B, true, true, 40 + i);
                h_free(&h);
            }
}
END_TEST

START_TEST(max_pool2d_ties_and_nan_as_pytorch)
{
    H h;
    h_kind(&h, "max_pool2d");
    h_int(&h, "kernel", 2);
    h_setup(&h, 1, 2, 4, 1, 1);
    /* window 0: a tie (first wins); window 1: a NaN wins */
    float x[8] = {3, 1, 0, 5, 2, 3, NAN, 1}, y[2], dy[2] = {1, 10}, dx[8];
    h_fwd(&h, x, y, 1, true, NULL);
    ck_assert(y[0] == 3.0f);
    ck_assert(isnan(y[1]));
    h_bwd(&h, x, y, dy, dx, 1);
    float want[8] = {1, 0, 0, 0, 0, 0, 10, 0};
    ck_assert(memcmp(dx, want, sizeof want) == 0);
    h_free(&h);
}
END_TEST

START_TEST(flatten_shape_values_gradient)
{
    H h;
    h_kind(&h, "flatten");
    h_setup(&h, 3, 4, 5, 2, 1);
    ck_assert_int_eq(h.l.out_ndim, 1);
    ck_assert_int_eq(h.l.out_dims[0], 60);
    ck_assert_uint_eq(h.l.out_features, 60);
    ck_assert_uint_eq(h.l.nparams, 0);
    float x[120], y[120], dx[120];
    mtli_rng r;
    mtli_rng_seed(&r, 1);
    fill_uniform(x, 120, -1, 1, &r);
    h_fwd(&h, x, y, 2, true, NULL);
    ck_assert(memcmp(x, y, sizeof x) == 0);
    h_bwd(&h, x, y, x, dx, 2);
    ck_assert(memcmp(x, dx, sizeof x) == 0);
    gradcheck(&h, 2, true, false, 3);
    h_free(&h);
}
END_TEST

START_TEST(dropout2d_drops_whole_channels)
{
    H h;
    h_kind(&h, "dropout2d");
    ck_assert_ok(mtli_layer_set_double(h.l.ops, &h.l.opts, "p", 0.25));
    const size_t B = 50, C = 8, S = 6;
    h_setup(&h, (int64_t)C, 2, 3, B, 1);
    float *x = fvec(B * C * S), *y = fvec(B * C * S), *y2 = fvec(B * C * S);
    mtli_rng r, r1, r2;
    mtli_rng_seed(&r, 2);
    fill_uniform(x, B * C * S, 0.5f, 1.5f, &r);
    mtli_rng_seed(&r1, 9);
    r2 = r1;
    h_fwd(&h, x, y, B, true, &r1);
    size_t dropped = 0;
    for (size_t i = 0; i < B * C; i++) {
        bool zero = y[i * S] == 0.0f;
        dropped += zero;
        for (size_t j = 0; j < S; j++) {
            float want = zero ? 0.0f : x[i * S + j] * (1.0f / 0.75f);
            ck_assert_msg(fabsf(y[i * S + j] - want) <= 1e-6f, "channel %zu position %zu", i, j);
        }
    }
    /* 400 Bernoulli(0.25) draws: mean 100, sd 8.7 */
    ck_assert_msg(dropped > 60 && dropped < 140, "%zu of 400 channels dropped", dropped);
    /* one draw per channel: the same rng state gives the same mask */
    h_fwd(&h, x, y2, B, true, &r2);
    ck_assert(memcmp(y, y2, B * C * S * sizeof(float)) == 0);
    /* evaluation: identity */
    h_fwd(&h, x, y, B, false, &r1);
    ck_assert(memcmp(x, y, B * C * S * sizeof(float)) == 0);
    free(x);
    free(y);
    free(y2);
    h_free(&h);
    /* gradients through a fixed mask, and in evaluation */
    h_kind(&h, "dropout2d");
    ck_assert_ok(mtli_layer_set_double(h.l.ops, &h.l.opts, "p", 0.4));
    h_setup(&h, 6, 2, 2, 4, 1);
    gradcheck(&h, 4, true, false, 8);
    gradcheck(&h, 4, false, false, 8);
    h_free(&h);
    h_kind(&h, "dropout2d"); /* [C, L] input */
    h_setup(&h, 5, 3, 0, 3, 1);
    gradcheck(&h, 3, true, false, 9);
    h_free(&h);
}
END_TEST

/* ---- interface contracts for the new kinds ------------------------------------------------ */

typedef struct {
    const char *kind;
    int64_t C, H, W;
} vcase;

static const vcase vkinds[] = {
    {"conv2d", 2, 6, 5},       {"max_pool2d", 2, 6, 5}, {"avg_pool2d", 2, 6, 5},
    {"flatten", 2, 6, 5},      {"dropout2d", 2, 6, 5},  {"batch_norm2d", 2, 6, 5},
};
#define NVK (sizeof vkinds / sizeof vkinds[0])

static void vsetup(H *h, const vcase *c, size_t B, uint64_t seed)
{
    h_kind(h, c->kind);
    if (strcmp(c->kind, "conv2d") == 0) {
        h_int(h, "out", 3);
        h_int(h, "kernel", 3);
        h_int(h, "padding", 1);
    } else if (strstr(c->kind, "pool")) {
        h_int(h, "kernel", 2);
        h_int(h, "padding", 1);
    }
    h_setup(h, c->C, c->H, c->W, B, seed);
}

START_TEST(registered_deterministic_accumulating)
{
    const size_t B = 4;
    for (size_t k = 0; k < NVK; k++) {
        ck_assert_ptr_nonnull(mtli_layer_find(vkinds[k].kind));
        bool listed = false;
        for (size_t i = 0; mtli_layer_kind_at(i); i++)
            listed |= strcmp(mtli_layer_kind_at(i), vkinds[k].kind) == 0;
        ck_assert_msg(listed, "%s not enumerated", vkinds[k].kind);
        H h[2];
        for (int t = 0; t < 2; t++)
            vsetup(&h[t], &vkinds[k], B, 5);
        ck_assert(memcmp(h[0].params, h[1].params, h[0].l.nparams * sizeof(float)) == 0);
        size_t nin = in_n(&h[0], B), nout = out_n(&h[0], B), np = h[0].l.nparams;
        float *x = fvec(nin), *y[2] = {fvec(nout), fvec(nout)}, *dy = fvec(nout),
              *dx[2] = {fvec(nin), fvec(nin)}, *g1 = fvec(np);
        mtli_rng r;
        mtli_rng_seed(&r, 1);
        fill_uniform(x, nin, -2, 2, &r);
        fill_uniform(dy, nout, -1, 1, &r);
        for (int t = 0; t < 2; t++) {
            mtli_rng fr;
            mtli_rng_seed(&fr, 8);
            h_fwd(&h[t], x, y[t], B, true, &fr);
            h_bwd(&h[t], x, y[t], dy, dx[t], B);
        }
        ck_assert(memcmp(y[0], y[1], nout * sizeof(float)) == 0);
        ck_assert(memcmp(dx[0], dx[1], nin * sizeof(float)) == 0);
        ck_assert(memcmp(h[0].grads, h[1].grads, np * sizeof(float)) == 0);
        ck_assert(memcmp(h[0].state, h[1].state, h[0].l.nstate * sizeof(float)) == 0);
        /* a second backward (as the per-task engine runs) accumulates parameter gradients
         * and overwrites dx with the same values */
        memcpy(g1, h[0].grads, np * sizeof(float));
        for (size_t i = 0; i < nin; i++)
            dx[1][i] = 1e6f;
        h_bwd(&h[0], x, y[0], dy, dx[1], B);
        for (size_t i = 0; i < np; i++)
            ck_assert_msg(fabsf(h[0].grads[i] - 2.0f * g1[i]) <= 1e-6f * fabsf(g1[i]) + 1e-12f,
                          "%s: grad %zu after two backwards %g, once %g", vkinds[k].kind, i,
                          h[0].grads[i], g1[i]);
        ck_assert_msg(memcmp(dx[0], dx[1], nin * sizeof(float)) == 0, "%s: dx not overwritten",
                      vkinds[k].kind);
        /* dx NULL: parameter gradients only */
        h_bwd(&h[0], x, y[0], dy, NULL, B);
        for (size_t i = 0; i < np; i++)
            ck_assert(fabsf(h[0].grads[i] - 3.0f * g1[i]) <= 1e-5f * fabsf(g1[i]) + 1e-12f);
        free(x);
        free(dy);
        free(g1);
        for (int t = 0; t < 2; t++) {
            free(y[t]);
            free(dx[t]);
            h_free(&h[t]);
        }
    }
}
END_TEST

START_TEST(conv2d_params_and_default_init)
{
    H h;
    h_kind(&h, "conv2d");
    h_int(&h, "out", 64);
    h_int(&h, "kernel", 5);
    h_setup(&h, 8, 9, 9, 1, 3);
    ck_assert_int_eq(h.l.ndesc, 2);
    ck_assert_str_eq(h.l.desc[0].name, "weight");
    ck_assert_int_eq(h.l.desc[0].ndim, 4);
    int64_t ws[4] = {64, 8, 5, 5};
    ck_assert(memcmp(h.l.desc[0].shape, ws, sizeof ws) == 0);
    ck_assert(!h.l.desc[0].no_decay);
    ck_assert_str_eq(h.l.desc[1].name, "bias");
    ck_assert(h.l.desc[1].no_decay);
    ck_assert_uint_eq(h.l.desc[1].offset, 64 * 200);
    ck_assert_uint_eq(h.l.nparams, 64 * 200 + 64);
    /* kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)), fan_in = 8*5*5 = 200; bias the same */
    double bound = 1.0 / sqrt(200.0), s = 0.0, s2 = 0.0, mx = 0.0;
    for (size_t i = 0; i < h.l.nparams; i++) {
        double v = h.params[i];
        s += v;
        s2 += v * v;
        mx = fmax(mx, fabs(v));
    }
    double n = (double)h.l.nparams, sd = sqrt(s2 / n - (s / n) * (s / n));
    ck_assert_msg(mx <= bound && mx > 0.99 * bound, "max |w| %g, bound %g", mx, bound);
    ck_assert_msg(fabs(sd - bound / sqrt(3.0)) < 0.02 * bound, "std %g, want %g", sd,
                  bound / sqrt(3.0));
    h_free(&h);
    /* other schemes by key */
    h_kind(&h, "conv2d");
    h_int(&h, "out", 2);
    h_int(&h, "kernel", 1);
    ck_assert_ok(mtli_layer_set_string(h.l.ops, &h.l.opts, "init", "ones"));
    ck_assert_ok(mtli_layer_set_string(h.l.ops, &h.l.opts, "bias_init", "zeros"));
    h_setup(&h, 3, 2, 2, 1, 3);
    for (size_t i = 0; i < 6; i++)
        ck_assert(h.params[i] == 1.0f);
    ck_assert(h.params[6] == 0.0f && h.params[7] == 0.0f);
    h_free(&h);
}
END_TEST

/* <col, im2col(x)> == <col2im(col), x>: col2im is im2col's adjoint, including padding,
 * stride and dilation. */
START_TEST(im2col_col2im_adjoint)
{
    for (size_t k = 0; k < NCONV; k++) {
        const conv_case *c = &conv_cases[k];
        mtli_conv_geom g = {.C = (size_t)c->C, .H = (size_t)c->H, .W = (size_t)c->W,
                            .kh = (size_t)c->kh, .kw = (size_t)c->kw, .sh = (size_t)c->sh,
                            .sw = (size_t)c->sw, .ph = (size_t)c->ph, .pw = (size_t)c->pw,
                            .dh = (size_t)c->dh, .dw = (size_t)c->dw};
        g.Ho = (g.H + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
        g.Wo = (g.W + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
        size_t nx = g.C * g.H * g.W, K = g.C * g.kh * g.kw, N = g.Ho * g.Wo, ld = N + 3;
        float *x = fvec(nx), *col = fvec(K * ld), *c2 = fvec(K * ld), *xb = fvec(nx);
        mtli_rng r;
        mtli_rng_seed(&r, k);
        fill_uniform(x, nx, -1, 1, &r);
        fill_uniform(c2, K * ld, -1, 1, &r);
        for (size_t i = 0; i < K * ld; i++)
            col[i] = 777.0f; /* the gaps between rows (ld > N) must stay untouched */
        mtli_im2col(&g, x, col, ld);
        mtli_col2im(&g, c2, ld, xb);
        double lhs = 0.0, rhs = 0.0;
        for (size_t row = 0; row < K; row++) {
            for (size_t j = 0; j < N; j++)
                lhs += (double)col[row * ld + j] * c2[row * ld + j];
            for (size_t j = N; j < ld; j++)
                ck_assert(col[row * ld + j] == 777.0f);
        }
        for (size_t i = 0; i < nx; i++)
            rhs += (double)xb[i] * x[i];
        ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (1.0 + fabs(lhs)), "case %zu: %g vs %g", k, lhs,
                      rhs);
        free(x);
        free(col);
        free(c2);
        free(xb);
    }
}
END_TEST

/* ---- errors ----------------------------------------------------------------------------- */

static mtl_status try_setup(H *h, int64_t C, int64_t Hh, int64_t W)
{
    h_dims(h, C, Hh, W);
    return h->l.ops->setup(&h->l);
}

START_TEST(option_and_shape_errors)
{
    const mtli_layer_ops *conv = mtli_layer_find("conv2d"), *mp = mtli_layer_find("max_pool2d"),
                         *ap = mtli_layer_find("avg_pool2d"), *fl = mtli_layer_find("flatten"),
                         *d2 = mtli_layer_find("dropout2d");
    mtli_layer_opts o, d;
    mtli_layer_opts_default(&o);
    mtli_layer_opts_default(&d);
    ck_assert_err(mtli_layer_set_int(conv, &o, "kernel", 0), MTL_ERR_RANGE,
                  "'kernel' of kind 'conv2d' must be in 1..");
    ck_assert_err(mtli_layer_set_int(conv, &o, "stride_w", -1), MTL_ERR_RANGE, "'stride_w'");
    ck_assert_err(mtli_layer_set_int(conv, &o, "dilation", (int64_t)1 << 40), MTL_ERR_RANGE,
                  "'dilation'");
    ck_assert_err(mtli_layer_set_int(mp, &o, "padding", -1), MTL_ERR_RANGE, "0..");
    ck_assert_err(mtli_layer_set_int(ap, &o, "count_include_pad", 2), MTL_ERR_RANGE,
                  "0 or 1");
    ck_assert_err(mtli_layer_set_int(mp, &o, "dilation", 2), MTL_ERR_INVALID_ARGUMENT,
                  "'dilation' is not used by kind 'max_pool2d'");
    ck_assert_err(mtli_layer_set_int(mp, &o, "count_include_pad", 0), MTL_ERR_INVALID_ARGUMENT,
                  "not used by kind 'max_pool2d'");
    ck_assert_err(mtli_layer_set_int(fl, &o, "kernel", 2), MTL_ERR_INVALID_ARGUMENT,
                  "not used by kind 'flatten'");
    ck_assert_err(mtli_layer_set_int(conv, &o, "kernel_x", 2), MTL_ERR_INVALID_ARGUMENT,
                  "unknown layer option 'kernel_x'");
    ck_assert_err(mtli_layer_set_double(conv, &o, "kernel", 2.5), MTL_ERR_RANGE, "integer");
    ck_assert_err(mtli_layer_set_double(d2, &o, "p", 1.0), MTL_ERR_RANGE, "'p'");
    ck_assert(memcmp(&o, &d, sizeof o) == 0); /* failures change nothing */
    /* "kernel" sets both dimensions, "_h"/"_w" one */
    ck_assert_ok(mtli_layer_set_int(conv, &o, "kernel", 3));
    ck_assert_ok(mtli_layer_set_int(conv, &o, "kernel_w", 5));
    ck_assert_ok(mtli_layer_set_double(conv, &o, "padding", 2.0));
    ck_assert(o.kernel[0] == 3 && o.kernel[1] == 5 && o.padding[0] == 2 && o.padding[1] == 2);
    ck_assert_int_eq(mtli_layer_key_type(ap, "count_include_pad"), MTLI_KEY_INT);
    ck_assert_int_eq(mtli_layer_key_type(conv, "stride_h"), MTLI_KEY_INT);

    H h;
    h_kind(&h, "conv2d");
    h_int(&h, "kernel", 3);
    ck_assert_err(try_setup(&h, 1, 5, 5), MTL_ERR_INVALID_ARGUMENT, "conv2d: option 'out'");
    h_int(&h, "out", 4);
    ck_assert_err(try_setup(&h, 25, 0, 0), MTL_ERR_SHAPE,
                  "conv2d: input has 1 dimension(s) per sample, expected 3");
    ck_assert_err(try_setup(&h, 1, 2, 5), MTL_ERR_SHAPE,
                  "conv2d: kernel 3x3 (dilation 1x1, spanning 3x3) is larger than the padded "
                  "input 2x5 (input 2x5, padding 0x0)");
    h_int(&h, "dilation_w", 3);
    ck_assert_err(try_setup(&h, 1, 5, 5), MTL_ERR_SHAPE, "spanning 3x7");
    ck_assert_err(try_setup(&h, 1, 5, 5), MTL_ERR_SHAPE, "padded input 5x5");
    h_int(&h, "padding", 1);
    ck_assert_ok(try_setup(&h, 1, 5, 5)); /* 7 columns after padding: exactly one window */
    ck_assert_int_eq(h.l.out_dims[2], 1);
    ck_assert_ok(try_setup(&h, 1, 5, 6));
    ck_assert_int_eq(h.l.out_dims[1], 5);
    ck_assert_int_eq(h.l.out_dims[2], 2);
    h.l.opts.stride[0] = -3; /* set directly, bypassing the setter */
    ck_assert_err(try_setup(&h, 1, 5, 6), MTL_ERR_RANGE, "'stride_h'");
    h_kind(&h, "conv2d");
    h_int(&h, "out", 4);
    ck_assert_err(try_setup(&h, 1, 5, 5), MTL_ERR_INVALID_ARGUMENT, "'kernel'");
    h_int(&h, "kernel", 3);
    ck_assert_err(try_setup(&h, (int64_t)1 << 33, 4, 4), MTL_ERR_RANGE, "input dimension 0");

    h_kind(&h, "max_pool2d");
    ck_assert_err(try_setup(&h, 1, 4, 4), MTL_ERR_INVALID_ARGUMENT, "max_pool2d: option 'kernel'");
    h_int(&h, "kernel", 3);
    h_int(&h, "padding", 2);
    ck_assert_err(try_setup(&h, 1, 4, 4), MTL_ERR_RANGE,
                  "max_pool2d: padding 2x2 must be at most half the kernel 3x3");
    h_int(&h, "padding", 0);
    ck_assert_err(try_setup(&h, 1, 2, 4), MTL_ERR_SHAPE, "max_pool2d: kernel 3x3");
    ck_assert_err(try_setup(&h, 4, 4, 0), MTL_ERR_SHAPE, "max_pool2d: input has 2 dimension");
    ck_assert_ok(try_setup(&h, 1, 3, 7));
    ck_assert_int_eq(h.l.out_dims[1], 1); /* stride defaults to the kernel */
    ck_assert_int_eq(h.l.out_dims[2], 2);
    h_kind(&h, "avg_pool2d");
    h_int(&h, "kernel", 2);
    ck_assert_err(try_setup(&h, 3, 1, 9), MTL_ERR_SHAPE, "avg_pool2d: kernel 2x2");

    h_kind(&h, "dropout2d");
    ck_assert_err(try_setup(&h, 8, 0, 0), MTL_ERR_SHAPE, "dropout2d: input has 1 dimension");
    h.l.opts.p = 1.0;
    ck_assert_err(try_setup(&h, 2, 3, 3), MTL_ERR_RANGE, "dropout2d: option 'p'");
    h_kind(&h, "batch_norm2d");
    ck_assert_err(try_setup(&h, 2, 3, 0), MTL_ERR_SHAPE, "batch_norm2d: input has 2");
    float one[18] = {0};
    ck_assert_ok(try_setup(&h, 2, 3, 3));
    ck_assert_ok(mtli_layer_check_input(&h.l, one, 1, true)); /* 9 values per channel */
    ck_assert_ok(try_setup(&h, 2, 1, 1)); /* 1x1 maps need a batch > 1 in training */
    ck_assert_err(mtli_layer_check_input(&h.l, one, 1, true), MTL_ERR_SHAPE,
                  "more than 1 value per channel");
    ck_assert_ok(mtli_layer_check_input(&h.l, one, 1, false));
    h_kind(&h, "flatten");
    ck_assert_ok(try_setup(&h, 7, 0, 0));
    ck_assert_int_eq(h.l.out_dims[0], 7);

    const mtli_layer_ops *found;
    ck_assert_err(mtli_layer_lookup("conv3d", &found), MTL_ERR_INVALID_ARGUMENT,
                  "batch_norm2d"); /* the message lists every kind */
}
END_TEST

/* ---- a convolutional model through the public API ----------------------------------------- */

#define IMG 12
#define NTRAIN 128

/* A bright 3x3 square on faint noise; task "lr": the square is in the right half; task
 * "tb": it is in the bottom half. */
static void make_images(float *x, int32_t *lr, int32_t *tb, size_t n, mtli_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        float *im = x + i * IMG * IMG;
        for (size_t p = 0; p < IMG * IMG; p++)
            im[p] = 0.2f * mtli_rng_uniform(r);
        size_t row = (size_t)mtli_rng_below(r, IMG - 2), colm = (size_t)mtli_rng_below(r, IMG - 2);
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 3; b++)
                im[(row + a) * IMG + colm + b] = 1.0f;
        lr[i] = colm + 1 >= IMG / 2;
        tb[i] = row + 1 >= IMG / 2;
    }
}

START_TEST(conv_model_trains_through_public_api)
{
    mtl_model *m;
    int64_t shape[3] = {1, IMG, IMG};
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 3, shape));
    mtl_trunk *t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_layer(t, "conv2d", NULL));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "out", 6));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "kernel", 3));
    ck_assert_ok(mtl_trunk_add_layer(t, "relu", NULL));
    ck_assert_ok(mtl_trunk_add_layer(t, "max_pool2d", NULL));
    ck_assert_ok(mtl_trunk_set_int(t, -1, "kernel", 2));
    ck_assert_ok(mtl_trunk_add_layer(t, "flatten", NULL));
    ck_assert_ok(mtl_trunk_add_linear(t, 16));
    ck_assert_ok(mtl_trunk_add_layer(t, "relu", NULL));
    const char *tasks[2] = {"lr", "tb"};
    for (int k = 0; k < 2; k++) {
        mtl_head *h;
        ck_assert_ok(mtl_model_add_head(m, &h, tasks[k]));
        ck_assert_ok(mtl_head_add_linear(h, 2));
        ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    }
    ck_assert_ok(mtl_model_build(m, 32, 1));
    ck_assert_int_eq(mtl_trunk_output_size(t), 16);
    int64_t ps[4];
    int nd;
    ck_assert_ok(mtl_model_param_shape(m, "trunk.0.weight", ps, 4, &nd));
    ck_assert_int_eq(nd, 4);
    ck_assert(ps[0] == 6 && ps[1] == 1 && ps[2] == 3 && ps[3] == 3);
    ck_assert_ok(mtl_model_param_shape(m, "trunk.4.weight", ps, 4, &nd)); /* 6*5*5 -> 16 */
    ck_assert(nd == 2 && ps[0] == 16 && ps[1] == 150);

    mtl_optimizer *opt;
    ck_assert_ok(mtl_optimizer_create(&opt, m, "adam"));
    ck_assert_ok(mtl_optimizer_set_double(opt, "lr", 0.01));
    float *x = malloc(NTRAIN * IMG * IMG * sizeof(float));
    int32_t lr[NTRAIN], tb[NTRAIN];
    mtli_rng r;
    mtli_rng_seed(&r, 4);
    make_images(x, lr, tb, NTRAIN, &r);
    double first = 0.0, last = 0.0;
    const int epochs = 15, steps = NTRAIN / 32;
    for (int e = 0; e < epochs; e++) {
        double sum = 0.0;
        for (int s = 0; s < steps; s++) {
            int64_t xs[4] = {32, 1, IMG, IMG}, ys[1] = {32};
            mtl_tensor *tx, *ta, *tb_;
            ck_assert_ok(mtl_tensor_wrap(&tx, MTL_FLOAT32, x + (size_t)s * 32 * IMG * IMG, 4, xs));
            ck_assert_ok(mtl_tensor_wrap(&ta, MTL_INT32, lr + s * 32, 1, ys));
            ck_assert_ok(mtl_tensor_wrap(&tb_, MTL_INT32, tb + s * 32, 1, ys));
            const mtl_tensor *targets[2] = {ta, tb_};
            float losses[2];
            ck_assert_ok(mtl_model_train_step(m, opt, NULL, tx, targets, NULL, losses));
            sum += losses[0] + losses[1];
            mtl_tensor_free(tx);
            mtl_tensor_free(ta);
            mtl_tensor_free(tb_);
        }
        if (e == 0)
            first = sum / steps;
        last = sum / steps;
    }
    /* two binary tasks start near 2 ln 2 = 1.39 */
    ck_assert_msg(first > 1.0, "first epoch loss %g", first);
    ck_assert_msg(last < 0.25 * first, "loss %g after %d epochs, %g in the first", last, epochs,
                  first);
    free(x);
    mtl_optimizer_free(opt);
    mtl_model_free(m);

    /* a kernel larger than the input fails the build, naming the layer and the sizes */
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 3, shape));
    t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_layer(t, "conv2d", NULL));
    ck_assert_ok(mtl_trunk_set_int(t, 0, "out", 2));
    ck_assert_ok(mtl_trunk_set_int(t, 0, "kernel", 13));
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "a"));
    ck_assert_ok(mtl_head_add_linear(h, 2));
    ck_assert_err(mtl_model_build(m, 4, 1), MTL_ERR_SHAPE, "layer 0 (conv2d)");
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "kernel 13x13"));
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "input 12x12"));
    mtl_model_free(m);
}
END_TEST

static Suite *vision_suite(void)
{
    Suite *s = suite_create("vision");
    TCase *g = tcase_create("gradients");
    tcase_add_test(g, grad_conv2d);
    tcase_add_test(g, grad_conv2d_direct);
    tcase_add_test(g, grad_pools);
    tcase_add_test(g, max_pool2d_ties_and_nan_as_pytorch);
    tcase_add_test(g, flatten_shape_values_gradient);
    tcase_add_test(g, dropout2d_drops_whole_channels);
    suite_add_tcase(s, g);
    TCase *v = tcase_create("values");
    tcase_add_test(v, conv2d_matches_direct_convolution);
    tcase_add_test(v, conv2d_scratch_bounded_by_chunk);
    tcase_add_test(v, conv2d_routes_match_direct_convolution);
    tcase_add_test(v, conv2d_forward_matches_pytorch);
    tcase_add_test(v, pool_forward_matches_pytorch);
    tcase_add_test(v, batch_norm2d_matches_pytorch);
    tcase_add_test(v, im2col_col2im_adjoint);
    suite_add_tcase(s, v);
    TCase *c = tcase_create("contracts");
    tcase_add_test(c, registered_deterministic_accumulating);
    tcase_add_test(c, conv2d_params_and_default_init);
    tcase_add_test(c, option_and_shape_errors);
    tcase_add_test(c, conv_model_trains_through_public_api);
    suite_add_tcase(s, c);
    return s;
}

MTL_TEST_MAIN(vision_suite)
