#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor_internal.h"

size_t mtli_dtype_size(mtl_dtype dtype)
{
    switch (dtype) {
    case MTL_FLOAT32: return sizeof(float);
    case MTL_INT32: return sizeof(int32_t);
    }
    return 0;
}

static const char *dtype_name(int dtype)
{
    switch (dtype) {
    case MTL_FLOAT32: return "float32";
    case MTL_INT32: return "int32";
    }
    return "unknown";
}

mtl_status mtli_check_shape(const char *fn, mtl_dtype dtype, int ndim, const int64_t *shape,
                            size_t *numel)
{
    if (mtli_dtype_size(dtype) == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: unknown dtype %d", fn, (int)dtype);
    if (ndim < 1 || ndim > MTL_TENSOR_MAX_DIMS)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: ndim is %d, expected 1..%d", fn, ndim,
                          MTL_TENSOR_MAX_DIMS);
    if (shape == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: argument 'shape' is NULL", fn);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                              "%s: shape[%d] is %lld, expected a size >= 1", fn, i,
                              (long long)shape[i]);
        if ((uint64_t)shape[i] > SIZE_MAX || !mtli_mul_size(n, (size_t)shape[i], &n)) {
            return mtli_error(MTL_ERR_RANGE, "%s: element count overflows at shape[%d] = %lld",
                              fn, i, (long long)shape[i]);
        }
    }
    size_t bytes;
    if (!mtli_mul_size(n, mtli_dtype_size(dtype), &bytes) || bytes > (SIZE_MAX >> 1))
        return mtli_error(MTL_ERR_RANGE, "%s: byte size of %zu elements overflows", fn, n);
    *numel = n;
    return MTL_OK;
}

mtl_status mtli_tensor_expect(const mtl_tensor *t, const char *what, mtl_dtype dtype)
{
    if (t == NULL)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    if (t->dtype != dtype)
        return mtli_error(MTL_ERR_SHAPE, "%s has dtype %s, expected %s", what,
                          dtype_name(t->dtype), dtype_name(dtype));
    return MTL_OK;
}

static mtl_status make(mtl_tensor **out, mtl_dtype dtype, int ndim, const int64_t *shape,
                       void *data, const char *fn)
{
    MTLI_CHECK_NULL(out, fn);
    *out = NULL;
    size_t numel = 0;
    MTLI_TRY(mtli_check_shape(fn, dtype, ndim, shape, &numel));
    mtl_tensor *t = mtli_calloc(1, sizeof *t);
    if (!t)
        return mtli_oom("tensor", sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->numel = numel;
    if (data) {
        t->data = data;
        t->owned = false;
    } else {
        t->data = mtli_aligned_calloc(numel, mtli_dtype_size(dtype));
        if (!t->data) {
            mtli_free(t);
            return mtli_oom("tensor data", numel * mtli_dtype_size(dtype));
        }
        t->owned = true;
    }
    *out = t;
    return MTL_OK;
}

MTL_API mtl_status mtl_tensor_create(mtl_tensor **out, mtl_dtype dtype, int ndim,
                                     const int64_t *shape)
{
    return make(out, dtype, ndim, shape, NULL, "mtl_tensor_create");
}

MTL_API mtl_status mtl_tensor_wrap(mtl_tensor **out, mtl_dtype dtype, void *data, int ndim,
                                   const int64_t *shape)
{
    if (data == NULL) {
        if (out)
            *out = NULL;
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_tensor_wrap: argument 'data' is NULL");
    }
    if ((uintptr_t)data % 4 != 0) { /* both dtypes are 4 bytes wide */
        if (out)
            *out = NULL;
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_tensor_wrap: data pointer %p is not 4-byte aligned", data);
    }
    return make(out, dtype, ndim, shape, data, "mtl_tensor_wrap");
}

MTL_API mtl_status mtl_tensor_clone(mtl_tensor **out, const mtl_tensor *src)
{
    MTLI_CHECK_NULL(out, "mtl_tensor_clone");
    *out = NULL;
    MTLI_CHECK_NULL(src, "mtl_tensor_clone");
    MTLI_TRY(make(out, src->dtype, src->ndim, src->shape, NULL, "mtl_tensor_clone"));
    memcpy((*out)->data, src->data, src->numel * mtli_dtype_size(src->dtype));
    return MTL_OK;
}

MTL_API mtl_status mtl_tensor_copy(mtl_tensor *dst, const mtl_tensor *src)
{
    MTLI_CHECK_NULL(dst, "mtl_tensor_copy");
    MTLI_CHECK_NULL(src, "mtl_tensor_copy");
    if (dst->dtype != src->dtype)
        return mtli_error(MTL_ERR_SHAPE, "mtl_tensor_copy: dtype %s into %s",
                          dtype_name(src->dtype), dtype_name(dst->dtype));
    if (dst->numel != src->numel)
        return mtli_error(MTL_ERR_SHAPE,
                          "mtl_tensor_copy: source has %zu elements, destination %zu",
                          src->numel, dst->numel);
    if (dst->data != src->data)
        memmove(dst->data, src->data, src->numel * mtli_dtype_size(src->dtype));
    return MTL_OK;
}

MTL_API mtl_status mtl_tensor_fill(mtl_tensor *t, double value)
{
    MTLI_CHECK_NULL(t, "mtl_tensor_fill");
    if (t->dtype == MTL_FLOAT32) {
        float v = (float)value;
        float *p = t->data;
        for (size_t i = 0; i < t->numel; i++)
            p[i] = v;
        return MTL_OK;
    }
    if (!(value >= INT32_MIN && value <= INT32_MAX) || value != floor(value))
        return mtli_error(MTL_ERR_RANGE,
                          "mtl_tensor_fill: value %g is not an int32 for an int32 tensor", value);
    int32_t v = (int32_t)value;
    int32_t *p = t->data;
    for (size_t i = 0; i < t->numel; i++)
        p[i] = v;
    return MTL_OK;
}

MTL_API mtl_status mtl_tensor_reshape(mtl_tensor *t, int ndim, const int64_t *shape)
{
    MTLI_CHECK_NULL(t, "mtl_tensor_reshape");
    size_t numel = 0;
    MTLI_TRY(mtli_check_shape("mtl_tensor_reshape", t->dtype, ndim, shape, &numel));
    if (numel != t->numel)
        return mtli_error(MTL_ERR_SHAPE,
                          "mtl_tensor_reshape: new shape has %zu elements, tensor has %zu", numel,
                          t->numel);
    t->ndim = ndim;
    for (int i = 0; i < MTL_TENSOR_MAX_DIMS; i++)
        t->shape[i] = i < ndim ? shape[i] : 0;
    return MTL_OK;
}

MTL_API void mtl_tensor_free(mtl_tensor *t)
{
    if (!t)
        return;
    if (t->owned)
        mtli_free(t->data);
    else if (t->release)
        t->release(t->release_ctx, t->data, t->numel * mtli_dtype_size(t->dtype));
    mtli_free(t);
}

#define NULL_TENSOR(fn) mtli_error(MTL_ERR_INVALID_ARGUMENT, fn ": argument 't' is NULL")

MTL_API int mtl_tensor_ndim(const mtl_tensor *t)
{
    if (!t) {
        NULL_TENSOR("mtl_tensor_ndim");
        return 0;
    }
    return t->ndim;
}

MTL_API int64_t mtl_tensor_dim(const mtl_tensor *t, int dim)
{
    if (!t) {
        NULL_TENSOR("mtl_tensor_dim");
        return 0;
    }
    if (dim < 0)
        dim += t->ndim;
    if (dim < 0 || dim >= t->ndim) {
        mtli_error(MTL_ERR_INVALID_ARGUMENT, "mtl_tensor_dim: dimension %d out of range for ndim %d",
                   dim, t->ndim);
        return 0;
    }
    return t->shape[dim];
}

MTL_API mtl_status mtl_tensor_shape(const mtl_tensor *t, int64_t *shape, int capacity)
{
    MTLI_CHECK_NULL(t, "mtl_tensor_shape");
    MTLI_CHECK_NULL(shape, "mtl_tensor_shape");
    if (capacity < t->ndim)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT,
                          "mtl_tensor_shape: capacity %d is smaller than ndim %d", capacity,
                          t->ndim);
    for (int i = 0; i < t->ndim; i++)
        shape[i] = t->shape[i];
    return MTL_OK;
}

MTL_API int mtl_tensor_dtype(const mtl_tensor *t)
{
    if (!t) {
        NULL_TENSOR("mtl_tensor_dtype");
        return -1;
    }
    return (int)t->dtype;
}

MTL_API int64_t mtl_tensor_numel(const mtl_tensor *t)
{
    if (!t) {
        NULL_TENSOR("mtl_tensor_numel");
        return 0;
    }
    return (int64_t)t->numel;
}

MTL_API size_t mtl_tensor_nbytes(const mtl_tensor *t)
{
    if (!t) {
        NULL_TENSOR("mtl_tensor_nbytes");
        return 0;
    }
    return t->numel * mtli_dtype_size(t->dtype);
}

MTL_API void *mtl_tensor_data(mtl_tensor *t)
{
    if (!t) {
        NULL_TENSOR("mtl_tensor_data");
        return NULL;
    }
    return t->data;
}

MTL_API const void *mtl_tensor_data_const(const mtl_tensor *t)
{
    if (!t) {
        NULL_TENSOR("mtl_tensor_data_const");
        return NULL;
    }
    return t->data;
}

MTL_API int mtl_tensor_is_owned(const mtl_tensor *t)
{
    if (!t) {
        NULL_TENSOR("mtl_tensor_is_owned");
        return 0;
    }
    return t->owned || t->release ? 1 : 0;
}
