/* Internal: .npy reading details visible to the tests. */
#ifndef MTLI_DATA_NPY_H
#define MTLI_DATA_NPY_H

#include <stddef.h>

/* Files at least this large whose stored dtype is already <f4 or <i4 (with 4-byte aligned
 * data) are memory-mapped (MAP_PRIVATE, copy on write) instead of read, when the tensor
 * core supports a release callback (MTLI_TENSOR_HAS_RELEASE); otherwise they are read. */
#define MTLI_NPY_MMAP_MIN_BYTES ((size_t)64 << 20)

/* Test hook: change the mapping threshold for the calling thread (SIZE_MAX: never map);
 * returns the previous value. */
size_t mtli_npy_set_mmap_threshold(size_t bytes);

/* 1 when this build can memory-map .npy files (see above). */
int mtli_npy_can_map(void);

#endif
