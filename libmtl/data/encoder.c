/* Encoders: per-column transforms fitted on one table and applied to others.
 *
 * File format (all integers little-endian):
 *   magic "\x89MTLENC\n" (8 bytes) · u32 version (1) · u32 entry count
 *   per entry: u32 kind (0 numeric, 1 onehot, 2 ids, 3 label) · u32 name length · name bytes
 *     numeric:      u32 standardize · f64 mean · f64 std (IEEE-754 bits)
 *     categorical:  u32 K · K × (u32 length · bytes), in id order
 *   u32 CRC-32 (IEEE) of every byte before it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor_internal.h"
#include "data/csv.h"
#include "data/fileio.h"

#define ENC_VERSION 1u
static const unsigned char enc_magic[8] = {0x89, 'M', 'T', 'L', 'E', 'N', 'C', '\n'};

typedef enum { E_NUMERIC = 0, E_ONEHOT = 1, E_IDS = 2, E_LABEL = 3 } ekind;

typedef struct {
    ekind kind;
    char *name;
    /* numeric */
    int standardize;
    double mean, std;
    /* categorical: cats[id] (pointers into catbuf), by_text: ids sorted by strcmp */
    int ncat;
    char **cats;
    char *catbuf;
    int *by_text;
} entry;

struct mtl_encoder {
    entry *e;
    int n, cap;
    int nfeat, nlabels, nids;
};

static void entry_clear(entry *e)
{
    mtli_free(e->name);
    mtli_free(e->cats);
    mtli_free(e->catbuf);
    mtli_free(e->by_text);
    memset(e, 0, sizeof *e);
}

MTL_API mtl_status mtl_encoder_create(mtl_encoder **out)
{
    MTLI_CHECK_NULL(out, "mtl_encoder_create");
    *out = mtli_calloc(1, sizeof **out);
    if (!*out)
        return mtli_oom("encoder", sizeof **out);
    return MTL_OK;
}

MTL_API void mtl_encoder_free(mtl_encoder *enc)
{
    if (!enc)
        return;
    for (int i = 0; i < enc->n; i++)
        entry_clear(&enc->e[i]);
    mtli_free(enc->e);
    mtli_free(enc);
}

static int width(const entry *e)
{
    return e->kind == E_NUMERIC ? 1 : e->kind == E_ONEHOT ? e->ncat : 0;
}

/* Append a complete entry (ownership moves to the encoder only on success). */
static mtl_status push(mtl_encoder *enc, entry *e)
{
    if (e->kind == E_ONEHOT && enc->nfeat > INT32_MAX - e->ncat)
        return mtli_error(MTL_ERR_RANGE, "encoder: too many feature columns");
    if (enc->n == enc->cap) {
        int nc = enc->cap ? enc->cap * 2 : 8;
        entry *ne = mtli_realloc(enc->e, (size_t)nc * sizeof *ne);
        if (!ne)
            return mtli_oom("encoder entries", (size_t)nc * sizeof *ne);
        enc->e = ne;
        enc->cap = nc;
    }
    enc->e[enc->n++] = *e;
    enc->nfeat += width(e);
    enc->nlabels += e->kind == E_LABEL;
    enc->nids += e->kind == E_IDS;
    memset(e, 0, sizeof *e);
    return MTL_OK;
}

/* ---- categories -------------------------------------------------------------------------- */

typedef struct {
    const char *s;
    double v;
} catval;

static int cmp_text(const void *a, const void *b)
{
    return strcmp(((const catval *)a)->s, ((const catval *)b)->s);
}

static int cmp_num(const void *a, const void *b)
{
    const catval *x = a, *y = b;
    if (x->v < y->v)
        return -1;
    if (x->v > y->v)
        return 1;
    return strcmp(x->s, y->s);
}

/* Build e->by_text from e->cats; fails with FORMAT on a duplicate (only possible in files). */
static mtl_status index_cats(entry *e, const char *fn)
{
    e->by_text = mtli_malloc((size_t)e->ncat * sizeof *e->by_text);
    if (!e->by_text)
        return mtli_oom("encoder category index", (size_t)e->ncat * sizeof *e->by_text);
    for (int k = 0; k < e->ncat; k++)
        e->by_text[k] = k;
    /* lists fitted in text order are already sorted; others (numeric order, files) are
     * sorted with a shell sort, which needs no comparison context */
    int sorted = 1;
    for (int k = 1; k < e->ncat && sorted; k++)
        sorted = strcmp(e->cats[k - 1], e->cats[k]) < 0;
    if (!sorted) {
        for (int gap = e->ncat / 2; gap > 0; gap /= 2)
            for (int i = gap; i < e->ncat; i++) {
                int v = e->by_text[i], j = i;
                while (j >= gap && strcmp(e->cats[e->by_text[j - gap]], e->cats[v]) > 0) {
                    e->by_text[j] = e->by_text[j - gap];
                    j -= gap;
                }
                e->by_text[j] = v;
            }
    }
    for (int k = 1; k < e->ncat; k++)
        if (strcmp(e->cats[e->by_text[k - 1]], e->cats[e->by_text[k]]) == 0)
            return mtli_error(MTL_ERR_FORMAT, "%s: column '%s': category '%s' appears twice", fn,
                              e->name, e->cats[e->by_text[k]]);
    return MTL_OK;
}

/* The id of category s, or -1. */
static int lookup(const entry *e, const char *s)
{
    int lo = 0, hi = e->ncat - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(e->cats[e->by_text[mid]], s);
        if (c == 0)
            return e->by_text[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static mtl_status fit_categories(entry *e, const mtl_csv *t, int col, const char *fn)
{
    size_t n = 0;
    catval *v = mtli_malloc((size_t)(t->rows ? t->rows : 1) * sizeof *v);
    if (!v)
        return mtli_oom("encoder categories", (size_t)t->rows * sizeof *v);
    int numeric_order = 1;
    for (int64_t r = 0; r < t->rows; r++) {
        const char *s = mtli_csv_text(t, r, col);
        if (!s)
            continue;
        double x = t->num[(size_t)r * (size_t)t->cols + (size_t)col];
        if (isnan(x))
            numeric_order = 0;
        v[n].s = s;
        v[n].v = x;
        n++;
    }
    if (n == 0) {
        mtli_free(v);
        return mtli_error(MTL_ERR_FORMAT, "%s: column '%s' of '%s' has no non-missing value", fn,
                          t->names[col], t->path);
    }
    qsort(v, n, sizeof *v, numeric_order ? cmp_num : cmp_text);
    size_t k = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(v[i].s, v[k - 1].s) == 0)
            continue;
        v[k++] = v[i];
        bytes += strlen(v[i].s) + 1;
    }
    if (k > (size_t)INT32_MAX - 1) {
        mtli_free(v);
        return mtli_error(MTL_ERR_RANGE, "%s: column '%s' has too many categories", fn,
                          t->names[col]);
    }
    e->ncat = (int)k;
    e->cats = mtli_malloc(k * sizeof *e->cats);
    e->catbuf = mtli_malloc(bytes);
    if (!e->cats || !e->catbuf) {
        mtli_free(v);
        return mtli_oom("encoder categories", bytes);
    }
    char *p = e->catbuf;
    for (size_t i = 0; i < k; i++) {
        size_t len = strlen(v[i].s) + 1;
        memcpy(p, v[i].s, len);
        e->cats[i] = p;
        p += len;
    }
    mtli_free(v);
    return index_cats(e, fn);
}

/* ---- fitting ----------------------------------------------------------------------------- */

static mtl_status add(mtl_encoder *enc, const mtl_csv *t, const char *name, ekind kind,
                      int standardize, const char *fn)
{
    MTLI_CHECK_NULL(enc, fn);
    MTLI_CHECK_NULL(t, fn);
    MTLI_CHECK_NULL(name, fn);
    int col = mtli_csv_find(t, name);
    if (col < 0)
        return mtli_error(MTL_ERR_NOT_FOUND, "%s: '%s' has no column named '%s'", fn, t->path,
                          name);
    entry e;
    memset(&e, 0, sizeof e);
    e.kind = kind;
    mtl_status st = MTL_OK;
    e.name = mtli_strdup(name);
    if (!e.name)
        st = mtli_oom("encoder column name", strlen(name) + 1);
    if (st == MTL_OK && kind == E_NUMERIC) {
        st = mtli_csv_require_numeric(t, col, fn);
        if (st == MTL_OK)
            st = mtli_csv_column_stats(t, col, &e.mean, &e.std, fn);
        e.standardize = standardize != 0;
    } else if (st == MTL_OK) {
        st = fit_categories(&e, t, col, fn);
    }
    if (st == MTL_OK)
        st = push(enc, &e);
    entry_clear(&e);
    return st;
}

MTL_API mtl_status mtl_encoder_add_numeric(mtl_encoder *enc, const mtl_csv *table,
                                           const char *name, int standardize)
{
    return add(enc, table, name, E_NUMERIC, standardize, "mtl_encoder_add_numeric");
}

MTL_API mtl_status mtl_encoder_add_onehot(mtl_encoder *enc, const mtl_csv *table,
                                          const char *name)
{
    return add(enc, table, name, E_ONEHOT, 0, "mtl_encoder_add_onehot");
}

MTL_API mtl_status mtl_encoder_add_ids(mtl_encoder *enc, const mtl_csv *table, const char *name)
{
    return add(enc, table, name, E_IDS, 0, "mtl_encoder_add_ids");
}

MTL_API mtl_status mtl_encoder_add_label(mtl_encoder *enc, const mtl_csv *table,
                                         const char *name)
{
    return add(enc, table, name, E_LABEL, 0, "mtl_encoder_add_label");
}

/* ---- queries ----------------------------------------------------------------------------- */

MTL_API int mtl_encoder_num_features(const mtl_encoder *enc) { return enc ? enc->nfeat : 0; }
MTL_API int mtl_encoder_num_labels(const mtl_encoder *enc) { return enc ? enc->nlabels : 0; }
MTL_API int mtl_encoder_num_id_columns(const mtl_encoder *enc) { return enc ? enc->nids : 0; }

/* The index-th entry of a kind, or NULL with the error set. */
static const entry *nth(const mtl_encoder *enc, ekind kind, int index, const char *fn)
{
    if (!enc) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: argument 'enc' is NULL", fn);
        return NULL;
    }
    int seen = 0;
    for (int i = 0; i < enc->n; i++)
        if (enc->e[i].kind == kind && seen++ == index)
            return &enc->e[i];
    mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: %s index %d out of range (the encoder has %d)", fn,
               kind == E_LABEL ? "label" : "id column", index,
               kind == E_LABEL ? enc->nlabels : enc->nids);
    return NULL;
}

MTL_API int mtl_encoder_num_classes(const mtl_encoder *enc, int label_index)
{
    const entry *e = nth(enc, E_LABEL, label_index, "mtl_encoder_num_classes");
    return e ? e->ncat : 0;
}

MTL_API const char *mtl_encoder_class_name(const mtl_encoder *enc, int label_index, int k)
{
    const entry *e = nth(enc, E_LABEL, label_index, "mtl_encoder_class_name");
    if (!e)
        return NULL;
    if (k < 0 || k >= e->ncat) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT,
                   "mtl_encoder_class_name: class %d out of range (label '%s' has %d)", k,
                   e->name, e->ncat);
        return NULL;
    }
    return e->cats[k];
}

MTL_API int mtl_encoder_num_ids(const mtl_encoder *enc, int ids_index)
{
    const entry *e = nth(enc, E_IDS, ids_index, "mtl_encoder_num_ids");
    return e ? e->ncat + 1 : 0;
}

/* ---- transforming ------------------------------------------------------------------------ */

static mtl_status column_of(int *col, const entry *e, const mtl_csv *t, const char *fn)
{
    *col = mtli_csv_find(t, e->name);
    if (*col < 0)
        return mtli_error(MTL_ERR_NOT_FOUND, "%s: '%s' has no column named '%s'", fn, t->path,
                          e->name);
    return MTL_OK;
}

MTL_API mtl_status mtl_encoder_transform(mtl_tensor **out, const mtl_encoder *enc,
                                         const mtl_csv *t)
{
    static const char *fn = "mtl_encoder_transform";
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    MTLI_CHECK_NULL(enc, fn);
    MTLI_CHECK_NULL(t, fn);
    if (enc->nfeat == 0)
        return mtli_error(MTL_ERR_STATE, "%s: the encoder has no numeric or one-hot column", fn);
    if (t->rows == 0)
        return mtli_error(MTL_ERR_SHAPE, "%s: '%s' has no rows", fn, t->path);
    /* check every column before allocating */
    for (int i = 0; i < enc->n; i++) {
        const entry *e = &enc->e[i];
        if (e->kind != E_NUMERIC && e->kind != E_ONEHOT)
            continue;
        int col;
        MTLI_TRY(column_of(&col, e, t, fn));
        if (e->kind == E_NUMERIC) {
            MTLI_TRY(mtli_csv_require_numeric(t, col, fn));
            if (t->has_inf[col])
                return mtli_error(MTL_ERR_NUMERIC, "%s: column '%s' of '%s' holds an infinite "
                                                   "value", fn, e->name, t->path);
        }
    }
    int64_t shape[2] = {t->rows, enc->nfeat};
    mtl_tensor *o;
    MTLI_TRY(mtl_tensor_create(&o, MTL_FLOAT32, 2, shape)); /* zero-filled */
    float *d = o->data;
    size_t F = (size_t)enc->nfeat, off = 0;
    for (int i = 0; i < enc->n; i++) {
        const entry *e = &enc->e[i];
        if (e->kind != E_NUMERIC && e->kind != E_ONEHOT)
            continue;
        int col = mtli_csv_find(t, e->name);
        if (e->kind == E_NUMERIC) {
            double sd = e->std == 0.0 ? 1.0 : e->std;
            for (int64_t r = 0; r < t->rows; r++) {
                double x = t->num[(size_t)r * (size_t)t->cols + (size_t)col];
                if (isnan(x))
                    x = e->mean;
                d[(size_t)r * F + off] = (float)(e->standardize ? (x - e->mean) / sd : x);
            }
        } else {
            for (int64_t r = 0; r < t->rows; r++) {
                const char *s = mtli_csv_text(t, r, col);
                int id = s ? lookup(e, s) : -1;
                if (id >= 0)
                    d[(size_t)r * F + off + (size_t)id] = 1.0f;
            }
        }
        off += (size_t)width(e);
    }
    *out = o;
    return MTL_OK;
}

static mtl_status transform_ints(mtl_tensor **out, const mtl_encoder *enc, const mtl_csv *t,
                                 ekind kind, int index, const char *fn)
{
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    MTLI_CHECK_NULL(enc, fn);
    MTLI_CHECK_NULL(t, fn);
    const entry *e = nth(enc, kind, index, fn);
    if (!e)
        return MTL_ERR_INVALID_ARGUMENT;
    int col;
    MTLI_TRY(column_of(&col, e, t, fn));
    if (t->rows == 0)
        return mtli_error(MTL_ERR_SHAPE, "%s: '%s' has no rows", fn, t->path);
    int64_t shape[1] = {t->rows};
    mtl_tensor *o;
    MTLI_TRY(mtl_tensor_create(&o, MTL_INT32, 1, shape));
    int32_t *d = o->data;
    for (int64_t r = 0; r < t->rows; r++) {
        const char *s = mtli_csv_text(t, r, col);
        int id = s ? lookup(e, s) : -1;
        if (kind == E_IDS) {
            d[r] = id + 1; /* 0: missing or unseen */
        } else if (!s) {
            d[r] = -1;
        } else if (id < 0) {
            mtl_tensor_free(o);
            return mtli_error(MTL_ERR_NOT_FOUND,
                              "%s: label '%s': line %lld of '%s' has class \"%.60s\", not seen "
                              "when fitting (%d classes)",
                              fn, e->name, (long long)t->line[r], t->path, s, e->ncat);
        } else {
            d[r] = id;
        }
    }
    *out = o;
    return MTL_OK;
}

MTL_API mtl_status mtl_encoder_transform_label(mtl_tensor **out, const mtl_encoder *enc,
                                               const mtl_csv *table, int label_index)
{
    return transform_ints(out, enc, table, E_LABEL, label_index, "mtl_encoder_transform_label");
}

MTL_API mtl_status mtl_encoder_transform_ids(mtl_tensor **out, const mtl_encoder *enc,
                                             const mtl_csv *table, int ids_index)
{
    return transform_ints(out, enc, table, E_IDS, ids_index, "mtl_encoder_transform_ids");
}

/* ---- saving and loading ------------------------------------------------------------------ */

typedef struct {
    unsigned char *p;
    size_t n;
} wbuf;

static void put32(wbuf *b, uint32_t v)
{
    if (b->p)
        mtli_le_put32(b->p + b->n, v);
    b->n += 4;
}

static void put64(wbuf *b, uint64_t v)
{
    if (b->p)
        mtli_le_put64(b->p + b->n, v);
    b->n += 8;
}

static void put_bytes(wbuf *b, const void *s, size_t len)
{
    if (b->p)
        memcpy(b->p + b->n, s, len);
    b->n += len;
}

static void put_str(wbuf *b, const char *s)
{
    size_t len = strlen(s);
    put32(b, (uint32_t)len);
    put_bytes(b, s, len);
}

/* Serialize into b (b->p NULL: only count the bytes). */
static void serialize(wbuf *b, const mtl_encoder *enc)
{
    put_bytes(b, enc_magic, sizeof enc_magic);
    put32(b, ENC_VERSION);
    put32(b, (uint32_t)enc->n);
    for (int i = 0; i < enc->n; i++) {
        const entry *e = &enc->e[i];
        put32(b, (uint32_t)e->kind);
        put_str(b, e->name);
        if (e->kind == E_NUMERIC) {
            uint64_t m, s;
            memcpy(&m, &e->mean, 8);
            memcpy(&s, &e->std, 8);
            put32(b, (uint32_t)e->standardize);
            put64(b, m);
            put64(b, s);
        } else {
            put32(b, (uint32_t)e->ncat);
            for (int k = 0; k < e->ncat; k++)
                put_str(b, e->cats[k]);
        }
    }
}

MTL_API mtl_status mtl_encoder_save(const mtl_encoder *enc, const char *path)
{
    static const char *fn = "mtl_encoder_save";
    MTLI_CHECK_NULL(enc, fn);
    MTLI_CHECK_NULL(path, fn);
    wbuf b = {NULL, 0};
    serialize(&b, enc);
    size_t total = b.n + 4;
    b.p = mtli_malloc(total);
    if (!b.p)
        return mtli_oom("encoder file", total);
    b.n = 0;
    serialize(&b, enc);
    put32(&b, mtli_data_crc32(0, b.p, b.n));
    mtli_data_writer w;
    mtl_status st = mtli_data_writer_open(&w, path, fn);
    if (st == MTL_OK) {
        st = mtli_data_writer_write(&w, b.p, b.n);
        if (st == MTL_OK)
            st = mtli_data_writer_commit(&w);
        else
            mtli_data_writer_abort(&w);
    }
    mtli_free(b.p);
    return st;
}

typedef struct {
    const unsigned char *p, *end;
    const char *path;
} rbuf;

#define LOADFN "mtl_encoder_load"

static mtl_status truncated(const rbuf *r)
{
    return mtli_error(MTL_ERR_FORMAT, LOADFN ": '%s': truncated or malformed encoder file",
                      r->path);
}

static mtl_status get32(rbuf *r, uint32_t *v)
{
    if ((size_t)(r->end - r->p) < 4)
        return truncated(r);
    *v = mtli_le_get32(r->p);
    r->p += 4;
    return MTL_OK;
}

/* A length-prefixed string without NUL bytes; *s points into the buffer. */
static mtl_status get_str(rbuf *r, const unsigned char **s, size_t *len)
{
    uint32_t n;
    MTLI_TRY(get32(r, &n));
    if ((size_t)(r->end - r->p) < n)
        return truncated(r);
    *s = r->p;
    *len = n;
    r->p += n;
    if (memchr(*s, '\0', n))
        return mtli_error(MTL_ERR_FORMAT, LOADFN ": '%s': a name holds a NUL byte", r->path);
    return MTL_OK;
}

static mtl_status read_entry(entry *e, rbuf *r)
{
    uint32_t kind;
    MTLI_TRY(get32(r, &kind));
    if (kind > E_LABEL)
        return mtli_error(MTL_ERR_FORMAT, LOADFN ": '%s': unknown transform kind %u", r->path,
                          kind);
    e->kind = (ekind)kind;
    const unsigned char *s;
    size_t len;
    MTLI_TRY(get_str(r, &s, &len));
    e->name = mtli_malloc(len + 1);
    if (!e->name)
        return mtli_oom("encoder column name", len + 1);
    memcpy(e->name, s, len);
    e->name[len] = '\0';
    if (e->kind == E_NUMERIC) {
        uint32_t stdz;
        MTLI_TRY(get32(r, &stdz));
        if ((size_t)(r->end - r->p) < 16)
            return truncated(r);
        uint64_t m = mtli_le_get64(r->p), sd = mtli_le_get64(r->p + 8);
        r->p += 16;
        memcpy(&e->mean, &m, 8);
        memcpy(&e->std, &sd, 8);
        if (stdz > 1 || !isfinite(e->mean) || !isfinite(e->std) || e->std < 0)
            return mtli_error(MTL_ERR_FORMAT, LOADFN ": '%s': column '%s': bad numeric statistics",
                              r->path, e->name);
        e->standardize = (int)stdz;
        return MTL_OK;
    }
    uint32_t k;
    MTLI_TRY(get32(r, &k));
    /* each category takes at least its 4-byte length */
    if (k == 0 || k > (size_t)(r->end - r->p) / 4 || k > (uint32_t)INT32_MAX - 1)
        return mtli_error(MTL_ERR_FORMAT, LOADFN ": '%s': column '%s': bad category count %u",
                          r->path, e->name, k);
    /* measure, then copy */
    rbuf probe = *r;
    size_t bytes = 0;
    for (uint32_t i = 0; i < k; i++) {
        MTLI_TRY(get_str(&probe, &s, &len));
        bytes += len + 1;
    }
    e->ncat = (int)k;
    e->cats = mtli_malloc((size_t)k * sizeof *e->cats);
    e->catbuf = mtli_malloc(bytes);
    if (!e->cats || !e->catbuf)
        return mtli_oom("encoder categories", bytes);
    char *p = e->catbuf;
    for (uint32_t i = 0; i < k; i++) {
        MTLI_TRY(get_str(r, &s, &len));
        memcpy(p, s, len);
        p[len] = '\0';
        e->cats[i] = p;
        p += len + 1;
    }
    return index_cats(e, LOADFN);
}

MTL_API mtl_status mtl_encoder_load(mtl_encoder **out, const char *path)
{
    MTLI_CHECK_NULL(out, LOADFN);
    *out = NULL;
    MTLI_CHECK_NULL(path, LOADFN);
    char *data;
    size_t n;
    MTLI_TRY(mtli_data_read_file(&data, &n, path, LOADFN));
    const unsigned char *u = (const unsigned char *)data;
    mtl_status st = MTL_OK;
    mtl_encoder *enc = NULL;
    if (n < sizeof enc_magic || memcmp(u, enc_magic, sizeof enc_magic) != 0) {
        st = mtli_error(MTL_ERR_FORMAT, LOADFN ": '%s': not an encoder file (bad magic)", path);
        goto done;
    }
    if (n < sizeof enc_magic + 12) {
        st = mtli_error(MTL_ERR_FORMAT, LOADFN ": '%s': truncated (%zu bytes)", path, n);
        goto done;
    }
    uint32_t version = mtli_le_get32(u + 8);
    if (version == 0 || version > ENC_VERSION) {
        st = mtli_error(version ? MTL_ERR_UNSUPPORTED : MTL_ERR_FORMAT,
                        LOADFN ": '%s': encoder format version %u (this library reads 1..%u)",
                        path, version, ENC_VERSION);
        goto done;
    }
    uint32_t want = mtli_le_get32(u + n - 4), got = mtli_data_crc32(0, u, n - 4);
    if (want != got) {
        st = mtli_error(MTL_ERR_FORMAT,
                        LOADFN ": '%s': checksum mismatch (stored %08x, computed %08x): the file "
                               "is corrupted",
                        path, want, got);
        goto done;
    }
    rbuf r = {u + 12, u + n - 4, path};
    uint32_t count;
    st = get32(&r, &count);
    if (st == MTL_OK && count > (size_t)(r.end - r.p) / 8)
        st = mtli_error(MTL_ERR_FORMAT, LOADFN ": '%s': bad entry count %u", path, count);
    if (st == MTL_OK)
        st = mtl_encoder_create(&enc);
    for (uint32_t i = 0; st == MTL_OK && i < count; i++) {
        entry e;
        memset(&e, 0, sizeof e);
        st = read_entry(&e, &r);
        if (st == MTL_OK)
            st = push(enc, &e);
        entry_clear(&e);
    }
    if (st == MTL_OK && r.p != r.end)
        st = mtli_error(MTL_ERR_FORMAT, LOADFN ": '%s': %zu unexpected bytes after the entries",
                        path, (size_t)(r.end - r.p));
done:
    mtli_free(data);
    if (st != MTL_OK) {
        mtl_encoder_free(enc);
        return st;
    }
    *out = enc;
    return MTL_OK;
}
