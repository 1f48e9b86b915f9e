/* Building handles from a validated configuration, through the public API only: every
 * setting becomes the call a C user would make, and an API error is reported at the node
 * that caused it. The same functions run as a dry run on throw-away handles when a
 * configuration is loaded, so the API's own checks validate the file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/config_data.h"
#include "io/config_internal.h"

/* ---- options through typed setters ----------------------------------------------------- */

mtl_status mtli_config_set_option(const mtli_setter *s, const mtli_cnode *key,
                                  const mtli_cnode *val)
{
    int64_t i;
    double d;
    int b;
    mtl_status st;
    if (val->kind != MTLI_CN_SCALAR) {
        char db[100];
        return mtli_cfg_error(val, MTL_ERR_FORMAT, "%s: expected a single value, got %s",
                              key->text, mtli_cnode_describe(val, db, sizeof db));
    }
    if (mtli_scalar_int(val, &i))
        st = s->set_int(s->obj, s->index, key->text, i);
    else if (mtli_scalar_bool(val, &b))
        st = s->set_int(s->obj, s->index, key->text, b);
    else if (mtli_scalar_double(val, &d))
        st = s->set_double(s->obj, s->index, key->text, d);
    else
        st = s->set_string(s->obj, s->index, key->text, val->text);
    if (st == MTL_OK)
        return MTL_OK;
    /* a name the API does not know is reported at the key, a bad value at the value */
    const char *msg = mtl_last_error();
    int about_key = st != MTL_ERR_RANGE && (strstr(msg, "unknown") || strstr(msg, "not used") ||
                                            strstr(msg, "does not use") || strstr(msg, "no key"));
    return mtli_cfg_prefix(about_key ? key : val, st);
}

/* trunk and head setters with the common signature */
static mtl_status trunk_int(void *o, int l, const char *k, int64_t v) { return mtl_trunk_set_int(o, l, k, v); }
static mtl_status trunk_dbl(void *o, int l, const char *k, double v) { return mtl_trunk_set_double(o, l, k, v); }
static mtl_status trunk_str(void *o, int l, const char *k, const char *v) { return mtl_trunk_set_string(o, l, k, v); }
static mtl_status head_int(void *o, int l, const char *k, int64_t v) { return mtl_head_set_int(o, l, k, v); }
static mtl_status head_dbl(void *o, int l, const char *k, double v) { return mtl_head_set_double(o, l, k, v); }
static mtl_status head_str(void *o, int l, const char *k, const char *v) { return mtl_head_set_string(o, l, k, v); }
static mtl_status opt_int(void *o, int l, const char *k, int64_t v) { (void)l; return mtl_optimizer_set_int(o, k, v); }
static mtl_status opt_dbl(void *o, int l, const char *k, double v) { (void)l; return mtl_optimizer_set_double(o, k, v); }
static mtl_status opt_str(void *o, int l, const char *k, const char *v) { (void)l; return mtl_optimizer_set_string(o, k, v); }
static mtl_status w_int(void *o, int l, const char *k, int64_t v) { (void)l; return mtl_weighting_set_int(o, k, v); }
static mtl_status w_dbl(void *o, int l, const char *k, double v) { (void)l; return mtl_weighting_set_double(o, k, v); }
static mtl_status w_str(void *o, int l, const char *k, const char *v) { (void)l; return mtl_weighting_set_string(o, k, v); }

/* ---- model ----------------------------------------------------------------------------- */

static mtl_status add_layers(const mtli_cnode *layers, mtl_trunk *trunk, mtl_head *head)
{
    for (int i = 0; layers && i < layers->n; i++) {
        const mtli_cnode *layer = layers->vals[i];
        const mtli_cnode *kind = mtli_cnode_get(layer, "kind");
        int index;
        mtl_status st = trunk ? mtl_trunk_add_layer(trunk, kind->text, &index)
                              : mtl_head_add_layer(head, kind->text, &index);
        if (st != MTL_OK)
            return mtli_cfg_prefix(kind, st);
        mtli_setter s = {trunk ? (void *)trunk : (void *)head, index,
                         trunk ? trunk_int : head_int, trunk ? trunk_dbl : head_dbl,
                         trunk ? trunk_str : head_str};
        for (int k = 0; k < layer->n; k++) {
            if (strcmp(layer->keys[k]->text, "kind") == 0)
                continue;
            MTLI_TRY(mtli_config_set_option(&s, layer->keys[k], layer->vals[k]));
        }
    }
    return MTL_OK;
}

static mtl_status set_loss(mtl_head *head, const mtli_cnode *loss, const mtli_cdata *data, int t)
{
    const mtli_cnode *name = mtli_cnode_get(loss, "name");
    mtl_status st = mtl_head_set_loss(head, name->text);
    if (st != MTL_OK)
        return mtli_cfg_prefix(name, st);
    for (int k = 0; k < loss->n; k++) {
        const char *key = loss->keys[k]->text;
        const mtli_cnode *v = loss->vals[k];
        if (strcmp(key, "name") == 0 || strcmp(key, "class_weights") == 0)
            continue;
        double d;
        if (!mtli_scalar_double(v, &d)) {
            char db[100];
            return mtli_cfg_error(v, MTL_ERR_FORMAT, "loss option '%s': expected a number, got %s",
                                  key, mtli_cnode_describe(v, db, sizeof db));
        }
        st = mtl_head_set_loss_double(head, key, d);
        if (st != MTL_OK)
            return mtli_cfg_prefix(st == MTL_ERR_RANGE ? v : loss->keys[k], st);
    }
    const mtli_cnode *cw = mtli_cnode_get(loss, "class_weights");
    if (!cw)
        return MTL_OK;
    if (cw->kind == MTLI_CN_SCALAR) { /* "balanced": from the training labels */
        if (!data)
            return MTL_OK;
        float *w = NULL;
        int64_t n = 0;
        MTLI_TRY(mtli_cdata_balanced_weights(data, t, &w, &n));
        if (!w)
            return mtli_cfg_error(cw, MTL_ERR_INVALID_ARGUMENT,
                                  "class_weights 'balanced' needs class labels (a classification "
                                  "or binary task)");
        st = mtl_head_set_class_weights(head, w, n);
        mtli_free(w);
        return st == MTL_OK ? MTL_OK : mtli_cfg_prefix(cw, st);
    }
    float *w = mtli_malloc((size_t)(cw->n ? cw->n : 1) * sizeof *w);
    if (!w)
        return mtli_oom("class weights", (size_t)cw->n * sizeof *w);
    for (int i = 0; i < cw->n; i++) {
        double d = 0;
        mtli_scalar_double(cw->vals[i], &d);
        w[i] = (float)d;
    }
    st = mtl_head_set_class_weights(head, w, cw->n);
    mtli_free(w);
    return st == MTL_OK ? MTL_OK : mtli_cfg_prefix(cw, st);
}

mtl_status mtli_config_make_model(const mtl_config *cfg, mtl_model **out, mtl_dtype dtype,
                                  int ndim, const int64_t *shape, const int64_t *outputs,
                                  const mtli_cdata *data)
{
    *out = NULL;
    const mtli_cnode *root = cfg->root;
    const mtli_cnode *model = mtli_cnode_get(root, "model");
    const mtli_cnode *input = mtli_cnode_get(model, "input");
    mtl_model *m = NULL;
    mtl_status st = mtl_model_create(&m, dtype, ndim, shape);
    if (st != MTL_OK)
        return input ? mtli_cfg_prefix(input, st) : st;
    st = add_layers(mtli_cnode_get(model, "trunk"), mtl_model_trunk(m), NULL);
    static const char *const l2[] = {"l2_trunk", "l2_heads"};
    for (int i = 0; st == MTL_OK && i < 2; i++) {
        const mtli_cnode *v = mtli_cnode_get(model, l2[i]);
        double d;
        if (v && mtli_scalar_double(v, &d)) {
            st = mtl_model_set_double(m, l2[i], d);
            if (st != MTL_OK)
                st = mtli_cfg_prefix(v, st);
        }
    }
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    for (int t = 0; st == MTL_OK && t < tasks->n; t++) {
        const mtli_cnode *task = tasks->vals[t];
        const mtli_cnode *name = mtli_cnode_get(task, "name");
        mtl_head *h;
        st = mtl_model_add_head(m, &h, name->text);
        if (st != MTL_OK) {
            st = mtli_cfg_prefix(name, st);
            break;
        }
        st = add_layers(mtli_cnode_get(task, "head"), NULL, h);
        int b = 1;
        mtli_scalar_bool(mtli_cnode_get(task, "output_layer"), &b);
        if (st == MTL_OK && b && outputs && outputs[t] > 0) {
            st = mtl_head_add_linear(h, outputs[t]);
            if (st != MTL_OK)
                st = mtli_cfg_prefix(task, st);
        }
        if (st == MTL_OK)
            st = set_loss(h, mtli_cnode_get(task, "loss"), data, t);
    }
    if (st != MTL_OK) {
        mtl_model_free(m);
        return st;
    }
    *out = m;
    return MTL_OK;
}

/* ---- weighting ------------------------------------------------------------------------- */

mtl_status mtli_config_make_weighting(const mtl_config *cfg, mtl_weighting **out)
{
    *out = NULL;
    const mtli_cnode *w = mtli_cnode_get(cfg->root, "weighting");
    const mtli_cnode *method = mtli_cnode_get(w, "method");
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    mtl_weighting *h = NULL;
    mtl_status st = mtl_weighting_create(&h, method->text, tasks->n);
    if (st != MTL_OK)
        return mtli_cfg_prefix(method, st);
    mtli_setter s = {h, 0, w_int, w_dbl, w_str};
    for (int k = 0; st == MTL_OK && k < w->n; k++) {
        if (strcmp(w->keys[k]->text, "method") == 0)
            continue;
        st = mtli_config_set_option(&s, w->keys[k], w->vals[k]);
    }
    /* static weights from the tasks (method "fixed") */
    if (st == MTL_OK && strcmp(method->text, "fixed") == 0) {
        double *wt = mtli_malloc((size_t)tasks->n * sizeof *wt);
        if (!wt) {
            st = mtli_oom("task weights", (size_t)tasks->n * sizeof *wt);
        } else {
            for (int t = 0; t < tasks->n; t++) {
                wt[t] = 1.0;
                mtli_scalar_double(mtli_cnode_get(tasks->vals[t], "weight"), &wt[t]);
            }
            st = mtl_weighting_set_weights(h, wt, tasks->n);
            if (st != MTL_OK)
                st = mtli_cfg_prefix(tasks, st);
            mtli_free(wt);
        }
    }
    if (st != MTL_OK) {
        mtl_weighting_free(h);
        return st;
    }
    *out = h;
    return MTL_OK;
}

/* ---- optimizer ------------------------------------------------------------------------- */

/* milestones as the API takes them: "10,20,30" */
static mtl_status set_milestones(mtl_optimizer *o, const mtli_cnode *key, const mtli_cnode *v)
{
    if (v->kind == MTLI_CN_SCALAR) {
        mtl_status st = mtl_optimizer_set_string(o, "milestones", v->text);
        return st == MTL_OK ? st : mtli_cfg_prefix(v, st);
    }
    mtli_sbuf b = {0};
    for (int i = 0; i < v->n; i++)
        mtli_sbuf_add(&b, "%s%s", i ? "," : "", v->vals[i]->text);
    if (b.oom) {
        mtli_free(b.p);
        return mtli_oom("milestones", b.len);
    }
    mtl_status st = mtl_optimizer_set_string(o, "milestones", b.p ? b.p : "");
    mtli_free(b.p);
    (void)key;
    return st == MTL_OK ? st : mtli_cfg_prefix(v, st);
}

/* One optimizer key; schedule_interval "epoch" and total_steps "auto" resolve against the
 * steps per epoch (skipped when that is not known: 0). */
static mtl_status opt_key(mtl_optimizer *o, const mtli_cnode *key, const mtli_cnode *v,
                          int64_t steps_per_epoch, const mtl_config *cfg)
{
    const char *k = key->text;
    if (strcmp(k, "milestones") == 0)
        return set_milestones(o, key, v);
    if (v->kind == MTLI_CN_SCALAR && !v->quoted && strcmp(k, "schedule_interval") == 0 &&
        strcmp(v->text, "epoch") == 0) {
        if (steps_per_epoch <= 0)
            return MTL_OK;
        mtl_status st = mtl_optimizer_set_int(o, k, steps_per_epoch);
        return st == MTL_OK ? st : mtli_cfg_prefix(v, st);
    }
    if (v->kind == MTLI_CN_SCALAR && !v->quoted && strcmp(k, "total_steps") == 0 &&
        strcmp(v->text, "auto") == 0) {
        if (steps_per_epoch <= 0)
            return MTL_OK;
        int64_t epochs = 1;
        mtl_config_get_int(cfg, "training.epochs", &epochs);
        double interval = 1;
        mtl_optimizer_get_double(o, "schedule_interval", &interval);
        int64_t total = epochs * steps_per_epoch / (interval >= 1 ? (int64_t)interval : 1);
        mtl_status st = mtl_optimizer_set_int(o, k, total > 0 ? total : 1);
        return st == MTL_OK ? st : mtli_cfg_prefix(v, st);
    }
    mtli_setter s = {o, 0, opt_int, opt_dbl, opt_str};
    return mtli_config_set_option(&s, key, v);
}

static int is_late_key(const char *k)
{
    return strcmp(k, "total_steps") == 0;
}

mtl_status mtli_config_apply_optimizer(const mtl_config *cfg, mtl_optimizer **out,
                                       mtl_model *model, int64_t steps_per_epoch)
{
    *out = NULL;
    const mtli_cnode *on = mtli_cnode_get(cfg->root, "optimizer");
    const mtli_cnode *kind = mtli_cnode_get(on, "kind");
    mtl_optimizer *o = NULL;
    mtl_status st = mtl_optimizer_create(&o, model, kind->text);
    if (st != MTL_OK)
        return mtli_cfg_prefix(kind, st);
    const mtli_cnode *sched = mtli_cnode_get(on, "schedule");
    /* two passes: total_steps "auto" needs schedule_interval first */
    for (int pass = 0; st == MTL_OK && pass < 2; pass++) {
        for (int k = 0; st == MTL_OK && k < on->n; k++) {
            const char *key = on->keys[k]->text;
            if (strcmp(key, "kind") == 0 || strcmp(key, "schedule") == 0 ||
                strcmp(key, "lr_scale") == 0 || is_late_key(key) != pass)
                continue;
            st = opt_key(o, on->keys[k], on->vals[k], steps_per_epoch, cfg);
        }
        for (int k = 0; st == MTL_OK && sched && k < sched->n; k++) {
            const char *key = sched->keys[k]->text;
            if (is_late_key(key) != pass)
                continue;
            if (strcmp(key, "name") == 0) {
                st = mtl_optimizer_set_string(o, "schedule", sched->vals[k]->text);
                if (st != MTL_OK)
                    st = mtli_cfg_prefix(sched->vals[k], st);
            } else {
                st = opt_key(o, sched->keys[k], sched->vals[k], steps_per_epoch, cfg);
            }
        }
    }
    const mtli_cnode *scale = mtli_cnode_get(on, "lr_scale");
    for (int k = 0; st == MTL_OK && scale && k < scale->n; k++) {
        double d = 0;
        mtli_scalar_double(scale->vals[k], &d);
        st = mtl_optimizer_set_lr_scale(o, scale->keys[k]->text, d);
        if (st != MTL_OK)
            st = mtli_cfg_prefix(st == MTL_ERR_RANGE ? scale->vals[k] : scale->keys[k], st);
    }
    if (st != MTL_OK) {
        mtl_optimizer_free(o);
        return st;
    }
    *out = o;
    return MTL_OK;
}

/* ---- trainer --------------------------------------------------------------------------- */

static mtl_status tr_int(void *o, int l, const char *k, int64_t v) { (void)l; return mtl_trainer_set_int(o, k, v); }
static mtl_status tr_dbl(void *o, int l, const char *k, double v) { (void)l; return mtl_trainer_set_double(o, k, v); }
static mtl_status tr_str(void *o, int l, const char *k, const char *v) { (void)l; return mtl_trainer_set_string(o, k, v); }

/* Keys of the training section read by the mtl program rather than the trainer. */
int mtli_config_program_key(const char *key)
{
    return strcmp(key, "threads") == 0 || strcmp(key, "resume") == 0 ||
           strcmp(key, "progress") == 0;
}

mtl_status mtli_config_apply_trainer(const mtl_config *cfg, mtl_trainer *tr)
{
    const mtli_cnode *training = mtli_cnode_get(cfg->root, "training");
    mtli_setter s = {tr, 0, tr_int, tr_dbl, tr_str};
    for (int k = 0; training && k < training->n; k++) {
        if (mtli_config_program_key(training->keys[k]->text))
            continue;
        MTLI_TRY(mtli_config_set_option(&s, training->keys[k], training->vals[k]));
    }
    /* each task's metric list: "metrics.<task>" */
    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    for (int t = 0; t < tasks->n; t++) {
        const mtli_cnode *m = mtli_cnode_get(tasks->vals[t], "metrics");
        if (!m)
            continue;
        mtli_sbuf b = {0}, key = {0};
        if (m->kind == MTLI_CN_SCALAR)
            mtli_sbuf_add(&b, "%s", m->text);
        for (int i = 0; m->kind == MTLI_CN_SEQ && i < m->n; i++)
            mtli_sbuf_add(&b, "%s%s", i ? "," : "", m->vals[i]->text);
        mtli_sbuf_add(&key, "metrics.%s", mtli_task_str(tasks->vals[t], "name", ""));
        mtl_status st = b.oom || key.oom ? mtli_oom("metric list", b.len + key.len)
                                         : mtl_trainer_set_string(tr, key.p, b.p ? b.p : "");
        mtli_free(b.p);
        mtli_free(key.p);
        if (st != MTL_OK)
            return mtli_cfg_prefix(m, st);
    }
    return MTL_OK;
}

/* ---- dry run --------------------------------------------------------------------------- */

/* Replay every model, weighting and optimizer setting on throw-away handles. The optimizer
 * needs a built model: a tiny one with the tasks' names, so per-part learning rates are
 * checked too. */
mtl_status mtli_config_dry_run(const mtl_config *cfg)
{
    const mtli_cnode *input = mtli_cnode_get(mtli_cnode_get(cfg->root, "model"), "input");
    int64_t shape[3] = {1, 1, 1};
    int ndim = 1;
    mtl_dtype dtype = MTL_FLOAT32;
    if (input) {
        const mtli_cnode *s = mtli_cnode_get(input, "shape");
        ndim = s->n;
        for (int i = 0; i < s->n; i++)
            mtli_scalar_int(s->vals[i], &shape[i]);
        const char *dt = mtli_task_str(input, "dtype", "float32");
        dtype = strcmp(dt, "int32") == 0 ? MTL_INT32 : MTL_FLOAT32;
    }
    mtl_model *m = NULL;
    MTLI_TRY(mtli_config_make_model(cfg, &m, dtype, ndim, shape, NULL, NULL));
    mtl_model_free(m);

    mtl_weighting *w = NULL;
    MTLI_TRY(mtli_config_make_weighting(cfg, &w));
    mtl_weighting_free(w);

    const mtli_cnode *tasks = mtli_config_tasks(cfg);
    int64_t one = 1;
    mtl_status st = mtl_model_create(&m, MTL_FLOAT32, 1, &one);
    if (st == MTL_OK)
        st = mtl_trunk_add_linear(mtl_model_trunk(m), 1);
    for (int t = 0; st == MTL_OK && t < tasks->n; t++) {
        mtl_head *h;
        const char *loss = mtli_task_str(mtli_cnode_get(tasks->vals[t], "loss"), "name", "mse");
        st = mtl_model_add_head(m, &h, mtli_task_str(tasks->vals[t], "name", "task"));
        if (st == MTL_OK)
            st = mtl_head_add_linear(h, strcmp(loss, "cross_entropy") == 0 ? 2 : 1);
        if (st == MTL_OK)
            st = mtl_head_set_loss(h, loss);
    }
    if (st == MTL_OK)
        st = mtl_model_build(m, 1, 0);
    mtl_optimizer *o = NULL;
    mtl_trainer *tr = NULL;
    if (st == MTL_OK)
        st = mtli_config_apply_optimizer(cfg, &o, m, 0);
    if (st == MTL_OK)
        st = mtl_trainer_create(&tr, m, o, NULL);
    if (st == MTL_OK)
        st = mtli_config_apply_trainer(cfg, tr);
    mtl_trainer_free(tr);
    mtl_optimizer_free(o);
    mtl_model_free(m);
    return st;
}
