/* YAML text to a document tree with locations; scalar forms; messages; writing YAML back. */
#define _GNU_SOURCE /* strtod_l: number conversion that ignores the process locale */
#include <ctype.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "core/alloc.h"
#include "io/config_internal.h"

#define MAX_DEPTH 64
#define MAX_NODES 1000000L

/* ---- nodes ----------------------------------------------------------------------------- */

void mtli_cnode_free(mtli_cnode *n)
{
    if (!n)
        return;
    for (int i = 0; i < n->n; i++) {
        if (n->keys)
            mtli_cnode_free(n->keys[i]);
        mtli_cnode_free(n->vals[i]);
    }
    mtli_free(n->keys);
    mtli_free(n->vals);
    mtli_free(n->text);
    mtli_free(n);
}

mtli_cnode *mtli_cnode_new(mtli_cn_kind kind, const mtli_cnode *where)
{
    mtli_cnode *n = mtli_calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->kind = kind;
    if (where) {
        n->line = where->line;
        n->col = where->col;
        n->src = where->src;
    }
    return n;
}

mtli_cnode *mtli_cnode_scalar(const char *text, int quoted, const mtli_cnode *where)
{
    mtli_cnode *n = mtli_cnode_new(MTLI_CN_SCALAR, where);
    if (!n)
        return NULL;
    n->text = mtli_strdup(text);
    if (!n->text) {
        mtli_free(n);
        return NULL;
    }
    n->quoted = quoted;
    return n;
}

static int grow(mtli_cnode *n, int with_keys)
{
    if (n->n < n->cap)
        return 1;
    int cap = n->cap ? n->cap * 2 : 4;
    mtli_cnode **v = mtli_realloc(n->vals, (size_t)cap * sizeof *v);
    if (!v)
        return 0;
    n->vals = v;
    if (with_keys) {
        mtli_cnode **k = mtli_realloc(n->keys, (size_t)cap * sizeof *k);
        if (!k)
            return 0;
        n->keys = k;
    }
    n->cap = cap;
    return 1;
}

mtl_status mtli_cnode_map_add(mtli_cnode *map, mtli_cnode *key, mtli_cnode *val)
{
    if (!grow(map, 1)) {
        mtli_cnode_free(key);
        mtli_cnode_free(val);
        return mtli_oom("configuration mapping", sizeof(void *) * 2 * (size_t)(map->cap + 1));
    }
    map->keys[map->n] = key;
    map->vals[map->n] = val;
    map->n++;
    return MTL_OK;
}

mtl_status mtli_cnode_seq_add(mtli_cnode *seq, mtli_cnode *item)
{
    if (!grow(seq, 0)) {
        mtli_cnode_free(item);
        return mtli_oom("configuration list", sizeof(void *) * (size_t)(seq->cap + 1));
    }
    seq->vals[seq->n++] = item;
    return MTL_OK;
}

mtl_status mtli_cnode_clone(mtli_cnode **out, const mtli_cnode *n)
{
    *out = NULL;
    if (!n)
        return MTL_OK;
    mtli_cnode *c = n->kind == MTLI_CN_SCALAR ? mtli_cnode_scalar(n->text, n->quoted, n)
                                               : mtli_cnode_new(n->kind, n);
    if (!c)
        return mtli_oom("configuration node", sizeof *c);
    for (int i = 0; i < n->n; i++) {
        mtli_cnode *k = NULL, *v = NULL;
        mtl_status st = MTL_OK;
        if (n->kind == MTLI_CN_MAP)
            st = mtli_cnode_clone(&k, n->keys[i]);
        if (st == MTL_OK)
            st = mtli_cnode_clone(&v, n->vals[i]);
        if (st == MTL_OK)
            st = n->kind == MTLI_CN_MAP ? mtli_cnode_map_add(c, k, v) : mtli_cnode_seq_add(c, v);
        else {
            mtli_cnode_free(k);
            mtli_cnode_free(v);
        }
        if (st != MTL_OK) {
            mtli_cnode_free(c);
            return st;
        }
    }
    *out = c;
    return MTL_OK;
}

int mtli_cnode_index(const mtli_cnode *map, const char *key)
{
    if (!map || map->kind != MTLI_CN_MAP)
        return -1;
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->text, key) == 0)
            return i;
    return -1;
}

mtli_cnode *mtli_cnode_get(const mtli_cnode *map, const char *key)
{
    int i = mtli_cnode_index(map, key);
    return i < 0 ? NULL : map->vals[i];
}

void mtli_cnode_map_remove(mtli_cnode *map, int i)
{
    mtli_cnode_free(map->keys[i]);
    mtli_cnode_free(map->vals[i]);
    memmove(map->keys + i, map->keys + i + 1, (size_t)(map->n - i - 1) * sizeof *map->keys);
    memmove(map->vals + i, map->vals + i + 1, (size_t)(map->n - i - 1) * sizeof *map->vals);
    map->n--;
}

/* ---- messages -------------------------------------------------------------------------- */

void mtli_cnode_where(const mtli_cnode *n, char *buf, size_t cap)
{
    if (!n || !n->src) {
        snprintf(buf, cap, "(configuration)");
    } else if (n->src->is_file) {
        snprintf(buf, cap, "%s:%d:%d", n->src->name, n->line, n->col);
    } else if (n->line > 1) {
        snprintf(buf, cap, "%s, line %d, column %d", n->src->name, n->line, n->col);
    } else {
        snprintf(buf, cap, "%s, column %d", n->src->name, n->col);
    }
}

mtl_status mtli_cfg_error(const mtli_cnode *n, mtl_status st, const char *fmt, ...)
{
    char where[300], msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mtli_cnode_where(n, where, sizeof where);
    return mtli_error(st, "%s: %s", where, msg);
}

mtl_status mtli_cfg_prefix(const mtli_cnode *n, mtl_status st)
{
    char where[300];
    mtli_cnode_where(n, where, sizeof where);
    mtli_error_prefix("%s", where);
    return st;
}

const char *mtli_cnode_describe(const mtli_cnode *n, char *buf, size_t cap)
{
    if (!n || n->kind == MTLI_CN_NULL)
        snprintf(buf, cap, "an empty value");
    else if (n->kind == MTLI_CN_MAP)
        snprintf(buf, cap, "a mapping");
    else if (n->kind == MTLI_CN_SEQ)
        snprintf(buf, cap, "a list");
    else if (strlen(n->text) > 60)
        snprintf(buf, cap, "'%.57s...'", n->text);
    else
        snprintf(buf, cap, "'%s'", n->text);
    return buf;
}

/* ---- scalars --------------------------------------------------------------------------- */

static int plain(const mtli_cnode *n) { return n && n->kind == MTLI_CN_SCALAR && !n->quoted; }

int mtli_scalar_int(const mtli_cnode *n, int64_t *v)
{
    if (!plain(n))
        return 0;
    const char *s = n->text;
    int neg = 0;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    if (!isdigit((unsigned char)*s))
        return 0;
    uint64_t acc = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return 0;
        unsigned d = (unsigned)(*s - '0');
        if (acc > (UINT64_MAX - d) / 10)
            return 0;
        acc = acc * 10 + d;
    }
    if (neg ? acc > (uint64_t)INT64_MAX + 1 : acc > (uint64_t)INT64_MAX)
        return 0;
    *v = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 1;
}

int mtli_text_double(const char *s, double *v)
{
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    if (strcmp(p, ".inf") == 0 || strcmp(p, ".Inf") == 0 || strcmp(p, ".INF") == 0) {
        *v = neg ? -INFINITY : INFINITY;
        return 1;
    }
    if (p == s && (strcmp(p, ".nan") == 0 || strcmp(p, ".NaN") == 0 || strcmp(p, ".NAN") == 0)) {
        *v = NAN;
        return 1;
    }
    /* [0-9]* ( '.' [0-9]* )? ( [eE] [-+]? [0-9]+ )?  with at least one mantissa digit */
    int digits = 0;
    while (isdigit((unsigned char)*p)) {
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
            digits++;
        }
    }
    if (!digits)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p)
        return 0;
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (c == (locale_t)0)
        return 0;
    errno = 0;
    double d = strtod_l(s, NULL, c);
    freelocale(c);
    *v = d; /* overflow gives +-HUGE_VAL = inf, which range checks then reject */
    return 1;
}

int mtli_scalar_double(const mtli_cnode *n, double *v)
{
    if (!plain(n))
        return 0;
    return mtli_text_double(n->text, v);
}

int mtli_scalar_bool(const mtli_cnode *n, int *v)
{
    if (!plain(n))
        return 0;
    static const char *const t[] = {"true", "True", "TRUE"};
    static const char *const f[] = {"false", "False", "FALSE"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(n->text, t[i]) == 0) {
            *v = 1;
            return 1;
        }
        if (strcmp(n->text, f[i]) == 0) {
            *v = 0;
            return 1;
        }
    }
    return 0;
}

static int is_null_text(const char *s)
{
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

/* ---- libyaml document to tree ---------------------------------------------------------- */

typedef struct {
    yaml_document_t *doc;
    const mtli_csrc *src;
    long count;
} conv_ctx;

static void set_loc(mtli_cnode *n, const yaml_node_t *y, const mtli_csrc *src)
{
    n->line = (int)y->start_mark.line + 1;
    n->col = (int)y->start_mark.column + 1;
    n->src = src;
}

static mtl_status convert(conv_ctx *c, yaml_node_t *y, int depth, mtli_cnode **out)
{
    *out = NULL;
    mtli_cnode loc = {0};
    set_loc(&loc, y, c->src);
    if (depth > MAX_DEPTH)
        return mtli_cfg_error(&loc, MTL_ERR_FORMAT, "nesting deeper than %d levels", MAX_DEPTH);
    if (++c->count > MAX_NODES)
        return mtli_cfg_error(&loc, MTL_ERR_FORMAT,
                              "the document expands to more than %ld nodes (aliases?)", MAX_NODES);
    if (y->type == YAML_SCALAR_NODE) {
        const char *text = (const char *)y->data.scalar.value;
        if (strlen(text) != y->data.scalar.length)
            return mtli_cfg_error(&loc, MTL_ERR_FORMAT, "a NUL character inside a scalar");
        int quoted = y->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        mtli_cnode *n = (!quoted && is_null_text(text)) ? mtli_cnode_new(MTLI_CN_NULL, &loc)
                                                         : mtli_cnode_scalar(text, quoted, &loc);
        if (!n)
            return mtli_oom("configuration scalar", y->data.scalar.length + 1);
        *out = n;
        return MTL_OK;
    }
    mtli_cnode *n = mtli_cnode_new(y->type == YAML_MAPPING_NODE ? MTLI_CN_MAP : MTLI_CN_SEQ, &loc);
    if (!n)
        return mtli_oom("configuration node", sizeof *n);
    mtl_status st = MTL_OK;
    if (y->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = y->data.sequence.items.start;
             st == MTL_OK && it < y->data.sequence.items.top; it++) {
            mtli_cnode *item;
            st = convert(c, yaml_document_get_node(c->doc, *it), depth + 1, &item);
            if (st == MTL_OK)
                st = mtli_cnode_seq_add(n, item);
        }
    } else {
        for (yaml_node_pair_t *p = y->data.mapping.pairs.start;
             st == MTL_OK && p < y->data.mapping.pairs.top; p++) {
            yaml_node_t *yk = yaml_document_get_node(c->doc, p->key);
            mtli_cnode kloc = {0};
            set_loc(&kloc, yk, c->src);
            if (yk->type != YAML_SCALAR_NODE) {
                st = mtli_cfg_error(&kloc, MTL_ERR_FORMAT, "mapping keys must be plain names");
                break;
            }
            const char *ktext = (const char *)yk->data.scalar.value;
            if (mtli_cnode_index(n, ktext) >= 0) {
                const mtli_cnode *first = n->keys[mtli_cnode_index(n, ktext)];
                st = mtli_cfg_error(&kloc, MTL_ERR_FORMAT,
                                    "duplicate key '%s' (first given at line %d, column %d)",
                                    ktext, first->line, first->col);
                break;
            }
            mtli_cnode *k = mtli_cnode_scalar(ktext, 1, &kloc), *v = NULL;
            if (!k) {
                st = mtli_oom("configuration key", strlen(ktext) + 1);
                break;
            }
            st = convert(c, yaml_document_get_node(c->doc, p->value), depth + 1, &v);
            if (st == MTL_OK)
                st = mtli_cnode_map_add(n, k, v);
            else
                mtli_cnode_free(k);
        }
    }
    if (st != MTL_OK) {
        mtli_cnode_free(n);
        return st;
    }
    *out = n;
    return MTL_OK;
}

static mtl_status syntax_error(const yaml_parser_t *p, const mtli_csrc *src)
{
    mtli_cnode loc = {0};
    loc.src = src;
    loc.line = (int)p->problem_mark.line + 1;
    loc.col = (int)p->problem_mark.column + 1;
    if (p->error == YAML_MEMORY_ERROR)
        return mtli_error(MTL_ERR_OUT_OF_MEMORY, "YAML parser: out of memory");
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->context)
        return mtli_cfg_error(&loc, MTL_ERR_FORMAT, "YAML syntax error: %s (%s at line %d, column %d)",
                              problem, p->context, (int)p->context_mark.line + 1,
                              (int)p->context_mark.column + 1);
    return mtli_cfg_error(&loc, MTL_ERR_FORMAT, "YAML syntax error: %s", problem);
}

mtl_status mtli_yaml_parse(mtli_cnode **out, const char *text, size_t len, const mtli_csrc *src)
{
    *out = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return mtli_error(MTL_ERR_OUT_OF_MEMORY, "YAML parser: out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    if (!yaml_parser_load(&parser, &doc)) {
        mtl_status st = syntax_error(&parser, src);
        yaml_parser_delete(&parser);
        return st;
    }
    mtl_status st = MTL_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        conv_ctx c = {&doc, src, 0};
        st = convert(&c, root, 0, out);
    }
    yaml_document_delete(&doc);
    if (st == MTL_OK && root) {
        /* a second document is an error: one file describes one run */
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            st = syntax_error(&parser, src);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&next);
            if (r2) {
                mtli_cnode loc = {0};
                set_loc(&loc, r2, src);
                st = mtli_cfg_error(&loc, MTL_ERR_FORMAT,
                                    "a second YAML document; a configuration is one document");
            }
            yaml_document_delete(&next);
        }
        if (st != MTL_OK) {
            mtli_cnode_free(*out);
            *out = NULL;
        }
    }
    yaml_parser_delete(&parser);
    return st;
}

/* ---- writing YAML ---------------------------------------------------------------------- */

void mtli_sbuf_add(mtli_sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0) {
        b->oom = 1;
        return;
    }
    if (b->len + (size_t)need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)need + 1)
            cap *= 2;
        char *p = mtli_realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)need;
}

/* A scalar that reads back as the same string (and type) needs no quotes. */
static int needs_quotes(const mtli_cnode *n)
{
    const char *s = n->text;
    if (!n->quoted)
        return 0;
    if (!*s || is_null_text(s))
        return 1;
    mtli_cnode probe = *n;
    probe.quoted = 0;
    int64_t i;
    double d;
    int b;
    if (mtli_scalar_int(&probe, &i) || mtli_scalar_double(&probe, &d) || mtli_scalar_bool(&probe, &b))
        return 1;
    if (strchr("-?:,[]{}#&*!|>'\"%@` ", s[0]))
        return 1;
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == '#' || *p == '\'' || *p == '"')
            return 1;
        if (*p == ':' && (p[1] == ' ' || p[1] == '\0'))
            return 1;
    }
    return s[strlen(s) - 1] == ' ';
}

static void emit_scalar(mtli_sbuf *b, const mtli_cnode *n)
{
    if (!n || n->kind == MTLI_CN_NULL) {
        mtli_sbuf_add(b, "null");
        return;
    }
    if (!needs_quotes(n)) {
        mtli_sbuf_add(b, "%s", n->text);
        return;
    }
    mtli_sbuf_add(b, "\"");
    for (const unsigned char *p = (const unsigned char *)n->text; *p; p++) {
        if (*p == '"' || *p == '\\')
            mtli_sbuf_add(b, "\\%c", *p);
        else if (*p == '\n')
            mtli_sbuf_add(b, "\\n");
        else if (*p == '\t')
            mtli_sbuf_add(b, "\\t");
        else if (*p < 0x20)
            mtli_sbuf_add(b, "\\x%02x", *p);
        else
            mtli_sbuf_add(b, "%c", *p);
    }
    mtli_sbuf_add(b, "\"");
}

static int is_inline(const mtli_cnode *n)
{
    if (!n || n->kind == MTLI_CN_NULL || n->kind == MTLI_CN_SCALAR || n->n == 0)
        return 1;
    if (n->kind == MTLI_CN_MAP)
        return 0;
    for (int i = 0; i < n->n; i++)
        if (n->vals[i]->kind != MTLI_CN_SCALAR && n->vals[i]->kind != MTLI_CN_NULL)
            return 0;
    return 1; /* a list of scalars: one line */
}

static void emit_inline(mtli_sbuf *b, const mtli_cnode *n)
{
    if (!n || n->kind == MTLI_CN_NULL || n->kind == MTLI_CN_SCALAR) {
        emit_scalar(b, n);
    } else if (n->n == 0) {
        mtli_sbuf_add(b, n->kind == MTLI_CN_MAP ? "{}" : "[]");
    } else {
        mtli_sbuf_add(b, "[");
        for (int i = 0; i < n->n; i++) {
            if (i)
                mtli_sbuf_add(b, ", ");
            emit_scalar(b, n->vals[i]);
        }
        mtli_sbuf_add(b, "]");
    }
}

/* n: a non-empty mapping or list; with inline_first the first line's indentation has been
 * written already (after "- "). */
static void emit_block(mtli_sbuf *b, const mtli_cnode *n, int indent, int inline_first)
{
    for (int i = 0; i < n->n; i++) {
        const mtli_cnode *v = n->vals[i];
        if (i || !inline_first)
            mtli_sbuf_add(b, "%*s", indent, "");
        if (n->kind == MTLI_CN_MAP) {
            emit_scalar(b, n->keys[i]);
            mtli_sbuf_add(b, ":");
            if (is_inline(v)) {
                mtli_sbuf_add(b, " ");
                emit_inline(b, v);
                mtli_sbuf_add(b, "\n");
            } else {
                mtli_sbuf_add(b, "\n");
                emit_block(b, v, indent + 2, 0);
            }
        } else {
            mtli_sbuf_add(b, "- ");
            if (is_inline(v)) {
                emit_inline(b, v);
                mtli_sbuf_add(b, "\n");
            } else {
                emit_block(b, v, indent + 2, 1);
            }
        }
    }
}

void mtli_yaml_emit(mtli_sbuf *b, const mtli_cnode *n, int indent)
{
    if (is_inline(n)) {
        mtli_sbuf_add(b, "%*s", indent, "");
        emit_inline(b, n);
        mtli_sbuf_add(b, "\n");
    } else {
        emit_block(b, n, indent, 0);
    }
}
