#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

#define MTLI_ERRBUF 1024

static _Thread_local char tl_message[MTLI_ERRBUF];
static _Thread_local mtl_status tl_status = MTL_OK;

mtl_status mtli_error(mtl_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_message, sizeof tl_message, fmt, ap);
    va_end(ap);
    tl_status = status;
    return status;
}

void mtli_error_prefix(const char *fmt, ...)
{
    char prefix[256];
    char old[MTLI_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tl_message, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof tl_message - 3)
        n = sizeof tl_message - 3;
    memcpy(tl_message, prefix, n);
    tl_message[n] = ':';
    tl_message[n + 1] = ' ';
    size_t room = sizeof tl_message - n - 2;
    size_t m = strnlen(old, room - 1);
    memcpy(tl_message + n + 2, old, m);
    tl_message[n + 2 + m] = '\0';
}

MTL_API const char *mtl_last_error(void) { return tl_message; }

MTL_API mtl_status mtl_last_status(void) { return tl_status; }

MTL_API void mtl_clear_error(void)
{
    tl_message[0] = '\0';
    tl_status = MTL_OK;
}

MTL_API const char *mtl_status_string(mtl_status status)
{
    switch (status) {
    case MTL_OK: return "ok";
    case MTL_ERR_INVALID_ARGUMENT: return "invalid argument";
    case MTL_ERR_SHAPE: return "shape mismatch";
    case MTL_ERR_OUT_OF_MEMORY: return "out of memory";
    case MTL_ERR_IO: return "input/output error";
    case MTL_ERR_FORMAT: return "format error";
    case MTL_ERR_NUMERIC: return "numeric error (NaN/Inf or solver failure)";
    case MTL_ERR_STATE: return "invalid state";
    case MTL_ERR_UNSUPPORTED: return "unsupported";
    case MTL_ERR_RANGE: return "value out of range";
    case MTL_ERR_NOT_FOUND: return "not found";
    case MTL_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}
