/* Encoder and record reader of the checkpoint format. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "io/ckcodec.h"

/* ---- encoding ------------------------------------------------------------------------- */

void mtli_enc_raw(mtli_enc *e, const void *p, size_t n)
{
    if (e->out && n) {
        mtli_atomic_write(e->out, p, n);
        e->crc = mtli_crc32(e->crc, p, n);
        e->fcrc = mtli_crc32(e->fcrc, p, n);
    }
    e->n += n;
}

void mtli_enc_u32(mtli_enc *e, uint32_t v)
{
    unsigned char b[4];
    mtli_put_u32(b, v);
    mtli_enc_raw(e, b, 4);
}

void mtli_enc_u64(mtli_enc *e, uint64_t v)
{
    unsigned char b[8];
    mtli_put_u64(b, v);
    mtli_enc_raw(e, b, 8);
}

static void enc_key(mtli_enc *e, int type, const char *key)
{
    unsigned char t = (unsigned char)type;
    mtli_enc_raw(e, &t, 1);
    size_t n = strlen(key);
    mtli_enc_u32(e, (uint32_t)n);
    mtli_enc_raw(e, key, n);
}

void mtli_enc_end(mtli_enc *e)
{
    unsigned char t = MTLI_P_END;
    mtli_enc_raw(e, &t, 1);
}

void mtli_enc_int(mtli_enc *e, const char *key, int64_t v)
{
    enc_key(e, MTLI_P_INT, key);
    mtli_enc_u64(e, (uint64_t)v);
}

static uint64_t f64_bits(double v)
{
    uint64_t b;
    memcpy(&b, &v, 8);
    return b;
}

void mtli_enc_real(mtli_enc *e, const char *key, double v)
{
    enc_key(e, MTLI_P_REAL, key);
    mtli_enc_u64(e, f64_bits(v));
}

void mtli_enc_text(mtli_enc *e, const char *key, const char *v)
{
    enc_key(e, MTLI_P_TEXT, key);
    size_t n = strlen(v);
    mtli_enc_u32(e, (uint32_t)n);
    mtli_enc_raw(e, v, n);
}

void mtli_enc_f32s(mtli_enc *e, const char *key, const float *v, size_t n)
{
    enc_key(e, MTLI_P_F32S, key);
    mtli_enc_u64(e, (uint64_t)n);
    if (!e->out) {
        e->n += (uint64_t)n * 4;
        return;
    }
    unsigned char b[1024];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        mtli_put_u32(b + k, u);
        k += 4;
        if (k == sizeof b) {
            mtli_enc_raw(e, b, k);
            k = 0;
        }
    }
    mtli_enc_raw(e, b, k);
}

void mtli_enc_f64s(mtli_enc *e, const char *key, const double *v, size_t n)
{
    enc_key(e, MTLI_P_F64S, key);
    mtli_enc_u64(e, (uint64_t)n);
    for (size_t i = 0; i < n; i++)
        mtli_enc_u64(e, f64_bits(v[i]));
}

void mtli_enc_u64s(mtli_enc *e, const char *key, const uint64_t *v, size_t n)
{
    enc_key(e, MTLI_P_U64S, key);
    mtli_enc_u64(e, (uint64_t)n);
    for (size_t i = 0; i < n; i++)
        mtli_enc_u64(e, v[i]);
}

/* ---- decoding ------------------------------------------------------------------------- */

float mtli_load_f32(const unsigned char *p)
{
    uint32_t u = mtli_get_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

double mtli_load_f64(const unsigned char *p)
{
    uint64_t u = mtli_get_u64(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

void mtli_load_f32s(float *dst, const unsigned char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = mtli_load_f32(src + 4 * i);
}

static size_t elem_size(int type)
{
    switch (type) {
    case MTLI_P_F32S:
        return 4;
    case MTLI_P_F64S:
    case MTLI_P_U64S:
        return 8;
    default:
        return 0;
    }
}

static const char *type_name(int type)
{
    switch (type) {
    case MTLI_P_INT:
        return "integer";
    case MTLI_P_REAL:
        return "real";
    case MTLI_P_TEXT:
        return "text";
    case MTLI_P_F32S:
        return "float32 array";
    case MTLI_P_F64S:
        return "float64 array";
    case MTLI_P_U64S:
        return "u64 array";
    default:
        return "unknown";
    }
}

/* Parse one property at p[0..n) (validated by mtli_dec_record); returns its size. */
static size_t parse_prop(const unsigned char *p, size_t n, mtli_prop *out, const char **err)
{
    *err = NULL;
    if (n < 5) {
        *err = "truncated property";
        return 0;
    }
    int type = p[0];
    size_t klen = mtli_get_u32(p + 1);
    if (klen == 0 || klen > MTLI_MAX_KEY) {
        *err = "bad key length";
        return 0;
    }
    size_t pos = 5;
    if (n - pos < klen) {
        *err = "truncated key";
        return 0;
    }
    for (size_t i = 0; i < klen; i++)
        if (p[pos + i] < 0x21 || p[pos + i] > 0x7e) {
            *err = "key with a character outside printable ASCII";
            return 0;
        }
    out->key = (const char *)p + pos;
    out->klen = klen;
    out->type = type;
    out->data = NULL;
    out->count = 0;
    out->i = 0;
    out->d = 0;
    pos += klen;
    size_t rem = n - pos;
    switch (type) {
    case MTLI_P_INT:
    case MTLI_P_REAL:
        if (rem < 8) {
            *err = "truncated value";
            return 0;
        }
        if (type == MTLI_P_INT)
            out->i = (int64_t)mtli_get_u64(p + pos);
        else
            out->d = mtli_load_f64(p + pos);
        return pos + 8;
    case MTLI_P_TEXT: {
        if (rem < 4) {
            *err = "truncated text length";
            return 0;
        }
        size_t len = mtli_get_u32(p + pos);
        if (len > MTLI_MAX_TEXT || rem - 4 < len) {
            *err = "text longer than its record";
            return 0;
        }
        if (memchr(p + pos + 4, 0, len)) {
            *err = "text with a NUL byte";
            return 0;
        }
        out->data = p + pos + 4;
        out->count = len;
        return pos + 4 + len;
    }
    case MTLI_P_F32S:
    case MTLI_P_F64S:
    case MTLI_P_U64S: {
        if (rem < 8) {
            *err = "truncated array length";
            return 0;
        }
        uint64_t cnt = mtli_get_u64(p + pos);
        size_t es = elem_size(type);
        if (cnt > (uint64_t)((rem - 8) / es)) {
            *err = "array longer than its record";
            return 0;
        }
        out->data = p + pos + 8;
        out->count = cnt;
        return pos + 8 + (size_t)cnt * es;
    }
    default:
        *err = "unknown property type";
        return 0;
    }
}

mtl_status mtli_dec_record(mtli_dec *d, mtli_rec *r, const char *what)
{
    size_t start = d->pos;
    const unsigned char *base = d->p + start;
    size_t avail = d->n - start;
    size_t pos = 0;
    r->what = what;
    for (int k = 0;; k++) {
        if (pos >= avail)
            return mtli_error(MTL_ERR_FORMAT,
                              "section %s: record '%s' at payload offset %zu is truncated "
                              "(no end marker)",
                              d->section, what, start);
        if (base[pos] == MTLI_P_END)
            break;
        mtli_prop p;
        const char *err;
        size_t sz = parse_prop(base + pos, avail - pos, &p, &err);
        if (sz == 0)
            return mtli_error(MTL_ERR_FORMAT, "section %s: record '%s', property %d: %s",
                              d->section, what, k, err);
        /* keys are unique within a record */
        mtli_rec sofar = {base, pos, what};
        size_t it = 0;
        mtli_prop q;
        while (mtli_rec_next(&sofar, &it, &q))
            if (q.klen == p.klen && memcmp(q.key, p.key, p.klen) == 0)
                return mtli_error(MTL_ERR_FORMAT, "section %s: record '%s' repeats key '%.*s'",
                                  d->section, what, (int)p.klen, p.key);
        pos += sz;
    }
    r->p = base;
    r->n = pos;
    d->pos = start + pos + 1;
    return MTL_OK;
}

bool mtli_rec_next(const mtli_rec *r, size_t *pos, mtli_prop *p)
{
    if (*pos >= r->n)
        return false;
    const char *err;
    size_t sz = parse_prop(r->p + *pos, r->n - *pos, p, &err);
    if (sz == 0) /* cannot happen on a validated record */
        return false;
    *pos += sz;
    return true;
}

bool mtli_prop_is(const mtli_prop *p, const char *key)
{
    size_t n = strlen(key);
    return p->klen == n && memcmp(p->key, key, n) == 0;
}

bool mtli_rec_find(const mtli_rec *r, const char *key, mtli_prop *p)
{
    size_t pos = 0;
    while (mtli_rec_next(r, &pos, p))
        if (mtli_prop_is(p, key))
            return true;
    return false;
}

static mtl_status get(const mtli_rec *r, const char *key, int type, bool required,
                      mtli_prop *p, bool *found)
{
    if (found)
        *found = false;
    if (!mtli_rec_find(r, key, p)) {
        if (required)
            return mtli_error(MTL_ERR_FORMAT, "%s: required field '%s' is missing", r->what,
                              key);
        return MTL_OK;
    }
    if (p->type != type)
        return mtli_error(MTL_ERR_FORMAT, "%s: field '%s' is a %s, expected a %s", r->what, key,
                          type_name(p->type), type_name(type));
    if (found)
        *found = true;
    return MTL_OK;
}

mtl_status mtli_rec_int(const mtli_rec *r, const char *key, bool required, int64_t lo,
                        int64_t hi, int64_t *out, bool *found)
{
    mtli_prop p;
    bool f;
    MTLI_TRY(get(r, key, MTLI_P_INT, required, &p, &f));
    if (found)
        *found = f;
    if (!f)
        return MTL_OK;
    if (p.i < lo || p.i > hi)
        return mtli_error(MTL_ERR_FORMAT, "%s: field '%s' is %lld, expected %lld..%lld", r->what,
                          key, (long long)p.i, (long long)lo, (long long)hi);
    *out = p.i;
    return MTL_OK;
}

mtl_status mtli_rec_real(const mtli_rec *r, const char *key, bool required, double *out,
                         bool *found)
{
    mtli_prop p;
    bool f;
    MTLI_TRY(get(r, key, MTLI_P_REAL, required, &p, &f));
    if (found)
        *found = f;
    if (f)
        *out = p.d;
    return MTL_OK;
}

mtl_status mtli_rec_text(const mtli_rec *r, const char *key, bool required, char *buf,
                         size_t cap, bool *found)
{
    mtli_prop p;
    bool f;
    MTLI_TRY(get(r, key, MTLI_P_TEXT, required, &p, &f));
    if (found)
        *found = f;
    if (!f)
        return MTL_OK;
    if (p.count >= cap)
        return mtli_error(MTL_ERR_FORMAT, "%s: field '%s' is %llu bytes long, at most %zu allowed",
                          r->what, key, (unsigned long long)p.count, cap - 1);
    memcpy(buf, p.data, (size_t)p.count);
    buf[p.count] = '\0';
    return MTL_OK;
}

mtl_status mtli_rec_array(const mtli_rec *r, const char *key, int type, bool required,
                          const unsigned char **data, uint64_t *count, bool *found)
{
    mtli_prop p;
    bool f;
    MTLI_TRY(get(r, key, type, required, &p, &f));
    if (found)
        *found = f;
    if (f) {
        *data = p.data;
        *count = p.count;
    }
    return MTL_OK;
}
