/* libmtl — loading data: NumPy .npy arrays, CSV tables, and encoders that turn table columns
 * into feature and label tensors.
 *
 * NPY: arrays of 1 to 4 dimensions in C order with dtype <f4, <f8, <i4, <i8, |u1 or |i1
 * (format versions 1.0, 2.0 and 3.0). Floats load as float32, integers as int32.
 *
 * CSV: RFC 4180 text (quoted fields may hold delimiters, doubled quotes and newlines; LF or
 * CRLF line ends; empty lines are skipped). Reading is configured with an options handle
 * whose keys and defaults are:
 *   header        int 0/1: the first record holds the column names (1). Without a header
 *                 the columns are named "c0", "c1", ...
 *   delimiter     string of one character, not '"', CR or LF (",")
 *   na_values     string: comma-separated field texts that mean "missing" ("?,NA,": "?", "NA"
 *                 and the empty field)
 *   skip_rows     int >= 0: physical lines ignored at the start of the file, before the
 *                 header (0)
 *   comment       string of zero or one character: lines starting with it are skipped ("")
 *   trim          int 0/1: strip spaces and tabs around fields, outside quotes (1)
 *   strip_suffix  string removed once from the end of each data field that ends with it,
 *                 before missing values are matched (""; "." for the UCI Adult test labels)
 * Numbers are parsed locale-independently: an optional sign, decimal digits with an optional
 * '.', an optional exponent, or inf/infinity/nan (any case). A column is numeric when every
 * non-missing field is a number ("nan" reads as a missing value in numeric output).
 *
 * Encoders: fit per-column transforms on one table (the training data) and apply the very
 * same transforms to other tables (validation, test, prediction). Categories are ordered by
 * numeric value when every category of the column is a number, else by byte order (strcmp).
 * Since 1.0. */
#ifndef MTL_DATA_H
#define MTL_DATA_H

#include <stdint.h>

#include "mtl/status.h"
#include "mtl/tensor.h"

MTL_BEGIN_DECLS

/* ---- NumPy .npy ------------------------------------------------------------------------ */

/* Load an .npy file into a new tensor: <f4 and <f8 give float32 (float64 rounded to nearest),
 * <i4, <i8, |u1 and |i1 give int32. *out receives an owned tensor freed with mtl_tensor_free.
 * Errors: invalid argument (NULL), io (cannot open or read: names the path and the system
 * error), format (bad magic, unsupported format version, malformed header dictionary, missing
 * or unknown keys, zero or negative sizes, data shorter or longer than the shape promises),
 * unsupported (fortran_order True, big-endian or other dtypes, 0 or more than 4 dimensions),
 * range (an int64 value outside int32, naming its flat index), out of memory. Since 1.0. */
MTL_API mtl_status mtl_npy_load(mtl_tensor **out, const char *path);

/* Save t as an .npy file (format 1.0, '<f4' or '<i4', C order). The file is written
 * atomically: to a temporary file in the same directory, flushed to disk and renamed over
 * path; on failure the temporary file is removed and an existing file at path is untouched.
 * Errors: invalid argument (NULL), io (names the path and the system error), out of memory.
 * Since 1.0. */
MTL_API mtl_status mtl_npy_save(const mtl_tensor *t, const char *path);

/* ---- CSV tables ------------------------------------------------------------------------ */

/* Opaque CSV reading options. Since 1.0. */
typedef struct mtl_csv_options mtl_csv_options;
/* Opaque table of text fields read from a CSV file. Since 1.0. */
typedef struct mtl_csv mtl_csv;

/* Create options holding the defaults listed above. Owned; free with mtl_csv_options_free.
 * Errors: invalid argument, out of memory. Since 1.0. */
MTL_API mtl_status mtl_csv_options_create(mtl_csv_options **out);

/* Accepts NULL. Since 1.0. */
MTL_API void mtl_csv_options_free(mtl_csv_options *opts);

/* Set an integer key (header, skip_rows, trim). Errors: invalid argument (NULL, unknown key,
 * or a string key), range (value outside the key's range). Since 1.0. */
MTL_API mtl_status mtl_csv_options_set_int(mtl_csv_options *opts, const char *key,
                                           int64_t value);

/* Set a string key (delimiter, na_values, comment, strip_suffix); value is copied.
 * Errors: invalid argument (NULL, unknown key, or an integer key), range (a delimiter or
 * comment that is not one allowed character, or equal to each other), out of memory.
 * Since 1.0. */
MTL_API mtl_status mtl_csv_options_set_string(mtl_csv_options *opts, const char *key,
                                              const char *value);

/* Read a whole CSV file into a table. opts may be NULL for the defaults; it is not kept.
 * *out receives an owned table freed with mtl_csv_free. Errors: invalid argument, io (names
 * the path and the system error), format (a record whose field count differs from the first
 * record's, an unclosed quote, text after a closing quote, no header line when one is
 * expected, or duplicate column names: the message names the path, the line and the counts), out of
 * memory. Since 1.0. */
MTL_API mtl_status mtl_csv_read(mtl_csv **out, const char *path, const mtl_csv_options *opts);

/* Accepts NULL. Since 1.0. */
MTL_API void mtl_csv_free(mtl_csv *table);

/* Number of data records (the header excluded) and of columns; 0 for NULL (and the last
 * error is set). Since 1.0. */
MTL_API int64_t mtl_csv_num_rows(const mtl_csv *table);
MTL_API int mtl_csv_num_cols(const mtl_csv *table);

/* Name of column col (0-based): the header text, or "c<col>" without a header. Borrowed,
 * valid while the table lives; NULL (and the last error set) when col is out of range.
 * Since 1.0. */
MTL_API const char *mtl_csv_col_name(const mtl_csv *table, int col);

/* Index of the column named name. Errors: invalid argument (NULL), not found. Since 1.0. */
MTL_API mtl_status mtl_csv_col_index(int *out, const mtl_csv *table, const char *name);

/* 1 when every non-missing field of column col is a number (also when all are missing),
 * 0 when not, -1 on a NULL table or a column out of range (the last error is set). Since 1.0. */
MTL_API int mtl_csv_col_is_numeric(const mtl_csv *table, int col);

/* The text of one field after unquoting, trimming and suffix stripping; NULL when the field
 * is missing, or on a NULL table or an index out of range (then the last error is set).
 * Borrowed, valid while the table lives. Since 1.0. */
MTL_API const char *mtl_csv_field(const mtl_csv *table, int64_t row, int col);

/* Extract numeric columns into a new float32 tensor [rows, ncols] (column k from cols[k];
 * cols NULL with ncols 0 takes every column). Missing values become NaN; with standardize
 * set each column is z-scored with the mean and population standard deviation of its
 * non-missing values (a zero deviation counts as 1) and missing values become 0. Owned; free
 * with mtl_tensor_free. Errors: invalid argument (NULL, bad ncols, a column out of range),
 * shape (the table has no rows), format (a non-numeric field: names row, column and text),
 * numeric (standardizing a column holding inf or with no values), out of memory. Since 1.0. */
MTL_API mtl_status mtl_csv_numeric(mtl_tensor **out, const mtl_csv *table, const int *cols,
                                   int ncols, int standardize);

/* ---- Encoders -------------------------------------------------------------------------- */

/* Opaque encoder: a list of column transforms fitted on one table. Feature transforms
 * (numeric, onehot) make the columns of mtl_encoder_transform in the order they were added;
 * ids and label transforms each give one int32 vector, numbered in the order they were added
 * among their own kind. Since 1.0. */
typedef struct mtl_encoder mtl_encoder;

/* Create an empty encoder. Owned; free with mtl_encoder_free. Errors: invalid argument, out
 * of memory. Since 1.0. */
MTL_API mtl_status mtl_encoder_create(mtl_encoder **out);

/* Accepts NULL. Since 1.0. */
MTL_API void mtl_encoder_free(mtl_encoder *enc);

/* Add one numeric feature from column name of table, fitting its mean and population
 * standard deviation over the non-missing values. Transformed values are (x - mean) / std
 * when standardize is set (a zero deviation counts as 1), x otherwise; missing values become
 * the fitted mean (0 after standardizing). Errors: invalid argument (NULL), not found (no such
 * column), format (the column is not numeric: names row and text), numeric (the column has
 * no finite value or holds inf), out of memory. Since 1.0. */
MTL_API mtl_status mtl_encoder_add_numeric(mtl_encoder *enc, const mtl_csv *table,
                                           const char *name, int standardize);

/* Add a one-hot feature block: one 0/1 column per category seen in column name (sorted as
 * described above). Missing values and categories not seen when fitting give all zeros.
 * Errors: invalid argument, not found, format (no non-missing value), out of memory.
 * Since 1.0. */
MTL_API mtl_status mtl_encoder_add_onehot(mtl_encoder *enc, const mtl_csv *table,
                                          const char *name);

/* Add an id column (for embedding lookups): the K categories seen get ids 1..K in sorted
 * order; id 0 is reserved for missing values and categories not seen when fitting. Errors as
 * mtl_encoder_add_onehot. Since 1.0. */
MTL_API mtl_status mtl_encoder_add_ids(mtl_encoder *enc, const mtl_csv *table,
                                       const char *name);

/* Add a classification label: the K classes seen get ids 0..K-1 in sorted order; missing
 * values give -1. Errors as mtl_encoder_add_onehot. Since 1.0. */
MTL_API mtl_status mtl_encoder_add_label(mtl_encoder *enc, const mtl_csv *table,
                                         const char *name);

/* Number of feature columns (numeric columns plus one-hot widths); 0 on NULL. Since 1.0. */
MTL_API int mtl_encoder_num_features(const mtl_encoder *enc);
/* Number of label transforms and of id transforms; 0 on NULL. Since 1.0. */
MTL_API int mtl_encoder_num_labels(const mtl_encoder *enc);
MTL_API int mtl_encoder_num_id_columns(const mtl_encoder *enc);

/* Number of classes K of label label_index; 0 (and the last error set) when out of range.
 * Since 1.0. */
MTL_API int mtl_encoder_num_classes(const mtl_encoder *enc, int label_index);

/* Name of class k of label label_index; borrowed, valid while the encoder lives; NULL (and
 * the last error set) when out of range. Since 1.0. */
MTL_API const char *mtl_encoder_class_name(const mtl_encoder *enc, int label_index, int k);

/* Size of the id range of id transform ids_index: K + 1 (ids 0..K, 0 reserved); 0 (and the
 * last error set) when out of range. Since 1.0. */
MTL_API int mtl_encoder_num_ids(const mtl_encoder *enc, int ids_index);

/* Encode the feature transforms of table into a new float32 tensor [rows, features]. The
 * table must have the fitted columns (matched by name). Owned; free with mtl_tensor_free.
 * Errors: invalid argument (NULL), state (no feature transform), shape (no rows), not found
 * (a column is absent), format (a numeric column holds a non-number: names row and text),
 * out of memory. Since 1.0. */
MTL_API mtl_status mtl_encoder_transform(mtl_tensor **out, const mtl_encoder *enc,
                                         const mtl_csv *table);

/* Encode label label_index of table into a new int32 tensor [rows] (0..K-1, -1 missing).
 * Owned. Errors: invalid argument (NULL, index out of range), shape (no rows), not found (the
 * column is absent, or a class not seen when fitting: names row and text), out of memory.
 * Since 1.0. */
MTL_API mtl_status mtl_encoder_transform_label(mtl_tensor **out, const mtl_encoder *enc,
                                               const mtl_csv *table, int label_index);

/* Encode id transform ids_index of table into a new int32 tensor [rows] (1..K, 0 for
 * missing or unseen). Owned. Errors: invalid argument, shape (no rows), not found (the
 * column is absent), out of memory. Since 1.0. */
MTL_API mtl_status mtl_encoder_transform_ids(mtl_tensor **out, const mtl_encoder *enc,
                                             const mtl_csv *table, int ids_index);

/* Save the fitted encoder (a small versioned binary file with a CRC-32), atomically like
 * mtl_npy_save. Errors: invalid argument, io, out of memory. Since 1.0. */
MTL_API mtl_status mtl_encoder_save(const mtl_encoder *enc, const char *path);

/* Load an encoder saved by mtl_encoder_save. Owned; free with mtl_encoder_free. Errors:
 * invalid argument, io, format (bad magic, checksum mismatch, truncated or malformed
 * content), unsupported (a newer format version), out of memory. Since 1.0. */
MTL_API mtl_status mtl_encoder_load(mtl_encoder **out, const char *path);

MTL_END_DECLS

#endif
