/* Internal: IDX reading for the Fashion-MNIST based builders (fashion.c), visible to the
 * tests. */
#ifndef MTLI_DATA_FASHION_H
#define MTLI_DATA_FASHION_H

#include <stdint.h>

#include "mtl/status.h"

/* Read an IDX file of unsigned bytes with ndim (1..3) dimensions from path, gzip-compressed
 * (detected by its magic bytes) or plain. On success *data receives the payload
 * (mtli_malloc'ed, product of the dims bytes; free with mtli_free) and dims[0..ndim-1] the
 * sizes. Errors: io (cannot open or read path), format (corrupt or truncated gzip data, a
 * magic number other than 0x000008<ndim>, a zero dimension, a payload shorter or longer than
 * the dims promise; the message names path), out of memory. */
mtl_status mtli_idx_load(const char *path, int ndim, uint32_t *dims, uint8_t **data);

#endif
