/* The trainer: epochs over single-input or multi-input data, task samplers, evaluation,
 * early stopping, keep-best and periodic checkpoints with the trainer's position saved next
 * to them, a JSON-lines metrics log and a progress callback.
 *
 * Trainer state file ("<checkpoint>.trainer"), all integers little-endian:
 *   magic "\x89MTLTRN\n" (8 bytes) · u32 version (1) · u32 heads T · u32 mode (1 single,
 *   2 multi) · u32 sampler · u64 steps per epoch · u64 epoch · u64 step · u64 step in epoch ·
 *   u64 samples in epoch · u64 step of the last evaluation · u32 has best · f64 best ·
 *   u64 best epoch · u64 best step · u64 evaluations without improvement ·
 *   u32 loaders L · L × (u32 present · u64 pass · u64 position) ·
 *   4 × u64 sampler random state · u32 sampler cursor ·
 *   T × (f64 loss sum since evaluation · u64 count · f64 loss sum in epoch · u64 count) ·
 *   u32 CRC-32 (IEEE) of every byte before it. */
#define _GNU_SOURCE /* newlocale/uselocale: numbers in the log ignore the process locale */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor_internal.h"
#include "data/dataset_internal.h"
#include "data/fileio.h"
#include "data/sampler.h"
#include "model/model_internal.h"
#include "mtl/metrics.h"
#include "mtl/optim.h"
#include "mtl/weighting.h"
#include "train/trainer_internal.h"

/* Checkpoints live in libmtl/io (mtl/io.h). A tree without that module still builds: the
 * functions are then weak references and a trainer that needs a checkpoint reports
 * "unsupported". With the module present they are ordinary references, so that static links
 * (the test programs) pull it in. */
#if defined(__has_include)
#if __has_include("mtl/io.h")
#include "mtl/io.h"
#define MTLI_HAVE_CHECKPOINTS 1
#endif
#endif
#ifdef MTLI_HAVE_CHECKPOINTS
static int have_checkpoints(void) { return 1; }
#else
mtl_status mtl_checkpoint_save(const char *path, const mtl_model *model,
                               const mtl_optimizer *opt, const mtl_weighting *w)
    __attribute__((weak));
mtl_status mtl_checkpoint_load_into(const char *path, mtl_model *model, mtl_optimizer *opt,
                                    mtl_weighting *w) __attribute__((weak));
static int have_checkpoints(void)
{
    return mtl_checkpoint_save != NULL && mtl_checkpoint_load_into != NULL;
}
#endif

#define STATE_VERSION 1u
static const unsigned char state_magic[8] = {0x89, 'M', 'T', 'L', 'T', 'R', 'N', '\n'};

enum { MODE_NONE = 0, MODE_SINGLE = 1, MODE_MULTI = 2 };
enum { K_INT, K_DOUBLE, K_STRING };

typedef struct {
    const char *name;
    int type;
    size_t offset;
    double lo, hi; /* numeric range */
} key_def;

struct mtl_trainer {
    mtl_model *model;
    mtl_optimizer *opt;
    mtl_weighting *w;
    int T;
    int mode;
    const mtl_dataset *train, *val;
    const mtl_dataset **task_train, **task_val; /* [T] */

    /* keys */
    int64_t epochs, batch_size, eval_batch_size, seed, shuffle, drop_last, eval_every,
        eval_every_steps, patience, checkpoint_every, max_steps;
    double temperature, min_delta;
    char *es_metric, *es_mode, *ckpt_path, *ckpt_pattern, *sampler, *log_path;
    char **task_metrics; /* [T] */

    mtl_progress_fn fn;
    void *user;

    /* prepared run state (loaders and sampler); rebuilt when data or keys change */
    bool prepared;
    mtl_loader **loaders; /* [T] in multi mode, [1] in single mode */
    int nloaders;
    int64_t steps_per_epoch;
    mtli_sampler smp;
    mtli_sampler_kind smp_kind;

    /* per-step buffers */
    const mtl_tensor **in, **tg, **mk; /* [T] */
    float *losses;                     /* [T] */
    double *values;                    /* [2 + T] callback values */
    double *weights;                   /* [T] */
    double *ev_sum, *ep_sum;           /* [T] loss sums since evaluation / in epoch */
    int64_t *ev_cnt, *ep_cnt;

    /* position */
    int64_t epoch, step, step_in_epoch, epoch_samples, last_eval_step;
    bool has_best;
    double best;
    int64_t best_epoch, best_step, bad;
    const char *stop_reason;
    mtl_eval_result *last;

    FILE *log;
    locale_t c_locale;
};

#define OFF(f) offsetof(struct mtl_trainer, f)
static const key_def keys[] = {
    {"epochs", K_INT, OFF(epochs), 1, 1e15},
    {"batch_size", K_INT, OFF(batch_size), 1, 1e15},
    {"eval_batch_size", K_INT, OFF(eval_batch_size), 0, 1e15},
    {"seed", K_INT, OFF(seed), 0, 9.2e18},
    {"shuffle", K_INT, OFF(shuffle), 0, 1},
    {"drop_last", K_INT, OFF(drop_last), 0, 1},
    {"eval_every", K_INT, OFF(eval_every), 0, 1e15},
    {"eval_every_steps", K_INT, OFF(eval_every_steps), 0, 1e15},
    {"early_stopping_patience", K_INT, OFF(patience), 0, 1e15},
    {"checkpoint_every", K_INT, OFF(checkpoint_every), 0, 1e15},
    {"max_steps", K_INT, OFF(max_steps), 0, 1e15},
    {"temperature", K_DOUBLE, OFF(temperature), 0, INFINITY},
    {"early_stopping_min_delta", K_DOUBLE, OFF(min_delta), 0, INFINITY},
    {"early_stopping_metric", K_STRING, OFF(es_metric), 0, 0},
    {"early_stopping_mode", K_STRING, OFF(es_mode), 0, 0},
    {"checkpoint_path", K_STRING, OFF(ckpt_path), 0, 0},
    {"checkpoint_pattern", K_STRING, OFF(ckpt_pattern), 0, 0},
    {"sampler", K_STRING, OFF(sampler), 0, 0},
    {"log_path", K_STRING, OFF(log_path), 0, 0},
};
#define NKEYS ((int)(sizeof keys / sizeof keys[0]))

/* ---- creation and keys ------------------------------------------------------------------- */

static void unprepare(mtl_trainer *tr)
{
    for (int i = 0; i < tr->nloaders; i++)
        mtl_loader_free(tr->loaders[i]);
    mtli_free(tr->loaders);
    tr->loaders = NULL;
    tr->nloaders = 0;
    mtli_sampler_free(&tr->smp);
    tr->steps_per_epoch = 0;
    /* a changed data order restarts the epoch in progress */
    if (tr->prepared && tr->step_in_epoch > 0) {
        tr->step_in_epoch = 0;
        tr->epoch_samples = 0;
        for (int t = 0; t < tr->T; t++) {
            tr->ep_sum[t] = 0.0;
            tr->ep_cnt[t] = 0;
        }
    }
    tr->prepared = false;
}

MTL_API void mtl_trainer_free(mtl_trainer *tr)
{
    if (!tr)
        return;
    unprepare(tr);
    mtli_free(tr->task_train);
    mtli_free(tr->task_val);
    mtli_free(tr->es_metric);
    mtli_free(tr->es_mode);
    mtli_free(tr->ckpt_path);
    mtli_free(tr->ckpt_pattern);
    mtli_free(tr->sampler);
    mtli_free(tr->log_path);
    for (int t = 0; tr->task_metrics && t < tr->T; t++)
        mtli_free(tr->task_metrics[t]);
    mtli_free(tr->task_metrics);
    mtli_free(tr->in);
    mtli_free(tr->tg);
    mtli_free(tr->mk);
    mtli_free(tr->losses);
    mtli_free(tr->values);
    mtli_free(tr->weights);
    mtli_free(tr->ev_sum);
    mtli_free(tr->ep_sum);
    mtli_free(tr->ev_cnt);
    mtli_free(tr->ep_cnt);
    mtl_eval_result_free(tr->last);
    if (tr->log)
        fclose(tr->log);
    if (tr->c_locale)
        freelocale(tr->c_locale);
    mtli_free(tr);
}

MTL_API mtl_status mtl_trainer_create(mtl_trainer **out, mtl_model *model, mtl_optimizer *opt,
                                      mtl_weighting *weighting)
{
    const char *fn = "mtl_trainer_create";
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    MTLI_CHECK_NULL(model, fn);
    MTLI_CHECK_NULL(opt, fn);
    if (!model->built)
        return mtli_error(MTL_ERR_STATE, "%s: the model is not built (call mtl_model_build)", fn);
    int T = model->nheads;
    if (T < 1)
        return mtli_error(MTL_ERR_STATE, "%s: the model has no head", fn);
    if (weighting && mtl_weighting_num_tasks(weighting) != T)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: the weighting is for %d tasks, the model has %d heads", fn,
                          mtl_weighting_num_tasks(weighting), T);
    mtl_trainer *tr = mtli_calloc(1, sizeof *tr);
    if (!tr)
        return mtli_oom("trainer", sizeof *tr);
    tr->model = model;
    tr->opt = opt;
    tr->w = weighting;
    tr->T = T;
    tr->epochs = 10;
    tr->batch_size = 32;
    tr->shuffle = 1;
    tr->eval_every = 1;
    tr->temperature = 2.0;
    tr->stop_reason = "";
    size_t n = (size_t)T;
    tr->task_train = mtli_calloc(n, sizeof *tr->task_train);
    tr->task_val = mtli_calloc(n, sizeof *tr->task_val);
    tr->task_metrics = mtli_calloc(n, sizeof *tr->task_metrics);
    tr->in = mtli_calloc(n, sizeof *tr->in);
    tr->tg = mtli_calloc(n, sizeof *tr->tg);
    tr->mk = mtli_calloc(n, sizeof *tr->mk);
    tr->losses = mtli_calloc(n, sizeof *tr->losses);
    tr->values = mtli_calloc(n + 2, sizeof *tr->values);
    tr->weights = mtli_calloc(n, sizeof *tr->weights);
    tr->ev_sum = mtli_calloc(n, sizeof *tr->ev_sum);
    tr->ep_sum = mtli_calloc(n, sizeof *tr->ep_sum);
    tr->ev_cnt = mtli_calloc(n, sizeof *tr->ev_cnt);
    tr->ep_cnt = mtli_calloc(n, sizeof *tr->ep_cnt);
    tr->es_metric = mtli_strdup("");
    tr->es_mode = mtli_strdup("auto");
    tr->ckpt_path = mtli_strdup("");
    tr->ckpt_pattern = mtli_strdup("");
    tr->sampler = mtli_strdup("all");
    tr->log_path = mtli_strdup("");
    if (!tr->task_train || !tr->task_val || !tr->task_metrics || !tr->in || !tr->tg || !tr->mk ||
        !tr->losses || !tr->values || !tr->weights || !tr->ev_sum || !tr->ep_sum ||
        !tr->ev_cnt || !tr->ep_cnt || !tr->es_metric || !tr->es_mode || !tr->ckpt_path ||
        !tr->ckpt_pattern || !tr->sampler || !tr->log_path) {
        mtl_trainer_free(tr);
        return mtli_oom("trainer buffers", n * 128);
    }
    *out = tr;
    return MTL_OK;
}

static const key_def *find_key(const char *key)
{
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, key) == 0)
            return &keys[i];
    return NULL;
}

static const char *type_name(int type)
{
    return type == K_INT ? "an integer" : type == K_DOUBLE ? "a number" : "a string";
}

static mtl_status unknown_key(const char *fn, const char *key)
{
    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                      "%s: unknown key '%s' (see mtl_trainer_key_name for the keys)", fn, key);
}

/* keys whose change alters the data order or the steps of an epoch */
static bool changes_order(const char *key)
{
    static const char *const k[] = {"batch_size", "seed", "shuffle", "drop_last", "sampler",
                                    "temperature"};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strcmp(key, k[i]) == 0)
            return true;
    return false;
}

static mtl_status set_number(mtl_trainer *tr, const char *key, double v, const char *fn)
{
    const key_def *k = find_key(key);
    if (!k)
        return unknown_key(fn, key);
    if (k->type == K_STRING)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: key '%s' takes a string", fn, key);
    bool open_lo = strcmp(key, "temperature") == 0; /* T > 0 */
    if (isnan(v) || (k->type == K_DOUBLE && !isfinite(v)) || v < k->lo || v > k->hi ||
        (open_lo && v <= k->lo))
        return mtli_error(MTL_ERR_RANGE, "%s: %s = %g is out of range (expected %s %g%s)", fn,
                          key, v, open_lo ? "a finite value >" : "a value >=", k->lo,
                          k->type == K_INT ? ", an integer" : "");
    if (k->type == K_INT && v != floor(v))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: key '%s' takes an integer, got %g", fn,
                          key, v);
    char *p = (char *)tr + k->offset;
    if (k->type == K_INT)
        *(int64_t *)p = (int64_t)v;
    else
        *(double *)p = v;
    if (changes_order(key))
        unprepare(tr);
    return MTL_OK;
}

MTL_API mtl_status mtl_trainer_set_int(mtl_trainer *tr, const char *key, int64_t value)
{
    const char *fn = "mtl_trainer_set_int";
    MTLI_CHECK_NULL(tr, fn);
    MTLI_CHECK_NULL(key, fn);
    const key_def *k = find_key(key);
    if (k && k->type == K_INT && (value < (int64_t)k->lo || (double)value > k->hi))
        return mtli_error(MTL_ERR_RANGE, "%s: %s = %lld is out of range (expected %.0f..%.0f)",
                          fn, key, (long long)value, k->lo, k->hi);
    return set_number(tr, key, (double)value, fn);
}

MTL_API mtl_status mtl_trainer_set_double(mtl_trainer *tr, const char *key, double value)
{
    const char *fn = "mtl_trainer_set_double";
    MTLI_CHECK_NULL(tr, fn);
    MTLI_CHECK_NULL(key, fn);
    return set_number(tr, key, value, fn);
}

static int task_of_metrics_key(const mtl_trainer *tr, const char *key)
{
    if (strncmp(key, "metrics.", 8) != 0)
        return -2;
    for (int t = 0; t < tr->T; t++)
        if (strcmp(tr->model->heads[t]->name, key + 8) == 0)
            return t;
    return -1;
}

static mtl_status replace_string(char **dst, const char *value)
{
    char *s = mtli_strdup(value);
    if (!s)
        return mtli_oom("trainer key value", strlen(value) + 1);
    mtli_free(*dst);
    *dst = s;
    return MTL_OK;
}

MTL_API mtl_status mtl_trainer_set_string(mtl_trainer *tr, const char *key, const char *value)
{
    const char *fn = "mtl_trainer_set_string";
    MTLI_CHECK_NULL(tr, fn);
    MTLI_CHECK_NULL(key, fn);
    MTLI_CHECK_NULL(value, fn);
    int t = task_of_metrics_key(tr, key);
    if (t == -1)
        return mtli_error(MTL_ERR_NOT_FOUND, "%s: key '%s': the model has no head '%s'", fn, key,
                          key + 8);
    if (t >= 0) {
        MTLI_TRY(mtli_eval_check_metrics(value, fn, tr->model->heads[t]->name));
        return replace_string(&tr->task_metrics[t], value);
    }
    const key_def *k = find_key(key);
    if (!k)
        return unknown_key(fn, key);
    if (k->type != K_STRING)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: key '%s' takes %s", fn, key,
                          type_name(k->type));
    if (strcmp(key, "sampler") == 0) {
        mtli_sampler_kind kind;
        mtl_status st = mtli_sampler_kind_from_name(value, &kind);
        if (st != MTL_OK) {
            mtli_error_prefix("%s", fn);
            return st;
        }
    }
    if (strcmp(key, "early_stopping_mode") == 0 && strcmp(value, "auto") != 0 &&
        strcmp(value, "min") != 0 && strcmp(value, "max") != 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: early_stopping_mode '%s' is unknown (expected auto, min or max)",
                          fn, value);
    MTLI_TRY(replace_string((char **)((char *)tr + k->offset), value));
    if (changes_order(key))
        unprepare(tr);
    return MTL_OK;
}

MTL_API mtl_status mtl_trainer_get_int(const mtl_trainer *tr, const char *key, int64_t *value)
{
    const char *fn = "mtl_trainer_get_int";
    MTLI_CHECK_NULL(tr, fn);
    MTLI_CHECK_NULL(key, fn);
    MTLI_CHECK_NULL(value, fn);
    const key_def *k = find_key(key);
    if (!k)
        return unknown_key(fn, key);
    if (k->type != K_INT)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: key '%s' is not an integer key", fn,
                          key);
    *value = *(const int64_t *)((const char *)tr + k->offset);
    return MTL_OK;
}

MTL_API mtl_status mtl_trainer_get_double(const mtl_trainer *tr, const char *key, double *value)
{
    const char *fn = "mtl_trainer_get_double";
    MTLI_CHECK_NULL(tr, fn);
    MTLI_CHECK_NULL(key, fn);
    MTLI_CHECK_NULL(value, fn);
    const key_def *k = find_key(key);
    if (!k)
        return unknown_key(fn, key);
    if (k->type == K_STRING)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: key '%s' is a string key", fn, key);
    const char *p = (const char *)tr + k->offset;
    *value = k->type == K_INT ? (double)*(const int64_t *)p : *(const double *)p;
    return MTL_OK;
}

MTL_API mtl_status mtl_trainer_get_string(const mtl_trainer *tr, const char *key,
                                          const char **value)
{
    const char *fn = "mtl_trainer_get_string";
    MTLI_CHECK_NULL(tr, fn);
    MTLI_CHECK_NULL(key, fn);
    MTLI_CHECK_NULL(value, fn);
    int t = task_of_metrics_key(tr, key);
    if (t == -1)
        return mtli_error(MTL_ERR_NOT_FOUND, "%s: key '%s': the model has no head '%s'", fn, key,
                          key + 8);
    if (t >= 0) {
        *value = tr->task_metrics[t] ? tr->task_metrics[t] : "";
        return MTL_OK;
    }
    const key_def *k = find_key(key);
    if (!k)
        return unknown_key(fn, key);
    if (k->type != K_STRING)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: key '%s' is not a string key", fn, key);
    *value = *(char *const *)((const char *)tr + k->offset);
    return MTL_OK;
}

MTL_API const char *mtl_trainer_key_name(int index)
{
    return index >= 0 && index < NKEYS ? keys[index].name : NULL;
}

MTL_API mtl_status mtl_trainer_set_progress(mtl_trainer *tr, mtl_progress_fn fn, void *user)
{
    MTLI_CHECK_NULL(tr, "mtl_trainer_set_progress");
    tr->fn = fn;
    tr->user = user;
    return MTL_OK;
}

/* ---- data -------------------------------------------------------------------------------- */

static mtl_status check_inputs(const mtl_trainer *tr, const mtl_dataset *ds, const char *what,
                               const char *fn)
{
    const mtl_model *m = tr->model;
    const mtl_tensor *x = ds->inputs;
    if (x->dtype != m->input_dtype)
        return mtli_error(MTL_ERR_SHAPE, "%s: %s inputs are %s, the model expects %s", fn, what,
                          x->dtype == MTL_INT32 ? "int32" : "float32",
                          m->input_dtype == MTL_INT32 ? "int32" : "float32");
    if (x->ndim != m->input_ndim + 1)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: %s inputs have %d dimensions, the model expects %d (samples + "
                          "sample shape)",
                          fn, what, x->ndim, m->input_ndim + 1);
    for (int d = 0; d < m->input_ndim; d++)
        if (x->shape[d + 1] != m->input_shape[d])
            return mtli_error(MTL_ERR_SHAPE,
                              "%s: %s inputs: dimension %d is %lld, the model expects %lld", fn,
                              what, d + 1, (long long)x->shape[d + 1],
                              (long long)m->input_shape[d]);
    return MTL_OK;
}

MTL_API mtl_status mtl_trainer_set_data(mtl_trainer *tr, const mtl_dataset *train,
                                        const mtl_dataset *val)
{
    const char *fn = "mtl_trainer_set_data";
    MTLI_CHECK_NULL(tr, fn);
    MTLI_CHECK_NULL(train, fn);
    const mtl_dataset *ds[2] = {train, val};
    const char *what[2] = {"train", "val"};
    for (int i = 0; i < 2; i++) {
        if (!ds[i])
            continue;
        if (ds[i]->ntasks != tr->T)
            return mtli_error(MTL_ERR_SHAPE,
                              "%s: the %s dataset has %d task slots, the model has %d heads", fn,
                              what[i], ds[i]->ntasks, tr->T);
        MTLI_TRY(check_inputs(tr, ds[i], what[i], fn));
        int any = 0;
        for (int t = 0; t < tr->T; t++)
            any |= ds[i]->targets[t] != NULL;
        if (!any)
            return mtli_error(MTL_ERR_STATE, "%s: the %s dataset has no target", fn, what[i]);
    }
    unprepare(tr);
    for (int t = 0; t < tr->T; t++)
        tr->task_train[t] = tr->task_val[t] = NULL;
    tr->train = train;
    tr->val = val;
    tr->mode = MODE_SINGLE;
    return MTL_OK;
}

MTL_API mtl_status mtl_trainer_set_task_data(mtl_trainer *tr, const char *task,
                                             const mtl_dataset *train, const mtl_dataset *val)
{
    const char *fn = "mtl_trainer_set_task_data";
    MTLI_CHECK_NULL(tr, fn);
    MTLI_CHECK_NULL(task, fn);
    if (tr->mode == MODE_SINGLE)
        return mtli_error(MTL_ERR_STATE,
                          "%s: single-input data is set (mtl_trainer_set_data); per-task data "
                          "cannot be mixed with it",
                          fn);
    int t = -1;
    for (int h = 0; h < tr->T; h++)
        if (strcmp(tr->model->heads[h]->name, task) == 0)
            t = h;
    if (t < 0)
        return mtli_error(MTL_ERR_NOT_FOUND, "%s: the model has no head '%s'", fn, task);
    if (!train && val)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: task '%s': validation data without training data", fn, task);
    const mtl_dataset *ds[2] = {train, val};
    const char *what[2] = {"train", "val"};
    for (int i = 0; i < 2; i++) {
        if (!ds[i])
            continue;
        int slot = mtli_eval_slot(ds[i], t, tr->T, 1);
        if (slot < 0)
            return mtli_error(MTL_ERR_SHAPE,
                              "%s: task '%s': the %s dataset has %d task slots, expected %d (one "
                              "per head) or 1",
                              fn, task, what[i], ds[i]->ntasks, tr->T);
        if (!ds[i]->targets[slot])
            return mtli_error(MTL_ERR_STATE,
                              "%s: task '%s': the %s dataset has no target in slot %d", fn, task,
                              what[i], slot);
        MTLI_TRY(check_inputs(tr, ds[i], what[i], fn));
    }
    unprepare(tr);
    tr->task_train[t] = train;
    tr->task_val[t] = val;
    tr->mode = MODE_MULTI;
    int any = 0;
    for (int h = 0; h < tr->T; h++)
        any |= tr->task_train[h] != NULL;
    if (!any)
        tr->mode = MODE_NONE;
    return MTL_OK;
}

/* ---- preparing a run --------------------------------------------------------------------- */

static int64_t eval_bs(const mtl_trainer *tr)
{
    int64_t bs = tr->eval_batch_size ? tr->eval_batch_size : tr->batch_size;
    return bs < (int64_t)tr->model->max_batch ? bs : (int64_t)tr->model->max_batch;
}

static mtl_status prepare(mtl_trainer *tr, const char *fn)
{
    if (tr->prepared)
        return MTL_OK;
    if (tr->mode == MODE_NONE)
        return mtli_error(MTL_ERR_STATE,
                          "%s: no training data (mtl_trainer_set_data or "
                          "mtl_trainer_set_task_data)",
                          fn);
    if ((size_t)tr->batch_size > tr->model->max_batch)
        return mtli_error(MTL_ERR_SHAPE, "%s: batch_size %lld exceeds the model's max_batch %zu",
                          fn, (long long)tr->batch_size, tr->model->max_batch);
    if (tr->eval_batch_size && (size_t)tr->eval_batch_size > tr->model->max_batch)
        return mtli_error(MTL_ERR_SHAPE,
                          "%s: eval_batch_size %lld exceeds the model's max_batch %zu", fn,
                          (long long)tr->eval_batch_size, tr->model->max_batch);
    MTLI_TRY(mtli_sampler_kind_from_name(tr->sampler, &tr->smp_kind));
    int n = tr->mode == MODE_SINGLE ? 1 : tr->T;
    tr->loaders = mtli_calloc((size_t)n, sizeof *tr->loaders);
    if (!tr->loaders)
        return mtli_oom("trainer loaders", (size_t)n * sizeof(void *));
    tr->nloaders = n;
    mtl_status st = MTL_OK;
    uint64_t seed = (uint64_t)tr->seed;
    if (tr->mode == MODE_SINGLE) {
        st = mtl_loader_create(&tr->loaders[0], tr->train, tr->batch_size, (int)tr->shuffle,
                               mtli_seed_mix(seed, 1, 0), (int)tr->drop_last);
        if (st == MTL_OK)
            tr->steps_per_epoch = tr->loaders[0]->nbatches;
    } else {
        int64_t sizes[256];
        int64_t *sz = tr->T <= 256 ? sizes : mtli_calloc((size_t)tr->T, sizeof *sz);
        if (!sz)
            st = mtli_oom("task sizes", (size_t)tr->T * sizeof(int64_t));
        int64_t spe = 0;
        for (int t = 0; t < tr->T && st == MTL_OK; t++) {
            sz[t] = 0;
            if (!tr->task_train[t])
                continue;
            st = mtl_loader_create(&tr->loaders[t], tr->task_train[t], tr->batch_size,
                                   (int)tr->shuffle, mtli_seed_mix(seed, 2, (uint64_t)t),
                                   (int)tr->drop_last);
            if (st != MTL_OK) {
                mtli_error_prefix("%s: task '%s'", fn, tr->model->heads[t]->name);
                break;
            }
            sz[t] = tr->task_train[t]->n;
            int64_t nb = tr->loaders[t]->nbatches;
            if (tr->smp_kind == MTLI_SAMPLER_ALL)
                spe = nb > spe ? nb : spe;
            else
                spe += nb;
        }
        if (st == MTL_OK)
            st = mtli_sampler_init(&tr->smp, tr->smp_kind, sz, tr->T, tr->temperature,
                                   mtli_seed_mix(seed, 3, 0));
        if (sz && sz != sizes)
            mtli_free(sz);
        tr->steps_per_epoch = spe;
    }
    if (st != MTL_OK) {
        unprepare(tr);
        return st;
    }
    tr->prepared = true;
    return MTL_OK;
}

MTL_API int64_t mtl_trainer_steps_per_epoch(const mtl_trainer *tr)
{
    if (!tr)
        return -1;
    if (!tr->prepared && prepare((mtl_trainer *)tr, "mtl_trainer_steps_per_epoch") != MTL_OK)
        return 0;
    return tr->steps_per_epoch;
}

/* ---- one step ---------------------------------------------------------------------------- */

/* The next non-empty batch of a loader (a finished pass restarts it, reshuffled). */
static mtl_status next_batch(mtl_loader *ld, int64_t *rows)
{
    MTLI_TRY(mtl_loader_next(ld, rows));
    if (*rows == 0)
        MTLI_TRY(mtl_loader_next(ld, rows));
    return MTL_OK;
}

static void task_batch(mtl_trainer *tr, int t)
{
    mtl_loader *ld = tr->loaders[t];
    int slot = mtli_eval_slot(ld->ds, t, tr->T, 1);
    tr->in[t] = ld->input;
    tr->tg[t] = ld->targets[slot];
    tr->mk[t] = ld->masks[slot];
}

static mtl_status train_step(mtl_trainer *tr, int64_t *samples)
{
    int64_t rows, total = 0;
    mtl_model *m = tr->model;
    if (tr->mode == MODE_SINGLE) {
        mtl_loader *ld = tr->loaders[0];
        MTLI_TRY(next_batch(ld, &rows));
        *samples = rows;
        return mtl_model_train_step(m, tr->opt, tr->w, ld->input,
                                    (const mtl_tensor *const *)ld->targets,
                                    (const mtl_tensor *const *)ld->masks, tr->losses);
    }
    for (int t = 0; t < tr->T; t++)
        tr->in[t] = tr->tg[t] = tr->mk[t] = NULL;
    if (tr->smp_kind == MTLI_SAMPLER_ALL) {
        /* one batch of every task with data */
        for (int t = 0; t < tr->T; t++) {
            if (!tr->loaders[t])
                continue;
            MTLI_TRY(next_batch(tr->loaders[t], &rows));
            task_batch(tr, t);
            total += rows;
        }
    } else {
        int t = mtli_sampler_next(&tr->smp);
        MTLI_TRY(next_batch(tr->loaders[t], &rows));
        task_batch(tr, t);
        total = rows;
    }
    *samples = total;
    return mtl_model_train_step_multi(m, tr->opt, tr->w, tr->in, tr->tg, tr->mk, tr->losses);
}

/* ---- the JSON-lines log ------------------------------------------------------------------ */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.17g", v);
    else
        fputs("null", f);
}

static int64_t epoch_number(const mtl_trainer *tr)
{
    return tr->step_in_epoch == 0 && tr->epoch > 0 ? tr->epoch : tr->epoch + 1;
}

static mtl_status write_log(mtl_trainer *tr, const double *train_loss, double lr)
{
    if (!tr->log)
        return MTL_OK;
    FILE *f = tr->log;
    locale_t old = uselocale(tr->c_locale);
    fprintf(f, "{\"epoch\": %lld, \"step\": %lld, \"lr\": ", (long long)epoch_number(tr),
            (long long)tr->step);
    json_number(f, lr);
    fputs(", \"train\": {", f);
    for (int t = 0; t < tr->T; t++) {
        if (t)
            fputs(", ", f);
        json_string(f, tr->model->heads[t]->name);
        fputs(": ", f);
        json_number(f, train_loss[t]);
    }
    fputs("}, \"val\": {", f);
    int k = 0;
    for (int i = 0; i < tr->last->n; i++) {
        const char *name = tr->last->names[i];
        if (strncmp(name, "val.", 4) != 0)
            continue;
        if (k++)
            fputs(", ", f);
        json_string(f, name + 4);
        fputs(": ", f);
        json_number(f, tr->last->values[i]);
    }
    fputs("}, \"weights\": {", f);
    for (int t = 0; t < tr->T; t++) {
        if (t)
            fputs(", ", f);
        json_string(f, tr->model->heads[t]->name);
        fputs(": ", f);
        json_number(f, tr->weights[t]);
    }
    fputs("}}\n", f);
    int bad = fflush(f) != 0 || ferror(f);
    int err = errno;
    uselocale(old);
    if (bad) {
        char buf[128];
        return mtli_error(MTL_ERR_IO, "mtl_trainer_run: cannot write the log '%s': %s",
                          tr->log_path, mtli_data_strerror(err, buf, sizeof buf));
    }
    return MTL_OK;
}

/* ---- checkpoints and the trainer state --------------------------------------------------- */

static size_t state_size(const mtl_trainer *tr)
{
    return 8 + 4 * 4 + 8 * 6 + 4 + 8 * 4 + 4 + (size_t)tr->nloaders * 20 + 8 * 4 + 4 +
           (size_t)tr->T * 32 + 4;
}

static unsigned char *put32(unsigned char *p, uint32_t v)
{
    mtli_le_put32(p, v);
    return p + 4;
}

static unsigned char *put64(unsigned char *p, uint64_t v)
{
    mtli_le_put64(p, v);
    return p + 8;
}

static unsigned char *putf64(unsigned char *p, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return put64(p, u);
}

static mtl_status save_state(const mtl_trainer *tr, const char *path, const char *fn)
{
    size_t n = state_size(tr);
    unsigned char *buf = mtli_malloc(n);
    if (!buf)
        return mtli_oom("trainer state", n);
    unsigned char *p = buf;
    memcpy(p, state_magic, 8);
    p += 8;
    p = put32(p, STATE_VERSION);
    p = put32(p, (uint32_t)tr->T);
    p = put32(p, (uint32_t)tr->mode);
    p = put32(p, (uint32_t)tr->smp_kind);
    p = put64(p, (uint64_t)tr->steps_per_epoch);
    p = put64(p, (uint64_t)tr->epoch);
    p = put64(p, (uint64_t)tr->step);
    p = put64(p, (uint64_t)tr->step_in_epoch);
    p = put64(p, (uint64_t)tr->epoch_samples);
    p = put64(p, (uint64_t)tr->last_eval_step);
    p = put32(p, tr->has_best);
    p = putf64(p, tr->best);
    p = put64(p, (uint64_t)tr->best_epoch);
    p = put64(p, (uint64_t)tr->best_step);
    p = put64(p, (uint64_t)tr->bad);
    p = put32(p, (uint32_t)tr->nloaders);
    for (int i = 0; i < tr->nloaders; i++) {
        const mtl_loader *ld = tr->loaders[i];
        p = put32(p, ld != NULL);
        p = put64(p, ld ? (uint64_t)ld->pass : 0);
        p = put64(p, ld ? (uint64_t)ld->pos : 0);
    }
    for (int i = 0; i < 4; i++)
        p = put64(p, tr->smp.rng.s[i]);
    p = put32(p, (uint32_t)tr->smp.cursor);
    for (int t = 0; t < tr->T; t++) {
        p = putf64(p, tr->ev_sum[t]);
        p = put64(p, (uint64_t)tr->ev_cnt[t]);
        p = putf64(p, tr->ep_sum[t]);
        p = put64(p, (uint64_t)tr->ep_cnt[t]);
    }
    p = put32(p, mtli_data_crc32(0, buf, (size_t)(p - buf)));
    mtli_data_writer wr;
    mtl_status st = mtli_data_writer_open(&wr, path, fn);
    if (st == MTL_OK) {
        st = mtli_data_writer_write(&wr, buf, (size_t)(p - buf));
        if (st == MTL_OK)
            st = mtli_data_writer_commit(&wr);
        else
            mtli_data_writer_abort(&wr);
    }
    mtli_free(buf);
    return st;
}

static char *state_path(const char *path)
{
    size_t n = strlen(path);
    char *s = mtli_malloc(n + 9);
    if (s) {
        memcpy(s, path, n);
        memcpy(s + n, ".trainer", 9);
    }
    return s;
}

static mtl_status save_checkpoint(mtl_trainer *tr, const char *path, const char *fn)
{
    if (!have_checkpoints())
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "%s: this build of libmtl has no checkpoints (cannot save '%s')", fn,
                          path);
    MTLI_TRY(mtl_checkpoint_save(path, tr->model, tr->opt, tr->w));
    char *sp = state_path(path);
    if (!sp)
        return mtli_oom("trainer state path", strlen(path) + 9);
    mtl_status st = save_state(tr, sp, fn);
    mtli_free(sp);
    return st;
}

/* Expand "{epoch}" and "{step}" in the periodic checkpoint pattern. */
static mtl_status periodic_path(const mtl_trainer *tr, char **out)
{
    char num[2][32];
    snprintf(num[0], sizeof num[0], "%lld", (long long)tr->epoch);
    snprintf(num[1], sizeof num[1], "%lld", (long long)tr->step);
    const char *pat = tr->ckpt_pattern;
    char *def = NULL;
    if (!*pat) {
        size_t n = strlen(tr->ckpt_path);
        def = mtli_malloc(n + 16);
        if (!def)
            return mtli_oom("checkpoint path", n + 16);
        memcpy(def, tr->ckpt_path, n);
        memcpy(def + n, ".epoch{epoch}", 14);
        pat = def;
    }
    size_t len = 0;
    for (int pass = 0; pass < 2; pass++) {
        char *dst = pass ? *out : NULL;
        size_t k = 0;
        for (const char *p = pat; *p;) {
            const char *rep = NULL;
            if (strncmp(p, "{epoch}", 7) == 0)
                rep = num[0], p += 7;
            else if (strncmp(p, "{step}", 6) == 0)
                rep = num[1], p += 6;
            if (rep) {
                size_t r = strlen(rep);
                if (dst)
                    memcpy(dst + k, rep, r);
                k += r;
            } else {
                if (dst)
                    dst[k] = *p;
                k++;
                p++;
            }
        }
        if (dst)
            dst[k] = '\0';
        len = k;
        if (!pass) {
            *out = mtli_malloc(len + 1);
            if (!*out) {
                mtli_free(def);
                return mtli_oom("checkpoint path", len + 1);
            }
        }
    }
    mtli_free(def);
    return MTL_OK;
}

/* ---- evaluation and early stopping ------------------------------------------------------- */

static const char *monitored(const mtl_trainer *tr)
{
    if (*tr->es_metric)
        return tr->es_metric;
    bool val = tr->mode == MODE_SINGLE ? tr->val != NULL : false;
    for (int t = 0; tr->mode == MODE_MULTI && t < tr->T; t++)
        val |= tr->task_val[t] != NULL;
    return val ? "val.loss" : "train.loss";
}

/* 1 when lower is better for the named value. */
static int lower_better(const mtl_trainer *tr, const char *name)
{
    if (strcmp(tr->es_mode, "min") == 0)
        return 1;
    if (strcmp(tr->es_mode, "max") == 0)
        return 0;
    /* the metric is the last dotted component, or the one before a class number */
    const char *end = name + strlen(name);
    const char *dot = strrchr(name, '.');
    const char *last = dot ? dot + 1 : name;
    if (*last >= '0' && *last <= '9' && dot && dot > name) {
        end = dot;
        const char *q = dot - 1;
        while (q > name && *q != '.')
            q--;
        last = *q == '.' ? q + 1 : q;
    }
    char metric[64];
    size_t n = (size_t)(end - last) < sizeof metric - 1 ? (size_t)(end - last) : sizeof metric - 1;
    memcpy(metric, last, n);
    metric[n] = '\0';
    if (strcmp(metric, "loss") == 0)
        return 1;
    int r = mtl_metric_lower_is_better(metric);
    mtl_clear_error();
    return r == 1;
}

static mtl_status report(mtl_trainer *tr, const char *event, const double *values, int n,
                         bool *stop)
{
    if (!tr->fn)
        return MTL_OK;
    int64_t e = strcmp(event, "step") == 0 ? tr->epoch + 1 : epoch_number(tr);
    if (tr->fn(tr->user, event, e, tr->step, values, n) != 0)
        *stop = true;
    return MTL_OK;
}

static mtl_status evaluate(mtl_trainer *tr, bool *stop, bool *early, const char *fn)
{
    mtl_eval_result *r;
    MTLI_TRY(mtli_eval_result_new(&r));
    mtl_status st = MTL_OK;
    double *train_loss = tr->values + 2; /* reused: the callback gets the result's values */
    double sum = 0.0;
    int n = 0;
    for (int t = 0; t < tr->T; t++) {
        train_loss[t] = tr->ev_cnt[t] ? tr->ev_sum[t] / (double)tr->ev_cnt[t] : NAN;
        if (tr->ev_cnt[t]) {
            sum += train_loss[t];
            n++;
        }
    }
    /* validation values first, then the training losses */
    mtl_eval_result *v = NULL;
    if (tr->mode == MODE_SINGLE && tr->val) {
        st = mtl_evaluate(&v, tr->model, &tr->val, 1, eval_bs(tr), "val",
                          (const char *const *)tr->task_metrics);
    } else if (tr->mode == MODE_MULTI) {
        int any = 0;
        for (int t = 0; t < tr->T; t++)
            any |= tr->task_val[t] != NULL;
        if (any)
            st = mtl_evaluate(&v, tr->model, tr->task_val, tr->T, eval_bs(tr), "val",
                              (const char *const *)tr->task_metrics);
    }
    if (st == MTL_OK && v)
        st = mtli_eval_append(r, v);
    mtl_eval_result_free(v);
    if (st == MTL_OK)
        st = mtli_eval_add(r, n ? sum / n : NAN, "train.loss");
    for (int t = 0; t < tr->T && st == MTL_OK; t++)
        st = mtli_eval_add(r, train_loss[t], "train.%s.loss", tr->model->heads[t]->name);
    if (st != MTL_OK) {
        mtl_eval_result_free(r);
        return st;
    }
    mtl_eval_result_free(tr->last);
    tr->last = r;
    tr->last_eval_step = tr->step;
    for (int t = 0; t < tr->T; t++) {
        tr->ev_sum[t] = 0.0;
        tr->ev_cnt[t] = 0;
    }
    if (tr->w)
        st = mtl_weighting_get_weights(tr->w, tr->weights, tr->T);
    else
        for (int t = 0; t < tr->T; t++)
            tr->weights[t] = 1.0;
    if (st == MTL_OK)
        st = write_log(tr, train_loss, mtl_optimizer_current_lr(tr->opt));
    if (st != MTL_OK)
        return st;

    /* early stopping and keep-best */
    const char *name = monitored(tr);
    int i = mtli_eval_find(r, name);
    if (i < 0) {
        char list[512];
        size_t k = 0;
        list[0] = '\0';
        for (int j = 0; j < r->n && k + 2 < sizeof list; j++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", j ? ", " : "", r->names[j]);
        return mtli_error(MTL_ERR_NOT_FOUND,
                          "%s: early_stopping_metric '%s' is not among the evaluation's values "
                          "(%s)",
                          fn, name, list);
    }
    double value = r->values[i];
    int lower = lower_better(tr, name);
    bool improved = !isnan(value) &&
                    (!tr->has_best || (lower ? value < tr->best - tr->min_delta
                                             : value > tr->best + tr->min_delta));
    if (improved) {
        tr->has_best = true;
        tr->best = value;
        tr->best_epoch = epoch_number(tr);
        tr->best_step = tr->step;
        tr->bad = 0;
        if (*tr->ckpt_path)
            MTLI_TRY(save_checkpoint(tr, tr->ckpt_path, fn));
    } else {
        tr->bad++;
        if (tr->patience > 0 && tr->bad >= tr->patience)
            *early = true;
    }
    return report(tr, "eval", r->values, r->n, stop);
}

/* ---- running ----------------------------------------------------------------------------- */

static mtl_status open_log(mtl_trainer *tr, const char *fn)
{
    if (!*tr->log_path || tr->log)
        return MTL_OK;
    if (!tr->c_locale) {
        tr->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        if (tr->c_locale == (locale_t)0)
            return mtli_error(MTL_ERR_OUT_OF_MEMORY, "%s: cannot create the \"C\" locale", fn);
    }
    /* a run from the start replaces an old log; a resumed run appends to it */
    tr->log = fopen(tr->log_path, tr->step == 0 ? "w" : "a");
    if (!tr->log) {
        char buf[128];
        return mtli_error(MTL_ERR_IO, "%s: cannot open the log '%s': %s", fn, tr->log_path,
                          mtli_data_strerror(errno, buf, sizeof buf));
    }
    return MTL_OK;
}

static void close_log(mtl_trainer *tr)
{
    if (tr->log)
        fclose(tr->log);
    tr->log = NULL;
}

static mtl_status run(mtl_trainer *tr, const char *fn)
{
    MTLI_TRY(prepare(tr, fn));
    if (tr->steps_per_epoch < 1)
        return mtli_error(MTL_ERR_STATE, "%s: an epoch has no step", fn);
    if (!*tr->ckpt_path && (tr->checkpoint_every > 0 && !*tr->ckpt_pattern))
        return mtli_error(MTL_ERR_STATE,
                          "%s: checkpoint_every is set but neither checkpoint_path nor "
                          "checkpoint_pattern",
                          fn);
    if ((*tr->ckpt_path || tr->checkpoint_every > 0) && !have_checkpoints())
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "%s: checkpoints are requested but this build of libmtl has none", fn);
    MTLI_TRY(open_log(tr, fn));
    tr->stop_reason = "";
    bool stop = false, early = false;
    while (!stop && !early) {
        if (tr->epoch >= tr->epochs) {
            tr->stop_reason = "completed";
            break;
        }
        if (tr->max_steps > 0 && tr->step >= tr->max_steps) {
            tr->stop_reason = "max_steps";
            break;
        }
        double lr = mtl_optimizer_current_lr(tr->opt);
        int64_t samples = 0;
        MTLI_TRY(train_step(tr, &samples));
        tr->step++;
        tr->step_in_epoch++;
        tr->epoch_samples += samples;
        tr->values[0] = (double)samples;
        tr->values[1] = lr;
        for (int t = 0; t < tr->T; t++) {
            double l = tr->losses[t];
            tr->values[2 + t] = l;
            if (!isnan(l)) {
                tr->ev_sum[t] += l;
                tr->ev_cnt[t]++;
                tr->ep_sum[t] += l;
                tr->ep_cnt[t]++;
            }
        }
        MTLI_TRY(report(tr, "step", tr->values, 2 + tr->T, &stop));
        bool epoch_end = tr->step_in_epoch >= tr->steps_per_epoch;
        if (epoch_end) {
            tr->epoch++;
            tr->step_in_epoch = 0;
            tr->values[0] = (double)tr->epoch_samples;
            tr->values[1] = lr;
            for (int t = 0; t < tr->T; t++) {
                tr->values[2 + t] = tr->ep_cnt[t] ? tr->ep_sum[t] / (double)tr->ep_cnt[t] : NAN;
                tr->ep_sum[t] = 0.0;
                tr->ep_cnt[t] = 0;
            }
            tr->epoch_samples = 0;
            MTLI_TRY(report(tr, "epoch", tr->values, 2 + tr->T, &stop));
        }
        bool due = (tr->eval_every_steps > 0 && tr->step % tr->eval_every_steps == 0) ||
                   (epoch_end && tr->eval_every > 0 && tr->epoch % tr->eval_every == 0);
        if (due)
            MTLI_TRY(evaluate(tr, &stop, &early, fn));
        if (epoch_end && tr->checkpoint_every > 0 && tr->epoch % tr->checkpoint_every == 0) {
            char *path = NULL;
            MTLI_TRY(periodic_path(tr, &path));
            mtl_status st = save_checkpoint(tr, path, fn);
            mtli_free(path);
            MTLI_TRY(st);
        }
        if (early)
            tr->stop_reason = "early_stopping";
        else if (stop)
            tr->stop_reason = "callback";
    }
    /* the final state is evaluated unless the callback asked to stop at once */
    if (!stop && tr->last_eval_step != tr->step) {
        bool s2 = false, e2 = false;
        MTLI_TRY(evaluate(tr, &s2, &e2, fn));
    }
    return MTL_OK;
}

MTL_API mtl_status mtl_trainer_run(mtl_trainer *tr)
{
    const char *fn = "mtl_trainer_run";
    MTLI_CHECK_NULL(tr, fn);
    mtl_status st = run(tr, fn);
    close_log(tr);
    return st;
}

MTL_API mtl_status mtl_trainer_evaluate(mtl_trainer *tr, const mtl_eval_result **out)
{
    const char *fn = "mtl_trainer_evaluate";
    MTLI_CHECK_NULL(tr, fn);
    if (out)
        *out = NULL;
    if (tr->mode == MODE_NONE)
        return mtli_error(MTL_ERR_STATE, "%s: no data is set", fn);
    bool stop = false, early = false;
    mtl_status st = open_log(tr, fn);
    if (st == MTL_OK)
        st = evaluate(tr, &stop, &early, fn);
    close_log(tr);
    if (st == MTL_OK && out)
        *out = tr->last;
    return st;
}

MTL_API const mtl_eval_result *mtl_trainer_eval_result(const mtl_trainer *tr)
{
    return tr ? tr->last : NULL;
}

/* ---- resume ------------------------------------------------------------------------------ */

typedef struct {
    const unsigned char *p, *end;
    bool bad;
} reader;

static uint32_t get32(reader *r)
{
    if (r->end - r->p < 4) {
        r->bad = true;
        return 0;
    }
    uint32_t v = mtli_le_get32(r->p);
    r->p += 4;
    return v;
}

static uint64_t get64(reader *r)
{
    if (r->end - r->p < 8) {
        r->bad = true;
        return 0;
    }
    uint64_t v = mtli_le_get64(r->p);
    r->p += 8;
    return v;
}

static double getf64(reader *r)
{
    uint64_t u = get64(r);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static mtl_status load_state(mtl_trainer *tr, const char *path, const char *fn)
{
    char *data;
    size_t size;
    MTLI_TRY(mtli_data_read_file(&data, &size, path, fn));
    const unsigned char *b = (const unsigned char *)data;
    mtl_status st = MTL_OK;
    if (size < 16 || memcmp(b, state_magic, 8) != 0) {
        st = mtli_error(MTL_ERR_FORMAT, "%s: '%s' is not a trainer state file (bad magic)", fn,
                        path);
        goto done;
    }
    uint32_t version = mtli_le_get32(b + 8);
    if (version > STATE_VERSION) {
        st = mtli_error(MTL_ERR_UNSUPPORTED,
                        "%s: '%s' has trainer state version %u; this library reads up to %u", fn,
                        path, version, STATE_VERSION);
        goto done;
    }
    if (mtli_data_crc32(0, b, size - 4) != mtli_le_get32(b + size - 4)) {
        st = mtli_error(MTL_ERR_FORMAT, "%s: '%s': checksum mismatch (corrupted file)", fn, path);
        goto done;
    }
    reader r = {b + 12, b + size - 4, false};
    uint32_t T = get32(&r), mode = get32(&r), kind = get32(&r);
    uint64_t spe = get64(&r);
    if (!r.bad && (T != (uint32_t)tr->T || mode != (uint32_t)tr->mode ||
                   kind != (uint32_t)tr->smp_kind)) {
        st = mtli_error(MTL_ERR_STATE,
                        "%s: '%s' was saved by a trainer with %u heads, mode %u and sampler %u; "
                        "this one has %d heads, mode %d and sampler %s",
                        fn, path, T, mode, kind, tr->T, tr->mode,
                        mtli_sampler_kind_name(tr->smp_kind));
        goto done;
    }
    if (!r.bad && spe != (uint64_t)tr->steps_per_epoch) {
        st = mtli_error(MTL_ERR_STATE,
                        "%s: '%s' was saved with %llu steps per epoch, the data and batch size "
                        "now give %lld",
                        fn, path, (unsigned long long)spe, (long long)tr->steps_per_epoch);
        goto done;
    }
    int64_t epoch = (int64_t)get64(&r), step = (int64_t)get64(&r);
    int64_t sie = (int64_t)get64(&r), esamples = (int64_t)get64(&r);
    int64_t last_eval = (int64_t)get64(&r);
    bool has_best = get32(&r) != 0;
    double best = getf64(&r);
    int64_t best_epoch = (int64_t)get64(&r), best_step = (int64_t)get64(&r);
    int64_t bad = (int64_t)get64(&r);
    uint32_t L = get32(&r);
    if (!r.bad && L != (uint32_t)tr->nloaders) {
        st = mtli_error(MTL_ERR_FORMAT, "%s: '%s': %u loaders, expected %d", fn, path, L,
                        tr->nloaders);
        goto done;
    }
    int64_t pass[256], pos[256];
    int64_t *ps = L <= 256 ? pass : mtli_calloc(L, sizeof *ps);
    int64_t *po = L <= 256 ? pos : mtli_calloc(L, sizeof *po);
    if (!ps || !po) {
        if (ps != pass)
            mtli_free(ps);
        if (po != pos)
            mtli_free(po);
        st = mtli_oom("loader positions", (size_t)L * 16);
        goto done;
    }
    for (uint32_t i = 0; i < L; i++) {
        uint32_t present = get32(&r);
        ps[i] = (int64_t)get64(&r);
        po[i] = (int64_t)get64(&r);
        if (!r.bad && (present != 0) != (tr->loaders[i] != NULL))
            r.bad = true;
        if (!r.bad && tr->loaders[i] && (ps[i] < 0 || po[i] < 0 ||
                                         po[i] > tr->loaders[i]->nbatches))
            r.bad = true;
    }
    mtli_rng rng;
    for (int i = 0; i < 4; i++)
        rng.s[i] = get64(&r);
    uint32_t cursor = get32(&r);
    size_t at = (size_t)(r.p - b);
    for (int t = 0; t < tr->T; t++) {
        getf64(&r);
        get64(&r);
        getf64(&r);
        get64(&r);
    }
    if (r.bad || r.p != r.end || epoch < 0 || step < 0 || sie < 0 || sie >= tr->steps_per_epoch ||
        (int64_t)cursor >= tr->T) {
        st = mtli_error(MTL_ERR_FORMAT, "%s: '%s': truncated or inconsistent trainer state", fn,
                        path);
    } else {
        /* everything is valid: apply */
        for (uint32_t i = 0; i < L && st == MTL_OK; i++)
            if (tr->loaders[i])
                st = mtl_loader_seek(tr->loaders[i], ps[i], po[i]);
        reader r2 = {b + at, b + size - 4, false};
        for (int t = 0; t < tr->T; t++) {
            tr->ev_sum[t] = getf64(&r2);
            tr->ev_cnt[t] = (int64_t)get64(&r2);
            tr->ep_sum[t] = getf64(&r2);
            tr->ep_cnt[t] = (int64_t)get64(&r2);
        }
        tr->epoch = epoch;
        tr->step = step;
        tr->step_in_epoch = sie;
        tr->epoch_samples = esamples;
        tr->last_eval_step = last_eval;
        tr->has_best = has_best;
        tr->best = best;
        tr->best_epoch = best_epoch;
        tr->best_step = best_step;
        tr->bad = bad;
        if (tr->mode == MODE_MULTI) {
            tr->smp.rng = rng;
            tr->smp.cursor = (int)cursor;
        }
    }
    if (ps != pass)
        mtli_free(ps);
    if (po != pos)
        mtli_free(po);
done:
    mtli_free(data);
    return st;
}

static void reset_position(mtl_trainer *tr)
{
    tr->epoch = tr->step = tr->step_in_epoch = tr->epoch_samples = tr->last_eval_step = 0;
    tr->has_best = false;
    tr->best = NAN;
    tr->best_epoch = tr->best_step = tr->bad = 0;
    for (int t = 0; t < tr->T; t++) {
        tr->ev_sum[t] = tr->ep_sum[t] = 0.0;
        tr->ev_cnt[t] = tr->ep_cnt[t] = 0;
    }
}

MTL_API mtl_status mtl_trainer_resume(mtl_trainer *tr, const char *path)
{
    const char *fn = "mtl_trainer_resume";
    MTLI_CHECK_NULL(tr, fn);
    MTLI_CHECK_NULL(path, fn);
    if (!have_checkpoints())
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "%s: this build of libmtl has no checkpoints (cannot read '%s')", fn,
                          path);
    unprepare(tr);
    MTLI_TRY(prepare(tr, fn));
    char *sp = state_path(path);
    if (!sp)
        return mtli_oom("trainer state path", strlen(path) + 9);
    struct stat sb;
    bool have_state = stat(sp, &sb) == 0;
    mtl_status st = MTL_OK;
    if (have_state) {
        /* validate the trainer state against this trainer before touching the model:
         * load it into a scratch copy of the position first */
        st = load_state(tr, sp, fn);
    }
    if (st == MTL_OK)
        st = mtl_checkpoint_load_into(path, tr->model, tr->opt, tr->w);
    if (st != MTL_OK || !have_state) {
        /* without a valid state the run starts over with the loaded weights */
        unprepare(tr);
        reset_position(tr);
    }
    mtli_free(sp);
    tr->stop_reason = "";
    return st;
}

/* ---- queries ----------------------------------------------------------------------------- */

MTL_API int64_t mtl_trainer_epoch(const mtl_trainer *tr) { return tr ? tr->epoch : -1; }

MTL_API int64_t mtl_trainer_step(const mtl_trainer *tr) { return tr ? tr->step : -1; }

MTL_API const char *mtl_trainer_stop_reason(const mtl_trainer *tr)
{
    return tr ? tr->stop_reason : "";
}

MTL_API mtl_status mtl_trainer_best(const mtl_trainer *tr, double *value, int64_t *epoch,
                                    int64_t *step)
{
    const char *fn = "mtl_trainer_best";
    MTLI_CHECK_NULL(tr, fn);
    if (!tr->has_best)
        return mtli_error(MTL_ERR_STATE, "%s: no evaluation has produced a value of '%s' yet",
                          fn, monitored(tr));
    if (value)
        *value = tr->best;
    if (epoch)
        *epoch = tr->best_epoch;
    if (step)
        *step = tr->best_step;
    return MTL_OK;
}
