/* Sequences: lstm and gru layers (finite-difference gradient checks over directions, pooling
 * modes and padded batches; forward values and gradients against PyTorch's nn.LSTM / nn.GRU
 * with pack_padded_sequence; packed-sequence semantics), the sequence embedding, linear per
 * position, token-level heads and their cross-entropy through the public API, and the
 * entity-level F1 of BIO tags. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mtl/mtl.h>

#include "core/rng.h"
#include "layers/layer.h"
#include "losses/loss.h"
#include "test_main.h"
#include "test_oom.h"

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
    const int32_t *lengths;
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

static void h_str(H *h, const char *key, const char *v)
{
    ck_assert_ok(mtli_layer_set_string(h->l.ops, &h->l.opts, key, v));
}

static void h_setup(H *h, int ndim, int64_t d0, int64_t d1, size_t maxB, uint64_t seed)
{
    mtli_layer *l = &h->l;
    l->in_ndim = ndim;
    l->in_dims[0] = d0;
    l->in_dims[1] = d1;
    l->in_dims[2] = 0;
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

static void h_fwd(H *h, const float *x, float *y, size_t B)
{
    mtli_rng r;
    mtli_rng_seed(&r, 1);
    mtli_fwd f = {.x = x, .y = y, .B = B, .train = true, .scratch = h->scratch, .rng = &r,
                  .lengths = h->lengths};
    h->l.ops->forward(&h->l, &f);
}

static void h_bwd(H *h, const float *x, const float *y, const float *dy, float *dx, size_t B)
{
    mtli_bwd b = {.x = x, .y = y, .dy = dy, .dx = dx, .dparams = h->grads, .B = B,
                  .scratch = h->scratch, .lengths = h->lengths};
    h->l.ops->backward(&h->l, &b);
}

static float *fvec(size_t n) { return calloc(n + 1, sizeof(float)); }

static void fill_uniform(float *x, size_t n, float lo, float hi, mtli_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * mtli_rng_uniform(r);
}

static size_t in_n(const H *h, size_t B) { return B * h->l.in_features; }
static size_t out_n(const H *h, size_t B) { return B * h->l.out_features; }

/* a recurrent layer of the given kind over [L, E] samples */
static void rnn_make(H *h, const char *kind, int64_t L, int64_t E, int64_t hidden, int bidir,
                     const char *pooling, int bias, size_t maxB, uint64_t seed)
{
    h_kind(h, kind);
    h_int(h, "hidden", hidden);
    h_int(h, "bidirectional", bidir);
    h_str(h, "pooling", pooling);
    h_int(h, "bias", bias);
    h_setup(h, 2, L, E, maxB, seed);
}

/* ---- finite-difference gradient check ---------------------------------------------------- */

/* Objective sum(y * R) accumulated in double. Central differences with step FD_EPS in float
 * (the step actually taken is used); analytic a and numeric n must satisfy
 * |a - n| <= FD_ATOL + FD_RTOL * max(|a|, |n|). */
#define FD_EPS 1e-3f
#define FD_RTOL 1e-2
#define FD_ATOL 1e-3

typedef struct {
    H *h;
    float *x, *y, *R;
    size_t B;
} gc_ctx;

static double gc_loss(gc_ctx *c)
{
    h_fwd(c->h, c->x, c->y, c->B);
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

static double gc_compare(const char *what, const char *kind, size_t i, double a, double n)
{
    double err = fabs(a - n), scale = fmax(fabs(a), fabs(n));
    ck_assert_msg(err <= FD_ATOL + FD_RTOL * scale, "%s %s[%zu]: analytic %.7g, numeric %.7g",
                  kind, what, i, a, n);
    return err / (FD_ATOL + FD_RTOL * scale);
}

/* Check dx and every parameter on a batch of B samples of [L, E] (h->lengths set by the
 * caller, or NULL). dx at padded positions must be exactly 0. Returns the largest fraction
 * of the tolerance used. */
static double gradcheck(H *h, size_t B, uint64_t seed)
{
    mtli_rng r;
    mtli_rng_seed(&r, seed);
    size_t nin = in_n(h, B), nout = out_n(h, B), np = h->l.nparams;
    size_t L = (size_t)h->l.in_dims[0], E = (size_t)h->l.in_dims[1];
    gc_ctx c = {.h = h, .x = fvec(nin), .y = fvec(nout), .R = fvec(nout), .B = B};
    fill_uniform(c.x, nin, -1.5f, 1.5f, &r);
    fill_uniform(c.R, nout, -1.0f, 1.0f, &r);
    fill_uniform(h->params, np, -0.8f, 0.8f, &r);
    float *dx = fvec(nin);
    for (size_t i = 0; i < nin; i++)
        dx[i] = 12345.0f;
    memset(h->grads, 0, np * sizeof(float));
    h_fwd(h, c.x, c.y, B);
    h_bwd(h, c.x, c.y, c.R, dx, B);
    char what[64];
    snprintf(what, sizeof what, "%s(bi=%d, pooling=%d)", h->l.ops->kind, h->l.opts.bidirectional,
             h->l.opts.rnn_pooling);
    double worst = 0.0;
    for (size_t b = 0; b < B; b++) {
        size_t n = h->lengths ? (size_t)h->lengths[b] : L;
        for (size_t t = n; t < L; t++)
            for (size_t e = 0; e < E; e++)
                ck_assert_msg(dx[(b * L + t) * E + e] == 0.0f,
                              "%s: dx at padded sample %zu, position %zu is %g", what, b, t,
                              (double)dx[(b * L + t) * E + e]);
    }
    for (size_t i = 0; i < nin; i++)
        worst = fmax(worst, gc_compare("dx", what, i, dx[i], gc_numeric(&c, &c.x[i])));
    for (size_t i = 0; i < np; i++)
        worst = fmax(worst,
                     gc_compare("dparam", what, i, h->grads[i], gc_numeric(&c, &h->params[i])));
    free(c.x);
    free(c.y);
    free(c.R);
    free(dx);
    return worst;
}

static const char *const poolings[4] = {"none", "last", "mean", "sum"};

START_TEST(grad_rnn)
{
    /* kind = _i: lstm, gru; every direction count, pooling and bias setting, on a padded
     * batch (lengths 5, 2, 4, 1) and on a full one (no lengths) */
    const char *kind = _i ? "gru" : "lstm";
    static const int32_t lens[4] = {5, 2, 4, 1};
    double worst = 0.0;
    int ncase = 0;
    for (int bi = 0; bi < 2; bi++)
        for (int p = 0; p < 4; p++)
            for (int padded = 0; padded < 2; padded++) {
                H h;
                rnn_make(&h, kind, 5, 3, 3, bi, poolings[p], !(p == 1 && padded), 4, 9);
                h.lengths = padded ? lens : NULL;
                worst = fmax(worst, gradcheck(&h, 4, 40 + (uint64_t)(bi * 8 + p * 2 + padded)));
                h_free(&h);
                ncase++;
            }
    ck_assert_int_eq(ncase, 16);
    if (getenv("MTL_TEST_VERBOSE"))
        fprintf(stderr, "%s gradient check: at most %.3g of the tolerance used\n", kind, worst);
}
END_TEST

/* ---- PyTorch parity ---------------------------------------------------------------------- */

/* Generated with /usr/bin/python3 and torch 1.13 (B=3, L=4, E=3, H=2, lengths 4, 2, 3,
 * bidirectional; the padded inputs are not zero, so the packing must ignore them):
 *
 *   import numpy as np, torch
 *   B, L, E, H = 3, 4, 3, 2
 *   lengths = [4, 2, 3]
 *   x = np.array([np.sin(0.9 * i + 0.2) for i in range(B * L * E)], dtype=np.float64)
 *   x = torch.tensor(x.reshape(B, L, E), dtype=torch.float32)
 *   def run(cls):
 *       m = cls(E, H, batch_first=True, bidirectional=True)
 *       with torch.no_grad():
 *           for q, (name, p) in enumerate(m.named_parameters()):
 *               k = np.arange(p.numel(), dtype=np.float64)
 *               p.copy_(torch.tensor(0.4 * np.sin(0.7 * k + 1.3 * q + 0.5),
 *                                    dtype=torch.float32).view_as(p))
 *       xg = x.clone().requires_grad_(True)
 *       packed = torch.nn.utils.rnn.pack_padded_sequence(
 *           xg, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
 *       out, hn = m(packed)
 *       if isinstance(hn, tuple): hn = hn[0]
 *       out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=L)
 *       last = torch.cat([hn[0], hn[1]], -1)
 *       mean = out.sum(1) / torch.tensor(lengths, dtype=torch.float32)[:, None]
 *       R = torch.tensor(np.cos(0.3 * np.arange(out.numel())),
 *                        dtype=torch.float32).view_as(out)
 *       (out * R).sum().backward()
 *       g = dict(m.named_parameters())
 *       return (out, last, mean, xg.grad, g["weight_ih_l0"].grad,
 *               g["weight_hh_l0_reverse"].grad, g["bias_hh_l0"].grad)
 *   for cls in (torch.nn.LSTM, torch.nn.GRU): print the seven tensors of run(cls) flat
 *   (torch_<kind>_out, _last, _mean, _dx, _dwih, _dwhh_rev, _dbhh below) */
static const float torch_lstm_out[48] = {
    -6.17847741e-02f, 1.72459353e-02f, -7.52002150e-02f, -2.53897309e-01f, 5.65224104e-02f,
    1.84500054e-01f, -2.09933519e-01f, 5.11695482e-02f, -2.66362950e-02f, 1.37330472e-01f,
    -2.37046525e-01f, -1.15528867e-01f, 1.32033512e-01f, 1.22866429e-01f, -2.01729648e-02f,
    -3.65388766e-02f, -1.14426911e-02f, 1.30479395e-01f, -2.72163659e-01f, -4.72401939e-02f,
    1.09354481e-01f, 5.74701503e-02f, 6.05042204e-02f, -2.70443618e-01f, 0.00000000e+00f,
    0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f,
    0.00000000e+00f, 0.00000000e+00f, 7.21265078e-02f, 1.84839502e-01f, -2.13200077e-01f,
    5.33640906e-02f, -1.90391932e-02f, 1.36102855e-01f, -2.28330687e-01f, -1.19996659e-01f,
    1.31697491e-01f, 1.29220918e-01f, -2.65078731e-02f, -2.10076366e-02f, 0.00000000e+00f,
    0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f
};
static const float torch_lstm_last[12] = {
    1.32033512e-01f, 1.22866429e-01f, -7.52002150e-02f, -2.53897309e-01f, 1.09354481e-01f,
    5.74701503e-02f, -2.72163659e-01f, -4.72401939e-02f, 1.31697491e-01f, 1.29220918e-01f,
    -2.13200077e-01f, 5.33640906e-02f
};
static const float torch_lstm_mean[12] = {
    2.50337124e-02f, 1.15485720e-01f, -1.35588303e-01f, -8.86988714e-02f, 4.89558950e-02f,
    9.39747691e-02f, -1.05829716e-01f, -1.58841908e-01f, 6.15949333e-02f, 1.50054410e-01f,
    -1.56012878e-01f, -2.92134006e-02f
};
static const float torch_lstm_dx[36] = {
    1.08502053e-01f, -3.70762721e-02f, -1.65217027e-01f, 2.45666001e-02f, 4.31613252e-02f,
    4.14566137e-02f, -1.10089496e-01f, 1.07704908e-01f, 2.74844021e-01f, -1.93242952e-02f,
    6.94490597e-02f, 1.25559419e-01f, 5.72945625e-02f, -7.90691748e-02f, -1.78245455e-01f,
    2.67039277e-02f, -9.99521762e-02f, -1.79599196e-01f, 0.00000000e+00f, 0.00000000e+00f,
    0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f, -7.32550547e-02f,
    1.58544220e-02f, 9.75073054e-02f, -2.24983655e-02f, -6.33553416e-02f, -7.44153038e-02f,
    -2.17315126e-02f, -1.40329495e-01f, -1.92928314e-01f, 0.00000000e+00f, 0.00000000e+00f,
    0.00000000e+00f
};
static const float torch_lstm_dwih[24] = {
    8.09632987e-03f, 6.45897835e-02f, 7.22029731e-02f, -1.13720499e-01f, -8.66283942e-03f,
    1.02950677e-01f, 9.92795359e-03f, -6.70446968e-03f, -1.82630830e-02f, 5.40288165e-02f,
    3.02247573e-02f, -1.64528098e-02f, 4.75330174e-01f, 6.32673860e-01f, 3.11222523e-01f,
    1.90810412e-01f, 3.80048215e-01f, 2.81673163e-01f, 9.50851664e-03f, 2.91527472e-02f,
    2.67347489e-02f, 2.57501956e-02f, 2.97499951e-02f, 1.12355892e-02f
};
static const float torch_lstm_dwhh_rev[16] = {
    -1.28814355e-02f, 1.09681711e-02f, 2.22214963e-02f, -6.44601882e-03f, 4.87233978e-03f,
    -7.29245972e-03f, -7.27154640e-03f, 8.96507967e-03f, -4.48517390e-02f, 1.42541109e-02f,
    1.20788701e-02f, -1.07942978e-02f, -2.22485270e-02f, 1.20207435e-03f, 1.07178781e-02f,
    3.83771351e-03f
};
static const float torch_lstm_dbhh[8] = {
    -1.93007402e-02f, -3.93964574e-02f, -1.43090375e-02f, 2.32577845e-02f, 4.21372443e-01f,
    1.99128270e-01f, -1.02218986e-02f, -3.61803919e-02f
};
static const float torch_gru_out[48] = {
    -1.89103618e-01f, -6.62578344e-02f, -1.01741977e-01f, -3.74820024e-01f, 9.24794227e-02f,
    2.67790735e-01f, -4.54691291e-01f, 8.02543461e-02f, -1.74494237e-01f, 3.03070933e-01f,
    -3.64044428e-01f, -3.17589253e-01f, 2.06271604e-01f, 7.54015073e-02f, -3.15229669e-02f,
    -1.30236834e-01f, -1.33156374e-01f, 4.36357379e-01f, -3.28199148e-01f, -1.18233584e-01f,
    9.38504711e-02f, 1.09688759e-01f, 1.66877314e-01f, -4.20001984e-01f, 0.00000000e+00f,
    0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f,
    0.00000000e+00f, 0.00000000e+00f, 1.88749805e-01f, 3.18163514e-01f, -4.57545161e-01f,
    9.51538980e-02f, -1.28448486e-01f, 3.16716731e-01f, -3.54160309e-01f, -3.19175422e-01f,
    2.29917660e-01f, 9.45694149e-02f, -4.81786653e-02f, -1.04900338e-01f, 0.00000000e+00f,
    0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f
};
static const float torch_gru_last[12] = {
    2.06271604e-01f, 7.54015073e-02f, -1.01741977e-01f, -3.74820024e-01f, 9.38504711e-02f,
    1.09688759e-01f, -3.28199148e-01f, -1.18233584e-01f, 2.29917660e-01f, 9.45694149e-02f,
    -4.57545161e-01f, 9.51538980e-02f
};
static const float torch_gru_mean[12] = {
    -1.62117071e-02f, 1.45001337e-01f, -2.38000169e-01f, -1.85597956e-01f, -1.96529515e-02f,
    2.73023069e-01f, -8.06609169e-02f, -2.69117773e-01f, 9.67396572e-02f, 2.43149877e-01f,
    -2.86628038e-01f, -1.09640621e-01f
};
static const float torch_gru_dx[36] = {
    2.16894075e-01f, 6.22817576e-02f, -1.21622622e-01f, 1.49221972e-01f, 1.78395003e-01f,
    1.23666056e-01f, 3.54507267e-02f, 2.74850458e-01f, 3.84983689e-01f, -1.41930461e-01f,
    1.14647947e-01f, 3.17305624e-01f, -2.04544798e-01f, -4.20130968e-01f, -4.38122988e-01f,
    3.65498811e-01f, 1.13573655e-01f, -1.91766992e-01f, 0.00000000e+00f, 0.00000000e+00f,
    0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f, 0.00000000e+00f, -3.54137085e-02f,
    1.78831756e-01f, 3.08969826e-01f, -1.42595708e-01f, -1.68182582e-01f, -1.14670575e-01f,
    6.21087998e-02f, -2.29920015e-01f, -4.13813859e-01f, 0.00000000e+00f, 0.00000000e+00f,
    0.00000000e+00f
};
static const float torch_gru_dwih[18] = {
    9.40530896e-02f, 1.08370878e-01f, 4.06757407e-02f, 5.47408126e-03f, 6.12334423e-02f,
    7.06525445e-02f, 2.00955793e-02f, -9.22769606e-02f, -1.34816140e-01f, 3.95361036e-01f,
    2.42927730e-01f, -9.33484137e-02f, 7.36035228e-01f, 1.25676191e+00f, 8.26395869e-01f,
    1.03207648e-01f, 6.93116426e-01f, 7.58488536e-01f
};
static const float torch_gru_dwhh_rev[12] = {
    -7.35119567e-04f, -2.71034474e-03f, 1.94456661e-04f, -5.46800345e-03f, 7.55189136e-02f,
    -4.08493951e-02f, -1.00966774e-01f, 3.72369029e-02f, -1.19796731e-01f, 7.58491755e-02f,
    4.02652696e-02f, -3.92245129e-04f
};
static const float torch_gru_dbhh[6] = {
    4.55790237e-02f, 1.03153363e-02f, 4.26815897e-02f, 2.13091210e-01f, 3.87956709e-01f,
    -1.22949705e-02f
};

typedef struct {
    const float *out, *last, *mean, *dx, *dwih, *dwhh_rev, *dbhh;
} torch_ref;

static void assert_near(const char *what, const float *got, const float *want, size_t n,
                        double tol)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - (double)want[i]) <= tol * (1.0 + fabs(want[i])),
                      "%s[%zu]: got %.8g, PyTorch %.8g", what, i, (double)got[i],
                      (double)want[i]);
}

/* The parameter tensors of a layer in its desc order (PyTorch's named_parameters order),
 * filled 0.4 sin(0.7 k + 1.3 q + 0.5) for element k of tensor q. */
static void torch_weights(H *h)
{
    for (int q = 0; q < h->l.ndesc; q++) {
        const mtli_param_desc *d = &h->l.desc[q];
        for (size_t k = 0; k < d->count; k++)
            h->params[d->offset + k] = (float)(0.4 * sin(0.7 * (double)k + 1.3 * q + 0.5));
    }
}

static const float *param_grad(const H *h, const char *name)
{
    for (int q = 0; q < h->l.ndesc; q++)
        if (strcmp(h->l.desc[q].name, name) == 0)
            return h->grads + h->l.desc[q].offset;
    ck_abort_msg("no parameter %s", name);
    return NULL;
}

START_TEST(rnn_matches_pytorch)
{
    const torch_ref refs[2] = {
        {torch_lstm_out, torch_lstm_last, torch_lstm_mean, torch_lstm_dx, torch_lstm_dwih,
         torch_lstm_dwhh_rev, torch_lstm_dbhh},
        {torch_gru_out, torch_gru_last, torch_gru_mean, torch_gru_dx, torch_gru_dwih,
         torch_gru_dwhh_rev, torch_gru_dbhh}};
    const size_t B = 3, L = 4, E = 3, Hd = 2, G[2] = {4, 3};
    static const int32_t lens[3] = {4, 2, 3};
    float x[36], y[48], R[48], dx[36];
    for (size_t i = 0; i < B * L * E; i++)
        x[i] = (float)sin(0.9 * (double)i + 0.2);
    for (size_t i = 0; i < 48; i++)
        R[i] = (float)cos(0.3 * (double)i);
    for (int k = 0; k < 2; k++) {
        const char *kind = k ? "gru" : "lstm";
        const torch_ref *ref = &refs[k];
        for (int p = 0; p < 3; p++) {
            H h;
            rnn_make(&h, kind, (int64_t)L, (int64_t)E, (int64_t)Hd, 1, poolings[p], 1, B, 1);
            torch_weights(&h);
            h.lengths = lens;
            h_fwd(&h, x, y, B);
            char what[48];
            snprintf(what, sizeof what, "%s pooling %s", kind, poolings[p]);
            const float *want = p == 0 ? ref->out : p == 1 ? ref->last : ref->mean;
            assert_near(what, y, want, out_n(&h, B), 1e-5);
            if (p == 0) { /* gradients of sum(out * R) */
                h_bwd(&h, x, y, R, dx, B);
                assert_near("dx", dx, ref->dx, B * L * E, 1e-5);
                assert_near("weight_ih_l0 grad", param_grad(&h, "weight_ih_l0"), ref->dwih,
                            G[k] * Hd * E, 1e-5);
                assert_near("weight_hh_l0_reverse grad", param_grad(&h, "weight_hh_l0_reverse"),
                            ref->dwhh_rev, G[k] * Hd * Hd, 1e-5);
                assert_near("bias_hh_l0 grad", param_grad(&h, "bias_hh_l0"), ref->dbhh,
                            G[k] * Hd, 1e-5);
            }
            h_free(&h);
        }
    }
}
END_TEST

/* ---- packed-sequence semantics ----------------------------------------------------------- */

START_TEST(padded_batch_equals_each_sequence_alone)
{
    /* kind = _i; bidirectional, every pooling: sample b of a padded batch gives the output,
     * input gradient and (summed) parameter gradients of the same sequence run alone at its
     * own length, whatever the padded positions hold */
    const char *kind = _i ? "gru" : "lstm";
    const size_t B = 3, L = 6, E = 3, Hd = 4;
    static const int32_t lens[3] = {6, 2, 4};
    mtli_rng r;
    mtli_rng_seed(&r, 77);
    for (int p = 0; p < 4; p++) {
        H h;
        rnn_make(&h, kind, (int64_t)L, (int64_t)E, (int64_t)Hd, 1, poolings[p], 1, B, 5);
        h.lengths = lens;
        size_t nout = out_n(&h, B), W = 2 * Hd, np = h.l.nparams;
        float *x = fvec(B * L * E), *y = fvec(nout), *dy = fvec(nout), *dx = fvec(B * L * E);
        fill_uniform(x, B * L * E, -1, 1, &r);
        fill_uniform(dy, nout, -1, 1, &r);
        for (size_t b = 0; b < B; b++) /* padded positions hold junk */
            for (size_t t = (size_t)lens[b]; t < L; t++)
                for (size_t e = 0; e < E; e++)
                    x[(b * L + t) * E + e] = 100.0f + (float)e;
        h_fwd(&h, x, y, B);
        h_bwd(&h, x, y, dy, dx, B);
        float *gsum = fvec(np);
        for (size_t b = 0; b < B; b++) {
            size_t n = (size_t)lens[b];
            H a;
            rnn_make(&a, kind, (int64_t)n, (int64_t)E, (int64_t)Hd, 1, poolings[p], 1, 1, 5);
            ck_assert_uint_eq(a.l.nparams, np);
            memcpy(a.params, h.params, np * sizeof(float));
            size_t aout = out_n(&a, 1);
            float *ya = fvec(aout), *dya = fvec(aout), *dxa = fvec(n * E);
            /* the sequence's own slice of dy (its valid positions for "none") */
            const float *dyb = p == 0 ? dy + b * L * W : dy + b * W;
            memcpy(dya, dyb, aout * sizeof(float));
            h_fwd(&a, x + b * L * E, ya, 1);
            h_bwd(&a, x + b * L * E, ya, dya, dxa, 1);
            const float *yb = p == 0 ? y + b * L * W : y + b * W;
            for (size_t i = 0; i < aout; i++)
                ck_assert_msg(fabsf(yb[i] - ya[i]) <= 1e-6f, "%s %s: sample %zu output %zu: "
                              "%.8g batched, %.8g alone", kind, poolings[p], b, i,
                              (double)yb[i], (double)ya[i]);
            if (p == 0) /* and zeros past the length */
                for (size_t i = aout; i < L * W; i++)
                    ck_assert(yb[i] == 0.0f);
            for (size_t i = 0; i < n * E; i++)
                ck_assert_msg(fabsf(dx[b * L * E + i] - dxa[i]) <= 1e-6f,
                              "%s %s: sample %zu dx %zu: %.8g batched, %.8g alone", kind,
                              poolings[p], b, i, (double)dx[b * L * E + i], (double)dxa[i]);
            for (size_t i = 0; i < np; i++)
                gsum[i] += a.grads[i];
            free(ya);
            free(dya);
            free(dxa);
            h_free(&a);
        }
        for (size_t i = 0; i < np; i++)
            ck_assert_msg(fabsf(gsum[i] - h.grads[i]) <= 1e-5f * (1.0f + fabsf(gsum[i])),
                          "%s %s: param grad %zu: %.8g batched, %.8g summed alone", kind,
                          poolings[p], i, (double)h.grads[i], (double)gsum[i]);
        free(gsum);
        free(x);
        free(y);
        free(dy);
        free(dx);
        h_free(&h);
    }
}
END_TEST

START_TEST(backward_is_repeatable)
{
    /* backward may run several times per forward (one per task in the per-task-gradient
     * engine): the second run gives the same gradients */
    H h;
    rnn_make(&h, "lstm", 4, 2, 3, 1, "none", 1, 2, 3);
    static const int32_t lens[2] = {4, 3};
    h.lengths = lens;
    float x[16], y[48], dy[48], dx1[16], dx2[16];
    mtli_rng r;
    mtli_rng_seed(&r, 2);
    fill_uniform(x, 16, -1, 1, &r);
    fill_uniform(dy, 48, -1, 1, &r);
    h_fwd(&h, x, y, 2);
    h_bwd(&h, x, y, dy, dx1, 2);
    float *g1 = fvec(h.l.nparams);
    memcpy(g1, h.grads, h.l.nparams * sizeof(float));
    memset(h.grads, 0, h.l.nparams * sizeof(float));
    h_bwd(&h, x, y, dy, dx2, 2);
    ck_assert(memcmp(dx1, dx2, sizeof dx1) == 0);
    ck_assert(memcmp(g1, h.grads, h.l.nparams * sizeof(float)) == 0);
    free(g1);
    h_free(&h);
}
END_TEST

/* ---- setup, options, names --------------------------------------------------------------- */

START_TEST(rnn_setup_names_and_init)
{
    H h;
    rnn_make(&h, "lstm", 7, 5, 3, 1, "none", 1, 2, 11);
    ck_assert_int_eq(h.l.out_ndim, 2);
    ck_assert(h.l.out_dims[0] == 7 && h.l.out_dims[1] == 6);
    ck_assert_int_eq(h.l.ndesc, 8);
    static const char *names[8] = {"weight_ih_l0",         "weight_hh_l0",
                                   "bias_ih_l0",           "bias_hh_l0",
                                   "weight_ih_l0_reverse", "weight_hh_l0_reverse",
                                   "bias_ih_l0_reverse",   "bias_hh_l0_reverse"};
    static const int64_t rows[8] = {12, 12, 12, 12, 12, 12, 12, 12};
    static const int64_t cols[8] = {5, 3, 0, 0, 5, 3, 0, 0};
    for (int q = 0; q < 8; q++) {
        ck_assert_str_eq(h.l.desc[q].name, names[q]);
        ck_assert_int_eq(h.l.desc[q].shape[0], rows[q]);
        ck_assert_int_eq(h.l.desc[q].ndim, cols[q] ? 2 : 1);
        if (cols[q])
            ck_assert_int_eq(h.l.desc[q].shape[1], cols[q]);
        ck_assert(h.l.desc[q].no_decay == (cols[q] == 0));
    }
    ck_assert_uint_eq(h.l.nparams, 2 * (12 * 5 + 12 * 3 + 24));
    /* U(-1/sqrt(H), 1/sqrt(H)) as PyTorch, and actually spread over it */
    double bound = 1.0 / sqrt(3.0), lo = 1, hi = -1;
    for (size_t i = 0; i < h.l.nparams; i++) {
        ck_assert(fabs(h.params[i]) <= bound);
        lo = fmin(lo, h.params[i]);
        hi = fmax(hi, h.params[i]);
    }
    ck_assert(lo < -0.8 * bound && hi > 0.8 * bound);
    h_free(&h);

    rnn_make(&h, "gru", 7, 5, 3, 0, "last", 0, 2, 11);
    ck_assert_int_eq(h.l.out_ndim, 1);
    ck_assert_int_eq(h.l.out_dims[0], 3);
    ck_assert_int_eq(h.l.ndesc, 2);
    ck_assert_int_eq(h.l.desc[0].shape[0], 9);
    ck_assert_uint_eq(h.l.nparams, 9 * 5 + 9 * 3);
    h_free(&h);

    /* errors */
    h_kind(&h, "lstm");
    h.l.in_ndim = 2;
    h.l.in_dims[0] = 4;
    h.l.in_dims[1] = 3;
    ck_assert_err(h.l.ops->setup(&h.l), MTL_ERR_INVALID_ARGUMENT, "lstm: option 'hidden'");
    h_int(&h, "hidden", 2);
    h.l.in_ndim = 1;
    ck_assert_err(h.l.ops->setup(&h.l), MTL_ERR_SHAPE, "lstm: input must be a sequence");
    h.l.in_ndim = 3;
    h.l.in_dims[1] = 3;
    h.l.in_dims[2] = 2;
    ck_assert_err(h.l.ops->setup(&h.l), MTL_ERR_SHAPE, "3 dimensions");
    ck_assert_err(mtli_layer_set_string(h.l.ops, &h.l.opts, "pooling", "max"),
                  MTL_ERR_INVALID_ARGUMENT, "unknown value 'max'");
    ck_assert_err(mtli_layer_set_int(h.l.ops, &h.l.opts, "hidden", 0), MTL_ERR_RANGE, "hidden");
    ck_assert_err(mtli_layer_set_int(h.l.ops, &h.l.opts, "bidirectional", 2), MTL_ERR_RANGE,
                  "0 or 1");
    ck_assert_err(mtli_layer_set_int(h.l.ops, &h.l.opts, "out", 2), MTL_ERR_INVALID_ARGUMENT,
                  "not used by kind 'lstm'");
    ck_assert_int_eq(mtli_layer_key_type(mtli_layer_find("gru"), "pooling"), MTLI_KEY_STRING);
    ck_assert_int_eq(mtli_layer_key_type(mtli_layer_find("gru"), "hidden"), MTLI_KEY_INT);
    /* the embedding takes "none" but not the recurrent modes */
    const mtli_layer_ops *emb = mtli_layer_find("embedding");
    mtli_layer_opts o;
    mtli_layer_opts_default(&o);
    ck_assert_ok(mtli_layer_set_string(emb, &o, "pooling", "none"));
    ck_assert_int_eq(o.pooling, MTLI_POOL_NONE);
    ck_assert_err(mtli_layer_set_string(emb, &o, "pooling", "last"), MTL_ERR_INVALID_ARGUMENT,
                  "unknown value 'last'");
}
END_TEST

/* ---- sequence embedding ------------------------------------------------------------------ */

static void put_id(float *x, size_t i, int32_t id) { memcpy(x + i, &id, sizeof id); }

START_TEST(sequence_embedding)
{
    H h;
    h_kind(&h, "embedding");
    h_int(&h, "num_embeddings", 6);
    h_int(&h, "out", 2);
    h_str(&h, "pooling", "none");
    h_setup(&h, 1, 4, 0, 3, 1);
    ck_assert_int_eq(h.l.out_ndim, 2);
    ck_assert(h.l.out_dims[0] == 4 && h.l.out_dims[1] == 2);
    ck_assert(mtli_embedding_is_sequence(&h.l));
    for (int i = 0; i < 12; i++)
        h.params[i] = (float)(i + 1);
    static const int32_t ids[12] = {1, 5, 0, -1, 2, -1, -1, -1, 3, 3, 4, 0};
    float x[12], y[24], dy[24];
    for (int i = 0; i < 12; i++)
        put_id(x, (size_t)i, ids[i]);
    ck_assert_ok(mtli_layer_check_input(&h.l, x, 3, true));
    h_fwd(&h, x, y, 3);
    for (int i = 0; i < 12; i++)
        for (int d = 0; d < 2; d++)
            ck_assert(y[i * 2 + d] == (ids[i] < 0 ? 0.0f : h.params[ids[i] * 2 + d]));
    const int32_t *len = mtli_embedding_lengths(&h.l, h.scratch);
    ck_assert_ptr_nonnull(len);
    ck_assert(len[0] == 3 && len[1] == 1 && len[2] == 4);
    for (int i = 0; i < 24; i++)
        dy[i] = (float)(i % 5) - 2.0f;
    h_bwd(&h, x, y, dy, NULL, 3);
    for (int v = 0; v < 6; v++)
        for (int d = 0; d < 2; d++) {
            float want = 0.0f;
            for (int i = 0; i < 12; i++)
                if (ids[i] == v)
                    want += dy[i * 2 + d];
            ck_assert(h.grads[v * 2 + d] == want);
        }
    /* a sample is ids then padding only, with at least one id */
    put_id(x, 6, 4); /* sample 1: 2, -1, 4, -1 */
    ck_assert_err(mtli_layer_check_input(&h.l, x, 3, true), MTL_ERR_INVALID_ARGUMENT,
                  "sample 1, position 2 has id 4 after padding at position 1");
    put_id(x, 6, -1);
    put_id(x, 4, -1);
    ck_assert_err(mtli_layer_check_input(&h.l, x, 3, true), MTL_ERR_INVALID_ARGUMENT,
                  "sample 1 is empty");
    put_id(x, 4, 6);
    ck_assert_err(mtli_layer_check_input(&h.l, x, 3, true), MTL_ERR_INVALID_ARGUMENT,
                  "expected -1 (padding) or 0..5");
    /* only a pooling-"none" embedding over [L] ids is a sequence embedding */
    ck_assert_ptr_null(mtli_embedding_lengths(NULL, h.scratch));
    h_free(&h);
    h_kind(&h, "embedding");
    h_int(&h, "num_embeddings", 6);
    h_int(&h, "out", 2);
    h_setup(&h, 1, 4, 0, 3, 1);
    ck_assert(!mtli_embedding_is_sequence(&h.l));
    ck_assert_ptr_null(mtli_embedding_lengths(&h.l, h.scratch));
    h_free(&h);
    h_kind(&h, "embedding");
    h_int(&h, "num_embeddings", 6);
    h_int(&h, "out", 2);
    h_str(&h, "pooling", "none");
    h.l.in_ndim = 2;
    h.l.in_dims[0] = 2;
    h.l.in_dims[1] = 2;
    ck_assert_err(h.l.ops->setup(&h.l), MTL_ERR_SHAPE, "pooling 'none' needs ids [L]");
}
END_TEST

/* ---- linear per position ----------------------------------------------------------------- */

START_TEST(linear_per_position)
{
    H h;
    h_kind(&h, "linear");
    h_int(&h, "out", 3);
    h_setup(&h, 2, 4, 5, 2, 3);
    ck_assert_int_eq(h.l.out_ndim, 2);
    ck_assert(h.l.out_dims[0] == 4 && h.l.out_dims[1] == 3);
    ck_assert_int_eq(h.l.desc[0].shape[0], 3);
    ck_assert_int_eq(h.l.desc[0].shape[1], 5);
    ck_assert_uint_eq(h.l.nparams, 18);
    /* kaiming_uniform(a=sqrt(5)) over fan_in = 5: |w| <= 1/sqrt(5) */
    for (size_t i = 0; i < 15; i++)
        ck_assert(fabs(h.params[i]) <= 1.0 / sqrt(5.0));
    mtli_rng r;
    mtli_rng_seed(&r, 5);
    float x[40], y[24];
    fill_uniform(x, 40, -1, 1, &r);
    h_fwd(&h, x, y, 2);
    for (size_t row = 0; row < 8; row++)
        for (size_t o = 0; o < 3; o++) {
            double s = h.params[15 + o];
            for (size_t k = 0; k < 5; k++)
                s += (double)h.params[o * 5 + k] * x[row * 5 + k];
            ck_assert_msg(fabs(y[row * 3 + o] - s) < 1e-5, "row %zu out %zu", row, o);
        }
    double worst = gradcheck(&h, 2, 8);
    ck_assert(worst <= 1.0);
    h_free(&h);
    /* [C, H, W] is still flattened */
    h_kind(&h, "linear");
    h_int(&h, "out", 3);
    h.l.in_ndim = 3;
    h.l.in_dims[0] = 2;
    h.l.in_dims[1] = 2;
    h.l.in_dims[2] = 2;
    ck_assert_ok(h.l.ops->setup(&h.l));
    ck_assert_int_eq(h.l.out_ndim, 1);
    ck_assert_int_eq(h.l.desc[0].shape[1], 8);
}
END_TEST

/* ---- token-level heads through the public API -------------------------------------------- */

#define SB 3
#define SL 5
#define NTAG 3

/* trunk: sequence embedding -> bidirectional kind (per-token states); head "tags": linear to
 * NTAG classes per token (token-level cross_entropy); head "sent": gru with mean pooling ->
 * linear to 2 classes (sequence-level) */
static mtl_status build_seq_model(mtl_model **out, const char *kind, uint64_t seed)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {SL};
    mtl_status st = mtl_model_create(&m, MTL_INT32, 1, shape);
    mtl_trunk *t = m ? mtl_model_trunk(m) : NULL;
    mtl_head *h1 = NULL, *h2 = NULL;
    if (st == MTL_OK)
        st = mtl_trunk_add_layer(t, "embedding", NULL);
    if (st == MTL_OK)
        st = mtl_trunk_set_int(t, -1, "num_embeddings", 7);
    if (st == MTL_OK)
        st = mtl_trunk_set_int(t, -1, "out", 4);
    if (st == MTL_OK)
        st = mtl_trunk_set_string(t, -1, "pooling", "none");
    if (st == MTL_OK)
        st = mtl_trunk_add_layer(t, kind, NULL);
    if (st == MTL_OK)
        st = mtl_trunk_set_int(t, -1, "hidden", 3);
    if (st == MTL_OK)
        st = mtl_trunk_set_int(t, -1, "bidirectional", 1);
    if (st == MTL_OK)
        st = mtl_model_add_head(m, &h1, "tags");
    if (st == MTL_OK)
        st = mtl_head_add_linear(h1, NTAG);
    if (st == MTL_OK)
        st = mtl_head_set_loss(h1, "cross_entropy");
    if (st == MTL_OK)
        st = mtl_model_add_head(m, &h2, "sent");
    if (st == MTL_OK)
        st = mtl_head_add_layer(h2, "gru", NULL);
    if (st == MTL_OK)
        st = mtl_head_set_int(h2, -1, "hidden", 3);
    if (st == MTL_OK)
        st = mtl_head_set_string(h2, -1, "pooling", "mean");
    if (st == MTL_OK)
        st = mtl_head_add_linear(h2, 2);
    if (st == MTL_OK)
        st = mtl_head_set_loss(h2, "cross_entropy");
    if (st == MTL_OK)
        st = mtl_model_build(m, 4, seed);
    if (st != MTL_OK) {
        mtl_model_free(m);
        m = NULL;
    }
    *out = m;
    return st;
}

/* lengths 5, 3, 1 */
static const int32_t seq_ids[SB * SL] = {1, 2, 3, 4, 5, 6, 0, 2, -1, -1, 3, -1, -1, -1, -1};
static const int32_t seq_tags[SB * SL] = {0, 1, 2, 0, 1, 2, 2, 0, -1, -1, 1, -1, -1, -1, -1};
static const int32_t seq_sent[SB] = {1, 0, 1};

typedef struct {
    int32_t ids[SB * SL], tags[SB * SL], sent[SB];
    mtl_tensor *x, *yt, *ys;
    const mtl_tensor *targets[2];
} seq_batch;

static void batch_init(seq_batch *b)
{
    memcpy(b->ids, seq_ids, sizeof b->ids);
    memcpy(b->tags, seq_tags, sizeof b->tags);
    memcpy(b->sent, seq_sent, sizeof b->sent);
    int64_t xs[2] = {SB, SL}, ss[1] = {SB};
    ck_assert_ok(mtl_tensor_wrap(&b->x, MTL_INT32, b->ids, 2, xs));
    ck_assert_ok(mtl_tensor_wrap(&b->yt, MTL_INT32, b->tags, 2, xs));
    ck_assert_ok(mtl_tensor_wrap(&b->ys, MTL_INT32, b->sent, 1, ss));
    b->targets[0] = b->yt;
    b->targets[1] = b->ys;
}

static void batch_free(seq_batch *b)
{
    mtl_tensor_free(b->x);
    mtl_tensor_free(b->yt);
    mtl_tensor_free(b->ys);
}

static double total_loss(mtl_model *m, seq_batch *b)
{
    float l[2];
    ck_assert_ok(mtl_model_compute_losses(m, b->x, b->targets, NULL, l));
    return (double)l[0] + (double)l[1];
}

START_TEST(token_head_loss_and_outputs)
{
    mtl_model *m;
    ck_assert_ok(build_seq_model(&m, _i ? "gru" : "lstm", 3));
    ck_assert_int_eq(mtl_head_output_size(mtl_model_head(m, "tags")), SL * NTAG);
    ck_assert_int_eq(mtl_trunk_output_size(mtl_model_trunk(m)), SL * 6);
    int64_t ps[4];
    int nd;
    ck_assert_ok(mtl_model_param_shape(m, "trunk.1.weight_hh_l0_reverse", ps, 4, &nd));
    ck_assert(nd == 2 && ps[0] == (_i ? 9 : 12) && ps[1] == 3);
    ck_assert_ok(mtl_model_param_shape(m, "heads.tags.0.weight", ps, 4, &nd));
    ck_assert(nd == 2 && ps[0] == NTAG && ps[1] == 6);
    seq_batch b;
    batch_init(&b);
    float losses[2];
    ck_assert_ok(mtl_model_compute_losses(m, b.x, b.targets, NULL, losses));
    ck_assert_ok(mtl_model_predict(m, b.x));
    float raw[SB * SL * NTAG], prob[SB * SL * NTAG];
    mtl_tensor *traw, *tprob;
    int64_t os[2] = {SB, SL * NTAG};
    ck_assert_ok(mtl_tensor_wrap(&traw, MTL_FLOAT32, raw, 2, os));
    ck_assert_ok(mtl_tensor_wrap(&tprob, MTL_FLOAT32, prob, 2, os));
    ck_assert_ok(mtl_model_output(m, 0, traw, MTL_OUTPUT_RAW));
    ck_assert_ok(mtl_model_output(m, 0, tprob, MTL_OUTPUT_PROBABILITIES));
    /* the mean over the 9 valid tokens of -log softmax, by hand */
    double sum = 0.0;
    int n = 0;
    for (int i = 0; i < SB * SL; i++) {
        const float *z = raw + i * NTAG;
        double mx = fmax(z[0], fmax(z[1], z[2])), s = 0.0, ps_ = 0.0;
        for (int c = 0; c < NTAG; c++) {
            s += exp(z[c] - mx);
            ps_ += prob[i * NTAG + c];
        }
        ck_assert_msg(fabs(ps_ - 1.0) < 1e-6, "token %d probabilities sum to %g", i, ps_);
        if (seq_tags[i] < 0)
            continue;
        sum += mx + log(s) - z[seq_tags[i]];
        n++;
    }
    ck_assert_int_eq(n, 9);
    ck_assert_msg(fabs(losses[0] - sum / n) < 1e-5 * (sum / n), "loss %g, by hand %g",
                  (double)losses[0], sum / n);
    /* the loss function itself: the B*L rows with ignore -1, as flattened cross_entropy */
    mtli_loss L = {.kind = MTLI_LOSS_CROSS_ENTROPY};
    double lt, lf;
    size_t ct, cf;
    float gt[SB * SL * NTAG], gf[SB * SL * NTAG];
    mtl_tensor *flat;
    int64_t fs[1] = {SB * SL};
    ck_assert_ok(mtl_tensor_wrap(&flat, MTL_INT32, (void *)seq_tags, 1, fs));
    ck_assert_ok(mtli_loss_check_tokens(&L, "t", SB, SL, NTAG, b.yt, NULL));
    mtli_loss_eval_tokens(&L, raw, SB, SL, NTAG, b.yt, NULL, &lt, gt, 1.0f, &ct);
    mtli_loss_eval(&L, raw, SB * SL, NTAG, flat, NULL, &lf, gf, 1.0f, &cf);
    ck_assert(lt == lf && ct == 9 && cf == 9);
    ck_assert(memcmp(gt, gf, sizeof gt) == 0);
    for (int i = 0; i < SB * SL; i++) /* padded tokens get no gradient */
        if (seq_tags[i] < 0)
            for (int c = 0; c < NTAG; c++)
                ck_assert(gt[i * NTAG + c] == 0.0f);
    ck_assert_err(mtli_loss_check_tokens(&L, "t", SB, SL, NTAG, flat, NULL), MTL_ERR_SHAPE,
                  "expected [3, 5]");
    mtli_loss Lm = {.kind = MTLI_LOSS_MSE};
    ck_assert_err(mtli_loss_check_tokens(&Lm, "t", SB, SL, NTAG, b.yt, NULL),
                  MTL_ERR_UNSUPPORTED, "need cross_entropy");
    mtl_tensor_free(flat);
    mtl_tensor_free(traw);
    mtl_tensor_free(tprob);
    batch_free(&b);
    mtl_model_free(m);
}
END_TEST

START_TEST(token_model_gradients)
{
    /* end to end through the stacks: embedding rows, the recurrent trunk over lengths 5, 3, 1,
     * both heads; central differences of the summed losses over a spread of elements of every
     * parameter tensor (step 5e-3 in float; |a - n| <= 2e-3 + 2e-2 max(|a|, |n|)) */
    mtl_model *m;
    ck_assert_ok(build_seq_model(&m, _i ? "gru" : "lstm", 21));
    seq_batch b;
    batch_init(&b);
    ck_assert_ok(mtl_model_forward_backward(m, NULL, b.x, b.targets, NULL, NULL));
    int np = mtl_model_param_count(m), checked = 0;
    for (int p = 0; p < np; p++) {
        const char *name = mtl_model_param_name(m, p);
        int64_t shape[4];
        int nd;
        ck_assert_ok(mtl_model_param_shape(m, name, shape, 4, &nd));
        int64_t cnt = 1;
        for (int d = 0; d < nd; d++)
            cnt *= shape[d];
        float *w = malloc((size_t)cnt * sizeof(float)), *g = malloc((size_t)cnt * sizeof(float));
        mtl_tensor *tw, *tg;
        ck_assert_ok(mtl_tensor_wrap(&tw, MTL_FLOAT32, w, 1, &cnt));
        ck_assert_ok(mtl_tensor_wrap(&tg, MTL_FLOAT32, g, 1, &cnt));
        ck_assert_ok(mtl_model_get_param(m, name, tw));
        ck_assert_ok(mtl_model_get_grad(m, name, tg));
        int64_t step = cnt > 6 ? cnt / 6 : 1;
        for (int64_t k = 0; k < cnt; k += step) {
            const float eps = 5e-3f, keep = w[k];
            w[k] = keep + eps;
            ck_assert_ok(mtl_model_set_param(m, name, tw));
            double lp = total_loss(m, &b);
            w[k] = keep - eps;
            ck_assert_ok(mtl_model_set_param(m, name, tw));
            double lm = total_loss(m, &b);
            w[k] = keep;
            ck_assert_ok(mtl_model_set_param(m, name, tw));
            double num = (lp - lm) / ((double)(keep + eps) - (double)(keep - eps));
            double err = fabs(num - g[k]), scale = fmax(fabs(num), fabs(g[k]));
            ck_assert_msg(err <= 2e-3 + 2e-2 * scale, "%s[%lld]: analytic %.6g, numeric %.6g",
                          name, (long long)k, (double)g[k], num);
            checked++;
        }
        /* embedding rows of ids that do not occur get nothing */
        if (strcmp(name, "trunk.0.weight") == 0)
            ck_assert(g[0 * 4] != 0.0f); /* id 0 occurs */
        mtl_tensor_free(tw);
        mtl_tensor_free(tg);
        free(w);
        free(g);
    }
    ck_assert_int_ge(checked, 40);
    batch_free(&b);
    mtl_model_free(m);
}
END_TEST

START_TEST(token_targets_and_sequence_errors)
{
    mtl_model *m;
    ck_assert_ok(build_seq_model(&m, "lstm", 5));
    seq_batch b;
    batch_init(&b);
    float losses[2];
    /* a padding position must be labelled -1 */
    b.tags[8] = 0;
    ck_assert_err(mtl_model_compute_losses(m, b.x, b.targets, NULL, losses),
                  MTL_ERR_INVALID_ARGUMENT,
                  "head 'tags': sample 1, position 3 is padding (input id -1) but its target "
                  "is 0, expected -1");
    b.tags[8] = -1;
    b.tags[2] = 3;
    ck_assert_err(mtl_model_compute_losses(m, b.x, b.targets, NULL, losses),
                  MTL_ERR_INVALID_ARGUMENT, "sample 0, position 2 is class 3, expected 0..2");
    b.tags[2] = 2;
    /* token targets are [B, L] */
    mtl_tensor *flat;
    int64_t fs[1] = {SB};
    ck_assert_ok(mtl_tensor_wrap(&flat, MTL_INT32, b.sent, 1, fs));
    const mtl_tensor *bad[2] = {flat, b.ys};
    ck_assert_err(mtl_model_compute_losses(m, b.x, bad, NULL, losses), MTL_ERR_SHAPE,
                  "task 'tags': token-level cross_entropy target has shape [3], expected [3, 5]");
    mtl_tensor_free(flat);
    /* sequences: ids then padding only, never empty */
    b.ids[9] = 3;
    ck_assert_err(mtl_model_compute_losses(m, b.x, b.targets, NULL, losses),
                  MTL_ERR_INVALID_ARGUMENT, "position 4 has id 3 after padding at position 3");
    b.ids[9] = -1;
    b.ids[10] = -1;
    b.tags[10] = -1;
    ck_assert_err(mtl_model_predict(m, b.x), MTL_ERR_INVALID_ARGUMENT, "sample 2 is empty");
    b.ids[10] = 3;
    b.tags[10] = 1;
    /* a mask drops whole samples: the same as labelling their tokens -1 */
    float mask[SB] = {1, 0, 1};
    mtl_tensor *tm;
    ck_assert_ok(mtl_tensor_wrap(&tm, MTL_FLOAT32, mask, 1, fs));
    const mtl_tensor *masks[2] = {tm, NULL};
    float lmask[2], lneg[2];
    b.tags[5] = 7; /* masked out: not even checked */
    ck_assert_ok(mtl_model_compute_losses(m, b.x, b.targets, masks, lmask));
    for (int t = 5; t < 10; t++)
        b.tags[t] = -1;
    ck_assert_ok(mtl_model_compute_losses(m, b.x, b.targets, NULL, lneg));
    ck_assert(lmask[0] == lneg[0]);
    /* the multi-input step takes the same targets */
    memcpy(b.tags, seq_tags, sizeof b.tags);
    float lm[2], lc[2];
    const mtl_tensor *inputs[2] = {b.x, b.x};
    ck_assert_ok(mtl_model_forward_backward_multi(m, NULL, inputs, b.targets, NULL, lm));
    ck_assert_ok(mtl_model_compute_losses(m, b.x, b.targets, NULL, lc));
    ck_assert(fabsf(lm[0] - lc[0]) < 1e-6f && fabsf(lm[1] - lc[1]) < 1e-6f);
    mtl_tensor_free(tm);
    batch_free(&b);
    mtl_model_free(m);
}
END_TEST

START_TEST(evaluate_token_head)
{
    /* mtl_evaluate scores a token-level head per token: its loss and accuracy over the 9
     * valid tokens, in batches of 2 */
    mtl_model *m;
    ck_assert_ok(build_seq_model(&m, "lstm", 8));
    seq_batch b;
    batch_init(&b);
    float losses[2];
    ck_assert_ok(mtl_model_compute_losses(m, b.x, b.targets, NULL, losses));
    ck_assert_ok(mtl_model_predict(m, b.x));
    float raw[SB * SL * NTAG];
    mtl_tensor *traw;
    int64_t os[2] = {SB, SL * NTAG};
    ck_assert_ok(mtl_tensor_wrap(&traw, MTL_FLOAT32, raw, 2, os));
    ck_assert_ok(mtl_model_output(m, 0, traw, MTL_OUTPUT_RAW));
    int ok = 0;
    for (int i = 0; i < SB * SL; i++) {
        if (seq_tags[i] < 0)
            continue;
        const float *z = raw + i * NTAG;
        int best = z[1] > z[0] ? 1 : 0;
        best = z[2] > z[best] ? 2 : best;
        ok += best == seq_tags[i];
    }
    mtl_dataset *ds;
    ck_assert_ok(mtl_dataset_create(&ds, b.x, 2));
    ck_assert_ok(mtl_dataset_set_target(ds, 0, b.yt));
    ck_assert_ok(mtl_dataset_set_target(ds, 1, b.ys));
    mtl_eval_result *r;
    ck_assert_ok(mtl_evaluate(&r, m, (const mtl_dataset *const *)&ds, 1, 2, "val", NULL));
    double v;
    ck_assert_ok(mtl_eval_result_get(r, "val.tags.loss", &v));
    ck_assert_msg(fabs(v - losses[0]) < 1e-6 * (1 + fabs(v)), "loss %g, step %g", v,
                  (double)losses[0]);
    ck_assert_ok(mtl_eval_result_get(r, "val.tags.accuracy", &v));
    ck_assert_msg(fabs(v - ok / 9.0) < 1e-12, "accuracy %g, by hand %d/9", v, ok);
    ck_assert_ok(mtl_eval_result_get(r, "val.sent.accuracy", &v));
    mtl_eval_result_free(r);
    /* the padding rule holds there too */
    b.tags[14] = 1;
    ck_assert_err(mtl_evaluate(&r, m, (const mtl_dataset *const *)&ds, 1, 2, "val", NULL),
                  MTL_ERR_INVALID_ARGUMENT, "sample 2, position 4 is padding");
    mtl_dataset_free(ds);
    mtl_tensor_free(traw);
    batch_free(&b);
    mtl_model_free(m);
}
END_TEST

static mtl_status oom_build(void *ctx)
{
    (void)ctx;
    mtl_model *m;
    mtl_status st = build_seq_model(&m, "lstm", 1);
    mtl_model_free(m);
    return st;
}

START_TEST(sequence_model_build_oom)
{
    ck_assert_int_gt(mtl_test_oom_sweep(oom_build, NULL), 10);
}
END_TEST

/* ---- entity-level F1 --------------------------------------------------------------------- */

static const char *const tagset[7] = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC",
                                      "I-MISC"};
enum { O_, BP, IP, BL, IL, BM, IM };

static double ef1(const int32_t *pred, const int32_t *truth, int64_t B, int64_t L)
{
    mtl_tensor *tp, *tt;
    int64_t s[2] = {B, L};
    ck_assert_ok(mtl_tensor_wrap(&tp, MTL_INT32, (void *)pred, 2, s));
    ck_assert_ok(mtl_tensor_wrap(&tt, MTL_INT32, (void *)truth, 2, s));
    double f = -1;
    ck_assert_ok(mtl_metric_entity_f1(&f, tp, tt, tagset, 7));
    mtl_tensor_free(tp);
    mtl_tensor_free(tt);
    return f;
}

START_TEST(entity_f1_cases)
{
    /* seqeval's README example (its f1_score gives 0.50): true MISC[3..5], PER[0..1]; the
     * prediction's MISC starts one token early */
    static const int32_t t1[14] = {O_, O_, O_, BM, IM, IM, O_, BP, IP, O_, -1, -1, -1, -1};
    static const int32_t p1[14] = {O_, O_, BM, IM, IM, IM, O_, BP, IP, O_, BL, IL, O_, O_};
    ck_assert(fabs(ef1(p1, t1, 2, 7) - 0.5) < 1e-12);
    ck_assert(ef1(t1, t1, 2, 7) == 1.0);
    /* I- after O starts an entity (conlleval): I-PER I-PER matches B-PER I-PER */
    static const int32_t t2[3] = {BP, IP, O_}, p2[3] = {IP, IP, O_};
    ck_assert(ef1(p2, t2, 1, 3) == 1.0);
    /* a type change splits: PER[0] LOC[1] against PER[0..1]: P = 0/2, R = 0/1 */
    static const int32_t p3[3] = {BP, IL, O_};
    ck_assert(ef1(p3, t2, 1, 3) == 0.0);
    /* 3 true, 3 predicted, 2 correct (the LOC span is one token too long): 2/3 */
    static const int32_t t4[6] = {BP, IP, O_, BL, O_, BP}, p4[6] = {BP, IP, O_, BL, IL, BP};
    ck_assert(fabs(ef1(p4, t4, 1, 6) - 2.0 / 3.0) < 1e-12);
    /* B- B- are two entities; an entity at the end closes there; unequal counts:
     * true PER[0], PER[1], LOC[3..4]; predicted PER[0..1], LOC[3..4]: P = 1/2, R = 1/3 */
    static const int32_t t5[5] = {BP, BP, O_, BL, IL}, p5[5] = {BP, IP, O_, BL, IL};
    ck_assert(fabs(ef1(p5, t5, 1, 5) - 2.0 * 0.5 / 3.0 / (0.5 + 1.0 / 3.0)) < 1e-12);
    /* entities never cross samples: PER[last of sample 0] and I-PER at the start of sample
     * 1 are two entities on both sides */
    static const int32_t t6[4] = {O_, BP, IP, O_}, p6[4] = {O_, BP, IP, O_};
    ck_assert(ef1(p6, t6, 2, 2) == 1.0);
    static const int32_t p6b[4] = {O_, BP, O_, O_}; /* PER[1] right, sample 1's missed */
    ck_assert(fabs(ef1(p6b, t6, 2, 2) - 2.0 / 3.0) < 1e-12);
    /* no entity anywhere: 0 */
    static const int32_t t7[3] = {O_, O_, O_};
    ck_assert(ef1(t7, t7, 1, 3) == 0.0);
    /* -1 positions are skipped: the tokens around one join */
    static const int32_t t8[4] = {BP, -1, IP, O_}, p8[4] = {BP, BL, IP, O_};
    ck_assert(ef1(p8, t8, 1, 4) == 1.0);

    /* scores [B, L, C]: the argmax of each row */
    float sc[14 * 7];
    for (int i = 0; i < 14; i++)
        for (int c = 0; c < 7; c++)
            sc[i * 7 + c] = c == p1[i] ? 2.0f : (float)c * 0.1f;
    mtl_tensor *ts, *tt;
    int64_t s3[3] = {2, 7, 7}, s2[2] = {2, 7};
    ck_assert_ok(mtl_tensor_wrap(&ts, MTL_FLOAT32, sc, 3, s3));
    ck_assert_ok(mtl_tensor_wrap(&tt, MTL_INT32, (void *)t1, 2, s2));
    double f;
    ck_assert_ok(mtl_metric_entity_f1(&f, ts, tt, tagset, 7));
    ck_assert(fabs(f - 0.5) < 1e-12);
    ck_assert_err(mtl_metric_entity_f1(&f, ts, tt, tagset, 6), MTL_ERR_SHAPE, "6 tags");
    sc[3] = NAN;
    ck_assert_err(mtl_metric_entity_f1(&f, ts, tt, tagset, 7), MTL_ERR_NUMERIC, "NaN");
    mtl_tensor_free(ts);

    /* IOBES: S- and E- */
    static const char *const iobes[5] = {"O", "B-PER", "I-PER", "E-PER", "S-PER"};
    static const int32_t t9[5] = {1, 2, 3, 4, 0}, p9[5] = {1, 3, 4, 4, 0};
    /* true PER[0..2], PER[3]; predicted PER[0..1], PER[2], PER[3]: P = 1/3, R = 1/2 */
    mtl_tensor *tp, *tq;
    int64_t s1[1] = {5};
    ck_assert_ok(mtl_tensor_wrap(&tp, MTL_INT32, (void *)p9, 1, s1));
    ck_assert_ok(mtl_tensor_wrap(&tq, MTL_INT32, (void *)t9, 1, s1));
    ck_assert_ok(mtl_metric_entity_f1(&f, tp, tq, iobes, 5));
    ck_assert(fabs(f - 2.0 * (1.0 / 3.0) * 0.5 / (1.0 / 3.0 + 0.5)) < 1e-12);

    /* errors */
    static const char *const badtags[2] = {"O", "PER"};
    ck_assert_err(mtl_metric_entity_f1(&f, tp, tq, badtags, 2), MTL_ERR_INVALID_ARGUMENT,
                  "tag 1 is 'PER'");
    ck_assert_err(mtl_metric_entity_f1(&f, tq, tq, iobes, 4), MTL_ERR_RANGE,
                  "true tag [0, 3] is 4");
    ck_assert_err(mtl_metric_entity_f1(&f, tp, tq, iobes, 0), MTL_ERR_INVALID_ARGUMENT,
                  "ntags");
    ck_assert_err(mtl_metric_entity_f1(NULL, tp, tq, iobes, 5), MTL_ERR_INVALID_ARGUMENT,
                  "'f1'");
    ck_assert_err(mtl_metric_entity_f1(&f, tp, tt, iobes, 5), MTL_ERR_SHAPE, "shape");
    static const int32_t neg[5] = {-1, -1, -1, -1, -1};
    mtl_tensor *tn;
    ck_assert_ok(mtl_tensor_wrap(&tn, MTL_INT32, (void *)neg, 1, s1));
    ck_assert_err(mtl_metric_entity_f1(&f, tp, tn, iobes, 5), MTL_ERR_INVALID_ARGUMENT,
                  "no valid token");
    static const int32_t p10[5] = {1, 2, 9, 0, 0};
    mtl_tensor *tb;
    ck_assert_ok(mtl_tensor_wrap(&tb, MTL_INT32, (void *)p10, 1, s1));
    ck_assert_err(mtl_metric_entity_f1(&f, tb, tq, iobes, 5), MTL_ERR_RANGE, "class 9");
    mtl_tensor_free(tb);
    mtl_tensor_free(tn);
    mtl_tensor_free(tp);
    mtl_tensor_free(tq);
    mtl_tensor_free(tt);
}
END_TEST

typedef struct {
    mtl_tensor *p, *t;
} f1_ctx;

static mtl_status oom_f1(void *ctx)
{
    f1_ctx *c = ctx;
    double f;
    return mtl_metric_entity_f1(&f, c->p, c->t, tagset, 7);
}

START_TEST(entity_f1_oom)
{
    static const int32_t t[3] = {BP, IP, O_};
    f1_ctx c;
    int64_t s[1] = {3};
    ck_assert_ok(mtl_tensor_wrap(&c.p, MTL_INT32, (void *)t, 1, s));
    ck_assert_ok(mtl_tensor_wrap(&c.t, MTL_INT32, (void *)t, 1, s));
    ck_assert_int_eq(mtl_test_oom_sweep(oom_f1, &c), 1);
    mtl_tensor_free(c.p);
    mtl_tensor_free(c.t);
}
END_TEST

static Suite *sequence_suite(void)
{
    Suite *s = suite_create("sequence");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, grad_rnn, 0, 2);
    tcase_add_test(tc, rnn_matches_pytorch);
    tcase_add_loop_test(tc, padded_batch_equals_each_sequence_alone, 0, 2);
    tcase_add_test(tc, backward_is_repeatable);
    tcase_add_test(tc, rnn_setup_names_and_init);
    tcase_add_test(tc, sequence_embedding);
    tcase_add_test(tc, linear_per_position);
    tcase_add_loop_test(tc, token_head_loss_and_outputs, 0, 2);
    tcase_add_loop_test(tc, token_model_gradients, 0, 2);
    tcase_add_test(tc, token_targets_and_sequence_errors);
    tcase_add_test(tc, evaluate_token_head);
    tcase_add_test(tc, sequence_model_build_oom);
    tcase_add_test(tc, entity_f1_cases);
    tcase_add_test(tc, entity_f1_oom);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(sequence_suite)
