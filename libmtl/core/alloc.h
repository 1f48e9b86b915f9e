/* Internal: every heap allocation of the library goes through these, so tests can make any
 * allocation fail (mtli_alloc_fail_after) and prove that nothing leaks or crashes. */
#ifndef MTLI_ALLOC_H
#define MTLI_ALLOC_H

#include <stddef.h>

#include "mtl/status.h"

/* Cache-line (and AVX-512) alignment of large buffers. */
#define MTLI_ALIGN 64

void *mtli_malloc(size_t size);
void *mtli_calloc(size_t count, size_t size);
void *mtli_realloc(void *ptr, size_t size);
/* 64-byte aligned, zero-filled; free with mtli_free. */
void *mtli_aligned_calloc(size_t count, size_t size);
void mtli_free(void *ptr);
char *mtli_strdup(const char *s);

/* Overflow-checked a*b and a+b; return 0 and set the error (range) on overflow. */
int mtli_mul_size(size_t a, size_t b, size_t *out);
int mtli_add_size(size_t a, size_t b, size_t *out);

/* Test hook (not exported): make the n-th allocation from now on the calling thread fail
 * (n = 0: the next one); a negative n turns injection off. mtli_alloc_count returns the
 * number of allocation calls made on this thread since the last reset. */
void mtli_alloc_fail_after(long n);
long mtli_alloc_count(void);
void mtli_alloc_reset_count(void);

/* Shorthand: set the out-of-memory error naming what was being allocated. */
mtl_status mtli_oom(const char *what, size_t bytes);

#endif
