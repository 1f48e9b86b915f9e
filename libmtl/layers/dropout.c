/* Inverted dropout, as torch.nn.Dropout: in training each element is kept with probability
 * 1-p and scaled by 1/(1-p); in evaluation the layer is the identity.
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
