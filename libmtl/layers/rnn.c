/* Recurrent layers: lstm and gru, as torch.nn.LSTM / torch.nn.GRU with batch_first=True and
 * one layer (stack several for depth), over padded batches with PyTorch's packed-sequence
 * semantics: sample b is run at its own length n_b (mtli_fwd.lengths; the full L when NULL),
 * so the result equals running each sequence alone. Padded steps neither update the state
 * nor receive gradient.
 *
 * Input [L, E] per sample. Output by the "pooling" option: none (default) [L, H*dirs], the
 * per-token states (forward direction in columns 0..H-1, backward direction after it, zeros
 * at padding), as nn.LSTM's output; last [H*dirs]: the forward state at token n_b-1 and the
 * backward state at token 0 (torch.cat([h_n[0], h_n[1]], -1)); mean / sum over the n_b valid
 * tokens of the per-token states.
 *
 * Parameters, named and laid out as PyTorch's so they exchange by name: per direction
 * weight_ih_l0 [G*H, E], weight_hh_l0 [G*H, H], bias_ih_l0 [G*H], bias_hh_l0 [G*H] (no biases
 * with bias 0), with the suffix "_reverse" for the backward direction; G = 4 gates i, f, g, o
 * for the LSTM and G = 3 gates r, z, n for the GRU. All initialised U(-1/sqrt(H), 1/sqrt(H)).
 *
 *   LSTM  i, f, o = sigmoid(W_i* x + b_i* + W_h* h + b_h*), g = tanh(...),
 *         c' = f c + i g, h' = o tanh(c')
 *   GRU   r, z = sigmoid(W_i* x + b_i* + W_h* h + b_h*),
 *         n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h
 *
 * Computation per direction: the input projections of all B*L positions are ONE GEMM
 * ([B*L, E] x W_ih^T); each step is one GEMM over the batch for the recurrent part (rows of
 * step t are strided views of the [B, L, ...] buffers). Backward runs through time with one
 * GEMM per step for the state gradient, then dW_ih, dW_hh and dx are one GEMM each over all
 * B*L positions (the previous states are kept per position for that).
 *
 * Scratch for batch B (BL = B*L, GH = G*H): per direction, kept from forward to backward,
 * A [BL, GH] (gate activations), HS [BL, H] (h_t), HP [BL, H] (the state each step started
 * from), X2 [BL, H] (LSTM: c_t; GRU: W_hn h + b_hn); then, written by backward only, per
 * direction dG [BL, GH] (and for the GRU dGh [BL, GH], the gradient of the recurrent
 * pre-activations, which differs in the n gate); and a temporary [B, GH + 2H]. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/gemm.h"
#include "layers/layer.h"

typedef struct {
    size_t L, E, H, G, GH, dirs;
    bool gru, bias;
} rnn_dims;

static void dims_of(const mtli_layer *l, rnn_dims *d)
{
    d->gru = l->ops == &mtli_gru_ops;
    d->L = (size_t)l->in_dims[0];
    d->E = (size_t)l->in_dims[1];
    d->H = (size_t)l->opts.hidden;
    d->G = d->gru ? 3 : 4;
    d->GH = d->G * d->H;
    d->dirs = l->opts.bidirectional ? 2 : 1;
    d->bias = l->opts.bias != 0;
}

/* Floats of one direction's parameters. */
static size_t dir_params(const rnn_dims *d)
{
    return d->GH * d->E + d->GH * d->H + (d->bias ? 2 * d->GH : 0);
}

static mtl_status rnn_setup(mtli_layer *l)
{
    const char *kind = l->ops->kind;
    MTLI_TRY(mtli_layer_setup_input(l));
    if (l->in_ndim != 2)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: input must be a sequence [L, features] per sample, it has %d "
                          "dimension%s (use an embedding with pooling \"none\", or a [L, F] "
                          "input)",
                          kind, l->in_ndim, l->in_ndim == 1 ? "" : "s");
    if (l->opts.hidden < 1 || l->opts.hidden > INT32_MAX)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: option 'hidden' (hidden size) must be set to 1..%d, got %lld",
                          kind, INT32_MAX, (long long)l->opts.hidden);
    rnn_dims d;
    dims_of(l, &d);
    int64_t width = (int64_t)(d.dirs * d.H);
    if (l->opts.rnn_pooling == MTLI_RNN_NONE) {
        size_t n;
        if (!mtli_mul_size(d.L, (size_t)width, &n))
            return mtli_error(MTL_ERR_RANGE, "%s: output of %zu x %lld is too large", kind, d.L,
                              (long long)width);
        l->out_ndim = 2;
        l->out_dims[0] = (int64_t)d.L;
        l->out_dims[1] = width;
        l->out_features = n;
    } else {
        l->out_ndim = 1;
        l->out_dims[0] = width;
        l->out_features = (size_t)width;
    }
    int64_t gh = (int64_t)d.G * l->opts.hidden;
    int64_t wih[2] = {gh, (int64_t)d.E}, whh[2] = {gh, l->opts.hidden};
    for (size_t dir = 0; dir < d.dirs; dir++) {
        const char *sfx = dir ? "_reverse" : "";
        char name[24];
        snprintf(name, sizeof name, "weight_ih_l0%s", sfx);
        MTLI_TRY(mtli_layer_add_param(l, name, 2, wih, false, false));
        snprintf(name, sizeof name, "weight_hh_l0%s", sfx);
        MTLI_TRY(mtli_layer_add_param(l, name, 2, whh, false, false));
        if (d.bias) {
            snprintf(name, sizeof name, "bias_ih_l0%s", sfx);
            MTLI_TRY(mtli_layer_add_param(l, name, 1, &gh, false, true));
            snprintf(name, sizeof name, "bias_hh_l0%s", sfx);
            MTLI_TRY(mtli_layer_add_param(l, name, 1, &gh, false, true));
        }
    }
    return MTL_OK;
}

static void rnn_init(mtli_layer *l, mtli_rng *rng)
{
    /* nn.LSTM / nn.GRU reset_parameters: every tensor U(-1/sqrt(H), 1/sqrt(H)) */
    mtli_init_fill(l->params, l->nparams, MTLI_INIT_BIAS_UNIFORM, (size_t)l->opts.hidden, 0,
                   1.0, 1.0, rng);
}

/* a*b saturating at SIZE_MAX (the allocation then fails cleanly) */
static size_t smul(size_t a, size_t b)
{
    size_t r;
    return mtli_mul_size(a, b, &r) ? r : SIZE_MAX;
}

static size_t sadd(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

/* Floats of one direction's forward region. */
static size_t fwd_region(const rnn_dims *d, size_t B)
{
    return smul(smul(B, d->L), d->GH + 3 * d->H);
}

static size_t rnn_scratch(const mtli_layer *l, size_t B)
{
    rnn_dims d;
    dims_of(l, &d);
    size_t bl = smul(B, d.L);
    size_t fwd = smul(d.dirs, fwd_region(&d, B));
    size_t bwd = smul(d.dirs, smul(bl, smul(d.GH, d.gru ? 2 : 1)));
    size_t tmp = smul(B, d.GH + 2 * d.H);
    return sadd(sadd(fwd, bwd), tmp);
}

/* Views of the scratch for direction dir. */
typedef struct {
    float *A, *HS, *HP, *X2; /* forward, kept */
    float *dG, *dGh;         /* backward */
    float *tmp;              /* [B, GH + 2H] */
} rnn_views;

static void views(const rnn_dims *d, float *scratch, size_t B, size_t dir, rnn_views *v)
{
    size_t bl = B * d->L, fr = fwd_region(d, B);
    float *base = scratch + dir * fr;
    v->A = base;
    v->HS = v->A + bl * d->GH;
    v->HP = v->HS + bl * d->H;
    v->X2 = v->HP + bl * d->H;
    size_t per = bl * d->GH * (d->gru ? 2 : 1);
    float *bw = scratch + d->dirs * fr + dir * per;
    v->dG = bw;
    v->dGh = d->gru ? bw + bl * d->GH : bw;
    v->tmp = scratch + d->dirs * fr + d->dirs * per;
}

static size_t len_of(const int32_t *lengths, size_t b, size_t L)
{
    if (!lengths)
        return L;
    int32_t n = lengths[b];
    return n < 0 ? 0 : (size_t)n > L ? L : (size_t)n;
}

static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* One direction's parameters. */
typedef struct {
    const float *Wih, *Whh, *bih, *bhh; /* biases NULL without bias */
} rnn_params;

static void params_of(const rnn_dims *d, const float *p, size_t dir, rnn_params *w)
{
    const float *base = p + dir * dir_params(d);
    w->Wih = base;
    w->Whh = base + d->GH * d->E;
    w->bih = d->bias ? w->Whh + d->GH * d->H : NULL;
    w->bhh = d->bias ? w->bih + d->GH : NULL;
}

/* Run one direction through time; fills the direction's forward views. */
static void run_direction(const rnn_dims *d, const rnn_params *w, const float *x, size_t B,
                          const int32_t *lengths, bool reverse, const rnn_views *v)
{
    const size_t L = d->L, H = d->H, GH = d->GH, bl = B * L;
    /* all input projections at once: A = x W_ih^T + b_ih (+ b_hh for the LSTM, whose
     * recurrent bias adds linearly) */
    float beta = 0.0f;
    if (d->bias) {
        for (size_t r = 0; r < bl; r++) {
            float *row = v->A + r * GH;
            for (size_t k = 0; k < GH; k++)
                row[k] = d->gru ? w->bih[k] : w->bih[k] + w->bhh[k];
        }
        beta = 1.0f;
    }
    mtli_gemm(false, true, bl, GH, d->E, 1.0f, x, d->E, w->Wih, d->E, beta, v->A, GH);

    float *gh = v->tmp; /* GRU: [B, GH] recurrent pre-activations of the step */
    for (size_t s = 0; s < L; s++) {
        size_t t = reverse ? L - 1 - s : s;
        float *At = v->A + t * GH;   /* row b at b*L*GH */
        float *HPt = v->HP + t * H;  /* row b at b*L*H */
        if (s == 0)
            for (size_t b = 0; b < B; b++)
                memset(HPt + b * L * H, 0, H * sizeof(float));
        if (d->gru) {
            for (size_t b = 0; b < B; b++) {
                if (d->bias)
                    memcpy(gh + b * GH, w->bhh, GH * sizeof(float));
                else
                    memset(gh + b * GH, 0, GH * sizeof(float));
            }
            if (s > 0)
                mtli_gemm(false, true, B, GH, H, 1.0f, HPt, L * H, w->Whh, H, 1.0f, gh, GH);
        } else if (s > 0) {
            mtli_gemm(false, true, B, GH, H, 1.0f, HPt, L * H, w->Whh, H, 1.0f, At, L * GH);
        }
        bool has_next = reverse ? t > 0 : t + 1 < L;
        size_t next = reverse ? t - 1 : t + 1;
        size_t prev = reverse ? t + 1 : t - 1; /* used only when s > 0 */
        for (size_t b = 0; b < B; b++) {
            size_t row = b * L + t;
            float *hs = v->HS + row * H;
            float *x2 = v->X2 + row * H;
            float *hpn = has_next ? v->HP + (b * L + next) * H : NULL;
            if (t >= len_of(lengths, b, L)) {
                memset(hs, 0, H * sizeof(float));
                memset(x2, 0, H * sizeof(float));
                if (hpn)
                    memset(hpn, 0, H * sizeof(float));
                continue;
            }
            float *a = v->A + row * GH;
            const float *hp = v->HP + row * H;
            if (d->gru) {
                const float *g = gh + b * GH;
                for (size_t j = 0; j < H; j++) {
                    float r = sigm(a[j] + g[j]);
                    float z = sigm(a[H + j] + g[H + j]);
                    float n = tanhf(a[2 * H + j] + r * g[2 * H + j]);
                    a[j] = r;
                    a[H + j] = z;
                    a[2 * H + j] = n;
                    x2[j] = g[2 * H + j];
                    hs[j] = (1.0f - z) * n + z * hp[j];
                }
            } else {
                const float *cp = s > 0 ? v->X2 + (b * L + prev) * H : NULL;
                for (size_t j = 0; j < H; j++) {
                    float i = sigm(a[j]);
                    float f = sigm(a[H + j]);
                    float g = tanhf(a[2 * H + j]);
                    float o = sigm(a[3 * H + j]);
                    a[j] = i;
                    a[H + j] = f;
                    a[2 * H + j] = g;
                    a[3 * H + j] = o;
                    float c = i * g + (cp ? f * cp[j] : 0.0f);
                    x2[j] = c;
                    hs[j] = o * tanhf(c);
                }
            }
            if (hpn)
                memcpy(hpn, hs, H * sizeof(float));
        }
    }
}

static void rnn_forward(mtli_layer *l, const mtli_fwd *f)
{
    rnn_dims d;
    dims_of(l, &d);
    const size_t B = f->B, L = d.L, H = d.H, W = d.dirs * H;
    if (B == 0)
        return;
    for (size_t dir = 0; dir < d.dirs; dir++) {
        rnn_views v;
        rnn_params w;
        views(&d, f->scratch, B, dir, &v);
        params_of(&d, l->params, dir, &w);
        run_direction(&d, &w, f->x, B, f->lengths, dir == 1, &v);
        for (size_t b = 0; b < B; b++) {
            size_t n = len_of(f->lengths, b, L);
            const float *hs = v.HS + b * L * H;
            if (l->opts.rnn_pooling == MTLI_RNN_NONE) {
                for (size_t t = 0; t < L; t++)
                    memcpy(f->y + (b * L + t) * W + dir * H, hs + t * H, H * sizeof(float));
                continue;
            }
            float *y = f->y + b * W + dir * H;
            if (n == 0) {
                memset(y, 0, H * sizeof(float));
            } else if (l->opts.rnn_pooling == MTLI_RNN_LAST) {
                memcpy(y, hs + (dir == 1 ? 0 : n - 1) * H, H * sizeof(float));
            } else {
                double scale = l->opts.rnn_pooling == MTLI_RNN_MEAN ? 1.0 / (double)n : 1.0;
                for (size_t j = 0; j < H; j++) {
                    double acc = 0.0;
                    for (size_t t = 0; t < n; t++)
                        acc += hs[t * H + j];
                    y[j] = (float)(acc * scale);
                }
            }
        }
    }
}

/* The gradient reaching h_t of sample b from the layer output (0 at padding). */
static inline float out_grad(const mtli_layer *l, const float *dy, size_t b, size_t t, size_t n,
                             size_t dir, size_t j, size_t L, size_t W, size_t H)
{
    switch (l->opts.rnn_pooling) {
    case MTLI_RNN_NONE:
        return dy[(b * L + t) * W + dir * H + j];
    case MTLI_RNN_LAST:
        return t == (dir == 1 ? 0 : n - 1) ? dy[b * W + dir * H + j] : 0.0f;
    case MTLI_RNN_MEAN:
        return dy[b * W + dir * H + j] / (float)n;
    default: /* sum */
        return dy[b * W + dir * H + j];
    }
}

/* Backpropagate one direction through time into its dG (and dGh) views. */
static void bptt(const mtli_layer *l, const rnn_dims *d, const rnn_params *w, const float *dy,
                 size_t B, const int32_t *lengths, bool reverse, const rnn_views *v)
{
    const size_t L = d->L, H = d->H, GH = d->GH, W = d->dirs * H;
    const size_t dir = reverse ? 1 : 0;
    float *dh = v->tmp, *dc = v->tmp + B * H; /* recurrent gradients into h and c */
    memset(dh, 0, 2 * B * H * sizeof(float));
    for (size_t s = L; s-- > 0;) {
        size_t t = reverse ? L - 1 - s : s;
        size_t prev = reverse ? t + 1 : t - 1; /* the step before in processing order */
        for (size_t b = 0; b < B; b++) {
            size_t n = len_of(lengths, b, L), row = b * L + t;
            float *dg = v->dG + row * GH, *dgh = v->dGh + row * GH;
            float *dhb = dh + b * H, *dcb = dc + b * H;
            if (t >= n) {
                memset(dg, 0, GH * sizeof(float));
                if (d->gru)
                    memset(dgh, 0, GH * sizeof(float));
                memset(dhb, 0, H * sizeof(float));
                memset(dcb, 0, H * sizeof(float));
                continue;
            }
            const float *a = v->A + row * GH;
            if (d->gru) {
                const float *hn = v->X2 + row * H, *hp = v->HP + row * H;
                for (size_t j = 0; j < H; j++) {
                    float dht = dhb[j] + out_grad(l, dy, b, t, n, dir, j, L, W, H);
                    float r = a[j], z = a[H + j], nn = a[2 * H + j];
                    float dnp = dht * (1.0f - z) * (1.0f - nn * nn);
                    float drp = dnp * hn[j] * r * (1.0f - r);
                    float dzp = dht * (hp[j] - nn) * z * (1.0f - z);
                    dg[j] = drp;
                    dg[H + j] = dzp;
                    dg[2 * H + j] = dnp;
                    dgh[j] = drp;
                    dgh[H + j] = dzp;
                    dgh[2 * H + j] = dnp * r;
                    dhb[j] = dht * z; /* the direct path; the GEMM below adds the rest */
                }
            } else {
                const float *c = v->X2 + row * H;
                const float *cp = s > 0 ? v->X2 + (b * L + prev) * H : NULL;
                for (size_t j = 0; j < H; j++) {
                    float dht = dhb[j] + out_grad(l, dy, b, t, n, dir, j, L, W, H);
                    float i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
                    float tc = tanhf(c[j]);
                    float dct = dcb[j] + dht * o * (1.0f - tc * tc);
                    dg[j] = dct * g * i * (1.0f - i);
                    dg[H + j] = (cp ? dct * cp[j] : 0.0f) * f * (1.0f - f);
                    dg[2 * H + j] = dct * i * (1.0f - g * g);
                    dg[3 * H + j] = dht * tc * o * (1.0f - o);
                    dcb[j] = dct * f;
                }
            }
        }
        if (s > 0) /* dh for the previous step: (+)= dGh_t W_hh over the batch */
            mtli_gemm(false, false, B, H, GH, 1.0f, v->dGh + t * GH, L * GH, w->Whh, H,
                      d->gru ? 1.0f : 0.0f, dh, H);
    }
}

static void rnn_backward(const mtli_layer *l, const mtli_bwd *bw)
{
    rnn_dims d;
    dims_of(l, &d);
    const size_t B = bw->B, bl = B * d.L, GH = d.GH;
    if (B == 0)
        return;
    /* scratch is const in the interface; its backward part is this layer's workspace, which
     * forward leaves nothing in (see layer.h) */
    float *scratch = (float *)bw->scratch;
    for (size_t dir = 0; dir < d.dirs; dir++) {
        rnn_views v;
        rnn_params w;
        views(&d, scratch, B, dir, &v);
        params_of(&d, l->params, dir, &w);
        bptt(l, &d, &w, bw->dy, B, bw->lengths, dir == 1, &v);
        float *gw = bw->dparams + dir * dir_params(&d);
        float *gWih = gw, *gWhh = gw + GH * d.E;
        mtli_gemm(true, false, GH, d.E, bl, 1.0f, v.dG, GH, bw->x, d.E, 1.0f, gWih, d.E);
        mtli_gemm(true, false, GH, d.H, bl, 1.0f, v.dGh, GH, v.HP, d.H, 1.0f, gWhh, d.H);
        if (d.bias) {
            mtli_layer_colsum_acc(v.dG, bl, GH, gWhh + GH * d.H);
            mtli_layer_colsum_acc(v.dGh, bl, GH, gWhh + GH * d.H + GH);
        }
    }
    if (!bw->dx)
        return;
    /* dx last, after every read of x */
    for (size_t dir = 0; dir < d.dirs; dir++) {
        rnn_views v;
        rnn_params w;
        views(&d, scratch, B, dir, &v);
        params_of(&d, l->params, dir, &w);
        mtli_gemm(false, false, bl, d.E, GH, 1.0f, v.dG, GH, w.Wih, d.E, dir ? 1.0f : 0.0f,
                  bw->dx, d.E);
    }
}

const mtli_layer_ops mtli_lstm_ops = {
    .kind = "lstm",
    .setup = rnn_setup,
    .init = rnn_init,
    .scratch_floats = rnn_scratch,
    .forward = rnn_forward,
    .backward = rnn_backward,
    .check = NULL,
};

const mtli_layer_ops mtli_gru_ops = {
    .kind = "gru",
    .setup = rnn_setup,
    .init = rnn_init,
    .scratch_floats = rnn_scratch,
    .forward = rnn_forward,
    .backward = rnn_backward,
    .check = NULL,
};
