/* safetensors export and import of a model's named tensors
 * (https://github.com/huggingface/safetensors): an 8-byte little-endian header size, a JSON
 * header naming each tensor's dtype, shape and byte range, then the data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/iofile.h"
#include "io/json.h"
#include "model/model_internal.h"
#include "mtl/io.h"

/* The reference implementation refuses larger headers. */
#define MAX_HEADER 100000000u

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = mtli_realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* A JSON string literal. */
static void sb_json_string(strbuf *b, const char *s)
{
    sb_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_add(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_add(b, esc, 6);
        } else
            sb_add(b, (const char *)p, 1);
    }
    sb_add(b, "\"", 1);
}

static int cmp_names(const void *a, const void *b)
{
    const mtli_named_param *x = *(const mtli_named_param *const *)a;
    const mtli_named_param *y = *(const mtli_named_param *const *)b;
    return strcmp(x->name, y->name);
}

/* The model's tensors sorted by name (the reference writer's order for one dtype). */
static mtl_status sorted_params(const mtl_model *m, const mtli_named_param ***out)
{
    const mtli_named_param **v = mtli_malloc((size_t)m->nnamed * sizeof *v);
    if (!v)
        return mtli_oom("tensor list", (size_t)m->nnamed * sizeof *v);
    for (int i = 0; i < m->nnamed; i++)
        v[i] = &m->named[i];
    qsort(v, (size_t)m->nnamed, sizeof *v, cmp_names);
    *out = v;
    return MTL_OK;
}

MTL_API mtl_status mtl_model_save_safetensors(const mtl_model *m, const char *path)
{
    MTLI_CHECK_NULL(m, "mtl_model_save_safetensors");
    MTLI_CHECK_NULL(path, "mtl_model_save_safetensors");
    if (!m->built)
        return mtli_error(MTL_ERR_STATE, "mtl_model_save_safetensors: the model is not built");
    const mtli_named_param **v = NULL;
    MTLI_TRY(sorted_params(m, &v));
    strbuf h = {0};
    char num[96];
    sb_str(&h, "{\"__metadata__\":{\"format\":\"pt\",\"producer\":");
    snprintf(num, sizeof num, "libmtl %s", mtl_version_string());
    sb_json_string(&h, num);
    sb_str(&h, "}");
    uint64_t off = 0;
    for (int i = 0; i < m->nnamed; i++) {
        const mtli_named_param *p = v[i];
        sb_str(&h, ",");
        sb_json_string(&h, p->name);
        sb_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < p->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)p->shape[d]);
            sb_str(&h, num);
        }
        uint64_t end = off + (uint64_t)p->count * 4;
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)end);
        sb_str(&h, num);
        off = end;
    }
    sb_str(&h, "}");
    while (!h.oom && h.len % 8 != 0) /* the data starts 8-byte aligned */
        sb_str(&h, " ");
    if (h.oom) {
        mtli_free(h.p);
        mtli_free(v);
        return mtli_oom("safetensors header", h.len);
    }
    mtli_atomic *a = mtli_malloc(sizeof *a);
    mtl_status st = a ? mtli_atomic_open(a, path, "mtl_model_save_safetensors")
                      : mtli_oom("file writer", sizeof *a);
    if (st == MTL_OK) {
        unsigned char n8[8];
        mtli_put_u64(n8, h.len);
        mtli_atomic_write(a, n8, 8);
        mtli_atomic_write(a, h.p, h.len);
        unsigned char buf[1024];
        for (int i = 0; i < m->nnamed; i++) {
            const float *x = v[i]->data;
            size_t k = 0;
            for (size_t j = 0; j < v[i]->count; j++) {
                uint32_t u;
                memcpy(&u, &x[j], 4);
                mtli_put_u32(buf + k, u);
                k += 4;
                if (k == sizeof buf) {
                    mtli_atomic_write(a, buf, k);
                    k = 0;
                }
            }
            mtli_atomic_write(a, buf, k);
        }
        st = mtli_atomic_commit(a);
    }
    mtli_free(a);
    mtli_free(h.p);
    mtli_free(v);
    return st;
}

/* ---- reading ------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    unsigned size;
} g_dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8},
};

typedef struct entry {
    const mtli_json_node *node;
    const mtli_named_param *param;
    uint64_t begin, end;
} entry;

static int cmp_begin(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end ? 1 : 0;
}

/* Check one tensor entry of the header against the file and the model. */
static mtl_status check_entry(const mtli_json *doc, const mtli_json_node *t, const mtl_model *m,
                              uint64_t data_len, entry *e)
{
    const char *name = t->key;
    if (t->type != MTLI_JSON_OBJECT)
        return mtli_error(MTL_ERR_FORMAT, "tensor '%s': the entry is not an object", name);
    for (const mtli_json_node *f = mtli_json_first(doc, t); f; f = mtli_json_next(doc, f))
        if (strcmp(f->key, "dtype") != 0 && strcmp(f->key, "shape") != 0 &&
            strcmp(f->key, "data_offsets") != 0)
            return mtli_error(MTL_ERR_FORMAT, "tensor '%s': unknown field '%s'", name, f->key);
    const mtli_json_node *dt = mtli_json_member(doc, t, "dtype");
    const mtli_json_node *sh = mtli_json_member(doc, t, "shape");
    const mtli_json_node *of = mtli_json_member(doc, t, "data_offsets");
    if (!dt || dt->type != MTLI_JSON_STRING || !sh || sh->type != MTLI_JSON_ARRAY || !of ||
        of->type != MTLI_JSON_ARRAY)
        return mtli_error(MTL_ERR_FORMAT,
                          "tensor '%s' needs \"dtype\" (a string), \"shape\" and "
                          "\"data_offsets\" (arrays)",
                          name);
    unsigned esize = 0;
    for (size_t i = 0; i < sizeof g_dtypes / sizeof g_dtypes[0]; i++)
        if (mtli_json_str_is(dt, g_dtypes[i].name))
            esize = g_dtypes[i].size;
    if (!esize)
        return mtli_error(MTL_ERR_FORMAT, "tensor '%s': unknown dtype '%s'", name, dt->str);
    /* element count and byte size, overflow-checked */
    uint64_t numel = 1, dims[8];
    int ndim = 0;
    for (const mtli_json_node *d = mtli_json_first(doc, sh); d; d = mtli_json_next(doc, d)) {
        uint64_t v;
        if (!mtli_json_u64(d, &v))
            return mtli_error(MTL_ERR_FORMAT,
                              "tensor '%s': shape entries must be non-negative integers", name);
        if (ndim < 8)
            dims[ndim] = v;
        ndim++;
        if (v != 0 && numel > UINT64_MAX / v)
            return mtli_error(MTL_ERR_FORMAT, "tensor '%s': the shape overflows", name);
        numel *= v;
    }
    uint64_t b0, b1;
    const mtli_json_node *o0 = mtli_json_first(doc, of);
    const mtli_json_node *o1 = o0 ? mtli_json_next(doc, o0) : NULL;
    if (of->count != 2 || !mtli_json_u64(o0, &b0) || !mtli_json_u64(o1, &b1))
        return mtli_error(MTL_ERR_FORMAT,
                          "tensor '%s': data_offsets must be two non-negative integers", name);
    if (b0 > b1 || b1 > data_len)
        return mtli_error(MTL_ERR_FORMAT,
                          "tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes",
                          name, (unsigned long long)b0, (unsigned long long)b1,
                          (unsigned long long)data_len);
    if (numel > UINT64_MAX / esize || b1 - b0 != numel * esize)
        return mtli_error(MTL_ERR_FORMAT,
                          "tensor '%s': %llu bytes for %llu elements of %s", name,
                          (unsigned long long)(b1 - b0), (unsigned long long)numel, dt->str);
    e->node = t;
    e->begin = b0;
    e->end = b1;
    /* against the model */
    const mtli_named_param *p = NULL;
    for (int i = 0; i < m->nnamed; i++)
        if (strcmp(m->named[i].name, name) == 0)
            p = &m->named[i];
    if (!p)
        return mtli_error(MTL_ERR_NOT_FOUND, "the model has no parameter '%s'", name);
    if (!mtli_json_str_is(dt, "F32"))
        return mtli_error(MTL_ERR_SHAPE, "tensor '%s' is %s, expected F32", name, dt->str);
    bool same = ndim == p->ndim;
    for (int d = 0; same && d < ndim; d++)
        same = dims[d] == (uint64_t)p->shape[d];
    if (!same) {
        char want[96], got[96];
        size_t k = 0;
        k += (size_t)snprintf(want + k, sizeof want - k, "[");
        for (int d = 0; d < p->ndim && k < sizeof want; d++)
            k += (size_t)snprintf(want + k, sizeof want - k, "%s%lld", d ? ", " : "",
                                  (long long)p->shape[d]);
        if (k < sizeof want)
            snprintf(want + k, sizeof want - k, "]");
        k = 0;
        k += (size_t)snprintf(got + k, sizeof got - k, "[");
        for (int d = 0; d < ndim && d < 8 && k < sizeof got; d++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%llu", d ? ", " : "",
                                  (unsigned long long)dims[d]);
        if (k < sizeof got)
            snprintf(got + k, sizeof got - k, "%s]", ndim > 8 ? ", ..." : "");
        return mtli_error(MTL_ERR_SHAPE, "tensor '%s' has shape %s, the model's is %s", name,
                          got, want);
    }
    e->param = p;
    return MTL_OK;
}

static mtl_status check_metadata(const mtli_json *doc, const mtli_json_node *md)
{
    if (md->type != MTLI_JSON_OBJECT)
        return mtli_error(MTL_ERR_FORMAT, "\"__metadata__\" must be an object");
    for (const mtli_json_node *f = mtli_json_first(doc, md); f; f = mtli_json_next(doc, f))
        if (f->type != MTLI_JSON_STRING)
            return mtli_error(MTL_ERR_FORMAT, "\"__metadata__\" value '%s' must be a string",
                              f->key);
    return MTL_OK;
}

static mtl_status load(mtl_model *m, const unsigned char *file, size_t size)
{
    if (size < 8)
        return mtli_error(MTL_ERR_FORMAT, "%zu bytes: too short for the header size", size);
    uint64_t hn = mtli_get_u64(file);
    if (hn > MAX_HEADER)
        return mtli_error(MTL_ERR_FORMAT, "header of %llu bytes (at most %u accepted)",
                          (unsigned long long)hn, MAX_HEADER);
    if (hn > size - 8)
        return mtli_error(MTL_ERR_FORMAT, "header of %llu bytes, only %zu follow", (unsigned long long)hn,
                          size - 8);
    const char *text = (const char *)file + 8;
    if (hn == 0 || text[0] != '{')
        return mtli_error(MTL_ERR_FORMAT, "the header does not start with '{'");
    mtli_json doc;
    MTLI_TRY(mtli_json_parse(&doc, text, (size_t)hn, "safetensors header"));
    const unsigned char *data = file + 8 + hn;
    uint64_t data_len = size - 8 - hn;
    const mtli_json_node *root = &doc.nodes[0];
    mtl_status st = MTL_OK;
    entry *ents = NULL;
    size_t ne = 0;
    if (root->type != MTLI_JSON_OBJECT)
        st = mtli_error(MTL_ERR_FORMAT, "the header is not a JSON object");
    if (st == MTL_OK) {
        ents = mtli_calloc(root->count ? root->count : 1, sizeof *ents);
        if (!ents)
            st = mtli_oom("tensor entries", root->count * sizeof *ents);
    }
    for (const mtli_json_node *t = st == MTL_OK ? mtli_json_first(&doc, root) : NULL;
         t && st == MTL_OK; t = mtli_json_next(&doc, t)) {
        if (strcmp(t->key, "__metadata__") == 0) {
            st = check_metadata(&doc, t);
            continue;
        }
        if (strlen(t->key) != t->klen)
            st = mtli_error(MTL_ERR_FORMAT, "a tensor name contains a NUL character");
        else
            st = check_entry(&doc, t, m, data_len, &ents[ne++]);
    }
    /* every model tensor present (names are unique in the header, so counting suffices) */
    if (st == MTL_OK && ne != (size_t)m->nnamed) {
        for (int i = 0; i < m->nnamed; i++) {
            size_t k = 0;
            while (k < ne && ents[k].param != &m->named[i])
                k++;
            if (k == ne) {
                st = mtli_error(MTL_ERR_NOT_FOUND, "the file has no tensor '%s'",
                                m->named[i].name);
                break;
            }
        }
    }
    /* the data is covered exactly: sorted by offset, contiguous from 0 to the end */
    if (st == MTL_OK) {
        qsort(ents, ne, sizeof *ents, cmp_begin);
        uint64_t at = 0;
        for (size_t i = 0; i < ne && st == MTL_OK; i++) {
            if (ents[i].begin != at)
                st = mtli_error(MTL_ERR_FORMAT,
                                "tensor '%s' starts at data byte %llu, expected %llu (tensors "
                                "must not overlap or leave gaps)",
                                ents[i].node->key, (unsigned long long)ents[i].begin,
                                (unsigned long long)at);
            at = ents[i].end;
        }
        if (st == MTL_OK && at != data_len)
            st = mtli_error(MTL_ERR_FORMAT,
                            "the tensors cover %llu data bytes, the file holds %llu",
                            (unsigned long long)at, (unsigned long long)data_len);
    }
    /* values */
    for (size_t i = 0; i < ne && st == MTL_OK; i++) {
        const unsigned char *src = data + ents[i].begin;
        for (size_t j = 0; j < ents[i].param->count; j++) {
            uint32_t u = mtli_get_u32(src + 4 * j);
            float f;
            memcpy(&f, &u, 4);
            if (!isfinite(f)) {
                st = mtli_error(MTL_ERR_FORMAT, "tensor '%s': element %zu is %g",
                                ents[i].node->key, j, (double)f);
                break;
            }
        }
    }
    /* commit */
    if (st == MTL_OK)
        for (size_t i = 0; i < ne; i++) {
            const unsigned char *src = data + ents[i].begin;
            float *dst = ents[i].param->data;
            for (size_t j = 0; j < ents[i].param->count; j++) {
                uint32_t u = mtli_get_u32(src + 4 * j);
                memcpy(&dst[j], &u, 4);
            }
        }
    mtli_free(ents);
    mtli_json_free(&doc);
    return st;
}

MTL_API mtl_status mtl_model_load_safetensors(mtl_model *m, const char *path)
{
    MTLI_CHECK_NULL(m, "mtl_model_load_safetensors");
    MTLI_CHECK_NULL(path, "mtl_model_load_safetensors");
    if (!m->built)
        return mtli_error(MTL_ERR_STATE, "mtl_model_load_safetensors: the model is not built");
    unsigned char *file;
    size_t size;
    MTLI_TRY(mtli_read_file(path, "mtl_model_load_safetensors", &file, &size));
    mtl_status st = load(m, file, size);
    mtli_free(file);
    if (st != MTL_OK)
        mtli_error_prefix("safetensors '%s'", path);
    return st;
}
