#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"

static _Thread_local long tl_fail_after = -1;
static _Thread_local long tl_count = 0;

static int should_fail(void)
{
    tl_count++;
    if (tl_fail_after < 0)
        return 0;
    if (tl_fail_after == 0) {
        tl_fail_after = -1;
        return 1;
    }
    tl_fail_after--;
    return 0;
}

void mtli_alloc_fail_after(long n) { tl_fail_after = n; }
long mtli_alloc_count(void) { return tl_count; }
void mtli_alloc_reset_count(void) { tl_count = 0; }

void *mtli_malloc(size_t size)
{
    if (should_fail())
        return NULL;
    return malloc(size ? size : 1);
}

void *mtli_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    if (count == 0 || size == 0)
        count = size = 1;
    return calloc(count, size);
}

void *mtli_realloc(void *ptr, size_t size)
{
    if (should_fail())
        return NULL;
    return realloc(ptr, size ? size : 1);
}

void *mtli_aligned_calloc(size_t count, size_t size)
{
    size_t bytes;
    if (!mtli_mul_size(count, size, &bytes))
        return NULL;
    if (should_fail())
        return NULL;
    /* aligned_alloc needs a size that is a multiple of the alignment */
    size_t rounded = (bytes + MTLI_ALIGN - 1) / MTLI_ALIGN * MTLI_ALIGN;
    if (rounded == 0)
        rounded = MTLI_ALIGN;
    if (rounded < bytes)
        return NULL;
    void *p = aligned_alloc(MTLI_ALIGN, rounded);
    if (p)
        memset(p, 0, rounded);
    return p;
}

void mtli_free(void *ptr) { free(ptr); }

char *mtli_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mtli_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

int mtli_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) {
        mtli_error(MTL_ERR_RANGE, "size overflow: %zu * %zu does not fit in size_t", a, b);
        return 0;
    }
    *out = a * b;
    return 1;
}

int mtli_add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a) {
        mtli_error(MTL_ERR_RANGE, "size overflow: %zu + %zu does not fit in size_t", a, b);
        return 0;
    }
    *out = a + b;
    return 1;
}

mtl_status mtli_oom(const char *what, size_t bytes)
{
    return mtli_error(MTL_ERR_OUT_OF_MEMORY, "out of memory allocating %s (%zu bytes)", what,
                      bytes);
}
