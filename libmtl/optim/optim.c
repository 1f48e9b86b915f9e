/* Optimizer objects: kinds, hyper-parameters by key, parts and their learning-rate
 * multipliers, moment buffers, and the update driver (check, clip, schedule, per-part loop). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "optim/optim_internal.h"

#define KSGD (1u << MTLI_OPT_SGD)
#define KADAM (1u << MTLI_OPT_ADAM)
#define KADAMW (1u << MTLI_OPT_ADAMW)
#define KRMS (1u << MTLI_OPT_RMSPROP)
#define KADAGRAD (1u << MTLI_OPT_ADAGRAD)
#define KALL (KSGD | KADAM | KADAMW | KRMS | KADAGRAD)

/* Integer keys are held exactly in a double: at most 2^53. */
#define INT_KEY_MAX 9007199254740992.0

static const char *const kind_names[MTLI_OPT_NKINDS] = {"sgd", "adam", "adamw", "rmsprop",
                                                        "adagrad"};

typedef enum { KT_DOUBLE, KT_INT, KT_BOOL, KT_STRING } key_type;

typedef struct keydef {
    const char *name;
    key_type type;
    unsigned kinds;
    double def[MTLI_OPT_NKINDS]; /* sgd, adam, adamw, rmsprop, adagrad */
    double lo, hi;               /* allowed range; hi = INFINITY means any finite value */
    int lo_open, hi_open;
} keydef;

#define SAME(x) {x, x, x, x, x}

static const keydef keys[MTLI_NKEYS] = {
    [MTLI_K_LR] = {"lr", KT_DOUBLE, KALL, {0.01, 0.001, 0.001, 0.01, 0.01}, 0, INFINITY, 1, 1},
    [MTLI_K_WEIGHT_DECAY] = {"weight_decay", KT_DOUBLE, KALL, {0, 0, 0.01, 0, 0}, 0, INFINITY,
                             0, 1},
    [MTLI_K_MOMENTUM] = {"momentum", KT_DOUBLE, KSGD | KRMS, SAME(0), 0, 1, 0, 1},
    [MTLI_K_DAMPENING] = {"dampening", KT_DOUBLE, KSGD, SAME(0), 0, 1, 0, 0},
    [MTLI_K_NESTEROV] = {"nesterov", KT_BOOL, KSGD, SAME(0), 0, 1, 0, 0},
    [MTLI_K_BETA1] = {"beta1", KT_DOUBLE, KADAM | KADAMW, SAME(0.9), 0, 1, 0, 1},
    [MTLI_K_BETA2] = {"beta2", KT_DOUBLE, KADAM | KADAMW, SAME(0.999), 0, 1, 0, 1},
    [MTLI_K_EPS] = {"eps", KT_DOUBLE, KADAM | KADAMW | KRMS | KADAGRAD,
                    {0, 1e-8, 1e-8, 1e-8, 1e-10}, 0, INFINITY, 1, 1},
    [MTLI_K_AMSGRAD] = {"amsgrad", KT_BOOL, KADAM | KADAMW, SAME(0), 0, 1, 0, 0},
    [MTLI_K_ALPHA] = {"alpha", KT_DOUBLE, KRMS, SAME(0.99), 0, 1, 0, 1},
    [MTLI_K_CENTERED] = {"centered", KT_BOOL, KRMS, SAME(0), 0, 1, 0, 0},
    [MTLI_K_LR_DECAY] = {"lr_decay", KT_DOUBLE, KADAGRAD, SAME(0), 0, INFINITY, 0, 1},
    [MTLI_K_INITIAL_ACCUMULATOR] = {"initial_accumulator_value", KT_DOUBLE, KADAGRAD, SAME(0),
                                    0, INFINITY, 0, 1},
    [MTLI_K_CLIP_NORM] = {"clip_norm", KT_DOUBLE, KALL, SAME(0), 0, INFINITY, 0, 1},
    [MTLI_K_CLIP_VALUE] = {"clip_value", KT_DOUBLE, KALL, SAME(0), 0, INFINITY, 0, 1},
    [MTLI_K_SCHEDULE] = {"schedule", KT_STRING, KALL, SAME(0), 0, 0, 0, 0},
    [MTLI_K_WARMUP_STEPS] = {"warmup_steps", KT_INT, KALL, SAME(0), 0, INT_KEY_MAX, 0, 0},
    [MTLI_K_WARMUP_START_FACTOR] = {"warmup_start_factor", KT_DOUBLE, KALL, SAME(0), 0, 1, 0,
                                    0},
    [MTLI_K_STEP_SIZE] = {"step_size", KT_INT, KALL, SAME(1), 1, INT_KEY_MAX, 0, 0},
    [MTLI_K_GAMMA] = {"gamma", KT_DOUBLE, KALL, SAME(0.1), 0, 1, 1, 0},
    [MTLI_K_MILESTONES] = {"milestones", KT_STRING, KALL, SAME(0), 0, 0, 0, 0},
    /* 0 = not set (its default); cosine and linear check for >= 1 when they run */
    [MTLI_K_TOTAL_STEPS] = {"total_steps", KT_INT, KALL, SAME(0), 0, INT_KEY_MAX, 0, 0},
    [MTLI_K_MIN_LR] = {"min_lr", KT_DOUBLE, KALL, SAME(0), 0, INFINITY, 0, 1},
    [MTLI_K_SCHEDULE_INTERVAL] = {"schedule_interval", KT_INT, KALL, SAME(1), 1, INT_KEY_MAX,
                                  0, 0},
};

static const char *kname(const mtl_optimizer *o) { return kind_names[o->kind]; }

/* ---- creation -------------------------------------------------------------------------- */

static int kind_from_name(const char *name, mtli_opt_kind *out)
{
    for (int i = 0; i < MTLI_OPT_NKINDS; i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *out = (mtli_opt_kind)i;
            return 1;
        }
    }
    return 0;
}

static int buffer_in_use(const mtl_optimizer *o, int role)
{
    switch (o->kind) {
    case MTLI_OPT_SGD:
        return role == 0 && o->v[MTLI_K_MOMENTUM] > 0.0;
    case MTLI_OPT_ADAM:
    case MTLI_OPT_ADAMW:
        return role < 2 || (role == 2 && o->v[MTLI_K_AMSGRAD] != 0.0);
    case MTLI_OPT_RMSPROP:
        return role == 0 || (role == 1 && o->v[MTLI_K_MOMENTUM] > 0.0) ||
               (role == 2 && o->v[MTLI_K_CENTERED] != 0.0);
    case MTLI_OPT_ADAGRAD:
        return role == 0;
    case MTLI_OPT_NKINDS:
        break;
    }
    return 0;
}

static mtl_status ensure_buffer(mtl_optimizer *o, int role)
{
    if (o->buf[role])
        return MTL_OK;
    o->buf[role] = mtli_aligned_calloc(o->nparams, sizeof(float));
    if (o->buf[role] == NULL)
        return mtli_oom("optimizer moment buffer", o->nparams * sizeof(float));
    return MTL_OK;
}

static void fill_accumulator(mtl_optimizer *o)
{
    if (o->kind != MTLI_OPT_ADAGRAD || o->buf[0] == NULL)
        return;
    const float v = (float)o->v[MTLI_K_INITIAL_ACCUMULATOR];
    for (size_t i = 0; i < o->nparams; i++)
        o->buf[0][i] = v;
}

MTL_API void mtl_optimizer_free(mtl_optimizer *opt)
{
    if (opt == NULL)
        return;
    for (int i = 0; i < MTLI_OPT_MAX_BUFFERS; i++)
        mtli_free(opt->buf[i]);
    if (opt->parts) {
        for (int i = 0; i < opt->nparts; i++)
            mtli_free((char *)opt->parts[i].name);
    }
    mtli_free(opt->parts);
    mtli_free(opt->part_scale);
    mtli_free(opt->segs);
    mtli_free(opt->milestones);
    mtli_free(opt->milestones_text);
    mtli_free(opt);
}

static mtl_status check_parts(size_t nparams, const mtli_part *parts, int nparts)
{
    size_t end_prev = 0;
    for (int i = 0; i < nparts; i++) {
        const mtli_part *p = &parts[i];
        if (p->name == NULL || p->name[0] == '\0')
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "mtli_optimizer_create: part %d has no name", i);
        size_t end;
        if (!mtli_add_size(p->offset, p->count, &end) || end > nparams)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "mtli_optimizer_create: part '%s' covers [%zu, %zu + %zu), beyond "
                              "the %zu parameters",
                              p->name, p->offset, p->offset, p->count, nparams);
        if (p->offset < end_prev)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "mtli_optimizer_create: part '%s' starts at %zu, inside or before "
                              "the previous part (which ends at %zu); parts must be in order "
                              "and must not overlap",
                              p->name, p->offset, end_prev);
        for (int j = 0; j < i; j++)
            if (strcmp(parts[j].name, p->name) == 0)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "mtli_optimizer_create: two parts are named '%s'", p->name);
        end_prev = end;
    }
    return MTL_OK;
}

static mtl_status copy_parts(mtl_optimizer *o, size_t nparams, const mtli_part *parts,
                             int nparts)
{
    size_t n = nparts > 0 ? (size_t)nparts : 1;
    o->parts = mtli_calloc(n, sizeof *o->parts);
    o->part_scale = mtli_calloc(n, sizeof *o->part_scale);
    o->segs = mtli_calloc(2 * n + 1, sizeof *o->segs);
    if (!o->parts || !o->part_scale || !o->segs)
        return mtli_oom("optimizer parts", (2 * n + 1) * sizeof *o->segs);
    for (int i = 0; i < nparts; i++) {
        char *name = mtli_strdup(parts[i].name);
        if (name == NULL)
            return mtli_oom("optimizer part name", strlen(parts[i].name) + 1);
        o->parts[i].name = name;
        o->parts[i].offset = parts[i].offset;
        o->parts[i].count = parts[i].count;
        o->part_scale[i] = 1.0;
        o->nparts = i + 1;
    }
    /* segments: the parts, and the gaps between them at multiplier 1 */
    size_t cursor = 0;
    int ns = 0;
    for (int i = 0; i < nparts; i++) {
        if (parts[i].offset > cursor)
            o->segs[ns++] = (mtli_segment){cursor, parts[i].offset - cursor, -1};
        if (parts[i].count > 0)
            o->segs[ns++] = (mtli_segment){parts[i].offset, parts[i].count, i};
        cursor = parts[i].offset + parts[i].count;
    }
    if (cursor < nparams)
        o->segs[ns++] = (mtli_segment){cursor, nparams - cursor, -1};
    o->nsegs = ns;
    return MTL_OK;
}

mtl_status mtli_optimizer_create(mtl_optimizer **out, const char *kind, size_t nparams,
                                 const mtli_part *parts, int nparts, mtl_model *model)
{
    MTLI_CHECK_NULL(out, "mtl_optimizer_create");
    *out = NULL;
    MTLI_CHECK_NULL(kind, "mtl_optimizer_create");
    mtli_opt_kind k;
    if (!kind_from_name(kind, &k))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_optimizer_create: unknown optimizer '%s' (known: sgd, adam, "
                          "adamw, rmsprop, adagrad)",
                          kind);
    if (nparts < 0 || (nparts > 0 && parts == NULL))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_optimizer_create: %d parts at %p", nparts, (const void *)parts);
    size_t bytes;
    if (!mtli_mul_size(nparams, sizeof(float), &bytes))
        return MTL_ERR_RANGE;
    MTLI_TRY(check_parts(nparams, parts, nparts));

    mtl_optimizer *o = mtli_calloc(1, sizeof *o);
    if (o == NULL)
        return mtli_oom("optimizer", sizeof *o);
    o->kind = k;
    o->nparams = nparams;
    o->model = model;
    o->schedule = MTLI_SCHED_CONSTANT;
    for (int i = 0; i < MTLI_NKEYS; i++)
        o->v[i] = keys[i].def[k];
    mtl_status st = copy_parts(o, nparams, parts, nparts);
    for (int r = 0; st == MTL_OK && r < MTLI_OPT_MAX_BUFFERS; r++)
        if (buffer_in_use(o, r))
            st = ensure_buffer(o, r);
    if (st != MTL_OK) {
        mtl_optimizer_free(o);
        return st;
    }
    fill_accumulator(o);
    *out = o;
    return MTL_OK;
}

/* ---- keys ------------------------------------------------------------------------------ */

static const char *used_by(unsigned kinds, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < MTLI_OPT_NKINDS; i++)
        if (kinds & (1u << i))
            n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%s", n ? ", " : "",
                                  kind_names[i]);
    return buf;
}

/* Find key for this optimizer; errors name the key and the kind. */
static mtl_status find_key(const mtl_optimizer *o, const char *key, const char *fn, int *id)
{
    if (o == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: argument 'opt' is NULL", fn);
    if (key == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: argument 'key' is NULL", fn);
    for (int i = 0; i < MTLI_NKEYS; i++) {
        if (strcmp(key, keys[i].name) != 0)
            continue;
        if (!(keys[i].kinds & (1u << o->kind))) {
            char b[64];
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "optimizer '%s' does not use key '%s' (it is for %s)", kname(o),
                              key, used_by(keys[i].kinds, b, sizeof b));
        }
        *id = i;
        return MTL_OK;
    }
    return mtli_error(MTL_ERR_INVALID_ARGUMENT, "optimizer '%s': unknown key '%s'", kname(o),
                      key);
}

static const char *range_text(const keydef *d, char *buf, size_t cap)
{
    switch (d->type) {
    case KT_BOOL:
        snprintf(buf, cap, "0 or 1");
        break;
    case KT_INT:
        snprintf(buf, cap, "an integer >= %.0f", d->lo);
        break;
    default:
        if (isinf(d->hi))
            snprintf(buf, cap, "%s%g, inf)", d->lo_open ? "(" : "[", d->lo);
        else
            snprintf(buf, cap, "%s%g, %g%s", d->lo_open ? "(" : "[", d->lo, d->hi,
                     d->hi_open ? ")" : "]");
        break;
    }
    return buf;
}

static int in_range(const keydef *d, double v)
{
    if (!isfinite(v))
        return 0;
    if (d->lo_open ? !(v > d->lo) : !(v >= d->lo))
        return 0;
    if (d->hi_open ? !(v < d->hi) : !(v <= d->hi))
        return 0;
    if ((d->type == KT_INT || d->type == KT_BOOL) && v != floor(v))
        return 0;
    return 1;
}

/* Store a numeric value, allocating the buffers it switches on. On failure nothing changes. */
static mtl_status set_number(mtl_optimizer *o, int id, double value)
{
    const keydef *d = &keys[id];
    if (!in_range(d, value)) {
        char b[64];
        return mtli_error(MTL_ERR_RANGE, "optimizer '%s': key '%s' = %g is outside %s", kname(o),
                          d->name, value, range_text(d, b, sizeof b));
    }
    if (id == MTLI_K_MOMENTUM && value > 0.0)
        MTLI_TRY(ensure_buffer(o, o->kind == MTLI_OPT_SGD ? 0 : 1));
    if ((id == MTLI_K_AMSGRAD || id == MTLI_K_CENTERED) && value != 0.0)
        MTLI_TRY(ensure_buffer(o, 2));
    o->v[id] = value;
    /* the accumulator starts at this value; later changes do not rewrite a running sum */
    if (id == MTLI_K_INITIAL_ACCUMULATOR && o->step == 0)
        fill_accumulator(o);
    return MTL_OK;
}

static mtl_status wrong_type(const mtl_optimizer *o, int id)
{
    if (keys[id].type == KT_STRING)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "optimizer '%s': key '%s' takes a string (mtl_optimizer_set_string)",
                          kname(o), keys[id].name);
    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                      "optimizer '%s': key '%s' is numeric (mtl_optimizer_set_double or "
                      "mtl_optimizer_set_int)",
                      kname(o), keys[id].name);
}

MTL_API mtl_status mtl_optimizer_set_double(mtl_optimizer *opt, const char *key, double value)
{
    int id;
    MTLI_TRY(find_key(opt, key, "mtl_optimizer_set_double", &id));
    if (keys[id].type == KT_STRING)
        return wrong_type(opt, id);
    return set_number(opt, id, value);
}

MTL_API mtl_status mtl_optimizer_set_int(mtl_optimizer *opt, const char *key, int64_t value)
{
    int id;
    MTLI_TRY(find_key(opt, key, "mtl_optimizer_set_int", &id));
    if (keys[id].type == KT_STRING)
        return wrong_type(opt, id);
    if (value > (int64_t)INT_KEY_MAX || value < -(int64_t)INT_KEY_MAX) {
        char b[64];
        return mtli_error(MTL_ERR_RANGE, "optimizer '%s': key '%s' = %lld is outside %s",
                          kname(opt), key, (long long)value, range_text(&keys[id], b, sizeof b));
    }
    return set_number(opt, id, (double)value);
}

MTL_API mtl_status mtl_optimizer_set_string(mtl_optimizer *opt, const char *key,
                                            const char *value)
{
    int id;
    MTLI_TRY(find_key(opt, key, "mtl_optimizer_set_string", &id));
    if (keys[id].type != KT_STRING)
        return wrong_type(opt, id);
    if (value == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_optimizer_set_string: argument 'value' is NULL");
    if (id == MTLI_K_SCHEDULE) {
        mtli_schedule s;
        if (!mtli_schedule_from_name(value, &s))
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "optimizer '%s': unknown schedule '%s' (known: constant, step, "
                              "multistep, exponential, cosine, linear)",
                              kname(opt), value);
        opt->schedule = s;
        return MTL_OK;
    }
    int64_t *m;
    int n;
    MTLI_TRY(mtli_parse_milestones(kname(opt), value, &m, &n));
    char *text = mtli_strdup(value);
    if (text == NULL) {
        mtli_free(m);
        return mtli_oom("optimizer milestones", strlen(value) + 1);
    }
    mtli_free(opt->milestones);
    mtli_free(opt->milestones_text);
    opt->milestones = m;
    opt->nmilestones = n;
    opt->milestones_text = text;
    return MTL_OK;
}

static mtl_status numeric_only(const mtl_optimizer *o, int id, double *value)
{
    *value = NAN;
    return mtli_error(MTL_ERR_UNSUPPORTED,
                      "optimizer '%s': key '%s' is a string key and has no numeric value",
                      kname(o), keys[id].name);
}

MTL_API mtl_status mtl_optimizer_get_double(const mtl_optimizer *opt, const char *key,
                                            double *value)
{
    int id;
    MTLI_CHECK_NULL(value, "mtl_optimizer_get_double");
    MTLI_TRY(find_key(opt, key, "mtl_optimizer_get_double", &id));
    if (keys[id].type == KT_STRING)
        return numeric_only(opt, id, value);
    *value = opt->v[id];
    return MTL_OK;
}

MTL_API mtl_status mtl_optimizer_key_default(const mtl_optimizer *opt, const char *key,
                                             double *value)
{
    int id;
    MTLI_CHECK_NULL(value, "mtl_optimizer_key_default");
    MTLI_TRY(find_key(opt, key, "mtl_optimizer_key_default", &id));
    if (keys[id].type == KT_STRING)
        return numeric_only(opt, id, value);
    *value = keys[id].def[opt->kind];
    return MTL_OK;
}

MTL_API const char *mtl_optimizer_key_name(const mtl_optimizer *opt, int index)
{
    if (opt == NULL) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_optimizer_key_name: argument 'opt' is NULL");
        return NULL;
    }
    if (index < 0)
        return NULL;
    for (int i = 0; i < MTLI_NKEYS; i++)
        if ((keys[i].kinds & (1u << opt->kind)) && index-- == 0)
            return keys[i].name;
    return NULL;
}

const char *mtli_optimizer_get_string(const mtl_optimizer *opt, const char *key)
{
    if (opt == NULL || key == NULL)
        return NULL;
    if (strcmp(key, "schedule") == 0)
        return mtli_schedule_name(opt->schedule);
    if (strcmp(key, "milestones") == 0)
        return opt->milestones_text ? opt->milestones_text : "";
    return NULL;
}

/* ---- parts ----------------------------------------------------------------------------- */

MTL_API mtl_status mtl_optimizer_set_lr_scale(mtl_optimizer *opt, const char *part,
                                              double scale)
{
    MTLI_CHECK_NULL(opt, "mtl_optimizer_set_lr_scale");
    MTLI_CHECK_NULL(part, "mtl_optimizer_set_lr_scale");
    if (!(scale >= 0.0 && isfinite(scale)))
        return mtli_error(MTL_ERR_RANGE,
                          "mtl_optimizer_set_lr_scale: scale %g for part '%s' is outside "
                          "[0, inf)",
                          scale, part);
    const int all_heads = strcmp(part, "heads") == 0;
    const char *name = strncmp(part, "heads.", 6) == 0 ? part + 6 : part;
    const int head_only = name != part;
    int hits = 0;
    for (int i = 0; i < opt->nparts; i++) {
        const char *pn = opt->parts[i].name;
        const int is_trunk = strcmp(pn, "trunk") == 0;
        int match = all_heads ? !is_trunk : strcmp(pn, name) == 0 && !(head_only && is_trunk);
        if (match) {
            opt->part_scale[i] = scale;
            hits++;
        }
    }
    if (hits == 0)
        return mtli_error(MTL_ERR_NOT_FOUND,
                          "mtl_optimizer_set_lr_scale: no part '%s' (parts are \"trunk\", a "
                          "task name, \"heads.<task>\" or \"heads\")",
                          part);
    return MTL_OK;
}

int mtli_optimizer_num_parts(const mtl_optimizer *opt) { return opt ? opt->nparts : 0; }

double *mtli_optimizer_part_scale_ptr(mtl_optimizer *opt, int part)
{
    if (opt == NULL || part < 0 || part >= opt->nparts)
        return NULL;
    return &opt->part_scale[part];
}

/* ---- state ----------------------------------------------------------------------------- */

MTL_API const char *mtl_optimizer_kind(const mtl_optimizer *opt)
{
    if (opt == NULL) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_optimizer_kind: argument 'opt' is NULL");
        return NULL;
    }
    return kname(opt);
}

MTL_API double mtl_optimizer_current_lr(const mtl_optimizer *opt)
{
    if (opt == NULL) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_optimizer_current_lr: argument 'opt' is NULL");
        return 0.0;
    }
    return mtli_schedule_lr(opt, opt->step);
}

MTL_API int64_t mtl_optimizer_step_count(const mtl_optimizer *opt)
{
    if (opt == NULL) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_optimizer_step_count: argument 'opt' is NULL");
        return -1;
    }
    return opt->step;
}

MTL_API mtl_status mtl_optimizer_reset(mtl_optimizer *opt)
{
    MTLI_CHECK_NULL(opt, "mtl_optimizer_reset");
    for (int r = 0; r < MTLI_OPT_MAX_BUFFERS; r++)
        if (opt->buf[r])
            memset(opt->buf[r], 0, opt->nparams * sizeof(float));
    fill_accumulator(opt);
    opt->step = 0;
    return MTL_OK;
}

mtl_model *mtli_optimizer_model(const mtl_optimizer *opt) { return opt ? opt->model : NULL; }

size_t mtli_optimizer_nparams(const mtl_optimizer *opt) { return opt ? opt->nparams : 0; }

int64_t *mtli_optimizer_step_ptr(mtl_optimizer *opt) { return opt ? &opt->step : NULL; }

int mtli_optimizer_num_buffers(const mtl_optimizer *opt)
{
    int n = 0;
    for (int r = 0; opt && r < MTLI_OPT_MAX_BUFFERS; r++)
        n += buffer_in_use(opt, r);
    return n;
}

float *mtli_optimizer_buffer(mtl_optimizer *opt, int i)
{
    for (int r = 0; opt && r < MTLI_OPT_MAX_BUFFERS; r++)
        if (buffer_in_use(opt, r) && i-- == 0)
            return opt->buf[r];
    return NULL;
}

/* ---- update ---------------------------------------------------------------------------- */

/* Options that are only wrong together (the order of the setters does not matter). */
static mtl_status check_config(const mtl_optimizer *o)
{
    if (o->kind == MTLI_OPT_SGD && o->v[MTLI_K_NESTEROV] != 0.0 &&
        (o->v[MTLI_K_MOMENTUM] <= 0.0 || o->v[MTLI_K_DAMPENING] != 0.0))
        return mtli_error(MTL_ERR_STATE,
                          "optimizer 'sgd': nesterov needs momentum > 0 and dampening 0 "
                          "(momentum %g, dampening %g)",
                          o->v[MTLI_K_MOMENTUM], o->v[MTLI_K_DAMPENING]);
    if ((o->schedule == MTLI_SCHED_COSINE || o->schedule == MTLI_SCHED_LINEAR) &&
        o->v[MTLI_K_TOTAL_STEPS] < 1.0)
        return mtli_error(MTL_ERR_STATE, "optimizer '%s': schedule '%s' needs total_steps >= 1",
                          kname(o), mtli_schedule_name(o->schedule));
    return MTL_OK;
}

mtl_status mtli_optimizer_update(mtl_optimizer *opt, float *params, float *grads)
{
    MTLI_CHECK_NULL(opt, "mtl_optimizer_step");
    MTLI_CHECK_NULL(params, "mtl_optimizer_step");
    MTLI_CHECK_NULL(grads, "mtl_optimizer_step");
    MTLI_TRY(check_config(opt));
    const size_t n = opt->nparams;

    double sq = mtli_sum_squares(grads, n);
    if (!isfinite(sq)) {
        size_t i = 0;
        while (i < n && isfinite(grads[i]))
            i++;
        return mtli_error(MTL_ERR_NUMERIC,
                          "optimizer '%s': gradient %zu is %g; step %lld skipped, nothing "
                          "changed",
                          kname(opt), i, i < n ? (double)grads[i] : sq, (long long)opt->step + 1);
    }
    const double clip_value = opt->v[MTLI_K_CLIP_VALUE];
    const double clip_norm = opt->v[MTLI_K_CLIP_NORM];
    if (clip_value > 0.0) {
        mtli_clamp(grads, n, (float)clip_value);
        if (clip_norm > 0.0)
            sq = mtli_sum_squares(grads, n);
    }
    if (clip_norm > 0.0) {
        /* torch.nn.utils.clip_grad_norm_ */
        const double coef = clip_norm / (sqrt(sq) + 1e-6);
        if (coef < 1.0)
            mtli_scale(grads, n, (float)coef);
    }

    const double lr = mtli_schedule_lr(opt, opt->step);
    void (*update)(mtl_optimizer *, float *, const float *, size_t, size_t, double);
    switch (opt->kind) {
    case MTLI_OPT_SGD: update = mtli_sgd_update; break;
    case MTLI_OPT_ADAM:
    case MTLI_OPT_ADAMW: update = mtli_adam_update; break;
    case MTLI_OPT_RMSPROP: update = mtli_rmsprop_update; break;
    case MTLI_OPT_ADAGRAD: update = mtli_adagrad_update; break;
    default:
        return mtli_error(MTL_ERR_INTERNAL, "optimizer kind %d", (int)opt->kind);
    }
    for (int s = 0; s < opt->nsegs; s++) {
        const mtli_segment *sg = &opt->segs[s];
        const double scale = sg->part >= 0 ? opt->part_scale[sg->part] : 1.0;
        update(opt, params + sg->offset, grads + sg->offset, sg->offset, sg->count, lr * scale);
    }
    opt->step++;
    return MTL_OK;
}
