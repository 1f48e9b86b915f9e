/* Inverted dropout, as torch.nn.Dropout: in training each element is kept with probability
 * 1-p and scaled by 1/(1-p); in evaluation the layer is the identity. (Channel dropout,
 * dropout2d, is at the end of the file.)
 *
 * Scratch: B*F mask values (0 or 1/(1-p)) followed by one flag, 1 when the mask was applied
 * (training with p > 0) and 0 for the identity, so a backward after an evaluation forward is
 * the identity too. The draws come from the forward's rng, one per element in row-major
 * order; a NULL rng gives the identity. */
#include <string.h>

#include "core/error.h"
#include "layers/layer.h"

static mtl_status dropout_setup(mtli_layer *l)
{
    MTLI_TRY(mtli_layer_setup_input(l));
    if (!(l->opts.p >= 0.0 && l->opts.p < 1.0))
        return mtli_error(MTL_ERR_RANGE, "dropout: option 'p' must be in [0, 1), got %g",
                          l->opts.p);
    mtli_layer_same_shape(l);
    return MTL_OK;
}

static void dropout_init(mtli_layer *l, mtli_rng *rng)
{
    (void)l;
    (void)rng;
}

static size_t dropout_scratch(const mtli_layer *l, size_t B) { return B * l->in_features + 1; }

static void dropout_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t n = f->B * l->in_features;
    float *mask = f->scratch;
    const float *x = f->x;
    float *y = f->y;
    if (!f->train || l->opts.p == 0.0 || f->rng == NULL) {
        if (y != x && n)
            memcpy(y, x, n * sizeof(float));
        mask[n] = 0.0f;
        return;
    }
    /* keep when u >= p: P(keep) = 1-p since u is uniform in [0, 1) on a 2^-24 grid */
    float p = (float)l->opts.p;
    float scale = (float)(1.0 / (1.0 - l->opts.p));
    for (size_t i = 0; i < n; i++)
        mask[i] = mtli_rng_uniform(f->rng) < p ? 0.0f : scale;
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * mask[i];
    mask[n] = 1.0f;
}

static void dropout_backward(const mtli_layer *l, const mtli_bwd *b)
{
    if (!b->dx)
        return;
    size_t n = b->B * l->in_features;
    const float *mask = b->scratch, *dy = b->dy;
    float *dx = b->dx;
    if (mask[n] == 0.0f) {
        if (dx != dy && n)
            memcpy(dx, dy, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * mask[i];
}

const mtli_layer_ops mtli_dropout_ops = {
    .kind = "dropout",
    .setup = dropout_setup,
    .init = dropout_init,
    .scratch_floats = dropout_scratch,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .check = NULL,
};

/* ======================================== dropout2d ====================================== */

/* Channel dropout, as torch.nn.Dropout2d: in training each channel of each sample (the first
 * per-sample dim of [C, H, W] or [C, L]) is zeroed as a whole with probability p, and kept
 * channels are scaled by 1/(1-p); in evaluation the layer is the identity.
 *
 * Scratch: B*C mask values (0 or 1/(1-p)), one draw per (sample, channel) in order, then the
 * applied flag as for dropout. */

static size_t drop2d_channels(const mtli_layer *l) { return (size_t)l->in_dims[0]; }

static mtl_status dropout2d_setup(mtli_layer *l)
{
    MTLI_TRY(mtli_layer_setup_input(l));
    if (l->in_ndim < 2)
        return mtli_error(MTL_ERR_SHAPE,
                          "dropout2d: input has %d dimension per sample, expected [C, H, W] or "
                          "[C, L] (use dropout for single features)",
                          l->in_ndim);
    if (!(l->opts.p >= 0.0 && l->opts.p < 1.0))
        return mtli_error(MTL_ERR_RANGE, "dropout2d: option 'p' must be in [0, 1), got %g",
                          l->opts.p);
    mtli_layer_same_shape(l);
    return MTL_OK;
}

static size_t dropout2d_scratch(const mtli_layer *l, size_t B)
{
    return B * drop2d_channels(l) + 1;
}

static void dropout2d_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t C = drop2d_channels(l), S = l->in_features / C, nc = f->B * C;
    float *mask = f->scratch;
    const float *x = f->x;
    float *y = f->y;
    if (!f->train || l->opts.p == 0.0 || f->rng == NULL) {
        if (y != x && nc)
            memcpy(y, x, nc * S * sizeof(float));
        mask[nc] = 0.0f;
        return;
    }
    float p = (float)l->opts.p;
    float scale = (float)(1.0 / (1.0 - l->opts.p));
    for (size_t i = 0; i < nc; i++)
        mask[i] = mtli_rng_uniform(f->rng) < p ? 0.0f : scale;
    for (size_t i = 0; i < nc; i++) {
        float m = mask[i];
        const float *xr = x + i * S;
        float *yr = y + i * S;
        for (size_t j = 0; j < S; j++)
            yr[j] = xr[j] * m;
    }
    mask[nc] = 1.0f;
}

static void dropout2d_backward(const mtli_layer *l, const mtli_bwd *b)
{
    if (!b->dx)
        return;
    size_t C = drop2d_channels(l), S = l->in_features / C, nc = b->B * C;
    const float *mask = b->scratch, *dy = b->dy;
    float *dx = b->dx;
    if (mask[nc] == 0.0f) {
        if (dx != dy && nc)
            memcpy(dx, dy, nc * S * sizeof(float));
        return;
    }
    for (size_t i = 0; i < nc; i++) {
        float m = mask[i];
        const float *g = dy + i * S;
        float *d = dx + i * S;
        for (size_t j = 0; j < S; j++)
            d[j] = g[j] * m;
    }
}

const mtli_layer_ops mtli_dropout2d_ops = {
    .kind = "dropout2d",
    .setup = dropout2d_setup,
    .init = dropout_init,
    .scratch_floats = dropout2d_scratch,
    .forward = dropout2d_forward,
    .backward = dropout2d_backward,
    .check = NULL,
};
