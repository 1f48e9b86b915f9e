/* Internal to losses/: the per-family evaluators behind mtli_loss_eval and the helpers they
 * share. Inputs have passed mtli_loss_check. */
#ifndef MTLI_LOSS_IMPL_H
#define MTLI_LOSS_IMPL_H

#include <stdint.h>

#include "core/tensor_internal.h"
#include "losses/loss.h"

/* Whether sample i takes part: no mask, or a non-zero mask entry. */
static inline int mtli_loss_keep(const mtl_tensor *mask, size_t i)
{
    if (mask == NULL)
        return 1;
    if (mask->dtype == MTL_INT32)
        return ((const int32_t *)mask->data)[i] != 0;
    return ((const float *)mask->data)[i] != 0.0f;
}

/* cross_entropy: target holds B class ids (-1 = missing). */
void mtli_loss_eval_ce(const mtli_loss *L, const float *logits, size_t B, size_t C,
                       const int32_t *target, const mtl_tensor *mask, double *loss,
                       float *dlogits, float scale, size_t *count);

/* The same over B rows whose mask entries cover `per` consecutive rows each (tokens of a
 * sample: mask entry i / per). */
void mtli_loss_eval_ce_rows(const mtli_loss *L, const float *logits, size_t B, size_t C,
                            const int32_t *target, const mtl_tensor *mask, size_t per,
                            double *loss, float *dlogits, float scale, size_t *count);

/* bce with logits: target [B, C] floats in [0, 1], NaN = missing. */
void mtli_loss_eval_bce(const mtli_loss *L, const float *logits, size_t B, size_t C,
                        const float *target, const mtl_tensor *mask, double *loss,
                        float *dlogits, float scale, size_t *count);

/* mse, l1, huber: target [B, C] floats, NaN = missing. */
void mtli_loss_eval_regression(const mtli_loss *L, const float *out, size_t B, size_t C,
                               const float *target, const mtl_tensor *mask, double *loss,
                               float *dlogits, float scale, size_t *count);

#endif
