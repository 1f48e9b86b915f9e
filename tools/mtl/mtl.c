/* mtl — train, evaluate and run multi-task models described by a YAML configuration.
 *
 *   mtl train CONFIG [--set KEY=VALUE]... [--resume CHECKPOINT] [--quiet]
 *   mtl eval CHECKPOINT CONFIG [--split NAME] [--set KEY=VALUE]...
 *   mtl eval CHECKPOINT INPUT.npy [TASK=LABELS.npy]...
 *   mtl predict CHECKPOINT INPUT OUTPUT.npy [--raw] [--config CONFIG]
 *   mtl info CHECKPOINT
 *   mtl config CONFIG [--set KEY=VALUE]...
 *   mtl make-example-data DIR [--samples N] [--seed S]
 *   mtl make-multifashion DIR [--source FASHION_MNIST_DIR] [--limit N] [--seed S]
 *
 * Exit status: 0 success, 1 runtime failure (data, files, checkpoints), 2 usage or
 * configuration error, 3 numeric failure (NaN/Inf while training). Errors go to stderr as
 * "mtl: <message>". docs/config.md describes the configuration and this program. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mtl/mtl.h>

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_NUMERIC = 3 };

static void fail_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mtl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* The library's message for a failed call, and the exit status its kind calls for. */
static int fail_api(mtl_status st, int config_stage)
{
    fail_msg("%s", mtl_last_error()[0] ? mtl_last_error() : mtl_status_string(st));
    if (st == MTL_ERR_NUMERIC)
        return EXIT_NUMERIC;
    return config_stage ? EXIT_USAGE : EXIT_RUNTIME;
}

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mtl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(see 'mtl --help')\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static const char g_help[] =
    "usage: mtl COMMAND [ARGUMENTS]\n"
    "\n"
    "Multi-task learning with libmtl: one YAML file describes the data, the shared trunk,\n"
    "the task heads, the task weighting, the optimizer and the training settings.\n"
    "\n"
    "commands:\n"
    "  train CONFIG [--set KEY=VALUE]... [--resume CHECKPOINT] [--quiet]\n"
    "      Train the model CONFIG describes: per-epoch losses, per-task validation metrics\n"
    "      after each evaluation, test metrics at the end. training.checkpoint_path keeps\n"
    "      the best model, training.log_path writes a JSON-lines log. --resume continues\n"
    "      from a checkpoint written by an earlier run (training.resume does the same when\n"
    "      the file exists).\n"
    "  eval CHECKPOINT CONFIG [--split test|validation|train] [--set KEY=VALUE]...\n"
    "      Evaluate a checkpoint on a split of the data CONFIG describes (default: test).\n"
    "  eval CHECKPOINT INPUT.npy [TASK=LABELS.npy]...\n"
    "      Evaluate on .npy files: the inputs and the labels of any tasks.\n"
    "  predict CHECKPOINT INPUT OUTPUT.npy [--raw] [--config CONFIG]\n"
    "      Write each task's outputs for INPUT (.npy; or .csv with --config, encoded as in\n"
    "      training). With one task OUTPUT.npy holds them; with several, OUTPUT_<task>.npy\n"
    "      per task. Probabilities (softmax / sigmoid) unless --raw (logits, values).\n"
    "  info CHECKPOINT\n"
    "      Describe a checkpoint: architecture, parameters, optimizer and weighting.\n"
    "  config CONFIG [--set KEY=VALUE]...\n"
    "      Validate a configuration and print it with every default filled in.\n"
    "  make-example-data DIR [--samples N] [--seed S]\n"
    "      Write the generated two-task problem of examples/configs/default.yaml to DIR.\n"
    "  make-multifashion DIR [--source FASHION_MNIST_DIR] [--limit N] [--seed S]\n"
    "      Build the Multi-Fashion benchmark of examples/configs/multifashion.yaml from\n"
    "      Fashion-MNIST (default source: " MTL_FASHION_MNIST_DIR ").\n"
    "\n"
    "options:\n"
    "  -h, --help     this text\n"
    "  --version      the program's and the library's version and build\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 usage or configuration error,\n"
    "3 numeric failure (NaN/Inf in training).\n"
    "The configuration keys are documented in docs/config.md.\n";

/* ---- small helpers --------------------------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Apply "--set KEY=VALUE" to cfg. */
static int apply_set(mtl_config *cfg, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return usage_error("--set expects KEY=VALUE, got '%s'", arg);
    char key[512];
    size_t n = (size_t)(eq - arg);
    if (n >= sizeof key)
        return usage_error("--set: key too long");
    memcpy(key, arg, n);
    key[n] = '\0';
    mtl_status st = mtl_config_set(cfg, key, eq + 1);
    return st == MTL_OK ? EXIT_OK : fail_api(st, 1);
}

/* ---- progress -------------------------------------------------------------------------- */

typedef struct {
    mtl_trainer *tr;
    mtl_model *model;
    int bar;            /* draw a progress bar on stderr */
    int quiet;
    int64_t epochs, steps_per_epoch;
    double epoch_start, last_draw;
    int64_t epoch_samples;
    int bar_drawn;
} progress;

static volatile sig_atomic_t g_interrupted = 0;
static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static void clear_bar(progress *p)
{
    if (p->bar_drawn) {
        fprintf(stderr, "\r%*s\r", 79, "");
        p->bar_drawn = 0;
    }
}

/* Print an evaluation: the overall values on one line, then one line per task with its
 * values ("train" ones marked as such). Names are "<split>.<value>" and
 * "<split>.<task>.<value>". */
static void print_eval(const mtl_eval_result *r, mtl_model *model, const char *indent)
{
    int n = mtl_eval_result_count(r);
    int heads = mtl_model_num_heads(model);
    printf("%s", indent);
    for (int i = 0, first = 1; i < n; i++) {
        const char *name = mtl_eval_result_name(r, i);
        const char *dot = strchr(name, '.');
        if (dot && strchr(dot + 1, '.'))
            continue;
        printf("%s%s %.4f", first ? "" : "  ", name, mtl_eval_result_value(r, i));
        first = 0;
    }
    printf("\n");
    for (int h = 0; h < heads; h++) {
        const char *task = mtl_head_name(mtl_model_head_at(model, h));
        size_t tl = strlen(task);
        int first = 1;
        for (int i = 0; i < n; i++) {
            const char *name = mtl_eval_result_name(r, i);
            const char *dot = strchr(name, '.');
            if (!dot || strncmp(dot + 1, task, tl) != 0 || dot[1 + tl] != '.')
                continue;
            if (first) {
                printf("%s  %-12s", indent, task);
                first = 0;
            }
            int train = strncmp(name, "train.", 6) == 0;
            printf("  %s%s %.4f", train ? "train_" : "", dot + 2 + tl, mtl_eval_result_value(r, i));
        }
        if (!first)
            printf("\n");
    }
    fflush(stdout);
}

static int on_progress(void *user, const char *event, int64_t epoch, int64_t step,
                       const double *values, int nvalues)
{
    progress *p = user;
    double t = now_seconds();
    if (strcmp(event, "step") == 0) {
        if (p->epoch_samples == 0 && p->epoch_start == 0)
            p->epoch_start = t;
        p->epoch_samples += nvalues > 0 ? (int64_t)values[0] : 0;
        if (p->bar && !p->quiet && t - p->last_draw > 0.1) {
            int64_t done = step % (p->steps_per_epoch ? p->steps_per_epoch : 1);
            if (done == 0)
                done = p->steps_per_epoch;
            double frac = p->steps_per_epoch ? (double)done / (double)p->steps_per_epoch : 0;
            double el = t - p->epoch_start;
            double rate = el > 0 ? (double)p->epoch_samples / el : 0;
            double eta = frac > 0 ? el * (1 - frac) / frac : 0;
            int w = 30, fill = (int)(frac * w);
            fprintf(stderr, "\repoch %lld/%lld [%.*s%*s] %3.0f%% %8.0f samples/s  ETA %5.1fs",
                    (long long)epoch, (long long)p->epochs, fill,
                    "##############################", w - fill, "", 100 * frac, rate, eta);
            p->last_draw = t;
            p->bar_drawn = 1;
        }
    } else if (strcmp(event, "epoch") == 0) {
        clear_bar(p);
        double el = t - p->epoch_start;
        if (!p->quiet) {
            printf("epoch %lld/%lld  lr %.3g", (long long)epoch, (long long)p->epochs,
                   nvalues > 1 ? values[1] : NAN);
            for (int h = 0; h + 2 < nvalues; h++)
                printf("  %s %.4f", mtl_head_name(mtl_model_head_at(p->model, h)), values[h + 2]);
            printf("  (%.0f samples/s)\n", el > 0 ? values[0] / el : 0.0);
            fflush(stdout);
        }
        p->epoch_samples = 0;
        p->epoch_start = t;
    } else if (strcmp(event, "eval") == 0) {
        clear_bar(p);
        if (!p->quiet) {
            printf("  evaluation (epoch %lld, step %lld): ", (long long)epoch, (long long)step);
            print_eval(mtl_trainer_eval_result(p->tr), p->model, "");
        }
        /* the next epoch's samples/s counts training only, not this evaluation */
        p->epoch_start = now_seconds();
    }
    return g_interrupted ? 1 : 0;
}

/* ---- train ----------------------------------------------------------------------------- */

/* The datasets and metric lists of one split for mtl_evaluate. */
typedef struct {
    mtl_dataset **ds;
    int n;
    char **metrics;
} eval_set;

static void eval_set_free(eval_set *e, int heads)
{
    for (int i = 0; i < e->n; i++)
        mtl_dataset_free(e->ds[i]);
    for (int i = 0; e->metrics && i < heads; i++)
        free(e->metrics[i]);
    free(e->ds);
    free(e->metrics);
    memset(e, 0, sizeof *e);
}

/* Each task's metric list from the configuration ("a,b,c"; NULL for the defaults). */
static int config_metrics(const mtl_config *cfg, int heads, char ***out)
{
    char **m = calloc((size_t)heads, sizeof *m);
    if (!m)
        return 0;
    for (int t = 0; t < heads && t < mtl_config_num_tasks(cfg); t++) {
        char key[256];
        int n = 0;
        snprintf(key, sizeof key, "tasks.%s.metrics", mtl_config_task_name(cfg, t));
        mtl_config_count(cfg, key, &n);
        if (!n)
            continue;
        size_t cap = 1;
        for (int i = 0; i < n; i++) {
            char ik[300];
            const char *v = "";
            snprintf(ik, sizeof ik, "%s.%d", key, i);
            mtl_config_get_string(cfg, ik, &v);
            cap += strlen(v) + 1;
        }
        m[t] = calloc(cap, 1);
        if (!m[t])
            return 0;
        for (int i = 0; i < n; i++) {
            char ik[300];
            const char *v = "";
            snprintf(ik, sizeof ik, "%s.%d", key, i);
            mtl_config_get_string(cfg, ik, &v);
            if (i)
                strcat(m[t], ",");
            strcat(m[t], v);
        }
    }
    *out = m;
    return 1;
}

/* Datasets of a split of cfg: one (single input) or one per task (multi-input). Returns
 * MTL_ERR_NOT_FOUND when the split is absent. */
static mtl_status config_eval_set(mtl_config *cfg, const char *split, int heads, eval_set *e)
{
    memset(e, 0, sizeof *e);
    e->ds = calloc((size_t)heads, sizeof *e->ds);
    if (!e->ds || !config_metrics(cfg, heads, &e->metrics))
        return MTL_ERR_OUT_OF_MEMORY;
    mtl_dataset *ds;
    mtl_status st = mtl_config_build_dataset(cfg, split, NULL, &ds);
    if (st == MTL_OK) {
        e->ds[0] = ds;
        e->n = 1;
        return MTL_OK;
    }
    if (st != MTL_ERR_INVALID_ARGUMENT) /* INVALID_ARGUMENT: the tasks have their own data */
        return st;
    int found = 0;
    e->n = heads;
    for (int t = 0; t < heads; t++) {
        st = mtl_config_build_dataset(cfg, split, mtl_config_task_name(cfg, t), &e->ds[t]);
        if (st == MTL_OK)
            found = 1;
        else if (st != MTL_ERR_NOT_FOUND)
            return st;
    }
    return found ? MTL_OK : MTL_ERR_NOT_FOUND;
}

static int run_eval_set(mtl_model *model, eval_set *e, const char *prefix, int64_t batch)
{
    mtl_eval_result *r;
    mtl_status st = mtl_evaluate(&r, model, (const mtl_dataset *const *)e->ds, e->n, batch, prefix,
                                 (const char *const *)e->metrics);
    if (st != MTL_OK)
        return fail_api(st, 0);
    print_eval(r, model, "");
    mtl_eval_result_free(r);
    return EXIT_OK;
}

static int cmd_train(int argc, char **argv)
{
    const char *path = NULL, *resume = NULL;
    int quiet = 0;
    mtl_config *cfg = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 || strcmp(argv[i], "--resume") == 0) {
            if (i + 1 >= argc)
                return usage_error("%s needs a value", argv[i]);
            if (argv[i][2] == 'r')
                resume = argv[i + 1];
            i++;
        } else if (strncmp(argv[i], "--set=", 6) == 0 || strcmp(argv[i], "--quiet") == 0) {
            quiet |= argv[i][2] == 'q';
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("train: unknown option '%s'", argv[i]);
        } else if (!path) {
            path = argv[i];
        } else {
            return usage_error("train: one configuration file expected, got '%s' too", argv[i]);
        }
    }
    if (!path)
        return usage_error("train: missing CONFIG");
    mtl_status st = mtl_config_load(&cfg, path);
    if (st != MTL_OK)
        return fail_api(st, 1);
    for (int i = 0; i < argc; i++) {
        const char *arg = NULL;
        if (strcmp(argv[i], "--set") == 0)
            arg = argv[++i];
        else if (strncmp(argv[i], "--set=", 6) == 0)
            arg = argv[i] + 6;
        else if (strcmp(argv[i], "--resume") == 0)
            i++;
        int rc = arg ? apply_set(cfg, arg) : EXIT_OK;
        if (rc != EXIT_OK) {
            mtl_config_free(cfg);
            return rc;
        }
    }
    int64_t threads = 1, epochs = 1, eval_batch = 0, batch = 32;
    const char *progress_mode = "auto", *resume_cfg = "", *ckpt_path = "";
    mtl_config_get_int(cfg, "training.threads", &threads);
    mtl_config_get_int(cfg, "training.epochs", &epochs);
    mtl_config_get_int(cfg, "training.batch_size", &batch);
    mtl_config_get_int(cfg, "training.eval_batch_size", &eval_batch);
    mtl_config_get_string(cfg, "training.progress", &progress_mode);
    mtl_config_get_string(cfg, "training.resume", &resume_cfg);
    mtl_config_get_string(cfg, "training.checkpoint_path", &ckpt_path);

    mtl_model *model = NULL;
    mtl_optimizer *opt = NULL;
    mtl_weighting *w = NULL;
    mtl_trainer *tr = NULL;
    int rc = EXIT_OK;
    st = mtl_set_num_threads((int)threads);
    if (st == MTL_OK)
        st = mtl_config_build_model(cfg, &model);
    if (st == MTL_OK)
        st = mtl_config_build_optimizer(cfg, model, 0, &opt);
    if (st == MTL_OK)
        st = mtl_config_build_weighting(cfg, &w);
    if (st == MTL_OK)
        st = mtl_config_build_trainer(cfg, model, opt, w, &tr);
    if (st != MTL_OK) {
        rc = fail_api(st, st == MTL_ERR_INVALID_ARGUMENT || st == MTL_ERR_RANGE);
        goto done;
    }
    int heads = mtl_model_num_heads(model);
    if (!quiet) {
        printf("%s: %d task%s, %lld parameters (%lld shared), %lld steps per epoch\n", path,
               heads, heads == 1 ? "" : "s", (long long)mtl_model_num_params(model),
               (long long)mtl_model_num_shared_params(model),
               (long long)mtl_trainer_steps_per_epoch(tr));
        fflush(stdout);
    }
    /* resume: --resume must exist; training.resume is used when the file exists */
    const char *from = resume ? resume : (resume_cfg[0] && file_exists(resume_cfg) ? resume_cfg : NULL);
    if (resume && !file_exists(resume)) {
        fail_msg("--resume %s: %s", resume, strerror(ENOENT));
        rc = EXIT_RUNTIME;
        goto done;
    }
    if (from) {
        st = mtl_trainer_resume(tr, from);
        if (st != MTL_OK) {
            rc = fail_api(st, 0);
            goto done;
        }
        if (!quiet)
            printf("resumed from %s after epoch %lld (step %lld)\n", from,
                   (long long)mtl_trainer_epoch(tr), (long long)mtl_trainer_step(tr));
    }
    progress p = {0};
    p.tr = tr;
    p.model = model;
    p.quiet = quiet;
    p.epochs = epochs;
    p.steps_per_epoch = mtl_trainer_steps_per_epoch(tr);
    p.bar = strcmp(progress_mode, "bar") == 0 ||
            (strcmp(progress_mode, "auto") == 0 && isatty(STDERR_FILENO));
    if (strcmp(progress_mode, "none") == 0)
        p.quiet = 1;
    p.epoch_start = now_seconds();
    mtl_trainer_set_progress(tr, on_progress, &p);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    st = mtl_trainer_run(tr);
    clear_bar(&p);
    if (st != MTL_OK) {
        rc = fail_api(st, 0);
        goto done;
    }
    const char *reason = mtl_trainer_stop_reason(tr);
    if (!quiet) {
        printf("stopped: %s after %lld epochs, %lld steps\n",
               strcmp(reason, "callback") == 0 ? "interrupted" : reason,
               (long long)mtl_trainer_epoch(tr), (long long)mtl_trainer_step(tr));
        double best;
        int64_t be, bs;
        if (mtl_trainer_best(tr, &best, &be, &bs) == MTL_OK)
            printf("best monitored value %.6g at epoch %lld (step %lld)\n", best, (long long)be,
                   (long long)bs);
    }
    if (g_interrupted) {
        rc = 130;
        goto done;
    }
    /* the best checkpoint, when one was kept, is the model the test split scores */
    if (ckpt_path[0] && file_exists(ckpt_path)) {
        st = mtl_checkpoint_load_into(ckpt_path, model, NULL, NULL);
        if (st != MTL_OK) {
            rc = fail_api(st, 0);
            goto done;
        }
        if (!quiet)
            printf("checkpoint: %s (best model)\n", ckpt_path);
    }
    eval_set test;
    st = config_eval_set(cfg, "test", heads, &test);
    if (st == MTL_OK) {
        if (!quiet)
            printf("test metrics:\n");
        rc = run_eval_set(model, &test, "test", eval_batch ? eval_batch : batch);
    } else if (st != MTL_ERR_NOT_FOUND) {
        rc = fail_api(st, 0);
    }
    eval_set_free(&test, heads);
done:
    mtl_trainer_free(tr);
    mtl_weighting_free(w);
    mtl_optimizer_free(opt);
    mtl_model_free(model);
    mtl_config_free(cfg);
    return rc;
}

/* ---- eval ------------------------------------------------------------------------------ */

static int load_checkpoint(const char *path, mtl_model **model)
{
    mtl_status st = mtl_checkpoint_load(path, model, NULL, NULL);
    return st == MTL_OK ? EXIT_OK : fail_api(st, 0);
}

/* Labels as a head's loss takes them: int32 ids for cross_entropy, float32 otherwise. */
static mtl_status convert_labels(mtl_tensor **t, const char *loss)
{
    int want_int = strcmp(loss, "cross_entropy") == 0;
    int is_int = mtl_tensor_dtype(*t) == MTL_INT32;
    int64_t n = mtl_tensor_dim(*t, 0), total = mtl_tensor_numel(*t);
    if (want_int == is_int)
        return MTL_OK;
    mtl_tensor *o;
    int64_t shape[2] = {n, total / n};
    mtl_status st = mtl_tensor_create(&o, want_int ? MTL_INT32 : MTL_FLOAT32, want_int ? 1 : 2, shape);
    if (st != MTL_OK)
        return st;
    if (want_int) {
        const float *s = mtl_tensor_data_const(*t);
        int32_t *d = mtl_tensor_data(o);
        if (total != n) {
            mtl_tensor_free(o);
            fail_msg("class labels must have one value per sample");
            return MTL_ERR_SHAPE;
        }
        for (int64_t i = 0; i < n; i++)
            d[i] = isnan(s[i]) || s[i] < 0 ? -1 : (int32_t)s[i];
    } else {
        const int32_t *s = mtl_tensor_data_const(*t);
        float *d = mtl_tensor_data(o);
        for (int64_t i = 0; i < total; i++)
            d[i] = s[i] < 0 ? NAN : (float)s[i];
    }
    mtl_tensor_free(*t);
    *t = o;
    return MTL_OK;
}

static int cmd_eval(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("eval: expected CHECKPOINT and DATA");
    const char *ckpt = argv[0];
    const char *split = "test";
    int rc;
    mtl_model *model = NULL;
    if (ends_with(argv[1], ".yaml") || ends_with(argv[1], ".yml")) {
        mtl_config *cfg;
        mtl_status st = mtl_config_load(&cfg, argv[1]);
        if (st != MTL_OK)
            return fail_api(st, 1);
        rc = EXIT_OK;
        for (int i = 2; rc == EXIT_OK && i < argc; i++) {
            if (strcmp(argv[i], "--set") == 0 && i + 1 < argc)
                rc = apply_set(cfg, argv[++i]);
            else if (strcmp(argv[i], "--split") == 0 && i + 1 < argc)
                split = argv[++i];
            else
                rc = usage_error("eval: unexpected argument '%s'", argv[i]);
        }
        if (rc == EXIT_OK)
            rc = load_checkpoint(ckpt, &model);
        int heads = rc == EXIT_OK ? mtl_model_num_heads(model) : 0;
        if (rc == EXIT_OK && heads != mtl_config_num_tasks(cfg))
            rc = usage_error("eval: %s has %d heads, %s describes %d tasks", ckpt, heads, argv[1],
                             mtl_config_num_tasks(cfg));
        for (int t = 0; rc == EXIT_OK && t < heads; t++)
            if (strcmp(mtl_head_name(mtl_model_head_at(model, t)), mtl_config_task_name(cfg, t)))
                rc = usage_error("eval: head %d of %s is '%s', task %d of %s is '%s'", t, ckpt,
                                 mtl_head_name(mtl_model_head_at(model, t)), t, argv[1],
                                 mtl_config_task_name(cfg, t));
        if (rc == EXIT_OK) {
            eval_set e;
            st = config_eval_set(cfg, split, heads, &e);
            if (st == MTL_OK)
                rc = run_eval_set(model, &e, split, mtl_model_max_batch(model));
            else
                rc = fail_api(st, st == MTL_ERR_NOT_FOUND || st == MTL_ERR_INVALID_ARGUMENT);
            eval_set_free(&e, heads);
        }
        mtl_model_free(model);
        mtl_config_free(cfg);
        return rc;
    }
    /* .npy inputs and TASK=LABELS.npy */
    rc = load_checkpoint(ckpt, &model);
    if (rc != EXIT_OK)
        return rc;
    int heads = mtl_model_num_heads(model);
    mtl_tensor *x = NULL;
    mtl_dataset *ds = NULL;
    mtl_status st = mtl_npy_load(&x, argv[1]);
    if (st == MTL_OK && mtl_tensor_ndim(x) == 1) {
        int64_t sh[2] = {mtl_tensor_dim(x, 0), 1};
        st = mtl_tensor_reshape(x, 2, sh);
    }
    if (st == MTL_OK) {
        st = mtl_dataset_adopt(&ds, x, heads);
        if (st == MTL_OK)
            x = NULL;
    }
    rc = st == MTL_OK ? EXIT_OK : fail_api(st, 0);
    int labelled = 0;
    for (int i = 2; rc == EXIT_OK && i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq) {
            rc = usage_error("eval: expected TASK=LABELS.npy, got '%s'", argv[i]);
            break;
        }
        char task[128];
        snprintf(task, sizeof task, "%.*s", (int)(eq - argv[i]), argv[i]);
        int h;
        if (mtl_model_head_index(model, task, &h) != MTL_OK) {
            rc = usage_error("eval: %s has no task '%s'", ckpt, task);
            break;
        }
        mtl_tensor *y = NULL;
        st = mtl_npy_load(&y, eq + 1);
        if (st == MTL_OK)
            st = convert_labels(&y, mtl_head_loss(mtl_model_head_at(model, h)));
        if (st == MTL_OK)
            st = mtl_dataset_adopt_target(ds, h, y);
        if (st != MTL_OK) {
            mtl_tensor_free(y);
            rc = fail_api(st, 0);
        }
        labelled++;
    }
    if (rc == EXIT_OK && !labelled)
        rc = usage_error("eval: no labels given (TASK=LABELS.npy)");
    if (rc == EXIT_OK) {
        eval_set e = {&ds, 1, NULL};
        rc = run_eval_set(model, &e, "test", mtl_model_max_batch(model));
    }
    mtl_dataset_free(ds);
    mtl_tensor_free(x);
    mtl_model_free(model);
    return rc;
}

/* ---- predict --------------------------------------------------------------------------- */

static int cmd_predict(int argc, char **argv)
{
    const char *pos[3] = {NULL, NULL, NULL}, *config = NULL;
    int npos = 0, raw = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--raw") == 0)
            raw = 1;
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1])
            return usage_error("predict: unknown option '%s'", argv[i]);
        else if (npos < 3)
            pos[npos++] = argv[i];
        else
            return usage_error("predict: unexpected argument '%s'", argv[i]);
    }
    if (npos != 3)
        return usage_error("predict: expected CHECKPOINT INPUT OUTPUT.npy");
    mtl_model *model = NULL;
    int rc = load_checkpoint(pos[0], &model);
    if (rc != EXIT_OK)
        return rc;
    mtl_tensor *x = NULL;
    mtl_status st;
    if (ends_with(pos[1], ".csv")) {
        mtl_config *cfg = NULL;
        if (!config) {
            mtl_model_free(model);
            return usage_error("predict: a CSV input needs --config CONFIG (for its encoding)");
        }
        st = mtl_config_load(&cfg, config);
        if (st != MTL_OK) {
            mtl_model_free(model);
            return fail_api(st, 1);
        }
        st = mtl_config_encode_csv(cfg, pos[1], &x);
        mtl_config_free(cfg);
    } else {
        st = mtl_npy_load(&x, pos[1]);
        if (st == MTL_OK && mtl_tensor_ndim(x) == 1) {
            int64_t sh[2] = {mtl_tensor_dim(x, 0), 1};
            st = mtl_tensor_reshape(x, 2, sh);
        }
    }
    if (st != MTL_OK) {
        mtl_model_free(model);
        return fail_api(st, 0);
    }
    int heads = mtl_model_num_heads(model);
    int64_t n = mtl_tensor_dim(x, 0), mb = mtl_model_max_batch(model);
    int64_t row = mtl_tensor_numel(x) / n;
    int nd = mtl_tensor_ndim(x);
    int64_t shape[4];
    mtl_tensor_shape(x, shape, 4);
    mtl_tensor **outs = calloc((size_t)heads, sizeof *outs);
    if (!outs) {
        mtl_tensor_free(x);
        mtl_model_free(model);
        fail_msg("out of memory");
        return EXIT_RUNTIME;
    }
    st = MTL_OK;
    for (int h = 0; st == MTL_OK && h < heads; h++) {
        int64_t os[2] = {n, mtl_head_output_size(mtl_model_head_at(model, h))};
        st = mtl_tensor_create(&outs[h], MTL_FLOAT32, 2, os);
    }
    for (int64_t s = 0; st == MTL_OK && s < n; s += mb) {
        int64_t b = n - s < mb ? n - s : mb;
        int64_t bs[4];
        memcpy(bs, shape, sizeof bs);
        bs[0] = b;
        mtl_tensor *xb = NULL;
        st = mtl_tensor_wrap(&xb, (mtl_dtype)mtl_tensor_dtype(x),
                             (char *)mtl_tensor_data(x) + (size_t)(s * row) * 4, nd, bs);
        if (st == MTL_OK)
            st = mtl_model_predict(model, xb);
        for (int h = 0; st == MTL_OK && h < heads; h++) {
            int64_t k = mtl_head_output_size(mtl_model_head_at(model, h));
            int64_t os[2] = {b, k};
            mtl_tensor *ob = NULL;
            st = mtl_tensor_wrap(&ob, MTL_FLOAT32, (float *)mtl_tensor_data(outs[h]) + s * k, 2, os);
            if (st == MTL_OK)
                st = mtl_model_output(model, h, ob, raw ? MTL_OUTPUT_RAW : MTL_OUTPUT_PROBABILITIES);
            mtl_tensor_free(ob);
        }
        mtl_tensor_free(xb);
    }
    /* one task: OUTPUT as given; several: OUTPUT_<task>.npy */
    for (int h = 0; st == MTL_OK && h < heads; h++) {
        char path[4096];
        const char *out = pos[2];
        if (heads == 1) {
            snprintf(path, sizeof path, "%s", out);
        } else {
            size_t base = ends_with(out, ".npy") ? strlen(out) - 4 : strlen(out);
            snprintf(path, sizeof path, "%.*s_%s.npy", (int)base, out,
                     mtl_head_name(mtl_model_head_at(model, h)));
        }
        st = mtl_npy_save(outs[h], path);
        if (st == MTL_OK)
            printf("%s: %lld x %lld (%s)\n", path, (long long)n,
                   (long long)mtl_tensor_dim(outs[h], 1), raw ? "raw" : "probabilities");
    }
    rc = st == MTL_OK ? EXIT_OK : fail_api(st, 0);
    for (int h = 0; h < heads; h++)
        mtl_tensor_free(outs[h]);
    free(outs);
    mtl_tensor_free(x);
    mtl_model_free(model);
    return rc;
}

/* ---- info, config ---------------------------------------------------------------------- */

static int cmd_info(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("info: expected CHECKPOINT");
    size_t need = 0;
    mtl_status st = mtl_checkpoint_describe(argv[0], NULL, 0, &need);
    if (st != MTL_OK && st != MTL_ERR_RANGE)
        return fail_api(st, 0);
    char *buf = malloc(need);
    if (!buf) {
        fail_msg("out of memory");
        return EXIT_RUNTIME;
    }
    st = mtl_checkpoint_describe(argv[0], buf, need, NULL);
    if (st == MTL_OK)
        fputs(buf, stdout);
    free(buf);
    return st == MTL_OK ? EXIT_OK : fail_api(st, 0);
}

static int cmd_config(int argc, char **argv)
{
    if (argc < 1)
        return usage_error("config: expected CONFIG");
    mtl_config *cfg;
    mtl_status st = mtl_config_load(&cfg, argv[0]);
    if (st != MTL_OK)
        return fail_api(st, 1);
    int rc = EXIT_OK;
    for (int i = 1; rc == EXIT_OK && i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc)
            rc = apply_set(cfg, argv[++i]);
        else
            rc = usage_error("config: unexpected argument '%s'", argv[i]);
    }
    if (rc == EXIT_OK) {
        size_t need = 0;
        mtl_config_dump(cfg, NULL, 0, &need);
        char *buf = malloc(need);
        if (buf && mtl_config_dump(cfg, buf, need, NULL) == MTL_OK)
            fputs(buf, stdout);
        free(buf);
    }
    mtl_config_free(cfg);
    return rc;
}

/* ---- the generated example problem ----------------------------------------------------- */

/* Two tasks on 20 Gaussian features: a 10-class label (the argmax of a fixed random
 * projection) and a value (a smooth function of the same projections plus noise), so both
 * tasks depend on shared structure. */
#define EX_FEATURES 20
#define EX_CLASSES 10

static uint64_t g_rng;
static double ex_uniform(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * 0x1.0p-53;
}
static double ex_normal(void)
{
    return sqrt(-2.0 * log(1.0 - ex_uniform())) * cos(6.283185307179586 * ex_uniform());
}

static mtl_status write_split(const char *dir, const char *split, int64_t n,
                              float proj[EX_CLASSES][EX_FEATURES])
{
    mtl_tensor *x, *c, *v;
    int64_t sx[2] = {n, EX_FEATURES}, sv[2] = {n, 1};
    mtl_status st = mtl_tensor_create(&x, MTL_FLOAT32, 2, sx);
    if (st != MTL_OK)
        return st;
    if ((st = mtl_tensor_create(&c, MTL_INT32, 1, &n)) != MTL_OK) {
        mtl_tensor_free(x);
        return st;
    }
    if ((st = mtl_tensor_create(&v, MTL_FLOAT32, 2, sv)) != MTL_OK) {
        mtl_tensor_free(x);
        mtl_tensor_free(c);
        return st;
    }
    float *xd = mtl_tensor_data(x), *vd = mtl_tensor_data(v);
    int32_t *cd = mtl_tensor_data(c);
    for (int64_t i = 0; i < n; i++) {
        float *xi = xd + i * EX_FEATURES;
        for (int j = 0; j < EX_FEATURES; j++)
            xi[j] = (float)ex_normal();
        int best = 0;
        double bestv = -1e30, s = 0;
        for (int k = 0; k < EX_CLASSES; k++) {
            double a = 0;
            for (int j = 0; j < EX_FEATURES; j++)
                a += proj[k][j] * xi[j];
            if (a > bestv) {
                bestv = a;
                best = k;
            }
            s += tanh(a);
        }
        cd[i] = best;
        vd[i] = (float)(s / 3.0 + 0.1 * ex_normal());
    }
    char path[4096];
    const char *names[3] = {"x", "class", "value"};
    mtl_tensor *ts[3] = {x, c, v};
    for (int k = 0; st == MTL_OK && k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s_%s.npy", dir, split, names[k]);
        st = mtl_npy_save(ts[k], path);
        if (st == MTL_OK)
            printf("%s\n", path);
    }
    for (int k = 0; k < 3; k++)
        mtl_tensor_free(ts[k]);
    return st;
}

static int cmd_make_example_data(int argc, char **argv)
{
    const char *dir = NULL;
    long long samples = 8192, seed = 1;
    for (int i = 0; i < argc; i++) {
        char *end;
        if ((strcmp(argv[i], "--samples") == 0 || strcmp(argv[i], "--seed") == 0) && i + 1 < argc) {
            long long v = strtoll(argv[i + 1], &end, 10);
            if (*end || v < (argv[i][2] == 's' && argv[i][3] == 'a' ? 10 : 0))
                return usage_error("%s: expected an integer%s, got '%s'", argv[i],
                                   argv[i][3] == 'a' ? " >= 10" : " >= 0", argv[i + 1]);
            if (argv[i][3] == 'a')
                samples = v;
            else
                seed = v;
            i++;
        } else if (argv[i][0] == '-') {
            return usage_error("make-example-data: unknown option '%s'", argv[i]);
        } else if (!dir) {
            dir = argv[i];
        } else {
            return usage_error("make-example-data: unexpected argument '%s'", argv[i]);
        }
    }
    if (!dir)
        return usage_error("make-example-data: expected DIR");
    /* mkdir -p */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
            fail_msg("cannot create %s: %s", tmp, strerror(errno));
            return EXIT_RUNTIME;
        }
        *p = c;
        if (!c)
            break;
    }
    g_rng = 0x2545F4914F6CDD1Dull ^ (uint64_t)seed * 0x9E3779B97F4A7C15ull;
    if (!g_rng)
        g_rng = 1;
    float proj[EX_CLASSES][EX_FEATURES];
    for (int k = 0; k < EX_CLASSES; k++)
        for (int j = 0; j < EX_FEATURES; j++)
            proj[k][j] = (float)ex_normal();
    mtl_status st = write_split(dir, "train", samples, proj);
    if (st == MTL_OK)
        st = write_split(dir, "test", samples / 4 > 1 ? samples / 4 : 2, proj);
    return st == MTL_OK ? EXIT_OK : fail_api(st, 0);
}

static int cmd_make_multifashion(int argc, char **argv)
{
    const char *dir = NULL, *source = NULL;
    long long seed = MTL_MULTIFASHION_SEED, limit = 0;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "--seed") == 0 || strcmp(argv[i], "--limit") == 0) && i + 1 < argc) {
            char *end;
            long long v = strtoll(argv[i + 1], &end, 10);
            if (*end || !argv[i + 1][0] || v < 0)
                return usage_error("%s: expected an integer >= 0, got '%s'", argv[i], argv[i + 1]);
            if (argv[i][2] == 's')
                seed = v;
            else
                limit = v;
            i++;
        } else if (strcmp(argv[i], "--source") == 0 && i + 1 < argc) {
            source = argv[++i];
        } else if (argv[i][0] == '-') {
            return usage_error("make-multifashion: unknown option '%s'", argv[i]);
        } else if (!dir) {
            dir = argv[i];
        } else {
            return usage_error("make-multifashion: unexpected argument '%s'", argv[i]);
        }
    }
    if (!dir)
        return usage_error("make-multifashion: expected DIR");
    mtl_status st = mtl_multifashion_build(source, dir, (uint64_t)seed, limit);
    if (st != MTL_OK)
        return fail_api(st, 0);
    printf("Multi-Fashion written to %s (seed %lld%s)\n", dir, seed, limit ? ", limited" : "");
    return EXIT_OK;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("missing command");
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(g_help, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("mtl %s (libmtl %s)\n%s\n", MTL_VERSION_STRING, mtl_version_string(),
               mtl_build_info());
        return EXIT_OK;
    }
    if (mtl_version() / 10000 != MTL_VERSION_MAJOR) {
        fail_msg("libmtl %s is loaded, this program needs %d.x", mtl_version_string(),
                 MTL_VERSION_MAJOR);
        return EXIT_RUNTIME;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(g_help, stdout);
            return EXIT_OK;
        }
    if (strcmp(cmd, "train") == 0)
        return cmd_train(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "predict") == 0)
        return cmd_predict(argc - 2, argv + 2);
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 2, argv + 2);
    if (strcmp(cmd, "config") == 0)
        return cmd_config(argc - 2, argv + 2);
    if (strcmp(cmd, "make-example-data") == 0)
        return cmd_make_example_data(argc - 2, argv + 2);
    if (strcmp(cmd, "make-multifashion") == 0)
        return cmd_make_multifashion(argc - 2, argv + 2);
    return usage_error("unknown command '%s'", cmd);
}
