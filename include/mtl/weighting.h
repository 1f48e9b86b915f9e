/* libmtl — task weighting: how the task losses (and, for gradient-based methods, their
 * gradients) combine into one update.
 *
 * Methods are chosen by name (lower case, the same in C, YAML and Python):
 *   loss-based:      ew, fixed, uw, dwa, gls, rlw, stch, famo
 *   Gram-based:      mgda, mgda_ub, pcgrad, cagrad, nash_mtl, imtl, aligned_mtl, fairgrad,
 *                    upgrad, dualproj, gradnorm, config
 *   per-coordinate:  graddrop, gradvac, moco, db_mtl, excessmtl
 * docs/weighting.md lists every method with its paper, hyper-parameters, defaults, cost and
 * the meaning of its weights. "ew" takes key "reduction": "sum" (default; weights 1) or
 * "mean" (1/T); "fixed" uses static weights set with mtl_weighting_set_weights (default 1).
 * Gram-based and per-coordinate methods balance the per-task gradients of the shared trunk,
 * which the train step computes only for them. Hyper-parameters are set by key; unknown keys
 * and bad values are errors. The weights a step used are read back with
 * mtl_weighting_get_weights. Since 1.0. */
#ifndef MTL_WEIGHTING_H
#define MTL_WEIGHTING_H

#include <stdint.h>

#include "mtl/status.h"

MTL_BEGIN_DECLS

typedef struct mtl_weighting mtl_weighting;

/* Create a weighting of the named method for num_tasks tasks (>= 1). Owned; free with
 * mtl_weighting_free. Since 1.0. */
MTL_API mtl_status mtl_weighting_create(mtl_weighting **out, const char *method, int num_tasks);
/* Accepts NULL. Since 1.0. */
MTL_API void mtl_weighting_free(mtl_weighting *w);

MTL_API mtl_status mtl_weighting_set_double(mtl_weighting *w, const char *key, double value);
MTL_API mtl_status mtl_weighting_set_int(mtl_weighting *w, const char *key, int64_t value);
MTL_API mtl_status mtl_weighting_set_string(mtl_weighting *w, const char *key,
                                            const char *value);
/* The i-th key the method accepts; NULL past the end. Since 1.0. */
MTL_API const char *mtl_weighting_key_name(const mtl_weighting *w, int index);

/* Static weights (method "fixed"): n must equal num_tasks; each finite and >= 0. Since 1.0. */
MTL_API mtl_status mtl_weighting_set_weights(mtl_weighting *w, const double *weights, int n);
/* The task weights of the most recent step (before any step: the initial weights). Since 1.0. */
MTL_API mtl_status mtl_weighting_get_weights(const mtl_weighting *w, double *weights, int n);

MTL_API const char *mtl_weighting_method(const mtl_weighting *w);
MTL_API int mtl_weighting_num_tasks(const mtl_weighting *w);

/* The current value of a key (its default until set). get_double also reads int keys;
 * get_string returns a borrowed string valid while w lives. Errors: unknown key, or a key of
 * another type. Since 1.0. */
MTL_API mtl_status mtl_weighting_get_double(const mtl_weighting *w, const char *key,
                                            double *value);
MTL_API mtl_status mtl_weighting_get_int(const mtl_weighting *w, const char *key,
                                         int64_t *value);
MTL_API mtl_status mtl_weighting_get_string(const mtl_weighting *w, const char *key,
                                            const char **value);

/* The i-th available method name (canonical, lower case); NULL past the end. Static
 * storage. Since 1.0. */
MTL_API const char *mtl_weighting_available(int index);

/* Forget everything the method has learned or remembered (learned weights, loss history,
 * step count; the random stream restarts from the "seed" key). Keys keep their values.
 * Since 1.0. */
MTL_API mtl_status mtl_weighting_reset(mtl_weighting *w);

MTL_END_DECLS

#endif
