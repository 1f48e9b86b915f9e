/* Model construction, parameters by name, inference. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor_internal.h"
#include "kernels/gemm.h"
#include "model/model_internal.h"

MTL_API mtl_status mtl_model_create(mtl_model **out, mtl_dtype input_dtype, int ndim,
                                    const int64_t *sample_shape)
{
    MTLI_CHECK_NULL(out, "mtl_model_create");
    *out = NULL;
    if (input_dtype != MTL_FLOAT32 && input_dtype != MTL_INT32)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_model_create: unknown input dtype %d",
                          (int)input_dtype);
    if (ndim < 1 || ndim > 3)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_model_create: sample ndim is %d, expected 1..3", ndim);
    MTLI_CHECK_NULL(sample_shape, "mtl_model_create");
    size_t feat = 1;
    for (int i = 0; i < ndim; i++) {
        if (sample_shape[i] < 1 || sample_shape[i] > (int64_t)1 << 30)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "mtl_model_create: sample_shape[%d] is %lld, expected 1..2^30", i,
                              (long long)sample_shape[i]);
        if (!mtli_mul_size(feat, (size_t)sample_shape[i], &feat) || feat > ((size_t)1 << 31))
            return mtli_error(MTL_ERR_RANGE, "mtl_model_create: sample has too many features");
    }
    mtl_model *m = mtli_calloc(1, sizeof *m);
    if (!m)
        return mtli_oom("model", sizeof *m);
    m->input_dtype = input_dtype;
    m->input_ndim = ndim;
    for (int i = 0; i < ndim; i++)
        m->input_shape[i] = sample_shape[i];
    m->input_features = feat;
    mtli_stack_init(&m->trunk.s, m);
    *out = m;
    return MTL_OK;
}

static void free_workspace(mtl_model *m)
{
    mtli_engine_free(m);
    mtli_free(m->params);
    mtli_free(m->grads);
    mtli_free(m->state);
    mtli_free(m->state_backup);
    mtli_free(m->bwd_a);
    mtli_free(m->bwd_b);
    mtli_free(m->dz);
    mtli_free(m->dz_tmp);
    mtli_free(m->task_weights);
    mtli_free(m->task_loss);
    if (m->named) {
        for (int i = 0; i < m->nnamed; i++)
            mtli_free(m->named[i].name);
        mtli_free(m->named);
    }
    m->params = m->grads = m->state = m->state_backup = NULL;
    m->bwd_a = m->bwd_b = m->dz = m->dz_tmp = NULL;
    m->task_weights = m->task_loss = NULL;
    m->named = NULL;
    m->nnamed = 0;
}

static void stack_free_buffers(mtli_stack *s)
{
    if (s->act) {
        for (int i = 0; i < s->nlayers; i++)
            mtli_free(s->act[i]);
        mtli_free(s->act);
        s->act = NULL;
    }
    if (s->scratch) {
        for (int i = 0; i < s->nlayers; i++)
            mtli_free(s->scratch[i]);
        mtli_free(s->scratch);
        s->scratch = NULL;
    }
}

static void head_free(mtl_head *h)
{
    if (!h)
        return;
    mtli_stack_free(&h->s);
    mtli_free(h->name);
    mtli_loss_clear(&h->loss);
    mtli_free(h->dlogits);
    mtli_free(h->pending_class_weights);
    mtli_free(h);
}

MTL_API void mtl_model_free(mtl_model *m)
{
    if (!m)
        return;
    free_workspace(m);
    mtli_stack_free(&m->trunk.s);
    for (int i = 0; i < m->nheads; i++)
        head_free(m->heads[i]);
    mtli_free(m->heads);
    mtli_free(m);
}

MTL_API mtl_trunk *mtl_model_trunk(mtl_model *m)
{
    if (!m) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_model_trunk: argument 'model' is NULL");
        return NULL;
    }
    return &m->trunk;
}

static int valid_task_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

MTL_API mtl_status mtl_model_add_head(mtl_model *m, mtl_head **out, const char *task)
{
    if (out)
        *out = NULL;
    MTLI_CHECK_NULL(m, "mtl_model_add_head");
    MTLI_CHECK_NULL(task, "mtl_model_add_head");
    if (m->built)
        return mtli_error(MTL_ERR_STATE, "mtl_model_add_head: the model is already built");
    if (!valid_task_name(task))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_model_add_head: task name '%s' is invalid (1..64 characters of "
                          "letters, digits, '_' and '-')",
                          task);
    for (int i = 0; i < m->nheads; i++)
        if (strcmp(m->heads[i]->name, task) == 0)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "mtl_model_add_head: a head named '%s' already exists", task);
    if (m->nheads == m->cap_heads) {
        int ncap = m->cap_heads ? m->cap_heads * 2 : 4;
        mtl_head **nh = mtli_realloc(m->heads, (size_t)ncap * sizeof *nh);
        if (!nh)
            return mtli_oom("head list", (size_t)ncap * sizeof *nh);
        m->heads = nh;
        m->cap_heads = ncap;
    }
    mtl_head *h = mtli_calloc(1, sizeof *h);
    if (!h)
        return mtli_oom("head", sizeof *h);
    h->name = mtli_strdup(task);
    if (!h->name) {
        mtli_free(h);
        return mtli_oom("head name", strlen(task) + 1);
    }
    mtli_stack_init(&h->s, m);
    h->loss.kind = MTLI_LOSS_MSE;
    h->loss.delta = 1.0;
    m->heads[m->nheads++] = h;
    if (out)
        *out = h;
    return MTL_OK;
}

MTL_API int mtl_model_num_heads(const mtl_model *m) { return m ? m->nheads : 0; }

MTL_API mtl_head *mtl_model_head_at(mtl_model *m, int index)
{
    if (!m) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_model_head_at: argument 'model' is NULL");
        return NULL;
    }
    if (index < 0 || index >= m->nheads) {
        mtli_error(MTL_ERR_NOT_FOUND, "mtl_model_head_at: index %d out of range (%d heads)",
                   index, m->nheads);
        return NULL;
    }
    return m->heads[index];
}

MTL_API mtl_status mtl_model_head_index(const mtl_model *m, const char *task, int *index)
{
    MTLI_CHECK_NULL(m, "mtl_model_head_index");
    MTLI_CHECK_NULL(task, "mtl_model_head_index");
    MTLI_CHECK_NULL(index, "mtl_model_head_index");
    for (int i = 0; i < m->nheads; i++)
        if (strcmp(m->heads[i]->name, task) == 0) {
            *index = i;
            return MTL_OK;
        }
    *index = -1;
    return mtli_error(MTL_ERR_NOT_FOUND, "no head named '%s'", task);
}

MTL_API mtl_head *mtl_model_head(mtl_model *m, const char *task)
{
    int i;
    if (mtl_model_head_index(m, task, &i) != MTL_OK)
        return NULL;
    return m->heads[i];
}

/* ---- layer builders (trunk and heads share them through their stacks) ---------------- */

static mtl_status stack_set(mtli_stack *s, int layer, const char *key, int type, int64_t iv,
                            double dv, const char *sv, const char *owner)
{
    MTLI_CHECK_NULL(key, owner);
    mtli_layer *l = mtli_stack_layer(s, layer, owner);
    if (!l)
        return mtl_last_status();
    mtl_status st;
    if (type == 0)
        st = mtli_layer_set_int(l->ops, &l->opts, key, iv);
    else if (type == 1)
        st = mtli_layer_set_double(l->ops, &l->opts, key, dv);
    else {
        if (!sv)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: value for '%s' is NULL", owner, key);
        st = mtli_layer_set_string(l->ops, &l->opts, key, sv);
    }
    if (st != MTL_OK)
        mtli_error_prefix("%s layer %d (%s)", owner, layer < 0 ? layer + s->nlayers : layer,
                          l->ops->kind);
    return st;
}

#define TRUNK_CHECK(t, fn)                                                                  \
    if (!(t))                                                                               \
    return mtli_error(MTL_ERR_INVALID_ARGUMENT, fn ": argument 'trunk' is NULL")
#define HEAD_CHECK(h, fn)                                                                   \
    if (!(h))                                                                               \
    return mtli_error(MTL_ERR_INVALID_ARGUMENT, fn ": argument 'head' is NULL")

MTL_API mtl_status mtl_trunk_add_layer(mtl_trunk *t, const char *kind, int *index)
{
    TRUNK_CHECK(t, "mtl_trunk_add_layer");
    return mtli_stack_add(&t->s, kind, index, "trunk");
}
MTL_API mtl_status mtl_trunk_set_int(mtl_trunk *t, int layer, const char *key, int64_t v)
{
    TRUNK_CHECK(t, "mtl_trunk_set_int");
    return stack_set(&t->s, layer, key, 0, v, 0, NULL, "trunk");
}
MTL_API mtl_status mtl_trunk_set_double(mtl_trunk *t, int layer, const char *key, double v)
{
    TRUNK_CHECK(t, "mtl_trunk_set_double");
    return stack_set(&t->s, layer, key, 1, 0, v, NULL, "trunk");
}
MTL_API mtl_status mtl_trunk_set_string(mtl_trunk *t, int layer, const char *key, const char *v)
{
    TRUNK_CHECK(t, "mtl_trunk_set_string");
    return stack_set(&t->s, layer, key, 2, 0, 0, v, "trunk");
}
MTL_API int mtl_trunk_num_layers(const mtl_trunk *t) { return t ? t->s.nlayers : 0; }

static mtl_status add_linear(mtli_stack *s, int64_t out, const char *owner)
{
    int idx;
    MTLI_TRY(mtli_stack_add(s, "linear", &idx, owner));
    mtl_status st = stack_set(s, idx, "out", 0, out, 0, NULL, owner);
    if (st != MTL_OK)
        s->nlayers--; /* keep the stack as it was */
    return st;
}

MTL_API mtl_status mtl_trunk_add_linear(mtl_trunk *t, int64_t out)
{
    TRUNK_CHECK(t, "mtl_trunk_add_linear");
    return add_linear(&t->s, out, "trunk");
}
MTL_API int64_t mtl_trunk_output_size(const mtl_trunk *t)
{
    return t && t->s.model->built ? (int64_t)t->s.out_features : 0;
}

static char *head_owner(const mtl_head *h, char *buf, size_t n)
{
    snprintf(buf, n, "head '%s'", h->name);
    return buf;
}

MTL_API mtl_status mtl_head_add_layer(mtl_head *h, const char *kind, int *index)
{
    HEAD_CHECK(h, "mtl_head_add_layer");
    char o[96];
    return mtli_stack_add(&h->s, kind, index, head_owner(h, o, sizeof o));
}
MTL_API mtl_status mtl_head_set_int(mtl_head *h, int layer, const char *key, int64_t v)
{
    HEAD_CHECK(h, "mtl_head_set_int");
    char o[96];
    return stack_set(&h->s, layer, key, 0, v, 0, NULL, head_owner(h, o, sizeof o));
}
MTL_API mtl_status mtl_head_set_double(mtl_head *h, int layer, const char *key, double v)
{
    HEAD_CHECK(h, "mtl_head_set_double");
    char o[96];
    return stack_set(&h->s, layer, key, 1, 0, v, NULL, head_owner(h, o, sizeof o));
}
MTL_API mtl_status mtl_head_set_string(mtl_head *h, int layer, const char *key, const char *v)
{
    HEAD_CHECK(h, "mtl_head_set_string");
    char o[96];
    return stack_set(&h->s, layer, key, 2, 0, 0, v, head_owner(h, o, sizeof o));
}
MTL_API int mtl_head_num_layers(const mtl_head *h) { return h ? h->s.nlayers : 0; }
MTL_API mtl_status mtl_head_add_linear(mtl_head *h, int64_t out)
{
    HEAD_CHECK(h, "mtl_head_add_linear");
    char o[96];
    return add_linear(&h->s, out, head_owner(h, o, sizeof o));
}

MTL_API mtl_status mtl_head_set_loss(mtl_head *h, const char *loss)
{
    HEAD_CHECK(h, "mtl_head_set_loss");
    MTLI_CHECK_NULL(loss, "mtl_head_set_loss");
    if (h->s.model->built)
        return mtli_error(MTL_ERR_STATE, "head '%s': cannot change the loss after build",
                          h->name);
    mtli_loss_kind k;
    mtl_status st = mtli_loss_kind_from_name(loss, &k);
    if (st != MTL_OK) {
        mtli_error_prefix("head '%s'", h->name);
        return st;
    }
    h->loss.kind = k;
    return MTL_OK;
}

MTL_API mtl_status mtl_head_set_loss_double(mtl_head *h, const char *key, double v)
{
    HEAD_CHECK(h, "mtl_head_set_loss_double");
    MTLI_CHECK_NULL(key, "mtl_head_set_loss_double");
    if (strcmp(key, "label_smoothing") == 0) {
        if (h->loss.kind != MTLI_LOSS_CROSS_ENTROPY)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "head '%s': 'label_smoothing' applies to cross_entropy only, the "
                              "loss is %s",
                              h->name, mtli_loss_kind_name(h->loss.kind));
        if (!(v >= 0.0 && v < 1.0))
            return mtli_error(MTL_ERR_RANGE, "head '%s': label_smoothing %g outside [0, 1)",
                              h->name, v);
        h->loss.label_smoothing = v;
        return MTL_OK;
    }
    if (strcmp(key, "delta") == 0) {
        if (h->loss.kind != MTLI_LOSS_HUBER)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "head '%s': 'delta' applies to huber only, the loss is %s",
                              h->name, mtli_loss_kind_name(h->loss.kind));
        if (!(v > 0.0 && isfinite(v)))
            return mtli_error(MTL_ERR_RANGE, "head '%s': delta %g must be > 0", h->name, v);
        h->loss.delta = v;
        return MTL_OK;
    }
    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                      "head '%s': unknown loss option '%s' (expected label_smoothing or delta)",
                      h->name, key);
}

MTL_API mtl_status mtl_head_set_class_weights(mtl_head *h, const float *w, int64_t n)
{
    HEAD_CHECK(h, "mtl_head_set_class_weights");
    MTLI_CHECK_NULL(w, "mtl_head_set_class_weights");
    if (h->s.model->built)
        return mtli_error(MTL_ERR_STATE, "head '%s': cannot set class weights after build",
                          h->name);
    if (n < 1 || n > (1 << 24))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "head '%s': %lld class weights", h->name,
                          (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (!(w[i] >= 0.0f) || !isfinite(w[i]))
            return mtli_error(MTL_ERR_RANGE, "head '%s': class weight %lld is %g, expected >= 0",
                              h->name, (long long)i, (double)w[i]);
    float *c = mtli_malloc((size_t)n * sizeof(float));
    if (!c)
        return mtli_oom("class weights", (size_t)n * sizeof(float));
    memcpy(c, w, (size_t)n * sizeof(float));
    mtli_free(h->pending_class_weights);
    h->pending_class_weights = c;
    h->npending_class_weights = n;
    return MTL_OK;
}

MTL_API const char *mtl_head_name(const mtl_head *h) { return h ? h->name : NULL; }
MTL_API const char *mtl_head_loss(const mtl_head *h)
{
    return h ? mtli_loss_kind_name(h->loss.kind) : NULL;
}
MTL_API int64_t mtl_head_output_size(const mtl_head *h)
{
    return h && h->s.model->built ? (int64_t)h->s.out_features : 0;
}

MTL_API mtl_status mtl_model_set_double(mtl_model *m, const char *key, double v)
{
    MTLI_CHECK_NULL(m, "mtl_model_set_double");
    MTLI_CHECK_NULL(key, "mtl_model_set_double");
    double *dst = NULL;
    if (strcmp(key, "grad_layers") == 0) {
        if (!(v >= 0.0 && v <= 2147483647.0) || v != floor(v))
            return mtli_error(MTL_ERR_RANGE,
                              "mtl_model_set_double: grad_layers = %g, expected a whole number "
                              "0..2147483647",
                              v);
        m->grad_layers = (int64_t)v;
        return MTL_OK;
    }
    if (strcmp(key, "l2_trunk") == 0)
        dst = &m->l2_trunk;
    else if (strcmp(key, "l2_heads") == 0)
        dst = &m->l2_heads;
    else
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_model_set_double: unknown key '%s' (expected l2_trunk, l2_heads "
                          "or grad_layers)",
                          key);
    if (!(v >= 0.0) || !isfinite(v))
        return mtli_error(MTL_ERR_RANGE, "mtl_model_set_double: %s = %g, expected >= 0", key, v);
    *dst = v;
    return MTL_OK;
}

MTL_API mtl_status mtl_model_get_double(const mtl_model *m, const char *key, double *v)
{
    MTLI_CHECK_NULL(m, "mtl_model_get_double");
    MTLI_CHECK_NULL(key, "mtl_model_get_double");
    MTLI_CHECK_NULL(v, "mtl_model_get_double");
    if (strcmp(key, "l2_trunk") == 0)
        *v = m->l2_trunk;
    else if (strcmp(key, "l2_heads") == 0)
        *v = m->l2_heads;
    else if (strcmp(key, "grad_layers") == 0)
        *v = (double)m->grad_layers;
    else
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_model_get_double: unknown key '%s'",
                          key);
    return MTL_OK;
}

/* ---- build ----------------------------------------------------------------------------- */

static mtl_status stack_alloc(mtli_stack *s, size_t max_batch)
{
    s->act = mtli_calloc((size_t)(s->nlayers ? s->nlayers : 1), sizeof(float *));
    s->scratch = mtli_calloc((size_t)(s->nlayers ? s->nlayers : 1), sizeof(float *));
    if (!s->act || !s->scratch)
        return mtli_oom("activation table", sizeof(float *) * (size_t)s->nlayers);
    for (int i = 0; i < s->nlayers; i++) {
        mtli_layer *l = &s->layers[i];
        size_t n;
        if (!mtli_mul_size(max_batch, l->out_features, &n))
            return MTL_ERR_RANGE;
        s->act[i] = mtli_aligned_calloc(n, sizeof(float));
        if (!s->act[i])
            return mtli_oom("activations", n * sizeof(float));
        size_t sc = l->ops->scratch_floats ? l->ops->scratch_floats(l, max_batch) : 0;
        if (sc) {
            s->scratch[i] = mtli_aligned_calloc(sc, sizeof(float));
            if (!s->scratch[i])
                return mtli_oom("layer scratch", sc * sizeof(float));
        }
    }
    return MTL_OK;
}

static mtl_status add_names(mtl_model *m, mtli_stack *s, int head, const char *prefix,
                            bool state_pass)
{
    for (int i = 0; i < s->nlayers; i++) {
        mtli_layer *l = &s->layers[i];
        for (int d = 0; d < l->ndesc; d++) {
            mtli_param_desc *pd = &l->desc[d];
            if (pd->is_state != state_pass)
                continue;
            mtli_named_param *np = &m->named[m->nnamed];
            char buf[160];
            snprintf(buf, sizeof buf, "%s.%d.%s", prefix, i, pd->name);
            np->name = mtli_strdup(buf);
            if (!np->name)
                return mtli_oom("parameter name", strlen(buf) + 1);
            np->is_state = pd->is_state;
            np->no_decay = pd->no_decay;
            np->head = head;
            np->ndim = pd->ndim;
            memcpy(np->shape, pd->shape, sizeof np->shape);
            np->count = pd->count;
            if (pd->is_state) {
                np->data = l->state + pd->offset;
                np->offset = (size_t)(np->data - m->state);
            } else {
                np->data = l->params + pd->offset;
                np->offset = (size_t)(np->data - m->params);
            }
            m->nnamed++;
        }
    }
    return MTL_OK;
}

static void bind_stack(mtl_model *m, mtli_stack *s, size_t *poff, size_t *soff)
{
    s->param_offset = *poff;
    s->state_offset = *soff;
    for (int i = 0; i < s->nlayers; i++) {
        mtli_layer *l = &s->layers[i];
        l->params = m->params + *poff;
        l->grads = m->grads + *poff;
        l->state = m->state + *soff;
        *poff += l->nparams;
        *soff += l->nstate;
    }
}

static mtl_status build(mtl_model *m, size_t max_batch)
{
    /* shapes */
    mtli_stack *t = &m->trunk.s;
    for (int i = 0; i < t->nlayers; i++) {
        bool emb = strcmp(t->layers[i].ops->kind, "embedding") == 0;
        if (emb && i != 0)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "trunk layer %d: an embedding layer must be the first trunk layer",
                              i);
        if (i == 0 && emb && m->input_dtype != MTL_INT32)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "trunk layer 0 (embedding): the model input must be int32 ids");
        if (i == 0 && !emb && m->input_dtype == MTL_INT32)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "the model input is int32 ids, so trunk layer 0 must be an "
                              "embedding (it is %s)",
                              t->layers[0].ops->kind);
    }
    if (t->nlayers == 0 && m->input_dtype == MTL_INT32)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "the model input is int32 ids but the trunk has no embedding layer");
    if (m->nheads == 0)
        return mtli_error(MTL_ERR_STATE, "mtl_model_build: the model has no heads");
    MTLI_TRY(mtli_stack_setup(t, m->input_ndim, m->input_shape, "trunk"));
    size_t nparams = t->nparams, nstate = t->nstate, width = t->max_features;
    for (int h = 0; h < m->nheads; h++) {
        mtl_head *hd = m->heads[h];
        char o[96];
        for (int i = 0; i < hd->s.nlayers; i++)
            if (strcmp(hd->s.layers[i].ops->kind, "embedding") == 0)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "head '%s' layer %d: embedding layers belong in the trunk",
                                  hd->name, i);
        int ndim = t->nlayers ? t->layers[t->nlayers - 1].out_ndim : m->input_ndim;
        const int64_t *dims = t->nlayers ? t->layers[t->nlayers - 1].out_dims : m->input_shape;
        MTLI_TRY(mtli_stack_setup(&hd->s, ndim, dims, head_owner(hd, o, sizeof o)));
        size_t C = hd->s.out_features;
        if (hd->loss.kind == MTLI_LOSS_CROSS_ENTROPY && C < 2)
            return mtli_error(MTL_ERR_SHAPE,
                              "head '%s': cross_entropy needs at least 2 outputs, the head has "
                              "%zu (end it with a linear layer of one output per class)",
                              hd->name, C);
        if (hd->pending_class_weights) {
            if (hd->loss.kind != MTLI_LOSS_CROSS_ENTROPY && hd->loss.kind != MTLI_LOSS_BCE)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "head '%s': class weights need a cross_entropy or bce loss",
                                  hd->name);
            if ((size_t)hd->npending_class_weights != C)
                return mtli_error(MTL_ERR_SHAPE,
                                  "head '%s': %lld class weights for %zu outputs", hd->name,
                                  (long long)hd->npending_class_weights, C);
        }
        nparams += hd->s.nparams;
        nstate += hd->s.nstate;
        if (hd->s.max_features > width)
            width = hd->s.max_features;
    }
    if (nparams == 0)
        return mtli_error(MTL_ERR_STATE, "mtl_model_build: the model has no parameters");
    /* buffers */
    m->nparams = nparams;
    m->nstate = nstate;
    m->params = mtli_aligned_calloc(nparams, sizeof(float));
    m->grads = mtli_aligned_calloc(nparams, sizeof(float));
    m->state = mtli_aligned_calloc(nstate ? nstate : 1, sizeof(float));
    m->state_backup = mtli_aligned_calloc(nstate ? nstate : 1, sizeof(float));
    size_t wbytes;
    if (!mtli_mul_size(max_batch, width, &wbytes))
        return MTL_ERR_RANGE;
    m->bwd_width = width;
    m->bwd_a = mtli_aligned_calloc(wbytes, sizeof(float));
    m->bwd_b = mtli_aligned_calloc(wbytes, sizeof(float));
    m->dz = mtli_aligned_calloc(max_batch * t->out_features, sizeof(float));
    m->dz_tmp = mtli_aligned_calloc(max_batch * t->out_features, sizeof(float));
    m->task_weights = mtli_calloc((size_t)m->nheads, sizeof(double));
    m->task_loss = mtli_calloc((size_t)m->nheads, sizeof(double));
    if (!m->params || !m->grads || !m->state || !m->state_backup || !m->bwd_a || !m->bwd_b ||
        !m->dz || !m->dz_tmp || !m->task_weights || !m->task_loss)
        return mtli_oom("model buffers", nparams * 2 * sizeof(float) + wbytes * 2 * sizeof(float));
    size_t poff = 0, soff = 0;
    bind_stack(m, t, &poff, &soff);
    MTLI_TRY(stack_alloc(t, max_batch));
    for (int h = 0; h < m->nheads; h++) {
        mtl_head *hd = m->heads[h];
        bind_stack(m, &hd->s, &poff, &soff);
        MTLI_TRY(stack_alloc(&hd->s, max_batch));
        hd->dlogits = mtli_aligned_calloc(max_batch * hd->s.out_features, sizeof(float));
        if (!hd->dlogits)
            return mtli_oom("head gradient", max_batch * hd->s.out_features * sizeof(float));
    }
    /* names */
    int total = 0;
    for (int i = 0; i < t->nlayers; i++)
        total += t->layers[i].ndesc;
    for (int h = 0; h < m->nheads; h++)
        for (int i = 0; i < m->heads[h]->s.nlayers; i++)
            total += m->heads[h]->s.layers[i].ndesc;
    m->named = mtli_calloc((size_t)(total ? total : 1), sizeof *m->named);
    if (!m->named)
        return mtli_oom("parameter names", (size_t)total * sizeof *m->named);
    for (int pass = 0; pass < 2; pass++) {
        MTLI_TRY(add_names(m, t, -1, "trunk", pass == 1));
        for (int h = 0; h < m->nheads; h++) {
            char prefix[96];
            snprintf(prefix, sizeof prefix, "heads.%s", m->heads[h]->name);
            MTLI_TRY(add_names(m, &m->heads[h]->s, h, prefix, pass == 1));
        }
    }
    /* initialisation: trunk then heads, in layer order, from one seeded generator */
    mtli_rng_seed(&m->rng, m->seed);
    for (int i = 0; i < t->nlayers; i++)
        t->layers[i].ops->init(&t->layers[i], &m->rng);
    for (int h = 0; h < m->nheads; h++)
        for (int i = 0; i < m->heads[h]->s.nlayers; i++)
            m->heads[h]->s.layers[i].ops->init(&m->heads[h]->s.layers[i], &m->rng);
    /* class weights move into the losses */
    for (int h = 0; h < m->nheads; h++) {
        mtl_head *hd = m->heads[h];
        if (hd->pending_class_weights) {
            mtli_free(hd->loss.class_weights);
            hd->loss.class_weights = hd->pending_class_weights;
            hd->loss.nclass_weights = (size_t)hd->npending_class_weights;
            hd->pending_class_weights = NULL;
        }
    }
    for (int h = 0; h < m->nheads; h++)
        m->task_weights[h] = 1.0;
    return MTL_OK;
}

MTL_API mtl_status mtl_model_build(mtl_model *m, int64_t max_batch, uint64_t seed)
{
    MTLI_CHECK_NULL(m, "mtl_model_build");
    if (m->built)
        return mtli_error(MTL_ERR_STATE, "mtl_model_build: the model is already built");
    if (max_batch < 1 || max_batch > (1 << 24))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_model_build: max_batch is %lld, expected 1..16777216",
                          (long long)max_batch);
    mtli_blas_init();
    m->max_batch = (size_t)max_batch;
    m->seed = seed;
    mtl_status st = build(m, m->max_batch);
    if (st != MTL_OK) {
        /* leave the model unbuilt and buildable again */
        free_workspace(m);
        stack_free_buffers(&m->trunk.s);
        for (int h = 0; h < m->nheads; h++) {
            stack_free_buffers(&m->heads[h]->s);
            mtli_free(m->heads[h]->dlogits);
            m->heads[h]->dlogits = NULL;
        }
        return st;
    }
    m->built = true;
    return MTL_OK;
}

MTL_API int mtl_model_is_built(const mtl_model *m) { return m && m->built ? 1 : 0; }
MTL_API int64_t mtl_model_max_batch(const mtl_model *m) { return m ? (int64_t)m->max_batch : 0; }
MTL_API int64_t mtl_model_num_params(const mtl_model *m)
{
    return m && m->built ? (int64_t)m->nparams : 0;
}
MTL_API int64_t mtl_model_num_shared_params(const mtl_model *m)
{
    return m && m->built ? (int64_t)m->trunk.s.nparams : 0;
}

/* ---- parameters by name ------------------------------------------------------------------ */

MTL_API int mtl_model_param_count(const mtl_model *m) { return m && m->built ? m->nnamed : 0; }

MTL_API const char *mtl_model_param_name(const mtl_model *m, int i)
{
    if (!m || !m->built || i < 0 || i >= m->nnamed)
        return NULL;
    return m->named[i].name;
}

static mtl_status find_param(const mtl_model *m, const char *name, const char *fn,
                             const mtli_named_param **out)
{
    MTLI_CHECK_NULL(m, fn);
    MTLI_CHECK_NULL(name, fn);
    if (!m->built)
        return mtli_error(MTL_ERR_STATE, "%s: the model is not built", fn);
    for (int i = 0; i < m->nnamed; i++)
        if (strcmp(m->named[i].name, name) == 0) {
            *out = &m->named[i];
            return MTL_OK;
        }
    return mtli_error(MTL_ERR_NOT_FOUND, "%s: no parameter named '%s'", fn, name);
}

MTL_API mtl_status mtl_model_param_shape(const mtl_model *m, const char *name, int64_t *shape,
                                         int capacity, int *ndim)
{
    const mtli_named_param *p;
    MTLI_TRY(find_param(m, name, "mtl_model_param_shape", &p));
    MTLI_CHECK_NULL(shape, "mtl_model_param_shape");
    if (capacity < p->ndim)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_model_param_shape: capacity %d < ndim %d of '%s'", capacity,
                          p->ndim, name);
    for (int i = 0; i < p->ndim; i++)
        shape[i] = p->shape[i];
    if (ndim)
        *ndim = p->ndim;
    return MTL_OK;
}

static mtl_status check_io_tensor(const mtli_named_param *p, const mtl_tensor *t,
                                  const char *fn)
{
    MTLI_CHECK_NULL(t, fn);
    if (t->dtype != MTL_FLOAT32)
        return mtli_error(MTL_ERR_SHAPE, "%s: tensor for '%s' must be float32", fn, p->name);
    if (t->numel != p->count)
        return mtli_error(MTL_ERR_SHAPE, "%s: '%s' has %zu elements, the tensor %zu", fn,
                          p->name, p->count, t->numel);
    return MTL_OK;
}

MTL_API mtl_status mtl_model_get_param(const mtl_model *m, const char *name, mtl_tensor *dst)
{
    const mtli_named_param *p;
    MTLI_TRY(find_param(m, name, "mtl_model_get_param", &p));
    MTLI_TRY(check_io_tensor(p, dst, "mtl_model_get_param"));
    memcpy(dst->data, p->data, p->count * sizeof(float));
    return MTL_OK;
}

MTL_API mtl_status mtl_model_set_param(mtl_model *m, const char *name, const mtl_tensor *src)
{
    const mtli_named_param *p;
    MTLI_TRY(find_param(m, name, "mtl_model_set_param", &p));
    MTLI_TRY(check_io_tensor(p, src, "mtl_model_set_param"));
    const float *s = src->data;
    for (size_t i = 0; i < p->count; i++)
        if (!isfinite(s[i]))
            return mtli_error(MTL_ERR_NUMERIC, "mtl_model_set_param: '%s' element %zu is %g",
                              name, i, (double)s[i]);
    memcpy(p->data, s, p->count * sizeof(float));
    return MTL_OK;
}

MTL_API mtl_status mtl_model_get_grad(const mtl_model *m, const char *name, mtl_tensor *dst)
{
    const mtli_named_param *p;
    MTLI_TRY(find_param(m, name, "mtl_model_get_grad", &p));
    if (p->is_state)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_model_get_grad: '%s' is not trainable",
                          name);
    MTLI_TRY(check_io_tensor(p, dst, "mtl_model_get_grad"));
    memcpy(dst->data, m->grads + p->offset, p->count * sizeof(float));
    return MTL_OK;
}

MTL_API mtl_status mtl_model_reseed(mtl_model *m, uint64_t seed)
{
    MTLI_CHECK_NULL(m, "mtl_model_reseed");
    mtli_rng_seed(&m->rng, seed);
    return MTL_OK;
}
