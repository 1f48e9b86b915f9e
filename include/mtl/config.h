/* libmtl — YAML configuration: one file describes the data, the model (trunk and task
 * heads), the task weighting, the optimizer and schedule, and the training settings.
 * docs/config.md lists every key with its type and default.
 *
 * Loading validates the whole file: the schema (unknown keys, wrong types, missing required
 * keys, values out of range, duplicate task names) and then every model, weighting and
 * optimizer setting through the same public calls the builders make, so a setting the API
 * rejects is reported at its place in the file. Every error message starts with
 * "FILE:LINE:COLUMN: " (1-based), or "--set 'KEY=VALUE', column C: " for an override.
 * Statuses: MTL_ERR_FORMAT for YAML syntax and wrong types, MTL_ERR_INVALID_ARGUMENT for
 * unknown keys and names, MTL_ERR_NOT_FOUND for missing required keys, MTL_ERR_RANGE for
 * values out of range, MTL_ERR_IO when the file cannot be read; errors of API calls keep
 * their status.
 *
 * Keys are dotted paths: "training.epochs", "optimizer.lr", "tasks.income.loss.name" (tasks
 * by name or by position), "model.trunk.0.out" (list items by position). Relative data
 * paths (data.*) are resolved against the configuration file's directory (and data.dir);
 * output paths (training.checkpoint.path, training.log) are used as written, i.e. relative
 * to the working directory. Since 1.0. */
#ifndef MTL_CONFIG_H
#define MTL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "mtl/status.h"
#include "mtl/tensor.h"

MTL_BEGIN_DECLS

typedef struct mtl_model mtl_model;
typedef struct mtl_optimizer mtl_optimizer;
typedef struct mtl_weighting mtl_weighting;
typedef struct mtl_dataset mtl_dataset;
typedef struct mtl_trainer mtl_trainer;
/* Opaque configuration handle. Since 1.0. */
typedef struct mtl_config mtl_config;

/* Read and validate a YAML configuration file. Owned; free with mtl_config_free. Errors:
 * invalid argument (NULL), io (the file cannot be read: names the path and the system
 * error), and the validation errors above. Since 1.0. */
MTL_API mtl_status mtl_config_load(mtl_config **out, const char *path);

/* The same from text in memory (len bytes; text need not be NUL-terminated). name is used
 * in messages in place of a file name (NULL: "<string>"); base_dir is the directory
 * relative data paths start from (NULL: the working directory). Since 1.0. */
MTL_API mtl_status mtl_config_parse(mtl_config **out, const char *text, size_t len,
                                    const char *name, const char *base_dir);

/* Accepts NULL. Since 1.0. */
MTL_API void mtl_config_free(mtl_config *cfg);

/* Override one setting (the command line's --set KEY=VALUE): value is read as YAML typed by
 * the schema — for string keys it is taken literally; otherwise "3" is an integer, "1e-3" a
 * number, "true" a boolean, and flow collections ("[64, 32]", "{kind: relu}") are lists and
 * mappings. Missing intermediate mappings are created; a list item is addressed by position
 * (the position one past the end appends) and a task by name. The whole configuration is
 * validated again; on any error nothing changes. Data already read by a builder is
 * dropped; once datasets or a trainer have been made from cfg (they use its data), changes
 * are refused with MTL_ERR_STATE. Since 1.0. */
MTL_API mtl_status mtl_config_set(mtl_config *cfg, const char *key, const char *value);

/* Read an effective setting (the file's value, or the default documented in
 * docs/config.md). get_int also reads booleans (0/1); get_double reads integers too;
 * get_string reads any single value as written (borrowed; valid until the next
 * mtl_config_set or mtl_config_free). Errors: not found (the key is not set and has no
 * default), invalid argument (a malformed key, or a value of another type: a list where a
 * number is asked for, text that is not a number). Since 1.0. */
MTL_API mtl_status mtl_config_get_int(const mtl_config *cfg, const char *key, int64_t *value);
MTL_API mtl_status mtl_config_get_double(const mtl_config *cfg, const char *key, double *value);
MTL_API mtl_status mtl_config_get_string(const mtl_config *cfg, const char *key,
                                         const char **value);
/* The number of items of a list, or of keys of a mapping, at key (a single value counts 1;
 * an absent key 0). Since 1.0. */
MTL_API mtl_status mtl_config_count(const mtl_config *cfg, const char *key, int *count);

/* A data path setting (data.train.file, data.test.labels.income, ...) resolved as the
 * library opens it. Writes at most cap bytes including the NUL into buf; *needed (may be
 * NULL) receives the size needed; a truncated result is MTL_ERR_RANGE. Since 1.0. */
MTL_API mtl_status mtl_config_data_path(const mtl_config *cfg, const char *key, char *buf,
                                        size_t cap, size_t *needed);

/* Tasks in the order the file lists them (the model's head order). The name is borrowed
 * (NULL when index is out of range). Since 1.0. */
MTL_API int mtl_config_num_tasks(const mtl_config *cfg);
MTL_API const char *mtl_config_task_name(const mtl_config *cfg, int index);

/* The effective configuration (every default filled in, shorthands expanded, tasks as a
 * list) as YAML text that loads back to the same configuration (what `mtl config` prints).
 * Same buffer contract as mtl_config_data_path. Since 1.0. */
MTL_API mtl_status mtl_config_dump(const mtl_config *cfg, char *buf, size_t cap,
                                   size_t *needed);

/* Build the model: input, trunk layers, one head per task (its layers, then a final linear
 * layer with the task's output size unless output_layer is false), losses and their
 * options, L2 settings; then mtl_model_build with max_batch = the larger of
 * training.batch_size and training.eval_batch_size and seed = training.seed. The input
 * shape and the output sizes come from the file when given (model.input, tasks.*.classes,
 * tasks.*.outputs) and otherwise from the training data, which is then read (and kept in cfg
 * for later calls). Owned; free with mtl_model_free. Errors: as loading, plus those of the
 * data files and of the model's build. Since 1.0. */
MTL_API mtl_status mtl_config_build_model(mtl_config *cfg, mtl_model **out);

/* Create the optimizer of the file for a built model, with every key, the schedule and the
 * per-part learning-rate multipliers. optimizer.schedule_interval "epoch" and total_steps
 * "auto" need the number of steps per epoch: steps_per_epoch > 0 gives it; 0 computes it
 * from the training data and training.batch_size (reading the data if needed). Owned; free
 * with mtl_optimizer_free before the model. Since 1.0. */
MTL_API mtl_status mtl_config_build_optimizer(mtl_config *cfg, mtl_model *model,
                                              int64_t steps_per_epoch, mtl_optimizer **out);

/* Create the task weighting of the file (method, keys, and the tasks' static weights for
 * method "fixed"). Owned; free with mtl_weighting_free. Since 1.0. */
MTL_API mtl_status mtl_config_build_weighting(const mtl_config *cfg, mtl_weighting **out);

/* A dataset over one split ("train", "validation", "test") of the configuration's data,
 * read on first use and kept in cfg. Single-input problems: task is NULL and the dataset
 * has a slot per task (in task order); multi-input problems (tasks.*.data): task names the
 * task, whose slot alone has targets. The dataset borrows cfg's tensors: free it before cfg.
 * From then on mtl_config_set refuses changes (MTL_ERR_STATE). Owned; free with
 * mtl_dataset_free. Errors: invalid argument (an unknown split, task given or missing),
 * not found (the configuration has no such split, or no such task), and the errors of
 * reading the data. Since 1.0. */
MTL_API mtl_status mtl_config_build_dataset(mtl_config *cfg, const char *split, const char *task,
                                            mtl_dataset **out);

/* Create a trainer for model, opt and w (borrowed, as mtl_trainer_create) with every key of
 * the training section except the mtl program's own (threads, resume, progress), each
 * task's metric list ("metrics.<task>"), and the training and validation data set
 * (mtl_trainer_set_data, or mtl_trainer_set_task_data per task). The datasets belong to
 * cfg, so free the trainer before cfg; mtl_config_set then refuses changes. Owned; free
 * with mtl_trainer_free. Since 1.0. */
MTL_API mtl_status mtl_config_build_trainer(mtl_config *cfg, mtl_model *model,
                                            mtl_optimizer *opt, mtl_weighting *w,
                                            mtl_trainer **out);

/* Read a CSV file with the configuration's reading options (data.csv with data.test's
 * overrides) and encode its feature columns as the model's input, with the encoder fitted
 * on the training table (read on first use): float32 [N, features], or int32 [N, id
 * columns] for ids encoding. Label columns may be absent. Owned; free with
 * mtl_tensor_free. Errors: state (the configuration's data is not CSV), those of reading
 * and encoding (a missing feature column is not found). Since 1.0. */
MTL_API mtl_status mtl_config_encode_csv(mtl_config *cfg, const char *path, mtl_tensor **out);

MTL_END_DECLS

#endif
