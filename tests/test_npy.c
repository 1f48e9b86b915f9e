/* .npy loading and saving: round trips, files written by numpy (when /usr/bin/python3 with
 * numpy is available), hand-built malformed files, truncation at every offset. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mtl/mtl.h>

#include "core/tensor_internal.h"

#include "data/npy.h"
#include "test_main.h"
#include "test_oom.h"

#define ck_msg_has(sub)                                                                     \
    ck_assert_msg(strstr(mtl_last_error(), (sub)) != NULL, "message '%s' lacks '%s'",        \
                  mtl_last_error(), (sub))

static char tmpdir[256];

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/mtl_npy_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

static const char *tpath(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* An .npy file from its parts: format version major.0, header text (padded to 64 with a
 * newline like numpy), data bytes. Returns the total size written into out. */
static size_t build_npy(unsigned char *out, int major, const char *header, const void *data,
                        size_t ndata)
{
    size_t pre = major == 1 ? 10 : 12;
    size_t hl = strlen(header);
    size_t total = (pre + hl + 1 + 63) / 64 * 64;
    size_t hlen = total - pre;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)major;
    out[7] = 0;
    if (major == 1) {
        out[8] = (unsigned char)(hlen & 0xff);
        out[9] = (unsigned char)(hlen >> 8);
    } else {
        out[8] = (unsigned char)(hlen & 0xff);
        out[9] = (unsigned char)(hlen >> 8);
        out[10] = 0;
        out[11] = 0;
    }
    memcpy(out + pre, header, hl);
    memset(out + pre + hl, ' ', hlen - hl - 1);
    out[total - 1] = '\n';
    if (ndata)
        memcpy(out + total, data, ndata);
    return total + ndata;
}

static void write_npy(const char *name, int major, const char *header, const void *data,
                      size_t ndata)
{
    static unsigned char buf[8192];
    size_t n = build_npy(buf, major, header, data, ndata);
    write_bytes(tpath(name), buf, n);
}

/* Load name and expect status want with sub in the message. */
static void expect_load(const char *name, mtl_status want, const char *sub)
{
    mtl_tensor *t = (mtl_tensor *)0x1;
    mtl_status st = mtl_npy_load(&t, tpath(name));
    ck_assert_msg(st == want, "%s: status %d (%s), want %d", name, (int)st, mtl_last_error(),
                  (int)want);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(mtl_last_error(), sub) != NULL, "%s: message '%s' lacks '%s'", name,
                  mtl_last_error(), sub);
}

/* ---- round trips ------------------------------------------------------------------------- */

START_TEST(save_load_round_trip_every_rank)
{
    make_tmpdir();
    const int64_t shapes[4][4] = {{7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 2}};
    for (int nd = 1; nd <= 4; nd++) {
        for (int dt = 0; dt < 2; dt++) {
            mtl_tensor *a = NULL, *b = NULL;
            ck_assert_ok(mtl_tensor_create(&a, (mtl_dtype)dt, nd, shapes[nd - 1]));
            int64_t n = mtl_tensor_numel(a);
            for (int64_t i = 0; i < n; i++) {
                if (dt == MTL_FLOAT32)
                    ((float *)mtl_tensor_data(a))[i] = (float)(i * 0.37 - 3.1);
                else
                    ((int32_t *)mtl_tensor_data(a))[i] = (int32_t)(i * 1000003 - 7);
            }
            ck_assert_ok(mtl_npy_save(a, tpath("rt.npy")));
            ck_assert_ok(mtl_npy_load(&b, tpath("rt.npy")));
            ck_assert_int_eq(mtl_tensor_dtype(b), dt);
            ck_assert_int_eq(mtl_tensor_ndim(b), nd);
            for (int d = 0; d < nd; d++)
                ck_assert_int_eq(mtl_tensor_dim(b, d), shapes[nd - 1][d]);
            ck_assert_int_eq(memcmp(mtl_tensor_data(a), mtl_tensor_data(b), mtl_tensor_nbytes(a)),
                             0);
            ck_assert_int_eq(mtl_tensor_is_owned(b), 1);
            mtl_tensor_free(a);
            mtl_tensor_free(b);
        }
    }
    /* the header is numpy's: 64-byte aligned data, the dict as numpy writes it */
    unsigned char buf[256];
    size_t n = read_bytes(tpath("rt.npy"), buf, sizeof buf);
    ck_assert_uint_eq(n, 128 + 12 * 4);
    ck_assert_int_eq(memcmp(buf, "\x93NUMPY\x01\x00", 8), 0);
    ck_assert_int_eq(buf[8] | buf[9] << 8, 118);
    const char *want = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1, 3, 2), }";
    ck_assert_int_eq(memcmp(buf + 10, want, strlen(want)), 0);
    ck_assert_int_eq(buf[127], '\n');
    remove_tmpdir();
}
END_TEST

START_TEST(one_dimensional_header_has_trailing_comma)
{
    make_tmpdir();
    mtl_tensor *a = NULL;
    int64_t s[1] = {3};
    ck_assert_ok(mtl_tensor_create(&a, MTL_FLOAT32, 1, s));
    ck_assert_ok(mtl_npy_save(a, tpath("v.npy")));
    unsigned char buf[128];
    read_bytes(tpath("v.npy"), buf, sizeof buf);
    buf[127] = '\0';
    ck_assert_msg(strstr((char *)buf + 10, "'shape': (3,), }") != NULL, "%s", buf + 10);
    mtl_tensor_free(a);
    remove_tmpdir();
}
END_TEST

/* ---- files written by numpy -------------------------------------------------------------- */

static const char *py_script =
    "import io, sys\n"
    "try:\n"
    "    import numpy as np\n"
    "except Exception:\n"
    "    sys.exit(77)\n"
    "from numpy.lib import format as F\n"
    "d = sys.argv[1]\n"
    "shapes = [(5,), (2, 3), (2, 3, 4), (2, 1, 3, 2)]\n"
    "def vals(dt, n):\n"
    "    i = np.arange(n)\n"
    "    if dt in ('<f4', '<f8'): return i * 0.37 - 3.1\n"
    "    if dt == '<i4': return i * 1000003 - 7\n"
    "    if dt == '<i8': return i * 12345678 - 100000000\n"
    "    if dt == '|u1': return (i * 37) % 256\n"
    "    return (i * 37) % 256 - 128\n"
    "for dt in ['<f4', '<f8', '<i4', '<i8', '|u1', '|i1']:\n"
    "    for k, s in enumerate(shapes):\n"
    "        a = vals(dt, int(np.prod(s))).astype(dt).reshape(s)\n"
    "        np.save(f'{d}/np_{dt[1:]}_{k}.npy', a)\n"
    "a = np.arange(6, dtype='<f4').reshape(2, 3)\n"
    "for v in [(2, 0), (3, 0)]:\n"
    "    with open(f'{d}/np_v{v[0]}.npy', 'wb') as f: F.write_array(f, a, version=v)\n"
    "np.save(f'{d}/np_fortran.npy', np.asfortranarray(a))\n"
    "np.save(f'{d}/np_big.npy', a.astype('>f4'))\n"
    "np.save(f'{d}/np_f2.npy', a.astype('<f2'))\n"
    "np.save(f'{d}/np_scalar.npy', np.float32(3))\n"
    "np.save(f'{d}/np_empty.npy', np.zeros((0, 3), '<f4'))\n"
    "np.save(f'{d}/np_i8big.npy', np.array([1, 2, 2**31, 4], '<i8'))\n"
    "np.save(f'{d}/np_rec.npy', np.zeros(2, dtype=[('x', '<f4'), ('y', '<i4')]))\n"
    "# files written by libmtl must load in numpy\n"
    "b = np.load(f'{d}/mtl_f4.npy')\n"
    "assert b.dtype == np.float32 and b.shape == (2, 3, 4), (b.dtype, b.shape)\n"
    "assert (b == (np.arange(24) * 0.37 - 3.1).astype('<f4').reshape(2, 3, 4)).all()\n"
    "buf = io.BytesIO(); np.save(buf, b)\n"
    "assert buf.getvalue() == open(f'{d}/mtl_f4.npy', 'rb').read()  # byte-identical\n"
    "c = np.load(f'{d}/mtl_i4.npy')\n"
    "assert c.dtype == np.int32 and c.shape == (5,) and (c == np.arange(5) - 2).all()\n"
    "buf = io.BytesIO(); np.save(buf, c)\n"
    "assert buf.getvalue() == open(f'{d}/mtl_i4.npy', 'rb').read()  # byte-identical\n";

/* Run the fixture script; 0 when numpy is not available (the caller skips). */
static int run_numpy(void)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        printf("test_npy: /usr/bin/python3 not found; skipping the numpy-written files\n");
        return 0;
    }
    FILE *f = fopen(tpath("gen.py"), "w");
    ck_assert_ptr_nonnull(f);
    fputs(py_script, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", tpath("gen.py"), tmpdir);
    int rc = system(cmd);
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
        printf("test_npy: numpy is not importable by /usr/bin/python3; skipping the "
               "numpy-written files\n");
        return 0;
    }
    ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "fixture script failed (%d)", rc);
    return 1;
}

START_TEST(loads_files_written_by_numpy)
{
    make_tmpdir();
    /* files for numpy to check */
    mtl_tensor *a = NULL;
    int64_t s3[3] = {2, 3, 4}, s1[1] = {5};
    ck_assert_ok(mtl_tensor_create(&a, MTL_FLOAT32, 3, s3));
    for (int i = 0; i < 24; i++)
        ((float *)mtl_tensor_data(a))[i] = (float)(i * 0.37 - 3.1);
    ck_assert_ok(mtl_npy_save(a, tpath("mtl_f4.npy")));
    mtl_tensor_free(a);
    ck_assert_ok(mtl_tensor_create(&a, MTL_INT32, 1, s1));
    for (int i = 0; i < 5; i++)
        ((int32_t *)mtl_tensor_data(a))[i] = i - 2;
    ck_assert_ok(mtl_npy_save(a, tpath("mtl_i4.npy")));
    mtl_tensor_free(a);
    if (!run_numpy()) {
        remove_tmpdir();
        return;
    }
    const char *dts[6] = {"f4", "f8", "i4", "i8", "u1", "i1"};
    const int64_t shapes[4][4] = {{5}, {2, 3}, {2, 3, 4}, {2, 1, 3, 2}};
    for (int d = 0; d < 6; d++) {
        for (int k = 0; k < 4; k++) {
            char name[64];
            snprintf(name, sizeof name, "np_%s_%d.npy", dts[d], k);
            mtl_tensor *t = NULL;
            ck_assert_ok(mtl_npy_load(&t, tpath(name)));
            int isf = dts[d][0] == 'f';
            ck_assert_int_eq(mtl_tensor_dtype(t), isf ? MTL_FLOAT32 : MTL_INT32);
            ck_assert_int_eq(mtl_tensor_ndim(t), k + 1);
            for (int j = 0; j <= k; j++)
                ck_assert_int_eq(mtl_tensor_dim(t, j), shapes[k][j]);
            int64_t n = mtl_tensor_numel(t);
            for (int64_t i = 0; i < n; i++) {
                if (isf) {
                    float want = (float)(i * 0.37 - 3.1); /* f8 rounds to nearest like astype */
                    ck_assert_msg(((float *)mtl_tensor_data(t))[i] == want, "%s[%lld]", name,
                                  (long long)i);
                } else {
                    int64_t want = d == 2   ? i * 1000003 - 7
                                   : d == 3 ? i * 12345678 - 100000000
                                   : d == 4 ? (i * 37) % 256
                                            : (i * 37) % 256 - 128;
                    ck_assert_msg(((int32_t *)mtl_tensor_data(t))[i] == want, "%s[%lld] = %d",
                                  name, (long long)i, ((int32_t *)mtl_tensor_data(t))[i]);
                }
            }
            mtl_tensor_free(t);
        }
    }
    for (int v = 2; v <= 3; v++) {
        char name[32];
        snprintf(name, sizeof name, "np_v%d.npy", v);
        mtl_tensor *t = NULL;
        ck_assert_ok(mtl_npy_load(&t, tpath(name)));
        ck_assert_int_eq(mtl_tensor_numel(t), 6);
        ck_assert_float_eq(((float *)mtl_tensor_data(t))[5], 5.0f);
        mtl_tensor_free(t);
    }
    expect_load("np_fortran.npy", MTL_ERR_UNSUPPORTED, "fortran_order is True");
    expect_load("np_big.npy", MTL_ERR_UNSUPPORTED, "big-endian");
    expect_load("np_f2.npy", MTL_ERR_UNSUPPORTED, "dtype '<f2'");
    expect_load("np_scalar.npy", MTL_ERR_UNSUPPORTED, "0 dimensions");
    expect_load("np_empty.npy", MTL_ERR_FORMAT, "shape[0] is 0");
    expect_load("np_i8big.npy", MTL_ERR_RANGE, "flat index 2 is 2147483648");
    expect_load("np_rec.npy", MTL_ERR_UNSUPPORTED, "structured");
    remove_tmpdir();
}
END_TEST

/* ---- hand-built files -------------------------------------------------------------------- */

START_TEST(header_variants_numpy_accepts)
{
    make_tmpdir();
    float d[3] = {1.5f, -2.0f, 3.25f};
    /* double quotes, no trailing comma, Python 2 long suffix, keys in another order */
    write_npy("a.npy", 1, "{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"<f4\"}", d,
              sizeof d);
    mtl_tensor *t = NULL;
    ck_assert_ok(mtl_npy_load(&t, tpath("a.npy")));
    ck_assert_int_eq(mtl_tensor_dim(t, 0), 3);
    ck_assert_float_eq(((float *)mtl_tensor_data(t))[2], 3.25f);
    mtl_tensor_free(t);
    /* version 2.0 with a 4-byte header length */
    write_npy("b.npy", 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }", d,
              sizeof d);
    ck_assert_ok(mtl_npy_load(&t, tpath("b.npy")));
    ck_assert_int_eq(mtl_tensor_dim(t, 1), 3);
    mtl_tensor_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(malformed_headers_are_format_errors)
{
    make_tmpdir();
    float d[6] = {0};
    static const struct {
        const char *header;
        mtl_status st;
        const char *sub;
    } cases[] = {
        {"{'descr': '<f4', 'shape': (2,), }", MTL_ERR_FORMAT, "missing key 'fortran_order'"},
        {"{'fortran_order': False, 'shape': (2,), }", MTL_ERR_FORMAT, "missing key 'descr'"},
        {"{'descr': '<f4', 'fortran_order': False}", MTL_ERR_FORMAT, "missing key 'shape'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", MTL_ERR_FORMAT,
         "unknown key 'x'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
         MTL_ERR_FORMAT, "duplicate key 'descr'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", MTL_ERR_FORMAT,
         "expected ',' or '}'"},
        {"'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", MTL_ERR_FORMAT,
         "expected '{'"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", MTL_ERR_FORMAT,
         "expected ':'"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", MTL_ERR_FORMAT,
         "not True or False"},
        {"{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,)}", MTL_ERR_FORMAT,
         "not True or False"},
        {"{'descr': <f4, 'fortran_order': False, 'shape': (2,)}", MTL_ERR_FORMAT,
         "'descr' is not a string"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", MTL_ERR_FORMAT,
         "expected ',' or '}' after a value"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", MTL_ERR_FORMAT,
         "'shape' is not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", MTL_ERR_FORMAT,
         "trailing comma"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}", MTL_ERR_FORMAT,
         "expected an integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,, 3)}", MTL_ERR_FORMAT,
         "expected an integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", MTL_ERR_FORMAT,
         "after the closing"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3)}", MTL_ERR_FORMAT,
         "shape[0] is 0"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, -2)}", MTL_ERR_FORMAT,
         "shape[1] is -2"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
         MTL_ERR_FORMAT, "does not fit"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
         MTL_ERR_FORMAT, "overflows"},
        {"{'descr': 'a\\b', 'fortran_order': False, 'shape': (2,)}", MTL_ERR_FORMAT,
         "unsupported character"},
        {"", MTL_ERR_FORMAT, "expected '{'"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2,)}", MTL_ERR_UNSUPPORTED,
         "fortran_order is True"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}", MTL_ERR_UNSUPPORTED,
         "big-endian"},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (2,)}", MTL_ERR_UNSUPPORTED,
         "dtype '<c8' is not supported"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",
         MTL_ERR_UNSUPPORTED, "structured"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': ()}", MTL_ERR_UNSUPPORTED,
         "0 dimensions"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 2)}",
         MTL_ERR_UNSUPPORTED, "5 dimensions"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_npy("bad.npy", 1, cases[i].header, d, 8);
        mtl_tensor *t = (mtl_tensor *)0x1;
        mtl_status st = mtl_npy_load(&t, tpath("bad.npy"));
        ck_assert_msg(st == cases[i].st, "case %zu (%s): status %d: %s", i, cases[i].header,
                      (int)st, mtl_last_error());
        ck_assert_ptr_null(t);
        ck_assert_msg(strstr(mtl_last_error(), cases[i].sub) != NULL,
                      "case %zu: message '%s' lacks '%s'", i, mtl_last_error(), cases[i].sub);
        ck_assert_msg(strstr(mtl_last_error(), "bad.npy") != NULL, "no path in '%s'",
                      mtl_last_error());
    }
    remove_tmpdir();
}
END_TEST

START_TEST(bad_preamble_and_sizes)
{
    make_tmpdir();
    float d[4] = {1, 2, 3, 4};
    const char *h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
    unsigned char buf[512];
    size_t n = build_npy(buf, 1, h, d, sizeof d);
    buf[5] = 'Z';
    write_bytes(tpath("magic.npy"), buf, n);
    expect_load("magic.npy", MTL_ERR_FORMAT, "bad magic");
    write_bytes(tpath("tiny.npy"), "PK\x03", 3);
    expect_load("tiny.npy", MTL_ERR_FORMAT, "bad magic");
    buf[5] = 'Y';
    buf[6] = 4;
    write_bytes(tpath("v4.npy"), buf, n);
    expect_load("v4.npy", MTL_ERR_FORMAT, "version 4.0");
    buf[6] = 1;
    buf[7] = 1;
    write_bytes(tpath("v11.npy"), buf, n);
    expect_load("v11.npy", MTL_ERR_FORMAT, "version 1.1");
    buf[7] = 0;
    write_bytes(tpath("short.npy"), buf, n - 1);
    expect_load("short.npy", MTL_ERR_FORMAT, "data has 15 bytes");
    buf[n] = 0;
    write_bytes(tpath("long.npy"), buf, n + 1);
    expect_load("long.npy", MTL_ERR_FORMAT, "1 unexpected bytes");
    /* a header length beyond the end of the file */
    buf[8] = 0xff;
    buf[9] = 0x7f;
    write_bytes(tpath("hlen.npy"), buf, n);
    expect_load("hlen.npy", MTL_ERR_FORMAT, "the header needs 32767 bytes");
    expect_load("does_not_exist.npy", MTL_ERR_IO, "No such file or directory");
    ck_msg_has("does_not_exist.npy");
    mtl_tensor *t = NULL;
    ck_assert_status(mtl_npy_load(&t, tmpdir), MTL_ERR_IO);
    ck_msg_has("not a regular file");
    ck_assert_status(mtl_npy_load(NULL, tpath("x")), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_npy_load(&t, NULL), MTL_ERR_INVALID_ARGUMENT);
    remove_tmpdir();
}
END_TEST

START_TEST(truncation_at_every_offset)
{
    make_tmpdir();
    double d8[6] = {1, 2, 3, 4, 5, 6};
    float d4[6] = {1, 2, 3, 4, 5, 6};
    static unsigned char buf[3][512];
    size_t n[3];
    n[0] = build_npy(buf[0], 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                     d4, sizeof d4);
    n[1] = build_npy(buf[1], 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", d8,
                     sizeof d8);
    n[2] = build_npy(buf[2], 3, "{'descr': '|u1', 'fortran_order': False, 'shape': (6,), }",
                     "abcdef", 6);
    for (int f = 0; f < 3; f++) {
        for (size_t k = 0; k < n[f]; k++) {
            write_bytes(tpath("cut.npy"), buf[f], k);
            mtl_tensor *t = (mtl_tensor *)0x1;
            mtl_status st = mtl_npy_load(&t, tpath("cut.npy"));
            ck_assert_msg(st == MTL_ERR_FORMAT, "file %d cut at %zu: status %d: %s", f, k,
                          (int)st, mtl_last_error());
            ck_assert_ptr_null(t);
        }
        write_bytes(tpath("cut.npy"), buf[f], n[f]);
        mtl_tensor *t = NULL;
        ck_assert_ok(mtl_npy_load(&t, tpath("cut.npy")));
        ck_assert_int_eq(mtl_tensor_numel(t), 6);
        mtl_tensor_free(t);
    }
    remove_tmpdir();
}
END_TEST

START_TEST(int64_out_of_range_names_index)
{
    make_tmpdir();
    int64_t v[3] = {5, INT64_C(-2147483649), 7};
    write_npy("i8.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", v,
              sizeof v);
    expect_load("i8.npy", MTL_ERR_RANGE, "flat index 1 is -2147483649");
    v[1] = INT32_MIN;
    write_npy("i8.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", v,
              sizeof v);
    mtl_tensor *t = NULL;
    ck_assert_ok(mtl_npy_load(&t, tpath("i8.npy")));
    ck_assert_int_eq(((int32_t *)mtl_tensor_data(t))[1], INT32_MIN);
    mtl_tensor_free(t);
    remove_tmpdir();
}
END_TEST

static mtl_status load_fn(void *ctx)
{
    mtl_tensor *t = NULL;
    mtl_status st = mtl_npy_load(&t, ctx);
    mtl_tensor_free(t);
    return st;
}

START_TEST(large_file_path_loads_and_is_private)
{
    /* force the large-file path (a private mapping where the build supports it) */
    make_tmpdir();
    size_t old = mtli_npy_set_mmap_threshold(0);
    mtl_tensor *a = NULL, *b = NULL, *c = NULL;
    int64_t s[2] = {100, 33};
    ck_assert_ok(mtl_tensor_create(&a, MTL_FLOAT32, 2, s));
    for (int i = 0; i < 3300; i++)
        ((float *)mtl_tensor_data(a))[i] = (float)i * 0.5f;
    ck_assert_ok(mtl_npy_save(a, tpath("big.npy")));
    ck_assert_ok(mtl_npy_load(&b, tpath("big.npy")));
    ck_assert_int_eq(memcmp(mtl_tensor_data(a), mtl_tensor_data(b), 3300 * 4), 0);
    /* writing into the tensor must not change the file */
    ((float *)mtl_tensor_data(b))[7] = -1.0f;
    ck_assert_ok(mtl_npy_load(&c, tpath("big.npy")));
    ck_assert_float_eq(((float *)mtl_tensor_data(c))[7], 3.5f);
    if (mtli_npy_can_map())
    {
        ck_assert(b->release != NULL); /* the mapping, not a copy */
        ck_assert_int_eq(mtl_tensor_is_owned(b), 1); /* freed (unmapped) with the tensor */
    }
    else
        printf("test_npy: this build reads large .npy files instead of mapping them\n");
    char p[512];
    snprintf(p, sizeof p, "%s", tpath("big.npy"));
    ck_assert_int_ge(mtl_test_oom_sweep(load_fn, p), 1);
    mtl_tensor_free(a);
    mtl_tensor_free(b);
    mtl_tensor_free(c);
    mtli_npy_set_mmap_threshold(old);
    remove_tmpdir();
}
END_TEST

/* ---- saving ------------------------------------------------------------------------------ */

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

START_TEST(save_is_atomic_and_reports_errors)
{
    make_tmpdir();
    mtl_tensor *a = NULL, *b = NULL;
    int64_t s[1] = {4};
    ck_assert_ok(mtl_tensor_create(&a, MTL_INT32, 1, s));
    ck_assert_ok(mtl_tensor_fill(a, 3));
    ck_assert_ok(mtl_npy_save(a, tpath("x.npy")));
    ck_assert_ok(mtl_tensor_fill(a, 9));
    ck_assert_ok(mtl_npy_save(a, tpath("x.npy"))); /* replaces the old file */
    ck_assert_ok(mtl_npy_load(&b, tpath("x.npy")));
    ck_assert_int_eq(((int32_t *)mtl_tensor_data(b))[3], 9);
    mtl_tensor_free(b);
    ck_assert_int_eq(count_entries(tmpdir), 1); /* no temporary file left behind */
    /* a directory in the way: the rename fails, the temporary file is removed */
    ck_assert_int_eq(mkdir(tpath("sub"), 0755), 0);
    ck_assert_status(mtl_npy_save(a, tpath("sub")), MTL_ERR_IO);
    ck_msg_has("sub");
    ck_assert_int_eq(count_entries(tmpdir), 2);
    ck_assert_status(mtl_npy_save(a, tpath("missing/dir/x.npy")), MTL_ERR_IO);
    ck_msg_has("missing/dir/x.npy");
    ck_msg_has("No such file or directory");
    ck_assert_status(mtl_npy_save(NULL, tpath("y.npy")), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_npy_save(a, NULL), MTL_ERR_INVALID_ARGUMENT);
    mtl_tensor_free(a);
    remove_tmpdir();
}
END_TEST

static mtl_tensor *oom_src;
static mtl_status save_fn(void *ctx)
{
    return mtl_npy_save(oom_src, ctx);
}

START_TEST(allocation_failures)
{
    make_tmpdir();
    double d8[6] = {1, 2, 3, 4, 5, 6};
    write_npy("f8.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", d8,
              sizeof d8);
    char p[512];
    snprintf(p, sizeof p, "%s", tpath("f8.npy"));
    ck_assert_int_ge(mtl_test_oom_sweep(load_fn, p), 2);
    ck_assert_ok(mtl_npy_load(&oom_src, p));
    snprintf(p, sizeof p, "%s", tpath("out.npy"));
    ck_assert_int_ge(mtl_test_oom_sweep(save_fn, p), 1);
    mtl_tensor_free(oom_src);
    ck_assert_int_eq(count_entries(tmpdir), 2);
    remove_tmpdir();
}
END_TEST

static Suite *npy_suite(void)
{
    Suite *s = suite_create("npy");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, save_load_round_trip_every_rank);
    tcase_add_test(tc, one_dimensional_header_has_trailing_comma);
    tcase_add_test(tc, loads_files_written_by_numpy);
    tcase_add_test(tc, header_variants_numpy_accepts);
    tcase_add_test(tc, malformed_headers_are_format_errors);
    tcase_add_test(tc, bad_preamble_and_sizes);
    tcase_add_test(tc, truncation_at_every_offset);
    tcase_add_test(tc, int64_out_of_range_names_index);
    tcase_add_test(tc, large_file_path_loads_and_is_private);
    tcase_add_test(tc, save_is_atomic_and_reports_errors);
    tcase_add_test(tc, allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(npy_suite)
