/* Weighting benchmark: the time of one training step with each weighting method on the mid
 * model, for T tasks. bench/torch_weighting.py is the PyTorch counterpart (one autograd.grad
 * per task on the shared parameters) and bench/run_weighting.py runs both in interleaved
 * rounds and writes the table of docs/weighting-performance.md.
 *
 *   bench_weighting --tasks T [--batch B] [--methods m1,m2,...] [--time S] [--groups G]
 *                   [--threads N] [--grad-layers K] [--label L]
 *   bench_weighting --info        (build information as JSON)
 *
 * Model: trunk 784 -> 512 -> 256 (Linear-ReLU-Linear-ReLU), T heads Linear(256 -> 1) with
 * MSE, Adam (lr 1e-3), batch 256 by default. A method is given by name, optionally with
 * ":rep" for its representation mode (key mode = representation), e.g. "mgda:rep".
 * Default methods: every method of the build, plus "mgda:rep".
 *
 * Timing: synthetic data generated once (POOL batches, cycled through); per method a fresh
 * model (same seed), a warm-up of at least 3 steps and S/4 seconds, then G groups of about
 * S/G seconds each; the result is the median group's mean time per step. One JSON line per
 * method on stdout. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mtl/mtl.h>

#define POOL 4
#define MAX_TASKS 64
#define MAX_GROUPS 64

#define CHECK(call)                                                                        \
    do {                                                                                   \
        mtl_status st_ = (call);                                                           \
        if (st_ != MTL_OK) {                                                               \
            fprintf(stderr, "bench_weighting: %s failed: %s: %s\n", #call,                 \
                    mtl_status_string(st_), mtl_last_error());                             \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the process: less sensitive than wall time to other jobs on shared cores */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
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

/* What each method consumes (docs/weighting.md): L, G, J; R for representation mode. */
static const char *kind_of(const char *name, int rep)
{
    static const char *const G[] = {"mgda",    "mgda_ub",  "pcgrad",   "cagrad",
                                    "nash_mtl", "imtl",    "aligned_mtl", "fairgrad",
                                    "upgrad",  "dualproj", "gradnorm", "config"};
    static const char *const J[] = {"graddrop", "gradvac", "moco", "db_mtl", "excessmtl"};
    if (rep || strcmp(name, "mgda_ub") == 0)
        return "R";
    for (size_t i = 0; i < sizeof G / sizeof G[0]; i++)
        if (strcmp(name, G[i]) == 0)
            return "G";
    for (size_t i = 0; i < sizeof J / sizeof J[0]; i++)
        if (strcmp(name, J[i]) == 0)
            return "J";
    return "L";
}

typedef struct {
    int T;
    int64_t B;
    double time_s;
    int groups;
    int threads;
    int grad_layers;
    const char *label;
} opts;

static mtl_model *build(const opts *o)
{
    mtl_model *m = NULL;
    int64_t in[1] = {784};
    CHECK(mtl_model_create(&m, MTL_FLOAT32, 1, in));
    mtl_trunk *tr = mtl_model_trunk(m);
    CHECK(mtl_trunk_add_linear(tr, 512));
    CHECK(mtl_trunk_add_layer(tr, "relu", NULL));
    CHECK(mtl_trunk_add_linear(tr, 256));
    CHECK(mtl_trunk_add_layer(tr, "relu", NULL));
    for (int t = 0; t < o->T; t++) {
        char name[16];
        snprintf(name, sizeof name, "task%d", t);
        mtl_head *h;
        CHECK(mtl_model_add_head(m, &h, name));
        CHECK(mtl_head_add_linear(h, 1));
        CHECK(mtl_head_set_loss(h, "mse"));
    }
    CHECK(mtl_model_build(m, o->B, 1));
    if (o->grad_layers)
        CHECK(mtl_model_set_double(m, "grad_layers", o->grad_layers));
    return m;
}

/* Time one method; returns ms per step (median group), fills per-group times. */
static double bench_method(const opts *o, const char *spec, mtl_tensor **x,
                           mtl_tensor *(*y)[MAX_TASKS], double *groups_ms, int *steps_out,
                           double *cpu_ms)
{
    char name[64];
    snprintf(name, sizeof name, "%s", spec);
    char *colon = strchr(name, ':');
    int rep = 0;
    if (colon) {
        rep = strcmp(colon + 1, "rep") == 0;
        *colon = '\0';
    }
    mtl_model *m = build(o);
    mtl_optimizer *opt = NULL;
    CHECK(mtl_optimizer_create(&opt, m, "adam"));
    CHECK(mtl_optimizer_set_double(opt, "lr", 1e-3));
    mtl_weighting *w = NULL;
    if (strcmp(name, "none") != 0) {
        CHECK(mtl_weighting_create(&w, name, o->T));
        if (rep)
            CHECK(mtl_weighting_set_string(w, "mode", "representation"));
    }
    float losses[MAX_TASKS];
    int step = 0;
#define STEP()                                                                              \
    do {                                                                                    \
        int k_ = step++ % POOL;                                                             \
        CHECK(mtl_model_train_step(m, opt, w, x[k_], (const mtl_tensor *const *)y[k_], NULL, \
                                   losses));                                                \
    } while (0)
    double t0 = now();
    for (int i = 0; i < 3 || now() - t0 < o->time_s / 4; i++)
        STEP();
    double per = (now() - t0) / step; /* rough step time: steps per group */
    int n = (int)(o->time_s / o->groups / per);
    if (n < 1)
        n = 1;
    double v[MAX_GROUPS], c[MAX_GROUPS];
    for (int g = 0; g < o->groups; g++) {
        double a = now(), ac = cpu_now();
        for (int i = 0; i < n; i++)
            STEP();
        v[g] = (now() - a) / n * 1e3;
        c[g] = (cpu_now() - ac) / n * 1e3;
        groups_ms[g] = v[g];
    }
    *cpu_ms = median(c, o->groups);
#undef STEP
    *steps_out = n;
    mtl_weighting_free(w);
    mtl_optimizer_free(opt);
    mtl_model_free(m);
    return median(v, o->groups);
}

int main(int argc, char **argv)
{
    opts o = {.T = 8, .B = 256, .time_s = 1.5, .groups = 5, .threads = 1, .grad_layers = 0,
              .label = ""};
    const char *methods = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--info") == 0) {
            printf("{\"build_info\": ");
            json_str(mtl_build_info());
            printf(", \"kernels\": ");
            json_str(mtl_blas_kernels());
            printf("}\n");
            return 0;
        }
        if (!v) {
            fprintf(stderr, "bench_weighting: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--tasks") == 0)
            o.T = atoi(v);
        else if (strcmp(a, "--batch") == 0)
            o.B = atoll(v);
        else if (strcmp(a, "--methods") == 0)
            methods = v;
        else if (strcmp(a, "--time") == 0)
            o.time_s = atof(v);
        else if (strcmp(a, "--groups") == 0)
            o.groups = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            o.threads = atoi(v);
        else if (strcmp(a, "--grad-layers") == 0)
            o.grad_layers = atoi(v);
        else if (strcmp(a, "--label") == 0)
            o.label = v;
        else {
            fprintf(stderr, "bench_weighting: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (o.T < 1 || o.T > MAX_TASKS || o.B < 1 || o.groups < 1 || o.groups > MAX_GROUPS ||
        o.threads < 1 || o.time_s <= 0) {
        fprintf(stderr, "bench_weighting: bad options\n");
        return 2;
    }
    CHECK(mtl_set_num_threads(o.threads));
    /* data: POOL batches of inputs and per-task targets */
    mtl_tensor *x[POOL], *y[POOL][MAX_TASKS];
    int64_t xs[2] = {o.B, 784}, ys[2] = {o.B, 1};
    for (int k = 0; k < POOL; k++) {
        CHECK(mtl_tensor_create(&x[k], MTL_FLOAT32, 2, xs));
        float *d = mtl_tensor_data(x[k]);
        for (int64_t i = 0; i < o.B * 784; i++)
            d[i] = normal();
        for (int t = 0; t < o.T; t++) {
            CHECK(mtl_tensor_create(&y[k][t], MTL_FLOAT32, 2, ys));
            float *e = mtl_tensor_data(y[k][t]);
            for (int64_t i = 0; i < o.B; i++)
                e[i] = normal();
        }
    }
    /* the list of methods */
    char list[4096];
    list[0] = '\0';
    if (methods) {
        snprintf(list, sizeof list, "%s", methods);
    } else {
        for (int i = 0;; i++) {
            const char *n = mtl_weighting_available(i);
            if (!n)
                break;
            strncat(list, n, sizeof list - strlen(list) - 2);
            strcat(list, ",");
        }
        strncat(list, "mgda:rep", sizeof list - strlen(list) - 1);
    }
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        double groups[MAX_GROUPS];
        int steps;
        char name[64];
        snprintf(name, sizeof name, "%s", tok);
        char *colon = strchr(name, ':');
        int rep = colon && strcmp(colon + 1, "rep") == 0;
        if (colon)
            *colon = '\0';
        double cpu;
        double ms = bench_method(&o, tok, x, y, groups, &steps, &cpu);
        printf("{\"impl\": \"libmtl\", \"label\": ");
        json_str(o.label);
        printf(", \"tasks\": %d, \"batch\": %lld, \"threads\": %d, \"grad_layers\": %d, "
               "\"method\": ",
               o.T, (long long)o.B, o.threads, o.grad_layers);
        json_str(tok);
        printf(", \"kind\": \"%s\", \"ms\": %.4f, \"cpu_ms\": %.4f, \"steps_per_group\": %d, "
               "\"groups_ms\": [",
               kind_of(name, rep), ms, cpu, steps);
        for (int g = 0; g < o.groups; g++)
            printf("%s%.4f", g ? ", " : "", groups[g]);
        printf("]}\n");
        fflush(stdout);
    }
    for (int k = 0; k < POOL; k++) {
        mtl_tensor_free(x[k]);
        for (int t = 0; t < o.T; t++)
            mtl_tensor_free(y[k][t]);
    }
    return 0;
}
