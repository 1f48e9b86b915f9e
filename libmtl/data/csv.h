/* Internal: the CSV table layout, shared with the encoders. */
#ifndef MTLI_DATA_CSV_H
#define MTLI_DATA_CSV_H

#include <stddef.h>
#include <stdint.h>

#include "mtl/data.h"

/* cell offset of a missing field */
#define MTLI_CSV_MISSING SIZE_MAX

struct mtl_csv {
    int64_t rows;
    int cols;
    char *path;          /* for messages */
    char **names;        /* cols names (pointers into text or names_buf) */
    char *names_buf;     /* generated names "c0", "c1", ... when there is no header */
    char *text;          /* every field, NUL-terminated */
    size_t *cell;        /* rows * cols offsets into text, row-major; MTLI_CSV_MISSING */
    double *num;         /* rows * cols numeric values; NaN when missing or not a number */
    int64_t *line;       /* rows: the 1-based line where each record starts */
    unsigned char *numeric; /* cols: every non-missing field is a number */
    int64_t *bad_row;    /* cols: first row whose field is not a number, or -1 */
    unsigned char *has_inf; /* cols: some value is +-inf */
};

/* Text of field (row, col), NULL when missing; indices must be valid. */
static inline const char *mtli_csv_text(const mtl_csv *t, int64_t row, int col)
{
    size_t off = t->cell[(size_t)row * (size_t)t->cols + (size_t)col];
    return off == MTLI_CSV_MISSING ? NULL : t->text + off;
}

/* Index of column name or -1. */
int mtli_csv_find(const mtl_csv *t, const char *name);

/* Fail with MTL_ERR_FORMAT when column col is not numeric (naming line and text); fn names
 * the caller. */
mtl_status mtli_csv_require_numeric(const mtl_csv *t, int col, const char *fn);

/* Mean and population standard deviation of the non-missing values of a numeric column
 * (accumulated in double). Fails with MTL_ERR_NUMERIC when the
 * column holds inf or has no value. */
mtl_status mtli_csv_column_stats(const mtl_csv *t, int col, double *mean, double *std,
                                 const char *fn);

#endif
