/* libmtl — evaluation and the trainer.
 *
 * EVALUATION. mtl_evaluate runs a model in evaluation mode over one dataset (single-input:
 * every head reads its own slot) or one dataset per head (multi-input) and produces named
 * values:
 *   "<prefix>.loss"              mean over the evaluated tasks of their mean losses
 *   "<prefix>.<task>.loss"       the task's mean loss over its valid samples (the head's
 *                                loss, the same definition as training)
 *   "<prefix>.<task>.<metric>"   each metric of the task (mtl_metric_compute names)
 * Default metrics per head (the loss decides):
 *   cross_entropy          accuracy, precision_macro, recall_macro, f1_macro
 *   bce, one output        accuracy, precision, recall, f1 (threshold 0.5), roc_auc
 *   bce, several outputs   accuracy (element-wise, threshold 0.5)
 *   mse, l1, huber         mse, mae, r2
 * A metric list replaces the defaults: comma-separated names of mtl_metric_compute, plus
 * "per_class" (cross_entropy and one-output bce) which adds "<prefix>.<task>.precision.<k>",
 * ".recall.<k>", ".f1.<k>" for each class k. Samples whose label is missing (-1 / NaN) or
 * masked are left out of the metrics. A metric that is undefined on the data (roc_auc with
 * one class present) is reported as NaN. A task with no target in its dataset is skipped.
 *
 * TRAINER. A trainer drives one built model, its optimizer and weighting (all borrowed:
 * they must outlive it) over training data and optional validation data:
 *   - single-input: mtl_trainer_set_data(train, val); every step takes one batch of the
 *     dataset and trains every task with a target in it. An epoch is one pass over train.
 *   - multi-input: mtl_trainer_set_task_data(task, train, val) for each task with data. The
 *     key "sampler" chooses what a step trains:
 *       "all"           (default) one batch from EVERY task's dataset per step (what the
 *                       gradient-balancing weightings need). A dataset that runs out is
 *                       reshuffled and restarted; an EPOCH is one pass over the LARGEST
 *                       dataset (its number of batches is the steps per epoch).
 *       "round_robin"   one task per step, in head order, cycling;
 *       "proportional"  one task per step, drawn with p_t proportional to its dataset size;
 *       "temperature"   p_t proportional to n_t^(1/T) (key "temperature", T > 0; T = 1 is
 *                       proportional, T -> infinity uniform);
 *       "uniform"       p_t = 1 / (number of tasks with data).
 *     With a one-task sampler an epoch is as many steps as the batches of all tasks' datasets
 *     together (sum of their batches per pass); each task's dataset restarts on its own when
 *     it runs out. The draws are seeded from "seed" and deterministic.
 *
 * Keys (typed setters; the same names as the configuration file), defaults in parentheses:
 *   int     epochs (10, >= 1), batch_size (32, >= 1; at most the model's max_batch),
 *           eval_batch_size (0 = batch_size), seed (0), shuffle (1), drop_last (0),
 *           eval_every (1: evaluate every N epochs; 0 = not by epochs),
 *           eval_every_steps (0 = off; evaluate every N optimizer steps),
 *           early_stopping_patience (0 = off; stop after this many evaluations without an
 *           improvement of the monitored metric), checkpoint_every (0 = off; save a periodic
 *           checkpoint every N epochs), max_steps (0 = no limit)
 *   double  temperature (2.0, > 0), early_stopping_min_delta (0, >= 0: the improvement an
 *           evaluation must make to count)
 *   string  early_stopping_metric ("": "val.loss" when validation data is set, else
 *           "train.loss") — the monitored metric, also for keep-best checkpoints; any name of
 *           the evaluation ("val.<task>.accuracy", "train.<task>.loss", ...);
 *           early_stopping_mode ("auto": from the metric, min for losses and errors, max
 *           otherwise; "min"; "max"), checkpoint_path ("": off; the best model by the
 *           monitored metric is saved here at each improvement), checkpoint_pattern ("":
 *           "<checkpoint_path>.epoch{epoch}"; the periodic checkpoint path, where "{epoch}"
 *           and "{step}" are replaced), sampler ("all"), log_path ("": off; JSON lines, one
 *           object per evaluation: {"epoch", "step", "lr", "train": {task: mean loss
 *           since the previous evaluation}, "val": {name without "val.": value},
 *           "weights": {task: weight}}; epoch is 1-based as in the callback),
 *           metrics.<task> (a metric list for that head, as mtl_evaluate's).
 * Errors: invalid argument (unknown key, a key of another type, an unknown sampler, mode or
 * task), range (a value out of range).
 *
 * Every evaluation (after eval_every epochs or eval_every_steps steps, and at the end of a
 * run that trained since the last one, unless the callback stopped it) computes "train.loss", "train.<task>.loss" (mean training loss since the previous
 * evaluation) and, with validation data, the "val." values of mtl_evaluate.
 *
 * Checkpoints hold the model, the optimizer and the weighting; the trainer's position
 * (epoch, step, loaders, sampler, early-stopping state) is saved next to each checkpoint in
 * "<checkpoint>.trainer" (a small versioned file with a checksum). mtl_trainer_resume loads
 * both and the next mtl_trainer_run continues where that checkpoint was taken.
 *
 * Progress callback: fn(user, event, epoch, step, values, nvalues) with event
 *   "step"   after every optimizer step; values: [samples in the step, learning rate,
 *            loss of task 0, ..., loss of task T-1] (NaN for a task not trained this step)
 *   "epoch"  after every epoch; values: [samples in the epoch, learning rate, mean loss of
 *            task 0, ..., task T-1 over the epoch]
 *   "eval"   after every evaluation; values: the evaluation's values, named by
 *            mtl_trainer_eval_result (its index i names values[i])
 * epoch is the 1-based number of the epoch in progress (in "epoch" events, and "eval" events
 * at an epoch's end, the epoch just completed); step counts the optimizer steps taken.
 * values is borrowed for the call. A non-zero return stops training after the current step
 * (mtl_trainer_run then returns MTL_OK with stop reason "callback"). No varargs, no
 * structures: callable through ctypes.
 *
 * Since 1.0. */
#ifndef MTL_TRAIN_H
#define MTL_TRAIN_H

#include <stdint.h>

#include "mtl/dataset.h"
#include "mtl/model.h"
#include "mtl/status.h"

MTL_BEGIN_DECLS

/* ---- Evaluation ------------------------------------------------------------------------- */

/* Opaque list of named values. Since 1.0. */
typedef struct mtl_eval_result mtl_eval_result;

/* Evaluate model on datasets[0..ndatasets-1]: ndatasets 1 = one dataset for every head;
 * ndatasets = number of heads = dataset t for head t (NULL entries skip a head). Batches of
 * batch_size (>= 1; at most the model's max_batch). prefix names the values ("val", "test";
 * NULL = "val"). metrics: NULL for the defaults, or one entry per head (each NULL for the
 * defaults, or a comma-separated metric list). The model's parameters and state do not
 * change. *out receives an owned result (mtl_eval_result_free). Errors: invalid argument,
 * state (model not built), shape (inputs or targets that do not fit the model), not found
 * (an unknown metric name), numeric (a NaN/Inf output), out of memory. Since 1.0. */
MTL_API mtl_status mtl_evaluate(mtl_eval_result **out, mtl_model *model,
                                const mtl_dataset *const *datasets, int ndatasets,
                                int64_t batch_size, const char *prefix,
                                const char *const *metrics);

/* Accepts NULL. Since 1.0. */
MTL_API void mtl_eval_result_free(mtl_eval_result *r);
/* Number of values; 0 on NULL. Since 1.0. */
MTL_API int mtl_eval_result_count(const mtl_eval_result *r);
/* Name and value of entry index (in a stable order: overall loss, then per head in head
 * order its loss and metrics); NULL / NaN when out of range. Names are borrowed. Since 1.0. */
MTL_API const char *mtl_eval_result_name(const mtl_eval_result *r, int index);
MTL_API double mtl_eval_result_value(const mtl_eval_result *r, int index);
/* Value by name. Errors: invalid argument (NULL), not found. Since 1.0. */
MTL_API mtl_status mtl_eval_result_get(const mtl_eval_result *r, const char *name,
                                       double *value);

/* ---- Trainer ---------------------------------------------------------------------------- */

typedef struct mtl_trainer mtl_trainer;

/* Progress callback (see above). Return non-zero to stop training. Since 1.0. */
typedef int (*mtl_progress_fn)(void *user, const char *event, int64_t epoch, int64_t step,
                               const double *values, int nvalues);

/* Create a trainer for a built model, its optimizer and weighting (may be NULL: the plain
 * sum of the losses). All three are borrowed. Owned; free with mtl_trainer_free. Errors:
 * invalid argument (NULL model or optimizer), state (model not built), shape (a weighting
 * for another number of tasks), out of memory. Since 1.0. */
MTL_API mtl_status mtl_trainer_create(mtl_trainer **out, mtl_model *model, mtl_optimizer *opt,
                                      mtl_weighting *weighting);
/* Accepts NULL. Since 1.0. */
MTL_API void mtl_trainer_free(mtl_trainer *tr);

/* Single-input data: train (required) and val (NULL: no validation); borrowed. Their slots
 * must number the model's heads. Replaces any data set before. Errors: invalid argument,
 * shape (slot count, or inputs that do not fit the model). Since 1.0. */
MTL_API mtl_status mtl_trainer_set_data(mtl_trainer *tr, const mtl_dataset *train,
                                        const mtl_dataset *val);

/* Multi-input data for one task (a head name): its own train dataset (NULL removes the
 * task's data) and optional val dataset; borrowed. The dataset's slot for that task (slot t,
 * or slot 0 when it has a single slot) must have a target. Errors: invalid argument, not
 * found (task), shape, state (single-input data is set). Since 1.0. */
MTL_API mtl_status mtl_trainer_set_task_data(mtl_trainer *tr, const char *task,
                                             const mtl_dataset *train, const mtl_dataset *val);

/* Keys (see above). Since 1.0. */
MTL_API mtl_status mtl_trainer_set_int(mtl_trainer *tr, const char *key, int64_t value);
MTL_API mtl_status mtl_trainer_set_double(mtl_trainer *tr, const char *key, double value);
MTL_API mtl_status mtl_trainer_set_string(mtl_trainer *tr, const char *key, const char *value);
/* Read a key: get_double also reads int keys; get_string returns a borrowed string valid
 * until the key changes or the trainer is freed. Errors: unknown key, another type.
 * Since 1.0. */
MTL_API mtl_status mtl_trainer_get_int(const mtl_trainer *tr, const char *key, int64_t *value);
MTL_API mtl_status mtl_trainer_get_double(const mtl_trainer *tr, const char *key,
                                          double *value);
MTL_API mtl_status mtl_trainer_get_string(const mtl_trainer *tr, const char *key,
                                          const char **value);
/* The index-th key (static storage; "metrics.<task>" is not listed); NULL past the end.
 * Since 1.0. */
MTL_API const char *mtl_trainer_key_name(int index);

/* Set (fn NULL: remove) the progress callback. Since 1.0. */
MTL_API mtl_status mtl_trainer_set_progress(mtl_trainer *tr, mtl_progress_fn fn, void *user);

/* Train until the epochs are done (continuing from the trainer's position: after a resume,
 * or after an earlier run that stopped), early stopping triggers, max_steps is reached or
 * the callback asks to stop. Returns MTL_OK in all those cases (see
 * mtl_trainer_stop_reason). Errors: state (no training data), shape, io (log or
 * checkpoint), unsupported (checkpoint_path set in a build without checkpoints), numeric (a
 * step failed with NaN/Inf: the model keeps the parameters of the last good step), the
 * errors of the model step. Since 1.0. */
MTL_API mtl_status mtl_trainer_run(mtl_trainer *tr);

/* Run one evaluation now on the validation data (and the training losses gathered since the
 * last one). *out (may be NULL) receives the borrowed result, valid until the next
 * evaluation or mtl_trainer_free. Errors: as mtl_evaluate; state (no data). Since 1.0. */
MTL_API mtl_status mtl_trainer_evaluate(mtl_trainer *tr, const mtl_eval_result **out);

/* The result of the most recent evaluation (borrowed; NULL before any). Since 1.0. */
MTL_API const mtl_eval_result *mtl_trainer_eval_result(const mtl_trainer *tr);

/* Load a checkpoint into the trainer's model, optimizer and weighting, and the trainer's
 * position from "<path>.trainer" (when that file does not exist, only the model, optimizer
 * and weighting are restored and training starts at epoch 0). The next run continues from
 * there. Errors: io, format,
 * unsupported (a build without checkpoints, or a newer trainer-state version), shape (the
 * checkpoint's model differs), state (the data, batch size or sampler changed: a different
 * number of steps per epoch than when saved). On an error the model, optimizer and
 * weighting are unchanged and the trainer's position is back at the start. Since 1.0. */
MTL_API mtl_status mtl_trainer_resume(mtl_trainer *tr, const char *path);

/* Position: completed epochs, optimizer steps taken by this trainer, steps per epoch (0 when
 * no data is set or batch_size does not fit). -1 on NULL. Since 1.0. */
MTL_API int64_t mtl_trainer_epoch(const mtl_trainer *tr);
MTL_API int64_t mtl_trainer_step(const mtl_trainer *tr);
MTL_API int64_t mtl_trainer_steps_per_epoch(const mtl_trainer *tr);

/* Why the last run ended: "" (not run), "completed", "early_stopping", "max_steps",
 * "callback". Static storage. Since 1.0. */
MTL_API const char *mtl_trainer_stop_reason(const mtl_trainer *tr);

/* The best value of the monitored metric so far, and the epoch and step where it was
 * reached. Errors: invalid argument (NULL tr; outputs may be NULL), state (no evaluation
 * yet). Since 1.0. */
MTL_API mtl_status mtl_trainer_best(const mtl_trainer *tr, double *value, int64_t *epoch,
                                    int64_t *step);

MTL_END_DECLS

#endif
