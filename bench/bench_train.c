/* Training-step benchmark: trains one of the reference models of docs/performance.md with
 * libmtl and prints one JSON line with the median time per step, throughput, peak RSS, the
 * GEMM rate of the step, and the rate BLIS reaches on the same matrix products measured in
 * this process. bench/torch_train.py is the PyTorch counterpart; bench/run.py runs both.
 *
 *   bench_train --model small|mid|large --batch B [--threads T] [--quick]
 *               [--repeats R] [--repeat-time S] [--no-sgemm] [--breakdown] [--label L]
 *   bench_train --info        (build information as JSON)
 *
 * Models (trunk Linear-ReLU-Linear-ReLU, heads one Linear each, Adam, sum of the losses):
 *   small  32 -> 64 -> 64, three 1-output MSE heads
 *   mid    784 -> 512 -> 256, heads 10 (cross-entropy) and 1 (MSE)
 *   large  1024 -> 2048 -> 2048, four 16-output MSE heads
 *
 * The data are generated once, before timing (POOL batches, cycled through). After a warm-up
 * the steps are timed in REPEATS groups; the reported time is the median group's mean.
 *
 * The sgemm reference calls BLIS directly (this is a benchmark, not the library), with the
 * same arguments the library's Linear layer passes to its GEMM entry point, on buffers laid out
 * as in the model, with the kernels and thread count libmtl selected in this process. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <blis.h>

#include <mtl/mtl.h>

#define POOL 4
#define MAX_HEADS 4
#define MAX_TRUNK 2

typedef struct {
    const char *name;
    int64_t in;
    int ntrunk;
    int64_t trunk[MAX_TRUNK];
    int nheads;
    int64_t head_out[MAX_HEADS];
    const char *head_loss[MAX_HEADS];
} model_spec;

static const model_spec SPECS[] = {
    {"small", 32, 2, {64, 64}, 3, {1, 1, 1}, {"mse", "mse", "mse"}},
    {"mid", 784, 2, {512, 256}, 2, {10, 1}, {"cross_entropy", "mse"}},
    {"large", 1024, 2, {2048, 2048}, 4, {16, 16, 16, 16}, {"mse", "mse", "mse", "mse"}},
};

#define CHECK(call)                                                                        \
    do {                                                                                   \
        mtl_status st_ = (call);                                                           \
        if (st_ != MTL_OK) {                                                               \
            fprintf(stderr, "bench_train: %s failed: %s: %s\n", #call,                     \
                    mtl_status_string(st_), mtl_last_error());                             \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static void *xalloc(size_t bytes)
{
    /* 64-byte aligned, rounded up to a multiple of 64 as aligned_alloc requires */
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_train: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double uniform01(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * 0x1.0p-53;
}
static float normal(void)
{
    return (float)(sqrt(-2.0 * log(1.0 - uniform01())) * cos(6.283185307179586 * uniform01()));
}
static void fill_normal(float *p, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        p[i] = scale * normal();
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* FLOPs of the matrix products of one training step: 2*B*in*out for each Linear forward, the
 * same for its weight gradient, and the same for its input gradient except in the first trunk
 * layer (the input needs no gradient; neither libmtl nor PyTorch computes it). */
static double gemm_flops(const model_spec *s, int64_t B)
{
    double total = 0;
    int64_t prev = s->in;
    for (int i = 0; i < s->ntrunk; i++) {
        total += 2.0 * (double)B * (double)prev * (double)s->trunk[i] * (i == 0 ? 2 : 3);
        prev = s->trunk[i];
    }
    for (int h = 0; h < s->nheads; h++)
        total += 2.0 * (double)B * (double)prev * (double)s->head_out[h] * 3;
    return total;
}

/* JSON string with escapes */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

typedef void (*any_fn)(void);
/* The file of the shared object that holds function fn. */
static const char *lib_path(any_fn fn)
{
    Dl_info info;
    void *addr;
    memcpy(&addr, &fn, sizeof addr); /* POSIX: function pointers fit in void * */
    if (fn && dladdr(addr, &info) && info.dli_fname)
        return info.dli_fname;
    return "?";
}

/* ---- timing harness shared by the model and the sgemm reference ---- */

typedef struct {
    int repeats;
    double rep_time, warm_time, max_time;
    int min_warm;
} timing;

typedef void (*step_fn)(void *ctx);

/* Warm up, choose the steps per group from the warm-up rate, call start (may be NULL), time
 * *nrep groups (t->repeats, fewer when one step is slower than max_time / repeats); fill
 * per_step[*nrep] (seconds per step) and return the steps per group. */
static int time_steps(const timing *t, step_fn fn, step_fn start, void *ctx, double *per_step,
                      int *nrep)
{
    double t0 = now();
    int n = 0;
    while (n < t->min_warm || now() - t0 < t->warm_time) {
        fn(ctx);
        n++;
    }
    double est = (now() - t0) / n;
    int steps = (int)(t->rep_time / est + 0.5);
    if (steps < 1)
        steps = 1;
    /* a very slow step (an overloaded machine): fewer groups, at least 3 */
    int repeats = t->repeats;
    if (est * repeats > t->max_time) {
        repeats = (int)(t->max_time / est);
        repeats = repeats < 3 ? 3 : repeats > t->repeats ? t->repeats : repeats;
    }
    *nrep = repeats;
    if (start)
        start(ctx);
    for (int r = 0; r < repeats; r++) {
        double s = now();
        for (int i = 0; i < steps; i++)
            fn(ctx);
        per_step[r] = (now() - s) / steps;
    }
    return steps;
}

/* ---- the model ---- */

typedef struct {
    mtl_model *model;
    mtl_optimizer *opt;
    mtl_tensor *x[POOL];
    mtl_tensor *y[POOL][MAX_HEADS];
    int nheads;
    int next;
    float losses[MAX_HEADS];
    long minflt0; /* page faults when the timed groups began */
} train_ctx;

static void train_start(void *p)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    ((train_ctx *)p)->minflt0 = ru.ru_minflt;
}

static void train_one(void *p)
{
    train_ctx *c = p;
    int i = c->next;
    c->next = (c->next + 1) % POOL;
    CHECK(mtl_model_train_step(c->model, c->opt, NULL, c->x[i],
                               (const mtl_tensor *const *)c->y[i], NULL, c->losses));
}

static void fwd_bwd_one(void *p)
{
    train_ctx *c = p;
    int i = c->next;
    c->next = (c->next + 1) % POOL;
    CHECK(mtl_model_forward_backward(c->model, NULL, c->x[i],
                                     (const mtl_tensor *const *)c->y[i], NULL, c->losses));
}

static void opt_one(void *p)
{
    train_ctx *c = p;
    CHECK(mtl_optimizer_step(c->opt));
}

static void build(train_ctx *c, const model_spec *s, int64_t B)
{
    memset(c, 0, sizeof *c);
    int64_t in_shape[1] = {s->in};
    CHECK(mtl_model_create(&c->model, MTL_FLOAT32, 1, in_shape));
    mtl_trunk *trunk = mtl_model_trunk(c->model);
    for (int i = 0; i < s->ntrunk; i++) {
        CHECK(mtl_trunk_add_linear(trunk, s->trunk[i]));
        CHECK(mtl_trunk_add_layer(trunk, "relu", NULL));
    }
    for (int h = 0; h < s->nheads; h++) {
        char name[24];
        snprintf(name, sizeof name, "task%d", h);
        mtl_head *head;
        CHECK(mtl_model_add_head(c->model, &head, name));
        CHECK(mtl_head_add_linear(head, s->head_out[h]));
        CHECK(mtl_head_set_loss(head, s->head_loss[h]));
    }
    CHECK(mtl_model_build(c->model, B, 1));
    CHECK(mtl_optimizer_create(&c->opt, c->model, "adam"));
    CHECK(mtl_optimizer_set_double(c->opt, "lr", 1e-3));
    c->nheads = s->nheads;

    /* synthetic data, generated once */
    for (int p = 0; p < POOL; p++) {
        int64_t xs[2] = {B, s->in};
        CHECK(mtl_tensor_create(&c->x[p], MTL_FLOAT32, 2, xs));
        fill_normal(mtl_tensor_data(c->x[p]), (size_t)(B * s->in), 1.0f);
        for (int h = 0; h < s->nheads; h++) {
            if (strcmp(s->head_loss[h], "cross_entropy") == 0) {
                int64_t ys[1] = {B};
                CHECK(mtl_tensor_create(&c->y[p][h], MTL_INT32, 1, ys));
                int32_t *d = mtl_tensor_data(c->y[p][h]);
                for (int64_t i = 0; i < B; i++)
                    d[i] = (int32_t)(uniform01() * (double)s->head_out[h]);
            } else {
                int64_t ys[2] = {B, s->head_out[h]};
                CHECK(mtl_tensor_create(&c->y[p][h], MTL_FLOAT32, 2, ys));
                fill_normal(mtl_tensor_data(c->y[p][h]), (size_t)(B * s->head_out[h]), 1.0f);
            }
        }
    }
}

static void destroy(train_ctx *c)
{
    for (int p = 0; p < POOL; p++) {
        mtl_tensor_free(c->x[p]);
        for (int h = 0; h < c->nheads; h++)
            mtl_tensor_free(c->y[p][h]);
    }
    mtl_optimizer_free(c->opt);
    mtl_model_free(c->model);
}

/* ---- the sgemm reference: the step's matrix products, nothing else ---- */

typedef struct {
    int trans_a, trans_b;
    dim_t m, n, k;
    float beta;
    const float *a, *b;
    inc_t lda, ldb, ldc;
    float *c;
    char what[192];
    double seconds; /* accumulated over the timed groups */
} gemm_call;

typedef struct {
    gemm_call calls[3 * (MAX_TRUNK + MAX_HEADS)];
    int ncalls;
    float *buffers[8 * (MAX_TRUNK + MAX_HEADS)];
    int nbuf;
    long iters; /* sequences run in the timed groups */
} sgemm_ctx;

static void sgemm_start(void *p)
{
    sgemm_ctx *g = p;
    g->iters = 0;
    for (int i = 0; i < g->ncalls; i++)
        g->calls[i].seconds = 0;
}

static float *buf(sgemm_ctx *g, size_t n)
{
    float *p = xalloc(n * sizeof(float));
    fill_normal(p, n, 0.1f);
    g->buffers[g->nbuf++] = p;
    return p;
}

static void add_call(sgemm_ctx *g, int ta, int tb, size_t m, size_t n, size_t k, float beta,
                     const float *a, size_t lda, const float *b, size_t ldb, float *c,
                     size_t ldc, const char *what)
{
    gemm_call *q = &g->calls[g->ncalls++];
    q->trans_a = ta;
    q->trans_b = tb;
    q->m = (dim_t)m;
    q->n = (dim_t)n;
    q->k = (dim_t)k;
    q->beta = beta;
    q->a = a;
    q->b = b;
    q->c = c;
    q->lda = (inc_t)lda;
    q->ldb = (inc_t)ldb;
    q->ldc = (inc_t)ldc;
    snprintf(q->what, sizeof q->what, "%s", what);
}

/* The Linear layer's three products, as libmtl's linear.c issues them (row-major):
 *   forward  Y[B,out]   = X[B,in] W[out,in]^T + Y (bias pre-filled)   NT, beta 1
 *   weight   dW[out,in] += dY[B,out]^T X[B,in]                         TN, beta 1
 *   input    dX[B,in]   = dY[B,out] W[out,in]                          NN, beta 0
 * Order: every forward (trunk, then heads), then the backward of the heads, then of the trunk
 * from the last layer to the first. */
static void sgemm_setup(sgemm_ctx *g, const model_spec *s, size_t B)
{
    memset(g, 0, sizeof *g);
    int nl = s->ntrunk + s->nheads;
    size_t in[MAX_TRUNK + MAX_HEADS], out[MAX_TRUNK + MAX_HEADS];
    const float *X[MAX_TRUNK + MAX_HEADS];
    float *W[MAX_TRUNK + MAX_HEADS], *Y[MAX_TRUNK + MAX_HEADS], *dY[MAX_TRUNK + MAX_HEADS];
    float *dW[MAX_TRUNK + MAX_HEADS], *dX[MAX_TRUNK + MAX_HEADS];
    char name[MAX_TRUNK + MAX_HEADS][24];
    size_t prev = (size_t)s->in;
    const float *x0 = buf(g, B * prev);
    const float *cur = x0;
    for (int l = 0; l < nl; l++) {
        int head = l >= s->ntrunk;
        in[l] = head ? (size_t)s->trunk[s->ntrunk - 1] : prev;
        out[l] = head ? (size_t)s->head_out[l - s->ntrunk] : (size_t)s->trunk[l];
        X[l] = head ? cur : (l == 0 ? x0 : Y[l - 1]);
        W[l] = buf(g, out[l] * in[l]);
        Y[l] = buf(g, B * out[l]);
        dY[l] = buf(g, B * out[l]);
        dW[l] = buf(g, out[l] * in[l]);
        dX[l] = l == 0 ? NULL : buf(g, B * in[l]);
        if (head)
            snprintf(name[l], sizeof name[l], "head%d", l - s->ntrunk);
        else
            snprintf(name[l], sizeof name[l], "trunk%d", l);
        if (!head) {
            prev = out[l];
            cur = Y[l];
        }
    }
    char what[192];
    for (int l = 0; l < nl; l++) {
        snprintf(what, sizeof what, "%s.fwd", name[l]);
        add_call(g, 0, 1, B, out[l], in[l], 1.0f, X[l], in[l], W[l], in[l], Y[l], out[l], what);
    }
    int order[MAX_TRUNK + MAX_HEADS], no = 0;
    for (int l = s->ntrunk; l < nl; l++)
        order[no++] = l;
    for (int l = s->ntrunk - 1; l >= 0; l--)
        order[no++] = l;
    for (int i = 0; i < no; i++) {
        int l = order[i];
        snprintf(what, sizeof what, "%s.dW", name[l]);
        add_call(g, 1, 0, out[l], in[l], B, 1.0f, dY[l], out[l], X[l], in[l], dW[l], in[l],
                 what);
        if (dX[l]) {
            snprintf(what, sizeof what, "%s.dX", name[l]);
            add_call(g, 0, 0, B, in[l], out[l], 0.0f, dY[l], out[l], W[l], in[l], dX[l], in[l],
                     what);
        }
    }
}

static void sgemm_one(void *p)
{
    sgemm_ctx *g = p;
    for (int i = 0; i < g->ncalls; i++) {
        gemm_call *q = &g->calls[i];
        float alpha = 1.0f, beta = q->beta;
        double t0 = now();
        bli_sgemm(q->trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                  q->trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, q->m, q->n, q->k, &alpha,
                  (float *)q->a, q->lda, 1, (float *)q->b, q->ldb, 1, &beta, q->c, q->ldc, 1);
        q->seconds += now() - t0;
    }
    g->iters++;
}

static void sgemm_free(sgemm_ctx *g)
{
    for (int i = 0; i < g->nbuf; i++)
        free(g->buffers[i]);
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_train --model small|mid|large --batch B [--threads T] [--quick]\n"
            "                   [--repeats R] [--repeat-time S] [--no-sgemm] [--breakdown]\n"
            "                   [--label L]\n"
            "       bench_train --info\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *model_name = NULL, *label = "libmtl";
    long batch = 0, threads = 1;
    int quick = 0, info = 0, sgemm = 1, breakdown = 0, repeats = 0;
    double rep_time = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) {
            model_name = v;
            i++;
        } else if (!strcmp(a, "--batch") && v) {
            batch = strtol(v, NULL, 10);
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            threads = strtol(v, NULL, 10);
            i++;
        } else if (!strcmp(a, "--label") && v) {
            label = v;
            i++;
        } else if (!strcmp(a, "--repeats") && v) {
            repeats = (int)strtol(v, NULL, 10);
            i++;
        } else if (!strcmp(a, "--repeat-time") && v) {
            rep_time = strtod(v, NULL);
            i++;
        } else if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (!strcmp(a, "--no-sgemm")) {
            sgemm = 0;
        } else if (!strcmp(a, "--breakdown")) {
            breakdown = 1;
        } else if (!strcmp(a, "--info")) {
            info = 1;
        } else {
            usage();
        }
    }

    /* First libmtl call: BLIS is initialised and its kernels chosen here. */
    const char *build_info = mtl_build_info();
    if (info) {
        printf("{\"build_info\": ");
        json_str(build_info);
        printf(", \"kernels\": ");
        json_str(mtl_blas_kernels());
        printf(", \"version\": ");
        json_str(mtl_version_string());
        printf(", \"libmtl\": ");
        json_str(lib_path((any_fn)mtl_build_info));
        printf(", \"blis\": ");
        json_str(lib_path((any_fn)bli_sgemm));
        printf("}\n");
        return 0;
    }

    const model_spec *s = NULL;
    for (size_t i = 0; model_name && i < sizeof SPECS / sizeof SPECS[0]; i++)
        if (!strcmp(model_name, SPECS[i].name))
            s = &SPECS[i];
    if (!s || batch < 1 || batch > 1 << 20 || threads < 1 || threads > 1024)
        usage();
    /* The reference calls must reach the BLIS instance libmtl initialised. */
    if (strcmp(bli_arch_string(bli_arch_query_id()), mtl_blas_kernels()) != 0) {
        fprintf(stderr, "bench_train: this program's BLIS (%s, kernels %s) is not libmtl's "
                        "(kernels %s); link the same libblis\n",
                lib_path((any_fn)bli_sgemm), bli_arch_string(bli_arch_query_id()),
                mtl_blas_kernels());
        return 1;
    }
    CHECK(mtl_set_num_threads((int)threads));

    timing tm = {.repeats = repeats > 0 ? repeats : (quick ? 3 : 7),
                 .rep_time = rep_time > 0 ? rep_time : (quick ? 0.03 : 0.15),
                 .warm_time = quick ? 0.03 : 0.15,
                 .max_time = quick ? 1.0 : 3.0,
                 .min_warm = 3};
    if (tm.repeats > 100)
        tm.repeats = 100;
    double per_step[100];

    train_ctx c;
    build(&c, s, batch);
    int nrep;
    int steps = time_steps(&tm, train_one, train_start, &c, per_step, &nrep);
    struct rusage ru1; /* peak RSS of the training, before the reference allocates */
    getrusage(RUSAGE_SELF, &ru1);
    double ms_min = 1e300;
    for (int r = 0; r < nrep; r++)
        ms_min = fmin(ms_min, per_step[r] * 1e3);
    double med = median(per_step, nrep);
    int model_rep = nrep;

    double fb_ms = NAN, opt_ms = NAN;
    if (breakdown) {
        time_steps(&tm, fwd_bwd_one, NULL, &c, per_step, &nrep);
        fb_ms = median(per_step, nrep) * 1e3;
        time_steps(&tm, opt_one, NULL, &c, per_step, &nrep);
        opt_ms = median(per_step, nrep) * 1e3;
    }

    double flops = gemm_flops(s, batch);
    double sg_ms = NAN;
    sgemm_ctx g;
    if (sgemm) {
        sgemm_setup(&g, s, (size_t)batch);
        time_steps(&tm, sgemm_one, sgemm_start, &g, per_step, &nrep);
        sg_ms = median(per_step, nrep) * 1e3;
    }

    printf("{\"impl\": ");
    json_str(label);
    printf(", \"model\": \"%s\", \"batch\": %ld, \"threads\": %ld", s->name, batch, threads);
    printf(", \"steps\": %d, \"repeats\": %d", steps, model_rep);
    printf(", \"ms_per_step\": %.6f, \"ms_min\": %.6f, \"samples_per_s\": %.3f", med * 1e3,
           ms_min, (double)batch / med);
    printf(", \"peak_rss_kib\": %ld", ru1.ru_maxrss);
    printf(", \"minflt_per_step\": %.4f",
           (double)(ru1.ru_minflt - c.minflt0) / ((double)steps * model_rep));
    printf(", \"gemm_gflop_per_step\": %.6f, \"gflops\": %.3f", flops * 1e-9,
           flops * 1e-9 / med);
    double loss = 0;
    for (int h = 0; h < c.nheads; h++)
        loss += c.losses[h];
    printf(", \"loss\": %.6g", loss);
    if (breakdown)
        printf(", \"fwd_bwd_ms\": %.6f, \"optimizer_ms\": %.6f", fb_ms, opt_ms);
    if (sgemm) {
        printf(", \"sgemm_ms\": %.6f, \"sgemm_gflops\": %.3f, \"sgemm_fraction\": %.4f", sg_ms,
               flops * 1e-9 / (sg_ms * 1e-3), sg_ms / (med * 1e3));
        printf(", \"gemms\": [");
        for (int i = 0; i < g.ncalls; i++) {
            gemm_call *q = &g.calls[i];
            double ms = q->seconds / (double)g.iters * 1e3; /* mean over the timed calls */
            double f = 2.0 * (double)q->m * (double)q->n * (double)q->k;
            printf("%s{\"what\": \"%s\", \"op\": \"%c%c\", \"m\": %ld, \"n\": %ld, \"k\": %ld, "
                   "\"ms\": %.5f, \"gflops\": %.2f}",
                   i ? ", " : "", q->what, q->trans_a ? 'T' : 'N', q->trans_b ? 'T' : 'N',
                   (long)q->m, (long)q->n, (long)q->k, ms, f * 1e-9 / (ms * 1e-3));
        }
        printf("]");
        sgemm_free(&g);
    }
    printf(", \"kernels\": ");
    json_str(mtl_blas_kernels());
    printf("}\n");
    fflush(stdout);
    destroy(&c);
    return 0;
}
