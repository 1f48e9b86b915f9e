/* Internal: setting the thread-local last error. */
#ifndef MTLI_ERROR_H
#define MTLI_ERROR_H

#include "mtl/status.h"

#if defined(__GNUC__)
#  define MTLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define MTLI_PRINTF(a, b)
#endif

/* Record status and a formatted detail message for the calling thread; returns status so
 * callers can write `return mtli_error(MTL_ERR_SHAPE, "...", ...);`. */
mtl_status mtli_error(mtl_status status, const char *fmt, ...) MTLI_PRINTF(2, 3);

/* Prefix the current thread's message with "context: " (used to add which head/layer). */
void mtli_error_prefix(const char *fmt, ...) MTLI_PRINTF(1, 2);

#define MTLI_CHECK_NULL(ptr, fn)                                                           \
    do {                                                                                   \
        if ((ptr) == NULL)                                                                 \
            return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: argument '%s' is NULL", (fn), \
                              #ptr);                                                       \
    } while (0)

#define MTLI_TRY(expr)                 \
    do {                               \
        mtl_status mtli_st_ = (expr);  \
        if (mtli_st_ != MTL_OK)        \
            return mtli_st_;           \
    } while (0)

#endif
