/* Multi-Fashion builder (include/mtl/datasets.h) and the IDX reader it uses.
 *
 * The gzip streams are inflated by zlib with the library's allocator, straight into the
 * destination buffers: the IDX header first, then the payload whose size it announces, then
 * a check that the stream ends there (which also makes zlib verify the gzip CRC). Every
 * source file is read and validated before anything is written. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/fashion.h"
#include "data/fileio.h"
#include "mtl/data.h"
#include "mtl/datasets.h"
#include "mtl/tensor.h"

#define BUILD "mtl_multifashion_build"
#define SIDE 28           /* Fashion-MNIST images are SIDE x SIDE */
#define CANVAS 36         /* composites are CANVAS x CANVAS */
#define SHIFTS 5          /* offsets 0..4 */
#define PARTNER_BASE 4    /* the partner's corner is at PARTNER_BASE + 0..4 */
#define NCLASSES 10
#define TEST_SEED_OFFSET 0x9E3779B97F4A7C15ull

/* ---- IDX reading ----------------------------------------------------------------------- */

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return mtli_calloc(items, size);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    mtli_free(p);
}

typedef struct {
    const unsigned char *src;
    size_t n, pos;   /* compressed bytes and how many were handed to zlib (or copied) */
    bool gz, ended;  /* gzip stream; its end was reached */
    z_stream zs;
    const char *path;
} idx_reader;

static mtl_status rd_open(idx_reader *r, const unsigned char *src, size_t n, const char *path)
{
    memset(r, 0, sizeof *r);
    r->src = src;
    r->n = n;
    r->path = path;
    r->gz = n >= 2 && src[0] == 0x1f && src[1] == 0x8b;
    if (!r->gz)
        return MTL_OK;
    r->zs.zalloc = z_alloc;
    r->zs.zfree = z_free;
    r->zs.opaque = Z_NULL;
    int zr = inflateInit2(&r->zs, 16 + MAX_WBITS); /* gzip wrapper only */
    if (zr == Z_MEM_ERROR)
        return mtli_oom("gzip inflate state", sizeof(z_stream));
    if (zr != Z_OK) {
        r->gz = false;
        return mtli_error(MTL_ERR_INTERNAL, "%s: zlib inflateInit2 failed (%d)", BUILD, zr);
    }
    return MTL_OK;
}

static void rd_close(idx_reader *r)
{
    if (r->gz)
        inflateEnd(&r->zs);
    r->gz = false;
}

/* Read up to want bytes into dst; *got < want only at the end of the data. */
static mtl_status rd_read(idx_reader *r, void *dst, size_t want, size_t *got)
{
    if (!r->gz) {
        size_t k = r->n - r->pos < want ? r->n - r->pos : want;
        memcpy(dst, r->src + r->pos, k);
        r->pos += k;
        *got = k;
        return MTL_OK;
    }
    unsigned char *out = dst;
    size_t done = 0;
    while (done < want && !r->ended) {
        if (r->zs.avail_in == 0 && r->pos < r->n) {
            size_t k = r->n - r->pos < (1u << 30) ? r->n - r->pos : (1u << 30);
            r->zs.next_in = (Bytef *)(r->src + r->pos);
            r->zs.avail_in = (uInt)k;
            r->pos += k;
        }
        size_t room = want - done < (1u << 30) ? want - done : (1u << 30);
        r->zs.next_out = out + done;
        r->zs.avail_out = (uInt)room;
        int zr = inflate(&r->zs, Z_NO_FLUSH);
        done += room - r->zs.avail_out;
        if (zr == Z_STREAM_END) {
            r->ended = true;
        } else if (zr == Z_MEM_ERROR) {
            return mtli_oom("gzip inflate window", (size_t)1 << MAX_WBITS);
        } else if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT) {
            return mtli_error(MTL_ERR_FORMAT, "%s: '%s' holds corrupt gzip data (%s)", BUILD,
                              r->path, r->zs.msg ? r->zs.msg : "invalid stream");
        } else if (zr == Z_BUF_ERROR) {
            break; /* no progress possible: the input ended before the stream did */
        } else if (zr != Z_OK) {
            return mtli_error(MTL_ERR_FORMAT, "%s: '%s': gzip stream error %d", BUILD, r->path,
                              zr);
        }
    }
    *got = done;
    return MTL_OK;
}

/* After the payload: the data must end here, and a gzip stream must end properly. */
static mtl_status rd_finish(idx_reader *r)
{
    unsigned char extra;
    size_t got;
    MTLI_TRY(rd_read(r, &extra, 1, &got));
    if (got != 0)
        return mtli_error(MTL_ERR_FORMAT,
                          "%s: '%s' holds more data than its IDX header announces", BUILD,
                          r->path);
    if (r->gz && !r->ended)
        return mtli_error(MTL_ERR_FORMAT,
                          "%s: '%s': the gzip stream is truncated (no end marker or checksum)",
                          BUILD, r->path);
    if (r->gz && (r->zs.avail_in != 0 || r->pos != r->n))
        return mtli_error(MTL_ERR_FORMAT, "%s: '%s' has bytes after the end of its gzip stream",
                          BUILD, r->path);
    return MTL_OK;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static mtl_status idx_parse(idx_reader *r, int ndim, uint32_t *dims, uint8_t **data)
{
    unsigned char head[16];
    size_t hn = 4 + 4 * (size_t)ndim, got;
    MTLI_TRY(rd_read(r, head, hn, &got));
    if (got < hn)
        return mtli_error(MTL_ERR_FORMAT, "%s: '%s' is too short for an IDX header (%zu bytes)",
                          BUILD, r->path, got);
    if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != (unsigned char)ndim)
        return mtli_error(MTL_ERR_FORMAT,
                          "%s: '%s' is not an IDX file of unsigned bytes with %d dimension%s "
                          "(magic number 0x%02x%02x%02x%02x, expected 0x000008%02x)",
                          BUILD, r->path, ndim, ndim == 1 ? "" : "s", head[0], head[1], head[2],
                          head[3], ndim);
    size_t total = 1;
    for (int d = 0; d < ndim; d++) {
        dims[d] = be32(head + 4 + 4 * d);
        if (dims[d] == 0)
            return mtli_error(MTL_ERR_FORMAT, "%s: '%s': IDX dimension %d is 0", BUILD, r->path,
                              d);
        if (!mtli_mul_size(total, dims[d], &total))
            return mtli_error(MTL_ERR_FORMAT, "%s: '%s': IDX dimensions are too large", BUILD,
                              r->path);
    }
    uint8_t *buf = mtli_malloc(total);
    if (!buf)
        return mtli_oom("IDX payload", total);
    mtl_status st = rd_read(r, buf, total, &got);
    if (st == MTL_OK && got < total)
        st = mtli_error(MTL_ERR_FORMAT, "%s: '%s' is truncated: %zu of %zu data bytes", BUILD,
                        r->path, got, total);
    if (st == MTL_OK)
        st = rd_finish(r);
    if (st != MTL_OK) {
        mtli_free(buf);
        return st;
    }
    *data = buf;
    return MTL_OK;
}

mtl_status mtli_idx_load(const char *path, int ndim, uint32_t *dims, uint8_t **data)
{
    MTLI_CHECK_NULL(path, "mtli_idx_load");
    MTLI_CHECK_NULL(dims, "mtli_idx_load");
    MTLI_CHECK_NULL(data, "mtli_idx_load");
    *data = NULL;
    if (ndim < 1 || ndim > 3)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtli_idx_load: ndim is %d, expected 1..3",
                          ndim);
    char *file;
    size_t n;
    MTLI_TRY(mtli_data_read_file(&file, &n, path, BUILD));
    idx_reader r;
    mtl_status st = rd_open(&r, (const unsigned char *)file, n, path);
    if (st == MTL_OK)
        st = idx_parse(&r, ndim, dims, data);
    rd_close(&r);
    mtli_free(file);
    return st;
}

/* ---- sources ------------------------------------------------------------------------- */

typedef struct {
    uint8_t *images; /* n x SIDE x SIDE */
    uint8_t *labels; /* n */
    size_t n;
} split_data;

static void split_free(split_data *s)
{
    mtli_free(s->images);
    mtli_free(s->labels);
    memset(s, 0, sizeof *s);
}

static char *join(const char *dir, const char *name, const char *suffix)
{
    size_t len = strlen(dir) + strlen(name) + strlen(suffix) + 2;
    char *p = mtli_malloc(len);
    if (p)
        snprintf(p, len, "%s/%s%s", dir, name, suffix);
    return p;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The path of dir/name.gz, or dir/name when only the uncompressed file exists. */
static mtl_status find_source(const char *dir, const char *name, char **path)
{
    *path = join(dir, name, ".gz");
    if (!*path)
        return mtli_oom("path", strlen(dir) + strlen(name) + 5);
    if (exists(*path))
        return MTL_OK;
    char *plain = join(dir, name, "");
    if (!plain) {
        mtli_free(*path);
        *path = NULL;
        return mtli_oom("path", strlen(dir) + strlen(name) + 2);
    }
    if (exists(plain)) {
        mtli_free(*path);
        *path = plain;
        return MTL_OK;
    }
    mtli_free(plain);
    mtl_status st = mtli_error(MTL_ERR_IO,
                               "%s: Fashion-MNIST file '%s' not found: install the Debian "
                               "package dataset-fashion-mnist (apt-get install "
                               "dataset-fashion-mnist), or pass the directory that holds the "
                               "IDX files",
                               BUILD, *path);
    mtli_free(*path);
    *path = NULL;
    return st;
}

static mtl_status load_idx_named(const char *dir, const char *name, int ndim, uint32_t *dims,
                                 uint8_t **data)
{
    char *path;
    MTLI_TRY(find_source(dir, name, &path));
    mtl_status st = mtli_idx_load(path, ndim, dims, data);
    mtli_free(path);
    return st;
}

static mtl_status load_split(const char *dir, const char *prefix, size_t limit, split_data *s)
{
    memset(s, 0, sizeof *s);
    char iname[64], lname[64];
    snprintf(iname, sizeof iname, "%s-images-idx3-ubyte", prefix);
    snprintf(lname, sizeof lname, "%s-labels-idx1-ubyte", prefix);
    uint32_t idims[3], ldims[1];
    mtl_status st = load_idx_named(dir, iname, 3, idims, &s->images);
    if (st == MTL_OK && (idims[1] != SIDE || idims[2] != SIDE))
        st = mtli_error(MTL_ERR_FORMAT, "%s: '%s/%s': images are %ux%u, expected %dx%d", BUILD,
                        dir, iname, (unsigned)idims[1], (unsigned)idims[2], SIDE, SIDE);
    if (st == MTL_OK)
        st = load_idx_named(dir, lname, 1, ldims, &s->labels);
    if (st == MTL_OK && ldims[0] != idims[0])
        st = mtli_error(MTL_ERR_FORMAT, "%s: '%s' has %u images but '%s' has %u labels", BUILD,
                        iname, (unsigned)idims[0], lname, (unsigned)ldims[0]);
    if (st != MTL_OK) {
        split_free(s);
        return st;
    }
    s->n = idims[0];
    for (size_t i = 0; i < s->n; i++)
        if (s->labels[i] >= NCLASSES) {
            st = mtli_error(MTL_ERR_FORMAT, "%s: '%s': label %zu is %u, expected 0..%d", BUILD,
                            lname, i, (unsigned)s->labels[i], NCLASSES - 1);
            split_free(s);
            return st;
        }
    if (limit && limit < s->n)
        s->n = limit;
    for (size_t i = 1; i < s->n; i++)
        if (s->labels[i] != s->labels[0])
            return MTL_OK;
    st = mtli_error(MTL_ERR_INVALID_ARGUMENT,
                    "%s: the %zu '%s' image(s) used all have class %u; a composite needs a "
                    "partner of another class",
                    BUILD, s->n, prefix, (unsigned)s->labels[0]);
    split_free(s);
    return st;
}

/* ---- composites ---------------------------------------------------------------------- */

static void paste_max(float *canvas, const uint8_t *img, size_t row, size_t col)
{
    for (size_t a = 0; a < SIDE; a++) {
        float *dst = canvas + (row + a) * CANVAS + col;
        const uint8_t *src = img + a * SIDE;
        for (size_t b = 0; b < SIDE; b++) {
            float v = (float)src[b];
            dst[b] = v > dst[b] ? v : dst[b];
        }
    }
}

static mtl_status write_tensor(mtl_tensor *t, const char *out_dir, const char *split,
                               const char *what)
{
    char name[64];
    snprintf(name, sizeof name, "%s_%s.npy", split, what);
    char *path = join(out_dir, name, "");
    if (!path)
        return mtli_oom("path", strlen(out_dir) + strlen(name) + 2);
    mtl_status st = mtl_npy_save(t, path);
    mtli_free(path);
    return st;
}

static mtl_status build_split(const split_data *s, uint64_t seed, const char *out_dir,
                              const char *split)
{
    size_t N = 2 * s->n;
    int64_t xshape[4] = {(int64_t)N, 1, CANVAS, CANVAS}, yshape[1] = {(int64_t)N};
    mtl_tensor *x = NULL, *yl = NULL, *yr = NULL;
    mtl_status st = mtl_tensor_create(&yl, MTL_INT32, 1, yshape);
    if (st == MTL_OK)
        st = mtl_tensor_create(&yr, MTL_INT32, 1, yshape);
    if (st == MTL_OK)
        st = mtl_tensor_create(&x, MTL_FLOAT32, 4, xshape);
    if (st == MTL_OK) {
        float *xd = mtl_tensor_data(x);
        int32_t *ld = mtl_tensor_data(yl), *rd = mtl_tensor_data(yr);
        mtli_rng rng;
        mtli_rng_seed(&rng, seed);
        for (size_t i = 0; i < s->n; i++)
            for (size_t k = 0; k < 2; k++) {
                size_t j;
                do
                    j = (size_t)mtli_rng_below(&rng, s->n);
                while (s->labels[j] == s->labels[i]);
                size_t r1 = (size_t)mtli_rng_below(&rng, SHIFTS);
                size_t c1 = (size_t)mtli_rng_below(&rng, SHIFTS);
                size_t r2 = (size_t)mtli_rng_below(&rng, SHIFTS);
                size_t c2 = (size_t)mtli_rng_below(&rng, SHIFTS);
                size_t o = 2 * i + k;
                float *canvas = xd + o * CANVAS * CANVAS; /* zero-filled by create */
                paste_max(canvas, s->images + i * SIDE * SIDE, r1, c1);
                paste_max(canvas, s->images + j * SIDE * SIDE, PARTNER_BASE + r2,
                          PARTNER_BASE + c2);
                ld[o] = s->labels[i];
                rd[o] = s->labels[j];
            }
        st = write_tensor(yl, out_dir, split, "y_left");
    }
    if (st == MTL_OK)
        st = write_tensor(yr, out_dir, split, "y_right");
    if (st == MTL_OK)
        st = write_tensor(x, out_dir, split, "x");
    mtl_tensor_free(x);
    mtl_tensor_free(yl);
    mtl_tensor_free(yr);
    return st;
}

static mtl_status make_dir(const char *dir)
{
    /* create missing parents first, as `mkdir -p` */
    char parent[4096];
    size_t n = strlen(dir);
    if (n < sizeof parent) {
        memcpy(parent, dir, n + 1);
        while (n > 1 && parent[n - 1] == '/')
            parent[--n] = '\0';
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = '\0';
            struct stat pb;
            if (stat(parent, &pb) != 0) {
                mtl_status st = make_dir(parent);
                if (st != MTL_OK)
                    return st;
            }
        }
    }
    if (mkdir(dir, 0777) == 0)
        return MTL_OK;
    int e = errno;
    struct stat sb;
    if (e == EEXIST && stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode))
        return MTL_OK;
    char eb[128];
    const char *why =
        e == EEXIST ? "a file of that name exists" : mtli_data_strerror(e, eb, sizeof eb);
    return mtli_error(MTL_ERR_IO, "%s: cannot create the output directory '%s': %s", BUILD, dir,
                      why);
}

MTL_API mtl_status mtl_multifashion_build(const char *src_dir, const char *out_dir,
                                          uint64_t seed, int64_t limit)
{
    MTLI_CHECK_NULL(out_dir, BUILD);
    if (limit < 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: limit is %lld, expected >= 0 (0: all)",
                          BUILD, (long long)limit);
    if (out_dir[0] == '\0')
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: out_dir is empty", BUILD);
    const char *dir = src_dir ? src_dir : MTL_FASHION_MNIST_DIR;
    size_t lim = (uint64_t)limit > SIZE_MAX ? SIZE_MAX : (size_t)limit;
    split_data train, test;
    MTLI_TRY(load_split(dir, "train", lim, &train));
    mtl_status st = load_split(dir, "t10k", lim, &test);
    if (st == MTL_OK)
        st = make_dir(out_dir);
    if (st == MTL_OK)
        st = build_split(&train, seed, out_dir, "train");
    split_free(&train);
    if (st == MTL_OK)
        st = build_split(&test, seed + TEST_SEED_OFFSET, out_dir, "test");
    split_free(&test);
    return st;
}
