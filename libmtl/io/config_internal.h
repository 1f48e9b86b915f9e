/* Internal: the YAML configuration — a document tree with source locations, the schema that
 * validates it, and the pieces shared by the loader, the builders and the data reader.
 *
 * The file is parsed by libyaml into a tree of mtli_cnode (scalars keep their text and
 * whether they were quoted; every node keeps its file, line and column). Validation walks
 * the tree against the schema table (config_schema.c), normalises shorthands in place
 * ("loss: bce" becomes {name: bce}, a task mapping becomes a list of tasks with names) and
 * then replays every model, weighting and optimizer setting through the public API on
 * throw-away handles, so the API's own checks report errors at the offending node. */
#ifndef MTLI_IO_CONFIG_INTERNAL_H
#define MTLI_IO_CONFIG_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>

#include "core/error.h"
#include "mtl/config.h"
#include "mtl/data.h"
#include "mtl/dataset.h"
#include "mtl/model.h"
#include "mtl/optim.h"
#include "mtl/train.h"
#include "mtl/weighting.h"

/* ---- document tree --------------------------------------------------------------------- */

typedef enum { MTLI_CN_NULL, MTLI_CN_SCALAR, MTLI_CN_MAP, MTLI_CN_SEQ } mtli_cn_kind;

/* Where nodes came from: a file (messages "path:line:col: ...") or a --set override
 * (messages "--set 'key=value', column c: ..."). Owned by the config, in a list. */
typedef struct mtli_csrc {
    struct mtli_csrc *next;
    int is_file;
    char *name;
} mtli_csrc;

typedef struct mtli_cnode {
    mtli_cn_kind kind;
    int line, col; /* 1-based */
    const mtli_csrc *src;
    char *text;    /* scalars: the value (NUL-terminated); NULL otherwise */
    int quoted;    /* scalars: written in quotes or as a block scalar (always a string) */
    int n, cap;    /* number of items (sequences) or pairs (mappings) */
    struct mtli_cnode **keys; /* mappings: key scalars */
    struct mtli_cnode **vals; /* mappings: values; sequences: items */
} mtli_cnode;

/* Parse YAML text into a tree. name is used in messages; src is recorded in every node.
 * An empty document gives a NULL node. Errors: format (YAML syntax, with the line and column
 * libyaml reports; duplicate keys; non-scalar keys; more than one document; nesting deeper
 * than 64 or aliases expanding to more than 1,000,000 nodes), out of memory. */
mtl_status mtli_yaml_parse(mtli_cnode **out, const char *text, size_t len, const mtli_csrc *src);

void mtli_cnode_free(mtli_cnode *n);
mtli_cnode *mtli_cnode_new(mtli_cn_kind kind, const mtli_cnode *where);
mtli_cnode *mtli_cnode_scalar(const char *text, int quoted, const mtli_cnode *where);
/* Append a pair / an item (takes ownership of key and val; frees them on failure). */
mtl_status mtli_cnode_map_add(mtli_cnode *map, mtli_cnode *key, mtli_cnode *val);
mtl_status mtli_cnode_seq_add(mtli_cnode *seq, mtli_cnode *item);
/* Deep copy. */
mtl_status mtli_cnode_clone(mtli_cnode **out, const mtli_cnode *n);
/* Value of key in a mapping (NULL when absent or n is not a mapping); *index (may be NULL)
 * receives the pair's position. */
mtli_cnode *mtli_cnode_get(const mtli_cnode *map, const char *key);
int mtli_cnode_index(const mtli_cnode *map, const char *key);
/* Remove pair i of a mapping (freed). */
void mtli_cnode_map_remove(mtli_cnode *map, int i);

/* Write the tree as block-style YAML into a growing buffer. */
typedef struct mtli_sbuf {
    char *p;
    size_t len, cap;
    int oom;
} mtli_sbuf;
void mtli_sbuf_add(mtli_sbuf *b, const char *fmt, ...) MTLI_PRINTF(2, 3);
void mtli_yaml_emit(mtli_sbuf *b, const mtli_cnode *n, int indent);

/* ---- scalars --------------------------------------------------------------------------- */

/* YAML 1.2 core schema forms; quoted scalars are never numbers, booleans or null. Numbers are
 * read independently of the process locale. Return 1 on success. */
int mtli_scalar_int(const mtli_cnode *n, int64_t *v);
int mtli_scalar_double(const mtli_cnode *n, double *v);
int mtli_scalar_bool(const mtli_cnode *n, int *v);
int mtli_text_double(const char *s, double *v); /* any text in the YAML float forms */

/* ---- messages -------------------------------------------------------------------------- */

/* Format "where" for node n: "file:line:col" or "--set 'key=value', column c". */
void mtli_cnode_where(const mtli_cnode *n, char *buf, size_t cap);
/* Set the error with the node's location in front. */
mtl_status mtli_cfg_error(const mtli_cnode *n, mtl_status st, const char *fmt, ...)
    MTLI_PRINTF(3, 4);
/* Put the node's location in front of the current error (after a failed API call) and
 * return st. */
mtl_status mtli_cfg_prefix(const mtli_cnode *n, mtl_status st);
/* A short description of a node for messages: "the mapping", "'abc'", ... */
const char *mtli_cnode_describe(const mtli_cnode *n, char *buf, size_t cap);

/* ---- the config handle ----------------------------------------------------------------- */

typedef struct mtli_cdata mtli_cdata;

struct mtl_config {
    char *path;          /* as given to load (or the name given to parse) */
    char *dir;           /* directory that relative data paths start from */
    mtli_cnode *root;    /* the effective tree: validated, normalised, defaults filled in */
    mtli_cnode *user;    /* the user's tree: validated and normalised, without defaults */
    mtli_csrc *sources;  /* every source of nodes (file, --set overrides) */
    mtli_cdata *data;    /* loaded data, lazily (config_data.c) */
    int data_lent;       /* datasets borrow data's tensors: settings are frozen */
    mtl_dataset **ds;    /* datasets made for trainers (freed with the config) */
    int nds;
};

/* Schema and semantic checks of a user tree, normalising it in place (config_schema.c). */
mtl_status mtli_config_validate_tree(mtli_cnode **root);
/* Fill in the schema's defaults (on the effective copy). */
mtl_status mtli_config_fill(mtli_cnode *root);
/* Replay the model, weighting and optimizer settings of cfg->root on throw-away handles
 * (config_build.c). */
mtl_status mtli_config_dry_run(const mtl_config *cfg);

/* ---- schema (config_schema.c) ---------------------------------------------------------- */

typedef enum {
    MTLI_ST_MAP,     /* fixed keys, each with its own entry "path.key" */
    MTLI_ST_OPEN,    /* fixed keys typed by their entries; any other key passes to the API */
    MTLI_ST_SEQ,     /* a list; items described by "path.*" */
    MTLI_ST_DICT,    /* a mapping with free keys; values described by "path.*" */
    MTLI_ST_TASKS,   /* a list of mappings with 'name', or a mapping name -> settings */
    MTLI_ST_INT,
    MTLI_ST_DOUBLE,
    MTLI_ST_BOOL,
    MTLI_ST_STRING,
    MTLI_ST_PATH,    /* a non-empty string naming a file */
    MTLI_ST_ENUM,    /* one of values ("a|b|c") */
    MTLI_ST_STRINGS, /* a string, or a list of strings */
    MTLI_ST_NUMBERS, /* a list of numbers */
    MTLI_ST_SCALAR,  /* any scalar (its use decides: passed to the API) */
    MTLI_ST_LAYER    /* {kind: name, options...}; a string is the kind; options go to the API */
} mtli_stype;

enum {
    MTLI_SF_REQUIRED = 1, /* must be present */
    MTLI_SF_NULLABLE = 2, /* null is allowed (means "off") */
    MTLI_SF_LO_OPEN = 4,  /* lower bound excluded */
    MTLI_SF_HI_OPEN = 8,  /* upper bound excluded */
    MTLI_SF_NUMBER_OR_ENUM = 16 /* a number in range or one of values (schedule_interval) */
};

typedef struct mtli_skey {
    const char *path;      /* "training.epochs", "tasks.*.head" */
    mtli_stype type;
    unsigned flags;
    const char *shorthand; /* mappings: the key a scalar value stands for */
    const char *def;       /* default, as text (NULL: none / derived) */
    double lo, hi;         /* numbers: inclusive range unless *_OPEN */
    const char *values;    /* enums: "a|b|c" */
} mtli_skey;

/* The entry of a pattern path ("tasks.*.loss"); NULL when there is none. */
const mtli_skey *mtli_schema_find(const char *pattern);
/* The i-th schema entry (NULL past the end). */
const mtli_skey *mtli_schema_at(int i);

/* Resolve a dotted key ("training.epochs", "tasks.income.loss.name", "model.trunk.0.out")
 * to its node (NULL when absent) and to its schema pattern (written into pattern, may be
 * empty for keys of open mappings). Errors: invalid argument (malformed key), not found
 * (an unknown task or an index past the end of a list when must_exist). */
mtl_status mtli_config_resolve(const mtl_config *cfg, const char *key, const mtli_cnode **node,
                               char *pattern, size_t cap);

/* The kind of task i of a validated config ("classification", ...) and its node. */
const mtli_cnode *mtli_config_tasks(const mtl_config *cfg);
const char *mtli_task_str(const mtli_cnode *task, const char *key, const char *def);

/* Task kinds. */
typedef enum {
    MTLI_TASK_CLASSIFICATION,
    MTLI_TASK_BINARY,
    MTLI_TASK_MULTILABEL,
    MTLI_TASK_REGRESSION
} mtli_task_kind;
mtli_task_kind mtli_task_kind_of(const mtli_cnode *task);
const char *mtli_task_default_loss(mtli_task_kind k);
/* The metrics evaluation reports for a task without a metrics list (the trainer's
 * defaults for its loss), NULL-terminated. */
const char *const *mtli_task_default_metrics(const mtli_cnode *task);

/* ---- building (config_build.c) --------------------------------------------------------- */

/* Replay the model settings onto a new model. Without data (dry run) the input shape is
 * model.input's or {1} and no output layer is appended when its size is unknown. outputs
 * (may be NULL) holds each task's output size. */
mtl_status mtli_config_make_model(const mtl_config *cfg, mtl_model **out, mtl_dtype dtype,
                                  int ndim, const int64_t *shape, const int64_t *outputs,
                                  const mtli_cdata *data);
mtl_status mtli_config_apply_optimizer(const mtl_config *cfg, mtl_optimizer **out,
                                       mtl_model *model, int64_t steps_per_epoch);
mtl_status mtli_config_make_weighting(const mtl_config *cfg, mtl_weighting **out);
/* Set the training keys (all but the program's own: threads, resume, progress) and each
 * task's metric list on a trainer. */
mtl_status mtli_config_apply_trainer(const mtl_config *cfg, mtl_trainer *tr);
int mtli_config_program_key(const char *key);

/* Set an option through one of three typed setters, picked by the scalar's form: an integer
 * (or a boolean: 0/1) through set_int, another number through set_double, anything else
 * through set_string. */
typedef struct mtli_setter {
    void *obj;
    int index; /* layers: the layer index */
    mtl_status (*set_int)(void *obj, int index, const char *key, int64_t v);
    mtl_status (*set_double)(void *obj, int index, const char *key, double v);
    mtl_status (*set_string)(void *obj, int index, const char *key, const char *v);
} mtli_setter;
mtl_status mtli_config_set_option(const mtli_setter *s, const mtli_cnode *key,
                                  const mtli_cnode *val);

#endif
