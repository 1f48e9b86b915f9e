/* Learning-rate schedules (formulas in include/mtl/optim.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "optim/optim_internal.h"

static const double PI = 3.14159265358979323846;

static const char *const sched_names[MTLI_SCHED_NKINDS] = {
    "constant", "step", "multistep", "exponential", "cosine", "linear",
};

const char *mtli_schedule_name(mtli_schedule s)
{
    return (unsigned)s < MTLI_SCHED_NKINDS ? sched_names[s] : "unknown";
}

int mtli_schedule_from_name(const char *name, mtli_schedule *out)
{
    for (int i = 0; i < MTLI_SCHED_NKINDS; i++) {
        if (strcmp(name, sched_names[i]) == 0) {
            *out = (mtli_schedule)i;
            return 1;
        }
    }
    return 0;
}

/* The schedule proper, on ticks u counted after the warm-up. */
static double schedule_at(const mtl_optimizer *o, int64_t u)
{
    const double lr = o->v[MTLI_K_LR];
    const double gamma = o->v[MTLI_K_GAMMA];
    const double min_lr = o->v[MTLI_K_MIN_LR];
    const int64_t T = (int64_t)o->v[MTLI_K_TOTAL_STEPS];
    switch (o->schedule) {
    case MTLI_SCHED_CONSTANT:
        return lr;
    case MTLI_SCHED_STEP:
        return lr * pow(gamma, (double)(u / (int64_t)o->v[MTLI_K_STEP_SIZE]));
    case MTLI_SCHED_MULTISTEP: {
        int k = 0;
        while (k < o->nmilestones && o->milestones[k] <= u)
            k++;
        return lr * pow(gamma, (double)k);
    }
    case MTLI_SCHED_EXPONENTIAL:
        return lr * pow(gamma, (double)u);
    case MTLI_SCHED_COSINE:
        if (T < 1)
            return lr;
        if (u > T)
            u = T;
        return min_lr + (lr - min_lr) * (1.0 + cos(PI * (double)u / (double)T)) / 2.0;
    case MTLI_SCHED_LINEAR:
        if (T < 1)
            return lr;
        if (u > T)
            u = T;
        return lr + (min_lr - lr) * (double)u / (double)T;
    case MTLI_SCHED_NKINDS:
        break;
    }
    return lr;
}

double mtli_schedule_lr(const mtl_optimizer *o, int64_t step)
{
    const int64_t interval = (int64_t)o->v[MTLI_K_SCHEDULE_INTERVAL];
    const int64_t t = step / (interval > 0 ? interval : 1);
    const int64_t W = (int64_t)o->v[MTLI_K_WARMUP_STEPS];
    double factor = 1.0;
    if (t < W) {
        const double s0 = o->v[MTLI_K_WARMUP_START_FACTOR];
        factor = s0 + (1.0 - s0) * (double)t / (double)W;
    }
    return factor * schedule_at(o, t > W ? t - W : 0);
}

mtl_status mtli_parse_milestones(const char *kind, const char *text, int64_t **out, int *n)
{
    *out = NULL;
    *n = 0;
    const char *s = text;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0')
        return MTL_OK;
    int count = 1;
    for (const char *c = s; *c; c++)
        count += *c == ',';
    int64_t *m = mtli_malloc((size_t)count * sizeof *m);
    if (m == NULL)
        return mtli_oom("optimizer milestones", (size_t)count * sizeof *m);
    for (int k = 0; k < count; k++) {
        while (isspace((unsigned char)*s))
            s++;
        char *end = NULL;
        errno = 0;
        long long v = isdigit((unsigned char)*s) ? strtoll(s, &end, 10) : -1;
        if (v < 0 || errno != 0 || (k > 0 && v <= m[k - 1]))
            goto bad;
        m[k] = v;
        s = end;
        while (isspace((unsigned char)*s))
            s++;
        if (*s != (k + 1 < count ? ',' : '\0'))
            goto bad;
        if (*s == ',')
            s++;
    }
    *out = m;
    *n = count;
    return MTL_OK;
bad:
    mtli_free(m);
    return mtli_error(MTL_ERR_RANGE,
                      "optimizer '%s': key 'milestones' = '%s' is not a comma-separated list of "
                      "strictly increasing integers >= 0",
                      kind, text);
}
