/* Task samplers: round robin, proportional to dataset size, temperature-scaled, uniform. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "data/sampler.h"

static const char *const names[] = {"all", "round_robin", "proportional", "temperature",
                                    "uniform"};

mtl_status mtli_sampler_kind_from_name(const char *name, mtli_sampler_kind *out)
{
    if (!name)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "sampler: the name is NULL");
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (mtli_sampler_kind)i;
            return MTL_OK;
        }
    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                      "sampler '%s' is unknown (expected all, round_robin, proportional, "
                      "temperature or uniform)",
                      name);
}

const char *mtli_sampler_kind_name(mtli_sampler_kind kind)
{
    return (int)kind >= 0 && (int)kind < (int)(sizeof names / sizeof names[0]) ? names[kind]
                                                                               : "unknown";
}

mtl_status mtli_sampler_init(mtli_sampler *s, mtli_sampler_kind kind, const int64_t *sizes,
                             int ntasks, double temperature, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    if (ntasks < 1 || !sizes)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "sampler: %d tasks, expected >= 1", ntasks);
    if (!(temperature > 0.0) || !isfinite(temperature))
        return mtli_error(MTL_ERR_RANGE, "sampler: temperature is %g, expected a finite value > 0",
                          temperature);
    s->prob = mtli_calloc((size_t)ntasks, sizeof *s->prob);
    s->cum = mtli_calloc((size_t)ntasks, sizeof *s->cum);
    if (!s->prob || !s->cum) {
        mtli_sampler_free(s);
        return mtli_oom("sampler probabilities", (size_t)ntasks * 2 * sizeof(double));
    }
    s->kind = kind;
    s->ntasks = ntasks;
    double total = 0.0;
    for (int t = 0; t < ntasks; t++) {
        double p = 0.0;
        if (sizes[t] > 0) {
            switch (kind) {
            case MTLI_SAMPLER_PROPORTIONAL: p = (double)sizes[t]; break;
            case MTLI_SAMPLER_TEMPERATURE: p = pow((double)sizes[t], 1.0 / temperature); break;
            default: p = 1.0; break;
            }
        }
        s->prob[t] = p;
        total += p;
    }
    if (!(total > 0.0)) {
        mtli_sampler_free(s);
        return mtli_error(MTL_ERR_STATE, "sampler: no task has data");
    }
    double c = 0.0;
    for (int t = 0; t < ntasks; t++) {
        s->prob[t] /= total;
        c += s->prob[t];
        s->cum[t] = c;
    }
    mtli_rng_seed(&s->rng, seed);
    return MTL_OK;
}

void mtli_sampler_free(mtli_sampler *s)
{
    mtli_free(s->prob);
    mtli_free(s->cum);
    s->prob = s->cum = NULL;
}

int mtli_sampler_next(mtli_sampler *s)
{
    if (s->kind == MTLI_SAMPLER_ROUND_ROBIN || s->kind == MTLI_SAMPLER_ALL) {
        for (int k = 0; k < s->ntasks; k++) {
            int t = (s->cursor + k) % s->ntasks;
            if (s->prob[t] > 0.0) {
                s->cursor = (t + 1) % s->ntasks;
                return t;
            }
        }
        return 0;
    }
    double u = mtli_rng_uniform_double(&s->rng);
    int last = 0;
    for (int t = 0; t < s->ntasks; t++) {
        if (s->prob[t] <= 0.0)
            continue;
        last = t;
        if (u < s->cum[t])
            return t;
    }
    return last; /* rounding: u at the very top of [0, 1) */
}
