/* NumPy .npy files: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 * The header is a Python dict literal; it is parsed here by a small strict scanner (only the
 * three keys numpy writes, no floats, so nothing depends on the locale). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor_internal.h"
#include "data/fileio.h"
#include "data/npy.h"
#include "mtl/data.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#  define NPY_HOST_LE 1
#else
#  define NPY_HOST_LE 0
#endif

#define LOAD "mtl_npy_load"
#define SAVE "mtl_npy_save"

typedef enum { K_F4, K_F8, K_I4, K_I8, K_U1, K_I1 } npy_kind;

static const struct {
    const char *descr;
    npy_kind kind;
    size_t size;
} kinds[] = {
    {"<f4", K_F4, 4}, {"<f8", K_F8, 8}, {"<i4", K_I4, 4}, {"<i8", K_I8, 8},
    {"|u1", K_U1, 1}, {"|i1", K_I1, 1}, {"<u1", K_U1, 1}, {"<i1", K_I1, 1},
};

static _Thread_local size_t tl_map_threshold = MTLI_NPY_MMAP_MIN_BYTES;

size_t mtli_npy_set_mmap_threshold(size_t bytes)
{
    size_t old = tl_map_threshold;
    tl_map_threshold = bytes;
    return old;
}

int mtli_npy_can_map(void)
{
#if defined(MTLI_TENSOR_HAS_RELEASE) && NPY_HOST_LE
    return 1;
#else
    return 0;
#endif
}

/* ---- header parsing ---------------------------------------------------------------------- */

typedef struct {
    const char *s;
    size_t n, i;
    const char *path;
} scan;

typedef struct {
    int have_descr, have_fortran, have_shape;
    char descr[32];
    int structured;
    int fortran;
    int ndim; /* number of entries in the shape tuple (may exceed 4; only 4 are kept) */
    int64_t shape[MTL_TENSOR_MAX_DIMS];
} npy_header;

static mtl_status bad(const scan *sc, const char *what)
{
    return mtli_error(MTL_ERR_FORMAT, LOAD ": '%s': malformed header: %s (at header byte %zu)",
                      sc->path, what, sc->i);
}

static void skip_ws(scan *sc)
{
    while (sc->i < sc->n &&
           (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' || sc->s[sc->i] == '\n' ||
            sc->s[sc->i] == '\r'))
        sc->i++;
}

static int peek(scan *sc)
{
    skip_ws(sc);
    return sc->i < sc->n ? (unsigned char)sc->s[sc->i] : -1;
}

static mtl_status expect(scan *sc, char c, const char *what)
{
    if (peek(sc) != (unsigned char)c)
        return bad(sc, what);
    sc->i++;
    return MTL_OK;
}

/* A quoted string without escapes; *start and *len receive its contents. */
static mtl_status read_string(scan *sc, const char **start, size_t *len, const char *what)
{
    int q = peek(sc);
    if (q != '\'' && q != '"')
        return bad(sc, what);
    size_t b = ++sc->i;
    while (sc->i < sc->n && sc->s[sc->i] != (char)q) {
        unsigned char c = (unsigned char)sc->s[sc->i];
        if (c == '\\' || c < 0x20 || c >= 0x7f)
            return bad(sc, "unsupported character inside a string");
        sc->i++;
    }
    if (sc->i >= sc->n)
        return bad(sc, "unterminated string");
    *start = sc->s + b;
    *len = sc->i - b;
    sc->i++;
    return MTL_OK;
}

static int word_is(const scan *sc, const char *w)
{
    size_t n = strlen(w);
    if (sc->n - sc->i < n || memcmp(sc->s + sc->i, w, n) != 0)
        return 0;
    /* the word must end here */
    if (sc->i + n < sc->n) {
        char c = sc->s[sc->i + n];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_')
            return 0;
    }
    return 1;
}

/* Skip a structured dtype description (a list of tuples), keeping quotes balanced. */
static mtl_status skip_list(scan *sc)
{
    int depth = 0;
    while (sc->i < sc->n) {
        char c = sc->s[sc->i];
        if (c == '\'' || c == '"') {
            const char *st;
            size_t len;
            MTLI_TRY(read_string(sc, &st, &len, "string"));
            continue;
        }
        if (c == '[' || c == '(')
            depth++;
        else if (c == ']' || c == ')') {
            if (--depth == 0) {
                sc->i++;
                return MTL_OK;
            }
        }
        sc->i++;
    }
    return bad(sc, "unterminated list in 'descr'");
}

static mtl_status read_int(scan *sc, int64_t *v)
{
    int c = peek(sc);
    int neg = 0;
    if (c == '-' || c == '+') {
        neg = c == '-';
        sc->i++;
        c = sc->i < sc->n ? (unsigned char)sc->s[sc->i] : -1;
    }
    if (c < '0' || c > '9')
        return bad(sc, "expected an integer in 'shape'");
    uint64_t x = 0;
    while (sc->i < sc->n && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9') {
        unsigned d = (unsigned)(sc->s[sc->i] - '0');
        if (x > ((uint64_t)INT64_MAX - d) / 10)
            return bad(sc, "a size in 'shape' does not fit in 64 bits");
        x = x * 10 + d;
        sc->i++;
    }
    if (sc->i < sc->n && sc->s[sc->i] == 'L') /* written by Python 2 numpy */
        sc->i++;
    *v = neg ? -(int64_t)x : (int64_t)x;
    return MTL_OK;
}

static mtl_status read_shape(scan *sc, npy_header *h)
{
    MTLI_TRY(expect(sc, '(', "'shape' is not a tuple"));
    h->ndim = 0;
    if (peek(sc) == ')') {
        sc->i++;
        return MTL_OK;
    }
    for (;;) {
        int64_t v = 0;
        MTLI_TRY(read_int(sc, &v));
        if (v < 0)
            return mtli_error(MTL_ERR_FORMAT, LOAD ": '%s': shape[%d] is %lld, a negative size",
                              sc->path, h->ndim, (long long)v);
        if (h->ndim < MTL_TENSOR_MAX_DIMS)
            h->shape[h->ndim] = v;
        if (h->ndim == INT_MAX)
            return bad(sc, "too many dimensions");
        h->ndim++;
        int c = peek(sc);
        if (c == ')') {
            if (h->ndim == 1)
                return bad(sc, "a one-element shape tuple needs a trailing comma");
            sc->i++;
            return MTL_OK;
        }
        if (c != ',')
            return bad(sc, "expected ',' or ')' in 'shape'");
        sc->i++;
        if (peek(sc) == ')') {
            sc->i++;
            return MTL_OK;
        }
    }
}

static mtl_status parse_header(npy_header *h, const char *s, size_t n, const char *path)
{
    scan sc = {s, n, 0, path};
    memset(h, 0, sizeof *h);
    MTLI_TRY(expect(&sc, '{', "expected '{'"));
    for (;;) {
        if (peek(&sc) == '}') {
            sc.i++;
            break;
        }
        const char *key;
        size_t klen;
        MTLI_TRY(read_string(&sc, &key, &klen, "expected a quoted key or '}'"));
        MTLI_TRY(expect(&sc, ':', "expected ':' after a key"));
        peek(&sc);
        if (klen == 5 && memcmp(key, "descr", 5) == 0) {
            if (h->have_descr)
                return bad(&sc, "duplicate key 'descr'");
            h->have_descr = 1;
            if (peek(&sc) == '[') {
                MTLI_TRY(skip_list(&sc));
                h->structured = 1;
            } else {
                const char *v;
                size_t vlen;
                MTLI_TRY(read_string(&sc, &v, &vlen, "'descr' is not a string"));
                if (vlen >= sizeof h->descr)
                    vlen = sizeof h->descr - 1;
                memcpy(h->descr, v, vlen);
                h->descr[vlen] = '\0';
            }
        } else if (klen == 13 && memcmp(key, "fortran_order", 13) == 0) {
            if (h->have_fortran)
                return bad(&sc, "duplicate key 'fortran_order'");
            h->have_fortran = 1;
            if (word_is(&sc, "True")) {
                h->fortran = 1;
                sc.i += 4;
            } else if (word_is(&sc, "False")) {
                h->fortran = 0;
                sc.i += 5;
            } else {
                return bad(&sc, "'fortran_order' is not True or False");
            }
        } else if (klen == 5 && memcmp(key, "shape", 5) == 0) {
            if (h->have_shape)
                return bad(&sc, "duplicate key 'shape'");
            h->have_shape = 1;
            MTLI_TRY(read_shape(&sc, h));
        } else {
            return mtli_error(MTL_ERR_FORMAT, LOAD ": '%s': malformed header: unknown key '%.*s'",
                              path, (int)(klen > 40 ? 40 : klen), key);
        }
        int c = peek(&sc);
        if (c == ',') {
            sc.i++;
            continue;
        }
        if (c == '}') {
            sc.i++;
            break;
        }
        return bad(&sc, "expected ',' or '}' after a value");
    }
    skip_ws(&sc);
    if (sc.i != sc.n)
        return bad(&sc, "unexpected text after the closing '}'");
    const char *missing = !h->have_descr     ? "descr"
                          : !h->have_fortran ? "fortran_order"
                          : !h->have_shape   ? "shape"
                                             : NULL;
    if (missing)
        return mtli_error(MTL_ERR_FORMAT, LOAD ": '%s': malformed header: missing key '%s'", path,
                          missing);
    return MTL_OK;
}

/* Check the parsed header against what we support; *kind, *esize, *numel on success. */
static mtl_status check_header(const npy_header *h, const char *path, npy_kind *kind,
                               size_t *esize, size_t *numel)
{
    if (h->structured)
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          LOAD ": '%s': structured dtypes are not supported (supported: <f4, "
                               "<f8, <i4, <i8, |u1, |i1)",
                          path);
    int found = -1;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(h->descr, kinds[i].descr) == 0)
            found = (int)i;
    if (found < 0) {
        const char *why = h->descr[0] == '>' ? " (big-endian data is not supported)" : "";
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          LOAD ": '%s': dtype '%s' is not supported%s (supported: <f4, <f8, "
                               "<i4, <i8, |u1, |i1)",
                          path, h->descr, why);
    }
    if (h->fortran)
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          LOAD ": '%s': fortran_order is True; only C-order arrays are supported "
                               "(save np.ascontiguousarray(a))",
                          path);
    if (h->ndim < 1 || h->ndim > MTL_TENSOR_MAX_DIMS)
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          LOAD ": '%s': the array has %d dimensions, supported are 1..%d", path,
                          h->ndim, MTL_TENSOR_MAX_DIMS);
    size_t n = 1;
    for (int i = 0; i < h->ndim; i++) {
        if (h->shape[i] == 0)
            return mtli_error(MTL_ERR_FORMAT, LOAD ": '%s': shape[%d] is 0 (empty arrays are not "
                                              "supported)", path, i);
        if ((uint64_t)h->shape[i] > SIZE_MAX || n > SIZE_MAX / (size_t)h->shape[i])
            return mtli_error(MTL_ERR_FORMAT, LOAD ": '%s': the shape's element count overflows",
                              path);
        n *= (size_t)h->shape[i];
    }
    if (n > (SIZE_MAX >> 1) / 8)
        return mtli_error(MTL_ERR_FORMAT, LOAD ": '%s': the shape's byte size overflows", path);
    *kind = kinds[found].kind;
    *esize = kinds[found].size;
    *numel = n;
    return MTL_OK;
}

/* ---- loading ----------------------------------------------------------------------------- */

static mtl_status convert(void *dst, const unsigned char *src, size_t count, size_t first,
                          npy_kind kind, const char *path)
{
    float *f = dst;
    int32_t *d = dst;
    for (size_t i = 0; i < count; i++) {
        switch (kind) {
        case K_F4: {
            uint32_t b = mtli_le_get32(src + 4 * i);
            memcpy(&f[i], &b, 4);
            break;
        }
        case K_F8: {
            uint64_t b = mtli_le_get64(src + 8 * i);
            double x;
            memcpy(&x, &b, 8);
            f[i] = (float)x;
            break;
        }
        case K_I4: d[i] = (int32_t)mtli_le_get32(src + 4 * i); break;
        case K_I8: {
            int64_t x = (int64_t)mtli_le_get64(src + 8 * i);
            if (x < INT32_MIN || x > INT32_MAX)
                return mtli_error(MTL_ERR_RANGE,
                                  LOAD ": '%s': element at flat index %zu is %lld, outside the "
                                       "int32 range",
                                  path, first + i, (long long)x);
            d[i] = (int32_t)x;
            break;
        }
        case K_U1: d[i] = src[i]; break;
        case K_I1: d[i] = (int8_t)src[i]; break;
        }
    }
    return MTL_OK;
}

#if defined(MTLI_TENSOR_HAS_RELEASE) && NPY_HOST_LE
static void npy_unmap(void *ctx, void *data, size_t bytes)
{
    /* ctx is the start of the mapping; data lies inside it at the header's offset */
    size_t len = (size_t)((unsigned char *)data - (unsigned char *)ctx) + bytes;
    munmap(ctx, len);
}

/* Map the file and wrap the data part; *t stays NULL when mapping is not possible (the
 * caller then reads the file). */
static mtl_status try_map(mtl_tensor **t, int fd, size_t fsize, size_t offset, mtl_dtype dt,
                          const npy_header *h)
{
    *t = NULL;
    void *base = mmap(NULL, fsize, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED)
        return MTL_OK;
    mtl_status st = mtl_tensor_wrap(t, dt, (unsigned char *)base + offset, h->ndim, h->shape);
    if (st != MTL_OK) {
        munmap(base, fsize);
        return st;
    }
    (*t)->release = npy_unmap;
    (*t)->release_ctx = base;
    return MTL_OK;
}
#endif

static mtl_status load_fd(mtl_tensor **out, int fd, size_t fsize, const char *path)
{
    unsigned char pre[12];
    size_t got;
    if (fsize < 10) {
        MTLI_TRY(mtli_data_read(fd, pre, fsize, &got, path, LOAD));
        if (fsize < 6 || memcmp(pre, "\x93NUMPY", 6) != 0)
            return mtli_error(MTL_ERR_FORMAT, LOAD ": '%s': not an .npy file (bad magic)", path);
        return mtli_error(MTL_ERR_FORMAT,
                          LOAD ": '%s': truncated: %zu bytes, too short for an .npy preamble",
                          path, fsize);
    }
    MTLI_TRY(mtli_data_read(fd, pre, 10, &got, path, LOAD));
    if (got != 10)
        return mtli_error(MTL_ERR_IO, LOAD ": '%s': the file shrank while being read", path);
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        return mtli_error(MTL_ERR_FORMAT, LOAD ": '%s': not an .npy file (bad magic)", path);
    unsigned major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0)
        return mtli_error(MTL_ERR_FORMAT,
                          LOAD ": '%s': unsupported .npy format version %u.%u (supported: 1.0, "
                               "2.0, 3.0)",
                          path, major, minor);
    size_t hlen, prefix;
    if (major == 1) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        prefix = 10;
    } else {
        if (fsize < 12)
            return mtli_error(MTL_ERR_FORMAT,
                              LOAD ": '%s': truncated: %zu bytes, too short for an .npy preamble",
                              path, fsize);
        MTLI_TRY(mtli_data_read(fd, pre + 10, 2, &got, path, LOAD));
        if (got != 2)
            return mtli_error(MTL_ERR_IO, LOAD ": '%s': the file shrank while being read", path);
        hlen = mtli_le_get32(pre + 8);
        prefix = 12;
    }
    if (hlen > fsize - prefix)
        return mtli_error(MTL_ERR_FORMAT,
                          LOAD ": '%s': truncated: the header needs %zu bytes, the file has %zu "
                               "after the preamble",
                          path, hlen, fsize - prefix);
    size_t offset = prefix + hlen;
    char *hbuf = mtli_malloc(hlen + 1);
    if (!hbuf)
        return mtli_oom("npy header", hlen + 1);
    mtl_status st = mtli_data_read(fd, hbuf, hlen, &got, path, LOAD);
    if (st == MTL_OK && got != hlen)
        st = mtli_error(MTL_ERR_IO, LOAD ": '%s': the file shrank while being read", path);
    npy_header h;
    if (st == MTL_OK)
        st = parse_header(&h, hbuf, hlen, path);
    mtli_free(hbuf);
    MTLI_TRY(st);

    npy_kind kind = K_F4;
    size_t esize = 0, numel = 0;
    MTLI_TRY(check_header(&h, path, &kind, &esize, &numel));
    size_t need = numel * esize;
    size_t have = fsize - offset;
    if (have < need)
        return mtli_error(MTL_ERR_FORMAT,
                          LOAD ": '%s': truncated: the data has %zu bytes, shape and dtype '%s' "
                               "need %zu",
                          path, have, h.descr, need);
    if (have > need)
        return mtli_error(MTL_ERR_FORMAT,
                          LOAD ": '%s': %zu unexpected bytes after the %zu data bytes", path,
                          have - need, need);
    mtl_dtype dt = (kind == K_F4 || kind == K_F8) ? MTL_FLOAT32 : MTL_INT32;

#if defined(MTLI_TENSOR_HAS_RELEASE) && NPY_HOST_LE
    if ((kind == K_F4 || kind == K_I4) && offset % 4 == 0 && fsize >= tl_map_threshold) {
        mtl_tensor *t;
        MTLI_TRY(try_map(&t, fd, fsize, offset, dt, &h));
        if (t) {
            *out = t;
            return MTL_OK;
        }
    }
#endif

    mtl_tensor *t;
    MTLI_TRY(mtl_tensor_create(&t, dt, h.ndim, h.shape));
    if (NPY_HOST_LE && (kind == K_F4 || kind == K_I4)) {
        st = mtli_data_read(fd, t->data, need, &got, path, LOAD);
        if (st == MTL_OK && got != need)
            st = mtli_error(MTL_ERR_IO, LOAD ": '%s': the file shrank while being read", path);
    } else {
        /* convert through a bounce buffer so a float64 file never needs twice its size */
        size_t chunk_elems = ((size_t)64 << 10) / esize;
        unsigned char *buf = mtli_malloc(chunk_elems * esize);
        if (!buf)
            st = mtli_oom("npy read buffer", chunk_elems * esize);
        for (size_t done = 0; st == MTL_OK && done < numel;) {
            size_t c = numel - done < chunk_elems ? numel - done : chunk_elems;
            st = mtli_data_read(fd, buf, c * esize, &got, path, LOAD);
            if (st == MTL_OK && got != c * esize)
                st = mtli_error(MTL_ERR_IO, LOAD ": '%s': the file shrank while being read",
                                path);
            if (st == MTL_OK)
                st = convert((char *)t->data + done * 4, buf, c, done, kind, path);
            done += c;
        }
        mtli_free(buf);
    }
    if (st != MTL_OK) {
        mtl_tensor_free(t);
        return st;
    }
    *out = t;
    return MTL_OK;
}

MTL_API mtl_status mtl_npy_load(mtl_tensor **out, const char *path)
{
    MTLI_CHECK_NULL(out, LOAD);
    *out = NULL;
    MTLI_CHECK_NULL(path, LOAD);
    int fd;
    size_t fsize;
    MTLI_TRY(mtli_data_open(&fd, &fsize, path, LOAD));
    mtl_status st = load_fd(out, fd, fsize, path);
    close(fd); /* a mapping stays valid after its descriptor is closed */
    return st;
}

/* ---- saving ------------------------------------------------------------------------------ */

MTL_API mtl_status mtl_npy_save(const mtl_tensor *t, const char *path)
{
    MTLI_CHECK_NULL(t, SAVE);
    MTLI_CHECK_NULL(path, SAVE);
    char head[256];
    int n = snprintf(head, sizeof head, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     t->dtype == MTL_FLOAT32 ? "<f4" : "<i4");
    for (int i = 0; i < t->ndim; i++) /* numpy's repr: (3,) and (2, 3) */
        n += snprintf(head + n, sizeof head - (size_t)n, "%s%lld%s", i > 0 ? ", " : "",
                      (long long)t->shape[i], t->ndim == 1 ? "," : "");
    n += snprintf(head + n, sizeof head - (size_t)n, "), }");
    /* numpy leaves room to grow the first dimension in place (21 digits); doing the same
     * makes our files byte-identical to np.save's */
    char digits[24];
    int nd = snprintf(digits, sizeof digits, "%lld", (long long)t->shape[0]);
    for (int i = nd; i < 21; i++)
        head[n++] = ' ';
    /* pad with spaces so the data starts at a multiple of 64 bytes; end with a newline */
    size_t total = ((size_t)10 + (size_t)n + 1 + 63) / 64 * 64;
    size_t hlen = total - 10;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    memset(head + n, ' ', hlen - (size_t)n - 1);
    head[hlen - 1] = '\n';

    mtli_data_writer w;
    MTLI_TRY(mtli_data_writer_open(&w, path, SAVE));
    mtl_status st = mtli_data_writer_write(&w, pre, sizeof pre);
    if (st == MTL_OK)
        st = mtli_data_writer_write(&w, head, hlen);
    if (st == MTL_OK) {
        size_t bytes = t->numel * 4;
        if (NPY_HOST_LE) {
            st = mtli_data_writer_write(&w, t->data, bytes);
        } else {
            unsigned char buf[4096];
            const uint32_t *src = t->data;
            for (size_t i = 0; st == MTL_OK && i < t->numel;) {
                size_t c = 0;
                for (; c < sizeof buf / 4 && i < t->numel; c++, i++)
                    mtli_le_put32(buf + 4 * c, src[i]);
                st = mtli_data_writer_write(&w, buf, 4 * c);
            }
        }
    }
    if (st != MTL_OK) {
        mtli_data_writer_abort(&w);
        return st;
    }
    return mtli_data_writer_commit(&w);
}
