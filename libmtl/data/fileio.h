/* Internal: whole-file reads and atomic writes for the data formats (npy, encoder files).
 * Every failure sets the last error naming the path and the system error. */
#ifndef MTLI_DATA_FILEIO_H
#define MTLI_DATA_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "mtl/status.h"

/* Copy the description of errno value err into buf (locale-independent enough for messages,
 * thread-safe). Returns buf. */
const char *mtli_data_strerror(int err, char *buf, size_t size);

/* Open path for reading; *fd receives the descriptor and *size the file size. Fails with
 * MTL_ERR_IO when it cannot be opened or is not a regular file. fn names the caller. */
mtl_status mtli_data_open(int *fd, size_t *size, const char *path, const char *fn);

/* Read exactly n bytes at the current position. *got receives the bytes read (less than n
 * only at end of file, which is not an error here). */
mtl_status mtli_data_read(int fd, void *buf, size_t n, size_t *got, const char *path,
                          const char *fn);

/* Read a whole file into a new buffer (mtli_malloc'ed, with one extra NUL byte after the
 * content). */
mtl_status mtli_data_read_file(char **data, size_t *size, const char *path, const char *fn);

/* Atomic writer: bytes go to "<path>.tmp.XXXXXX" in the target's directory; commit flushes
 * them to disk and renames the file over path; abort removes it. After commit or abort the
 * writer holds nothing. */
typedef struct mtli_data_writer {
    int fd;
    char *tmp;
    const char *path;
    const char *fn;
} mtli_data_writer;

mtl_status mtli_data_writer_open(mtli_data_writer *w, const char *path, const char *fn);
mtl_status mtli_data_writer_write(mtli_data_writer *w, const void *data, size_t n);
mtl_status mtli_data_writer_commit(mtli_data_writer *w);
void mtli_data_writer_abort(mtli_data_writer *w);

/* Little-endian encoding helpers. */
static inline void mtli_le_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t mtli_le_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t mtli_le_get64(const unsigned char *p)
{
    return (uint64_t)mtli_le_get32(p) | (uint64_t)mtli_le_get32(p + 4) << 32;
}

static inline void mtli_le_put64(unsigned char *p, uint64_t v)
{
    mtli_le_put32(p, (uint32_t)v);
    mtli_le_put32(p + 4, (uint32_t)(v >> 32));
}

/* CRC-32 (IEEE 802.3, the zlib one), continued from crc (start with 0). */
uint32_t mtli_data_crc32(uint32_t crc, const void *data, size_t n);

#endif
