/* Internal: the tensor struct, visible to the library only. */
#ifndef MTLI_TENSOR_INTERNAL_H
#define MTLI_TENSOR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mtl/tensor.h"

struct mtl_tensor {
    mtl_dtype dtype;
    int ndim;
    int64_t shape[MTL_TENSOR_MAX_DIMS];
    size_t numel;
    void *data;
    bool owned;
    /* For buffers that are neither owned nor the caller's (a memory-mapped file): called by
     * mtl_tensor_free as release(release_ctx, data, byte size). NULL otherwise. */
    void (*release)(void *ctx, void *data, size_t bytes);
    void *release_ctx;
};

/* Tensors can carry a release callback (libmtl/data/npy.c maps large files when set). */
#define MTLI_TENSOR_HAS_RELEASE 1

size_t mtli_dtype_size(mtl_dtype dtype);

/* Validate dtype/ndim/shape; on success store the element count. fn names the caller. */
mtl_status mtli_check_shape(const char *fn, mtl_dtype dtype, int ndim, const int64_t *shape,
                            size_t *numel);

/* Check that tensor t (argument name `what`) is float32 or int32 as wanted. */
mtl_status mtli_tensor_expect(const mtl_tensor *t, const char *what, mtl_dtype dtype);

#endif
