/* Shape layers.
 *
 * flatten: [C, H, W] (or any per-sample dims) to one dimension of C*H*W features, as
 *   torch.nn.Flatten() on a batch; the values keep their (row-major) order, so forward and
 *   backward are copies (the model keeps one activation buffer per layer).
 * batch_norm2d: torch.nn.BatchNorm2d, i.e. batch_norm (norm.c: per channel over the batch
 *   and the H*W positions) that accepts only [C, H, W] input, with the same keys, parameters
 *   (weight, bias) and state (running_mean, running_var). */
#include <string.h>

#include "core/error.h"
#include "layers/layer.h"

/* ======================================== flatten ======================================== */

static mtl_status flatten_setup(mtli_layer *l)
{
    MTLI_TRY(mtli_layer_setup_input(l));
    l->out_ndim = 1;
    l->out_dims[0] = (int64_t)l->in_features;
    l->out_features = l->in_features;
    return MTL_OK;
}

static void flatten_init(mtli_layer *l, mtli_rng *rng)
{
    (void)l;
    (void)rng;
}

static size_t flatten_scratch(const mtli_layer *l, size_t B)
{
    (void)l;
    (void)B;
    return 0;
}

static void flatten_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t n = f->B * l->in_features;
    if (n && f->y != f->x)
        memcpy(f->y, f->x, n * sizeof(float));
}

static void flatten_backward(const mtli_layer *l, const mtli_bwd *b)
{
    size_t n = b->B * l->in_features;
    if (b->dx && n && b->dx != b->dy)
        memcpy(b->dx, b->dy, n * sizeof(float));
}

const mtli_layer_ops mtli_flatten_ops = {
    .kind = "flatten",
    .setup = flatten_setup,
    .init = flatten_init,
    .scratch_floats = flatten_scratch,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .check = NULL,
};

/* ====================================== batch_norm2d ===================================== */

static mtl_status bn2d_setup(mtli_layer *l)
{
    if (l->in_ndim != 3)
        return mtli_error(MTL_ERR_SHAPE,
                          "batch_norm2d: input has %d dimension(s) per sample, expected 3 "
                          "(channels, height, width)",
                          l->in_ndim);
    return mtli_batch_norm_ops.setup(l);
}

static void bn2d_init(mtli_layer *l, mtli_rng *rng) { mtli_batch_norm_ops.init(l, rng); }

static size_t bn2d_scratch(const mtli_layer *l, size_t B)
{
    return mtli_batch_norm_ops.scratch_floats(l, B);
}

static void bn2d_forward(mtli_layer *l, const mtli_fwd *f) { mtli_batch_norm_ops.forward(l, f); }

static void bn2d_backward(const mtli_layer *l, const mtli_bwd *b)
{
    mtli_batch_norm_ops.backward(l, b);
}

static mtl_status bn2d_check(const mtli_layer *l, const float *x, size_t B, bool train)
{
    return mtli_batch_norm_ops.check(l, x, B, train);
}

const mtli_layer_ops mtli_batch_norm2d_ops = {
    .kind = "batch_norm2d",
    .setup = bn2d_setup,
    .init = bn2d_init,
    .scratch_floats = bn2d_scratch,
    .forward = bn2d_forward,
    .backward = bn2d_backward,
    .check = bn2d_check,
};
