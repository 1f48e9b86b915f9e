/* CSV tables and encoders: RFC 4180 quoting, line ends, missing values, options, numeric
 * parsing, malformed files, encoders fitted on one table and applied to another, encoder
 * files, and the UCI Adult data set when it is available.
 *
 * The Adult files are looked up in $MTL_TEST_DATA_DIR/adult, else in the MTL_TEST_DATA_DIR
 * macro's directory when the build defines it, else in <source root>/../shared/data/adult
 * (derived from this file's path, which is relative to the build directory tests run in). */
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mtl/mtl.h>

#include "test_main.h"
#include "test_oom.h"

#define ck_msg_has(sub)                                                                     \
    ck_assert_msg(strstr(mtl_last_error(), (sub)) != NULL, "message '%s' lacks '%s'",        \
                  mtl_last_error(), (sub))

static char tmpdir[256];

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/mtl_csv_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

static const char *tpath(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

static const char *write_text(const char *name, const char *text)
{
    const char *p = tpath(name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* Read text (written to a temporary file) with opts (NULL: defaults). */
static mtl_csv *read_text(const char *text, const mtl_csv_options *opts)
{
    mtl_csv *t = NULL;
    ck_assert_ok(mtl_csv_read(&t, write_text("t.csv", text), opts));
    return t;
}

static mtl_status read_status(const char *text, const mtl_csv_options *opts)
{
    mtl_csv *t = (mtl_csv *)0x1;
    mtl_status st = mtl_csv_read(&t, write_text("t.csv", text), opts);
    if (st != MTL_OK)
        ck_assert_ptr_null(t);
    mtl_csv_free(st == MTL_OK ? t : NULL);
    return st;
}

static mtl_csv_options *opts_new(void)
{
    mtl_csv_options *o = NULL;
    ck_assert_ok(mtl_csv_options_create(&o));
    return o;
}

/* ---- parsing ----------------------------------------------------------------------------- */

START_TEST(header_fields_and_numeric_columns)
{
    make_tmpdir();
    mtl_csv *t = read_text("name,age,score\nann,31,1.5\nbob,?,-2e1\ncy,40,\n", NULL);
    ck_assert_int_eq(mtl_csv_num_rows(t), 3);
    ck_assert_int_eq(mtl_csv_num_cols(t), 3);
    ck_assert_str_eq(mtl_csv_col_name(t, 1), "age");
    int j = -5;
    ck_assert_ok(mtl_csv_col_index(&j, t, "score"));
    ck_assert_int_eq(j, 2);
    ck_assert_status(mtl_csv_col_index(&j, t, "height"), MTL_ERR_NOT_FOUND);
    ck_msg_has("no column named 'height'");
    ck_assert_int_eq(mtl_csv_col_is_numeric(t, 0), 0);
    ck_assert_int_eq(mtl_csv_col_is_numeric(t, 1), 1);
    ck_assert_int_eq(mtl_csv_col_is_numeric(t, 2), 1);
    ck_assert_int_eq(mtl_csv_col_is_numeric(t, 3), -1);
    ck_assert_str_eq(mtl_csv_field(t, 1, 0), "bob");
    ck_assert_ptr_null(mtl_csv_field(t, 1, 1)); /* "?" is missing */
    ck_assert_ptr_null(mtl_csv_field(t, 2, 2)); /* so is the empty field */
    ck_assert_ptr_null(mtl_csv_field(t, 3, 0));
    ck_msg_has("out of range");
    ck_assert_ptr_null(mtl_csv_col_name(t, 3));

    mtl_tensor *x = NULL;
    int cols[2] = {2, 1};
    ck_assert_ok(mtl_csv_numeric(&x, t, cols, 2, 0));
    ck_assert_int_eq(mtl_tensor_dim(x, 0), 3);
    ck_assert_int_eq(mtl_tensor_dim(x, 1), 2);
    const float *d = mtl_tensor_data(x);
    ck_assert_float_eq(d[0], 1.5f);
    ck_assert_float_eq(d[1], 31.0f);
    ck_assert_float_eq(d[2], -20.0f);
    ck_assert(isnan(d[3]));
    ck_assert(isnan(d[4]));
    ck_assert_float_eq(d[5], 40.0f);
    mtl_tensor_free(x);
    int bad[1] = {0};
    ck_assert_status(mtl_csv_numeric(&x, t, bad, 1, 0), MTL_ERR_FORMAT);
    ck_msg_has("column 'name'");
    ck_msg_has("line 2 has \"ann\"");
    ck_assert_ptr_null(x);
    bad[0] = 7;
    ck_assert_status(mtl_csv_numeric(&x, t, bad, 1, 0), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("cols[0] is 7");
    ck_assert_status(mtl_csv_numeric(&x, t, NULL, 3, 0), MTL_ERR_INVALID_ARGUMENT);
    mtl_csv_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(rfc4180_quoting_and_line_ends)
{
    make_tmpdir();
    /* quoted delimiters, doubled quotes, a newline inside quotes, CRLF, a BOM, spaces around
     * a quoted field, and a last line without a line end */
    mtl_csv *t = read_text("\xEF\xBB\xBF"
                           "a,b,c\r\n"
                           "\"x,y\",\"say \"\"hi\"\"\",\"two\r\nlines\"\r\n"
                           "  \"q\"  ,plain text , 3\r\n"
                           "\r\n"
                           "\"\",,\"?\"",
                           NULL);
    ck_assert_int_eq(mtl_csv_num_rows(t), 3);
    ck_assert_str_eq(mtl_csv_col_name(t, 0), "a");
    ck_assert_str_eq(mtl_csv_field(t, 0, 0), "x,y");
    ck_assert_str_eq(mtl_csv_field(t, 0, 1), "say \"hi\"");
    ck_assert_str_eq(mtl_csv_field(t, 0, 2), "two\r\nlines");
    ck_assert_str_eq(mtl_csv_field(t, 1, 0), "q");
    ck_assert_str_eq(mtl_csv_field(t, 1, 1), "plain text");
    ck_assert_str_eq(mtl_csv_field(t, 1, 2), "3");
    /* missing-value texts match after unquoting */
    ck_assert_ptr_null(mtl_csv_field(t, 2, 0));
    ck_assert_ptr_null(mtl_csv_field(t, 2, 1));
    ck_assert_ptr_null(mtl_csv_field(t, 2, 2));
    mtl_csv_free(t);
    /* the trailing empty line of the file and a lone column */
    t = read_text("v\n1\n\n2\n\n", NULL);
    ck_assert_int_eq(mtl_csv_num_rows(t), 2);
    ck_assert_str_eq(mtl_csv_field(t, 1, 0), "2");
    mtl_csv_free(t);
    /* a header without rows is an empty table */
    t = read_text("a,b\n", NULL);
    ck_assert_int_eq(mtl_csv_num_rows(t), 0);
    ck_assert_int_eq(mtl_csv_num_cols(t), 2);
    mtl_tensor *x = (mtl_tensor *)0x1;
    ck_assert_status(mtl_csv_numeric(&x, t, NULL, 0, 0), MTL_ERR_SHAPE);
    ck_msg_has("no rows");
    mtl_csv_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(malformed_files_name_the_line)
{
    make_tmpdir();
    ck_assert_int_eq(read_status("a,b,c\n1,2,3\n4,5\n", NULL), MTL_ERR_FORMAT);
    ck_msg_has("line 3 has 2 fields, expected 3 (as in the header)");
    ck_msg_has("t.csv");
    ck_assert_int_eq(read_status("a,b\n1,2\n\"multi\nline\",2,3\n", NULL), MTL_ERR_FORMAT);
    ck_msg_has("line 3 has 3 fields, expected 2");
    ck_assert_int_eq(read_status("a,b\n1,\"open\n2,3\n", NULL), MTL_ERR_FORMAT);
    ck_msg_has("line 2: a quoted field is never closed");
    ck_assert_int_eq(read_status("a,b\n1,\"x\"y\n", NULL), MTL_ERR_FORMAT);
    ck_msg_has("line 2: unexpected character 'y' after a closing quote");
    ck_assert_int_eq(read_status("", NULL), MTL_ERR_FORMAT);
    ck_msg_has("no header line");
    ck_assert_int_eq(read_status("a,b,a\n1,2,3\n", NULL), MTL_ERR_FORMAT);
    ck_msg_has("columns 0 and 2 are both named 'a'");
    mtl_csv *t = NULL;
    ck_assert_status(mtl_csv_read(&t, tpath("nope.csv"), NULL), MTL_ERR_IO);
    ck_msg_has("nope.csv");
    ck_msg_has("No such file or directory");
    ck_assert_status(mtl_csv_read(NULL, tpath("t.csv"), NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_csv_read(&t, NULL, NULL), MTL_ERR_INVALID_ARGUMENT);
    remove_tmpdir();
}
END_TEST

START_TEST(options_change_parsing)
{
    make_tmpdir();
    mtl_csv_options *o = opts_new();
    /* no header, ';' delimiter, comments, skipped preamble, no trimming, a suffix, own NAs */
    ck_assert_ok(mtl_csv_options_set_int(o, "header", 0));
    ck_assert_ok(mtl_csv_options_set_string(o, "delimiter", ";"));
    ck_assert_ok(mtl_csv_options_set_string(o, "comment", "#"));
    ck_assert_ok(mtl_csv_options_set_int(o, "skip_rows", 2));
    ck_assert_ok(mtl_csv_options_set_int(o, "trim", 0));
    ck_assert_ok(mtl_csv_options_set_string(o, "strip_suffix", "."));
    ck_assert_ok(mtl_csv_options_set_string(o, "na_values", "-,none"));
    mtl_csv *t = read_text("preamble line, not a record\n"
                           "another;one\n"
                           "# a comment\n"
                           "1,5; x ;yes.\n"
                           "-;none.;\n",
                           o);
    ck_assert_int_eq(mtl_csv_num_rows(t), 2);
    ck_assert_int_eq(mtl_csv_num_cols(t), 3);
    ck_assert_str_eq(mtl_csv_col_name(t, 0), "c0");
    ck_assert_str_eq(mtl_csv_col_name(t, 2), "c2");
    ck_assert_str_eq(mtl_csv_field(t, 0, 0), "1,5");
    ck_assert_str_eq(mtl_csv_field(t, 0, 1), " x ");
    ck_assert_str_eq(mtl_csv_field(t, 0, 2), "yes");
    ck_assert_ptr_null(mtl_csv_field(t, 1, 0));
    ck_assert_ptr_null(mtl_csv_field(t, 1, 1)); /* "none." -> "none" -> missing */
    ck_assert_str_eq(mtl_csv_field(t, 1, 2), ""); /* "" is not a missing value here */
    ck_assert_int_eq(mtl_csv_col_is_numeric(t, 0), 0); /* "1,5" is no number in any locale */
    mtl_csv_free(t);
    /* an empty na_values means nothing is missing; tab delimiter keeps tabs inside fields */
    ck_assert_ok(mtl_csv_options_set_string(o, "na_values", ""));
    ck_assert_ok(mtl_csv_options_set_string(o, "delimiter", "\t"));
    ck_assert_ok(mtl_csv_options_set_int(o, "skip_rows", 0));
    ck_assert_ok(mtl_csv_options_set_int(o, "trim", 1));
    t = read_text("?\t a \t\n", o);
    ck_assert_str_eq(mtl_csv_field(t, 0, 0), "?");
    ck_assert_str_eq(mtl_csv_field(t, 0, 1), "a");
    ck_assert_str_eq(mtl_csv_field(t, 0, 2), "");
    mtl_csv_free(t);
    /* bad keys and values */
    ck_assert_status(mtl_csv_options_set_int(o, "headers", 1), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("unknown key 'headers'");
    ck_assert_status(mtl_csv_options_set_int(o, "delimiter", 1), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("string option");
    ck_assert_status(mtl_csv_options_set_string(o, "header", "1"), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("integer option");
    ck_assert_status(mtl_csv_options_set_int(o, "header", 2), MTL_ERR_RANGE);
    ck_assert_status(mtl_csv_options_set_int(o, "skip_rows", -1), MTL_ERR_RANGE);
    ck_assert_status(mtl_csv_options_set_string(o, "delimiter", ",,"), MTL_ERR_RANGE);
    ck_assert_status(mtl_csv_options_set_string(o, "delimiter", "\""), MTL_ERR_RANGE);
    ck_assert_status(mtl_csv_options_set_string(o, "delimiter", "#"), MTL_ERR_RANGE);
    ck_msg_has("equals the comment character");
    ck_assert_status(mtl_csv_options_set_string(o, "comment", "ab"), MTL_ERR_RANGE);
    ck_assert_status(mtl_csv_options_set_string(o, "comment", "\t"), MTL_ERR_RANGE);
    ck_assert_ok(mtl_csv_options_set_string(o, "comment", ""));
    ck_assert_status(mtl_csv_options_set_string(o, "na_values", NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_csv_options_set_int(NULL, "header", 1), MTL_ERR_INVALID_ARGUMENT);
    mtl_csv_options_free(o);
    mtl_csv_options_free(NULL);
    remove_tmpdir();
}
END_TEST

START_TEST(number_syntax_is_strict_and_locale_free)
{
    make_tmpdir();
    /* a locale with a decimal comma must not change parsing (skipped when none exists) */
    const char *loc = setlocale(LC_NUMERIC, "de_DE.UTF-8");
    if (!loc)
        loc = setlocale(LC_NUMERIC, "de_DE");
    if (!loc)
        printf("test_csv: no de_DE locale installed; checking under the C locale only\n");
    mtl_csv *t = read_text("a,b,c,d,e,f,g,h\n"
                           "1e3,-.5,+2.,nan,-inf,0x10,1e,12abc\n"
                           "7,8,9,10,11,12,13,14\n",
                           NULL);
    setlocale(LC_NUMERIC, "C");
    int want[8] = {1, 1, 1, 1, 1, 0, 0, 0};
    for (int j = 0; j < 8; j++)
        ck_assert_msg(mtl_csv_col_is_numeric(t, j) == want[j], "column %d", j);
    mtl_tensor *x = NULL;
    int cols[5] = {0, 1, 2, 3, 4};
    ck_assert_ok(mtl_csv_numeric(&x, t, cols, 5, 0));
    const float *d = mtl_tensor_data(x);
    ck_assert_float_eq(d[0], 1000.0f);
    ck_assert_float_eq(d[1], -0.5f);
    ck_assert_float_eq(d[2], 2.0f);
    ck_assert(isnan(d[3]));
    ck_assert(isinf(d[4]) && d[4] < 0);
    mtl_tensor_free(x);
    /* standardizing a column holding inf is a numeric error */
    ck_assert_status(mtl_csv_numeric(&x, t, cols + 4, 1, 1), MTL_ERR_NUMERIC);
    ck_msg_has("infinite");
    mtl_csv_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(standardize_uses_population_std)
{
    make_tmpdir();
    /* x = 1, 2, ?, 5: mean 8/3, population std sqrt(((5/3)^2 + (2/3)^2 + (7/3)^2) / 3) */
    mtl_csv *t = read_text("x,k\n1,4\n2,4\n?,4\n5,4\n", NULL);
    mtl_tensor *z = NULL;
    ck_assert_ok(mtl_csv_numeric(&z, t, NULL, 0, 1));
    const float *d = mtl_tensor_data(z);
    double m = 8.0 / 3.0, s = sqrt((25.0 / 9 + 4.0 / 9 + 49.0 / 9) / 3.0);
    ck_assert_float_eq_tol(d[0], (float)((1 - m) / s), 1e-6f);
    ck_assert_float_eq_tol(d[2], (float)((2 - m) / s), 1e-6f);
    ck_assert_float_eq(d[4], 0.0f); /* missing -> 0 after standardizing */
    ck_assert_float_eq_tol(d[6], (float)((5 - m) / s), 1e-6f);
    ck_assert_float_eq(d[1], 0.0f); /* constant column: std counts as 1 */
    ck_assert_float_eq(d[7], 0.0f);
    mtl_tensor_free(z);
    mtl_csv_free(t);
    remove_tmpdir();
}
END_TEST

/* ---- encoders ---------------------------------------------------------------------------- */

static const char *train_csv = "age,color,size,label\n"
                               "30,red,10,yes\n"
                               "40,blue,9,no\n"
                               "?,red,?,yes\n"
                               "50,green,10,maybe\n";
static const char *test_csv = "label,color,size,age\n"
                              "no,purple,9,20\n"
                              "?,blue,10,?\n"
                              "yes,?,2,40\n";

static mtl_encoder *fit_encoder(mtl_csv *train)
{
    mtl_encoder *e = NULL;
    ck_assert_ok(mtl_encoder_create(&e));
    ck_assert_ok(mtl_encoder_add_numeric(e, train, "age", 1));
    ck_assert_ok(mtl_encoder_add_onehot(e, train, "color"));
    ck_assert_ok(mtl_encoder_add_numeric(e, train, "age", 0));
    ck_assert_ok(mtl_encoder_add_ids(e, train, "size"));
    ck_assert_ok(mtl_encoder_add_label(e, train, "label"));
    ck_assert_ok(mtl_encoder_add_ids(e, train, "color"));
    return e;
}

static void check_encoded(const mtl_encoder *e, mtl_csv *test)
{
    /* features: age z-score | color one-hot (blue, green, red) | raw age */
    ck_assert_int_eq(mtl_encoder_num_features(e), 5);
    mtl_tensor *x = NULL, *ids = NULL, *y = NULL;
    ck_assert_ok(mtl_encoder_transform(&x, e, test));
    ck_assert_int_eq(mtl_tensor_dim(x, 0), 3);
    ck_assert_int_eq(mtl_tensor_dim(x, 1), 5);
    const float *d = mtl_tensor_data(x);
    double s = sqrt(200.0 / 3.0); /* ages 30, 40, 50 */
    const float want[15] = {
        (float)(-20 / s), 0, 0, 0, 20, /* purple: unseen -> no one-hot bit */
        0, 1, 0, 0, 40,                /* age missing -> mean */
        0, 0, 0, 0, 40,                /* color missing */
    };
    for (int i = 0; i < 15; i++)
        ck_assert_msg(fabsf(d[i] - want[i]) < 1e-6f, "x[%d] = %g, want %g", i, d[i], want[i]);
    /* ids of size: sorted numerically (9 before 10): 9 -> 1, 10 -> 2, unseen/missing -> 0 */
    ck_assert_int_eq(mtl_encoder_num_id_columns(e), 2);
    ck_assert_int_eq(mtl_encoder_num_ids(e, 0), 3);
    ck_assert_ok(mtl_encoder_transform_ids(&ids, e, test, 0));
    const int32_t *id = mtl_tensor_data(ids);
    ck_assert_int_eq(id[0], 1);
    ck_assert_int_eq(id[1], 2);
    ck_assert_int_eq(id[2], 0);
    mtl_tensor_free(ids);
    ck_assert_ok(mtl_encoder_transform_ids(&ids, e, test, 1));
    ck_assert_int_eq(((int32_t *)mtl_tensor_data(ids))[0], 0); /* purple */
    ck_assert_int_eq(((int32_t *)mtl_tensor_data(ids))[1], 1); /* blue */
    mtl_tensor_free(ids);
    /* label classes in byte order: maybe, no, yes */
    ck_assert_int_eq(mtl_encoder_num_labels(e), 1);
    ck_assert_int_eq(mtl_encoder_num_classes(e, 0), 3);
    ck_assert_str_eq(mtl_encoder_class_name(e, 0, 0), "maybe");
    ck_assert_str_eq(mtl_encoder_class_name(e, 0, 2), "yes");
    ck_assert_ok(mtl_encoder_transform_label(&y, e, test, 0));
    const int32_t *yl = mtl_tensor_data(y);
    ck_assert_int_eq(yl[0], 1);
    ck_assert_int_eq(yl[1], -1);
    ck_assert_int_eq(yl[2], 2);
    mtl_tensor_free(x);
    mtl_tensor_free(y);
}

START_TEST(encoder_fit_and_transform)
{
    make_tmpdir();
    mtl_csv *train = read_text(train_csv, NULL);
    mtl_csv *test = NULL;
    ck_assert_ok(mtl_csv_read(&test, write_text("test.csv", test_csv), NULL));
    mtl_encoder *e = fit_encoder(train);
    check_encoded(e, test);
    /* errors */
    mtl_tensor *x = NULL;
    ck_assert_status(mtl_encoder_add_numeric(e, train, "color", 1), MTL_ERR_FORMAT);
    ck_msg_has("column 'color'");
    ck_msg_has("line 2 has \"red\"");
    ck_assert_status(mtl_encoder_add_onehot(e, train, "weight"), MTL_ERR_NOT_FOUND);
    ck_msg_has("no column named 'weight'");
    ck_assert_int_eq(mtl_encoder_num_features(e), 5); /* failed adds change nothing */
    ck_assert_status(mtl_encoder_transform_label(&x, e, test, 1), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("label index 1 out of range");
    ck_assert_int_eq(mtl_encoder_num_classes(e, 4), 0);
    ck_assert_ptr_null(mtl_encoder_class_name(e, 0, 3));
    ck_assert_int_eq(mtl_encoder_num_ids(e, 2), 0);
    mtl_csv *odd = read_text("label,color,size,age\nperhaps,red,9,1\n", NULL);
    ck_assert_status(mtl_encoder_transform_label(&x, e, odd, 0), MTL_ERR_NOT_FOUND);
    ck_msg_has("line 2");
    ck_msg_has("class \"perhaps\", not seen when fitting");
    mtl_csv_free(odd);
    odd = read_text("label,color\nyes,red\n", NULL);
    ck_assert_status(mtl_encoder_transform(&x, e, odd), MTL_ERR_NOT_FOUND);
    ck_msg_has("no column named 'age'");
    mtl_csv_free(odd);
    odd = read_text("label,color,size,age\nyes,red,9,old\n", NULL);
    ck_assert_status(mtl_encoder_transform(&x, e, odd), MTL_ERR_FORMAT);
    ck_msg_has("line 2 has \"old\"");
    mtl_csv_free(odd);
    odd = read_text("a\n?\n?\n", NULL);
    ck_assert_status(mtl_encoder_add_label(e, odd, "a"), MTL_ERR_FORMAT);
    ck_msg_has("no non-missing value");
    ck_assert_status(mtl_encoder_add_numeric(e, odd, "a", 1), MTL_ERR_NUMERIC);
    mtl_csv_free(odd);
    mtl_encoder *empty = NULL;
    ck_assert_ok(mtl_encoder_create(&empty));
    ck_assert_status(mtl_encoder_transform(&x, empty, test), MTL_ERR_STATE);
    mtl_encoder_free(empty);
    mtl_encoder_free(NULL);
    mtl_encoder_free(e);
    mtl_csv_free(train);
    mtl_csv_free(test);
    remove_tmpdir();
}
END_TEST

static size_t file_size(const char *p)
{
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    return (size_t)st.st_size;
}

static void rewrite_byte(const char *p, size_t off, unsigned char v, size_t truncate_to)
{
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (off < n)
        buf[off] = v;
    if (truncate_to < n)
        n = truncate_to;
    f = fopen(p, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
}

START_TEST(encoder_save_load_round_trip)
{
    make_tmpdir();
    mtl_csv *train = read_text(train_csv, NULL);
    mtl_csv *test = NULL;
    ck_assert_ok(mtl_csv_read(&test, write_text("test.csv", test_csv), NULL));
    mtl_encoder *e = fit_encoder(train), *l = NULL;
    char p[512];
    snprintf(p, sizeof p, "%s", tpath("enc.bin"));
    ck_assert_ok(mtl_encoder_save(e, p));
    ck_assert_ok(mtl_encoder_load(&l, p));
    check_encoded(l, test); /* the loaded encoder encodes exactly like the fitted one */
    mtl_encoder_free(l);
    size_t n = file_size(p);
    /* corruption anywhere is caught by the checksum */
    for (size_t off = 12; off < n; off += 7) {
        ck_assert_ok(mtl_encoder_save(e, p));
        rewrite_byte(p, off, 0xA5, SIZE_MAX);
        l = (mtl_encoder *)0x1;
        mtl_status st = mtl_encoder_load(&l, p);
        ck_assert_msg(st == MTL_ERR_FORMAT, "offset %zu: %d %s", off, (int)st, mtl_last_error());
        ck_assert_ptr_null(l);
    }
    ck_msg_has("checksum mismatch");
    /* truncation at every length */
    for (size_t k = 0; k < n; k++) {
        ck_assert_ok(mtl_encoder_save(e, p));
        rewrite_byte(p, SIZE_MAX, 0, k);
        ck_assert_status(mtl_encoder_load(&l, p), MTL_ERR_FORMAT);
    }
    ck_assert_ok(mtl_encoder_save(e, p));
    rewrite_byte(p, 1, 'X', SIZE_MAX);
    ck_assert_status(mtl_encoder_load(&l, p), MTL_ERR_FORMAT);
    ck_msg_has("bad magic");
    ck_assert_ok(mtl_encoder_save(e, p));
    rewrite_byte(p, 8, 2, SIZE_MAX);
    ck_assert_status(mtl_encoder_load(&l, p), MTL_ERR_UNSUPPORTED);
    ck_msg_has("version 2");
    ck_assert_status(mtl_encoder_load(&l, tpath("none.bin")), MTL_ERR_IO);
    ck_assert_status(mtl_encoder_save(e, tpath("no/such/dir")), MTL_ERR_IO);
    mtl_encoder_free(e);
    mtl_csv_free(train);
    mtl_csv_free(test);
    remove_tmpdir();
}
END_TEST

/* ---- allocation failures ----------------------------------------------------------------- */

static char oom_path[512], oom_path2[512];

static mtl_status read_fn(void *ctx)
{
    (void)ctx;
    mtl_csv_options *o = NULL;
    mtl_status st = mtl_csv_options_create(&o);
    if (st != MTL_OK)
        return st;
    st = mtl_csv_options_set_string(o, "na_values", "?,x");
    mtl_csv *t = NULL;
    if (st == MTL_OK)
        st = mtl_csv_read(&t, oom_path, o);
    mtl_csv_free(t);
    mtl_csv_options_free(o);
    return st;
}

static mtl_status encoder_fn(void *ctx)
{
    mtl_csv *train = ctx;
    mtl_encoder *e = NULL, *l = NULL;
    mtl_tensor *x = NULL, *y = NULL;
    mtl_status st = mtl_encoder_create(&e);
    if (st == MTL_OK)
        st = mtl_encoder_add_numeric(e, train, "age", 1);
    if (st == MTL_OK)
        st = mtl_encoder_add_onehot(e, train, "color");
    if (st == MTL_OK)
        st = mtl_encoder_add_ids(e, train, "size");
    if (st == MTL_OK)
        st = mtl_encoder_add_label(e, train, "label");
    if (st == MTL_OK)
        st = mtl_encoder_save(e, oom_path2);
    if (st == MTL_OK)
        st = mtl_encoder_load(&l, oom_path2);
    if (st == MTL_OK)
        st = mtl_encoder_transform(&x, l, train);
    if (st == MTL_OK)
        st = mtl_encoder_transform_label(&y, l, train, 0);
    mtl_tensor_free(x);
    mtl_tensor_free(y);
    mtl_encoder_free(e);
    mtl_encoder_free(l);
    return st;
}

START_TEST(allocation_failures)
{
    make_tmpdir();
    snprintf(oom_path, sizeof oom_path, "%s", write_text("oom.csv", train_csv));
    ck_assert_int_ge(mtl_test_oom_sweep(read_fn, NULL), 5);
    mtl_csv *train = read_text(train_csv, NULL);
    snprintf(oom_path2, sizeof oom_path2, "%s", tpath("oom.enc"));
    ck_assert_int_ge(mtl_test_oom_sweep(encoder_fn, train), 10);
    mtl_csv_free(train);
    remove_tmpdir();
}
END_TEST

/* ---- UCI Adult --------------------------------------------------------------------------- */

static int adult_path(char *out, size_t cap, const char *file)
{
    char dir[512];
    const char *env = getenv("MTL_TEST_DATA_DIR");
    if (env && *env) {
        snprintf(dir, sizeof dir, "%s", env);
    } else {
#ifdef MTL_TEST_DATA_DIR
        snprintf(dir, sizeof dir, "%s", MTL_TEST_DATA_DIR);
#else
        const char *src = __FILE__;
        const char *slash = strrchr(src, '/');
        int n = slash ? (int)(slash - src) : 1;
        snprintf(dir, sizeof dir, "%.*s/../../shared/data", n, slash ? src : ".");
#endif
    }
    snprintf(out, cap, "%s/adult/%s", dir, file);
    if (access(out, R_OK) != 0) {
        printf("test_csv: %s not found (set MTL_TEST_DATA_DIR); skipping the Adult checks\n",
               out);
        return 0;
    }
    return 1;
}

START_TEST(adult_loads_and_encodes)
{
    char train_p[1024], test_p[1024];
    if (!adult_path(train_p, sizeof train_p, "adult.data") ||
        !adult_path(test_p, sizeof test_p, "adult.test"))
        return;
    mtl_csv_options *o = opts_new();
    ck_assert_ok(mtl_csv_options_set_int(o, "header", 0));
    ck_assert_ok(mtl_csv_options_set_string(o, "comment", "|"));
    ck_assert_ok(mtl_csv_options_set_string(o, "strip_suffix", "."));
    mtl_csv *train = NULL, *test = NULL;
    ck_assert_ok(mtl_csv_read(&train, train_p, o));
    ck_assert_ok(mtl_csv_read(&test, test_p, o));
    ck_assert_int_eq(mtl_csv_num_rows(train), 32561);
    ck_assert_int_eq(mtl_csv_num_cols(train), 15);
    ck_assert_int_eq(mtl_csv_num_rows(test), 16281);
    ck_assert_int_eq(mtl_csv_num_cols(test), 15);
    /* age numeric, workclass categorical with "?" missing values */
    ck_assert_int_eq(mtl_csv_col_is_numeric(train, 0), 1);
    ck_assert_int_eq(mtl_csv_col_is_numeric(train, 1), 0);
    ck_assert_str_eq(mtl_csv_field(train, 0, 1), "State-gov");
    ck_assert_str_eq(mtl_csv_field(test, 0, 14), "<=50K");
    int64_t missing = 0;
    for (int64_t r = 0; r < mtl_csv_num_rows(train); r++)
        missing += mtl_csv_field(train, r, 1) == NULL;
    ck_assert_int_eq(missing, 1836); /* workclass == "?" in adult.data */

    mtl_encoder *e = NULL;
    ck_assert_ok(mtl_encoder_create(&e));
    const char *num[6] = {"c0", "c2", "c4", "c10", "c11", "c12"};
    const char *cat[8] = {"c1", "c3", "c5", "c6", "c7", "c8", "c9", "c13"};
    for (int i = 0; i < 6; i++)
        ck_assert_ok(mtl_encoder_add_numeric(e, train, num[i], 1));
    for (int i = 0; i < 8; i++)
        ck_assert_ok(mtl_encoder_add_onehot(e, train, cat[i]));
    ck_assert_ok(mtl_encoder_add_label(e, train, "c14"));
    /* 6 numeric + 8 + 16 + 7 + 14 + 6 + 5 + 2 + 41 categories */
    ck_assert_int_eq(mtl_encoder_num_features(e), 105);
    ck_assert_int_eq(mtl_encoder_num_classes(e, 0), 2);
    ck_assert_str_eq(mtl_encoder_class_name(e, 0, 0), "<=50K");
    ck_assert_str_eq(mtl_encoder_class_name(e, 0, 1), ">50K");
    mtl_tensor *x = NULL, *ytr = NULL, *yte = NULL;
    ck_assert_ok(mtl_encoder_transform(&x, e, test));
    ck_assert_int_eq(mtl_tensor_dim(x, 0), 16281);
    ck_assert_int_eq(mtl_tensor_dim(x, 1), 105);
    ck_assert_ok(mtl_encoder_transform_label(&ytr, e, train, 0));
    ck_assert_ok(mtl_encoder_transform_label(&yte, e, test, 0)); /* "." stripped: no unknowns */
    int64_t pos_tr = 0, pos_te = 0;
    for (int64_t r = 0; r < 32561; r++)
        pos_tr += ((int32_t *)mtl_tensor_data(ytr))[r];
    for (int64_t r = 0; r < 16281; r++)
        pos_te += ((int32_t *)mtl_tensor_data(yte))[r];
    ck_assert_int_eq(pos_tr, 7841); /* the documented class balance */
    ck_assert_int_eq(pos_te, 3846);
    mtl_tensor_free(x);
    mtl_tensor_free(ytr);
    mtl_tensor_free(yte);
    mtl_encoder_free(e);
    mtl_csv_free(train);
    mtl_csv_free(test);
    mtl_csv_options_free(o);
}
END_TEST

static Suite *csv_suite(void)
{
    Suite *s = suite_create("csv");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, header_fields_and_numeric_columns);
    tcase_add_test(tc, rfc4180_quoting_and_line_ends);
    tcase_add_test(tc, malformed_files_name_the_line);
    tcase_add_test(tc, options_change_parsing);
    tcase_add_test(tc, number_syntax_is_strict_and_locale_free);
    tcase_add_test(tc, standardize_uses_population_std);
    tcase_add_test(tc, encoder_fit_and_transform);
    tcase_add_test(tc, encoder_save_load_round_trip);
    tcase_add_test(tc, allocation_failures);
    tcase_add_test(tc, adult_loads_and_encodes);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(csv_suite)
