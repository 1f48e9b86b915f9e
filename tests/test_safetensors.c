/* safetensors: round trip, the layout of the written file, exchange with Python (reading our
 * files and writing ones we read), strict rejection of malformed headers and data with the
 * model unchanged, atomic saves and allocation failures. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mtl/mtl.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "io/iofile.h"
#include "io/json.h"
#include "model/model_internal.h"
#include "test_main.h"
#include "test_oom.h"

static char g_dir[64];

static void setup(void)
{
    strcpy(g_dir, "/tmp/mtl_st_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void teardown(void) { remove_tree(g_dir); }

static const char *in_dir(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void write_all(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* A trunk with batch norm (state tensors) and two heads. */
static mtl_model *make_model(uint64_t seed)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {5};
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 1, shape));
    mtl_trunk *t = mtl_model_trunk(m);
    ck_assert_ok(mtl_trunk_add_linear(t, 7));
    ck_assert_ok(mtl_trunk_add_layer(t, "batch_norm", NULL));
    ck_assert_ok(mtl_trunk_add_layer(t, "relu", NULL));
    ck_assert_ok(mtl_trunk_add_linear(t, 4));
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "cls"));
    ck_assert_ok(mtl_head_add_linear(h, 3));
    ck_assert_ok(mtl_head_set_loss(h, "cross_entropy"));
    ck_assert_ok(mtl_model_add_head(m, &h, "reg"));
    ck_assert_ok(mtl_head_add_layer(h, "layer_norm", NULL));
    ck_assert_ok(mtl_head_add_linear(h, 2));
    ck_assert_ok(mtl_model_build(m, 8, seed));
    return m;
}

/* Tensors: trunk.0.weight [2,2], trunk.0.bias [2], heads.a.0.weight [1,2], heads.a.0.bias [1]. */
static mtl_model *make_tiny(uint64_t seed)
{
    mtl_model *m = NULL;
    int64_t shape[1] = {2};
    ck_assert_ok(mtl_model_create(&m, MTL_FLOAT32, 1, shape));
    ck_assert_ok(mtl_trunk_add_linear(mtl_model_trunk(m), 2));
    mtl_head *h;
    ck_assert_ok(mtl_model_add_head(m, &h, "a"));
    ck_assert_ok(mtl_head_add_linear(h, 1));
    ck_assert_ok(mtl_model_build(m, 4, seed));
    return m;
}

/* A few training steps so that the running statistics are not their initial values. */
static void train_a_little(mtl_model *m)
{
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtl_optimizer_create(&o, m, "sgd"));
    mtli_rng r;
    mtli_rng_seed(&r, 77);
    int64_t sx[2] = {8, 5}, sy[1] = {8}, sr[2] = {8, 2};
    mtl_tensor *x, *y[2];
    ck_assert_ok(mtl_tensor_create(&x, MTL_FLOAT32, 2, sx));
    ck_assert_ok(mtl_tensor_create(&y[0], MTL_INT32, 1, sy));
    ck_assert_ok(mtl_tensor_create(&y[1], MTL_FLOAT32, 2, sr));
    for (int s = 0; s < 3; s++) {
        float *xd = mtl_tensor_data(x), *yr = mtl_tensor_data(y[1]);
        int32_t *yc = mtl_tensor_data(y[0]);
        for (int i = 0; i < 40; i++)
            xd[i] = 2.0f * mtli_rng_uniform(&r) - 1.0f;
        for (int i = 0; i < 8; i++)
            yc[i] = (int32_t)mtli_rng_below(&r, 3);
        for (int i = 0; i < 16; i++)
            yr[i] = mtli_rng_uniform(&r);
        ck_assert_ok(mtl_model_train_step(m, o, NULL, x, (const mtl_tensor *const *)y, NULL,
                                          NULL));
    }
    mtl_tensor_free(x);
    mtl_tensor_free(y[0]);
    mtl_tensor_free(y[1]);
    mtl_optimizer_free(o);
}

static void assert_same_values(const mtl_model *a, const mtl_model *b)
{
    ck_assert(memcmp(a->params, b->params, a->nparams * 4) == 0);
    ck_assert(memcmp(a->state, b->state, a->nstate * 4) == 0);
}

START_TEST(round_trip_restores_every_tensor)
{
    mtl_model *m = make_model(1);
    train_a_little(m);
    ck_assert_uint_gt(m->nstate, 0);
    const char *path = in_dir("m.safetensors");
    ck_assert_ok(mtl_model_save_safetensors(m, path));
    /* into another instance of the architecture */
    mtl_model *m2 = make_model(2);
    ck_assert(memcmp(m->params, m2->params, m->nparams * 4) != 0);
    ck_assert_ok(mtl_model_load_safetensors(m2, path));
    assert_same_values(m, m2);
    /* into the same model after its values changed */
    float *keep = malloc(m->nparams * 4), *keep_s = malloc(m->nstate * 4);
    memcpy(keep, m->params, m->nparams * 4);
    memcpy(keep_s, m->state, m->nstate * 4);
    memset(m->params, 0, m->nparams * 4);
    memset(m->state, 0, m->nstate * 4);
    ck_assert_ok(mtl_model_load_safetensors(m, path));
    ck_assert(memcmp(keep, m->params, m->nparams * 4) == 0);
    ck_assert(memcmp(keep_s, m->state, m->nstate * 4) == 0);
    free(keep);
    free(keep_s);
    mtl_model_free(m2);
    mtl_model_free(m);
}
END_TEST

/* The written file: u64 header size (multiple of 8), a JSON header with the metadata and
 * every named tensor sorted by name with contiguous offsets, then the little-endian data. */
START_TEST(written_file_follows_the_format)
{
    mtl_model *m = make_model(3);
    train_a_little(m);
    const char *path = in_dir("m.safetensors");
    ck_assert_ok(mtl_model_save_safetensors(m, path));
    size_t n;
    unsigned char *b = read_all(path, &n);
    uint64_t hn = mtli_get_u64(b);
    ck_assert_uint_eq(hn % 8, 0);
    ck_assert_uint_le(8 + hn, n);
    ck_assert_int_eq(b[8], '{');
    mtli_json doc;
    ck_assert_ok(mtli_json_parse(&doc, (const char *)b + 8, (size_t)hn, "test"));
    const mtli_json_node *root = &doc.nodes[0];
    const mtli_json_node *md = mtli_json_member(&doc, root, "__metadata__");
    ck_assert_ptr_nonnull(md);
    ck_assert(mtli_json_str_is(mtli_json_member(&doc, md, "format"), "pt"));
    ck_assert(mtli_json_str_is(mtli_json_member(&doc, md, "producer"),
                               "libmtl " MTL_VERSION_STRING));
    ck_assert_uint_eq(root->count, (size_t)m->nnamed + 1);
    const char *prev = "";
    uint64_t at = 0;
    for (const mtli_json_node *t = mtli_json_first(&doc, root); t; t = mtli_json_next(&doc, t)) {
        if (t == md)
            continue;
        ck_assert_int_lt(strcmp(prev, t->key), 0);
        prev = t->key;
        ck_assert(mtli_json_str_is(mtli_json_member(&doc, t, "dtype"), "F32"));
        const mtli_json_node *of = mtli_json_member(&doc, t, "data_offsets");
        uint64_t b0, b1;
        ck_assert(mtli_json_u64(mtli_json_first(&doc, of), &b0));
        ck_assert(mtli_json_u64(mtli_json_next(&doc, mtli_json_first(&doc, of)), &b1));
        ck_assert_uint_eq(b0, at);
        at = b1;
        int64_t shape[4];
        int nd;
        ck_assert_ok(mtl_model_param_shape(m, t->key, shape, 4, &nd));
        const mtli_json_node *sh = mtli_json_member(&doc, t, "shape");
        ck_assert_uint_eq(sh->count, (size_t)nd);
        size_t cnt = 1, d = 0;
        for (const mtli_json_node *s = mtli_json_first(&doc, sh); s; s = mtli_json_next(&doc, s)) {
            uint64_t v;
            ck_assert(mtli_json_u64(s, &v));
            ck_assert_uint_eq(v, (uint64_t)shape[d++]);
            cnt *= v;
        }
        ck_assert_uint_eq(b1 - b0, cnt * 4);
        /* the values, little-endian */
        mtl_tensor *tv = NULL;
        int64_t c1[1] = {(int64_t)cnt};
        ck_assert_ok(mtl_tensor_create(&tv, MTL_FLOAT32, 1, c1));
        ck_assert_ok(mtl_model_get_param(m, t->key, tv));
        const float *want = mtl_tensor_data(tv);
        for (size_t i = 0; i < cnt; i++) {
            uint32_t u = mtli_get_u32(b + 8 + hn + b0 + 4 * i), w;
            memcpy(&w, &want[i], 4);
            ck_assert_uint_eq(u, w);
        }
        mtl_tensor_free(tv);
    }
    ck_assert_uint_eq(8 + hn + at, n);
    mtli_json_free(&doc);
    free(b);
    mtl_model_free(m);
}
END_TEST

/* ---- Python interop -------------------------------------------------------------------- */

static const char *py_reader =
    "import json, struct, sys\n"
    "b = open(sys.argv[1], 'rb').read()\n"
    "n = struct.unpack('<Q', b[:8])[0]\n"
    "assert (8 + n) % 8 == 0, 'data not aligned'\n"
    "h = json.loads(b[8:8 + n].decode('utf-8'))\n"
    "meta = h.pop('__metadata__')\n"
    "assert meta['format'] == 'pt', meta\n"
    "data = b[8 + n:]\n"
    "names = list(h.keys())\n"
    "assert names == sorted(names), names\n"
    "try:\n"
    "    import torch\n"
    "except Exception:\n"
    "    torch = None\n"
    "off = 0\n"
    "for k in names:\n"
    "    e = h[k]\n"
    "    assert e['dtype'] == 'F32'\n"
    "    s, t = e['data_offsets']\n"
    "    assert s == off\n"
    "    off = t\n"
    "    cnt = 1\n"
    "    for d in e['shape']:\n"
    "        cnt *= d\n"
    "    assert t - s == 4 * cnt\n"
    "    vals = struct.unpack('<%df' % cnt, data[s:t])\n"
    "    tot = 0.0\n"
    "    for v in vals:\n"
    "        tot += v\n"
    "    if torch is not None:\n"
    "        x = torch.frombuffer(bytearray(data[s:t]), dtype=torch.float32).reshape(e['shape'])\n"
    "        assert list(x.shape) == e['shape']\n"
    "        assert x.flatten().tolist() == list(vals)\n"
    "    print(k, ','.join(str(d) for d in e['shape']), float.hex(tot))\n"
    "assert off == len(data)\n";

/* Writes the tensors named in a spec file ("name d0,d1" lines) in reverse order, with
 * json.dumps's default spacing, values ((i * 7 + 13 * j) % 101 - 50) / 64 for element i of
 * tensor j (exact in float32). */
static const char *py_writer =
    "import json, struct, sys\n"
    "spec = [l.split() for l in open(sys.argv[1]) if l.strip()]\n"
    "hdr = {'__metadata__': {'format': 'pt'}}\n"
    "blobs = []\n"
    "off = 0\n"
    "for j, (name, shape) in reversed(list(enumerate(spec))):\n"
    "    dims = [int(d) for d in shape.split(',')]\n"
    "    cnt = 1\n"
    "    for d in dims:\n"
    "        cnt *= d\n"
    "    vals = [((i * 7 + 13 * j) % 101 - 50) / 64.0 for i in range(cnt)]\n"
    "    blob = struct.pack('<%df' % cnt, *vals)\n"
    "    hdr[name] = {'dtype': 'F32', 'shape': dims, 'data_offsets': [off, off + len(blob)]}\n"
    "    off += len(blob)\n"
    "    blobs.append(blob)\n"
    "h = json.dumps(hdr).encode('utf-8')\n"
    "h += b' ' * ((8 - len(h) % 8) % 8)\n"
    "with open(sys.argv[2], 'wb') as f:\n"
    "    f.write(struct.pack('<Q', len(h)))\n"
    "    f.write(h)\n"
    "    for blob in blobs:\n"
    "        f.write(blob)\n";

static int python_available(void)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        return 0;
    return system("/usr/bin/python3 -c 'import json, struct' >/dev/null 2>&1") == 0;
}

START_TEST(python_reads_our_files_and_we_read_its_files)
{
    if (!python_available()) {
        printf("test_safetensors: /usr/bin/python3 unavailable, Python interop not checked\n");
        return;
    }
    mtl_model *m = make_model(4);
    train_a_little(m);
    const char *path = in_dir("ours.safetensors"), *script = in_dir("read.py");
    const char *out = in_dir("read.out");
    ck_assert_ok(mtl_model_save_safetensors(m, path));
    write_all(script, py_reader, strlen(py_reader));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s > %s 2>&1", script, path, out);
    int rc = system(cmd);
    size_t n;
    char *txt = (char *)read_all(out, &n);
    txt[n] = '\0';
    ck_assert_msg(rc == 0, "the Python reader failed:\n%s", txt);
    /* one line per tensor: name, shape, exact double sum of its float32 values */
    int lines = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        char name[128], shape[64], hex[64];
        ck_assert_int_eq(sscanf(line, "%127s %63s %63s", name, shape, hex), 3);
        int64_t s[4];
        int nd;
        ck_assert_ok(mtl_model_param_shape(m, name, s, 4, &nd));
        char want[64];
        size_t k = 0;
        for (int d = 0; d < nd; d++)
            k += (size_t)snprintf(want + k, sizeof want - k, "%s%lld", d ? "," : "",
                                  (long long)s[d]);
        ck_assert_str_eq(shape, want);
        const mtli_named_param *p = NULL;
        for (int i = 0; i < m->nnamed; i++)
            if (strcmp(m->named[i].name, name) == 0)
                p = &m->named[i];
        double tot = 0.0;
        for (size_t i = 0; i < p->count; i++)
            tot += (double)p->data[i];
        ck_assert_msg(strtod(hex, NULL) == tot, "%s: Python sums %s, libmtl %a", name, hex, tot);
        lines++;
    }
    ck_assert_int_eq(lines, m->nnamed);
    free(txt);

    /* Python writes a file for the model (other order, other spacing); we read it */
    const char *spec = in_dir("spec.txt"), *wscript = in_dir("write.py");
    const char *theirs = in_dir("theirs.safetensors");
    FILE *f = fopen(spec, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < m->nnamed; i++) {
        fprintf(f, "%s ", m->named[i].name);
        for (int d = 0; d < m->named[i].ndim; d++)
            fprintf(f, "%s%lld", d ? "," : "", (long long)m->named[i].shape[d]);
        fprintf(f, "\n");
    }
    fclose(f);
    write_all(wscript, py_writer, strlen(py_writer));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s > %s 2>&1", wscript, spec, theirs, out);
    rc = system(cmd);
    txt = (char *)read_all(out, &n);
    txt[n] = '\0';
    ck_assert_msg(rc == 0, "the Python writer failed:\n%s", txt);
    free(txt);
    ck_assert_ok(mtl_model_load_safetensors(m, theirs));
    for (int j = 0; j < m->nnamed; j++)
        for (size_t i = 0; i < m->named[j].count; i++) {
            float want = (float)((double)((long)(i * 7 + 13 * (size_t)j) % 101 - 50) / 64.0);
            ck_assert_msg(m->named[j].data[i] == want, "%s[%zu] = %g, expected %g",
                          m->named[j].name, i, (double)m->named[j].data[i], (double)want);
        }
    mtl_model_free(m);
}
END_TEST

/* ---- malformed files ------------------------------------------------------------------- */

/* The tiny model's valid header; %s slots allow variations. */
static void put_file(const char *path, const char *header, const float *data, size_t nfloats,
                     int pad)
{
    size_t hn = strlen(header);
    size_t padded = pad ? (hn + 7) / 8 * 8 : hn;
    size_t total = 8 + padded + 4 * nfloats;
    unsigned char *b = malloc(total);
    mtli_put_u64(b, padded);
    memcpy(b + 8, header, hn);
    memset(b + 8 + hn, ' ', padded - hn);
    for (size_t i = 0; i < nfloats; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        mtli_put_u32(b + 8 + padded + 4 * i, u);
    }
    write_all(path, b, total);
    free(b);
}

static const char *VALID =
    "{\"trunk.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
    "\"trunk.0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
    "\"heads.a.0.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[24,32]},"
    "\"heads.a.0.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[32,36]}}";

static const float DATA[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

/* Replace the first occurrence of `from` in VALID by `to`. */
static char *variant(const char *from, const char *to)
{
    const char *at = strstr(VALID, from);
    ck_assert_ptr_nonnull(at);
    size_t n = strlen(VALID) - strlen(from) + strlen(to) + 1;
    char *s = malloc(n);
    size_t k = (size_t)(at - VALID);
    memcpy(s, VALID, k);
    strcpy(s + k, to);
    strcat(s, at + strlen(from));
    return s;
}

static void expect_refused(mtl_model *m, const char *path, mtl_status want, const char *msg)
{
    float before[16];
    memcpy(before, m->params, m->nparams * 4);
    ck_assert_status(mtl_model_load_safetensors(m, path), want);
    ck_assert_msg(strstr(mtl_last_error(), msg) != NULL, "message '%s' lacks '%s'",
                  mtl_last_error(), msg);
    ck_assert(memcmp(before, m->params, m->nparams * 4) == 0);
}

static void expect_header(mtl_model *m, const char *header, mtl_status want, const char *msg)
{
    const char *path = in_dir("bad.safetensors");
    put_file(path, header, DATA, 9, 1);
    expect_refused(m, path, want, msg);
}

static void expect_variant(mtl_model *m, const char *from, const char *to, mtl_status want,
                           const char *msg)
{
    char *h = variant(from, to);
    expect_header(m, h, want, msg);
    free(h);
}

START_TEST(valid_headers_in_other_forms_load)
{
    mtl_model *m = make_tiny(1);
    const char *path = in_dir("ok.safetensors");
    /* unpadded, padded, with whitespace and escapes, metadata, any order */
    put_file(path, VALID, DATA, 9, 0);
    ck_assert_ok(mtl_model_load_safetensors(m, path));
    float w[4];
    memcpy(w, m->params, 16);
    ck_assert(w[0] == 1 && w[3] == 4);
    char *h = variant("\"trunk.0.bias\"", "\n  \"trunk.0.\\u0062ias\" ");
    char *h2 = malloc(strlen(h) + 64);
    sprintf(h2, "{ \"__metadata__\" : {\"format\": \"pt\", \"x\": \"\\u00e9\\ud83d\\ude00\"} ,%s",
            h + 1);
    memcpy(m->params, (float[9]){0}, 36);
    put_file(path, h2, DATA, 9, 1);
    ck_assert_ok(mtl_model_load_safetensors(m, path));
    const float *p = m->params;
    for (int i = 0; i < 9; i++) {
        /* the model's layout: trunk weight, bias, head weight, bias */
        ck_assert(p[i] == DATA[i]);
    }
    free(h);
    free(h2);
    mtl_model_free(m);
}
END_TEST

START_TEST(malformed_headers_are_refused_and_change_nothing)
{
    mtl_model *m = make_tiny(2);
    const char *path = in_dir("bad.safetensors");
    /* sizes */
    write_all(path, "\x10\0\0", 3);
    expect_refused(m, path, MTL_ERR_FORMAT, "too short");
    unsigned char big[16] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '{', '}'};
    write_all(path, big, sizeof big);
    expect_refused(m, path, MTL_ERR_FORMAT, "at most");
    big[0] = 200;
    big[1] = big[2] = big[3] = 0;
    write_all(path, big, sizeof big);
    expect_refused(m, path, MTL_ERR_FORMAT, "only 8 follow");
    expect_header(m, "[]", MTL_ERR_FORMAT, "start with '{'");
    /* JSON syntax */
    expect_variant(m, "[32,36]}}", "[32,36]},}", MTL_ERR_FORMAT, "expected a member name");
    expect_variant(m, "\"F32\",\"shape\":[2]", "\"F32\",\"shape\":[2,]", MTL_ERR_FORMAT,
                   "invalid JSON");
    expect_variant(m, "\"trunk.0.bias\"", "\"trunk.0.bias", MTL_ERR_FORMAT, "invalid JSON");
    expect_variant(m, "\"trunk.0.bias\"", "\"trunk.0.\\xbias\"", MTL_ERR_FORMAT, "unknown escape");
    expect_variant(m, "\"trunk.0.bias\"", "\"trunk.0.\tbias\"", MTL_ERR_FORMAT, "control character");
    expect_variant(m, "\"trunk.0.bias\"", "'trunk.0.bias'", MTL_ERR_FORMAT, "invalid JSON");
    expect_variant(m, "\"trunk.0.bias\"", "\"trunk.0.\\ud800bias\"", MTL_ERR_FORMAT, "surrogate");
    expect_variant(m, "\"trunk.0.bias\"", "\"trunk.0.\xc3\x28\"", MTL_ERR_FORMAT, "invalid UTF-8");
    expect_variant(m, "\"trunk.0.bias\"", "\"trunk.0.\xed\xa0\x80\"", MTL_ERR_FORMAT,
                   "invalid UTF-8");
    expect_variant(m, "[16,24]", "[016,24]", MTL_ERR_FORMAT, "invalid JSON");
    expect_variant(m, "[16,24]", "[16,24]/*c*/", MTL_ERR_FORMAT, "invalid JSON");
    expect_variant(m, "[16,24]", "[NaN,24]", MTL_ERR_FORMAT, "invalid JSON");
    expect_variant(m, "[32,36]}}", "[32,36]}} x", MTL_ERR_FORMAT, "after the value");
    expect_variant(m, "\"trunk.0.bias\":{\"dtype\":\"F32\",",
                   "\"trunk.0.bias\":{\"dtype\":\"F32\",\"dtype\":\"F32\",", MTL_ERR_FORMAT,
                   "repeated member name");
    expect_variant(m, "\"heads.a.0.bias\"", "\"trunk.0.bias\"", MTL_ERR_FORMAT,
                   "repeated member name");
    /* nesting */
    char deep[1024];
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"__metadata__\":");
    for (int i = 0; i < 200; i++)
        deep[k++] = '[';
    for (int i = 0; i < 200; i++)
        deep[k++] = ']';
    strcpy(deep + k, "}");
    expect_header(m, deep, MTL_ERR_FORMAT, "nesting too deep");
    /* entries */
    expect_variant(m, "\"dtype\":\"F32\",\"shape\":[2],", "\"shape\":[2],", MTL_ERR_FORMAT,
                   "needs");
    expect_variant(m, "\"dtype\":\"F32\",\"shape\":[2],", "\"dtype\":\"F33\",\"shape\":[2],",
                   MTL_ERR_FORMAT, "unknown dtype 'F33'");
    expect_variant(m, "\"dtype\":\"F32\",\"shape\":[2],", "\"dtype\":\"I32\",\"shape\":[2],",
                   MTL_ERR_SHAPE, "is I32, expected F32");
    expect_variant(m, "\"dtype\":\"F32\",\"shape\":[2],", "\"dtype\":\"F16\",\"shape\":[4],",
                   MTL_ERR_SHAPE, "is F16, expected F32");
    expect_variant(m, "\"shape\":[2,2]", "\"shape\":[4]", MTL_ERR_SHAPE,
                   "has shape [4], the model's is [2, 2]");
    expect_variant(m, "\"shape\":[2,2]", "\"shape\":[2,3]", MTL_ERR_FORMAT, "16 bytes for 6");
    expect_variant(m, "\"shape\":[2,2]", "\"shape\":[-2,-2]", MTL_ERR_FORMAT, "non-negative");
    expect_variant(m, "\"shape\":[2,2]", "\"shape\":[2.0,2]", MTL_ERR_FORMAT, "non-negative");
    expect_variant(m, "[16,24]", "[1.6e1,24]", MTL_ERR_FORMAT, "two non-negative integers");
    expect_variant(m, "[16,24]", "[16,24,32]", MTL_ERR_FORMAT, "two non-negative integers");
    expect_variant(m, "[16,24]", "[24,16]", MTL_ERR_FORMAT, "outside");
    expect_variant(m, "[32,36]", "[32,40]", MTL_ERR_FORMAT, "outside");
    expect_variant(m, "[32,36]", "[99999999999999999999,36]", MTL_ERR_FORMAT,
                   "two non-negative integers");
    expect_variant(m, "\"shape\":[1],\"data_offsets\":[32,36]",
                   "\"shape\":[1],\"data_offsets\":[32,36],\"extra\":1", MTL_ERR_FORMAT,
                   "unknown field 'extra'");
    expect_variant(m, "{\"trunk.0.weight\"", "{\"__metadata__\":{\"format\":1},\"trunk.0.weight\"",
                   MTL_ERR_FORMAT, "must be a string");
    expect_variant(m, "{\"trunk.0.weight\"", "{\"__metadata__\":[],\"trunk.0.weight\"",
                   MTL_ERR_FORMAT, "must be an object");
    expect_variant(m, "{\"trunk.0.weight\":{", "{\"trunk.0.weight\":[],\"x\":{", MTL_ERR_FORMAT,
                   "not an object");
    /* overlap, gap, uncovered bytes */
    expect_variant(m, "[16,24]},\"heads.a.0.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],"
                      "\"data_offsets\":[24,32]",
                   "[16,24]},\"heads.a.0.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],"
                   "\"data_offsets\":[20,28]",
                   MTL_ERR_FORMAT, "must not overlap or leave gaps");
    {
        /* the data holds one float more than the tensors cover */
        float d10[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        put_file(path, VALID, d10, 10, 1);
        expect_refused(m, path, MTL_ERR_FORMAT, "cover 36 data bytes, the file holds 40");
    }
    /* missing and extra tensors */
    char *h = variant(",\"heads.a.0.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[32,36]}",
                      "");
    put_file(path, h, DATA, 8, 1);
    expect_refused(m, path, MTL_ERR_NOT_FOUND, "no tensor 'heads.a.0.bias'");
    free(h);
    h = variant("\"heads.a.0.bias\"", "\"heads.b.0.bias\"");
    put_file(path, h, DATA, 9, 1);
    expect_refused(m, path, MTL_ERR_NOT_FOUND, "no parameter 'heads.b.0.bias'");
    free(h);
    /* non-finite values */
    float dn[9];
    memcpy(dn, DATA, sizeof dn);
    dn[5] = NAN;
    put_file(path, VALID, dn, 9, 1);
    expect_refused(m, path, MTL_ERR_FORMAT, "'trunk.0.bias': element 1");
    dn[5] = INFINITY;
    put_file(path, VALID, dn, 9, 1);
    expect_refused(m, path, MTL_ERR_FORMAT, "element 1");
    /* the file system */
    expect_refused(m, in_dir("absent"), MTL_ERR_IO, "absent");
    expect_refused(m, g_dir, MTL_ERR_IO, "not a regular file");
    mtl_model_free(m);
}
END_TEST

START_TEST(every_truncation_is_refused)
{
    mtl_model *m = make_tiny(3);
    const char *good = in_dir("good.safetensors"), *bad = in_dir("bad.safetensors");
    ck_assert_ok(mtl_model_save_safetensors(m, good));
    size_t n;
    unsigned char *b = read_all(good, &n);
    mtl_model *t = make_tiny(4);
    float before[16];
    memcpy(before, t->params, t->nparams * 4);
    for (size_t len = 0; len < n; len++) {
        write_all(bad, b, len);
        mtl_status st = mtl_model_load_safetensors(t, bad);
        ck_assert_msg(st == MTL_ERR_FORMAT, "truncated to %zu of %zu: %d (%s)", len, n, (int)st,
                      mtl_last_error());
        ck_assert(memcmp(before, t->params, t->nparams * 4) == 0);
    }
    ck_assert_ok(mtl_model_load_safetensors(t, good));
    ck_assert(memcmp(m->params, t->params, t->nparams * 4) == 0);
    free(b);
    mtl_model_free(t);
    mtl_model_free(m);
}
END_TEST

START_TEST(saves_are_atomic_and_arguments_checked)
{
    mtl_model *m = make_tiny(5);
    const char *path = in_dir("m.safetensors");
    ck_assert_ok(mtl_model_save_safetensors(m, path));
    size_t n0;
    unsigned char *b0 = read_all(path, &n0);
    ck_assert_int_eq(mkdir(in_dir("d"), 0755), 0);
    ck_assert_status(mtl_model_save_safetensors(m, in_dir("d")), MTL_ERR_IO);
    ck_assert_status(mtl_model_save_safetensors(m, in_dir("no/such.safetensors")), MTL_ERR_IO);
    size_t n1;
    unsigned char *b1 = read_all(path, &n1);
    ck_assert(n0 == n1 && memcmp(b0, b1, n0) == 0);
    free(b0);
    free(b1);
    mtl_model *ub = NULL;
    int64_t s[1] = {2};
    ck_assert_ok(mtl_model_create(&ub, MTL_FLOAT32, 1, s));
    ck_assert_status(mtl_model_save_safetensors(ub, path), MTL_ERR_STATE);
    ck_assert_status(mtl_model_load_safetensors(ub, path), MTL_ERR_STATE);
    ck_assert_status(mtl_model_save_safetensors(NULL, path), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_model_save_safetensors(m, NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_model_load_safetensors(NULL, path), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_model_load_safetensors(m, NULL), MTL_ERR_INVALID_ARGUMENT);
    /* a file for another model */
    mtl_model *other = make_model(1);
    ck_assert_status(mtl_model_load_safetensors(other, path), MTL_ERR_NOT_FOUND);
    mtl_model_free(other);
    mtl_model_free(ub);
    mtl_model_free(m);
}
END_TEST

typedef struct oom_ctx {
    mtl_model *m;
    const char *path;
    float before[256];
} oom_ctx;

static mtl_status load_unchanged(void *p)
{
    oom_ctx *c = p;
    mtl_status st = mtl_model_load_safetensors(c->m, c->path);
    if (st != MTL_OK)
        ck_assert(memcmp(c->before, c->m->params, c->m->nparams * 4) == 0);
    return st;
}

static mtl_status save(void *p)
{
    oom_ctx *c = p;
    return mtl_model_save_safetensors(c->m, c->path);
}

START_TEST(allocation_failures_fail_cleanly)
{
    mtl_model *src = make_model(6);
    const char *path = in_dir("m.safetensors");
    ck_assert_ok(mtl_model_save_safetensors(src, path));
    oom_ctx c = {make_model(7), path, {0}};
    ck_assert_uint_le(c.m->nparams, 256);
    memcpy(c.before, c.m->params, c.m->nparams * 4);
    ck_assert_int_gt(mtl_test_oom_sweep(load_unchanged, &c), 2);
    assert_same_values(src, c.m);
    c.path = in_dir("n.safetensors");
    ck_assert_int_gt(mtl_test_oom_sweep(save, &c), 2);
    mtl_model_free(c.m);
    mtl_model_free(src);
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, round_trip_restores_every_tensor);
    tcase_add_test(tc, written_file_follows_the_format);
    tcase_add_test(tc, python_reads_our_files_and_we_read_its_files);
    tcase_add_test(tc, valid_headers_in_other_forms_load);
    tcase_add_test(tc, malformed_headers_are_refused_and_change_nothing);
    tcase_add_test(tc, every_truncation_is_refused);
    tcase_add_test(tc, saves_are_atomic_and_arguments_checked);
    tcase_add_test(tc, allocation_failures_fail_cleanly);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(safetensors_suite)
