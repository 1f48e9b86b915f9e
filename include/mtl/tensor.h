/* libmtl — tensors: contiguous row-major float32 or int32 arrays of 1 to 4 dimensions. */
#ifndef MTL_TENSOR_H
#define MTL_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include "mtl/status.h"

MTL_BEGIN_DECLS

/* Opaque tensor handle. Since 1.0. */
typedef struct mtl_tensor mtl_tensor;

/* Element types. Values are fixed forever. Since 1.0. */
typedef enum mtl_dtype {
    MTL_FLOAT32 = 0,
    MTL_INT32 = 1
} mtl_dtype;

#define MTL_TENSOR_MAX_DIMS 4

/* Create an owned, zero-filled tensor. shape holds ndim (1..4) sizes, each >= 1.
 * *out receives a handle the caller frees with mtl_tensor_free. Errors: invalid argument
 * (NULL pointers, bad ndim or sizes, unknown dtype), range (byte size overflows),
 * out of memory. Since 1.0. */
MTL_API mtl_status mtl_tensor_create(mtl_tensor **out, mtl_dtype dtype, int ndim,
                                     const int64_t *shape);

/* Wrap a caller-owned buffer without copying. The buffer must hold the product of the sizes
 * elements of dtype, be suitably aligned for it, and outlive the tensor; it stays the
 * caller's (mtl_tensor_free does not free it). Since 1.0. */
MTL_API mtl_status mtl_tensor_wrap(mtl_tensor **out, mtl_dtype dtype, void *data, int ndim,
                                   const int64_t *shape);

/* Create an owned deep copy of src (same dtype and shape). Since 1.0. */
MTL_API mtl_status mtl_tensor_clone(mtl_tensor **out, const mtl_tensor *src);

/* Copy the elements of src into dst; both must have the same dtype and element count
 * (shapes may differ). Since 1.0. */
MTL_API mtl_status mtl_tensor_copy(mtl_tensor *dst, const mtl_tensor *src);

/* Set every element to value (converted to the tensor's dtype; for int32 the value must be
 * an integer within int32 range). Since 1.0. */
MTL_API mtl_status mtl_tensor_fill(mtl_tensor *t, double value);

/* Change the shape of t in place, keeping its elements; the element count must not change.
 * Since 1.0. */
MTL_API mtl_status mtl_tensor_reshape(mtl_tensor *t, int ndim, const int64_t *shape);

/* Free a tensor (its buffer too, when owned). Accepts NULL. Since 1.0. */
MTL_API void mtl_tensor_free(mtl_tensor *t);

/* Accessors. On a NULL tensor they return 0 / NULL / -1 (dtype) and set the last error.
 * Since 1.0. */
MTL_API int mtl_tensor_ndim(const mtl_tensor *t);
/* Size of dimension dim (0-based; negative counts from the end); 0 when out of range. */
MTL_API int64_t mtl_tensor_dim(const mtl_tensor *t, int dim);
/* Copy the shape into shape[0..ndim-1]; capacity is the length of shape. Since 1.0. */
MTL_API mtl_status mtl_tensor_shape(const mtl_tensor *t, int64_t *shape, int capacity);
MTL_API int mtl_tensor_dtype(const mtl_tensor *t);
MTL_API int64_t mtl_tensor_numel(const mtl_tensor *t);
MTL_API size_t mtl_tensor_nbytes(const mtl_tensor *t);
/* Borrowed pointer to the elements (the caller's own buffer for wrapped tensors). */
MTL_API void *mtl_tensor_data(mtl_tensor *t);
MTL_API const void *mtl_tensor_data_const(const mtl_tensor *t);
/* 1 when the tensor owns its buffer, 0 when it wraps caller memory. */
MTL_API int mtl_tensor_is_owned(const mtl_tensor *t);

MTL_END_DECLS

#endif
