/* A strict JSON parser producing a flat node array. */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"

size_t mtli_utf8_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else
            return i;
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return n;
}

typedef struct parser {
    const char *s;
    size_t n, pos;
    mtli_json *doc;
    const char *what;
    int depth;
} parser;

static mtl_status perr(const parser *p, const char *msg)
{
    return mtli_error(MTL_ERR_FORMAT, "%s: invalid JSON at byte %zu: %s", p->what, p->pos, msg);
}

static void skip_ws(parser *p)
{
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static mtl_status new_node(parser *p, mtli_json_type t, size_t *idx)
{
    mtli_json *d = p->doc;
    if (d->nnodes == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 64;
        mtli_json_node *nn = mtli_realloc(d->nodes, ncap * sizeof *nn);
        if (!nn)
            return mtli_oom("JSON nodes", ncap * sizeof *nn);
        d->nodes = nn;
        d->cap = ncap;
    }
    mtli_json_node *x = &d->nodes[d->nnodes];
    memset(x, 0, sizeof *x);
    x->type = t;
    x->child = x->next = MTLI_JSON_NONE;
    x->offset = p->pos;
    *idx = d->nnodes++;
    return MTL_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int read_hex4(parser *p, uint32_t *out)
{
    if (p->n - p->pos < 4)
        return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[p->pos + (size_t)i]);
        if (h < 0)
            return 0;
        v = v * 16 + (uint32_t)h;
    }
    p->pos += 4;
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode a string at p->pos (the opening quote) into the string arena. A decoded string is
 * never longer than its source, so the arena (sized as the text) cannot overflow. */
static mtl_status parse_string(parser *p, const char **out, size_t *len)
{
    mtli_json *d = p->doc;
    p->pos++; /* " */
    char *o = d->strings + d->slen;
    size_t k = 0;
    for (;;) {
        if (p->pos >= p->n)
            return perr(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20)
            return perr(p, "control character in a string");
        if (c != '\\') {
            o[k++] = (char)c;
            p->pos++;
            continue;
        }
        p->pos++;
        if (p->pos >= p->n)
            return perr(p, "unterminated escape");
        char e = p->s[p->pos++];
        switch (e) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!read_hex4(p, &cp))
                return perr(p, "bad \\u escape");
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return perr(p, "lone low surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return perr(p, "lone high surrogate");
                p->pos += 2;
                if (!read_hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return perr(p, "bad surrogate pair");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0)
                return perr(p, "NUL character in a string");
            k += put_utf8(o + k, cp);
            break;
        }
        default:
            p->pos--;
            return perr(p, "unknown escape");
        }
    }
    o[k] = '\0';
    d->slen += k + 1;
    *out = o;
    *len = k;
    return MTL_OK;
}

static mtl_status parse_value(parser *p, size_t *idx);

static mtl_status parse_number(parser *p, size_t idx)
{
    size_t start = p->pos;
    const char *s = p->s;
    if (p->pos < p->n && s[p->pos] == '-')
        p->pos++;
    if (p->pos >= p->n)
        return perr(p, "truncated number");
    if (s[p->pos] == '0')
        p->pos++;
    else if (s[p->pos] >= '1' && s[p->pos] <= '9')
        while (p->pos < p->n && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
    else
        return perr(p, "bad number");
    if (p->pos < p->n && s[p->pos] == '.') {
        p->pos++;
        size_t d0 = p->pos;
        while (p->pos < p->n && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
        if (p->pos == d0)
            return perr(p, "a fraction needs digits");
    }
    if (p->pos < p->n && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->n && (s[p->pos] == '+' || s[p->pos] == '-'))
            p->pos++;
        size_t d0 = p->pos;
        while (p->pos < p->n && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
        if (p->pos == d0)
            return perr(p, "an exponent needs digits");
    }
    mtli_json_node *x = &p->doc->nodes[idx];
    x->str = s + start;
    x->slen = p->pos - start;
    return MTL_OK;
}

static mtl_status parse_literal(parser *p, const char *lit)
{
    size_t n = strlen(lit);
    if (p->n - p->pos < n || memcmp(p->s + p->pos, lit, n) != 0)
        return perr(p, "unexpected character");
    p->pos += n;
    return MTL_OK;
}

static mtl_status parse_container(parser *p, size_t idx, bool object)
{
    if (++p->depth > MTLI_JSON_MAX_DEPTH)
        return perr(p, "nesting too deep");
    p->pos++; /* [ or { */
    skip_ws(p);
    char close = object ? '}' : ']';
    size_t last = MTLI_JSON_NONE, count = 0;
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return MTL_OK;
    }
    for (;;) {
        const char *key = NULL;
        size_t klen = 0;
        if (object) {
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != '"')
                return perr(p, "expected a member name");
            MTLI_TRY(parse_string(p, &key, &klen));
            /* member names are unique */
            for (size_t c = p->doc->nodes[idx].child; c != MTLI_JSON_NONE;
                 c = p->doc->nodes[c].next) {
                const mtli_json_node *m = &p->doc->nodes[c];
                if (m->klen == klen && memcmp(m->key, key, klen) == 0)
                    return perr(p, "repeated member name");
            }
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':')
                return perr(p, "expected ':'");
            p->pos++;
        }
        size_t v;
        MTLI_TRY(parse_value(p, &v));
        p->doc->nodes[v].key = key;
        p->doc->nodes[v].klen = klen;
        if (last == MTLI_JSON_NONE)
            p->doc->nodes[idx].child = v;
        else
            p->doc->nodes[last].next = v;
        last = v;
        count++;
        skip_ws(p);
        if (p->pos >= p->n)
            return perr(p, object ? "unterminated object" : "unterminated array");
        char c = p->s[p->pos];
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == close) {
            p->pos++;
            break;
        }
        return perr(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->doc->nodes[idx].count = count;
    p->depth--;
    return MTL_OK;
}

static mtl_status parse_value(parser *p, size_t *idx)
{
    skip_ws(p);
    if (p->pos >= p->n)
        return perr(p, "expected a value");
    char c = p->s[p->pos];
    mtli_json_type t;
    switch (c) {
    case '{': t = MTLI_JSON_OBJECT; break;
    case '[': t = MTLI_JSON_ARRAY; break;
    case '"': t = MTLI_JSON_STRING; break;
    case 't':
    case 'f': t = MTLI_JSON_BOOL; break;
    case 'n': t = MTLI_JSON_NULL; break;
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            t = MTLI_JSON_NUMBER;
        else
            return perr(p, "unexpected character");
    }
    MTLI_TRY(new_node(p, t, idx));
    switch (t) {
    case MTLI_JSON_OBJECT:
    case MTLI_JSON_ARRAY:
        return parse_container(p, *idx, t == MTLI_JSON_OBJECT);
    case MTLI_JSON_STRING: {
        const char *s;
        size_t n;
        MTLI_TRY(parse_string(p, &s, &n));
        p->doc->nodes[*idx].str = s;
        p->doc->nodes[*idx].slen = n;
        return MTL_OK;
    }
    case MTLI_JSON_NUMBER:
        return parse_number(p, *idx);
    case MTLI_JSON_BOOL:
        p->doc->nodes[*idx].b = c == 't';
        return parse_literal(p, c == 't' ? "true" : "false");
    case MTLI_JSON_NULL:
        return parse_literal(p, "null");
    }
    return MTL_OK;
}

void mtli_json_free(mtli_json *doc)
{
    mtli_free(doc->nodes);
    mtli_free(doc->strings);
    memset(doc, 0, sizeof *doc);
}

mtl_status mtli_json_parse(mtli_json *doc, const char *text, size_t n, const char *what)
{
    memset(doc, 0, sizeof *doc);
    size_t bad = mtli_utf8_check((const unsigned char *)text, n);
    if (bad != n)
        return mtli_error(MTL_ERR_FORMAT, "%s: invalid UTF-8 at byte %zu", what, bad);
    doc->strings = mtli_malloc(n + 1);
    if (!doc->strings)
        return mtli_oom("JSON strings", n + 1);
    parser p = {text, n, 0, doc, what, 0};
    size_t root;
    mtl_status st = parse_value(&p, &root);
    if (st == MTL_OK) {
        skip_ws(&p);
        if (p.pos != n)
            st = perr(&p, "unexpected data after the value");
    }
    if (st != MTL_OK)
        mtli_json_free(doc);
    return st;
}

const mtli_json_node *mtli_json_first(const mtli_json *doc, const mtli_json_node *n)
{
    return n->child == MTLI_JSON_NONE ? NULL : &doc->nodes[n->child];
}

const mtli_json_node *mtli_json_next(const mtli_json *doc, const mtli_json_node *n)
{
    return n->next == MTLI_JSON_NONE ? NULL : &doc->nodes[n->next];
}

const mtli_json_node *mtli_json_member(const mtli_json *doc, const mtli_json_node *obj,
                                       const char *key)
{
    if (obj->type != MTLI_JSON_OBJECT)
        return NULL;
    size_t kl = strlen(key);
    for (const mtli_json_node *m = mtli_json_first(doc, obj); m; m = mtli_json_next(doc, m))
        if (m->klen == kl && memcmp(m->key, key, kl) == 0)
            return m;
    return NULL;
}

bool mtli_json_u64(const mtli_json_node *n, uint64_t *out)
{
    if (n->type != MTLI_JSON_NUMBER || n->slen == 0 || n->slen > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n->slen; i++) {
        char c = n->str[i];
        if (c < '0' || c > '9')
            return false;
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool mtli_json_str_is(const mtli_json_node *n, const char *s)
{
    size_t l = strlen(s);
    return n->type == MTLI_JSON_STRING && n->slen == l && memcmp(n->str, s, l) == 0;
}
