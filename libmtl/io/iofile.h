/* Internal: checksums, whole-file reads and atomic file writes shared by the file formats. */
#ifndef MTLI_IOFILE_H
#define MTLI_IOFILE_H

#include <stddef.h>
#include <stdint.h>

#include "mtl/status.h"

/* CRC-32 of ISO-HDLC / IEEE 802.3 (the one of zlib, PNG and gzip: reflected polynomial
 * 0xEDB88320, initial value and final xor 0xFFFFFFFF). Pass 0 to start and the previous
 * result to continue: mtli_crc32(mtli_crc32(0, a, n), b, m) == CRC of a followed by b. */
uint32_t mtli_crc32(uint32_t crc, const void *data, size_t n);

/* Read a whole regular file into a new buffer (mtli_malloc; free with mtli_free). `what`
 * names the caller in messages ("mtl_checkpoint_load"). Errors: io (cannot open or read, not a
 * regular file), out of memory. */
mtl_status mtli_read_file(const char *path, const char *what, unsigned char **data,
                          size_t *size);

/* Atomic writer: bytes go to a temporary file created next to the target; commit flushes
 * them, fsyncs, renames over the target and fsyncs the directory. Any failure (at open, a
 * write, or commit) removes the temporary file and leaves the target untouched. Write errors
 * are sticky and reported by commit. */
#define MTLI_ATOMIC_BUFSIZE 16384
typedef struct mtli_atomic {
    int fd;
    char *path, *tmp_path;
    const char *what;
    size_t used;
    int err;      /* errno of the first failed write, 0 if none */
    unsigned char buf[MTLI_ATOMIC_BUFSIZE];
} mtli_atomic;

mtl_status mtli_atomic_open(mtli_atomic *a, const char *path, const char *what);
void mtli_atomic_write(mtli_atomic *a, const void *data, size_t n);
mtl_status mtli_atomic_commit(mtli_atomic *a);
/* Give up: close and remove the temporary file (safe after a failed open or commit). */
void mtli_atomic_abort(mtli_atomic *a);

/* Little-endian stores and loads. */
static inline void mtli_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
static inline void mtli_put_u64(unsigned char *p, uint64_t v)
{
    mtli_put_u32(p, (uint32_t)v);
    mtli_put_u32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t mtli_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t mtli_get_u64(const unsigned char *p)
{
    return (uint64_t)mtli_get_u32(p) | (uint64_t)mtli_get_u32(p + 4) << 32;
}

#endif
