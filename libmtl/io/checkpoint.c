/* Checkpoints: the whole training state in one versioned, checksummed file
 * (docs/checkpoint-format.md). Saving streams the sections straight to an atomic file;
 * loading reads the whole file, checks every section and every value into temporary
 * memory, and only then builds or changes handles. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/ckcodec.h"
#include "io/iofile.h"
#include "model/model_internal.h"
#include "mtl/io.h"
#include "mtl/optim.h"
#include "mtl/weighting.h"
#include "optim/optim.h"

/* ==== the container ===================================================================== */

static const unsigned char MAGIC[8] = {'M', 'T', 'L', 'C', 'K', 'P', 'T', '\0'};
#define FORMAT_VERSION 1u
#define HEADER_SIZE 12 /* magic + version */
#define SECTION_OVERHEAD 16 /* tag + length + crc */

#define TAG(a, b, c, d) \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define TAG_INFO TAG('i', 'n', 'f', 'o')
#define TAG_MODL TAG('M', 'O', 'D', 'L')
#define TAG_PARM TAG('P', 'A', 'R', 'M')
#define TAG_RNGS TAG('R', 'N', 'G', 'S')
#define TAG_OPTM TAG('O', 'P', 'T', 'M')
#define TAG_WGHT TAG('W', 'G', 'H', 'T')
#define TAG_TRLR TAG('T', 'R', 'L', 'R')

/* A section whose tag starts with an upper-case letter must be understood by a reader; one
 * starting with anything else may be skipped by readers that do not know it. */
static int tag_critical(uint32_t tag)
{
    unsigned c = tag & 0xFFu;
    return c >= 'A' && c <= 'Z';
}

static const char *tag_text(uint32_t tag, char buf[5])
{
    for (int i = 0; i < 4; i++) {
        unsigned c = (tag >> (8 * i)) & 0xFFu;
        buf[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    buf[4] = '\0';
    return buf;
}

/* Names of the task heads follow the builder's rule. */
#define MAX_TASK 64
#define MAX_KIND 32

/* ==== layer options by name ============================================================= */

typedef enum { F_I64, F_INT, F_F64, F_INIT } field_type;

typedef struct {
    const char *name;
    field_type type;
    size_t off;
} opt_field;

static const opt_field g_fields[] = {
    {"out", F_I64, offsetof(mtli_layer_opts, out)},
    {"num_embeddings", F_I64, offsetof(mtli_layer_opts, num_embeddings)},
    {"bias", F_INT, offsetof(mtli_layer_opts, bias)},
    {"pooling", F_INT, offsetof(mtli_layer_opts, pooling)},
    {"p", F_F64, offsetof(mtli_layer_opts, p)},
    {"slope", F_F64, offsetof(mtli_layer_opts, slope)},
    {"eps", F_F64, offsetof(mtli_layer_opts, eps)},
    {"momentum", F_F64, offsetof(mtli_layer_opts, momentum)},
    {"affine", F_INT, offsetof(mtli_layer_opts, affine)},
    {"gelu_tanh", F_INT, offsetof(mtli_layer_opts, gelu_tanh)},
    {"weight_init", F_INIT, offsetof(mtli_layer_opts, weight_init)},
    {"bias_init", F_INIT, offsetof(mtli_layer_opts, bias_init)},
    {"init_std", F_F64, offsetof(mtli_layer_opts, init_std)},
    {"init_gain", F_F64, offsetof(mtli_layer_opts, init_gain)},
    {"ints.0", F_I64, offsetof(mtli_layer_opts, ints[0])},
    {"ints.1", F_I64, offsetof(mtli_layer_opts, ints[1])},
    {"ints.2", F_I64, offsetof(mtli_layer_opts, ints[2])},
    {"ints.3", F_I64, offsetof(mtli_layer_opts, ints[3])},
    {"ints.4", F_I64, offsetof(mtli_layer_opts, ints[4])},
    {"ints.5", F_I64, offsetof(mtli_layer_opts, ints[5])},
    {"ints.6", F_I64, offsetof(mtli_layer_opts, ints[6])},
    {"ints.7", F_I64, offsetof(mtli_layer_opts, ints[7])},
    {"doubles.0", F_F64, offsetof(mtli_layer_opts, doubles[0])},
    {"doubles.1", F_F64, offsetof(mtli_layer_opts, doubles[1])},
    {"doubles.2", F_F64, offsetof(mtli_layer_opts, doubles[2])},
    {"doubles.3", F_F64, offsetof(mtli_layer_opts, doubles[3])},
    {"kernel.0", F_I64, offsetof(mtli_layer_opts, kernel[0])},
    {"kernel.1", F_I64, offsetof(mtli_layer_opts, kernel[1])},
    {"stride.0", F_I64, offsetof(mtli_layer_opts, stride[0])},
    {"stride.1", F_I64, offsetof(mtli_layer_opts, stride[1])},
    {"padding.0", F_I64, offsetof(mtli_layer_opts, padding[0])},
    {"padding.1", F_I64, offsetof(mtli_layer_opts, padding[1])},
    {"dilation.0", F_I64, offsetof(mtli_layer_opts, dilation[0])},
    {"dilation.1", F_I64, offsetof(mtli_layer_opts, dilation[1])},
    {"count_include_pad", F_INT, offsetof(mtli_layer_opts, count_include_pad)},
    {"hidden", F_I64, offsetof(mtli_layer_opts, hidden)},
    {"bidirectional", F_INT, offsetof(mtli_layer_opts, bidirectional)},
    {"rnn_pooling", F_INT, offsetof(mtli_layer_opts, rnn_pooling)},
};
#define NFIELDS (sizeof g_fields / sizeof g_fields[0])

static const struct {
    const char *name;
    mtli_init init;
} g_inits[] = {
    {"zeros", MTLI_INIT_ZEROS},
    {"ones", MTLI_INIT_ONES},
    {"kaiming_uniform", MTLI_INIT_KAIMING_UNIFORM},
    {"kaiming_normal", MTLI_INIT_KAIMING_NORMAL},
    {"xavier_uniform", MTLI_INIT_XAVIER_UNIFORM},
    {"xavier_normal", MTLI_INIT_XAVIER_NORMAL},
    {"normal", MTLI_INIT_NORMAL},
    {"bias_uniform", MTLI_INIT_BIAS_UNIFORM},
    {"default", MTLI_INIT_DEFAULT},
};

static const char *init_name(mtli_init v)
{
    for (size_t i = 0; i < sizeof g_inits / sizeof g_inits[0]; i++)
        if (g_inits[i].init == v)
            return g_inits[i].name;
    return NULL;
}

static int64_t field_int(const mtli_layer_opts *o, const opt_field *f)
{
    const char *p = (const char *)o + f->off;
    if (f->type == F_I64) {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    if (f->type == F_INT) {
        int v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    mtli_init v;
    memcpy(&v, p, sizeof v);
    return (int64_t)v;
}

static double field_real(const mtli_layer_opts *o, const opt_field *f)
{
    double v;
    memcpy(&v, (const char *)o + f->off, sizeof v);
    return v;
}

static void field_set_int(mtli_layer_opts *o, const opt_field *f, int64_t v)
{
    char *p = (char *)o + f->off;
    if (f->type == F_I64)
        memcpy(p, &v, sizeof v);
    else if (f->type == F_INT) {
        int iv = (int)v;
        memcpy(p, &iv, sizeof iv);
    } else {
        mtli_init e = (mtli_init)v;
        memcpy(p, &e, sizeof e);
    }
}

static void field_set_real(mtli_layer_opts *o, const opt_field *f, double v)
{
    memcpy((char *)o + f->off, &v, sizeof v);
}

/* The value ranges the layer option setters accept, so a file cannot smuggle in an option the
 * builder would refuse. */
static const char *field_check(const opt_field *f, int64_t iv, double dv)
{
    const char *n = f->name;
    switch (f->type) {
    case F_I64:
        if ((strcmp(n, "out") == 0 || strcmp(n, "num_embeddings") == 0 ||
             strcmp(n, "hidden") == 0 || strncmp(n, "kernel.", 7) == 0 ||
             strncmp(n, "stride.", 7) == 0 || strncmp(n, "padding.", 8) == 0 ||
             strncmp(n, "dilation.", 9) == 0) &&
            (iv < 0 || iv > INT32_MAX))
            return "in 0..2147483647";
        return NULL;
    case F_INT:
        if (strcmp(n, "pooling") == 0)
            return iv >= MTLI_POOL_SUM && iv <= MTLI_POOL_NONE ? NULL : "0, 1 or 2";
        if (strcmp(n, "rnn_pooling") == 0)
            return iv >= MTLI_RNN_NONE && iv <= MTLI_RNN_SUM ? NULL : "0..3";
        return iv == 0 || iv == 1 ? NULL : "0 or 1";
    case F_INIT:
        return NULL;
    case F_F64:
        if (!isfinite(dv))
            return "finite";
        if (strcmp(n, "p") == 0 && !(dv >= 0.0 && dv < 1.0))
            return "in [0, 1)";
        if (strcmp(n, "eps") == 0 && !(dv > 0.0))
            return "> 0";
        if (strcmp(n, "momentum") == 0 && !(dv >= 0.0 && dv <= 1.0))
            return "in [0, 1]";
        if ((strcmp(n, "init_std") == 0 || strcmp(n, "init_gain") == 0) && !(dv >= 0.0))
            return ">= 0";
        return NULL;
    }
    return NULL;
}

/* ==== what a file holds, decoded ======================================================== */

typedef struct ck_layer {
    const mtli_layer_ops *ops;
    mtli_layer_opts opts;
} ck_layer;

typedef struct ck_stack {
    char name[MAX_TASK + 1]; /* "trunk" or the task */
    int nlayers;
    ck_layer *layers;
    /* heads only */
    mtli_loss_kind loss;
    double label_smoothing, delta;
    float *class_weights;
    size_t nclass_weights;
} ck_stack;

typedef struct ck_arch {
    mtl_dtype dtype;
    int ndim;
    int64_t shape[3];
    double l2_trunk, l2_heads;
    int64_t grad_layers; /* optional in the file (0 when absent) */
    int64_t max_batch;
    uint64_t seed;
    int nheads;
    ck_stack *stacks; /* [0] the trunk, [1 + h] head h */
} ck_arch;

typedef struct ck_params {
    size_t ntensors, nparams, nstate;
    size_t table_pos; /* payload offset of the first tensor record */
    const unsigned char *params, *state;
    size_t nshared; /* trainable floats of the trunk (for summaries) */
} ck_params;

typedef struct ck_part {
    char name[MAX_TASK + 1];
    size_t offset, count;
    double scale;
} ck_part;

typedef struct ck_opt {
    char kind[MAX_KIND];
    int64_t step;
    size_t nparams;
    int nparts, nbuffers;
    mtli_rec hyper;
    ck_part *parts;
    const unsigned char **buffers;
} ck_opt;

typedef struct ck_weighting {
    char method[MAX_KIND];
    int ntasks;
    const unsigned char *weights; /* ntasks binary64: the weights of the last step */
    const unsigned char *fixed;   /* ntasks binary64 ("fixed"), or NULL */
    size_t bound_params;          /* shared parameters the state was bound to (0: unbound) */
    mtli_rec hyper;
    const unsigned char *state;   /* nstate binary64 */
    size_t nstate;
} ck_weighting;

typedef struct ck_section {
    const unsigned char *p;
    size_t n;
    bool present;
} ck_section;

typedef struct ck_file {
    unsigned char *data;
    size_t size;
    uint32_t version;
    ck_section info, modl, parm, rngs, optm, wght;
    int nsections;
    /* decoded */
    ck_arch arch;
    ck_params par;
    uint64_t rng[4];
    ck_opt opt;
    ck_weighting w;
    char writer[64];
} ck_file;

static void arch_clear(ck_arch *a)
{
    if (a->stacks) {
        for (int s = 0; s <= a->nheads; s++) {
            mtli_free(a->stacks[s].layers);
            mtli_free(a->stacks[s].class_weights);
        }
        mtli_free(a->stacks);
    }
    memset(a, 0, sizeof *a);
}

static void file_clear(ck_file *f)
{
    arch_clear(&f->arch);
    mtli_free(f->opt.parts);
    mtli_free((void *)f->opt.buffers);
    mtli_free(f->data);
    memset(f, 0, sizeof *f);
}

/* ==== writing =========================================================================== */

typedef struct save_ctx {
    const mtl_model *m;
    mtl_optimizer *opt; /* read only */
    const mtl_weighting *w;
} save_ctx;

static void enc_layer(mtli_enc *e, const mtli_layer *l)
{
    mtli_enc_text(e, "kind", l->ops->kind);
    for (size_t i = 0; i < NFIELDS; i++) {
        const opt_field *f = &g_fields[i];
        if (f->type == F_F64)
            mtli_enc_real(e, f->name, field_real(&l->opts, f));
        else if (f->type == F_INIT)
            mtli_enc_text(e, f->name, init_name((mtli_init)field_int(&l->opts, f)));
        else
            mtli_enc_int(e, f->name, field_int(&l->opts, f));
    }
    mtli_enc_end(e);
}

static void enc_info(mtli_enc *e, const save_ctx *c)
{
    (void)c;
    char w[64];
    snprintf(w, sizeof w, "libmtl %s", mtl_version_string());
    mtli_enc_text(e, "writer", w);
    mtli_enc_end(e);
}

static void enc_model(mtli_enc *e, const save_ctx *c)
{
    const mtl_model *m = c->m;
    uint64_t shape[3];
    for (int i = 0; i < m->input_ndim; i++)
        shape[i] = (uint64_t)m->input_shape[i];
    mtli_enc_text(e, "input_dtype", m->input_dtype == MTL_INT32 ? "int32" : "float32");
    mtli_enc_u64s(e, "input_shape", shape, (size_t)m->input_ndim);
    mtli_enc_real(e, "l2_trunk", m->l2_trunk);
    mtli_enc_real(e, "l2_heads", m->l2_heads);
    mtli_enc_int(e, "grad_layers", m->grad_layers);
    mtli_enc_int(e, "max_batch", (int64_t)m->max_batch);
    mtli_enc_int(e, "seed", (int64_t)m->seed);
    mtli_enc_int(e, "num_heads", m->nheads);
    mtli_enc_end(e);
    mtli_enc_text(e, "name", "trunk");
    mtli_enc_int(e, "num_layers", m->trunk.s.nlayers);
    mtli_enc_end(e);
    for (int i = 0; i < m->trunk.s.nlayers; i++)
        enc_layer(e, &m->trunk.s.layers[i]);
    for (int h = 0; h < m->nheads; h++) {
        const mtl_head *hd = m->heads[h];
        mtli_enc_text(e, "name", hd->name);
        mtli_enc_int(e, "num_layers", hd->s.nlayers);
        mtli_enc_text(e, "loss", mtli_loss_kind_name(hd->loss.kind));
        mtli_enc_real(e, "label_smoothing", hd->loss.label_smoothing);
        mtli_enc_real(e, "delta", hd->loss.delta);
        if (hd->loss.class_weights)
            mtli_enc_f32s(e, "class_weights", hd->loss.class_weights, hd->loss.nclass_weights);
        mtli_enc_end(e);
        for (int i = 0; i < hd->s.nlayers; i++)
            enc_layer(e, &hd->s.layers[i]);
    }
}

static void enc_params(mtli_enc *e, const save_ctx *c)
{
    const mtl_model *m = c->m;
    mtli_enc_int(e, "num_tensors", m->nnamed);
    mtli_enc_int(e, "num_params", (int64_t)m->nparams);
    mtli_enc_int(e, "num_state", (int64_t)m->nstate);
    mtli_enc_end(e);
    for (int i = 0; i < m->nnamed; i++) {
        const mtli_named_param *p = &m->named[i];
        uint64_t shape[4];
        for (int d = 0; d < p->ndim; d++)
            shape[d] = (uint64_t)p->shape[d];
        mtli_enc_text(e, "name", p->name);
        mtli_enc_u64s(e, "shape", shape, (size_t)p->ndim);
        mtli_enc_int(e, "state", p->is_state ? 1 : 0);
        mtli_enc_int(e, "offset", (int64_t)p->offset);
        mtli_enc_end(e);
    }
    mtli_enc_f32s(e, "params", m->params, m->nparams);
    mtli_enc_f32s(e, "state", m->state, m->nstate);
    mtli_enc_end(e);
}

static void enc_rng(mtli_enc *e, const save_ctx *c)
{
    mtli_enc_u64s(e, "xoshiro256", c->m->rng.s, 4);
    mtli_enc_end(e);
}

static void enc_optim(mtli_enc *e, const save_ctx *c)
{
    mtl_optimizer *o = c->opt;
    const mtl_model *m = c->m;
    int nb = mtli_optimizer_num_buffers(o);
    int np = mtli_optimizer_num_parts(o);
    mtli_enc_text(e, "kind", mtl_optimizer_kind(o));
    mtli_enc_int(e, "step", mtl_optimizer_step_count(o));
    mtli_enc_int(e, "num_params", (int64_t)mtli_optimizer_nparams(o));
    mtli_enc_int(e, "num_parts", np);
    mtli_enc_int(e, "num_buffers", nb);
    mtli_enc_end(e);
    for (int i = 0;; i++) {
        const char *key = mtl_optimizer_key_name(o, i);
        if (!key)
            break;
        const char *sv = mtli_optimizer_get_string(o, key);
        double dv = 0.0;
        if (sv)
            mtli_enc_text(e, key, sv);
        else if (mtl_optimizer_get_double(o, key, &dv) == MTL_OK)
            mtli_enc_real(e, key, dv);
    }
    mtli_enc_end(e);
    for (int i = 0; i < np; i++) {
        const mtli_stack *s = i == 0 ? &m->trunk.s : &m->heads[i - 1]->s;
        mtli_enc_text(e, "name", i == 0 ? "trunk" : m->heads[i - 1]->name);
        mtli_enc_int(e, "offset", (int64_t)s->param_offset);
        mtli_enc_int(e, "count", (int64_t)s->nparams);
        mtli_enc_real(e, "lr_scale", *mtli_optimizer_part_scale_ptr(o, i));
        mtli_enc_end(e);
    }
    for (int b = 0; b < nb; b++) {
        char key[32];
        snprintf(key, sizeof key, "buffer.%d", b);
        mtli_enc_f32s(e, key, mtli_optimizer_buffer(o, b), mtli_optimizer_nparams(o));
    }
    mtli_enc_end(e);
}

static void enc_weighting(mtli_enc *e, const save_ctx *c)
{
    const mtl_weighting *w = c->w;
    mtli_enc_text(e, "method", mtl_weighting_method(w));
    mtli_enc_int(e, "num_tasks", w->T);
    mtli_enc_f64s(e, "weights", w->state + 1, (size_t)w->T);
    if (strcmp(mtl_weighting_method(w), "fixed") == 0)
        mtli_enc_f64s(e, "fixed", w->fixed, (size_t)w->T);
    mtli_enc_int(e, "bound_params", (int64_t)w->P);
    mtli_enc_end(e);
    for (int i = 0;; i++) {
        const char *key = mtl_weighting_key_name(w, i);
        if (!key)
            break;
        const char *sv;
        double dv;
        if (mtl_weighting_get_string(w, key, &sv) == MTL_OK)
            mtli_enc_text(e, key, sv);
        else if (mtl_weighting_get_double(w, key, &dv) == MTL_OK)
            mtli_enc_real(e, key, dv);
    }
    mtli_enc_end(e);
    mtli_enc_f64s(e, "state", w->state, w->nstate);
    mtli_enc_end(e);
}

typedef void (*enc_fn)(mtli_enc *, const save_ctx *);

static mtl_status write_section(mtli_enc *e, uint32_t tag, enc_fn fn, const save_ctx *c)
{
    mtli_enc count = {0};
    fn(&count, c);
    mtli_enc_u32(e, tag);
    mtli_enc_u64(e, count.n);
    uint64_t start = e->n;
    e->crc = 0;
    fn(e, c);
    uint32_t crc = e->crc;
    if (e->n - start != count.n) {
        char tb[5];
        return mtli_error(MTL_ERR_INTERNAL,
                          "mtl_checkpoint_save: section %s sized %llu bytes but wrote %llu",
                          tag_text(tag, tb), (unsigned long long)count.n,
                          (unsigned long long)(e->n - start));
    }
    mtli_enc_u32(e, crc);
    return MTL_OK;
}

static mtl_status check_save_args(const char *path, const mtl_model *m,
                                  const mtl_optimizer *opt, const mtl_weighting *w)
{
    MTLI_CHECK_NULL(path, "mtl_checkpoint_save");
    MTLI_CHECK_NULL(m, "mtl_checkpoint_save");
    if (!m->built)
        return mtli_error(MTL_ERR_STATE, "mtl_checkpoint_save: the model is not built");
    for (int s = 0; s <= m->nheads; s++) {
        const mtli_stack *st = s == 0 ? &m->trunk.s : &m->heads[s - 1]->s;
        for (int i = 0; i < st->nlayers; i++)
            if (!init_name(st->layers[i].opts.weight_init) ||
                !init_name(st->layers[i].opts.bias_init))
                return mtli_error(MTL_ERR_INTERNAL,
                                  "mtl_checkpoint_save: layer %d of stack %d has an "
                                  "initialisation scheme (%d, %d) the format cannot name",
                                  i, s, (int)st->layers[i].opts.weight_init,
                                  (int)st->layers[i].opts.bias_init);
    }
    if (opt) {
        if (mtli_optimizer_model(opt) != m)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "mtl_checkpoint_save: the optimizer belongs to another model");
        if (mtli_optimizer_nparams(opt) != m->nparams ||
            mtli_optimizer_num_parts(opt) != 1 + m->nheads)
            return mtli_error(MTL_ERR_INTERNAL,
                              "mtl_checkpoint_save: the optimizer covers %zu parameters in %d "
                              "parts, the model has %zu in %d",
                              mtli_optimizer_nparams(opt), mtli_optimizer_num_parts(opt),
                              m->nparams, 1 + m->nheads);
        for (int i = 0;; i++) {
            const char *key = mtl_optimizer_key_name(opt, i);
            if (!key)
                break;
            double v;
            if (!mtli_optimizer_get_string(opt, key) &&
                mtl_optimizer_get_double(opt, key, &v) != MTL_OK) {
                mtli_error_prefix("mtl_checkpoint_save: optimizer key '%s'", key);
                return mtl_last_status();
            }
        }
    }
    if (w) {
        int T = mtl_weighting_num_tasks(w);
        for (int i = 0;; i++) {
            const char *key = mtl_weighting_key_name(w, i);
            if (!key)
                break;
            const char *sv;
            double dv;
            if (mtl_weighting_get_string(w, key, &sv) != MTL_OK &&
                mtl_weighting_get_double(w, key, &dv) != MTL_OK) {
                mtli_error_prefix("mtl_checkpoint_save: weighting key '%s'", key);
                return mtl_last_status();
            }
        }
        if (T != m->nheads)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "mtl_checkpoint_save: the weighting is for %d tasks, the model "
                              "has %d heads",
                              T, m->nheads);
    }
    return MTL_OK;
}

MTL_API mtl_status mtl_checkpoint_save(const char *path, const mtl_model *m,
                                       const mtl_optimizer *opt, const mtl_weighting *w)
{
    MTLI_TRY(check_save_args(path, m, opt, w));
    save_ctx c = {m, (mtl_optimizer *)opt, w};
    mtli_atomic *a = mtli_malloc(sizeof *a);
    if (!a)
        return mtli_oom("file writer", sizeof *a);
    mtl_status st = mtli_atomic_open(a, path, "mtl_checkpoint_save");
    if (st != MTL_OK) {
        mtli_free(a);
        return st;
    }
    mtli_enc e = {.out = a};
    unsigned char head[HEADER_SIZE];
    memcpy(head, MAGIC, 8);
    mtli_put_u32(head + 8, FORMAT_VERSION);
    mtli_enc_raw(&e, head, sizeof head);
    int nsec = 0;
    st = write_section(&e, TAG_INFO, enc_info, &c);
    nsec++;
    if (st == MTL_OK) {
        st = write_section(&e, TAG_MODL, enc_model, &c);
        nsec++;
    }
    if (st == MTL_OK) {
        st = write_section(&e, TAG_PARM, enc_params, &c);
        nsec++;
    }
    if (st == MTL_OK) {
        st = write_section(&e, TAG_RNGS, enc_rng, &c);
        nsec++;
    }
    if (st == MTL_OK && opt) {
        st = write_section(&e, TAG_OPTM, enc_optim, &c);
        nsec++;
    }
    if (st == MTL_OK && w) {
        st = write_section(&e, TAG_WGHT, enc_weighting, &c);
        nsec++;
    }
    if (st == MTL_OK) {
        /* trailer: where it starts, how many sections precede it, CRC of all bytes before */
        unsigned char t[16];
        uint64_t off = e.n;
        uint32_t fcrc = e.fcrc;
        mtli_put_u64(t, off);
        mtli_put_u32(t + 8, (uint32_t)nsec);
        mtli_put_u32(t + 12, fcrc);
        mtli_enc_u32(&e, TAG_TRLR);
        mtli_enc_u64(&e, sizeof t);
        mtli_enc_raw(&e, t, sizeof t);
        mtli_enc_u32(&e, mtli_crc32(0, t, sizeof t));
        st = mtli_atomic_commit(a);
    } else
        mtli_atomic_abort(a);
    mtli_free(a);
    return st;
}

/* ==== reading: the container ============================================================ */

static mtl_status parse_container(ck_file *f)
{
    const unsigned char *d = f->data;
    size_t n = f->size;
    if (n < 8 || memcmp(d, MAGIC, 8) != 0)
        return mtli_error(MTL_ERR_FORMAT, "not a libmtl checkpoint (bad magic number)");
    if (n < HEADER_SIZE)
        return mtli_error(MTL_ERR_FORMAT, "truncated: the file ends inside its header (%zu bytes)",
                          n);
    f->version = mtli_get_u32(d + 8);
    if (f->version == 0)
        return mtli_error(MTL_ERR_FORMAT, "format version 0 is invalid");
    if (f->version > FORMAT_VERSION)
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "format version %u is newer than this library reads (up to %u); "
                          "upgrade libmtl",
                          f->version, FORMAT_VERSION);
    size_t pos = HEADER_SIZE;
    char tb[5];
    for (;;) {
        if (pos == n)
            return mtli_error(MTL_ERR_FORMAT, "truncated: the file ends after %zu bytes without "
                                              "its trailer",
                              n);
        if (n - pos < 12)
            return mtli_error(MTL_ERR_FORMAT,
                              "truncated: section header at offset %zu needs 12 bytes, %zu remain",
                              pos, n - pos);
        uint32_t tag = mtli_get_u32(d + pos);
        uint64_t len = mtli_get_u64(d + pos + 4);
        size_t rem = n - pos - 12;
        if (rem < 4 || len > (uint64_t)(rem - 4))
            return mtli_error(MTL_ERR_FORMAT,
                              "truncated or corrupted: section %s at offset %zu claims %llu bytes, "
                              "%zu remain in the file",
                              tag_text(tag, tb), pos, (unsigned long long)len,
                              rem >= 4 ? rem - 4 : 0);
        const unsigned char *payload = d + pos + 12;
        uint32_t stored = mtli_get_u32(payload + len);
        uint32_t crc = mtli_crc32(0, payload, (size_t)len);
        if (stored != crc)
            return mtli_error(MTL_ERR_FORMAT,
                              "corrupted: section %s at offset %zu fails its checksum (stored "
                              "%08x, computed %08x)",
                              tag_text(tag, tb), pos, stored, crc);
        if (tag == TAG_TRLR) {
            if (len != 16)
                return mtli_error(MTL_ERR_FORMAT, "corrupted: trailer of %llu bytes, expected 16",
                                  (unsigned long long)len);
            uint64_t off = mtli_get_u64(payload);
            uint32_t cnt = mtli_get_u32(payload + 8);
            uint32_t fcrc = mtli_get_u32(payload + 12);
            if (off != pos || cnt != (uint32_t)f->nsections)
                return mtli_error(MTL_ERR_FORMAT,
                                  "corrupted: the trailer records %u sections ending at offset "
                                  "%llu, the file has %d ending at %zu",
                                  cnt, (unsigned long long)off, f->nsections, pos);
            uint32_t got = mtli_crc32(0, d, pos);
            if (got != fcrc)
                return mtli_error(MTL_ERR_FORMAT,
                                  "corrupted: whole-file checksum mismatch (stored %08x, "
                                  "computed %08x)",
                                  fcrc, got);
            size_t end = pos + 12 + 16 + 4;
            if (end != n)
                return mtli_error(MTL_ERR_FORMAT, "corrupted: %zu bytes follow the trailer",
                                  n - end);
            break;
        }
        ck_section *s = NULL;
        switch (tag) {
        case TAG_INFO: s = &f->info; break;
        case TAG_MODL: s = &f->modl; break;
        case TAG_PARM: s = &f->parm; break;
        case TAG_RNGS: s = &f->rngs; break;
        case TAG_OPTM: s = &f->optm; break;
        case TAG_WGHT: s = &f->wght; break;
        default:
            if (tag_critical(tag))
                return mtli_error(MTL_ERR_UNSUPPORTED,
                                  "section %s at offset %zu is required but unknown to this "
                                  "version of libmtl",
                                  tag_text(tag, tb), pos);
            break; /* optional and unknown: skipped */
        }
        if (s) {
            if (s->present)
                return mtli_error(MTL_ERR_FORMAT, "section %s appears twice",
                                  tag_text(tag, tb));
            s->p = payload;
            s->n = (size_t)len;
            s->present = true;
        }
        f->nsections++;
        pos += 12 + (size_t)len + 4;
    }
    if (!f->modl.present || !f->parm.present || !f->rngs.present)
        return mtli_error(MTL_ERR_FORMAT, "a required section (%s) is missing",
                          !f->modl.present ? "MODL" : !f->parm.present ? "PARM" : "RNGS");
    return MTL_OK;
}

/* Unused payload bytes after the last record of a section are corruption. */
static mtl_status dec_finish(const mtli_dec *d)
{
    if (d->pos != d->n)
        return mtli_error(MTL_ERR_FORMAT, "section %s: %zu unexpected bytes after its records",
                          d->section, d->n - d->pos);
    return MTL_OK;
}

/* ==== reading: the architecture ========================================================= */

static int valid_task_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > MAX_TASK)
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static mtl_status dec_layer(mtli_dec *d, ck_layer *L, const char *what)
{
    mtli_rec r;
    MTLI_TRY(mtli_dec_record(d, &r, what));
    char kind[MAX_KIND];
    MTLI_TRY(mtli_rec_text(&r, "kind", true, kind, sizeof kind, NULL));
    L->ops = mtli_layer_find(kind);
    if (!L->ops)
        return mtli_error(MTL_ERR_UNSUPPORTED, "%s: layer kind '%s' is unknown to this version",
                          what, kind);
    /* fields absent from the file (written before they existed) keep their defaults */
    mtli_layer_opts_default(&L->opts);
    size_t pos = 0;
    mtli_prop p;
    while (mtli_rec_next(&r, &pos, &p)) {
        if (mtli_prop_is(&p, "kind"))
            continue;
        const opt_field *f = NULL;
        for (size_t i = 0; i < NFIELDS; i++)
            if (mtli_prop_is(&p, g_fields[i].name))
                f = &g_fields[i];
        if (!f)
            return mtli_error(MTL_ERR_UNSUPPORTED,
                              "%s (%s): layer option '%.*s' is unknown to this version", what,
                              kind, (int)p.klen, p.key);
        int want = f->type == F_F64 ? MTLI_P_REAL : f->type == F_INIT ? MTLI_P_TEXT : MTLI_P_INT;
        if (p.type != want)
            return mtli_error(MTL_ERR_FORMAT, "%s (%s): layer option '%s' has the wrong type",
                              what, kind, f->name);
        if (f->type == F_INIT) {
            int found = 0;
            for (size_t i = 0; i < sizeof g_inits / sizeof g_inits[0]; i++)
                if (strlen(g_inits[i].name) == p.count &&
                    memcmp(g_inits[i].name, p.data, p.count) == 0) {
                    field_set_int(&L->opts, f, (int64_t)g_inits[i].init);
                    found = 1;
                }
            if (!found)
                return mtli_error(MTL_ERR_UNSUPPORTED,
                                  "%s (%s): initialisation '%.*s' of '%s' is unknown to this "
                                  "version",
                                  what, kind, (int)(p.count > 64 ? 64 : p.count),
                                  (const char *)p.data, f->name);
            continue;
        }
        const char *bad = field_check(f, p.i, p.d);
        if (bad) {
            if (f->type == F_F64)
                return mtli_error(MTL_ERR_FORMAT, "%s (%s): layer option '%s' is %g, expected %s",
                                  what, kind, f->name, p.d, bad);
            return mtli_error(MTL_ERR_FORMAT, "%s (%s): layer option '%s' is %lld, expected %s",
                              what, kind, f->name, (long long)p.i, bad);
        }
        if (f->type == F_F64)
            field_set_real(&L->opts, f, p.d);
        else
            field_set_int(&L->opts, f, p.i);
    }
    return MTL_OK;
}

static mtl_status dec_stack(mtli_dec *d, ck_stack *s, bool head, int index)
{
    char what[96];
    if (head)
        snprintf(what, sizeof what, "head %d", index);
    else
        snprintf(what, sizeof what, "trunk");
    mtli_rec r;
    MTLI_TRY(mtli_dec_record(d, &r, what));
    MTLI_TRY(mtli_rec_text(&r, "name", true, s->name, sizeof s->name, NULL));
    if (head && !valid_task_name(s->name))
        return mtli_error(MTL_ERR_FORMAT, "%s: task name '%s' is invalid", what, s->name);
    if (!head && strcmp(s->name, "trunk") != 0)
        return mtli_error(MTL_ERR_FORMAT, "the first stack is named '%s', expected 'trunk'",
                          s->name);
    int64_t nl = 0;
    /* every layer record takes more than one byte, which bounds the allocation */
    MTLI_TRY(mtli_rec_int(&r, "num_layers", true, 0,
                          (int64_t)(d->n - d->pos < 4096 ? d->n - d->pos : 4096), &nl, NULL));
    if (head) {
        snprintf(what, sizeof what, "head '%s'", s->name);
        r.what = what;
        char loss[MAX_KIND];
        MTLI_TRY(mtli_rec_text(&r, "loss", true, loss, sizeof loss, NULL));
        if (mtli_loss_kind_from_name(loss, &s->loss) != MTL_OK)
            return mtli_error(MTL_ERR_UNSUPPORTED, "%s: loss '%s' is unknown to this version",
                              what, loss);
        s->label_smoothing = 0.0;
        s->delta = 1.0;
        MTLI_TRY(mtli_rec_real(&r, "label_smoothing", false, &s->label_smoothing, NULL));
        MTLI_TRY(mtli_rec_real(&r, "delta", false, &s->delta, NULL));
        if (!(s->label_smoothing >= 0.0 && s->label_smoothing < 1.0))
            return mtli_error(MTL_ERR_FORMAT, "%s: label_smoothing %g outside [0, 1)", what,
                              s->label_smoothing);
        if (!(s->delta > 0.0 && isfinite(s->delta)))
            return mtli_error(MTL_ERR_FORMAT, "%s: huber delta %g must be > 0", what, s->delta);
        const unsigned char *cw;
        uint64_t ncw;
        bool found;
        MTLI_TRY(mtli_rec_array(&r, "class_weights", MTLI_P_F32S, false, &cw, &ncw, &found));
        if (found) {
            if (ncw < 1 || ncw > (1u << 24))
                return mtli_error(MTL_ERR_FORMAT, "%s: %llu class weights", what,
                                  (unsigned long long)ncw);
            s->class_weights = mtli_malloc((size_t)ncw * sizeof(float));
            if (!s->class_weights)
                return mtli_oom("class weights", (size_t)ncw * sizeof(float));
            s->nclass_weights = (size_t)ncw;
            mtli_load_f32s(s->class_weights, cw, (size_t)ncw);
            for (size_t i = 0; i < s->nclass_weights; i++)
                if (!(s->class_weights[i] >= 0.0f) || !isfinite(s->class_weights[i]))
                    return mtli_error(MTL_ERR_FORMAT, "%s: class weight %zu is %g", what, i,
                                      (double)s->class_weights[i]);
        }
    }
    s->nlayers = (int)nl;
    if (nl > 0) {
        s->layers = mtli_calloc((size_t)nl, sizeof *s->layers);
        if (!s->layers)
            return mtli_oom("layer descriptions", (size_t)nl * sizeof *s->layers);
    }
    for (int i = 0; i < s->nlayers; i++) {
        char lw[128];
        snprintf(lw, sizeof lw, "%s layer %d", head ? what : "trunk", i);
        MTLI_TRY(dec_layer(d, &s->layers[i], lw));
    }
    return MTL_OK;
}

static mtl_status dec_arch(ck_file *f)
{
    ck_arch *a = &f->arch;
    mtli_dec d = {f->modl.p, f->modl.n, 0, "MODL"};
    mtli_rec r;
    MTLI_TRY(mtli_dec_record(&d, &r, "model"));
    char dt[16];
    MTLI_TRY(mtli_rec_text(&r, "input_dtype", true, dt, sizeof dt, NULL));
    if (strcmp(dt, "float32") == 0)
        a->dtype = MTL_FLOAT32;
    else if (strcmp(dt, "int32") == 0)
        a->dtype = MTL_INT32;
    else
        return mtli_error(MTL_ERR_FORMAT, "model: input dtype '%s' (expected float32 or int32)",
                          dt);
    const unsigned char *sh;
    uint64_t nd;
    MTLI_TRY(mtli_rec_array(&r, "input_shape", MTLI_P_U64S, true, &sh, &nd, NULL));
    if (nd < 1 || nd > 3)
        return mtli_error(MTL_ERR_FORMAT, "model: input has %llu dimensions, expected 1..3",
                          (unsigned long long)nd);
    a->ndim = (int)nd;
    for (int i = 0; i < a->ndim; i++) {
        uint64_t v = mtli_get_u64(sh + 8 * i);
        if (v < 1 || v > ((uint64_t)1 << 30))
            return mtli_error(MTL_ERR_FORMAT, "model: input dimension %d is %llu", i,
                              (unsigned long long)v);
        a->shape[i] = (int64_t)v;
    }
    MTLI_TRY(mtli_rec_real(&r, "l2_trunk", true, &a->l2_trunk, NULL));
    MTLI_TRY(mtli_rec_real(&r, "l2_heads", true, &a->l2_heads, NULL));
    if (!(a->l2_trunk >= 0.0 && isfinite(a->l2_trunk)) ||
        !(a->l2_heads >= 0.0 && isfinite(a->l2_heads)))
        return mtli_error(MTL_ERR_FORMAT, "model: L2 settings %g, %g must be finite and >= 0",
                          a->l2_trunk, a->l2_heads);
    a->grad_layers = 0;
    MTLI_TRY(mtli_rec_int(&r, "grad_layers", false, 0, 1 << 20, &a->grad_layers, NULL));
    MTLI_TRY(mtli_rec_int(&r, "max_batch", true, 1, 1 << 24, &a->max_batch, NULL));
    int64_t seed = 0;
    MTLI_TRY(mtli_rec_int(&r, "seed", true, INT64_MIN, INT64_MAX, &seed, NULL));
    a->seed = (uint64_t)seed;
    int64_t nh = 0;
    MTLI_TRY(mtli_rec_int(&r, "num_heads", true, 1,
                          (int64_t)(d.n - d.pos < 4096 ? d.n - d.pos : 4096), &nh, NULL));
    a->stacks = mtli_calloc((size_t)nh + 1, sizeof *a->stacks);
    if (!a->stacks)
        return mtli_oom("head descriptions", ((size_t)nh + 1) * sizeof *a->stacks);
    a->nheads = (int)nh;
    MTLI_TRY(dec_stack(&d, &a->stacks[0], false, 0));
    for (int h = 0; h < a->nheads; h++) {
        MTLI_TRY(dec_stack(&d, &a->stacks[1 + h], true, h));
        for (int k = 0; k < h; k++)
            if (strcmp(a->stacks[1 + k].name, a->stacks[1 + h].name) == 0)
                return mtli_error(MTL_ERR_FORMAT, "two heads are named '%s'",
                                  a->stacks[1 + h].name);
    }
    return dec_finish(&d);
}

/* ==== reading: parameters, random state, optimizer, weighting =========================== */

/* Walk the tensor table; with m, compare it with the model's named parameters. */
static mtl_status walk_table(const ck_file *f, const mtl_model *m, size_t *nshared)
{
    mtli_dec d = {f->parm.p, f->parm.n, f->par.table_pos, "PARM"};
    size_t shared = 0;
    for (size_t i = 0; i < f->par.ntensors; i++) {
        char what[48];
        snprintf(what, sizeof what, "tensor %zu", i);
        mtli_rec r;
        MTLI_TRY(mtli_dec_record(&d, &r, what));
        char name[200];
        MTLI_TRY(mtli_rec_text(&r, "name", true, name, sizeof name, NULL));
        const unsigned char *sh;
        uint64_t nd;
        MTLI_TRY(mtli_rec_array(&r, "shape", MTLI_P_U64S, true, &sh, &nd, NULL));
        int64_t state = 0, off = 0;
        MTLI_TRY(mtli_rec_int(&r, "state", true, 0, 1, &state, NULL));
        MTLI_TRY(mtli_rec_int(&r, "offset", true, 0, INT64_MAX, &off, NULL));
        if (nd < 1 || nd > 4)
            return mtli_error(MTL_ERR_FORMAT, "tensor '%s' has %llu dimensions", name,
                              (unsigned long long)nd);
        uint64_t count = 1;
        for (uint64_t k = 0; k < nd; k++) {
            uint64_t v = mtli_get_u64(sh + 8 * k);
            if (v < 1 || v > ((uint64_t)1 << 40) || count > ((uint64_t)1 << 40) / v)
                return mtli_error(MTL_ERR_FORMAT, "tensor '%s': dimension %llu is %llu", name,
                                  (unsigned long long)k, (unsigned long long)v);
            count *= v;
        }
        size_t limit = state ? f->par.nstate : f->par.nparams;
        if ((uint64_t)off > limit || count > limit - (uint64_t)off)
            return mtli_error(MTL_ERR_FORMAT,
                              "tensor '%s': %llu floats at offset %lld lie outside the %s "
                              "buffer of %zu",
                              name, (unsigned long long)count, (long long)off,
                              state ? "state" : "parameter", limit);
        if (!state && strncmp(name, "trunk.", 6) == 0)
            shared += (size_t)count;
        if (m) {
            const mtli_named_param *p = &m->named[i];
            bool same = strcmp(p->name, name) == 0 && p->ndim == (int)nd &&
                        p->is_state == (state != 0) && p->offset == (size_t)off;
            for (int k = 0; same && k < p->ndim; k++)
                same = (uint64_t)p->shape[k] == mtli_get_u64(sh + 8 * k);
            if (!same)
                return mtli_error(MTL_ERR_FORMAT,
                                  "stored tensor %zu ('%s') does not match the model's "
                                  "parameter '%s' (name, shape or layout differ)",
                                  i, name, p->name);
        }
    }
    if (nshared)
        *nshared = shared;
    return MTL_OK;
}

static mtl_status dec_params(ck_file *f)
{
    ck_params *pp = &f->par;
    mtli_dec d = {f->parm.p, f->parm.n, 0, "PARM"};
    mtli_rec r;
    MTLI_TRY(mtli_dec_record(&d, &r, "parameters"));
    int64_t nt = 0, np = 0, ns = 0;
    MTLI_TRY(mtli_rec_int(&r, "num_tensors", true, 0, (int64_t)f->parm.n, &nt, NULL));
    MTLI_TRY(mtli_rec_int(&r, "num_params", true, 1, (int64_t)(f->parm.n / 4), &np, NULL));
    MTLI_TRY(mtli_rec_int(&r, "num_state", true, 0, (int64_t)(f->parm.n / 4), &ns, NULL));
    pp->ntensors = (size_t)nt;
    pp->nparams = (size_t)np;
    pp->nstate = (size_t)ns;
    pp->table_pos = d.pos;
    /* skip over the table (validated by walk_table) */
    for (size_t i = 0; i < pp->ntensors; i++)
        MTLI_TRY(mtli_dec_record(&d, &r, "tensor"));
    MTLI_TRY(walk_table(f, NULL, &pp->nshared));
    MTLI_TRY(mtli_dec_record(&d, &r, "values"));
    uint64_t cnt;
    MTLI_TRY(mtli_rec_array(&r, "params", MTLI_P_F32S, true, &pp->params, &cnt, NULL));
    if (cnt != pp->nparams)
        return mtli_error(MTL_ERR_FORMAT, "values: %llu parameters stored, %zu declared",
                          (unsigned long long)cnt, pp->nparams);
    MTLI_TRY(mtli_rec_array(&r, "state", MTLI_P_F32S, true, &pp->state, &cnt, NULL));
    if (cnt != pp->nstate)
        return mtli_error(MTL_ERR_FORMAT, "values: %llu state values stored, %zu declared",
                          (unsigned long long)cnt, pp->nstate);
    for (size_t i = 0; i < pp->nparams; i++)
        if (!isfinite(mtli_load_f32(pp->params + 4 * i)))
            return mtli_error(MTL_ERR_FORMAT, "values: parameter %zu is not finite", i);
    for (size_t i = 0; i < pp->nstate; i++)
        if (!isfinite(mtli_load_f32(pp->state + 4 * i)))
            return mtli_error(MTL_ERR_FORMAT, "values: state value %zu is not finite", i);
    return dec_finish(&d);
}

static mtl_status dec_rng(ck_file *f)
{
    mtli_dec d = {f->rngs.p, f->rngs.n, 0, "RNGS"};
    mtli_rec r;
    MTLI_TRY(mtli_dec_record(&d, &r, "random state"));
    const unsigned char *s;
    uint64_t n;
    MTLI_TRY(mtli_rec_array(&r, "xoshiro256", MTLI_P_U64S, true, &s, &n, NULL));
    if (n != 4)
        return mtli_error(MTL_ERR_FORMAT, "random state: %llu words, expected 4",
                          (unsigned long long)n);
    uint64_t any = 0;
    for (int i = 0; i < 4; i++) {
        f->rng[i] = mtli_get_u64(s + 8 * i);
        any |= f->rng[i];
    }
    if (!any)
        return mtli_error(MTL_ERR_FORMAT, "random state: all zero (invalid for xoshiro256**)");
    return dec_finish(&d);
}

static mtl_status dec_optim(ck_file *f)
{
    ck_opt *o = &f->opt;
    mtli_dec d = {f->optm.p, f->optm.n, 0, "OPTM"};
    mtli_rec r;
    MTLI_TRY(mtli_dec_record(&d, &r, "optimizer"));
    MTLI_TRY(mtli_rec_text(&r, "kind", true, o->kind, sizeof o->kind, NULL));
    int64_t v = 0;
    MTLI_TRY(mtli_rec_int(&r, "step", true, 0, INT64_MAX, &o->step, NULL));
    MTLI_TRY(mtli_rec_int(&r, "num_params", true, 0, (int64_t)f->size, &v, NULL));
    o->nparams = (size_t)v;
    MTLI_TRY(mtli_rec_int(&r, "num_parts", true, 1, 4097, &v, NULL));
    o->nparts = (int)v;
    MTLI_TRY(mtli_rec_int(&r, "num_buffers", true, 0, 64, &v, NULL));
    o->nbuffers = (int)v;
    if (o->nparts > 1 + f->arch.nheads)
        return mtli_error(MTL_ERR_FORMAT, "optimizer: %d parts for a model of %d heads",
                          o->nparts, f->arch.nheads);
    MTLI_TRY(mtli_dec_record(&d, &o->hyper, "optimizer hyper-parameters"));
    o->parts = mtli_calloc((size_t)o->nparts, sizeof *o->parts);
    if (!o->parts)
        return mtli_oom("optimizer parts", (size_t)o->nparts * sizeof *o->parts);
    for (int i = 0; i < o->nparts; i++) {
        ck_part *p = &o->parts[i];
        MTLI_TRY(mtli_dec_record(&d, &r, "optimizer part"));
        MTLI_TRY(mtli_rec_text(&r, "name", true, p->name, sizeof p->name, NULL));
        MTLI_TRY(mtli_rec_int(&r, "offset", true, 0, (int64_t)o->nparams, &v, NULL));
        p->offset = (size_t)v;
        MTLI_TRY(mtli_rec_int(&r, "count", true, 0, (int64_t)(o->nparams - p->offset), &v, NULL));
        p->count = (size_t)v;
        MTLI_TRY(mtli_rec_real(&r, "lr_scale", true, &p->scale, NULL));
        if (!(p->scale >= 0.0 && isfinite(p->scale)))
            return mtli_error(MTL_ERR_FORMAT, "optimizer part '%s': lr scale %g", p->name,
                              p->scale);
    }
    if (o->nbuffers) {
        o->buffers = mtli_calloc((size_t)o->nbuffers, sizeof *o->buffers);
        if (!o->buffers)
            return mtli_oom("optimizer buffers", (size_t)o->nbuffers * sizeof *o->buffers);
    }
    MTLI_TRY(mtli_dec_record(&d, &r, "optimizer buffers"));
    for (int b = 0; b < o->nbuffers; b++) {
        char key[32];
        snprintf(key, sizeof key, "buffer.%d", b);
        uint64_t n;
        MTLI_TRY(mtli_rec_array(&r, key, MTLI_P_F32S, true, &o->buffers[b], &n, NULL));
        if (n != o->nparams)
            return mtli_error(MTL_ERR_FORMAT, "optimizer %s: %llu values, expected %zu", key,
                              (unsigned long long)n, o->nparams);
        for (size_t i = 0; i < o->nparams; i++)
            if (!isfinite(mtli_load_f32(o->buffers[b] + 4 * i)))
                return mtli_error(MTL_ERR_FORMAT, "optimizer %s: value %zu is not finite", key,
                                  i);
    }
    return dec_finish(&d);
}

static mtl_status dec_weighting(ck_file *f)
{
    ck_weighting *w = &f->w;
    mtli_dec d = {f->wght.p, f->wght.n, 0, "WGHT"};
    mtli_rec r;
    MTLI_TRY(mtli_dec_record(&d, &r, "weighting"));
    MTLI_TRY(mtli_rec_text(&r, "method", true, w->method, sizeof w->method, NULL));
    int64_t v = 0;
    MTLI_TRY(mtli_rec_int(&r, "num_tasks", true, 1, 4096, &v, NULL));
    w->ntasks = (int)v;
    uint64_t n;
    MTLI_TRY(mtli_rec_array(&r, "weights", MTLI_P_F64S, true, &w->weights, &n, NULL));
    if (n != (uint64_t)w->ntasks)
        return mtli_error(MTL_ERR_FORMAT, "weighting: %llu weights for %d tasks",
                          (unsigned long long)n, w->ntasks);
    bool found;
    MTLI_TRY(mtli_rec_array(&r, "fixed", MTLI_P_F64S, false, &w->fixed, &n, &found));
    if (!found)
        w->fixed = NULL;
    else if (n != (uint64_t)w->ntasks)
        return mtli_error(MTL_ERR_FORMAT, "weighting: %llu fixed weights for %d tasks",
                          (unsigned long long)n, w->ntasks);
    for (int t = 0; w->fixed && t < w->ntasks; t++) {
        double x = mtli_load_f64(w->fixed + 8 * t);
        if (!(x >= 0.0) || !isfinite(x))
            return mtli_error(MTL_ERR_FORMAT, "weighting: fixed weight %d is %g", t, x);
    }
    v = 0;
    MTLI_TRY(mtli_rec_int(&r, "bound_params", false, 0, INT64_MAX, &v, NULL));
    w->bound_params = (size_t)v;
    MTLI_TRY(mtli_dec_record(&d, &w->hyper, "weighting hyper-parameters"));
    mtli_rec sr;
    MTLI_TRY(mtli_dec_record(&d, &sr, "weighting state"));
    MTLI_TRY(mtli_rec_array(&sr, "state", MTLI_P_F64S, true, &w->state, &n, NULL));
    w->nstate = (size_t)n;
    for (size_t i = 0; i < w->nstate; i++)
        if (!isfinite(mtli_load_f64(w->state + 8 * i)))
            return mtli_error(MTL_ERR_FORMAT, "weighting state value %zu is not finite", i);
    return dec_finish(&d);
}

static mtl_status dec_info(ck_file *f)
{
    snprintf(f->writer, sizeof f->writer, "unknown");
    if (!f->info.present)
        return MTL_OK;
    mtli_dec d = {f->info.p, f->info.n, 0, "info"};
    mtli_rec r;
    MTLI_TRY(mtli_dec_record(&d, &r, "info"));
    MTLI_TRY(mtli_rec_text(&r, "writer", false, f->writer, sizeof f->writer, NULL));
    return MTL_OK; /* later versions may add records here */
}

/* Read and check a whole file. want_opt/want_w: decode those sections too (when present). */
static mtl_status read_checkpoint(const char *path, const char *fn, ck_file *f, bool want_opt,
                                  bool want_w)
{
    memset(f, 0, sizeof *f);
    MTLI_TRY(mtli_read_file(path, fn, &f->data, &f->size));
    MTLI_TRY(parse_container(f));
    MTLI_TRY(dec_info(f));
    MTLI_TRY(dec_arch(f));
    MTLI_TRY(dec_params(f));
    MTLI_TRY(dec_rng(f));
    if (f->optm.present && want_opt)
        MTLI_TRY(dec_optim(f));
    if (f->wght.present && want_w)
        MTLI_TRY(dec_weighting(f));
    return MTL_OK;
}

/* ==== building and comparing ============================================================ */

/* The parameter and state counts the architecture infers (shape inference only, nothing
 * allocated), so that a file cannot make the build allocate buffers larger than it stores. */
static mtl_status infer_counts(mtl_model *m, size_t *nparams, size_t *nstate)
{
    mtli_stack *t = &m->trunk.s;
    MTLI_TRY(mtli_stack_setup(t, m->input_ndim, m->input_shape, "trunk"));
    size_t np = t->nparams, ns = t->nstate;
    int ndim = t->nlayers ? t->layers[t->nlayers - 1].out_ndim : m->input_ndim;
    const int64_t *dims = t->nlayers ? t->layers[t->nlayers - 1].out_dims : m->input_shape;
    for (int h = 0; h < m->nheads; h++) {
        MTLI_TRY(mtli_stack_setup(&m->heads[h]->s, ndim, dims, m->heads[h]->name));
        np += m->heads[h]->s.nparams;
        ns += m->heads[h]->s.nstate;
    }
    *nparams = np;
    *nstate = ns;
    return MTL_OK;
}

static mtl_status build_model(const ck_arch *a, const ck_params *pp, mtl_model **out)
{
    *out = NULL;
    mtl_model *m = NULL;
    MTLI_TRY(mtl_model_create(&m, a->dtype, a->ndim, a->shape));
    mtl_status st = MTL_OK;
    for (int s = 0; s <= a->nheads && st == MTL_OK; s++) {
        const ck_stack *cs = &a->stacks[s];
        mtli_stack *stk;
        if (s == 0)
            stk = &m->trunk.s;
        else {
            mtl_head *h;
            st = mtl_model_add_head(m, &h, cs->name);
            if (st != MTL_OK)
                break;
            stk = &h->s;
            st = mtl_head_set_loss(h, mtli_loss_kind_name(cs->loss));
            h->loss.label_smoothing = cs->label_smoothing;
            h->loss.delta = cs->delta;
            if (st == MTL_OK && cs->class_weights)
                st = mtl_head_set_class_weights(h, cs->class_weights,
                                                (int64_t)cs->nclass_weights);
        }
        for (int i = 0; i < cs->nlayers && st == MTL_OK; i++) {
            int idx;
            st = mtli_stack_add(stk, cs->layers[i].ops->kind, &idx, s == 0 ? "trunk" : cs->name);
            if (st == MTL_OK)
                stk->layers[idx].opts = cs->layers[i].opts;
        }
    }
    if (st == MTL_OK)
        st = mtl_model_set_double(m, "l2_trunk", a->l2_trunk);
    if (st == MTL_OK)
        st = mtl_model_set_double(m, "l2_heads", a->l2_heads);
    if (st == MTL_OK)
        st = mtl_model_set_double(m, "grad_layers", (double)a->grad_layers);
    size_t np = 0, ns = 0;
    if (st == MTL_OK)
        st = infer_counts(m, &np, &ns);
    if (st == MTL_OK && (np != pp->nparams || ns != pp->nstate)) {
        mtl_model_free(m);
        return mtli_error(MTL_ERR_FORMAT,
                          "the stored architecture has %zu parameters and %zu state values, "
                          "the file stores %zu and %zu",
                          np, ns, pp->nparams, pp->nstate);
    }
    if (st == MTL_OK)
        st = mtl_model_build(m, a->max_batch, a->seed);
    if (st != MTL_OK) {
        mtl_model_free(m);
        if (st != MTL_ERR_OUT_OF_MEMORY) {
            mtli_error_prefix("the stored architecture does not build");
            st = mtli_error(MTL_ERR_FORMAT, "%s", mtl_last_error());
        }
        return st;
    }
    *out = m;
    return MTL_OK;
}

static mtl_status diff_layer(const ck_layer *L, const mtli_layer *ml, const char *where, int i)
{
    if (L->ops != ml->ops)
        return mtli_error(MTL_ERR_SHAPE, "%s layer %d is %s in the checkpoint, %s in the model",
                          where, i, L->ops->kind, ml->ops->kind);
    for (size_t k = 0; k < NFIELDS; k++) {
        const opt_field *f = &g_fields[k];
        if (f->type == F_F64) {
            double a = field_real(&L->opts, f), b = field_real(&ml->opts, f);
            if (a != b)
                return mtli_error(MTL_ERR_SHAPE,
                                  "%s layer %d (%s): option '%s' is %g in the checkpoint, %g "
                                  "in the model",
                                  where, i, ml->ops->kind, f->name, a, b);
        } else {
            int64_t a = field_int(&L->opts, f), b = field_int(&ml->opts, f);
            if (a != b) {
                if (f->type == F_INIT)
                    return mtli_error(MTL_ERR_SHAPE,
                                      "%s layer %d (%s): option '%s' is %s in the checkpoint, "
                                      "%s in the model",
                                      where, i, ml->ops->kind, f->name,
                                      init_name((mtli_init)a), init_name((mtli_init)b));
                return mtli_error(MTL_ERR_SHAPE,
                                  "%s layer %d (%s): option '%s' is %lld in the checkpoint, "
                                  "%lld in the model",
                                  where, i, ml->ops->kind, f->name, (long long)a, (long long)b);
            }
        }
    }
    return MTL_OK;
}

static mtl_status diff_stack(const ck_stack *cs, const mtli_stack *s, const char *where)
{
    if (cs->nlayers != s->nlayers)
        return mtli_error(MTL_ERR_SHAPE, "%s has %d layers in the checkpoint, %d in the model",
                          where, cs->nlayers, s->nlayers);
    for (int i = 0; i < s->nlayers; i++)
        MTLI_TRY(diff_layer(&cs->layers[i], &s->layers[i], where, i));
    return MTL_OK;
}

static mtl_status diff_arch(const ck_arch *a, const mtl_model *m)
{
    if (a->dtype != m->input_dtype || a->ndim != m->input_ndim)
        return mtli_error(MTL_ERR_SHAPE,
                          "the input is %s with %d dimensions in the checkpoint, %s with %d in "
                          "the model",
                          a->dtype == MTL_INT32 ? "int32" : "float32", a->ndim,
                          m->input_dtype == MTL_INT32 ? "int32" : "float32", m->input_ndim);
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != m->input_shape[i])
            return mtli_error(MTL_ERR_SHAPE,
                              "input dimension %d is %lld in the checkpoint, %lld in the model",
                              i, (long long)a->shape[i], (long long)m->input_shape[i]);
    MTLI_TRY(diff_stack(&a->stacks[0], &m->trunk.s, "trunk"));
    if (a->nheads != m->nheads)
        return mtli_error(MTL_ERR_SHAPE, "the checkpoint has %d heads, the model %d", a->nheads,
                          m->nheads);
    for (int h = 0; h < m->nheads; h++) {
        const ck_stack *cs = &a->stacks[1 + h];
        const mtl_head *hd = m->heads[h];
        if (strcmp(cs->name, hd->name) != 0)
            return mtli_error(MTL_ERR_SHAPE, "head %d is '%s' in the checkpoint, '%s' in the model",
                              h, cs->name, hd->name);
        char where[96];
        snprintf(where, sizeof where, "head '%s'", hd->name);
        MTLI_TRY(diff_stack(cs, &hd->s, where));
        if (cs->loss != hd->loss.kind)
            return mtli_error(MTL_ERR_SHAPE, "%s: the loss is %s in the checkpoint, %s in the model",
                              where, mtli_loss_kind_name(cs->loss),
                              mtli_loss_kind_name(hd->loss.kind));
        if (cs->label_smoothing != hd->loss.label_smoothing || cs->delta != hd->loss.delta)
            return mtli_error(MTL_ERR_SHAPE,
                              "%s: loss options (label_smoothing %g, delta %g) in the "
                              "checkpoint, (%g, %g) in the model",
                              where, cs->label_smoothing, cs->delta, hd->loss.label_smoothing,
                              hd->loss.delta);
        bool same = cs->nclass_weights == (hd->loss.class_weights ? hd->loss.nclass_weights : 0);
        for (size_t i = 0; same && i < cs->nclass_weights; i++)
            same = cs->class_weights[i] == hd->loss.class_weights[i];
        if (!same)
            return mtli_error(MTL_ERR_SHAPE, "%s: the class weights differ", where);
    }
    if (a->l2_trunk != m->l2_trunk || a->l2_heads != m->l2_heads)
        return mtli_error(MTL_ERR_SHAPE,
                          "L2 settings (l2_trunk %g, l2_heads %g) in the checkpoint, (%g, %g) in "
                          "the model",
                          a->l2_trunk, a->l2_heads, m->l2_trunk, m->l2_heads);
    if (a->grad_layers != m->grad_layers)
        return mtli_error(MTL_ERR_SHAPE, "grad_layers is %lld in the checkpoint, %lld in the model",
                          (long long)a->grad_layers, (long long)m->grad_layers);
    return MTL_OK;
}

static mtl_status check_params_fit(const ck_file *f, const mtl_model *m)
{
    if (f->par.ntensors != (size_t)m->nnamed || f->par.nparams != m->nparams ||
        f->par.nstate != m->nstate)
        return mtli_error(MTL_ERR_FORMAT,
                          "the checkpoint stores %zu tensors (%zu parameters, %zu state), the "
                          "model has %d (%zu, %zu)",
                          f->par.ntensors, f->par.nparams, f->par.nstate, m->nnamed, m->nparams,
                          m->nstate);
    return walk_table(f, m, NULL);
}

static void commit_params(const ck_file *f, mtl_model *m)
{
    mtli_load_f32s(m->params, f->par.params, f->par.nparams);
    mtli_load_f32s(m->state, f->par.state, f->par.nstate);
    memcpy(m->rng.s, f->rng, sizeof f->rng);
}

/* ---- optimizer ---- */

/* Set the stored hyper-parameters: numbers first, then strings (the setters check each key
 * on its own; combinations are checked at the next step). Unchanged values are not set
 * again. A key the optimizer refuses is MTL_ERR_FORMAT; out of memory stays itself. */
static mtl_status apply_hyper(mtl_optimizer *o, const mtli_rec *hyper)
{
    for (int pass = 0; pass < 2; pass++) {
        size_t pos = 0;
        mtli_prop p;
        while (mtli_rec_next(hyper, &pos, &p)) {
            char key[MTLI_MAX_KEY + 1];
            memcpy(key, p.key, p.klen);
            key[p.klen] = '\0';
            if (p.type != MTLI_P_REAL && p.type != MTLI_P_TEXT)
                return mtli_error(MTL_ERR_FORMAT, "optimizer key '%s' has the wrong type", key);
            if ((p.type == MTLI_P_TEXT) != (pass == 1))
                continue;
            mtl_status st;
            if (p.type == MTLI_P_TEXT) {
                char val[1024];
                if (p.count >= sizeof val)
                    return mtli_error(MTL_ERR_FORMAT, "optimizer key '%s': value too long", key);
                memcpy(val, p.data, (size_t)p.count);
                val[p.count] = '\0';
                const char *cur = mtli_optimizer_get_string(o, key);
                st = cur && strcmp(cur, val) == 0 ? MTL_OK : mtl_optimizer_set_string(o, key, val);
            } else {
                double cur;
                if (mtl_optimizer_get_double(o, key, &cur) == MTL_OK && cur == p.d)
                    st = MTL_OK;
                else
                    st = mtl_optimizer_set_double(o, key, p.d);
            }
            if (st == MTL_ERR_OUT_OF_MEMORY)
                return st;
            if (st != MTL_OK)
                return mtli_error(MTL_ERR_FORMAT, "optimizer hyper-parameter '%s' does not "
                                                  "apply: %s",
                                  key, mtl_last_error());
        }
    }
    return MTL_OK;
}

static void prop_key(const mtli_prop *p, char key[MTLI_MAX_KEY + 1])
{
    memcpy(key, p->key, p->klen);
    key[p->klen] = '\0';
}

/* Before load_into changes an existing optimizer: every stored number it lacks must be
 * settable (a key left at a default outside its settable range, such as total_steps = 0,
 * cannot be set back), and the moment buffers the stored settings switch on are allocated
 * now (by setting the value and putting the old one back, which allocates nothing), so the
 * commit cannot run out of memory half-way. probe is a scratch optimizer of the same kind. */
static mtl_status prepare_target_opt(mtl_optimizer *target, mtl_optimizer *probe,
                                     const mtli_rec *hyper)
{
    size_t pos = 0;
    mtli_prop p;
    while (mtli_rec_next(hyper, &pos, &p)) {
        if (p.type != MTLI_P_REAL)
            continue;
        char key[MTLI_MAX_KEY + 1];
        prop_key(&p, key);
        double cur;
        MTLI_TRY(mtl_optimizer_get_double(target, key, &cur));
        if (cur == p.d)
            continue;
        mtl_status st = mtl_optimizer_set_double(probe, key, p.d);
        if (st == MTL_ERR_OUT_OF_MEMORY)
            return st;
        if (st != MTL_OK)
            return mtli_error(MTL_ERR_UNSUPPORTED,
                              "optimizer key '%s' is %g in the checkpoint and %g here, and %g "
                              "cannot be set (create the optimizer without setting '%s')",
                              key, p.d, cur, p.d, key);
        st = mtl_optimizer_set_double(probe, key, cur);
        if (st == MTL_ERR_OUT_OF_MEMORY)
            return st;
        if (st != MTL_OK)
            continue; /* the current value cannot be set again: leave this key alone */
        MTLI_TRY(mtl_optimizer_set_double(target, key, p.d));
        (void)mtl_optimizer_set_double(target, key, cur);
    }
    return MTL_OK;
}

/* Set the stored hyper-parameters on a prepared optimizer. Strings first: only they can
 * still need memory (milestones); a failure puts the strings already changed back, and the
 * numbers have not been touched yet. */
static mtl_status commit_target_opt(mtl_optimizer *o, const mtli_rec *hyper)
{
    size_t pos = 0;
    mtli_prop p;
    char old_sched[32] = ""; /* set when the schedule was changed */
    while (mtli_rec_next(hyper, &pos, &p)) {
        if (p.type != MTLI_P_TEXT)
            continue;
        char key[MTLI_MAX_KEY + 1], val[1024];
        prop_key(&p, key);
        if (p.count >= sizeof val)
            return mtli_error(MTL_ERR_FORMAT, "optimizer key '%s': value too long", key);
        memcpy(val, p.data, (size_t)p.count);
        val[p.count] = '\0';
        const char *cur = mtli_optimizer_get_string(o, key);
        if (cur && strcmp(cur, val) == 0)
            continue;
        char prev[32] = "";
        if (cur && strcmp(key, "schedule") == 0)
            snprintf(prev, sizeof prev, "%s", cur);
        mtl_status st = mtl_optimizer_set_string(o, key, val);
        if (st != MTL_OK) {
            /* schedule names are static strings: putting one back needs no memory */
            if (old_sched[0])
                (void)mtl_optimizer_set_string(o, "schedule", old_sched);
            return st;
        }
        if (prev[0])
            memcpy(old_sched, prev, sizeof prev);
    }
    pos = 0;
    while (mtli_rec_next(hyper, &pos, &p)) {
        if (p.type != MTLI_P_REAL)
            continue;
        char key[MTLI_MAX_KEY + 1];
        prop_key(&p, key);
        double cur;
        if (mtl_optimizer_get_double(o, key, &cur) == MTL_OK && cur == p.d)
            continue;
        mtl_status st = mtl_optimizer_set_double(o, key, p.d);
        if (st != MTL_OK) /* checked and prepared: cannot happen */
            return mtli_error(MTL_ERR_INTERNAL, "optimizer key '%s' failed after its checks: %s",
                              key, mtl_last_error());
    }
    return MTL_OK;
}

static mtl_status check_opt_fit(const ck_opt *co, const mtl_model *m)
{
    if (co->nparams != m->nparams || co->nparts != 1 + m->nheads)
        return mtli_error(MTL_ERR_FORMAT,
                          "optimizer: %zu parameters in %d parts stored, the model has %zu in %d",
                          co->nparams, co->nparts, m->nparams, 1 + m->nheads);
    for (int i = 0; i < co->nparts; i++) {
        const ck_part *p = &co->parts[i];
        const mtli_stack *s = i == 0 ? &m->trunk.s : &m->heads[i - 1]->s;
        const char *name = i == 0 ? "trunk" : m->heads[i - 1]->name;
        if (strcmp(p->name, name) != 0 || p->offset != s->param_offset || p->count != s->nparams)
            return mtli_error(MTL_ERR_FORMAT, "optimizer part %d ('%s') does not match the model",
                              i, p->name);
    }
    return MTL_OK;
}

/* Everything but the hyper-parameters; cannot fail once the counts are checked. */
static mtl_status check_opt_buffers(const ck_opt *co, mtl_optimizer *o)
{
    if (mtli_optimizer_num_buffers(o) != co->nbuffers || mtli_optimizer_nparams(o) != co->nparams ||
        mtli_optimizer_num_parts(o) != co->nparts)
        return mtli_error(MTL_ERR_FORMAT,
                          "optimizer '%s': %d state buffers stored, the restored optimizer "
                          "keeps %d",
                          co->kind, co->nbuffers, mtli_optimizer_num_buffers(o));
    return MTL_OK;
}

static void commit_opt_state(const ck_opt *co, mtl_optimizer *o)
{
    for (int b = 0; b < co->nbuffers; b++)
        mtli_load_f32s(mtli_optimizer_buffer(o, b), co->buffers[b], co->nparams);
    *mtli_optimizer_step_ptr(o) = co->step;
    for (int i = 0; i < co->nparts; i++)
        *mtli_optimizer_part_scale_ptr(o, i) = co->parts[i].scale;
}

static mtl_status restore_opt(const ck_opt *co, mtl_model *m, mtl_optimizer **out)
{
    *out = NULL;
    MTLI_TRY(check_opt_fit(co, m));
    mtl_optimizer *o = NULL;
    mtl_status st = mtl_optimizer_create(&o, m, co->kind);
    if (st != MTL_OK) {
        if (st == MTL_ERR_OUT_OF_MEMORY)
            return st;
        return mtli_error(MTL_ERR_UNSUPPORTED, "optimizer kind '%s': %s", co->kind,
                          mtl_last_error());
    }
    st = apply_hyper(o, &co->hyper);
    if (st == MTL_OK)
        st = check_opt_buffers(co, o);
    if (st != MTL_OK) {
        mtl_optimizer_free(o);
        return st;
    }
    commit_opt_state(co, o);
    *out = o;
    return MTL_OK;
}

/* ---- weighting ---- */

static mtl_status check_weighting_fit(const ck_weighting *cw, const mtl_model *m)
{
    if (cw->ntasks != m->nheads)
        return mtli_error(MTL_ERR_FORMAT, "weighting: %d tasks stored for a model of %d heads",
                          cw->ntasks, m->nheads);
    if (cw->bound_params != 0 && cw->bound_params != m->trunk.s.nparams)
        return mtli_error(MTL_ERR_FORMAT,
                          "weighting: state bound to %zu shared parameters, the trunk has %zu",
                          cw->bound_params, m->trunk.s.nparams);
    return MTL_OK;
}

/* Set the stored keys on a fresh weighting (strings first: "mode" decides what the numbers
 * mean for some methods). */
static mtl_status apply_weighting_keys(mtl_weighting *w, const mtli_rec *hyper)
{
    for (int pass = 0; pass < 2; pass++) {
        size_t pos = 0;
        mtli_prop p;
        while (mtli_rec_next(hyper, &pos, &p)) {
            char key[MTLI_MAX_KEY + 1];
            prop_key(&p, key);
            if (p.type != MTLI_P_REAL && p.type != MTLI_P_TEXT)
                return mtli_error(MTL_ERR_FORMAT, "weighting key '%s' has the wrong type", key);
            if ((p.type == MTLI_P_TEXT) != (pass == 0))
                continue;
            mtl_status st;
            if (p.type == MTLI_P_TEXT) {
                char val[256];
                if (p.count >= sizeof val)
                    return mtli_error(MTL_ERR_FORMAT, "weighting key '%s': value too long", key);
                memcpy(val, p.data, (size_t)p.count);
                val[p.count] = '\0';
                const char *cur;
                if (mtl_weighting_get_string(w, key, &cur) == MTL_OK && strcmp(cur, val) == 0)
                    continue;
                st = mtl_weighting_set_string(w, key, val);
            } else {
                double cur;
                if (mtl_weighting_get_double(w, key, &cur) == MTL_OK && cur == p.d)
                    continue;
                st = mtl_weighting_set_double(w, key, p.d);
            }
            if (st == MTL_ERR_OUT_OF_MEMORY)
                return st;
            if (st != MTL_OK)
                return mtli_error(MTL_ERR_FORMAT, "weighting key '%s' does not apply: %s", key,
                                  mtl_last_error());
        }
    }
    return MTL_OK;
}

/* A new weighting holding exactly the stored state, bound to m's trunk as it was at save
 * time. Binding goes through the train step's own preparation (mtli_engine_prepare), which
 * also sizes m's per-task-gradient workspace; that workspace carries no state. */
static mtl_status restore_weighting(const ck_weighting *cw, mtl_model *m, mtl_weighting **out)
{
    *out = NULL;
    MTLI_TRY(check_weighting_fit(cw, m));
    mtl_weighting *w = NULL;
    mtl_status st = mtl_weighting_create(&w, cw->method, cw->ntasks);
    if (st != MTL_OK) {
        if (st == MTL_ERR_OUT_OF_MEMORY)
            return st;
        return mtli_error(MTL_ERR_UNSUPPORTED, "weighting method '%s': %s", cw->method,
                          mtl_last_error());
    }
    st = apply_weighting_keys(w, &cw->hyper);
    if (st == MTL_OK && cw->fixed) {
        if (strcmp(mtl_weighting_method(w), "fixed") != 0)
            st = mtli_error(MTL_ERR_FORMAT, "weighting '%s' has fixed weights", cw->method);
        else
            for (int t = 0; t < cw->ntasks; t++)
                w->fixed[t] = mtli_load_f64(cw->fixed + 8 * t);
    }
    if (st == MTL_OK && cw->bound_params) {
        unsigned needs = mtli_weighting_needs(w);
        st = mtli_engine_prepare(m, w, needs, (needs & MTLI_NEED_J) != 0);
        if (st == MTL_OK && w->P != cw->bound_params)
            st = mtli_error(MTL_ERR_FORMAT, "weighting '%s': its state was bound to %zu shared "
                                            "parameters but the method does not bind",
                            cw->method, cw->bound_params);
        if (st != MTL_OK && st != MTL_ERR_OUT_OF_MEMORY && st != MTL_ERR_FORMAT)
            st = mtli_error(MTL_ERR_FORMAT, "weighting '%s' cannot be bound to the model: %s",
                            cw->method, mtl_last_error());
    }
    if (st == MTL_OK && mtli_weighting_state_size(w) != cw->nstate)
        st = mtli_error(MTL_ERR_FORMAT,
                        "weighting '%s': %zu state values stored, the method keeps %zu",
                        cw->method, cw->nstate, mtli_weighting_state_size(w));
    if (st != MTL_OK) {
        mtl_weighting_free(w);
        return st;
    }
    double *dst = mtli_weighting_state(w);
    for (size_t i = 0; i < cw->nstate; i++)
        dst[i] = mtli_load_f64(cw->state + 8 * i);
    *out = w;
    return MTL_OK;
}

/* Give target the contents of src and src the old contents of target (no allocation, so a
 * restored weighting replaces a live one atomically). The handle has no pointers into
 * itself. */
static void swap_weighting(mtl_weighting *a, mtl_weighting *b)
{
    mtl_weighting t = *a;
    *a = *b;
    *b = t;
}

/* ==== the public calls ================================================================== */

static mtl_status fail(const char *path, mtl_status st)
{
    mtli_error_prefix("checkpoint '%s'", path);
    return st;
}

MTL_API mtl_status mtl_checkpoint_load(const char *path, mtl_model **model,
                                       mtl_optimizer **opt, mtl_weighting **w)
{
    MTLI_CHECK_NULL(model, "mtl_checkpoint_load");
    *model = NULL;
    if (opt)
        *opt = NULL;
    if (w)
        *w = NULL;
    MTLI_CHECK_NULL(path, "mtl_checkpoint_load");
    ck_file f;
    mtl_status st = read_checkpoint(path, "mtl_checkpoint_load", &f, opt != NULL, w != NULL);
    if (st == MTL_OK && opt && !f.optm.present)
        st = mtli_error(MTL_ERR_NOT_FOUND, "it holds no optimizer state (pass NULL for opt)");
    if (st == MTL_OK && w && !f.wght.present)
        st = mtli_error(MTL_ERR_NOT_FOUND, "it holds no weighting state (pass NULL for w)");
    mtl_model *m = NULL;
    mtl_optimizer *o = NULL;
    mtl_weighting *wt = NULL;
    if (st == MTL_OK)
        st = build_model(&f.arch, &f.par, &m);
    if (st == MTL_OK)
        st = check_params_fit(&f, m);
    if (st == MTL_OK) {
        commit_params(&f, m);
        if (opt)
            st = restore_opt(&f.opt, m, &o);
    }
    if (st == MTL_OK && w)
        st = restore_weighting(&f.w, m, &wt);
    file_clear(&f);
    if (st != MTL_OK) {
        mtl_weighting_free(wt);
        mtl_optimizer_free(o);
        mtl_model_free(m);
        return fail(path, st);
    }
    *model = m;
    if (opt)
        *opt = o;
    if (w)
        *w = wt;
    return MTL_OK;
}

MTL_API mtl_status mtl_checkpoint_load_into(const char *path, mtl_model *model,
                                            mtl_optimizer *opt, mtl_weighting *w)
{
    MTLI_CHECK_NULL(path, "mtl_checkpoint_load_into");
    MTLI_CHECK_NULL(model, "mtl_checkpoint_load_into");
    if (!model->built)
        return mtli_error(MTL_ERR_STATE, "mtl_checkpoint_load_into: the model is not built");
    if (opt && mtli_optimizer_model(opt) != model)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_checkpoint_load_into: the optimizer belongs to another model");
    if (w && mtl_weighting_num_tasks(w) != model->nheads)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_checkpoint_load_into: the weighting is for %d tasks, the model "
                          "has %d heads",
                          mtl_weighting_num_tasks(w), model->nheads);
    ck_file f;
    mtl_optimizer *tmp = NULL;
    mtl_status st = read_checkpoint(path, "mtl_checkpoint_load_into", &f, opt != NULL, w != NULL);
    if (st == MTL_OK && opt && !f.optm.present)
        st = mtli_error(MTL_ERR_NOT_FOUND, "it holds no optimizer state (pass NULL for opt)");
    if (st == MTL_OK && w && !f.wght.present)
        st = mtli_error(MTL_ERR_NOT_FOUND, "it holds no weighting state (pass NULL for w)");
    if (st == MTL_OK)
        st = diff_arch(&f.arch, model);
    if (st == MTL_OK)
        st = check_params_fit(&f, model);
    if (st == MTL_OK && opt) {
        if (strcmp(f.opt.kind, mtl_optimizer_kind(opt)) != 0)
            st = mtli_error(MTL_ERR_SHAPE, "the optimizer is %s in the checkpoint, %s here",
                            f.opt.kind, mtl_optimizer_kind(opt));
        /* a scratch optimizer proves the hyper-parameters apply before the target changes */
        if (st == MTL_OK)
            st = restore_opt(&f.opt, model, &tmp);
    }
    mtl_weighting *wtmp = NULL;
    if (st == MTL_OK && w) {
        if (strcmp(f.w.method, mtl_weighting_method(w)) != 0)
            st = mtli_error(MTL_ERR_SHAPE, "the weighting is %s in the checkpoint, %s here",
                            f.w.method, mtl_weighting_method(w));
        if (st == MTL_OK)
            st = restore_weighting(&f.w, model, &wtmp);
    }
    if (st == MTL_OK && opt)
        st = prepare_target_opt(opt, tmp, &f.opt.hyper);
    /* commit: only the optimizer's strings can still fail (memory), before anything else */
    if (st == MTL_OK && opt)
        st = commit_target_opt(opt, &f.opt.hyper);
    if (st == MTL_OK) {
        commit_params(&f, model);
        if (opt)
            commit_opt_state(&f.opt, opt);
        if (w)
            swap_weighting(w, wtmp);
    }
    mtl_weighting_free(wtmp);
    mtl_optimizer_free(tmp);
    file_clear(&f);
    if (st != MTL_OK)
        return fail(path, st);
    return MTL_OK;
}

/* ==== describe ========================================================================== */

typedef struct sbuf {
    char *buf;
    size_t cap, len;
} sbuf;

static void sb_printf(sbuf *s, const char *fmt, ...) MTLI_PRINTF(2, 3);
static void sb_printf(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = NULL;
    size_t room = 0;
    if (s->buf && s->len < s->cap) {
        dst = s->buf + s->len;
        room = s->cap - s->len;
    }
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        s->len += (size_t)n;
}

static void describe_layer(sbuf *s, const ck_layer *L, int i, int indent)
{
    mtli_layer_opts def;
    mtli_layer_opts_default(&def);
    sb_printf(s, "%*s%d %s", indent, "", i, L->ops->kind);
    for (size_t k = 0; k < NFIELDS; k++) {
        const opt_field *f = &g_fields[k];
        if (f->type == F_F64) {
            double v = field_real(&L->opts, f);
            if (v != field_real(&def, f))
                sb_printf(s, " %s=%g", f->name, v);
        } else {
            int64_t v = field_int(&L->opts, f);
            if (v != field_int(&def, f)) {
                if (f->type == F_INIT)
                    sb_printf(s, " %s=%s", f->name, init_name((mtli_init)v));
                else
                    sb_printf(s, " %s=%lld", f->name, (long long)v);
            }
        }
    }
    sb_printf(s, "\n");
}

static void describe(sbuf *s, const ck_file *f)
{
    const ck_arch *a = &f->arch;
    sb_printf(s, "libmtl checkpoint, format version %u, written by %s\n", f->version, f->writer);
    sb_printf(s, "input: %s [", a->dtype == MTL_INT32 ? "int32" : "float32");
    for (int i = 0; i < a->ndim; i++)
        sb_printf(s, "%s%lld", i ? ", " : "", (long long)a->shape[i]);
    sb_printf(s, "], max_batch %lld, seed %llu\n", (long long)a->max_batch,
              (unsigned long long)a->seed);
    sb_printf(s, "trunk: %d layers\n", a->stacks[0].nlayers);
    for (int i = 0; i < a->stacks[0].nlayers; i++)
        describe_layer(s, &a->stacks[0].layers[i], i, 2);
    sb_printf(s, "heads: %d\n", a->nheads);
    for (int h = 0; h < a->nheads; h++) {
        const ck_stack *cs = &a->stacks[1 + h];
        sb_printf(s, "  %s: %d layers, loss %s", cs->name, cs->nlayers,
                  mtli_loss_kind_name(cs->loss));
        if (cs->loss == MTLI_LOSS_CROSS_ENTROPY && cs->label_smoothing != 0.0)
            sb_printf(s, " label_smoothing=%g", cs->label_smoothing);
        if (cs->loss == MTLI_LOSS_HUBER)
            sb_printf(s, " delta=%g", cs->delta);
        if (cs->class_weights)
            sb_printf(s, " (%zu class weights)", cs->nclass_weights);
        sb_printf(s, "\n");
        for (int i = 0; i < cs->nlayers; i++)
            describe_layer(s, &cs->layers[i], i, 4);
    }
    if (a->l2_trunk != 0.0 || a->l2_heads != 0.0)
        sb_printf(s, "l2: trunk %g, heads %g\n", a->l2_trunk, a->l2_heads);
    sb_printf(s, "parameters: %zu trainable (%zu shared), %zu state, in %zu tensors\n",
              f->par.nparams, f->par.nshared, f->par.nstate, f->par.ntensors);
    if (f->optm.present) {
        const ck_opt *o = &f->opt;
        sb_printf(s, "optimizer: %s, step %lld\n ", o->kind, (long long)o->step);
        size_t pos = 0;
        mtli_prop p;
        while (mtli_rec_next(&o->hyper, &pos, &p)) {
            if (p.type == MTLI_P_REAL)
                sb_printf(s, " %.*s=%g", (int)p.klen, p.key, p.d);
            else if (p.type == MTLI_P_TEXT)
                sb_printf(s, " %.*s=\"%.*s\"", (int)p.klen, p.key, (int)p.count,
                          (const char *)p.data);
        }
        sb_printf(s, "\n");
        for (int i = 0; i < o->nparts; i++)
            if (o->parts[i].scale != 1.0)
                sb_printf(s, "  lr scale of %s: %g\n", o->parts[i].name, o->parts[i].scale);
    } else
        sb_printf(s, "optimizer: none\n");
    if (f->wght.present) {
        sb_printf(s, "weighting: %s, %d tasks, weights", f->w.method, f->w.ntasks);
        for (int t = 0; t < f->w.ntasks; t++)
            sb_printf(s, " %g", mtli_load_f64(f->w.weights + 8 * t));
        sb_printf(s, ", %zu state values\n ", f->w.nstate);
        size_t pos = 0;
        mtli_prop p;
        while (mtli_rec_next(&f->w.hyper, &pos, &p)) {
            if (p.type == MTLI_P_REAL)
                sb_printf(s, " %.*s=%g", (int)p.klen, p.key, p.d);
            else if (p.type == MTLI_P_TEXT)
                sb_printf(s, " %.*s=\"%.*s\"", (int)p.klen, p.key, (int)p.count,
                          (const char *)p.data);
        }
        sb_printf(s, "\n");
    } else
        sb_printf(s, "weighting: none\n");
}

MTL_API mtl_status mtl_checkpoint_describe(const char *path, char *buf, size_t cap,
                                           size_t *needed)
{
    if (needed)
        *needed = 0;
    MTLI_CHECK_NULL(path, "mtl_checkpoint_describe");
    if (!buf && cap > 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_checkpoint_describe: argument 'buf' is NULL with cap %zu", cap);
    ck_file f;
    mtl_status st = read_checkpoint(path, "mtl_checkpoint_describe", &f, true, true);
    if (st != MTL_OK) {
        file_clear(&f);
        return fail(path, st);
    }
    sbuf s = {buf, cap, 0};
    describe(&s, &f);
    file_clear(&f);
    if (needed)
        *needed = s.len + 1;
    if (cap > 0 && s.len >= cap)
        buf[cap - 1] = '\0';
    if (s.len >= cap)
        return mtli_error(MTL_ERR_RANGE,
                          "mtl_checkpoint_describe: the summary needs %zu bytes, the buffer has %zu",
                          s.len + 1, cap);
    return MTL_OK;
}
