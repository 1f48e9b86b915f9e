/* The per-task-gradient engine: what gradient-based weighting methods consume.
 *
 * After the heads' forward and losses, each active head is backpropagated with its own,
 * unweighted loss gradient; this yields the head's parameter gradient and dZ_t, the task's
 * gradient with respect to the shared representation Z. Then, depending on the method:
 *  - representation mode (R): G_st = <dZ_s, dZ_t> over the batch, one GEMM on the stacked
 *    T x (B*D) matrix; after the weights are known, the trunk runs ONE backward of
 *    sum_t w_t dZ_t.
 *  - parameter mode (G/J): the trunk runs one backward per active task into row t of J
 *    (T x P_shared, contiguous), G = J J^T is one GEMM; the shared gradient is
 *    sum_t w_t J_t (or the method's own combination).
 * Heads always receive their own task's gradient scaled by the task's weight. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/gemm.h"
#include "model/model_internal.h"
#include "weighting/weighting_internal.h"

void mtli_engine_free(mtl_model *m)
{
    mtli_free(m->eng_dz);
    mtli_free(m->eng_J);
    mtli_free(m->eng_Gf);
    mtli_free(m->eng_G);
    mtli_free(m->eng_shared);
    mtli_free(m->eng_scratch);
    m->eng_dz = m->eng_J = m->eng_Gf = m->eng_shared = NULL;
    m->eng_G = m->eng_scratch = NULL;
    m->eng_nscratch = 0;
}

/* Size the engine's workspace (once per model; J only when a method or multi-input training
 * needs it; the method's scratch grows if a larger one is asked for) and bind the weighting
 * to the trunk's layout. Runs before anything changes in a step, so a failure leaves the
 * model as it was. w may be NULL (multi-input training with plain sums). */
mtl_status mtli_engine_prepare(mtl_model *m, mtl_weighting *w, unsigned needs, bool want_J)
{
    size_t P = m->trunk.s.nparams, T = (size_t)m->nheads;
    const char *name = w ? mtl_weighting_method(w) : "ew";
    if (P == 0)
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "weighting '%s' balances gradients of shared parameters, but the "
                          "trunk has none",
                          name);
    if (T > MTLI_WMAX_GRAD_TASKS)
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "weighting '%s' supports up to %d tasks, the model has %zu", name,
                          MTLI_WMAX_GRAD_TASKS, T);
    if (!(needs & MTLI_NEED_R))
        want_J = true;
    size_t dzn = m->max_batch * m->trunk.s.out_features;
    if (!m->eng_dz) {
        m->eng_dz = mtli_aligned_calloc(T * dzn, sizeof(float));
        m->eng_Gf = mtli_aligned_calloc(T * T, sizeof(float));
        m->eng_G = mtli_calloc(T * T, sizeof(double));
        m->eng_shared = mtli_aligned_calloc(P, sizeof(float));
        if (!m->eng_dz || !m->eng_Gf || !m->eng_G || !m->eng_shared) {
            mtli_engine_free(m);
            return mtli_oom("per-task gradient workspace", T * dzn * sizeof(float));
        }
    }
    if (want_J && !m->eng_J) {
        size_t jn;
        if (!mtli_mul_size(T, P, &jn))
            return MTL_ERR_RANGE;
        m->eng_J = mtli_aligned_calloc(jn, sizeof(float));
        if (!m->eng_J)
            return mtli_oom("per-task gradients (tasks x shared parameters)", jn * sizeof(float));
    }
    if (!w)
        return MTL_OK;
    size_t nws = mtli_weighting_workspace(w, (int)T, P);
    if (nws > m->eng_nscratch) {
        double *ns = mtli_calloc(nws, sizeof(double));
        if (!ns)
            return mtli_oom("weighting workspace", nws * sizeof(double));
        mtli_free(m->eng_scratch);
        m->eng_scratch = ns;
        m->eng_nscratch = nws;
    }
    if (w->P == P)
        return MTL_OK; /* already bound to a trunk of this layout */
    /* layer and tensor boundaries of the trunk within the shared range */
    const mtli_stack *s = &m->trunk.s;
    size_t layer_ends[256], tensor_ends[1024];
    int nl = 0, nt = 0;
    for (int i = 0; i < s->nlayers && nl < 256; i++) {
        const mtli_layer *l = &s->layers[i];
        if (!l->nparams)
            continue;
        size_t base = (size_t)(l->params - m->params);
        for (int d = 0; d < l->ndesc && nt < 1024; d++)
            if (!l->desc[d].is_state)
                tensor_ends[nt++] = base + l->desc[d].offset + l->desc[d].count;
        layer_ends[nl++] = base + l->nparams;
    }
    return mtli_weighting_bind(w, P, layer_ends, nl, tensor_ends, nt);
}

/* The backward of a gradient-balancing step; m->grads is zero on entry. */
mtl_status mtli_engine_backward(mtl_model *m, mtl_weighting *w, unsigned needs, const float *x,
                                const float *Z, size_t B, const bool *act)
{
    MTLI_TRY(mtli_engine_per_task(m, needs, x, Z, B, act));
    return mtli_engine_combine(m, w, needs, x, B, act);
}

/* Heads' own gradients (unweighted) and per-task trunk gradients: dZ_t always, J rows unless
 * in representation mode. */
mtl_status mtli_engine_per_task(mtl_model *m, unsigned needs, const float *x, const float *Z,
                                size_t B, const bool *act)
{
    const int T = m->nheads;
    const size_t P = m->trunk.s.nparams, D = m->trunk.s.out_features, BD = B * D;
    const size_t dzstride = m->max_batch * D;
    const bool rep = (needs & MTLI_NEED_R) != 0;
    /* heads: own gradient, unweighted for now; dZ_t per task */
    for (int t = 0; t < T; t++) {
        float *dz = m->eng_dz + (size_t)t * dzstride;
        if (!act[t]) {
            memset(dz, 0, BD * sizeof(float));
            continue;
        }
        mtli_stack_backward(&m->heads[t]->s, Z, m->heads[t]->dlogits, dz, m->grads, B);
    }
    if (!rep) {
        for (int t = 0; t < T; t++) {
            float *Jt = m->eng_J + (size_t)t * P;
            memset(Jt, 0, P * sizeof(float));
            if (act[t]) /* the trunk's parameters start at offset 0, so row t is its base */
                mtli_stack_backward(&m->trunk.s, x, m->eng_dz + (size_t)t * dzstride, NULL, Jt,
                                    B);
        }
    }
    return MTL_OK;
}

/* Weights from the method, heads scaled, shared gradient combined. */
mtl_status mtli_engine_combine(mtl_model *m, mtl_weighting *w, unsigned needs, const float *x,
                               size_t B, const bool *act)
{
    const int T = m->nheads;
    const size_t P = m->trunk.s.nparams, D = m->trunk.s.out_features, BD = B * D;
    const size_t dzstride = m->max_batch * D;
    const bool rep = (needs & MTLI_NEED_R) != 0;
    const float *J = rep ? NULL : m->eng_J;
    const double *G = NULL;
    if (needs & MTLI_NEED_G) {
        if (rep)
            mtli_syrk_full((size_t)T, BD, 1.0f, m->eng_dz, dzstride, 0.0f, m->eng_Gf, (size_t)T);
        else
            mtli_syrk_full((size_t)T, P, 1.0f, m->eng_J, P, 0.0f, m->eng_Gf, (size_t)T);
        for (int i = 0; i < T * T; i++)
            m->eng_G[i] = m->eng_Gf[i];
        G = m->eng_G;
    }
    bool wrote = false;
    if (!w) { /* plain sum (multi-input training without a weighting) */
        for (int t = 0; t < T; t++)
            m->task_weights[t] = act[t] ? 1.0 : 0.0;
    } else {
    mtli_wstep step = {.T = T,
                       .losses = m->task_loss,
                       .active = act,
                       .G = G,
                       .J = (needs & MTLI_NEED_J) ? J : NULL,
                       .P = P,
                       .weights = m->task_weights,
                       .shared_out = (needs & MTLI_NEED_J) ? m->eng_shared : NULL,
                       .wrote_shared = &wrote,
                       .scratch = m->eng_scratch};
    MTLI_TRY(mtli_weighting_apply(w, &step));
    }
    /* heads: scale each head's gradient range by its weight */
    for (int t = 0; t < T; t++) {
        const mtli_stack *hs = &m->heads[t]->s;
        float wt = act[t] ? (float)m->task_weights[t] : 0.0f;
        float *g = m->grads + hs->param_offset;
        for (size_t i = 0; i < hs->nparams; i++)
            g[i] *= wt;
    }
    /* trunk */
    if (wrote) {
        memcpy(m->grads, m->eng_shared, P * sizeof(float));
    } else if (rep) {
        memset(m->dz, 0, BD * sizeof(float));
        for (int t = 0; t < T; t++) {
            if (!act[t])
                continue;
            float wt = (float)m->task_weights[t];
            const float *dz = m->eng_dz + (size_t)t * dzstride;
            for (size_t i = 0; i < BD; i++)
                m->dz[i] += wt * dz[i];
        }
        mtli_stack_backward(&m->trunk.s, x, m->dz, NULL, m->grads, B);
    } else {
        float wts[MTLI_WMAX_GRAD_TASKS];
        for (int t = 0; t < T; t++)
            wts[t] = act[t] ? (float)m->task_weights[t] : 0.0f;
        /* grads[0:P] = w^T J, one GEMM (1 x T times T x P) */
        mtli_gemm(false, false, 1, P, (size_t)T, 1.0f, wts, (size_t)T, m->eng_J, P, 0.0f,
                  m->grads, P);
    }
    return MTL_OK;
}
