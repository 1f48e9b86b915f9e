/* The train step, forward/backward, losses and inference. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor_internal.h"
#include "model/model_internal.h"
#include "optim/optim.h"

/* ---- token-level heads ------------------------------------------------------------------
 * A cross_entropy head whose output is [P, C] per sample (a linear over per-token states)
 * is token-level: its target is int32 [B, P], one class id per position with -1 ignored, and
 * its loss is the mean over valid tokens (losses/loss.h, mtli_loss_check_tokens). On a
 * sequence batch (int32 ids [L] into a trunk that starts with an embedding with pooling
 * "none"), a padding position (input id -1) must have target -1: the batch checks reject
 * anything else, so a padded position never counts in a loss. */

bool mtli_head_tokens(const mtl_head *h, size_t *positions, size_t *classes)
{
    const mtl_model *m = h->s.model;
    const mtli_stack *t = &m->trunk.s;
    int ndim = m->input_ndim;
    const int64_t *dims = m->input_shape;
    if (h->s.nlayers) {
        ndim = h->s.layers[h->s.nlayers - 1].out_ndim;
        dims = h->s.layers[h->s.nlayers - 1].out_dims;
    } else if (t->nlayers) {
        ndim = t->layers[t->nlayers - 1].out_ndim;
        dims = t->layers[t->nlayers - 1].out_dims;
    }
    if (h->loss.kind != MTLI_LOSS_CROSS_ENTROPY || ndim != 2)
        return false;
    *positions = (size_t)dims[0];
    *classes = (size_t)dims[1];
    return true;
}

mtl_status mtli_head_loss_check(const mtl_model *m, const mtl_head *h,
                                const mtl_tensor *input, size_t B, const mtl_tensor *target,
                                const mtl_tensor *mask)
{
    size_t P, C;
    if (!mtli_head_tokens(h, &P, &C))
        return mtli_loss_check(&h->loss, h->name, B, h->s.out_features, target, mask);
    MTLI_TRY(mtli_loss_check_tokens(&h->loss, h->name, B, P, C, target, mask));
    const mtli_stack *t = &m->trunk.s;
    if (!input || !t->nlayers || !mtli_embedding_is_sequence(&t->layers[0]) ||
        (size_t)m->input_shape[0] != P)
        return MTL_OK;
    const int32_t *y = target->data;
    for (size_t b = 0; b < B; b++) {
        if (mask && (mask->dtype == MTL_INT32 ? ((const int32_t *)mask->data)[b] == 0
                                              : ((const float *)mask->data)[b] == 0.0f))
            continue;
        for (size_t i = 0; i < P; i++)
            if (mtli_layer_id_at(input->data, b * P + i) == -1 && y[b * P + i] != -1)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "head '%s': sample %zu, position %zu is padding (input id -1) "
                                  "but its target is %d, expected -1",
                                  h->name, b, i, (int)y[b * P + i]);
    }
    return MTL_OK;
}

void mtli_head_loss_eval(const mtl_head *h, const float *out, size_t B,
                         const mtl_tensor *target, const mtl_tensor *mask, double *loss,
                         float *dlogits, size_t *cnt)
{
    size_t P, C;
    if (mtli_head_tokens(h, &P, &C))
        mtli_loss_eval_tokens(&h->loss, out, B, P, C, target, mask, loss, dlogits, 1.0f, cnt);
    else
        mtli_loss_eval(&h->loss, out, B, h->s.out_features, target, mask, loss, dlogits, 1.0f,
                       cnt);
}

mtl_status mtli_model_check_batch(mtl_model *m, const mtl_tensor *input,
                                  const mtl_tensor *const *targets,
                                  const mtl_tensor *const *masks, bool train, const char *fn,
                                  size_t *Bout)
{
    MTLI_CHECK_NULL(m, fn);
    if (!m->built)
        return mtli_error(MTL_ERR_STATE, "%s: the model is not built (call mtl_model_build)", fn);
    if (!input)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: argument 'input' is NULL", fn);
    if (input->dtype != m->input_dtype)
        return mtli_error(MTL_ERR_SHAPE, "%s: input dtype is %s, the model expects %s", fn,
                          input->dtype == MTL_INT32 ? "int32" : "float32",
                          m->input_dtype == MTL_INT32 ? "int32" : "float32");
    if (input->ndim != m->input_ndim + 1)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: input has %d dimensions, expected %d (batch + sample shape)", fn,
                          input->ndim, m->input_ndim + 1);
    for (int d = 0; d < m->input_ndim; d++)
        if (input->shape[d + 1] != m->input_shape[d])
            return mtli_error(MTL_ERR_SHAPE, "%s: input dimension %d is %lld, expected %lld", fn,
                              d + 1, (long long)input->shape[d + 1],
                              (long long)m->input_shape[d]);
    size_t B = (size_t)input->shape[0];
    if (B > m->max_batch)
        return mtli_error(MTL_ERR_SHAPE, "%s: batch of %zu samples exceeds max_batch %zu", fn, B,
                          m->max_batch);
    /* data-dependent checks (embedding ids, batch statistics) before anything runs; only the
     * first trunk layer reads the input itself, the others only look at B */
    for (int h = -1; h < m->nheads; h++) {
        mtli_stack *s = h < 0 ? &m->trunk.s : &m->heads[h]->s;
        for (int i = 0; i < s->nlayers; i++) {
            mtl_status st = mtli_layer_check_input(&s->layers[i], input->data, B, train);
            if (st != MTL_OK) {
                if (h < 0)
                    mtli_error_prefix("%s: trunk layer %d", fn, i);
                else
                    mtli_error_prefix("%s: head '%s' layer %d", fn, m->heads[h]->name, i);
                return st;
            }
        }
    }
    if (targets) {
        int any = 0;
        for (int t = 0; t < m->nheads; t++) {
            if (!targets[t]) {
                if (masks && masks[t])
                    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                      "%s: head '%s' has a mask but no target", fn,
                                      m->heads[t]->name);
                continue;
            }
            any = 1;
            mtl_head *h = m->heads[t];
            MTLI_TRY(mtli_head_loss_check(m, h, input, B, targets[t], masks ? masks[t] : NULL));
        }
        if (!any)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: every target is NULL", fn);
    }
    *Bout = B;
    return MTL_OK;
}

static int all_finite(const float *g, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += g[i] * 0.0f; /* NaN/Inf make the product NaN; vectorises */
    return acc == 0.0f;
}

/* L2 penalty lambda*||theta||^2 on weights (not biases or normalisation parameters) */
static void add_l2(mtl_model *m)
{
    if (!(m->l2_trunk > 0.0 || m->l2_heads > 0.0))
        return;
    for (int i = 0; i < m->nnamed; i++) {
        mtli_named_param *p = &m->named[i];
        if (p->is_state || p->no_decay)
            continue;
        double lam = p->head < 0 ? m->l2_trunk : m->l2_heads;
        if (lam <= 0.0)
            continue;
        float c = (float)(2.0 * lam);
        float *g = m->grads + p->offset;
        const float *th = m->params + p->offset;
        for (size_t k = 0; k < p->count; k++)
            g[k] += c * th[k];
    }
}

/* forward (+ backward when grads != NULL). Writes unweighted losses into m->task_loss. */
static mtl_status run(mtl_model *m, mtl_weighting *w, const mtl_tensor *input,
                      const mtl_tensor *const *targets, const mtl_tensor *const *masks,
                      size_t B, bool train, bool backward)
{
    const float *x = input->data;
    const float *Z = mtli_stack_forward(&m->trunk.s, x, B, train, &m->rng);
    size_t D = m->trunk.s.out_features;
    bool active[64];
    bool *act = active;
    bool heap_active = false;
    if (m->nheads > 64) {
        act = mtli_calloc((size_t)m->nheads, sizeof(bool));
        if (!act)
            return mtli_oom("task flags", (size_t)m->nheads);
        heap_active = true;
    }
    mtl_status st = MTL_OK;
    (void)D;
    for (int t = 0; t < m->nheads; t++) {
        mtl_head *h = m->heads[t];
        act[t] = targets[t] != NULL;
        if (!act[t]) {
            m->task_loss[t] = NAN;
            continue;
        }
        const float *out = mtli_stack_forward(&h->s, Z, B, train, &m->rng);
        size_t cnt;
        double L;
        mtli_head_loss_eval(h, out, B, targets[t], masks ? masks[t] : NULL, &L,
                       backward ? h->dlogits : NULL, &cnt);
        m->task_loss[t] = L;
        if (!isfinite(L)) {
            st = mtli_error(MTL_ERR_NUMERIC, "head '%s': the loss is %g (not finite)", h->name,
                            L);
            goto done;
        }
    }
    if (!backward)
        goto done;
    memset(m->grads, 0, m->nparams * sizeof(float));
    unsigned needs = w ? mtli_weighting_needs(w) : MTLI_NEED_L;
    if (needs & (MTLI_NEED_G | MTLI_NEED_J)) {
        st = mtli_engine_backward(m, w, needs, x, Z, B, act);
        if (st != MTL_OK)
            goto done;
    } else {
        st = w ? mtli_weighting_weights(w, m->task_loss, act, m->nheads, m->task_weights)
               : MTL_OK;
        if (st != MTL_OK)
            goto done;
        if (!w)
            for (int t = 0; t < m->nheads; t++)
                m->task_weights[t] = act[t] ? 1.0 : 0.0;
        bool first = true;
        for (int t = 0; t < m->nheads; t++) {
            if (!act[t])
                continue;
            mtl_head *h = m->heads[t];
            float wt = (float)m->task_weights[t];
            size_t n = B * h->s.out_features;
            if (wt != 1.0f)
                for (size_t i = 0; i < n; i++)
                    h->dlogits[i] *= wt;
            float *dst = first ? m->dz : m->dz_tmp;
            mtli_stack_backward(&h->s, Z, h->dlogits, m->trunk.s.nlayers ? dst : NULL, m->grads,
                                B);
            if (!first && m->trunk.s.nlayers)
                for (size_t i = 0; i < B * D; i++)
                    m->dz[i] += m->dz_tmp[i];
            first = false;
        }
        if (m->trunk.s.nlayers)
            mtli_stack_backward(&m->trunk.s, x, m->dz, NULL, m->grads, B);
    }
    add_l2(m);
done:
    if (heap_active)
        mtli_free(act);
    return st;
}

static void save_state(mtl_model *m, mtli_rng *rng_backup)
{
    if (m->nstate)
        memcpy(m->state_backup, m->state, m->nstate * sizeof(float));
    *rng_backup = m->rng;
}

static void restore_state(mtl_model *m, const mtli_rng *rng_backup)
{
    if (m->nstate)
        memcpy(m->state, m->state_backup, m->nstate * sizeof(float));
    m->rng = *rng_backup;
}

static void report_losses(const mtl_model *m, float *task_losses)
{
    if (task_losses)
        for (int t = 0; t < m->nheads; t++)
            task_losses[t] = (float)m->task_loss[t];
}

static mtl_status forward_backward(mtl_model *m, mtl_weighting *w, const mtl_tensor *input,
                                   const mtl_tensor *const *targets,
                                   const mtl_tensor *const *masks, float *task_losses,
                                   const char *fn, mtli_rng *rng_backup)
{
    size_t B;
    MTLI_CHECK_NULL(targets, fn);
    MTLI_TRY(mtli_model_check_batch(m, input, targets, masks, true, fn, &B));
    if (w) {
        unsigned needs = mtli_weighting_needs(w);
        if (mtl_weighting_num_tasks(w) != m->nheads)
            return mtli_error(MTL_ERR_SHAPE,
                              "%s: weighting '%s' was created for %d tasks, the model has %d",
                              fn, mtl_weighting_method(w), mtl_weighting_num_tasks(w),
                              m->nheads);
        if (needs & (MTLI_NEED_G | MTLI_NEED_J))
            MTLI_TRY(mtli_engine_prepare(m, w, needs, (needs & MTLI_NEED_J) != 0));
    }
    m->last_predict_valid = false;
    save_state(m, rng_backup);
    mtl_status st = run(m, w, input, targets, masks, B, true, true);
    report_losses(m, task_losses);
    if (st != MTL_OK) {
        restore_state(m, rng_backup);
        return st;
    }
    return MTL_OK;
}

MTL_API mtl_status mtl_model_forward_backward(mtl_model *m, mtl_weighting *w,
                                              const mtl_tensor *input,
                                              const mtl_tensor *const *targets,
                                              const mtl_tensor *const *masks, float *task_losses)
{
    mtli_rng backup;
    MTLI_TRY(forward_backward(m, w, input, targets, masks, task_losses,
                              "mtl_model_forward_backward", &backup));
    if (!all_finite(m->grads, m->nparams)) {
        restore_state(m, &backup);
        return mtli_error(MTL_ERR_NUMERIC, "mtl_model_forward_backward: a gradient is NaN or Inf");
    }
    return MTL_OK;
}

/* Methods such as FAMO learn from the losses after the update: re-evaluate them on the same
 * batch in evaluation mode (no state changes) and hand them over. */
static mtl_status after_step(mtl_model *m, mtl_weighting *w, const mtl_tensor *input,
                             const mtl_tensor *const *targets, const mtl_tensor *const *masks)
{
    if (!w || !(mtli_weighting_needs(w) & MTLI_NEED_AFTER))
        return MTL_OK;
    size_t B = (size_t)input->shape[0];
    MTLI_TRY(run(m, NULL, input, targets, masks, B, false, false));
    return mtli_weighting_after_step(w, m->task_loss);
}

MTL_API mtl_status mtl_model_train_step(mtl_model *m, mtl_optimizer *opt, mtl_weighting *w,
                                        const mtl_tensor *input,
                                        const mtl_tensor *const *targets,
                                        const mtl_tensor *const *masks, float *task_losses)
{
    MTLI_CHECK_NULL(m, "mtl_model_train_step");
    MTLI_CHECK_NULL(opt, "mtl_model_train_step");
    if (mtli_optimizer_model(opt) != m)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_model_train_step: the optimizer belongs to another model");
    mtli_rng backup;
    MTLI_TRY(forward_backward(m, w, input, targets, masks, task_losses, "mtl_model_train_step",
                              &backup));
    mtl_status st = mtli_optimizer_update(opt, m->params, m->grads);
    if (st != MTL_OK) {
        restore_state(m, &backup);
        return st;
    }
    return after_step(m, w, input, targets, masks);
}

MTL_API mtl_status mtl_model_compute_losses(mtl_model *m, const mtl_tensor *input,
                                            const mtl_tensor *const *targets,
                                            const mtl_tensor *const *masks, float *task_losses)
{
    size_t B;
    MTLI_CHECK_NULL(targets, "mtl_model_compute_losses");
    MTLI_TRY(mtli_model_check_batch(m, input, targets, masks, false, "mtl_model_compute_losses",
                                    &B));
    m->last_predict_valid = false;
    mtl_status st = run(m, NULL, input, targets, masks, B, false, false);
    report_losses(m, task_losses);
    return st;
}

MTL_API mtl_status mtl_model_predict(mtl_model *m, const mtl_tensor *input)
{
    size_t B;
    MTLI_TRY(mtli_model_check_batch(m, input, NULL, NULL, false, "mtl_model_predict", &B));
    const float *Z = mtli_stack_forward(&m->trunk.s, input->data, B, false, &m->rng);
    for (int t = 0; t < m->nheads; t++)
        mtli_stack_forward(&m->heads[t]->s, Z, B, false, &m->rng);
    m->last_batch = B;
    m->last_predict_valid = true;
    return MTL_OK;
}

MTL_API mtl_status mtl_model_output(const mtl_model *m, int head, mtl_tensor *dst,
                                    mtl_output_kind kind)
{
    MTLI_CHECK_NULL(m, "mtl_model_output");
    MTLI_CHECK_NULL(dst, "mtl_model_output");
    if (!m->last_predict_valid)
        return mtli_error(MTL_ERR_STATE, "mtl_model_output: call mtl_model_predict first");
    if (head < 0 || head >= m->nheads)
        return mtli_error(MTL_ERR_NOT_FOUND, "mtl_model_output: head %d out of range (%d heads)",
                          head, m->nheads);
    if (kind != MTL_OUTPUT_RAW && kind != MTL_OUTPUT_PROBABILITIES)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_model_output: unknown output kind %d",
                          (int)kind);
    const mtl_head *h = m->heads[head];
    size_t C = h->s.out_features, n = m->last_batch * C;
    if (dst->dtype != MTL_FLOAT32 || dst->numel != n)
        return mtli_error(MTL_ERR_SHAPE,
                          "mtl_model_output: head '%s' has %zu x %zu outputs; dst must be "
                          "float32 with %zu elements (it has %zu)",
                          h->name, m->last_batch, C, n, dst->numel);
    const float *src = h->s.nlayers ? h->s.act[h->s.nlayers - 1] : NULL;
    if (!src) /* a head without layers outputs the trunk representation */
        src = m->trunk.s.nlayers ? m->trunk.s.act[m->trunk.s.nlayers - 1] : NULL;
    if (!src)
        return mtli_error(MTL_ERR_STATE, "mtl_model_output: model without layers");
    size_t P, Ct;
    if (kind == MTL_OUTPUT_PROBABILITIES && mtli_head_tokens(h, &P, &Ct))
        mtli_loss_activate(&h->loss, src, dst->data, m->last_batch * P, Ct); /* per token */
    else if (kind == MTL_OUTPUT_PROBABILITIES)
        mtli_loss_activate(&h->loss, src, dst->data, m->last_batch, C);
    else
        memcpy(dst->data, src, n * sizeof(float));
    return MTL_OK;
}

MTL_API int64_t mtl_model_output_batch(const mtl_model *m)
{
    return m && m->last_predict_valid ? (int64_t)m->last_batch : 0;
}

/* ---- optimizer glue (the optimizer lives in optim/, which knows nothing of models) ---- */

MTL_API mtl_status mtl_optimizer_create(mtl_optimizer **out, mtl_model *m, const char *kind)
{
    MTLI_CHECK_NULL(out, "mtl_optimizer_create");
    *out = NULL;
    MTLI_CHECK_NULL(m, "mtl_optimizer_create");
    MTLI_CHECK_NULL(kind, "mtl_optimizer_create");
    if (!m->built)
        return mtli_error(MTL_ERR_STATE, "mtl_optimizer_create: the model is not built");
    mtli_part parts[1 + 256];
    mtli_part *pp = parts;
    int n = 1 + m->nheads;
    if (n > (int)(sizeof parts / sizeof parts[0])) {
        pp = mtli_calloc((size_t)n, sizeof *pp);
        if (!pp)
            return mtli_oom("optimizer parts", (size_t)n * sizeof *pp);
    }
    pp[0].name = "trunk";
    pp[0].offset = m->trunk.s.param_offset;
    pp[0].count = m->trunk.s.nparams;
    for (int h = 0; h < m->nheads; h++) {
        pp[h + 1].name = m->heads[h]->name;
        pp[h + 1].offset = m->heads[h]->s.param_offset;
        pp[h + 1].count = m->heads[h]->s.nparams;
    }
    mtl_status st = mtli_optimizer_create(out, kind, m->nparams, pp, n, m);
    if (pp != parts)
        mtli_free(pp);
    return st;
}

MTL_API mtl_status mtl_optimizer_step(mtl_optimizer *opt)
{
    MTLI_CHECK_NULL(opt, "mtl_optimizer_step");
    mtl_model *m = mtli_optimizer_model(opt);
    if (!m)
        return mtli_error(MTL_ERR_STATE, "mtl_optimizer_step: the optimizer has no model");
    return mtli_optimizer_update(opt, m->params, m->grads);
}

/* ---- multi-input training: each task brings its own batch ------------------------------ */

#define MULTI_MAX 256

static mtl_status check_multi(mtl_model *m, const mtl_tensor *const *inputs,
                              const mtl_tensor *const *targets, const mtl_tensor *const *masks,
                              bool train, const char *fn, size_t *Bs, bool *act)
{
    MTLI_CHECK_NULL(m, fn);
    MTLI_CHECK_NULL(inputs, fn);
    MTLI_CHECK_NULL(targets, fn);
    if (!m->built)
        return mtli_error(MTL_ERR_STATE, "%s: the model is not built (call mtl_model_build)", fn);
    if (m->nheads > MULTI_MAX)
        return mtli_error(MTL_ERR_UNSUPPORTED, "%s: at most %d tasks", fn, MULTI_MAX);
    int any = 0;
    for (int t = 0; t < m->nheads; t++) {
        act[t] = false;
        Bs[t] = 0;
        if (!inputs[t] && !targets[t])
            continue;
        mtl_head *h = m->heads[t];
        if (!inputs[t] || !targets[t])
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "%s: task '%s' has %s but no %s", fn, h->name,
                              inputs[t] ? "an input" : "a target",
                              inputs[t] ? "target" : "input");
        mtl_status st = mtli_model_check_batch(m, inputs[t], NULL, NULL, train, fn, &Bs[t]);
        if (st == MTL_OK)
            st = mtli_head_loss_check(m, h, inputs[t], Bs[t], targets[t],
                                      masks ? masks[t] : NULL);
        if (st != MTL_OK) {
            mtli_error_prefix("task '%s'", h->name);
            return st;
        }
        act[t] = true;
        any = 1;
    }
    if (!any)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: no task has an input and a target", fn);
    return MTL_OK;
}

/* Per task: trunk and head forward on the task's own input, loss, head backward, trunk
 * backward into row t of J. Then the weighting combines the rows. */
static mtl_status run_multi(mtl_model *m, mtl_weighting *w, const mtl_tensor *const *inputs,
                            const mtl_tensor *const *targets, const mtl_tensor *const *masks,
                            const size_t *Bs, const bool *act, bool backward)
{
    unsigned needs = backward && w ? mtli_weighting_needs(w) : MTLI_NEED_L;
    size_t P = m->trunk.s.nparams, dzstride = m->max_batch * m->trunk.s.out_features;
    if (backward)
        memset(m->grads, 0, m->nparams * sizeof(float));
    for (int t = 0; t < m->nheads; t++) {
        if (!act[t]) {
            m->task_loss[t] = NAN;
            if (backward)
                memset(m->eng_J + (size_t)t * P, 0, P * sizeof(float));
            continue;
        }
        mtl_head *h = m->heads[t];
        const float *x = inputs[t]->data;
        const float *Z = mtli_stack_forward(&m->trunk.s, x, Bs[t], backward, &m->rng);
        const float *out = mtli_stack_forward(&h->s, Z, Bs[t], backward, &m->rng);
        size_t cnt;
        double L;
        mtli_head_loss_eval(h, out, Bs[t], targets[t], masks ? masks[t] : NULL, &L,
                       backward ? h->dlogits : NULL, &cnt);
        m->task_loss[t] = L;
        if (!isfinite(L))
            return mtli_error(MTL_ERR_NUMERIC, "head '%s': the loss is %g (not finite)", h->name,
                              L);
        if (!backward)
            continue;
        float *dz = m->eng_dz + (size_t)t * dzstride;
        mtli_stack_backward(&h->s, Z, h->dlogits, dz, m->grads, Bs[t]);
        float *Jt = m->eng_J + (size_t)t * P;
        memset(Jt, 0, P * sizeof(float));
        mtli_stack_backward(&m->trunk.s, x, dz, NULL, Jt, Bs[t]);
    }
    if (!backward)
        return MTL_OK;
    MTLI_TRY(mtli_engine_combine(m, w, needs & ~MTLI_NEED_R, NULL, 0, act));
    add_l2(m);
    return MTL_OK;
}

static mtl_status forward_backward_multi(mtl_model *m, mtl_weighting *w,
                                         const mtl_tensor *const *inputs,
                                         const mtl_tensor *const *targets,
                                         const mtl_tensor *const *masks, float *task_losses,
                                         const char *fn, mtli_rng *backup)
{
    size_t Bs[MULTI_MAX];
    bool act[MULTI_MAX];
    MTLI_TRY(check_multi(m, inputs, targets, masks, true, fn, Bs, act));
    unsigned needs = w ? mtli_weighting_needs(w) : MTLI_NEED_L;
    if (w && mtl_weighting_num_tasks(w) != m->nheads)
        return mtli_error(MTL_ERR_SHAPE, "%s: weighting '%s' was created for %d tasks, the "
                          "model has %d", fn, mtl_weighting_method(w),
                          mtl_weighting_num_tasks(w), m->nheads);
    if (needs & MTLI_NEED_R)
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "%s: weighting '%s' works on the shared representation, which differs "
                          "between tasks with their own inputs; use a parameter-gradient method",
                          fn, mtl_weighting_method(w));
    MTLI_TRY(mtli_engine_prepare_multi(m, w, needs));
    m->last_predict_valid = false;
    save_state(m, backup);
    mtl_status st = run_multi(m, w, inputs, targets, masks, Bs, act, true);
    report_losses(m, task_losses);
    if (st == MTL_OK && !all_finite(m->grads, m->nparams))
        st = mtli_error(MTL_ERR_NUMERIC, "%s: a gradient is NaN or Inf", fn);
    if (st != MTL_OK)
        restore_state(m, backup);
    return st;
}

MTL_API mtl_status mtl_model_forward_backward_multi(mtl_model *m, mtl_weighting *w,
                                                    const mtl_tensor *const *inputs,
                                                    const mtl_tensor *const *targets,
                                                    const mtl_tensor *const *masks,
                                                    float *task_losses)
{
    mtli_rng backup;
    return forward_backward_multi(m, w, inputs, targets, masks, task_losses,
                                  "mtl_model_forward_backward_multi", &backup);
}

MTL_API mtl_status mtl_model_train_step_multi(mtl_model *m, mtl_optimizer *opt,
                                              mtl_weighting *w, const mtl_tensor *const *inputs,
                                              const mtl_tensor *const *targets,
                                              const mtl_tensor *const *masks, float *task_losses)
{
    MTLI_CHECK_NULL(m, "mtl_model_train_step_multi");
    MTLI_CHECK_NULL(opt, "mtl_model_train_step_multi");
    if (mtli_optimizer_model(opt) != m)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_model_train_step_multi: the optimizer belongs to another model");
    mtli_rng backup;
    MTLI_TRY(forward_backward_multi(m, w, inputs, targets, masks, task_losses,
                                    "mtl_model_train_step_multi", &backup));
    mtl_status st = mtli_optimizer_update(opt, m->params, m->grads);
    if (st != MTL_OK) {
        restore_state(m, &backup);
        return st;
    }
    if (w && (mtli_weighting_needs(w) & MTLI_NEED_AFTER)) {
        size_t Bs[MULTI_MAX];
        bool act[MULTI_MAX];
        MTLI_TRY(check_multi(m, inputs, targets, masks, false, "mtl_model_train_step_multi", Bs,
                             act));
        MTLI_TRY(run_multi(m, NULL, inputs, targets, masks, Bs, act, false));
        return mtli_weighting_after_step(w, m->task_loss);
    }
    return MTL_OK;
}
