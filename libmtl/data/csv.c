/* CSV tables (RFC 4180 with the options documented in mtl/data.h). The file is read whole;
 * fields are unquoted into one text buffer and addressed by offsets. */
#define _GNU_SOURCE /* strtod_l: number conversion that ignores the process locale */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor_internal.h"
#include "data/csv.h"
#include "data/fileio.h"

#define READ "mtl_csv_read"

struct mtl_csv_options {
    int header;
    char delimiter;
    char comment; /* '\0': none */
    int trim;
    int64_t skip_rows;
    char *na_values;
    char *strip_suffix;
};

/* ---- options ----------------------------------------------------------------------------- */

MTL_API mtl_status mtl_csv_options_create(mtl_csv_options **out)
{
    MTLI_CHECK_NULL(out, "mtl_csv_options_create");
    *out = NULL;
    mtl_csv_options *o = mtli_calloc(1, sizeof *o);
    if (!o)
        return mtli_oom("csv options", sizeof *o);
    o->header = 1;
    o->delimiter = ',';
    o->trim = 1;
    o->na_values = mtli_strdup("?,NA,");
    o->strip_suffix = mtli_strdup("");
    if (!o->na_values || !o->strip_suffix) {
        mtl_csv_options_free(o);
        return mtli_oom("csv options", 8);
    }
    *out = o;
    return MTL_OK;
}

MTL_API void mtl_csv_options_free(mtl_csv_options *opts)
{
    if (!opts)
        return;
    mtli_free(opts->na_values);
    mtli_free(opts->strip_suffix);
    mtli_free(opts);
}

MTL_API mtl_status mtl_csv_options_set_int(mtl_csv_options *opts, const char *key,
                                           int64_t value)
{
    static const char *fn = "mtl_csv_options_set_int";
    MTLI_CHECK_NULL(opts, fn);
    MTLI_CHECK_NULL(key, fn);
    if (strcmp(key, "header") == 0 || strcmp(key, "trim") == 0) {
        if (value != 0 && value != 1)
            return mtli_error(MTL_ERR_RANGE, "%s: '%s' is %lld, expected 0 or 1", fn, key,
                              (long long)value);
        if (key[0] == 'h')
            opts->header = (int)value;
        else
            opts->trim = (int)value;
        return MTL_OK;
    }
    if (strcmp(key, "skip_rows") == 0) {
        if (value < 0)
            return mtli_error(MTL_ERR_RANGE, "%s: 'skip_rows' is %lld, expected >= 0", fn,
                              (long long)value);
        opts->skip_rows = value;
        return MTL_OK;
    }
    if (strcmp(key, "delimiter") == 0 || strcmp(key, "na_values") == 0 ||
        strcmp(key, "comment") == 0 || strcmp(key, "strip_suffix") == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: '%s' is a string option (use mtl_csv_options_set_string)", fn,
                          key);
    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                      "%s: unknown key '%s' (integer keys: header, skip_rows, trim)", fn, key);
}

static int bad_char(char c) { return c == '"' || c == '\n' || c == '\r' || c == '\0'; }

MTL_API mtl_status mtl_csv_options_set_string(mtl_csv_options *opts, const char *key,
                                              const char *value)
{
    static const char *fn = "mtl_csv_options_set_string";
    MTLI_CHECK_NULL(opts, fn);
    MTLI_CHECK_NULL(key, fn);
    MTLI_CHECK_NULL(value, fn);
    if (strcmp(key, "delimiter") == 0) {
        if (strlen(value) != 1 || bad_char(value[0]))
            return mtli_error(MTL_ERR_RANGE,
                              "%s: 'delimiter' is \"%s\", expected one character other than "
                              "'\"', CR and LF",
                              fn, value);
        if (value[0] == opts->comment)
            return mtli_error(MTL_ERR_RANGE, "%s: 'delimiter' '%c' equals the comment character",
                              fn, value[0]);
        opts->delimiter = value[0];
        return MTL_OK;
    }
    if (strcmp(key, "comment") == 0) {
        size_t n = strlen(value);
        if (n > 1 || (n == 1 && bad_char(value[0])))
            return mtli_error(MTL_ERR_RANGE,
                              "%s: 'comment' is \"%s\", expected \"\" or one character other "
                              "than '\"', CR and LF",
                              fn, value);
        if (n == 1 && value[0] == opts->delimiter)
            return mtli_error(MTL_ERR_RANGE, "%s: 'comment' '%c' equals the delimiter", fn,
                              value[0]);
        opts->comment = value[0];
        return MTL_OK;
    }
    char **slot = strcmp(key, "na_values") == 0      ? &opts->na_values
                  : strcmp(key, "strip_suffix") == 0 ? &opts->strip_suffix
                                                     : NULL;
    if (slot) {
        char *copy = mtli_strdup(value);
        if (!copy)
            return mtli_oom("csv option value", strlen(value) + 1);
        mtli_free(*slot);
        *slot = copy;
        return MTL_OK;
    }
    if (strcmp(key, "header") == 0 || strcmp(key, "skip_rows") == 0 || strcmp(key, "trim") == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: '%s' is an integer option (use mtl_csv_options_set_int)", fn, key);
    return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                      "%s: unknown key '%s' (string keys: delimiter, na_values, comment, "
                      "strip_suffix)",
                      fn, key);
}

/* ---- parsing ----------------------------------------------------------------------------- */

typedef struct {
    const char *in;
    size_t n, pos;
    int64_t line;
    char *out;
    size_t w;
    const mtl_csv_options *o;
    const char *path;
    /* missing-value texts */
    const char **na;
    size_t *na_len;
    int nna;
    size_t suffix_len;
} parser;

typedef enum { END_DELIM, END_LINE, END_EOF } field_end;

static int is_space(const parser *p, char c)
{
    return (c == ' ' || c == '\t') && c != p->o->delimiter;
}

/* At in[pos]: does a line end start here? *len receives its length (1 or 2). */
static int line_end(const parser *p, size_t pos, size_t *len)
{
    if (pos >= p->n)
        return 0;
    if (p->in[pos] == '\n') {
        *len = 1;
        return 1;
    }
    if (p->in[pos] == '\r' && (pos + 1 == p->n || p->in[pos + 1] == '\n')) {
        *len = pos + 1 == p->n ? 1 : 2;
        return 1;
    }
    return 0;
}

/* Parse one field starting at pos into out; *start receives its offset (or MISSING) and
 * *end what ended it (the delimiter or line end is consumed). */
static mtl_status parse_field(parser *p, int data_row, int64_t rec_line, size_t *start,
                              field_end *end)
{
    const mtl_csv_options *o = p->o;
    size_t b = p->w;
    size_t i = p->pos;
    if (o->trim)
        while (i < p->n && is_space(p, p->in[i]))
            i++;
    size_t le = 0;
    if (i < p->n && p->in[i] == '"') {
        i++;
        for (;;) {
            if (i >= p->n)
                return mtli_error(MTL_ERR_FORMAT,
                                  READ ": '%s': line %lld: a quoted field is never closed",
                                  p->path, (long long)rec_line);
            char c = p->in[i];
            if (c == '"') {
                if (i + 1 < p->n && p->in[i + 1] == '"') {
                    p->out[p->w++] = '"';
                    i += 2;
                    continue;
                }
                i++;
                break;
            }
            if (c == '\n')
                p->line++;
            p->out[p->w++] = c;
            i++;
        }
        if (o->trim)
            while (i < p->n && is_space(p, p->in[i]))
                i++;
        if (i < p->n && p->in[i] != o->delimiter && !line_end(p, i, &le)) {
            char c = p->in[i];
            return mtli_error(MTL_ERR_FORMAT,
                              READ ": '%s': line %lld: unexpected character '%c' after a closing "
                                   "quote",
                              p->path, (long long)p->line, c >= 0x20 && c < 0x7f ? c : '?');
        }
    } else {
        while (i < p->n && p->in[i] != o->delimiter && !line_end(p, i, &le))
            p->out[p->w++] = p->in[i++];
        if (o->trim)
            while (p->w > b && is_space(p, p->out[p->w - 1]))
                p->w--;
    }
    if (i >= p->n) {
        *end = END_EOF;
    } else if (p->in[i] == o->delimiter) {
        *end = END_DELIM;
        i++;
    } else {
        line_end(p, i, &le);
        i += le;
        p->line++;
        *end = END_LINE;
    }
    p->pos = i;
    if (data_row) {
        size_t len = p->w - b;
        if (p->suffix_len && len >= p->suffix_len &&
            memcmp(p->out + p->w - p->suffix_len, o->strip_suffix, p->suffix_len) == 0)
            p->w -= p->suffix_len;
        len = p->w - b;
        for (int k = 0; k < p->nna; k++) {
            if (p->na_len[k] == len && memcmp(p->na[k], p->out + b, len) == 0) {
                p->w = b;
                *start = MTLI_CSV_MISSING;
                return MTL_OK;
            }
        }
    }
    p->out[p->w++] = '\0';
    *start = b;
    return MTL_OK;
}

/* Split the na_values option into p->na (pointers into buf, a modified copy). */
static mtl_status split_na(parser *p, char **buf)
{
    const char *s = p->o->na_values;
    *buf = NULL;
    p->nna = 0;
    if (s[0] == '\0')
        return MTL_OK;
    int n = 1;
    for (const char *c = s; *c; c++)
        n += *c == ',';
    *buf = mtli_strdup(s);
    p->na = mtli_malloc((size_t)n * sizeof *p->na);
    p->na_len = mtli_malloc((size_t)n * sizeof *p->na_len);
    if (!*buf || !p->na || !p->na_len)
        return mtli_oom("csv missing-value list", (size_t)n * 16);
    char *c = *buf;
    for (int k = 0; k < n; k++) {
        char *comma = strchr(c, ',');
        if (comma)
            *comma = '\0';
        p->na[k] = c;
        p->na_len[k] = strlen(c);
        c = comma ? comma + 1 : c + strlen(c);
    }
    p->nna = n;
    return MTL_OK;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int word_ci(const char *s, const char *w)
{
    for (; *w; s++, w++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != *w)
            return 0;
    }
    return *s == '\0';
}

/* Strict number syntax: [+-] digits [. digits] [e [+-] digits], or inf/infinity/nan. */
static int number_syntax(const char *s)
{
    if (*s == '+' || *s == '-')
        s++;
    if (word_ci(s, "inf") || word_ci(s, "infinity") || word_ci(s, "nan"))
        return 1;
    int digits = 0;
    while (is_digit(*s))
        s++, digits++;
    if (*s == '.') {
        s++;
        while (is_digit(*s))
            s++, digits++;
    }
    if (!digits)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!is_digit(*s))
            return 0;
        while (is_digit(*s))
            s++;
    }
    return *s == '\0';
}

/* Grow the per-row arrays to hold at least need rows. */
static mtl_status grow_rows(mtl_csv *t, size_t *cap, size_t need)
{
    if (need <= *cap)
        return MTL_OK;
    size_t ncap = *cap ? *cap * 2 : 1024;
    while (ncap < need)
        ncap *= 2;
    size_t cb, lb;
    if (!mtli_mul_size(ncap, (size_t)t->cols * sizeof(size_t), &cb) ||
        !mtli_mul_size(ncap, sizeof(int64_t), &lb))
        return MTL_ERR_RANGE;
    size_t *cell = mtli_realloc(t->cell, cb);
    if (!cell)
        return mtli_oom("csv cells", cb);
    t->cell = cell;
    int64_t *line = mtli_realloc(t->line, lb);
    if (!line)
        return mtli_oom("csv line numbers", lb);
    t->line = line;
    *cap = ncap;
    return MTL_OK;
}

static mtl_status set_names(mtl_csv *t, const size_t *fields, int have_header)
{
    t->names = mtli_calloc((size_t)t->cols, sizeof *t->names);
    if (!t->names)
        return mtli_oom("csv column names", (size_t)t->cols * sizeof *t->names);
    if (!have_header) {
        size_t per = 16;
        t->names_buf = mtli_malloc((size_t)t->cols * per);
        if (!t->names_buf)
            return mtli_oom("csv column names", (size_t)t->cols * per);
        for (int j = 0; j < t->cols; j++) {
            t->names[j] = t->names_buf + (size_t)j * per;
            snprintf(t->names[j], per, "c%d", j);
        }
        return MTL_OK;
    }
    for (int j = 0; j < t->cols; j++)
        t->names[j] = t->text + fields[j];
    /* duplicate names would make name lookups ambiguous */
    for (int j = 0; j < t->cols; j++)
        for (int k = 0; k < j; k++)
            if (strcmp(t->names[j], t->names[k]) == 0)
                return mtli_error(MTL_ERR_FORMAT,
                                  READ ": '%s': columns %d and %d are both named '%s'", t->path,
                                  k, j, t->names[j]);
    return MTL_OK;
}

static mtl_status parse_numbers(mtl_csv *t)
{
    size_t cells = (size_t)t->rows * (size_t)t->cols;
    t->num = mtli_malloc((cells ? cells : 1) * sizeof *t->num);
    t->numeric = mtli_malloc((size_t)(t->cols ? t->cols : 1));
    t->has_inf = mtli_calloc((size_t)(t->cols ? t->cols : 1), 1);
    t->bad_row = mtli_malloc((size_t)(t->cols ? t->cols : 1) * sizeof *t->bad_row);
    if (!t->num || !t->numeric || !t->has_inf || !t->bad_row)
        return mtli_oom("csv numeric values", cells * sizeof *t->num);
    locale_t c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (c_locale == (locale_t)0)
        return mtli_error(MTL_ERR_OUT_OF_MEMORY, READ ": cannot create the \"C\" locale");
    for (int j = 0; j < t->cols; j++) {
        t->numeric[j] = 1;
        t->bad_row[j] = -1;
    }
    for (int64_t r = 0; r < t->rows; r++) {
        for (int j = 0; j < t->cols; j++) {
            size_t k = (size_t)r * (size_t)t->cols + (size_t)j;
            const char *s = mtli_csv_text(t, r, j);
            double v = NAN;
            if (s && number_syntax(s)) {
                v = strtod_l(s, NULL, c_locale);
                if (isinf(v))
                    t->has_inf[j] = 1;
            } else if (s && t->numeric[j]) {
                t->numeric[j] = 0;
                t->bad_row[j] = r;
            }
            t->num[k] = v;
        }
    }
    freelocale(c_locale);
    return MTL_OK;
}

static mtl_status parse(mtl_csv *t, parser *p)
{
    const mtl_csv_options *o = p->o;
    size_t cap = 0;
    size_t *fields = NULL, fcap = 0;
    mtl_status st = MTL_OK;
    int have_header = 0;
    int first = 1;

    if (p->n >= 3 && memcmp(p->in, "\xEF\xBB\xBF", 3) == 0)
        p->pos = 3;
    for (int64_t k = 0; k < o->skip_rows && p->pos < p->n; k++) {
        const char *nl = memchr(p->in + p->pos, '\n', p->n - p->pos);
        p->pos = nl ? (size_t)(nl - p->in) + 1 : p->n;
        p->line++;
    }
    while (p->pos < p->n) {
        size_t le = 0;
        if (line_end(p, p->pos, &le)) { /* empty line */
            p->pos += le;
            p->line++;
            continue;
        }
        if (o->comment && p->in[p->pos] == o->comment) {
            const char *nl = memchr(p->in + p->pos, '\n', p->n - p->pos);
            p->pos = nl ? (size_t)(nl - p->in) + 1 : p->n;
            p->line++;
            continue;
        }
        int64_t rec_line = p->line;
        int header_row = first && o->header;
        int nf = 0;
        field_end end;
        do {
            if ((size_t)nf == fcap) {
                size_t nc = fcap ? fcap * 2 : 64;
                size_t *f = mtli_realloc(fields, nc * sizeof *f);
                if (!f) {
                    st = mtli_oom("csv record", nc * sizeof *f);
                    goto done;
                }
                fields = f;
                fcap = nc;
            }
            st = parse_field(p, !header_row, rec_line, &fields[nf], &end);
            if (st != MTL_OK)
                goto done;
            if (nf == INT32_MAX - 1) {
                st = mtli_error(MTL_ERR_FORMAT, READ ": '%s': line %lld: too many fields",
                                p->path, (long long)rec_line);
                goto done;
            }
            nf++;
        } while (end == END_DELIM);
        if (first) {
            t->cols = nf;
            first = 0;
            if (header_row) {
                have_header = 1;
                st = set_names(t, fields, 1);
                if (st != MTL_OK)
                    goto done;
                continue;
            }
        }
        if (nf != t->cols) {
            st = mtli_error(MTL_ERR_FORMAT, READ ": '%s': line %lld has %d fields, expected %d%s",
                            p->path, (long long)rec_line, nf, t->cols,
                            have_header ? " (as in the header)" : " (as in the first record)");
            goto done;
        }
        st = grow_rows(t, &cap, (size_t)t->rows + 1);
        if (st != MTL_OK)
            goto done;
        memcpy(t->cell + (size_t)t->rows * (size_t)t->cols, fields,
               (size_t)t->cols * sizeof *fields);
        t->line[t->rows] = rec_line;
        t->rows++;
    }
    if (first && o->header) {
        st = mtli_error(MTL_ERR_FORMAT, READ ": '%s': no header line (the file has no records)",
                        p->path);
        goto done;
    }
    if (!have_header) {
        st = set_names(t, NULL, 0);
        if (st != MTL_OK)
            goto done;
    }
    st = parse_numbers(t);
done:
    mtli_free(fields);
    return st;
}

MTL_API void mtl_csv_free(mtl_csv *t)
{
    if (!t)
        return;
    mtli_free(t->path);
    mtli_free(t->names);
    mtli_free(t->names_buf);
    mtli_free(t->text);
    mtli_free(t->cell);
    mtli_free(t->num);
    mtli_free(t->line);
    mtli_free(t->numeric);
    mtli_free(t->bad_row);
    mtli_free(t->has_inf);
    mtli_free(t);
}

MTL_API mtl_status mtl_csv_read(mtl_csv **out, const char *path, const mtl_csv_options *opts)
{
    MTLI_CHECK_NULL(out, READ);
    *out = NULL;
    MTLI_CHECK_NULL(path, READ);
    mtl_csv_options *defaults = NULL;
    if (!opts) {
        MTLI_TRY(mtl_csv_options_create(&defaults));
        opts = defaults;
    }
    mtl_status st;
    char *in = NULL, *nabuf = NULL;
    size_t n = 0;
    parser p;
    memset(&p, 0, sizeof p);
    mtl_csv *t = mtli_calloc(1, sizeof *t);
    if (!t) {
        st = mtli_oom("csv table", sizeof *t);
        goto fail;
    }
    t->path = mtli_strdup(path);
    if (!t->path) {
        st = mtli_oom("csv path", strlen(path) + 1);
        goto fail;
    }
    st = mtli_data_read_file(&in, &n, path, READ);
    if (st != MTL_OK)
        goto fail;
    /* every field's text plus its terminator fits in the bytes it was read from, except
     * the terminator of a last field without a line end */
    t->text = mtli_malloc(n + 2);
    if (!t->text) {
        st = mtli_oom("csv text", n + 2);
        goto fail;
    }
    p.in = in;
    p.n = n;
    p.line = 1;
    p.out = t->text;
    p.o = opts;
    p.path = path;
    p.suffix_len = strlen(opts->strip_suffix);
    st = split_na(&p, &nabuf);
    if (st != MTL_OK)
        goto fail;
    st = parse(t, &p);
    if (st != MTL_OK)
        goto fail;
    mtli_free(in);
    mtli_free(nabuf);
    mtli_free((void *)p.na);
    mtli_free(p.na_len);
    mtl_csv_options_free(defaults);
    *out = t;
    return MTL_OK;
fail:
    mtli_free(in);
    mtli_free(nabuf);
    mtli_free((void *)p.na);
    mtli_free(p.na_len);
    mtl_csv_options_free(defaults);
    mtl_csv_free(t);
    return st;
}

/* ---- table access ------------------------------------------------------------------------ */

MTL_API int64_t mtl_csv_num_rows(const mtl_csv *t)
{
    if (!t) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_csv_num_rows: argument 'table' is NULL");
        return 0;
    }
    return t->rows;
}

MTL_API int mtl_csv_num_cols(const mtl_csv *t)
{
    if (!t) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_csv_num_cols: argument 'table' is NULL");
        return 0;
    }
    return t->cols;
}

MTL_API const char *mtl_csv_col_name(const mtl_csv *t, int col)
{
    if (!t) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_csv_col_name: argument 'table' is NULL");
        return NULL;
    }
    if (col < 0 || col >= t->cols) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT,
                   "mtl_csv_col_name: column %d out of range (the table has %d)", col, t->cols);
        return NULL;
    }
    return t->names[col];
}

int mtli_csv_find(const mtl_csv *t, const char *name)
{
    for (int j = 0; j < t->cols; j++)
        if (strcmp(t->names[j], name) == 0)
            return j;
    return -1;
}

MTL_API mtl_status mtl_csv_col_index(int *out, const mtl_csv *t, const char *name)
{
    MTLI_CHECK_NULL(out, "mtl_csv_col_index");
    *out = -1;
    MTLI_CHECK_NULL(t, "mtl_csv_col_index");
    MTLI_CHECK_NULL(name, "mtl_csv_col_index");
    int j = mtli_csv_find(t, name);
    if (j < 0)
        return mtli_error(MTL_ERR_NOT_FOUND, "mtl_csv_col_index: '%s' has no column named '%s'",
                          t->path, name);
    *out = j;
    return MTL_OK;
}

MTL_API int mtl_csv_col_is_numeric(const mtl_csv *t, int col)
{
    if (!t) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_csv_col_is_numeric: argument 'table' is NULL");
        return -1;
    }
    if (col < 0 || col >= t->cols) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT,
                   "mtl_csv_col_is_numeric: column %d out of range (the table has %d)", col,
                   t->cols);
        return -1;
    }
    return t->numeric[col];
}

MTL_API const char *mtl_csv_field(const mtl_csv *t, int64_t row, int col)
{
    if (!t) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_csv_field: argument 'table' is NULL");
        return NULL;
    }
    if (row < 0 || row >= t->rows || col < 0 || col >= t->cols) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT,
                   "mtl_csv_field: (%lld, %d) out of range (the table has %lld rows, %d columns)",
                   (long long)row, col, (long long)t->rows, t->cols);
        return NULL;
    }
    return mtli_csv_text(t, row, col);
}

mtl_status mtli_csv_require_numeric(const mtl_csv *t, int col, const char *fn)
{
    if (t->numeric[col])
        return MTL_OK;
    int64_t r = t->bad_row[col];
    return mtli_error(MTL_ERR_FORMAT,
                      "%s: column '%s' of '%s' is not numeric: line %lld has \"%.60s\"", fn,
                      t->names[col], t->path, (long long)t->line[r], mtli_csv_text(t, r, col));
}

mtl_status mtli_csv_column_stats(const mtl_csv *t, int col, double *mean, double *std,
                                 const char *fn)
{
    if (t->has_inf[col])
        return mtli_error(MTL_ERR_NUMERIC, "%s: column '%s' of '%s' holds an infinite value", fn,
                          t->names[col], t->path);
    double s = 0.0;
    int64_t n = 0;
    const double *v = t->num + col;
    size_t stride = (size_t)t->cols;
    for (int64_t r = 0; r < t->rows; r++) {
        double x = v[(size_t)r * stride];
        if (!isnan(x)) {
            s += x;
            n++;
        }
    }
    if (n == 0)
        return mtli_error(MTL_ERR_NUMERIC, "%s: column '%s' of '%s' has no values", fn,
                          t->names[col], t->path);
    double m = s / (double)n, ss = 0.0;
    for (int64_t r = 0; r < t->rows; r++) {
        double x = v[(size_t)r * stride];
        if (!isnan(x))
            ss += (x - m) * (x - m);
    }
    *mean = m;
    *std = sqrt(ss / (double)n);
    return MTL_OK;
}

MTL_API mtl_status mtl_csv_numeric(mtl_tensor **out, const mtl_csv *t, const int *cols,
                                   int ncols, int standardize)
{
    static const char *fn = "mtl_csv_numeric";
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    MTLI_CHECK_NULL(t, fn);
    if (cols == NULL && ncols == 0)
        ncols = t->cols;
    else if (cols == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "%s: argument 'cols' is NULL with ncols %d (pass 0 for every column)",
                          fn, ncols);
    if (ncols < 1)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: ncols is %d, expected >= 1", fn, ncols);
    if (t->rows == 0)
        return mtli_error(MTL_ERR_SHAPE, "%s: '%s' has no rows", fn, t->path);
    for (int k = 0; k < ncols; k++) {
        int j = cols ? cols[k] : k;
        if (j < 0 || j >= t->cols)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "%s: cols[%d] is %d, out of range (the table has %d columns)", fn,
                              k, j, t->cols);
        MTLI_TRY(mtli_csv_require_numeric(t, j, fn));
    }
    int64_t shape[2] = {t->rows, ncols};
    mtl_tensor *o;
    MTLI_TRY(mtl_tensor_create(&o, MTL_FLOAT32, 2, shape));
    float *d = o->data;
    for (int k = 0; k < ncols; k++) {
        int j = cols ? cols[k] : k;
        double mean = 0.0, std = 1.0;
        if (standardize) {
            mtl_status st = mtli_csv_column_stats(t, j, &mean, &std, fn);
            if (st != MTL_OK) {
                mtl_tensor_free(o);
                return st;
            }
            if (std == 0.0)
                std = 1.0;
        }
        for (int64_t r = 0; r < t->rows; r++) {
            double x = t->num[(size_t)r * (size_t)t->cols + (size_t)j];
            float v;
            if (isnan(x))
                v = standardize ? 0.0f : NAN;
            else
                v = standardize ? (float)((x - mean) / std) : (float)x;
            d[(size_t)r * (size_t)ncols + (size_t)k] = v;
        }
    }
    *out = o;
    return MTL_OK;
}
