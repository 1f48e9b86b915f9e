/* Normalisation layers with PyTorch's definitions.
 *
 * layer_norm: normalises all features of each sample (nn.LayerNorm(normalized_shape = the
 *   sample's dims)), biased variance; affine weight/bias with the sample's shape.
 *   Scratch: mean[B] then rstd[B].
 * batch_norm: per channel over the batch (and over the positions of a channel for inputs
 *   [C, L] or [C, H, W], as BatchNorm1d/2d): channel = first per-sample dim. Training
 *   normalises with the biased batch variance and updates the running statistics with the
 *   unbiased one: r = (1 - momentum) r + momentum * stat. Evaluation uses the running
 *   statistics. Affine weight/bias [C]; state running_mean [C], running_var [C].
 *   Scratch: mean[C], rstd[C], then a flag (1: batch statistics were used, 0: running). */
#include <math.h>

#include "core/error.h"
#include "layers/layer.h"

#define NORM_BLOCK 256

static mtl_status check_eps(const mtli_layer *l)
{
    if (!(l->opts.eps > 0.0 && isfinite(l->opts.eps)))
        return mtli_error(MTL_ERR_RANGE, "%s: option 'eps' must be finite and > 0, got %g",
                          l->ops->kind, l->opts.eps);
    return MTL_OK;
}

/* Sums in double with eight fixed partial accumulators: a fixed order (deterministic) that the
 * compiler can keep in vector registers. */
static double sum_f(const float *x, size_t n)
{
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            a[k] += (double)x[i + k];
    double t = 0.0;
    for (; i < n; i++)
        t += (double)x[i];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])) + t;
}

static double sumsq_dev(const float *x, size_t n, double m)
{
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            double d = (double)x[i + k] - m;
            a[k] += d * d;
        }
    double t = 0.0;
    for (; i < n; i++) {
        double d = (double)x[i] - m;
        t += d * d;
    }
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])) + t;
}

/* ======================================= layer_norm ====================================== */

static mtl_status ln_setup(mtli_layer *l)
{
    MTLI_TRY(mtli_layer_setup_input(l));
    MTLI_TRY(check_eps(l));
    mtli_layer_same_shape(l);
    if (l->opts.affine) {
        MTLI_TRY(mtli_layer_add_param(l, "weight", l->in_ndim, l->in_dims, false, true));
        MTLI_TRY(mtli_layer_add_param(l, "bias", l->in_ndim, l->in_dims, false, true));
    }
    return MTL_OK;
}

static void ln_init(mtli_layer *l, mtli_rng *rng)
{
    if (!l->opts.affine || !l->params)
        return;
    size_t F = l->in_features;
    mtli_init_fill(l->params, F, MTLI_INIT_ONES, 0, 0, 1.0, 0.0, rng);
    mtli_init_fill(l->params + F, F, MTLI_INIT_ZEROS, 0, 0, 1.0, 0.0, rng);
}

static size_t ln_scratch(const mtli_layer *l, size_t B)
{
    (void)l;
    return 2 * B;
}

static void ln_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t F = l->in_features, B = f->B;
    float *mean = f->scratch, *rstd = f->scratch + B;
    const float *w = l->opts.affine ? l->params : NULL;
    const float *bias = l->opts.affine ? l->params + F : NULL;
    for (size_t b = 0; b < B; b++) {
        const float *x = f->x + b * F;
        float *y = f->y + b * F;
        double m = sum_f(x, F) / (double)F;
        double var = sumsq_dev(x, F, m) / (double)F;
        float mf = (float)m, rf = (float)(1.0 / sqrt(var + l->opts.eps));
        mean[b] = mf;
        rstd[b] = rf;
        if (w) {
            for (size_t j = 0; j < F; j++)
                y[j] = (x[j] - mf) * rf * w[j] + bias[j];
        } else {
            for (size_t j = 0; j < F; j++)
                y[j] = (x[j] - mf) * rf;
        }
    }
}

/* xh = (x - mean) rstd, g = dy * w:
 *   dw += sum_b dy xh, db += sum_b dy, dx = rstd (g - mean_j(g) - xh mean_j(g xh)).
 * Parameter gradients first, then dx row by row, so dx may share memory with x or dy. */
static void ln_backward(const mtli_layer *l, const mtli_bwd *bw)
{
    size_t F = l->in_features, B = bw->B;
    const float *mean = bw->scratch, *rstd = bw->scratch + B;
    const float *w = l->opts.affine ? l->params : NULL;
    if (w) {
        float *dw = bw->dparams, *db = bw->dparams + F;
        double aw[NORM_BLOCK], ab[NORM_BLOCK];
        for (size_t j0 = 0; j0 < F; j0 += NORM_BLOCK) {
            size_t nb = F - j0 < NORM_BLOCK ? F - j0 : NORM_BLOCK;
            for (size_t j = 0; j < nb; j++)
                aw[j] = ab[j] = 0.0;
            for (size_t b = 0; b < B; b++) {
                const float *x = bw->x + b * F + j0, *dy = bw->dy + b * F + j0;
                float mf = mean[b], rf = rstd[b];
                for (size_t j = 0; j < nb; j++) {
                    float xh = (x[j] - mf) * rf;
                    aw[j] += (double)(dy[j] * xh);
                    ab[j] += (double)dy[j];
                }
            }
            for (size_t j = 0; j < nb; j++) {
                dw[j0 + j] = (float)((double)dw[j0 + j] + aw[j]);
                db[j0 + j] = (float)((double)db[j0 + j] + ab[j]);
            }
        }
    }
    if (!bw->dx)
        return;
    for (size_t b = 0; b < B; b++) {
        const float *x = bw->x + b * F, *dy = bw->dy + b * F;
        float *dx = bw->dx + b * F;
        float mf = mean[b], rf = rstd[b];
        double sg[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sgx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t j = 0;
        for (; j + 8 <= F; j += 8)
            for (int k = 0; k < 8; k++) {
                float g = w ? dy[j + k] * w[j + k] : dy[j + k];
                float xh = (x[j + k] - mf) * rf;
                sg[k] += (double)g;
                sgx[k] += (double)g * (double)xh;
            }
        double tg = 0.0, tgx = 0.0;
        for (; j < F; j++) {
            float g = w ? dy[j] * w[j] : dy[j];
            float xh = (x[j] - mf) * rf;
            tg += (double)g;
            tgx += (double)g * (double)xh;
        }
        for (int k = 0; k < 8; k++) {
            tg += sg[k];
            tgx += sgx[k];
        }
        float c1 = (float)(tg / (double)F), c2 = (float)(tgx / (double)F);
        if (w) {
            for (size_t i = 0; i < F; i++) {
                float xh = (x[i] - mf) * rf;
                dx[i] = rf * (dy[i] * w[i] - c1 - xh * c2);
            }
        } else {
            for (size_t i = 0; i < F; i++) {
                float xh = (x[i] - mf) * rf;
                dx[i] = rf * (dy[i] - c1 - xh * c2);
            }
        }
    }
}

const mtli_layer_ops mtli_layer_norm_ops = {
    .kind = "layer_norm",
    .setup = ln_setup,
    .init = ln_init,
    .scratch_floats = ln_scratch,
    .forward = ln_forward,
    .backward = ln_backward,
    .check = NULL,
};

/* ======================================= batch_norm ====================================== */

static size_t bn_channels(const mtli_layer *l) { return (size_t)l->in_dims[0]; }

static mtl_status bn_setup(mtli_layer *l)
{
    MTLI_TRY(mtli_layer_setup_input(l));
    MTLI_TRY(check_eps(l));
    if (!(l->opts.momentum >= 0.0 && l->opts.momentum <= 1.0))
        return mtli_error(MTL_ERR_RANGE, "batch_norm: option 'momentum' must be in [0, 1], got %g",
                          l->opts.momentum);
    mtli_layer_same_shape(l);
    int64_t C = l->in_dims[0];
    if (l->opts.affine) {
        MTLI_TRY(mtli_layer_add_param(l, "weight", 1, &C, false, true));
        MTLI_TRY(mtli_layer_add_param(l, "bias", 1, &C, false, true));
    }
    MTLI_TRY(mtli_layer_add_param(l, "running_mean", 1, &C, true, true));
    MTLI_TRY(mtli_layer_add_param(l, "running_var", 1, &C, true, true));
    return MTL_OK;
}

static void bn_init(mtli_layer *l, mtli_rng *rng)
{
    size_t C = bn_channels(l);
    if (l->opts.affine && l->params) {
        mtli_init_fill(l->params, C, MTLI_INIT_ONES, 0, 0, 1.0, 0.0, rng);
        mtli_init_fill(l->params + C, C, MTLI_INIT_ZEROS, 0, 0, 1.0, 0.0, rng);
    }
    if (l->state) {
        mtli_init_fill(l->state, C, MTLI_INIT_ZEROS, 0, 0, 1.0, 0.0, rng);
        mtli_init_fill(l->state + C, C, MTLI_INIT_ONES, 0, 0, 1.0, 0.0, rng);
    }
}

static size_t bn_scratch(const mtli_layer *l, size_t B)
{
    (void)B;
    return 2 * bn_channels(l) + 1;
}

static mtl_status bn_check(const mtli_layer *l, const float *x, size_t B, bool train)
{
    (void)x;
    size_t S = l->in_features / bn_channels(l);
    if (train && B * S == 1)
        return mtli_error(MTL_ERR_SHAPE,
                          "batch_norm: training needs more than 1 value per channel, got a "
                          "batch of %zu sample(s) with %zu value(s) per channel each",
                          B, S);
    return MTL_OK;
}

/* Sum over the batch (and positions) of channels c0..c0+nb-1 into acc. */
static void bn_channel_sums(const float *x, size_t B, size_t C, size_t S, size_t c0, size_t nb,
                            double *acc)
{
    for (size_t k = 0; k < nb; k++)
        acc[k] = 0.0;
    for (size_t b = 0; b < B; b++) {
        if (S == 1) {
            const float *r = x + b * C + c0;
            for (size_t k = 0; k < nb; k++)
                acc[k] += (double)r[k];
        } else {
            for (size_t k = 0; k < nb; k++)
                acc[k] += sum_f(x + (b * C + c0 + k) * S, S);
        }
    }
}

static void bn_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t C = bn_channels(l), S = l->in_features / C, B = f->B, n = B * S;
    float *mean = f->scratch, *rstd = f->scratch + C;
    const float *x = f->x;
    float *rm = l->state, *rv = l->state + C;
    double eps = l->opts.eps, mom = l->opts.momentum;
    bool batch_stats = f->train && n > 0;
    f->scratch[2 * C] = batch_stats ? 1.0f : 0.0f;
    double s[NORM_BLOCK];
    float alpha[NORM_BLOCK], beta[NORM_BLOCK];
    for (size_t c0 = 0; c0 < C; c0 += NORM_BLOCK) {
        size_t nb = C - c0 < NORM_BLOCK ? C - c0 : NORM_BLOCK;
        if (batch_stats) {
            bn_channel_sums(x, B, C, S, c0, nb, s);
            double m[NORM_BLOCK];
            for (size_t k = 0; k < nb; k++) {
                m[k] = s[k] / (double)n;
                s[k] = 0.0;
            }
            for (size_t b = 0; b < B; b++) {
                if (S == 1) {
                    const float *r = x + b * C + c0;
                    for (size_t k = 0; k < nb; k++) {
                        double d = (double)r[k] - m[k];
                        s[k] += d * d;
                    }
                } else {
                    for (size_t k = 0; k < nb; k++)
                        s[k] += sumsq_dev(x + (b * C + c0 + k) * S, S, m[k]);
                }
            }
            for (size_t k = 0; k < nb; k++) {
                size_t c = c0 + k;
                double var = s[k] / (double)n;
                double unbiased = n > 1 ? s[k] / (double)(n - 1) : var;
                mean[c] = (float)m[k];
                rstd[c] = (float)(1.0 / sqrt(var + eps));
                rm[c] = (float)(mom * m[k] + (1.0 - mom) * (double)rm[c]);
                rv[c] = (float)(mom * unbiased + (1.0 - mom) * (double)rv[c]);
            }
        } else {
            for (size_t k = 0; k < nb; k++) {
                size_t c = c0 + k;
                mean[c] = rm[c];
                rstd[c] = (float)(1.0 / sqrt((double)rv[c] + eps));
            }
        }
        /* y = x * alpha + beta with alpha = rstd * w, beta = b - mean * alpha */
        for (size_t k = 0; k < nb; k++) {
            size_t c = c0 + k;
            float w = l->opts.affine ? l->params[c] : 1.0f;
            float bb = l->opts.affine ? l->params[C + c] : 0.0f;
            alpha[k] = rstd[c] * w;
            beta[k] = bb - mean[c] * alpha[k];
        }
        for (size_t b = 0; b < B; b++) {
            if (S == 1) {
                const float *r = x + b * C + c0;
                float *y = f->y + b * C + c0;
                for (size_t k = 0; k < nb; k++)
                    y[k] = r[k] * alpha[k] + beta[k];
            } else {
                for (size_t k = 0; k < nb; k++) {
                    const float *r = x + (b * C + c0 + k) * S;
                    float *y = f->y + (b * C + c0 + k) * S;
                    float a = alpha[k], be = beta[k];
                    for (size_t i = 0; i < S; i++)
                        y[i] = r[i] * a + be;
                }
            }
        }
    }
}

/* With sdy = sum dy and dot = sum dy (x - mean) per channel:
 *   dw += dot * rstd, db += sdy;
 *   training:   dx = (dy - sdy/n - (x - mean) dot rstd^2 / n) rstd w
 *   evaluation: dx = dy rstd w (running statistics are constants). */
static void bn_backward(const mtli_layer *l, const mtli_bwd *bw)
{
    size_t C = bn_channels(l), S = l->in_features / C, B = bw->B, n = B * S;
    const float *mean = bw->scratch, *rstd = bw->scratch + C;
    bool batch_stats = bw->scratch[2 * C] != 0.0f;
    bool affine = l->opts.affine != 0;
    if (n == 0 || (!affine && !bw->dx))
        return;
    const float *x = bw->x, *dy = bw->dy;
    double sdy[NORM_BLOCK], dot[NORM_BLOCK];
    float gm[NORM_BLOCK], kk[NORM_BLOCK], sc[NORM_BLOCK], mu[NORM_BLOCK];
    bool need_sums = affine || batch_stats;
    for (size_t c0 = 0; c0 < C; c0 += NORM_BLOCK) {
        size_t nb = C - c0 < NORM_BLOCK ? C - c0 : NORM_BLOCK;
        for (size_t k = 0; k < nb; k++) {
            sdy[k] = dot[k] = 0.0;
            mu[k] = mean[c0 + k];
        }
        if (need_sums) {
            for (size_t b = 0; b < B; b++) {
                if (S == 1) {
                    const float *r = x + b * C + c0, *g = dy + b * C + c0;
                    for (size_t k = 0; k < nb; k++) {
                        sdy[k] += (double)g[k];
                        dot[k] += (double)g[k] * (double)(r[k] - mu[k]);
                    }
                } else {
                    for (size_t k = 0; k < nb; k++) {
                        const float *r = x + (b * C + c0 + k) * S, *g = dy + (b * C + c0 + k) * S;
                        float m = mu[k];
                        double a = 0.0, d = 0.0;
                        for (size_t i = 0; i < S; i++) {
                            a += (double)g[i];
                            d += (double)g[i] * (double)(r[i] - m);
                        }
                        sdy[k] += a;
                        dot[k] += d;
                    }
                }
            }
        }
        if (affine) {
            float *dw = bw->dparams, *db = bw->dparams + C;
            for (size_t k = 0; k < nb; k++) {
                size_t c = c0 + k;
                dw[c] = (float)((double)dw[c] + dot[k] * (double)rstd[c]);
                db[c] = (float)((double)db[c] + sdy[k]);
            }
        }
        if (!bw->dx)
            continue;
        for (size_t k = 0; k < nb; k++) {
            size_t c = c0 + k;
            double r = (double)rstd[c];
            float w = affine ? l->params[c] : 1.0f;
            sc[k] = rstd[c] * w;
            gm[k] = batch_stats ? (float)(sdy[k] / (double)n) : 0.0f;
            kk[k] = batch_stats ? (float)(dot[k] * r * r / (double)n) : 0.0f;
        }
        for (size_t b = 0; b < B; b++) {
            if (S == 1) {
                const float *r = x + b * C + c0, *g = dy + b * C + c0;
                float *dx = bw->dx + b * C + c0;
                for (size_t k = 0; k < nb; k++)
                    dx[k] = (g[k] - gm[k] - (r[k] - mu[k]) * kk[k]) * sc[k];
            } else {
                for (size_t k = 0; k < nb; k++) {
                    size_t off = (b * C + c0 + k) * S;
                    const float *r = x + off, *g = dy + off;
                    float *dx = bw->dx + off;
                    float m = mu[k], a = gm[k], q = kk[k], s = sc[k];
                    for (size_t i = 0; i < S; i++)
                        dx[i] = (g[i] - a - (r[i] - m) * q) * s;
                }
            }
        }
    }
}

const mtli_layer_ops mtli_batch_norm_ops = {
    .kind = "batch_norm",
    .setup = bn_setup,
    .init = bn_init,
    .scratch_floats = bn_scratch,
    .forward = bn_forward,
    .backward = bn_backward,
    .check = bn_check,
};
