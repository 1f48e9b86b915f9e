/* Internal: a small, strict JSON parser (RFC 8259) for file headers such as safetensors'.
 *
 * The input must be valid UTF-8; strings are decoded (escapes, surrogate pairs) into memory
 * owned by the document; numbers keep their text and are converted on request; objects with
 * a repeated key are rejected; nesting is limited to MTLI_JSON_MAX_DEPTH. Every error is
 * MTL_ERR_FORMAT with the byte offset, or MTL_ERR_OUT_OF_MEMORY. */
#ifndef MTLI_JSON_H
#define MTLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mtl/status.h"

#define MTLI_JSON_MAX_DEPTH 64

typedef enum {
    MTLI_JSON_NULL,
    MTLI_JSON_BOOL,
    MTLI_JSON_NUMBER,
    MTLI_JSON_STRING,
    MTLI_JSON_ARRAY,
    MTLI_JSON_OBJECT
} mtli_json_type;

#define MTLI_JSON_NONE ((size_t)-1)

typedef struct mtli_json_node {
    mtli_json_type type;
    const char *key;  /* member name inside an object (decoded), else NULL */
    size_t klen;
    const char *str;  /* STRING: decoded bytes; NUMBER: the literal text */
    size_t slen;
    bool b;           /* BOOL */
    size_t child;     /* ARRAY/OBJECT: index of the first element, or MTLI_JSON_NONE */
    size_t next;      /* next sibling, or MTLI_JSON_NONE */
    size_t count;     /* ARRAY/OBJECT: number of elements */
    size_t offset;    /* byte offset in the text, for messages */
} mtli_json_node;

typedef struct mtli_json {
    mtli_json_node *nodes; /* nodes[0] is the root */
    size_t nnodes, cap;
    char *strings;         /* decoded strings */
    size_t slen;
} mtli_json;

/* Parse text[0..n) as one JSON value surrounded by optional whitespace. `what` names the
 * text in messages ("safetensors header"). On error the document is empty. */
mtl_status mtli_json_parse(mtli_json *doc, const char *text, size_t n, const char *what);
void mtli_json_free(mtli_json *doc);

/* Member of an object by key (NULL when absent). */
const mtli_json_node *mtli_json_member(const mtli_json *doc, const mtli_json_node *obj,
                                       const char *key);
/* First child / next sibling (NULL at the end). */
const mtli_json_node *mtli_json_first(const mtli_json *doc, const mtli_json_node *n);
const mtli_json_node *mtli_json_next(const mtli_json *doc, const mtli_json_node *n);
/* A number written as a non-negative integer (no sign, fraction or exponent) that fits in
 * 64 bits. */
bool mtli_json_u64(const mtli_json_node *n, uint64_t *out);
/* Whether a STRING node equals s. */
bool mtli_json_str_is(const mtli_json_node *n, const char *s);

/* Validate UTF-8 (no overlong forms, surrogates or values above U+10FFFF); returns the
 * offset of the first bad byte, or n when all is valid. */
size_t mtli_utf8_check(const unsigned char *s, size_t n);

#endif
