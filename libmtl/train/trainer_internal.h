/* Internal: evaluation results and the evaluation pass shared by mtl_evaluate and the
 * trainer. */
#ifndef MTLI_TRAINER_INTERNAL_H
#define MTLI_TRAINER_INTERNAL_H

#include <stdint.h>

#include "core/error.h"
#include "mtl/train.h"

struct mtl_eval_result {
    int n, cap;
    char **names;
    double *values;
};

/* An empty result (owned; mtl_eval_result_free). */
mtl_status mtli_eval_result_new(mtl_eval_result **out);
/* Append a value named by a printf format. */
mtl_status mtli_eval_add(mtl_eval_result *r, double value, const char *fmt, ...)
    MTLI_PRINTF(3, 4);
/* Append every entry of src. */
mtl_status mtli_eval_append(mtl_eval_result *r, const mtl_eval_result *src);
/* Index of a name, or -1. */
int mtli_eval_find(const mtl_eval_result *r, const char *name);

/* Validate a comma-separated metric list (NULL or "" = the defaults) for a head with the
 * given loss kind name; fn and task name the culprit in messages. */
mtl_status mtli_eval_check_metrics(const char *list, const char *fn, const char *task);

/* Slot of head `head` in dataset ds when ds serves that head: ds with one slot per head
 * uses slot head; a one-slot dataset (multi-input) slot 0; otherwise -1. */
int mtli_eval_slot(const mtl_dataset *ds, int head, int nheads, int multi);

#endif
