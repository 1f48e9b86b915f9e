/* Embedding bag, as torch.nn.EmbeddingBag with padding: each sample is a bag of
 * in_features int32 ids (stored in the 4-byte slots of the float input); the output is the sum
 * or the mean (default, as EmbeddingBag) of the weight rows of its ids. Id -1 is padding and
 * skipped; the mean divides by the number of non-padding ids; a bag of padding only gives
 * zeros. Weight [num_embeddings, out], initialised N(0, 1) as nn.Embedding.
 *
 * pooling "none" (on ids [L] per sample) is a sequence embedding, as nn.Embedding: the output
 * is [L, out], one weight row per position, zeros at padding. A sample is its valid ids
 * followed only by -1 padding (its length: the ids before the first -1, at least one); the
 * check enforces this, and forward writes each sample's length into the scratch (int32, B
 * entries) for the recurrent layers and token heads downstream (mtli_embedding_lengths).
 *
 * Ids must have passed mtli_embedding_check_ids; forward and backward skip any id outside
 * -1..num_embeddings-1 rather than read out of bounds. The input has no gradient: dx is left
 * untouched. */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "layers/layer.h"

static mtl_status emb_setup(mtli_layer *l)
{
    MTLI_TRY(mtli_layer_setup_input(l));
    if (l->opts.out < 1 || l->opts.out > INT32_MAX)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "embedding: option 'out' (embedding dimension) must be set to 1..%d, "
                          "got %lld",
                          INT32_MAX, (long long)l->opts.out);
    if (l->opts.num_embeddings < 1 || l->opts.num_embeddings > INT32_MAX)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "embedding: option 'num_embeddings' (vocabulary size) must be set to "
                          "1..%d, got %lld",
                          INT32_MAX, (long long)l->opts.num_embeddings);
    if (l->opts.pooling == MTLI_POOL_NONE) {
        if (l->in_ndim != 1)
            return mtli_error(MTL_ERR_SHAPE,
                              "embedding: pooling 'none' needs ids [L] per sample, the input has "
                              "%d dimensions",
                              l->in_ndim);
        size_t n;
        if (!mtli_mul_size(l->in_features, (size_t)l->opts.out, &n))
            return mtli_error(MTL_ERR_RANGE, "embedding: output of %zu x %lld is too large",
                              l->in_features, (long long)l->opts.out);
        l->out_ndim = 2;
        l->out_dims[0] = (int64_t)l->in_features;
        l->out_dims[1] = l->opts.out;
        l->out_features = n;
    } else {
        l->out_ndim = 1;
        l->out_dims[0] = l->opts.out;
        l->out_features = (size_t)l->opts.out;
    }
    int64_t shape[2] = {l->opts.num_embeddings, l->opts.out};
    MTLI_TRY(mtli_layer_add_param(l, "weight", 2, shape, false, false));
    return MTL_OK;
}

static void emb_init(mtli_layer *l, mtli_rng *rng)
{
    const mtli_layer_opts *o = &l->opts;
    size_t N = (size_t)o->num_embeddings, D = (size_t)o->out;
    mtli_init s = o->weight_init == MTLI_INIT_DEFAULT ? MTLI_INIT_NORMAL : o->weight_init;
    /* torch's fans of a [N, D] weight: fan_in = D, fan_out = N */
    mtli_init_fill(l->params, N * D, s, D, N, o->init_gain, o->init_std, rng);
}

/* A sequence embedding keeps the batch's lengths (int32 in float-sized slots). */
static size_t emb_scratch(const mtli_layer *l, size_t B)
{
    return l->opts.pooling == MTLI_POOL_NONE ? B : 0;
}

bool mtli_embedding_is_sequence(const mtli_layer *l)
{
    return l && l->ops == &mtli_embedding_ops && l->opts.pooling == MTLI_POOL_NONE &&
           l->in_ndim == 1;
}

const int32_t *mtli_embedding_lengths(const mtli_layer *l, const float *scratch)
{
    return mtli_embedding_is_sequence(l) && scratch ? (const int32_t *)(const void *)scratch
                                                    : NULL;
}

/* y[b, t] = W[id] (zeros at padding); lengths[b] = ids before the first -1 */
static void seq_forward(mtli_layer *l, const mtli_fwd *f)
{
    size_t L = l->in_features, D = (size_t)l->opts.out;
    int32_t N = (int32_t)l->opts.num_embeddings;
    int32_t *len = (int32_t *)(void *)f->scratch;
    for (size_t b = 0; b < f->B; b++) {
        const float *ids = f->x + b * L;
        int32_t n = -1;
        for (size_t t = 0; t < L; t++) {
            int32_t id = mtli_layer_id_at(ids, t);
            float *y = f->y + (b * L + t) * D;
            if (id < 0 || id >= N) {
                if (n < 0)
                    n = (int32_t)t;
                memset(y, 0, D * sizeof(float));
                continue;
            }
            memcpy(y, l->params + (size_t)id * D, D * sizeof(float));
        }
        if (len)
            len[b] = n < 0 ? (int32_t)L : n;
    }
}

static void seq_backward(const mtli_layer *l, const mtli_bwd *bw)
{
    size_t L = l->in_features, D = (size_t)l->opts.out;
    int32_t N = (int32_t)l->opts.num_embeddings;
    for (size_t b = 0; b < bw->B; b++)
        for (size_t t = 0; t < L; t++) {
            int32_t id = mtli_layer_id_at(bw->x + b * L, t);
            if (id < 0 || id >= N)
                continue;
            float *row = bw->dparams + (size_t)id * D;
            const float *dy = bw->dy + (b * L + t) * D;
            for (size_t d = 0; d < D; d++)
                row[d] += dy[d];
        }
}

static size_t bag_count(const float *x, size_t L, int32_t N)
{
    size_t cnt = 0;
    for (size_t j = 0; j < L; j++) {
        int32_t id = mtli_layer_id_at(x, j);
        cnt += id >= 0 && id < N;
    }
    return cnt;
}

static void emb_forward(mtli_layer *l, const mtli_fwd *f)
{
    if (l->opts.pooling == MTLI_POOL_NONE) {
        seq_forward(l, f);
        return;
    }
    size_t L = l->in_features, D = l->out_features;
    int32_t N = (int32_t)l->opts.num_embeddings;
    const float *W = l->params;
    for (size_t b = 0; b < f->B; b++) {
        const float *ids = f->x + b * L;
        float *y = f->y + b * D;
        memset(y, 0, D * sizeof(float));
        size_t cnt = 0;
        for (size_t j = 0; j < L; j++) {
            int32_t id = mtli_layer_id_at(ids, j);
            if (id < 0 || id >= N)
                continue;
            cnt++;
            const float *row = W + (size_t)id * D;
            for (size_t d = 0; d < D; d++)
                y[d] += row[d];
        }
        if (l->opts.pooling == MTLI_POOL_MEAN && cnt > 1) {
            float c = (float)cnt;
            for (size_t d = 0; d < D; d++)
                y[d] /= c;
        }
    }
}

static void emb_backward(const mtli_layer *l, const mtli_bwd *bw)
{
    if (l->opts.pooling == MTLI_POOL_NONE) {
        seq_backward(l, bw);
        return;
    }
    size_t L = l->in_features, D = l->out_features;
    int32_t N = (int32_t)l->opts.num_embeddings;
    float *dW = bw->dparams;
    for (size_t b = 0; b < bw->B; b++) {
        const float *ids = bw->x + b * L;
        const float *dy = bw->dy + b * D;
        size_t cnt = l->opts.pooling == MTLI_POOL_MEAN ? bag_count(ids, L, N) : 1;
        float c = (float)(cnt ? cnt : 1);
        for (size_t j = 0; j < L; j++) {
            int32_t id = mtli_layer_id_at(ids, j);
            if (id < 0 || id >= N)
                continue;
            float *row = dW + (size_t)id * D;
            if (cnt > 1) {
                for (size_t d = 0; d < D; d++)
                    row[d] += dy[d] / c;
            } else {
                for (size_t d = 0; d < D; d++)
                    row[d] += dy[d];
            }
        }
    }
}

static mtl_status check_ids(const mtli_layer *l, const float *x, const int32_t *ids, size_t B)
{
    size_t L = l->in_features;
    int64_t N = l->opts.num_embeddings;
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < L; j++) {
            int32_t id;
            if (x)
                id = mtli_layer_id_at(x, b * L + j);
            else
                memcpy(&id, (const char *)ids + (b * L + j) * sizeof id, sizeof id);
            if (id < -1 || (int64_t)id >= N)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "embedding: sample %zu, position %zu has id %d, expected -1 "
                                  "(padding) or 0..%lld",
                                  b, j, (int)id, (long long)(N - 1));
        }
    if (!mtli_embedding_is_sequence(l))
        return MTL_OK;
    for (size_t b = 0; b < B; b++) {
        size_t first_pad = L;
        for (size_t j = 0; j < L; j++) {
            int32_t id;
            if (x)
                id = mtli_layer_id_at(x, b * L + j);
            else
                memcpy(&id, (const char *)ids + (b * L + j) * sizeof id, sizeof id);
            if (id == -1 && first_pad == L)
                first_pad = j;
            if (id != -1 && first_pad < L)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "embedding: sample %zu, position %zu has id %d after padding "
                                  "at position %zu (a sequence is its ids followed only by -1 "
                                  "padding)",
                                  b, j, (int)id, first_pad);
        }
        if (first_pad == 0)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "embedding: sample %zu is empty (a sequence needs at least one id "
                              "before its -1 padding)",
                              b);
    }
    return MTL_OK;
}

static mtl_status emb_check(const mtli_layer *l, const float *x, size_t B, bool train)
{
    (void)train;
    return check_ids(l, x, NULL, B);
}

mtl_status mtli_embedding_check_ids(const mtli_layer *l, const int32_t *ids, size_t B)
{
    MTLI_CHECK_NULL(l, "mtli_embedding_check_ids");
    if (l->ops != &mtli_embedding_ops)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtli_embedding_check_ids: layer is '%s', not 'embedding'",
                          l->ops && l->ops->kind ? l->ops->kind : "(none)");
    if (B == 0)
        return MTL_OK;
    MTLI_CHECK_NULL(ids, "mtli_embedding_check_ids");
    return check_ids(l, NULL, ids, B);
}

const mtli_layer_ops mtli_embedding_ops = {
    .kind = "embedding",
    .setup = emb_setup,
    .init = emb_init,
    .scratch_floats = emb_scratch,
    .forward = emb_forward,
    .backward = emb_backward,
    .check = emb_check,
};
