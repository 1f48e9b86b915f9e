/* Stacks of layers: the trunk and every head are one. */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "model/model_internal.h"

void mtli_stack_init(mtli_stack *s, mtl_model *m)
{
    memset(s, 0, sizeof *s);
    s->model = m;
}

void mtli_stack_free(mtli_stack *s)
{
    if (s->act) {
        for (int i = 0; i < s->nlayers; i++)
            mtli_free(s->act[i]);
        mtli_free(s->act);
    }
    if (s->scratch) {
        for (int i = 0; i < s->nlayers; i++)
            mtli_free(s->scratch[i]);
        mtli_free(s->scratch);
    }
    mtli_free(s->layers);
    memset(s, 0, sizeof *s);
}

mtl_status mtli_stack_add(mtli_stack *s, const char *kind, int *index, const char *owner)
{
    if (index)
        *index = -1;
    if (s->model->built)
        return mtli_error(MTL_ERR_STATE, "%s: cannot add a layer after mtl_model_build", owner);
    if (kind == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: layer kind is NULL", owner);
    const mtli_layer_ops *ops = mtli_layer_find(kind);
    if (!ops)
        return mtli_error(MTL_ERR_NOT_FOUND,
                          "%s: unknown layer kind '%s' (expected linear, relu, leaky_relu, gelu, "
                          "tanh, sigmoid, dropout, layer_norm, batch_norm, embedding, conv2d, "
                          "max_pool2d, avg_pool2d, flatten, dropout2d, batch_norm2d, lstm or "
                          "gru)",
                          owner, kind);
    if (s->nlayers == s->cap) {
        int ncap = s->cap ? s->cap * 2 : 8;
        mtli_layer *nl = mtli_realloc(s->layers, (size_t)ncap * sizeof *nl);
        if (!nl)
            return mtli_oom("layer list", (size_t)ncap * sizeof *nl);
        s->layers = nl;
        s->cap = ncap;
    }
    mtli_layer *l = &s->layers[s->nlayers];
    memset(l, 0, sizeof *l);
    l->ops = ops;
    mtli_layer_opts_default(&l->opts);
    if (index)
        *index = s->nlayers;
    s->nlayers++;
    return MTL_OK;
}

mtli_layer *mtli_stack_layer(mtli_stack *s, int layer, const char *owner)
{
    if (s->model->built) {
        mtli_error(MTL_ERR_STATE, "%s: cannot change layer options after mtl_model_build", owner);
        return NULL;
    }
    if (layer < 0)
        layer += s->nlayers;
    if (layer < 0 || layer >= s->nlayers) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: layer %d out of range (it has %d layers)",
                   owner, layer, s->nlayers);
        return NULL;
    }
    return &s->layers[layer];
}

mtl_status mtli_stack_setup(mtli_stack *s, int in_ndim, const int64_t *in_dims,
                            const char *owner)
{
    s->in_ndim = in_ndim;
    size_t feat = 1;
    for (int d = 0; d < in_ndim; d++) {
        s->in_dims[d] = in_dims[d];
        feat *= (size_t)in_dims[d];
    }
    s->in_features = feat;
    s->max_features = feat;
    s->nparams = s->nstate = 0;
    int ndim = in_ndim;
    int64_t dims[3] = {in_dims[0], in_ndim > 1 ? in_dims[1] : 0, in_ndim > 2 ? in_dims[2] : 0};
    for (int i = 0; i < s->nlayers; i++) {
        mtli_layer *l = &s->layers[i];
        l->in_ndim = ndim;
        memcpy(l->in_dims, dims, sizeof dims);
        l->in_features = feat;
        mtl_status st = l->ops->setup(l);
        if (st != MTL_OK) {
            mtli_error_prefix("%s layer %d (%s)", owner, i, l->ops->kind);
            return st;
        }
        ndim = l->out_ndim;
        memcpy(dims, l->out_dims, sizeof dims);
        feat = l->out_features;
        if (feat > s->max_features)
            s->max_features = feat;
        s->nparams += l->nparams;
        s->nstate += l->nstate;
    }
    s->out_features = feat;
    return MTL_OK;
}

/* The lengths of the current sequence batch: a trunk that starts with a sequence embedding
 * keeps them in that layer's scratch (written by its forward, which runs before any layer
 * that reads them); NULL otherwise. */
static const int32_t *stack_lengths(const mtli_stack *s)
{
    const mtli_stack *t = &s->model->trunk.s;
    if (t->nlayers == 0 || !t->scratch)
        return NULL;
    return mtli_embedding_lengths(&t->layers[0], t->scratch[0]);
}

const float *mtli_stack_forward(mtli_stack *s, const float *x, size_t B, bool train,
                                mtli_rng *rng)
{
    const float *in = x;
    const int32_t *lengths = stack_lengths(s);
    for (int i = 0; i < s->nlayers; i++) {
        mtli_layer *l = &s->layers[i];
        mtli_fwd f = {.x = in, .y = s->act[i], .B = B, .train = train,
                      .scratch = s->scratch[i], .rng = rng, .lengths = lengths};
        l->ops->forward(l, &f);
        in = s->act[i];
    }
    return in;
}

void mtli_stack_backward_range(mtli_stack *s, const float *x, int lo, int hi, const float *dy,
                               float *dx, float *dparams_base, size_t B)
{
    mtl_model *m = s->model;
    float *bufs[2] = {m->bwd_a, m->bwd_b};
    int which = 0;
    const int32_t *lengths = stack_lengths(s);
    for (int i = hi; i >= lo; i--) {
        const mtli_layer *l = &s->layers[i];
        float *out = i == lo ? dx : bufs[which];
        if (out == dy) /* never write over the incoming gradient */
            out = bufs[which ^= 1];
        mtli_bwd b = {.x = i == 0 ? x : s->act[i - 1],
                      .y = s->act[i],
                      .dy = dy,
                      .dx = out,
                      .dparams = l->nparams ? dparams_base + (l->params - m->params) : NULL,
                      .B = B,
                      .scratch = s->scratch[i],
                      .lengths = lengths};
        l->ops->backward(l, &b);
        dy = out;
        which ^= 1;
    }
}

void mtli_stack_backward(mtli_stack *s, const float *x, const float *dy_top, float *dx,
                         float *dparams_base, size_t B)
{
    if (s->nlayers == 0) {
        if (dx && dx != dy_top)
            memcpy(dx, dy_top, B * s->out_features * sizeof(float));
        return;
    }
    mtli_stack_backward_range(s, x, 0, s->nlayers - 1, dy_top, dx, dparams_base, B);
}

/* One layer of the stacked backward: its parameter work by route, then the input gradient
 * of the T streams (dx NULL: not needed). */
static void stacked_layer(mtli_stack *s, const mtli_layer *l, const mtli_bwd *b,
                          const mtli_stacked *st, int route)
{
    mtl_model *m = s->model;
    const int T = st->T;
    float *ptrs[MTLI_WMAX_GRAD_TASKS];
    size_t off = l->nparams ? (size_t)(l->params - m->params) : 0;
    if (!l->nparams)
        route = MTLI_ROUTE_NONE;
    switch (route) {
    case MTLI_ROUTE_ROWS:
        for (int t = 0; t < T; t++)
            ptrs[t] = st->rows[t] + (off - st->P0);
        mtli_layer_backward_stacked(l, b, T, ptrs);
        return;
    case MTLI_ROUTE_ROWS_GRAM: {
        for (int t = 0; t < T; t++)
            ptrs[t] = st->jl + (size_t)t * st->ldjl;
        mtli_layer_backward_stacked(l, b, T, ptrs);
        mtli_layer_dots((size_t)T, l->nparams, st->jl, st->ldjl, st->jl, st->ldjl,
                        MTLI_DOTS_SYMMETRIC, st->G);
        return;
    }
    case MTLI_ROUTE_GRAM:
        l->ops->gram_stacked(l, b, T, st->G, st->work, NULL, NULL);
        if (b->dx)
            l->ops->backward_stacked(l, b, T, NULL);
        return;
    default:
        if (b->dx)
            mtli_layer_backward_stacked(l, b, T, NULL);
        return;
    }
}

const float *mtli_stack_backward_stacked(mtli_stack *s, const float *x, int lo, const float *dy,
                                         bool want_dx, const mtli_stacked *st)
{
    int which = 0;
    const int32_t *lengths = stack_lengths(s);
    for (int i = s->nlayers - 1; i >= lo; i--) {
        const mtli_layer *l = &s->layers[i];
        bool need_dx = i > lo || want_dx;
        float *out = NULL;
        if (need_dx) {
            out = st->buf[which];
            if (out == dy)
                out = st->buf[which ^= 1];
        }
        mtli_bwd b = {.x = i == 0 ? x : s->act[i - 1],
                      .y = s->act[i],
                      .dy = dy,
                      .dx = out,
                      .dparams = NULL,
                      .B = st->B,
                      .scratch = s->scratch[i],
                      .lengths = lengths};
        stacked_layer(s, l, &b, st, st->route ? st->route[i] : MTLI_ROUTE_ROWS);
        dy = out;
        which ^= 1;
    }
    return want_dx ? dy : NULL;
}
