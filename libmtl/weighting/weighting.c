/* Task weighting: the handle, its keys and state, the name registry, and the step contract
 * (weighting_internal.h). The methods live in w_*.c, the dense solvers in solvers.c. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "mtl/weighting.h"
#include "weighting/solvers.h"
#include "weighting/weighting_internal.h"

/* ---- registry -------------------------------------------------------------------------------- */

static const mtli_wmethod *const g_methods[] = {
    &mtli_w_ew,       &mtli_w_fixed,       &mtli_w_uw,       &mtli_w_dwa,
    &mtli_w_gls,      &mtli_w_rlw,         &mtli_w_stch,     &mtli_w_famo,
    &mtli_w_mgda,     &mtli_w_mgda_ub,     &mtli_w_pcgrad,   &mtli_w_cagrad,
    &mtli_w_nash_mtl, &mtli_w_imtl,        &mtli_w_aligned_mtl, &mtli_w_fairgrad,
    &mtli_w_upgrad,   &mtli_w_dualproj,    &mtli_w_gradnorm, &mtli_w_config,
    &mtli_w_graddrop, &mtli_w_gradvac,     &mtli_w_moco,     &mtli_w_db_mtl,
    &mtli_w_excessmtl,
};
#define NMETHODS ((int)(sizeof g_methods / sizeof g_methods[0]))

/* Aliases: another name for a method, optionally with one string key preset. */
static const struct {
    const char *alias, *method, *key, *value;
} g_aliases[] = {
    {"imtl_g", "imtl", "variant", "imtl_g"},
    {"imtl_l", "imtl", "variant", "imtl_l"},
    {"imtl_full", "imtl", "variant", "full"},
    {"ew_mean", "ew", "reduction", "mean"},
    {"nashmtl", "nash_mtl", NULL, NULL},
    {"alignedmtl", "aligned_mtl", NULL, NULL},
    {"dbmtl", "db_mtl", NULL, NULL},
    {"excess_mtl", "excessmtl", NULL, NULL},
};
#define NALIASES ((int)(sizeof g_aliases / sizeof g_aliases[0]))

static const mtli_wmethod *find_method(const char *name)
{
    for (int i = 0; i < NMETHODS; i++)
        if (strcmp(g_methods[i]->name, name) == 0)
            return g_methods[i];
    return NULL;
}

MTL_API const char *mtl_weighting_available(int index)
{
    return index >= 0 && index < NMETHODS ? g_methods[index]->name : NULL;
}

/* ---- shared helpers --------------------------------------------------------------------------- */

void mtli_wrng_load(const double *st, mtli_rng *r)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = ((uint64_t)st[2 * i] << 32) | (uint64_t)st[2 * i + 1];
}

void mtli_wrng_store(double *st, const mtli_rng *r)
{
    for (int i = 0; i < 4; i++) {
        st[2 * i] = (double)(r->s[i] >> 32);
        st[2 * i + 1] = (double)(r->s[i] & 0xffffffffu);
    }
}

void mtli_wrng_seed(double *st, uint64_t seed)
{
    mtli_rng r;
    mtli_rng_seed(&r, seed);
    mtli_wrng_store(st, &r);
}

size_t mtli_wadam_size(int n) { return 2 * (size_t)n + 1; }

void mtli_wadam_step(double *param, const double *grad, double *adam, int n, double lr,
                     double weight_decay)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double *m = adam, *v = adam + n, *t = adam + 2 * n;
    *t += 1.0;
    double bc1 = 1.0 - pow(b1, *t), bc2 = 1.0 - pow(b2, *t);
    for (int i = 0; i < n; i++) {
        double g = grad[i] + weight_decay * param[i];
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        double denom = sqrt(v[i]) / sqrt(bc2) + eps;
        param[i] -= lr / bc1 * m[i] / denom;
    }
}

double mtli_wquad(const double *G, int k, const double *x)
{
    double s = 0.0;
    for (int i = 0; i < k; i++) {
        double r = 0.0;
        for (int j = 0; j < k; j++)
            r += G[(size_t)i * k + j] * x[j];
        s += x[i] * r;
    }
    return s;
}

size_t mtli_wgram_ws(int T) { return mtli_solver_ws(T) + MTLI_WGRAM_EXTRA(T); }

double *mtli_wgram_extra(const mtli_wctx *c) { return c->ws + mtli_solver_ws(c->T); }

/* ---- create / free ---------------------------------------------------------------------------- */

static bool is_grad_method(const mtli_wmethod *m)
{
    return (m->needs & (MTLI_NEED_G | MTLI_NEED_J)) != 0;
}

static void set_defaults(mtl_weighting *w)
{
    for (int i = 0; i < w->m->nkeys; i++) {
        w->kd[i] = w->m->keys[i].def;
        w->ki[i] = (int64_t)w->m->keys[i].def;
    }
    w->rep = w->m->rep_only;
}

static void reset_state(mtl_weighting *w)
{
    memset(w->state, 0, w->nstate * sizeof(double));
    for (int t = 0; t < w->T; t++)
        w->state[1 + t] = 1.0;
    if (w->m->reset)
        w->m->reset(w);
}

static mtl_status set_string_impl(mtl_weighting *w, const char *key, const char *v);

MTL_API mtl_status mtl_weighting_create(mtl_weighting **out, const char *method, int T)
{
    MTLI_CHECK_NULL(out, "mtl_weighting_create");
    *out = NULL;
    MTLI_CHECK_NULL(method, "mtl_weighting_create");
    if (T < 1 || T > 4096)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_weighting_create: num_tasks is %d, expected 1..4096", T);
    const mtli_wmethod *m = find_method(method);
    int alias = -1;
    if (!m)
        for (int i = 0; i < NALIASES; i++)
            if (strcmp(g_aliases[i].alias, method) == 0) {
                alias = i;
                m = find_method(g_aliases[i].method);
            }
    if (!m) {
        char list[512];
        size_t len = 0;
        list[0] = '\0';
        for (int i = 0; i < NMETHODS && len + 16 < sizeof list; i++) {
            size_t nl = strlen(g_methods[i]->name);
            if (len + nl + 3 >= sizeof list)
                break;
            if (i) {
                memcpy(list + len, ", ", 2);
                len += 2;
            }
            memcpy(list + len, g_methods[i]->name, nl);
            len += nl;
            list[len] = '\0';
        }
        return mtli_error(MTL_ERR_NOT_FOUND,
                          "mtl_weighting_create: unknown weighting method '%s' (available: %s)",
                          method, list);
    }
    if (is_grad_method(m) && T > MTLI_WMAX_GRAD_TASKS)
        return mtli_error(MTL_ERR_RANGE,
                          "mtl_weighting_create: method '%s' supports up to %d tasks, got %d",
                          m->name, MTLI_WMAX_GRAD_TASKS, T);
    mtl_weighting *w = mtli_calloc(1, sizeof *w);
    if (!w)
        return mtli_oom("weighting", sizeof *w);
    w->m = m;
    w->T = T;
    set_defaults(w);
    size_t ms = m->state_size ? m->state_size(w, T) : 0;
    w->nfixed = w->nstate = 1 + (size_t)T + ms;
    size_t T2 = (size_t)T * T;
    w->nws = m->ws_size ? m->ws_size(T) : 0;
    w->fixed = mtli_calloc((size_t)T, sizeof(double));
    w->state = mtli_calloc(w->nstate, sizeof(double));
    w->idx = mtli_calloc((size_t)T, sizeof(int));
    w->cL = mtli_calloc((size_t)T, sizeof(double));
    w->cw = mtli_calloc((size_t)T, sizeof(double));
    w->cG = (m->needs & MTLI_NEED_G) || m->needs_fn ? mtli_calloc(T2, sizeof(double)) : NULL;
    w->ws = w->nws ? mtli_calloc(w->nws, sizeof(double)) : NULL;
    if (m->needs & MTLI_NEED_J) {
        w->fG = mtli_calloc(T2, sizeof(float));
        w->fw = mtli_calloc((size_t)T, sizeof(float));
    }
    if (!w->fixed || !w->state || !w->idx || !w->cL || !w->cw ||
        ((m->needs & MTLI_NEED_J) && (!w->fG || !w->fw)) ||
        (!w->cG && ((m->needs & MTLI_NEED_G) || m->needs_fn)) || (w->nws && !w->ws)) {
        size_t bytes = (w->nstate + T2 + w->nws) * sizeof(double);
        mtl_weighting_free(w);
        return mtli_oom("weighting state", bytes);
    }
    w->ms = w->state + 1 + T;
    w->bs = w->state + w->nfixed;
    for (int t = 0; t < T; t++)
        w->fixed[t] = 1.0;
    reset_state(w);
    if (alias >= 0) {
        w->alias = g_aliases[alias].alias;
        if (g_aliases[alias].key) {
            mtl_status st = set_string_impl(w, g_aliases[alias].key, g_aliases[alias].value);
            if (st != MTL_OK) {
                mtl_weighting_free(w);
                return st;
            }
        }
    }
    *out = w;
    return MTL_OK;
}

MTL_API void mtl_weighting_free(mtl_weighting *w)
{
    if (!w)
        return;
    mtli_free(w->fixed);
    mtli_free(w->state);
    mtli_free(w->idx);
    mtli_free(w->cL);
    mtli_free(w->cw);
    mtli_free(w->cG);
    mtli_free(w->ws);
    mtli_free(w->fG);
    mtli_free(w->fw);
    mtli_free(w->layer_ends);
    mtli_free(w->tensor_ends);
    mtli_free(w);
}

/* ---- keys ----------------------------------------------------------------------------------- */

static int find_key(const mtl_weighting *w, const char *key)
{
    for (int i = 0; i < w->m->nkeys; i++)
        if (strcmp(w->m->keys[i].name, key) == 0)
            return i;
    return -1;
}

static bool has_mode_key(const mtl_weighting *w) { return is_grad_method(w->m); }

static mtl_status unknown_key(const mtl_weighting *w, const char *key)
{
    char list[256];
    size_t len = 0;
    list[0] = '\0';
    for (int i = 0;; i++) {
        const char *k = mtl_weighting_key_name(w, i);
        if (!k)
            break;
        size_t kl = strlen(k);
        if (len + kl + 3 >= sizeof list)
            break;
        if (len) {
            memcpy(list + len, ", ", 2);
            len += 2;
        }
        memcpy(list + len, k, kl);
        len += kl;
        list[len] = '\0';
    }
    return mtli_error(MTL_ERR_INVALID_ARGUMENT, "weighting '%s': unknown key '%s' (keys: %s)",
                      w->m->name, key, len ? list : "none");
}

static mtl_status wrong_type(const mtl_weighting *w, const mtli_wkey *k, const char *given)
{
    static const char *const names[] = {"double", "int", "string"};
    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                      "weighting '%s': key '%s' takes a%s %s value, not a%s %s", w->m->name,
                      k->name, k->type == MTLI_WKEY_INT ? "n" : "", names[k->type],
                      given[0] == 'i' ? "n" : "", given);
}

static mtl_status after_set(mtl_weighting *w, int key)
{
    return w->m->on_set ? w->m->on_set(w, key) : MTL_OK;
}

static bool in_range(const mtli_wkey *k, double v)
{
    if (!isfinite(v))
        return false;
    if (k->lo_open ? !(v > k->lo) : !(v >= k->lo))
        return false;
    return v <= k->hi;
}

MTL_API mtl_status mtl_weighting_set_double(mtl_weighting *w, const char *key, double v)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_set_double");
    MTLI_CHECK_NULL(key, "mtl_weighting_set_double");
    int i = find_key(w, key);
    if (i < 0) {
        if (has_mode_key(w) && strcmp(key, "mode") == 0)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "weighting '%s': key 'mode' takes a string value, not a double",
                              w->m->name);
        return unknown_key(w, key);
    }
    const mtli_wkey *k = &w->m->keys[i];
    if (k->type == MTLI_WKEY_INT) {
        /* an integral double is accepted for an int key (YAML numbers) */
        if (v == floor(v) && fabs(v) < 9.0e15)
            return mtl_weighting_set_int(w, key, (int64_t)v);
        return wrong_type(w, k, "double");
    }
    if (k->type != MTLI_WKEY_DOUBLE)
        return wrong_type(w, k, "double");
    if (!in_range(k, v))
        return mtli_error(MTL_ERR_RANGE, "weighting '%s': %s = %g is out of range (%s%g, %g]",
                          w->m->name, key, v, k->lo_open ? "(" : "[", k->lo, k->hi);
    double old = w->kd[i];
    w->kd[i] = v;
    mtl_status st = after_set(w, i);
    if (st != MTL_OK)
        w->kd[i] = old;
    return st;
}

MTL_API mtl_status mtl_weighting_set_int(mtl_weighting *w, const char *key, int64_t v)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_set_int");
    MTLI_CHECK_NULL(key, "mtl_weighting_set_int");
    int i = find_key(w, key);
    if (i < 0) {
        if (has_mode_key(w) && strcmp(key, "mode") == 0)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "weighting '%s': key 'mode' takes a string value, not an int",
                              w->m->name);
        return unknown_key(w, key);
    }
    const mtli_wkey *k = &w->m->keys[i];
    if (k->type == MTLI_WKEY_DOUBLE)
        return mtl_weighting_set_double(w, key, (double)v);
    if (k->type != MTLI_WKEY_INT)
        return wrong_type(w, k, "int");
    if ((double)v < k->lo || (double)v > k->hi || (k->lo_open && (double)v == k->lo))
        return mtli_error(MTL_ERR_RANGE,
                          "weighting '%s': %s = %lld is out of range [%.0f, %.0f]", w->m->name,
                          key, (long long)v, k->lo + (k->lo_open ? 1 : 0), k->hi);
    int64_t old = w->ki[i];
    w->ki[i] = v;
    mtl_status st = after_set(w, i);
    if (st != MTL_OK)
        w->ki[i] = old;
    return st;
}

static mtl_status set_mode(mtl_weighting *w, const char *v)
{
    bool rep;
    if (strcmp(v, "parameters") == 0)
        rep = false;
    else if (strcmp(v, "representation") == 0)
        rep = true;
    else
        return mtli_error(MTL_ERR_RANGE,
                          "weighting '%s': mode '%s' (expected parameters or representation)",
                          w->m->name, v);
    if (w->m->rep_only && !rep)
        return mtli_error(MTL_ERR_RANGE,
                          "weighting 'mgda_ub': MGDA-UB is MGDA in representation mode; use "
                          "method 'mgda' for mode 'parameters'");
    if (rep && (w->m->needs & MTLI_NEED_J))
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "weighting '%s': mode 'representation' is not available: the method "
                          "works coordinate-wise on the per-task gradients of the shared "
                          "parameters",
                          w->m->name);
    if (rep && !w->m->rep_capable)
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "weighting '%s': mode 'representation' is not available", w->m->name);
    w->rep = rep;
    return MTL_OK;
}

static mtl_status set_string_impl(mtl_weighting *w, const char *key, const char *v)
{
    int i = find_key(w, key);
    if (i < 0) {
        if (has_mode_key(w) && strcmp(key, "mode") == 0)
            return set_mode(w, v);
        return unknown_key(w, key);
    }
    const mtli_wkey *k = &w->m->keys[i];
    if (k->type != MTLI_WKEY_STRING)
        return wrong_type(w, k, "string");
    int c = 0;
    while (k->choices[c] && strcmp(k->choices[c], v) != 0)
        c++;
    if (!k->choices[c]) {
        char list[200];
        size_t len = 0;
        list[0] = '\0';
        for (int j = 0; k->choices[j]; j++) {
            size_t n = strlen(k->choices[j]);
            if (len + n + 3 >= sizeof list)
                break;
            if (j) {
                memcpy(list + len, ", ", 2);
                len += 2;
            }
            memcpy(list + len, k->choices[j], n);
            len += n;
            list[len] = '\0';
        }
        return mtli_error(MTL_ERR_RANGE, "weighting '%s': %s '%s' (expected one of: %s)",
                          w->m->name, key, v, list);
    }
    double old = w->kd[i];
    w->kd[i] = c;
    mtl_status st = after_set(w, i);
    if (st != MTL_OK)
        w->kd[i] = old;
    return st;
}

MTL_API mtl_status mtl_weighting_set_string(mtl_weighting *w, const char *key, const char *v)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_set_string");
    MTLI_CHECK_NULL(key, "mtl_weighting_set_string");
    MTLI_CHECK_NULL(v, "mtl_weighting_set_string");
    return set_string_impl(w, key, v);
}

MTL_API const char *mtl_weighting_key_name(const mtl_weighting *w, int i)
{
    if (!w || i < 0)
        return NULL;
    if (i < w->m->nkeys)
        return w->m->keys[i].name;
    if (i == w->m->nkeys && has_mode_key(w))
        return "mode";
    return NULL;
}

static mtl_status get_key(const mtl_weighting *w, const char *key, const char *fn, int *out)
{
    MTLI_CHECK_NULL(w, fn);
    MTLI_CHECK_NULL(key, fn);
    int i = find_key(w, key);
    if (i < 0 && !(has_mode_key(w) && strcmp(key, "mode") == 0))
        return unknown_key(w, key);
    *out = i;
    return MTL_OK;
}

MTL_API mtl_status mtl_weighting_get_double(const mtl_weighting *w, const char *key,
                                            double *value)
{
    int i;
    MTLI_TRY(get_key(w, key, "mtl_weighting_get_double", &i));
    MTLI_CHECK_NULL(value, "mtl_weighting_get_double");
    if (i < 0 || w->m->keys[i].type == MTLI_WKEY_STRING)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "weighting '%s': key '%s' holds a string", w->m->name, key);
    *value = w->m->keys[i].type == MTLI_WKEY_INT ? (double)w->ki[i] : w->kd[i];
    return MTL_OK;
}

MTL_API mtl_status mtl_weighting_get_int(const mtl_weighting *w, const char *key,
                                         int64_t *value)
{
    int i;
    MTLI_TRY(get_key(w, key, "mtl_weighting_get_int", &i));
    MTLI_CHECK_NULL(value, "mtl_weighting_get_int");
    if (i < 0 || w->m->keys[i].type != MTLI_WKEY_INT)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "weighting '%s': key '%s' is not an int",
                          w->m->name, key);
    *value = w->ki[i];
    return MTL_OK;
}

MTL_API mtl_status mtl_weighting_get_string(const mtl_weighting *w, const char *key,
                                            const char **value)
{
    int i;
    MTLI_TRY(get_key(w, key, "mtl_weighting_get_string", &i));
    MTLI_CHECK_NULL(value, "mtl_weighting_get_string");
    if (i < 0) {
        *value = w->rep ? "representation" : "parameters";
        return MTL_OK;
    }
    if (w->m->keys[i].type != MTLI_WKEY_STRING)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "weighting '%s': key '%s' is not a string",
                          w->m->name, key);
    *value = w->m->keys[i].choices[(int)w->kd[i]];
    return MTL_OK;
}

MTL_API mtl_status mtl_weighting_set_weights(mtl_weighting *w, const double *weights, int n)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_set_weights");
    MTLI_CHECK_NULL(weights, "mtl_weighting_set_weights");
    if (w->m != &mtli_w_fixed)
        return mtli_error(MTL_ERR_STATE,
                          "mtl_weighting_set_weights: method '%s' learns its weights; use "
                          "'fixed' for static weights",
                          w->m->name);
    if (n != w->T)
        return mtli_error(MTL_ERR_SHAPE, "mtl_weighting_set_weights: %d weights for %d tasks", n,
                          w->T);
    for (int t = 0; t < n; t++)
        if (!(weights[t] >= 0.0) || !isfinite(weights[t]))
            return mtli_error(MTL_ERR_RANGE,
                              "mtl_weighting_set_weights: weight %d is %g, expected finite >= 0",
                              t, weights[t]);
    memcpy(w->fixed, weights, (size_t)n * sizeof(double));
    memcpy(w->state + 1, weights, (size_t)n * sizeof(double));
    return MTL_OK;
}

MTL_API mtl_status mtl_weighting_get_weights(const mtl_weighting *w, double *weights, int n)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_get_weights");
    MTLI_CHECK_NULL(weights, "mtl_weighting_get_weights");
    if (n != w->T)
        return mtli_error(MTL_ERR_SHAPE, "mtl_weighting_get_weights: room for %d, %d tasks", n,
                          w->T);
    memcpy(weights, w->state + 1, (size_t)n * sizeof(double));
    return MTL_OK;
}

MTL_API const char *mtl_weighting_method(const mtl_weighting *w) { return w ? w->m->name : NULL; }
MTL_API int mtl_weighting_num_tasks(const mtl_weighting *w) { return w ? w->T : 0; }

MTL_API mtl_status mtl_weighting_reset(mtl_weighting *w)
{
    MTLI_CHECK_NULL(w, "mtl_weighting_reset");
    reset_state(w);
    return MTL_OK;
}

/* ---- the step contract ------------------------------------------------------------------------ */

unsigned mtli_weighting_needs(const mtl_weighting *w)
{
    if (!w)
        return MTLI_NEED_L;
    unsigned n = w->m->needs_fn ? w->m->needs_fn(w) : w->m->needs;
    if ((n & MTLI_NEED_G) && w->rep)
        n |= MTLI_NEED_R;
    return n;
}

static mtl_status copy_ends(size_t **dst, int *ndst, const size_t *ends, int n, size_t P,
                            const char *what)
{
    if (n < 0 || (n > 0 && !ends))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtli_weighting_bind: %s: %d ends given",
                          what, n);
    size_t prev = 0;
    for (int i = 0; i < n; i++) {
        if (ends[i] < prev || ends[i] > P)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "mtli_weighting_bind: %s end %d is %zu (previous %zu, P %zu)",
                              what, i, ends[i], prev, P);
        prev = ends[i];
    }
    if (n > 0 && prev != P)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtli_weighting_bind: the last %s end is %zu, expected P = %zu", what,
                          prev, P);
    size_t *c = NULL;
    if (n > 0) {
        c = mtli_calloc((size_t)n, sizeof(size_t));
        if (!c)
            return mtli_oom("weighting groups", (size_t)n * sizeof(size_t));
        memcpy(c, ends, (size_t)n * sizeof(size_t));
    }
    mtli_free(*dst);
    *dst = c;
    *ndst = n;
    return MTL_OK;
}

/* (Re)size the P-dependent state; its content restarts from zero. */
static mtl_status resize_bound(mtl_weighting *w)
{
    size_t nb = w->m->bound_size && w->P ? w->m->bound_size(w, w->P) : 0;
    size_t total;
    if (!mtli_add_size(w->nfixed, nb, &total))
        return MTL_ERR_RANGE;
    if (total == w->nstate) {
        memset(w->state + w->nfixed, 0, nb * sizeof(double));
        return MTL_OK;
    }
    double *s = mtli_calloc(total, sizeof(double));
    if (!s)
        return mtli_oom("weighting state", total * sizeof(double));
    memcpy(s, w->state, w->nfixed * sizeof(double));
    mtli_free(w->state);
    w->state = s;
    w->nstate = total;
    w->ms = s + 1 + w->T;
    w->bs = s + w->nfixed;
    return MTL_OK;
}

mtl_status mtli_weighting_rebind(mtl_weighting *w) { return resize_bound(w); }

mtl_status mtli_weighting_bind(mtl_weighting *w, size_t P, const size_t *layer_ends,
                               int nlayers, const size_t *tensor_ends, int ntensors)
{
    MTLI_CHECK_NULL(w, "mtli_weighting_bind");
    if (P == 0 && (w->m->needs & MTLI_NEED_J))
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "weighting '%s' needs shared parameters, the model has none",
                          w->m->name);
    size_t *le = NULL, *te = NULL;
    int nle = 0, nte = 0;
    mtl_status st = copy_ends(&le, &nle, layer_ends, nlayers, P, "layer");
    if (st == MTL_OK)
        st = copy_ends(&te, &nte, tensor_ends, ntensors, P, "tensor");
    if (st != MTL_OK) {
        mtli_free(le);
        mtli_free(te);
        return st;
    }
    bool same = P == w->P && nle == w->nlayer_ends && nte == w->ntensor_ends &&
                (nle == 0 || memcmp(le, w->layer_ends, (size_t)nle * sizeof(size_t)) == 0) &&
                (nte == 0 || memcmp(te, w->tensor_ends, (size_t)nte * sizeof(size_t)) == 0);
    if (same) {
        mtli_free(le);
        mtli_free(te);
        return MTL_OK;
    }
    /* install the new layout first: the method's bound size may depend on it */
    size_t oldP = w->P, *ole = w->layer_ends, *ote = w->tensor_ends;
    int onle = w->nlayer_ends, onte = w->ntensor_ends;
    w->P = P;
    w->layer_ends = le;
    w->tensor_ends = te;
    w->nlayer_ends = nle;
    w->ntensor_ends = nte;
    st = resize_bound(w);
    if (st != MTL_OK) {
        w->P = oldP;
        w->layer_ends = ole;
        w->tensor_ends = ote;
        w->nlayer_ends = onle;
        w->ntensor_ends = onte;
        mtli_free(le);
        mtli_free(te);
        return st;
    }
    mtli_free(ole);
    mtli_free(ote);
    if (w->m->on_set) /* let the method derive what depends on the groups */
        return w->m->on_set(w, -1);
    return MTL_OK;
}

size_t mtli_weighting_workspace(const mtl_weighting *w, int T, size_t P)
{
    if (!w || !w->m->pws_size)
        return 0;
    return w->m->pws_size(w, T, P);
}

size_t mtli_weighting_state_size(const mtl_weighting *w) { return w ? w->nstate : 0; }
double *mtli_weighting_state(mtl_weighting *w) { return w ? w->state : NULL; }

mtl_status mtli_weighting_apply(mtl_weighting *w, const mtli_wstep *s)
{
    MTLI_CHECK_NULL(w, "mtli_weighting_apply");
    MTLI_CHECK_NULL(s, "mtli_weighting_apply");
    const char *name = w->m->name;
    if (s->T != w->T)
        return mtli_error(MTL_ERR_SHAPE, "weighting '%s' was created for %d tasks, the model has %d",
                          name, w->T, s->T);
    if (!s->losses || !s->weights)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "weighting '%s': the step has no losses or no weights buffer", name);
    unsigned needs = mtli_weighting_needs(w);
    if ((needs & MTLI_NEED_G) && !s->G)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "weighting '%s' needs the Gram matrix of the per-task gradients", name);
    if (needs & MTLI_NEED_J) {
        if (!s->J || !s->shared_out || !s->wrote_shared)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "weighting '%s' needs the per-task gradients (J) and an output "
                              "buffer for the combined shared gradient",
                              name);
        if (s->P == 0 || s->P != w->P)
            return mtli_error(MTL_ERR_SHAPE,
                              "weighting '%s': J has %zu columns, the weighting is bound to %zu "
                              "shared parameters (call mtli_weighting_bind)",
                              name, s->P, w->P);
    }
    size_t need_ws = mtli_weighting_workspace(w, w->T, s->P);
    if (need_ws && !s->scratch)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "weighting '%s': the step needs %zu doubles of scratch", name,
                          need_ws);
    if (s->wrote_shared)
        *s->wrote_shared = false;
    const int T = w->T;
    int k = 0;
    for (int t = 0; t < T; t++) {
        if (s->active && !s->active[t])
            continue;
        double L = s->losses[t];
        if (!isfinite(L))
            return mtli_error(MTL_ERR_NUMERIC, "weighting '%s': the loss of task %d is %g", name,
                              t, L);
        w->idx[k] = t;
        w->cL[k] = L;
        k++;
    }
    if (k == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "weighting '%s': no task is active", name);
    if (needs & MTLI_NEED_G) {
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++) {
                double g = s->G[(size_t)w->idx[a] * T + w->idx[b]];
                if (!isfinite(g))
                    return mtli_error(MTL_ERR_NUMERIC,
                                      "weighting '%s': Gram entry (%d, %d) is %g", name,
                                      w->idx[a], w->idx[b], g);
                w->cG[(size_t)a * k + b] = g;
            }
        for (int a = 0; a < k; a++)
            if (w->cG[(size_t)a * k + a] < 0.0)
                return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                                  "weighting '%s': Gram diagonal entry %d is negative (%g)", name,
                                  w->idx[a], w->cG[(size_t)a * k + a]);
    }
    mtli_wctx c;
    c.T = T;
    c.k = k;
    c.idx = w->idx;
    c.L = w->cL;
    c.G = (needs & MTLI_NEED_G) ? w->cG : NULL;
    c.J = s->J;
    c.P = s->P;
    c.w = w->cw;
    c.shared_out = s->shared_out;
    c.wrote_shared = false;
    c.ws = w->ws;
    c.pws = s->scratch;
    for (int a = 0; a < k; a++)
        c.w[a] = 1.0;
    mtl_status st = w->m->apply(w, &c);
    if (st != MTL_OK)
        return st;
    for (int a = 0; a < k; a++)
        if (!isfinite(c.w[a]))
            return mtli_error(MTL_ERR_NUMERIC, "weighting '%s': the weight of task %d is %g",
                              name, w->idx[a], c.w[a]);
    for (int t = 0; t < T; t++)
        s->weights[t] = 0.0;
    for (int a = 0; a < k; a++)
        s->weights[w->idx[a]] = c.w[a];
    memcpy(w->state + 1, s->weights, (size_t)T * sizeof(double));
    w->state[0] += 1.0;
    if (c.wrote_shared && s->wrote_shared)
        *s->wrote_shared = true;
    return MTL_OK;
}

mtl_status mtli_weighting_after_step(mtl_weighting *w, const double *new_losses)
{
    MTLI_CHECK_NULL(w, "mtli_weighting_after_step");
    if (!w->m->after_step)
        return MTL_OK;
    MTLI_CHECK_NULL(new_losses, "mtli_weighting_after_step");
    return w->m->after_step(w, new_losses);
}

mtl_status mtli_weighting_weights(mtl_weighting *w, const double *losses, const bool *active,
                                  int T, double *weights)
{
    if (!w) {
        for (int t = 0; t < T; t++)
            weights[t] = 1.0;
        return MTL_OK;
    }
    unsigned needs = mtli_weighting_needs(w);
    if (needs & (MTLI_NEED_G | MTLI_NEED_J))
        return mtli_error(MTL_ERR_UNSUPPORTED,
                          "weighting '%s' needs per-task gradients, which this train step does "
                          "not compute",
                          w->m->name);
    mtli_wstep s;
    memset(&s, 0, sizeof s);
    s.T = T;
    s.losses = losses;
    s.active = active;
    s.weights = weights;
    return mtli_weighting_apply(w, &s);
}
