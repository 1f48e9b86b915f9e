/* The per-task-gradient engine: what gradient-based weighting methods consume.
 *
 * After the heads' forward and losses, each active head is backpropagated with its own,
 * unweighted loss gradient; this yields the head's parameter gradient and dZ_t, the task's
 * gradient with respect to the shared representation Z. Then, depending on the method:
 *  - representation mode (R): G_st = <dZ_s, dZ_t> over the batch (mtli_layer_dots: T x T
 *    dot products of long rows, which a GEMM runs at a fraction of its speed); after the
 *    weights are known, the trunk runs ONE backward of sum_t w_t dZ_t.
 *  - parameter mode, per-task gradients (J; G methods when it is the cheaper way): the T
 *    streams dZ_t are stacked along the batch ([T*B, D]) and the trunk runs ONE stacked
 *    backward (mtli_stack_backward_stacked): every layer's input gradient is one call over
 *    T*B rows (one GEMM for a linear layer), and its per-task parameter gradients go to row
 *    t of J (T x P_shared, contiguous); G = J J^T (mtli_layer_dots); the shared gradient is
 *    sum_t w_t J_t (one GEMM) or the method's own combination.
 *  - parameter mode without J ("autogram", G methods): the same stacked backward, but a
 *    layer that can (linear) adds its contribution to G straight from its B x B input Gram,
 *    sum_k dY_s[:,k]^T (X X^T + 1 1^T) dY_t[:,k], never forming its T gradients; a layer
 *    where that costs more multiply-adds than forming them, or without that operation,
 *    forms its T gradients in a small buffer and adds their Gram. The update is then ONE
 *    ordinary backward of sum_t w_t dZ_t.
 *    Which of the two parameter-mode routes runs is decided when the step is prepared, by
 *    the multiply-adds each costs at the model's max_batch (mtl_model.eng_force overrides
 *    it in tests).
 *  - grad_layers = k > 0 (model key): only the parameters of the last k trunk layers with
 *    parameters get per-task gradients (the columns of G and J cover only them; the
 *    weighting is bound to that range). The layers below get the combined gradient: the
 *    stacked streams' input gradients at that depth, weighted by the task weights and summed,
 *    run through one ordinary backward (autogram: the ordinary backward of sum_t w_t dZ_t
 *    covers the whole trunk anyway). A cheap approximation: the Gram only sees the top of
 *    the trunk. Representation mode and multi-input steps ignore it.
 * Heads always receive their own task's gradient scaled by the task's weight. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/gemm.h"
#include "model/model_internal.h"
#include "weighting/weighting_internal.h"

/* Floats per stacked ping-pong buffer; more tasks than fit are stacked in groups (then the
 * J route is taken, since the autogram needs every stream at once). */
#define ENG_STACK_MAX ((size_t)1 << 24)

void mtli_engine_free(mtl_model *m)
{
    mtli_free(m->eng_dz);
    mtli_free(m->eng_J);
    mtli_free(m->eng_G);
    mtli_free(m->eng_shared);
    mtli_free(m->eng_scratch);
    mtli_free(m->eng_stk[0]);
    mtli_free(m->eng_stk[1]);
    mtli_free(m->eng_work);
    mtli_free(m->eng_jl);
    mtli_free(m->eng_route);
    m->eng_dz = m->eng_J = m->eng_shared = NULL;
    m->eng_G = m->eng_scratch = NULL;
    m->eng_stk[0] = m->eng_stk[1] = m->eng_work = m->eng_jl = NULL;
    m->eng_route = NULL;
    m->eng_nscratch = m->eng_nJ = m->eng_nstk = m->eng_nwork = m->eng_njl = 0;
}

/* Grow an aligned float buffer to n floats (contents not kept). */
static mtl_status grow(float **p, size_t *have, size_t n, const char *what)
{
    if (n <= *have && *p)
        return MTL_OK;
    float *q = mtli_aligned_calloc(n ? n : 1, sizeof(float));
    if (!q)
        return mtli_oom(what, n * sizeof(float));
    mtli_free(*p);
    *p = q;
    *have = n;
    return MTL_OK;
}

/* The per-task range of single-batch steps: layers lo..top of the trunk, parameters
 * [P0, P). */
static void grad_range(const mtl_model *m, int *lo, size_t *P0)
{
    const mtli_stack *s = &m->trunk.s;
    *lo = 0;
    *P0 = 0;
    if (m->grad_layers <= 0)
        return;
    int64_t k = 0;
    for (int i = s->nlayers - 1; i >= 0; i--) {
        const mtli_layer *l = &s->layers[i];
        if (!l->nparams)
            continue;
        if (++k == m->grad_layers) {
            *lo = i;
            *P0 = (size_t)(l->params - m->params);
            return;
        }
    }
}

/* Streams stacked per pass for T tasks. */
static int stack_group(const mtl_model *m, int T)
{
    size_t per = m->max_batch * m->trunk.s.max_features;
    size_t cap = m->eng_stack_cap ? m->eng_stack_cap : ENG_STACK_MAX;
    size_t g = per ? cap / per : (size_t)T;
    if (g < 1)
        g = 1;
    return g < (size_t)T ? (int)g : T;
}

/* Autogram routes for the layers lo..top at B rows and T streams: a layer with a Gram
 * operation takes it when cheaper (always when force_gram), the others form their
 * gradients in jl. Reports the workspace and jl floats needed, and returns the estimated
 * multiply-adds of the autogram step's trunk part (its Gram work plus the ordinary
 * backward of the update); *cost_j receives those of the J route. route may be NULL. */
static double autogram_plan(const mtl_model *m, int lo, int T, size_t B, bool force_gram,
                            unsigned char *route, size_t *nwork, size_t *njl, double *cost_j)
{
    const mtli_stack *s = &m->trunk.s;
    double ca = 0.0, cj = 0.0, Td = (double)T, Bd = (double)B;
    *nwork = *njl = 0;
    for (int i = lo; i < s->nlayers; i++) {
        const mtli_layer *l = &s->layers[i];
        unsigned char r = MTLI_ROUTE_NONE;
        if (l->nparams) {
            double np = (double)l->nparams;
            double jac = Td * Bd * np + Td * Td * np, g = INFINITY;
            size_t w = 0;
            if (l->ops->gram_stacked && l->ops->backward_stacked) {
                mtli_bwd b = {.B = B};
                g = l->ops->gram_stacked(l, &b, T, NULL, NULL, &jac, &w);
            }
            if (g < INFINITY && (force_gram || g < jac)) {
                r = MTLI_ROUTE_GRAM;
                ca += g;
                if (w > *nwork)
                    *nwork = w;
            } else {
                r = MTLI_ROUTE_ROWS_GRAM;
                ca += jac;
                size_t n = (size_t)T * l->nparams;
                if (n > *njl)
                    *njl = n;
            }
            ca += 2.0 * Bd * np; /* this layer in the ordinary backward of the update */
            cj += jac + Td * np; /* its rows of J, and of the combination w^T J */
        }
        if (route)
            route[i] = r;
    }
    *cost_j = cj;
    return ca;
}

static mtl_status bind(mtl_model *m, mtl_weighting *w, size_t P0)
{
    size_t P = m->trunk.s.nparams, Pg = P - P0;
    if (w->P == Pg)
        return MTL_OK; /* already bound to this layout (Pg fixes the range) */
    /* layer and tensor boundaries of the trunk within the shared range */
    const mtli_stack *s = &m->trunk.s;
    size_t layer_ends[256], tensor_ends[1024];
    int nl = 0, nt = 0;
    for (int i = 0; i < s->nlayers && nl < 256; i++) {
        const mtli_layer *l = &s->layers[i];
        if (!l->nparams)
            continue;
        size_t base = (size_t)(l->params - m->params);
        if (base < P0)
            continue;
        base -= P0;
        for (int d = 0; d < l->ndesc && nt < 1024; d++)
            if (!l->desc[d].is_state)
                tensor_ends[nt++] = base + l->desc[d].offset + l->desc[d].count;
        layer_ends[nl++] = base + l->nparams;
    }
    return mtli_weighting_bind(w, Pg, layer_ends, nl, tensor_ends, nt);
}

/* Workspace common to every path; the weighting's scratch. */
static mtl_status prepare_base(mtl_model *m, mtl_weighting *w)
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
    size_t dzn = m->max_batch * m->trunk.s.out_features;
    if (!m->eng_dz) {
        m->eng_dz = mtli_aligned_calloc(T * dzn > 0 ? T * dzn : 1, sizeof(float));
        m->eng_G = mtli_calloc(2 * T * T, sizeof(double)); /* T x T, then the compact one */
        m->eng_shared = mtli_aligned_calloc(P, sizeof(float));
        m->eng_route = mtli_calloc(m->trunk.s.nlayers ? (size_t)m->trunk.s.nlayers : 1, 1);
        if (!m->eng_dz || !m->eng_G || !m->eng_shared || !m->eng_route) {
            mtli_engine_free(m);
            return mtli_oom("per-task gradient workspace", T * dzn * sizeof(float));
        }
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
    return MTL_OK;
}

static mtl_status grow_J(mtl_model *m)
{
    size_t jn;
    if (!mtli_mul_size((size_t)m->nheads, m->trunk.s.nparams, &jn))
        return MTL_ERR_RANGE;
    return grow(&m->eng_J, &m->eng_nJ, jn, "per-task gradients (tasks x shared parameters)");
}

/* Size the engine's workspace (grown when a method or setting needs more; a failure leaves
 * the model as it was, the workspace holds no state) and bind the weighting to the shared
 * columns of single-batch steps. Runs before anything changes in a step. w may be NULL. */
mtl_status mtli_engine_prepare(mtl_model *m, mtl_weighting *w, unsigned needs, bool want_J)
{
    MTLI_TRY(prepare_base(m, w));
    const int T = m->nheads;
    const bool rep = (needs & MTLI_NEED_R) != 0;
    int lo;
    size_t P0;
    grad_range(m, &lo, &P0);
    bool autogram = false;
    if (!rep && (needs & MTLI_NEED_G) && !(needs & MTLI_NEED_J) && !want_J &&
        m->eng_force != 1 && stack_group(m, T) == T) {
        size_t nwork, njl;
        double cj;
        double ca = autogram_plan(m, lo, T, m->max_batch, m->eng_force == 3, NULL, &nwork,
                                  &njl, &cj);
        autogram = m->eng_force >= 2 || ca < cj;
        if (autogram) {
            MTLI_TRY(grow(&m->eng_work, &m->eng_nwork, nwork, "Gram workspace"));
            MTLI_TRY(grow(&m->eng_jl, &m->eng_njl, njl, "per-task gradients of one layer"));
        }
    }
    if (!rep) {
        size_t n;
        if (!mtli_mul_size((size_t)stack_group(m, T), m->max_batch, &n) ||
            !mtli_mul_size(n, m->trunk.s.max_features, &n))
            return MTL_ERR_RANGE;
        size_t have = m->eng_nstk;
        MTLI_TRY(grow(&m->eng_stk[0], &have, n, "stacked backward buffers"));
        have = m->eng_nstk;
        MTLI_TRY(grow(&m->eng_stk[1], &have, n, "stacked backward buffers"));
        m->eng_nstk = have;
        if (!autogram)
            MTLI_TRY(grow_J(m));
    }
    if (want_J)
        MTLI_TRY(grow_J(m));
    m->eng_autogram = autogram;
    return w ? bind(m, w, P0) : MTL_OK;
}

mtl_status mtli_engine_prepare_multi(mtl_model *m, mtl_weighting *w, unsigned needs)
{
    (void)needs;
    MTLI_TRY(prepare_base(m, w));
    MTLI_TRY(grow_J(m));
    return w ? bind(m, w, 0) : MTL_OK;
}

/* The weighting's weights from G/J and the losses; NULL w: plain sum. */
static mtl_status apply(mtl_model *m, mtl_weighting *w, unsigned needs, const double *G,
                        const float *J, size_t P, const bool *act, bool *wrote)
{
    *wrote = false;
    if (!w) {
        for (int t = 0; t < m->nheads; t++)
            m->task_weights[t] = act[t] ? 1.0 : 0.0;
        return MTL_OK;
    }
    mtli_wstep step = {.T = m->nheads,
                       .losses = m->task_loss,
                       .active = act,
                       .G = G,
                       .J = (needs & MTLI_NEED_J) ? J : NULL,
                       .P = P,
                       .weights = m->task_weights,
                       .shared_out = (needs & MTLI_NEED_J) ? m->eng_shared : NULL,
                       .wrote_shared = wrote,
                       .scratch = m->eng_scratch};
    return mtli_weighting_apply(w, &step);
}

/* Heads: scale each head's gradient range by its weight. */
static void scale_heads(mtl_model *m, const bool *act)
{
    for (int t = 0; t < m->nheads; t++) {
        const mtli_stack *hs = &m->heads[t]->s;
        float wt = act[t] ? (float)m->task_weights[t] : 0.0f;
        float *g = m->grads + hs->param_offset;
        for (size_t i = 0; i < hs->nparams; i++)
            g[i] *= wt;
    }
}

/* out[0:n] = sum_a w[idx[a]] * src[slot_a * stride : slot_a * stride + n], where slot_a is a
 * (compact slots) or idx[a] (slots by task) */
MTLI_VECTOR_CLONES
static void combine_streams(const mtl_model *m, const float *src, size_t stride, size_t n,
                            const int *idx, int k, bool by_task, float *out)
{
    memset(out, 0, n * sizeof(float));
    for (int a = 0; a < k; a++) {
        float wt = (float)m->task_weights[idx[a]];
        const float *s = src + (size_t)(by_task ? idx[a] : a) * stride;
        for (size_t i = 0; i < n; i++)
            out[i] += wt * s[i];
    }
}

/* grads[P0:P] = w^T J: the weighted sum of the active tasks' rows, a chunk of the output at a
 * time (it stays in L1 while the T rows stream through). Not a GEMM call: BLIS runs this
 * 1 x T by T x Pg product at a fraction of memory speed (3.4 ms against 0.5 ms on the mid
 * model at T = 8). */
#define COMBINE_CHUNK 2048

MTLI_VECTOR_CLONES
static void combine_rows(mtl_model *m, const bool *act, size_t P0, size_t Pg)
{
    const int T = m->nheads;
    float *out = m->grads + P0;
    for (size_t p0 = 0; p0 < Pg; p0 += COMBINE_CHUNK) {
        size_t n = Pg - p0 < COMBINE_CHUNK ? Pg - p0 : COMBINE_CHUNK;
        float *o = out + p0;
        memset(o, 0, n * sizeof(float));
        for (int t = 0; t < T; t++) {
            if (!act[t])
                continue;
            const float wt = (float)m->task_weights[t], *r = m->eng_J + (size_t)t * Pg + p0;
            for (size_t i = 0; i < n; i++)
                o[i] += wt * r[i];
        }
    }
}

static void gram_from_J(mtl_model *m, size_t Pg)
{
    const size_t T = (size_t)m->nheads;
    memset(m->eng_G, 0, T * T * sizeof(double));
    mtli_layer_dots(T, Pg, m->eng_J, Pg, m->eng_J, Pg, MTLI_DOTS_SYMMETRIC, m->eng_G);
}

/* Representation mode with heads that start with a plain linear layer of few outputs C_t:
 * dZ_t = dY_t W_t, with dY_t [B, C_t] the gradient at that layer's output and W_t [C_t, D]
 * its weight, so
 *   G_st = <dY_s W_s, dY_t W_t> = sum over c, c' of (dY_s^T dY_t)[c, c'] (W_s W_t^T)[c, c'],
 * which costs (B + D) C_s C_t instead of B D, and the combined gradient sum_t w_t dZ_t is
 * formed from the dY_t directly: the T per-task dZ_t never exist. Taken when every active
 * head qualifies and C^2 (B + D) < B D for each (mtl_model.eng_force == 1 turns it off). */
static bool rep_factored(const mtl_model *m, const bool *act, size_t B)
{
    const size_t D = m->trunk.s.out_features;
    if (m->eng_force == 1)
        return false;
    for (int t = 0; t < m->nheads; t++) {
        if (!act[t])
            continue;
        const mtli_stack *hs = &m->heads[t]->s;
        if (hs->nlayers == 0)
            return false;
        const mtli_layer *l0 = &hs->layers[0];
        double C = (double)l0->out_features;
        if (l0->ops != &mtli_linear_ops || l0->in_ndim != 1 || l0->in_features != D ||
            C * C * ((double)B + (double)D) >= (double)B * (double)D)
            return false;
    }
    return true;
}

/* Representation mode: G of the dZ_t, one backward of sum_t w_t dZ_t. */
static mtl_status backward_rep(mtl_model *m, mtl_weighting *w, unsigned needs, const float *x,
                               const float *Z, size_t B, const bool *act)
{
    const int T = m->nheads;
    const size_t D = m->trunk.s.out_features, BD = B * D, dzstride = m->max_batch * D;
    const bool fact = rep_factored(m, act, B);
    int idx[MTLI_WMAX_GRAD_TASKS], k = 0;
    const float *dy[MTLI_WMAX_GRAD_TASKS]; /* factored: dY_t of the a-th active task */
    for (int t = 0; t < T; t++) {
        float *dz = m->eng_dz + (size_t)t * dzstride;
        if (!act[t]) {
            if (!fact)
                memset(dz, 0, BD * sizeof(float));
            continue;
        }
        mtli_stack *hs = &m->heads[t]->s;
        if (!fact) {
            mtli_stack_backward(hs, Z, m->heads[t]->dlogits, dz, m->grads, B);
        } else {
            /* the head above its first layer, into dY_t (kept in task t's dZ slot), then the
             * first layer's parameter gradient only */
            const mtli_layer *l0 = &hs->layers[0];
            const float *d0 = m->heads[t]->dlogits;
            if (hs->nlayers > 1) {
                mtli_stack_backward_range(hs, Z, 1, hs->nlayers - 1, d0, dz, m->grads, B);
                d0 = dz;
            }
            mtli_bwd b = {.x = Z,
                          .y = hs->act[0],
                          .dy = d0,
                          .dx = NULL,
                          .dparams = m->grads + (l0->params - m->params),
                          .B = B,
                          .scratch = hs->scratch[0]};
            l0->ops->backward(l0, &b);
            dy[k] = d0;
        }
        idx[k++] = t;
    }
    memset(m->eng_G, 0, (size_t)T * T * sizeof(double));
    if (!fact) {
        mtli_layer_dots((size_t)T, BD, m->eng_dz, dzstride, m->eng_dz, dzstride,
                        MTLI_DOTS_SYMMETRIC, m->eng_G);
    } else {
        for (int a = 0; a < k; a++)
            for (int b = a; b < k; b++) {
                const mtli_layer *la = &m->heads[idx[a]]->s.layers[0],
                                 *lb = &m->heads[idx[b]]->s.layers[0];
                const size_t Ca = la->out_features, Cb = lb->out_features;
                double g = 0.0;
                for (size_t c = 0; c < Ca; c++)
                    for (size_t e = 0; e < Cb; e++) {
                        double yy = 0.0, ww = 0.0;
                        for (size_t i = 0; i < B; i++)
                            yy += (double)dy[a][i * Ca + c] * dy[b][i * Cb + e];
                        const float *wa = la->params + c * D, *wb = lb->params + e * D;
                        for (size_t j = 0; j < D; j++)
                            ww += (double)wa[j] * wb[j];
                        g += yy * ww;
                    }
                m->eng_G[(size_t)idx[a] * T + idx[b]] = g;
                m->eng_G[(size_t)idx[b] * T + idx[a]] = g;
            }
    }
    bool wrote;
    MTLI_TRY(apply(m, w, needs, m->eng_G, NULL, m->trunk.s.nparams, act, &wrote));
    scale_heads(m, act);
    if (!fact) {
        combine_streams(m, m->eng_dz, dzstride, BD, idx, k, true, m->dz);
    } else { /* sum_t w_t dY_t W_t, one product per head (as the heads' own backward) */
        for (int a = 0; a < k; a++) {
            const mtli_layer *l0 = &m->heads[idx[a]]->s.layers[0];
            mtli_gemm(false, false, B, D, l0->out_features, (float)m->task_weights[idx[a]],
                      dy[a], l0->out_features, l0->params, D, a ? 1.0f : 0.0f, m->dz, D);
        }
    }
    mtli_stack_backward(&m->trunk.s, x, m->dz, NULL, m->grads, B);
    return MTL_OK;
}

/* The backward of a single-batch gradient-balancing step; m->grads is zero on entry and
 * mtli_engine_prepare ran for this weighting. */
mtl_status mtli_engine_backward(mtl_model *m, mtl_weighting *w, unsigned needs, const float *x,
                                const float *Z, size_t B, const bool *act)
{
    if (needs & MTLI_NEED_R)
        return backward_rep(m, w, needs, x, Z, B, act);
    mtli_stack *s = &m->trunk.s;
    const int T = m->nheads;
    const size_t P = s->nparams, D = s->out_features, BD = B * D;
    int lo;
    size_t P0;
    grad_range(m, &lo, &P0);
    const size_t Pg = P - P0;
    /* heads: own gradient, unweighted for now; dZ of the a-th active task in slot a of the
     * stacked [k*B, D] matrix */
    int idx[MTLI_WMAX_GRAD_TASKS], k = 0;
    for (int t = 0; t < T; t++) {
        if (!act[t])
            continue;
        mtli_stack_backward(&m->heads[t]->s, Z, m->heads[t]->dlogits,
                            m->eng_dz + (size_t)k * BD, m->grads, B);
        idx[k++] = t;
    }
    const bool autogram = m->eng_autogram;
    const float *bnd = NULL; /* the streams' gradients at the input of layer lo */
    if (autogram) {
        size_t nwork, njl;
        double cj;
        unsigned char *route = m->eng_route;
        autogram_plan(m, lo, k, B, m->eng_force == 3, route, &nwork, &njl, &cj);
        /* prepare sized the buffers for T streams at max_batch; fewer rows or streams only
         * make a layer's Gram route cheaper and smaller, but stay safe if not */
        for (int i = lo; i < s->nlayers; i++) {
            const mtli_layer *l = &s->layers[i];
            if (route[i] == MTLI_ROUTE_NONE)
                continue;
            size_t wf = 0;
            if (l->ops->gram_stacked) {
                mtli_bwd b = {.B = B};
                double jc;
                l->ops->gram_stacked(l, &b, k, NULL, NULL, &jc, &wf);
            }
            bool rows_fit = (size_t)k * l->nparams <= m->eng_njl;
            bool gram_fits = l->ops->gram_stacked && wf <= m->eng_nwork;
            if (route[i] == MTLI_ROUTE_ROWS_GRAM && !rows_fit && gram_fits)
                route[i] = MTLI_ROUTE_GRAM;
            else if (route[i] == MTLI_ROUTE_GRAM && !gram_fits)
                route[i] = MTLI_ROUTE_ROWS_GRAM;
        }
        double *Gc = m->eng_G + (size_t)T * T;
        memset(Gc, 0, (size_t)k * k * sizeof(double));
        mtli_stacked st = {.T = k,
                           .B = B,
                           .buf = {m->eng_stk[0], m->eng_stk[1]},
                           .rows = NULL,
                           .P0 = P0,
                           .route = route,
                           .G = Gc,
                           .work = m->eng_work,
                           .jl = m->eng_jl,
                           .ldjl = 0};
        /* jl rows: as long as the widest layer that forms its rows */
        for (int i = lo; i < s->nlayers; i++)
            if (route[i] == MTLI_ROUTE_ROWS_GRAM && s->layers[i].nparams > st.ldjl)
                st.ldjl = s->layers[i].nparams;
        mtli_stack_backward_stacked(s, x, lo, m->eng_dz, false, &st);
        memset(m->eng_G, 0, (size_t)T * T * sizeof(double));
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                m->eng_G[(size_t)idx[a] * T + idx[b]] = Gc[(size_t)a * k + b];
    } else {
        float *rows[MTLI_WMAX_GRAD_TASKS];
        for (int t = 0; t < T; t++)
            if (!act[t])
                memset(m->eng_J + (size_t)t * Pg, 0, Pg * sizeof(float));
        for (int a = 0; a < k; a++)
            rows[a] = m->eng_J + (size_t)idx[a] * Pg;
        const int group = stack_group(m, T);
        for (int a0 = 0; a0 < k; a0 += group) {
            int n = k - a0 < group ? k - a0 : group;
            mtli_stacked st = {.T = n,
                               .B = B,
                               .buf = {m->eng_stk[0], m->eng_stk[1]},
                               .rows = rows + a0,
                               .P0 = P0,
                               .route = NULL};
            bnd = mtli_stack_backward_stacked(s, x, lo, m->eng_dz + (size_t)a0 * BD,
                                              P0 > 0 && n == k, &st);
        }
        if (needs & MTLI_NEED_G)
            gram_from_J(m, Pg);
    }
    bool wrote;
    MTLI_TRY(apply(m, w, needs, (needs & MTLI_NEED_G) ? m->eng_G : NULL, m->eng_J, Pg, act,
                   &wrote));
    scale_heads(m, act);
    /* trunk */
    if (autogram) {
        combine_streams(m, m->eng_dz, BD, BD, idx, k, false, m->dz);
        mtli_stack_backward(s, x, m->dz, NULL, m->grads, B);
        return MTL_OK;
    }
    if (P0 > 0) { /* the layers below the per-task range: the combined stream */
        if (bnd) {
            size_t n = B * s->layers[lo].in_features;
            float *comb = bnd == m->eng_stk[0] ? m->eng_stk[1] : m->eng_stk[0];
            combine_streams(m, bnd, n, n, idx, k, false, comb);
            mtli_stack_backward_range(s, x, 0, lo - 1, comb, NULL, m->grads, B);
        } else { /* stacked in groups: one ordinary backward, its top part replaced below */
            combine_streams(m, m->eng_dz, BD, BD, idx, k, false, m->dz);
            mtli_stack_backward(s, x, m->dz, NULL, m->grads, B);
        }
    }
    if (wrote)
        memcpy(m->grads + P0, m->eng_shared, Pg * sizeof(float));
    else
        combine_rows(m, act, P0, Pg);
    return MTL_OK;
}

/* Multi-input steps: J (T x P, every trunk parameter) was filled by the caller. */
mtl_status mtli_engine_combine(mtl_model *m, mtl_weighting *w, unsigned needs, const float *x,
                               size_t B, const bool *act)
{
    (void)x;
    (void)B;
    const size_t P = m->trunk.s.nparams;
    if (needs & MTLI_NEED_G)
        gram_from_J(m, P);
    bool wrote;
    MTLI_TRY(apply(m, w, needs, (needs & MTLI_NEED_G) ? m->eng_G : NULL, m->eng_J, P, act,
                   &wrote));
    scale_heads(m, act);
    if (wrote)
        memcpy(m->grads, m->eng_shared, P * sizeof(float));
    else
        combine_rows(m, act, 0, P);
    return MTL_OK;
}
