/* Internal: the building blocks of the checkpoint format (docs/checkpoint-format.md).
 *
 * Writing: an encoder emits little-endian values either to an atomic file (checksumming the
 * bytes as they go) or nowhere, only counting them, so a section's length is known before
 * its payload is written without holding the payload in memory.
 *
 * Reading: a record is a list of typed, named properties ending with an end marker. A record
 * is validated as a whole (every length inside the payload, keys unique) when it is opened,
 * so the accessors below cannot run past the data. */
#ifndef MTLI_CKCODEC_H
#define MTLI_CKCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/iofile.h"
#include "mtl/status.h"

/* Property types (stored as one byte). */
enum {
    MTLI_P_END = 0,  /* end of record (no key, no value) */
    MTLI_P_INT = 1,  /* i64 */
    MTLI_P_REAL = 2, /* IEEE-754 binary64 */
    MTLI_P_TEXT = 3, /* u32 byte length + UTF-8 bytes (no NUL) */
    MTLI_P_F32S = 4, /* u64 count + count binary32 */
    MTLI_P_F64S = 5, /* u64 count + count binary64 */
    MTLI_P_U64S = 6  /* u64 count + count u64 */
};

#define MTLI_MAX_KEY 255
#define MTLI_MAX_TEXT (1u << 20)

typedef struct mtli_enc {
    mtli_atomic *out; /* NULL: only count */
    uint64_t n;       /* bytes emitted */
    uint32_t crc;     /* CRC-32 of the bytes since the last mtli_enc_mark */
    uint32_t fcrc;    /* CRC-32 of every byte emitted to out */
} mtli_enc;

void mtli_enc_raw(mtli_enc *e, const void *p, size_t n);
void mtli_enc_u32(mtli_enc *e, uint32_t v);
void mtli_enc_u64(mtli_enc *e, uint64_t v);
void mtli_enc_end(mtli_enc *e);
void mtli_enc_int(mtli_enc *e, const char *key, int64_t v);
void mtli_enc_real(mtli_enc *e, const char *key, double v);
void mtli_enc_text(mtli_enc *e, const char *key, const char *v);
void mtli_enc_f32s(mtli_enc *e, const char *key, const float *v, size_t n);
void mtli_enc_f64s(mtli_enc *e, const char *key, const double *v, size_t n);
void mtli_enc_u64s(mtli_enc *e, const char *key, const uint64_t *v, size_t n);

/* A read cursor over one section's payload. */
typedef struct mtli_dec {
    const unsigned char *p;
    size_t n, pos;
    const char *section; /* tag text, for messages */
} mtli_dec;

/* One record: the bytes of its properties (end marker excluded). */
typedef struct mtli_rec {
    const unsigned char *p;
    size_t n;
    const char *what; /* what the record describes, for messages ("trunk layer 2") */
} mtli_rec;

typedef struct mtli_prop {
    const char *key; /* not NUL-terminated */
    size_t klen;
    int type;
    int64_t i;                 /* INT */
    double d;                  /* REAL */
    const unsigned char *data; /* TEXT bytes or array elements (little-endian) */
    uint64_t count;            /* TEXT byte length or array element count */
} mtli_prop;

/* Open the next record at the cursor (MTL_ERR_FORMAT when malformed or missing). */
mtl_status mtli_dec_record(mtli_dec *d, mtli_rec *r, const char *what);
/* Iterate a record's properties: *pos starts at 0; returns false at the end. */
bool mtli_rec_next(const mtli_rec *r, size_t *pos, mtli_prop *p);
bool mtli_prop_is(const mtli_prop *p, const char *key);
/* Find a property; false when absent. */
bool mtli_rec_find(const mtli_rec *r, const char *key, mtli_prop *p);

/* Typed getters: a missing property (when required) or one of another type or out of range
 * is MTL_ERR_FORMAT naming the record and key. When not required and absent, *out is left
 * as it is and *found (may be NULL) is false. */
mtl_status mtli_rec_int(const mtli_rec *r, const char *key, bool required, int64_t lo,
                        int64_t hi, int64_t *out, bool *found);
mtl_status mtli_rec_real(const mtli_rec *r, const char *key, bool required, double *out,
                         bool *found);
/* Copies the text into buf (cap bytes with NUL); longer text is MTL_ERR_FORMAT. */
mtl_status mtli_rec_text(const mtli_rec *r, const char *key, bool required, char *buf,
                         size_t cap, bool *found);
/* Arrays: the element pointer (little-endian, unaligned) and count, checked against type. */
mtl_status mtli_rec_array(const mtli_rec *r, const char *key, int type, bool required,
                          const unsigned char **data, uint64_t *count, bool *found);

float mtli_load_f32(const unsigned char *p);
double mtli_load_f64(const unsigned char *p);
/* Decode n little-endian binary32 values into dst. */
void mtli_load_f32s(float *dst, const unsigned char *src, size_t n);

#endif
