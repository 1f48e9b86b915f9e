/* Multi-Fashion builder: determinism (CRC-32 of the written files against constants an
 * independent NumPy implementation of the same construction reproduces), the composites'
 * structure, the IDX/gzip validation errors, a missing package, allocation failures, and the
 * full build from Debian's dataset-fashion-mnist when it is installed. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <mtl/mtl.h>

#include "core/alloc.h"
#include "data/fashion.h"
#include "data/fileio.h"
#include "test_main.h"
#include "test_oom.h"

#define ck_assert_err(expr, status, sub)                                                     \
    do {                                                                                     \
        ck_assert_status(expr, status);                                                      \
        ck_assert_msg(strstr(mtl_last_error(), sub) != NULL, "message '%s' lacks '%s'",      \
                      mtl_last_error(), sub);                                                \
    } while (0)

static const char *const FILES[6] = {"train_x.npy",    "train_y_left.npy", "train_y_right.npy",
                                     "test_x.npy",     "test_y_left.npy",  "test_y_right.npy"};

/* ---- temporary directories --------------------------------------------------------------- */

static char *tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(512);
    snprintf(p, 512, "%s/mtl_fashion_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(p));
    return p;
}

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

/* Remove a directory of plain files (and one level of subdirectories). */
static void rmtree(const char *dir)
{
    static const char *const names[] = {
        "train_x.npy", "train_y_left.npy", "train_y_right.npy", "test_x.npy",
        "test_y_left.npy", "test_y_right.npy", "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte", "out", "file", "bad.gz"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = path_in(dir, names[i]);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            rmtree(p);
        } else {
            unlink(p);
        }
        free(p);
    }
    rmdir(dir);
}

/* ---- synthetic Fashion-MNIST sources ------------------------------------------------------ */

/* IDX bytes: magic 0x000008<ndim>, big-endian dims, then the payload. */
static unsigned char *idx_bytes(int ndim, const uint32_t *dims, const uint8_t *payload,
                                size_t *len)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= dims[d];
    size_t h = 4 + 4 * (size_t)ndim;
    unsigned char *b = malloc(h + n + 1);
    b[0] = b[1] = 0;
    b[2] = 0x08;
    b[3] = (unsigned char)ndim;
    for (int d = 0; d < ndim; d++)
        for (int k = 0; k < 4; k++)
            b[4 + 4 * d + k] = (unsigned char)(dims[d] >> (24 - 8 * k));
    memcpy(b + h, payload, n);
    *len = h + n;
    return b;
}

static void write_raw(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile g = gzopen(path, "wb9");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, data, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Deterministic synthetic images and labels of one split. */
static void synth(uint8_t *img, uint8_t *lab, size_t n, unsigned salt)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t p = 0; p < 784; p++)
            img[i * 784 + p] = (uint8_t)((i * 37 + p * 11 + (p / 28) * 5 + salt) % 256);
        lab[i] = (uint8_t)((i * 7 + salt) % 10);
    }
}

#define NTR 40
#define NTE 12

/* Write the four source files of NTR train and NTE test images into dir, compressed or
 * plain. */
static void write_sources(const char *dir, bool gz)
{
    static uint8_t img[NTR * 784], lab[NTR];
    const struct {
        const char *pre;
        size_t n;
        unsigned salt;
    } sp[2] = {{"train", NTR, 3}, {"t10k", NTE, 5}};
    for (int s = 0; s < 2; s++) {
        synth(img, lab, sp[s].n, sp[s].salt);
        uint32_t idims[3] = {(uint32_t)sp[s].n, 28, 28}, ldims[1] = {(uint32_t)sp[s].n};
        size_t li, ll;
        unsigned char *bi = idx_bytes(3, idims, img, &li), *bl = idx_bytes(1, ldims, lab, &ll);
        char name[64];
        snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", sp[s].pre, gz ? ".gz" : "");
        char *p = path_in(dir, name);
        (gz ? write_gz : write_raw)(p, bi, li);
        free(p);
        snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", sp[s].pre, gz ? ".gz" : "");
        p = path_in(dir, name);
        (gz ? write_gz : write_raw)(p, bl, ll);
        free(p);
        free(bi);
        free(bl);
    }
}

static uint32_t file_crc(const char *dir, const char *name)
{
    char *p = path_in(dir, name);
    size_t n;
    unsigned char *b = read_all(p, &n);
    uint32_t c = mtli_data_crc32(0, b, n);
    free(b);
    free(p);
    return c;
}

/* ---- determinism --------------------------------------------------------------------------- */

/* CRC-32 of the six files built from the synthetic sources with seed 7. The files are
 * identical (np.array_equal on every array) to the output of this independent NumPy
 * implementation of include/mtl/datasets.h, run on the same IDX files:
 *
 *   M = (1 << 64) - 1
 *   class Rng:  # xoshiro256** seeded by splitmix64, as libmtl/core/rng.c
 *       def __init__(s, seed):
 *           s.s, x = [], seed & M
 *           for _ in range(4):
 *               x = (x + 0x9E3779B97F4A7C15) & M
 *               z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
 *               z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
 *               s.s.append(z ^ (z >> 31))
 *       def next(s):
 *           a, rotl = s.s, lambda x, k: ((x << k) | (x >> (64 - k))) & M
 *           r, t = (rotl((a[1] * 5) & M, 7) * 9) & M, (a[1] << 17) & M
 *           a[2] ^= a[0]; a[3] ^= a[1]; a[1] ^= a[2]; a[0] ^= a[3]; a[2] ^= t
 *           a[3] = rotl(a[3], 45)
 *           return r
 *       def below(s, n):
 *           while True:
 *               x = s.next()
 *               if x >= ((1 << 64) - n) % n: return x % n
 *   test_seed = (seed + 0x9E3779B97F4A7C15) & M
 *   for split, pre, sd in [('train', 'train', seed), ('test', 't10k', test_seed)]:
 *       imgs, labs = idx(pre + '-images-idx3-ubyte.gz'), idx(pre + '-labels-idx1-ubyte.gz')
 *       n = min(limit or len(labs), len(labs)); r = Rng(sd)
 *       X = np.zeros((2*n, 1, 36, 36), np.float32); L = np.zeros(2*n, np.int32); R = L.copy()
 *       for i in range(n):
 *           for k in range(2):
 *               j = r.below(n)
 *               while labs[j] == labs[i]: j = r.below(n)
 *               r1, c1, r2, c2 = (r.below(5) for _ in range(4))
 *               o = 2*i + k
 *               X[o, 0, r1:r1+28, c1:c1+28] = imgs[i]
 *               v = X[o, 0, 4+r2:32+r2, 4+c2:32+c2]; v[...] = np.maximum(v, imgs[j])
 *               L[o], R[o] = labs[i], labs[j]
 *       # compare X, L, R with <split>_x / _y_left / _y_right .npy
 */
static const uint32_t SYNTH_CRC[6] = {0x96950830, 0xc971f6dd, 0xcc3588da,
                                      0x37b97284, 0xa4c79ff7, 0x6817f9e4};

START_TEST(synthetic_build_is_deterministic)
{
    char *src = tmpdir(), *out = tmpdir(), *out2 = tmpdir();
    write_sources(src, true);
    ck_assert_ok(mtl_multifashion_build(src, out, 7, 0));
    /* plain IDX files give the same result */
    char *plain = tmpdir();
    write_sources(plain, false);
    ck_assert_ok(mtl_multifashion_build(plain, out2, 7, 0));
    for (int f = 0; f < 6; f++) {
        uint32_t c = file_crc(out, FILES[f]);
        if (getenv("MTL_TEST_VERBOSE"))
            fprintf(stderr, "%s crc32 0x%08x\n", FILES[f], (unsigned)c);
        ck_assert_msg(c == SYNTH_CRC[f], "%s: crc32 0x%08x, expected 0x%08x", FILES[f],
                      (unsigned)c, (unsigned)SYNTH_CRC[f]);
        ck_assert_uint_eq(file_crc(out2, FILES[f]), c);
    }
    /* another seed, other bytes; rebuilding over existing files works */
    ck_assert_ok(mtl_multifashion_build(src, out2, 8, 0));
    ck_assert_uint_ne(file_crc(out2, "train_x.npy"), SYNTH_CRC[0]);
    rmtree(src);
    rmtree(plain);
    rmtree(out);
    rmtree(out2);
    free(src);
    free(plain);
    free(out);
    free(out2);
}
END_TEST

/* Every composite: image i at some offset (r1, c1) in 0..4 and a partner of another class at
 * (4 + r2, 4 + c2), combined by maximum; labels as promised; shapes and dtypes. */
START_TEST(synthetic_composites_structure)
{
    char *src = tmpdir(), *out = tmpdir();
    write_sources(src, true);
    ck_assert_ok(mtl_multifashion_build(src, out, 11, 0));
    static uint8_t img[NTR * 784], lab[NTR];
    synth(img, lab, NTR, 3);
    mtl_tensor *x, *yl, *yr;
    char *p = path_in(out, "train_x.npy");
    ck_assert_ok(mtl_npy_load(&x, p));
    free(p);
    p = path_in(out, "train_y_left.npy");
    ck_assert_ok(mtl_npy_load(&yl, p));
    free(p);
    p = path_in(out, "train_y_right.npy");
    ck_assert_ok(mtl_npy_load(&yr, p));
    free(p);
    int64_t shape[4];
    ck_assert_ok(mtl_tensor_shape(x, shape, 4));
    ck_assert_int_eq(mtl_tensor_ndim(x), 4);
    ck_assert(shape[0] == 2 * NTR && shape[1] == 1 && shape[2] == 36 && shape[3] == 36);
    ck_assert_int_eq(mtl_tensor_dtype(x), MTL_FLOAT32);
    ck_assert_int_eq(mtl_tensor_dtype(yl), MTL_INT32);
    ck_assert_int_eq(mtl_tensor_numel(yr), 2 * NTR);
    const float *xd = mtl_tensor_data_const(x);
    const int32_t *ld = mtl_tensor_data_const(yl), *rd = mtl_tensor_data_const(yr);
    for (size_t o = 0; o < 2 * NTR; o++) {
        size_t i = o / 2;
        ck_assert_int_eq(ld[o], lab[i]);
        ck_assert_int_ne(rd[o], ld[o]);
        const float *c = xd + o * 36 * 36;
        /* find placements that explain every pixel: canvas = max(left, partner) */
        int found = 0;
        for (size_t j = 0; j < NTR && !found; j++) {
            if (lab[j] != (uint8_t)rd[o])
                continue;
            for (int r1 = 0; r1 < 5 && !found; r1++)
                for (int c1 = 0; c1 < 5 && !found; c1++)
                    for (int r2 = 0; r2 < 5 && !found; r2++)
                        for (int c2 = 0; c2 < 5 && !found; c2++) {
                            int ok = 1;
                            for (int y = 0; y < 36 && ok; y++)
                                for (int xx = 0; xx < 36 && ok; xx++) {
                                    float v = 0.0f;
                                    int a = y - r1, b = xx - c1;
                                    if (a >= 0 && a < 28 && b >= 0 && b < 28)
                                        v = img[i * 784 + (size_t)a * 28 + (size_t)b];
                                    a = y - 4 - r2;
                                    b = xx - 4 - c2;
                                    if (a >= 0 && a < 28 && b >= 0 && b < 28)
                                        v = fmaxf(v, img[j * 784 + (size_t)a * 28 + (size_t)b]);
                                    ok = c[y * 36 + xx] == v;
                                }
                            found = ok;
                        }
        }
        ck_assert_msg(found, "composite %zu is not image %zu plus a partner of class %d", o, i,
                      rd[o]);
    }
    mtl_tensor_free(x);
    mtl_tensor_free(yl);
    mtl_tensor_free(yr);
    /* limit: the first 5 images of each split */
    rmtree(out);
    ck_assert_ok(mtl_multifashion_build(src, out, 11, 5));
    p = path_in(out, "test_y_left.npy");
    ck_assert_ok(mtl_npy_load(&yl, p));
    free(p);
    ck_assert_int_eq(mtl_tensor_numel(yl), 10);
    mtl_tensor_free(yl);
    rmtree(src);
    rmtree(out);
    free(src);
    free(out);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------ */

START_TEST(missing_package_names_it)
{
    char *out = tmpdir();
    ck_assert_err(mtl_multifashion_build("/nonexistent/fashion-mnist", out, 1, 0), MTL_ERR_IO,
                  "dataset-fashion-mnist");
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "/nonexistent/fashion-mnist/train-images"));
    ck_assert_ptr_nonnull(strstr(mtl_last_error(), "apt-get install"));
    ck_assert_err(mtl_multifashion_build(NULL, NULL, 1, 0), MTL_ERR_INVALID_ARGUMENT,
                  "out_dir");
    ck_assert_err(mtl_multifashion_build(NULL, "", 1, 0), MTL_ERR_INVALID_ARGUMENT, "empty");
    ck_assert_err(mtl_multifashion_build(NULL, out, 1, -1), MTL_ERR_INVALID_ARGUMENT, "limit");
    /* nothing was written */
    char *p = path_in(out, "train_x.npy");
    ck_assert_int_ne(access(p, F_OK), 0);
    free(p);
    rmtree(out);
    free(out);
}
END_TEST

/* Replace one source file of dir by the given bytes (gzip-compressed when gz). */
static void put_file(const char *dir, const char *name, const void *b, size_t n, bool gz)
{
    char *p = path_in(dir, name);
    unlink(p);
    (gz ? write_gz : write_raw)(p, b, n);
    free(p);
}

START_TEST(corrupt_sources_are_format_errors)
{
    char *src = tmpdir(), *out = tmpdir();
    char *outsub = path_in(out, "out");
    static uint8_t img[NTR * 784], lab[NTR];
    synth(img, lab, NTR, 3);
    uint32_t idims[3] = {NTR, 28, 28}, ldims[1] = {NTR};
    size_t li, ll;
    unsigned char *bi = idx_bytes(3, idims, img, &li), *bl = idx_bytes(1, ldims, lab, &ll);
    const char *IMG = "train-images-idx3-ubyte.gz", *LAB = "train-labels-idx1-ubyte.gz";

    /* a corrupted byte inside the gzip stream (data error or checksum mismatch) */
    write_sources(src, true);
    char *ip = path_in(src, IMG);
    size_t gn;
    unsigned char *g = read_all(ip, &gn);
    g[gn / 2] ^= 0x55;
    put_file(src, IMG, g, gn, false);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT, IMG);
    /* a truncated gzip stream */
    put_file(src, IMG, (g[gn / 2] ^= 0x55, g), gn - 9, false);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT, "truncated");
    put_file(src, IMG, g, gn / 3, false);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT, "truncated");
    /* bytes after the gzip stream */
    unsigned char *g2 = malloc(gn + 4);
    memcpy(g2, g, gn);
    memcpy(g2 + gn, "junk", 4);
    put_file(src, IMG, g2, gn + 4, false);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT, "after the end");
    free(g2);
    free(g);
    /* wrong magic: labels where images are expected */
    put_file(src, IMG, bl, ll, true);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT,
                  "magic number 0x00000801, expected 0x00000803");
    /* a payload shorter or longer than the header says */
    put_file(src, IMG, bi, li - 1, true);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT,
                  "truncated: 31359 of 31360 data bytes");
    unsigned char *longer = malloc(li + 1);
    memcpy(longer, bi, li);
    longer[li] = 0;
    put_file(src, IMG, longer, li + 1, true);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT,
                  "more data than its IDX header");
    free(longer);
    /* images that are not 28x28 */
    uint32_t odd[3] = {NTR, 28, 14};
    size_t lo;
    unsigned char *bo = idx_bytes(3, odd, img, &lo);
    put_file(src, IMG, bo, lo, true);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT,
                  "images are 28x14, expected 28x28");
    free(bo);
    /* a header cut short, and a zero dimension */
    put_file(src, IMG, bi, 10, true);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT, "too short");
    uint32_t zero[3] = {0, 28, 28};
    bo = idx_bytes(3, zero, img, &lo);
    put_file(src, IMG, bo, lo, true);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT, "dimension 0 is 0");
    free(bo);
    put_file(src, IMG, bi, li, true);
    /* label count differs; a label out of range */
    uint32_t fewer[1] = {NTR - 1};
    bo = idx_bytes(1, fewer, lab, &lo);
    put_file(src, LAB, bo, lo, true);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT,
                  "40 images but 'train-labels-idx1-ubyte' has 39 labels");
    free(bo);
    lab[17] = 10;
    bo = idx_bytes(1, ldims, lab, &lo);
    put_file(src, LAB, bo, lo, true);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_FORMAT,
                  "label 17 is 10, expected 0..9");
    free(bo);
    /* one class only among the images used */
    memset(lab, 4, sizeof lab);
    bo = idx_bytes(1, ldims, lab, &lo);
    put_file(src, LAB, bo, lo, true);
    ck_assert_err(mtl_multifashion_build(src, outsub, 1, 0), MTL_ERR_INVALID_ARGUMENT,
                  "all have class 4");
    free(bo);
    /* nothing was written by any failure */
    ck_assert_int_ne(access(outsub, F_OK), 0);
    /* the output directory cannot be made: a file is in the way */
    write_sources(src, true);
    char *file = path_in(out, "file");
    write_raw(file, "x", 1);
    ck_assert_err(mtl_multifashion_build(src, file, 1, 0), MTL_ERR_IO, "output directory");
    char *under = path_in(file, "sub");
    ck_assert_err(mtl_multifashion_build(src, under, 1, 0), MTL_ERR_IO, under);
    /* the internal reader: a bad ndim, a missing file */
    uint32_t dims[3];
    uint8_t *data;
    ck_assert_err(mtli_idx_load(ip, 4, dims, &data), MTL_ERR_INVALID_ARGUMENT, "ndim");
    ck_assert_err(mtli_idx_load("/nonexistent.gz", 3, dims, &data), MTL_ERR_IO,
                  "/nonexistent.gz");
    ck_assert_ok(mtli_idx_load(ip, 3, dims, &data));
    ck_assert(dims[0] == NTR && dims[1] == 28 && dims[2] == 28);
    ck_assert(memcmp(data, img, sizeof img) == 0);
    mtli_free(data);
    free(file);
    free(under);
    free(ip);
    free(bi);
    free(bl);
    rmtree(src);
    rmtree(out);
    free(src);
    free(out);
    free(outsub);
}
END_TEST

typedef struct {
    const char *src, *out;
} build_ctx;

static mtl_status build_fn(void *ctx)
{
    build_ctx *c = ctx;
    return mtl_multifashion_build(c->src, c->out, 3, 0);
}

START_TEST(allocation_failures)
{
    char *src = tmpdir(), *out = tmpdir();
    write_sources(src, true);
    build_ctx c = {src, out};
    int n = mtl_test_oom_sweep(build_fn, &c);
    ck_assert_int_gt(n, 10); /* file buffers, zlib state and window, tensors, paths */
    rmtree(src);
    rmtree(out);
    free(src);
    free(out);
}
END_TEST

/* ---- the real data ------------------------------------------------------------------------ */

/* CRC-32 of the files built from Debian's dataset-fashion-mnist with the default seed
 * (MTL_MULTIFASHION_SEED = 2019): limit 500 and the full build. Reproduced by the NumPy
 * implementation described above. */
static const uint32_t REAL500_CRC[6] = {0xca411f2a, 0x2dbac497, 0x9175ceb2,
                                        0x814e9627, 0xc1422c66, 0xd8ffee21};
static const uint32_t FULL_CRC[6] = {0x811b75b6, 0x82df4b88, 0x498bdf17,
                                     0xe206de86, 0xd62e5740, 0xdc0157b6};

static bool have_package(void)
{
    if (access(MTL_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) == 0)
        return true;
    fprintf(stderr, "note: %s not installed (package dataset-fashion-mnist): the real-data "
                    "Multi-Fashion checks are skipped\n", MTL_FASHION_MNIST_DIR);
    return false;
}

START_TEST(real_data_subset_checksum)
{
    if (!have_package())
        return;
    char *out = tmpdir();
    ck_assert_ok(mtl_multifashion_build(NULL, out, MTL_MULTIFASHION_SEED, 500));
    for (int f = 0; f < 6; f++) {
        uint32_t c = file_crc(out, FILES[f]);
        if (getenv("MTL_TEST_VERBOSE"))
            fprintf(stderr, "limit 500: %s crc32 0x%08x\n", FILES[f], (unsigned)c);
        ck_assert_msg(c == REAL500_CRC[f], "%s: crc32 0x%08x, expected 0x%08x", FILES[f],
                      (unsigned)c, (unsigned)REAL500_CRC[f]);
    }
    rmtree(out);
    free(out);
}
END_TEST

START_TEST(real_data_full_build)
{
    if (!have_package())
        return;
    char *out = tmpdir();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_ok(mtl_multifashion_build(NULL, out, MTL_MULTIFASHION_SEED, 0));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (getenv("MTL_TEST_VERBOSE"))
        fprintf(stderr, "full Multi-Fashion build: %.1f s\n", secs);
    ck_assert_msg(secs < 60.0, "the full build took %.1f s", secs);
    const int64_t want_n[6] = {120000, 120000, 120000, 20000, 20000, 20000};
    for (int f = 0; f < 6; f++) {
        char *p = path_in(out, FILES[f]);
        mtl_tensor *t;
        ck_assert_ok(mtl_npy_load(&t, p));
        ck_assert_int_eq(mtl_tensor_dim(t, 0), want_n[f]);
        if (f % 3 == 0) {
            ck_assert_int_eq(mtl_tensor_numel(t), want_n[f] * 36 * 36);
        } else { /* labels 0..9 */
            const int32_t *y = mtl_tensor_data_const(t);
            int counts[10] = {0};
            for (int64_t i = 0; i < want_n[f]; i++) {
                ck_assert(y[i] >= 0 && y[i] < 10);
                counts[y[i]]++;
            }
            for (int k = 0; k < 10; k++) /* Fashion-MNIST is balanced: 10% each (+- 1%) */
                ck_assert_msg(fabs(counts[k] - want_n[f] / 10.0) < want_n[f] / 100.0,
                              "%s: class %d has %d", FILES[f], k, counts[k]);
        }
        mtl_tensor_free(t);
        uint32_t c = file_crc(out, FILES[f]);
        ck_assert_msg(c == FULL_CRC[f], "%s: crc32 0x%08x, expected 0x%08x", FILES[f],
                      (unsigned)c, (unsigned)FULL_CRC[f]);
        free(p);
    }
    rmtree(out);
    free(out);
}
END_TEST

static Suite *fashion_suite(void)
{
    Suite *s = suite_create("fashion");
    TCase *t = tcase_create("synthetic");
    tcase_add_test(t, synthetic_build_is_deterministic);
    tcase_add_test(t, synthetic_composites_structure);
    tcase_add_test(t, missing_package_names_it);
    tcase_add_test(t, corrupt_sources_are_format_errors);
    tcase_add_test(t, allocation_failures);
    suite_add_tcase(s, t);
    TCase *r = tcase_create("real");
    tcase_add_test(r, real_data_subset_checksum);
    tcase_add_test(r, real_data_full_build);
    suite_add_tcase(s, r);
    return s;
}

MTL_TEST_MAIN(fashion_suite)
