/* libmtl — status codes and error messages. */
#ifndef MTL_STATUS_H
#define MTL_STATUS_H

#include "mtl/version.h"

MTL_BEGIN_DECLS

/* Every fallible call returns one of these. Values are fixed forever: new codes are only
 * appended. Since 1.0. */
typedef enum mtl_status {
    MTL_OK = 0,
    MTL_ERR_INVALID_ARGUMENT = 1, /* a NULL handle, a bad size, an unknown name or key */
    MTL_ERR_SHAPE = 2,            /* tensor shapes or dtypes do not fit together */
    MTL_ERR_OUT_OF_MEMORY = 3,    /* an allocation failed; nothing was changed or leaked */
    MTL_ERR_IO = 4,               /* a file could not be opened, read, written or renamed */
    MTL_ERR_FORMAT = 5,           /* a file or text is malformed, truncated or corrupted */
    MTL_ERR_NUMERIC = 6,          /* NaN/Inf in a loss or gradient, or a solver failed */
    MTL_ERR_STATE = 7,            /* the call is not valid in the object's current state */
    MTL_ERR_UNSUPPORTED = 8,      /* a valid request this build or object does not support */
    MTL_ERR_RANGE = 9,            /* a value is outside its allowed range */
    MTL_ERR_NOT_FOUND = 10,       /* a named item (task, parameter, key) does not exist */
    MTL_ERR_INTERNAL = 11         /* a broken invariant inside the library (please report) */
} mtl_status;

/* A short constant description of a status ("invalid argument"); never NULL, also for
 * unknown values. Since 1.0. */
MTL_API const char *mtl_status_string(mtl_status status);

/* The detail message of the most recent failure on the calling thread, naming the argument
 * and values involved. Never NULL ("" when no call has failed yet). The text stays valid
 * until the next libmtl call on this thread. Successful calls do not clear it. Since 1.0. */
MTL_API const char *mtl_last_error(void);

/* The status of the most recent failure on the calling thread (MTL_OK if none). Since 1.0. */
MTL_API mtl_status mtl_last_status(void);

/* Forget the calling thread's last error. Since 1.0. */
MTL_API void mtl_clear_error(void);

MTL_END_DECLS

#endif
