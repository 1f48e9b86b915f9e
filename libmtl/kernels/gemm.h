/* Internal: the one entry point for matrix products. Every GEMM in the library goes through
 * this file, which is the only one that calls BLIS. Matrices are row-major with leading
 * dimensions (row strides) lda/ldb/ldc.
 *
 *   C[m x n] = alpha * op(A) * op(B) + beta * C,  op(X) = X or X^T
 *
 * Sizes are checked by the callers' shape validation; these functions assume valid sizes
 * (m, n, k >= 0) and return immediately when m or n is 0. */
#ifndef MTLI_GEMM_H
#define MTLI_GEMM_H

#include <stdbool.h>
#include <stddef.h>

#include "mtl/status.h"

/* Initialise BLIS once per process (kernel selection, thread count). Idempotent and
 * thread-safe; every public entry point that may multiply calls it implicitly. */
void mtli_blas_init(void);

void mtli_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
               const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
               size_t ldc);

/* C[n x n] = alpha * A * A^T + beta * C (A is n x k); fills the whole of C (both triangles). */
void mtli_syrk_full(size_t n, size_t k, float alpha, const float *a, size_t lda, float beta,
                    float *c, size_t ldc);

/* Reference triple loop in double precision, for tests. */
void mtli_gemm_reference(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                         const float *a, size_t lda, const float *b, size_t ldb, float beta,
                         float *c, size_t ldc);

/* Run-time facts for mtl_build_info and the thread setting. */
const char *mtli_blas_info(void);
const char *mtli_blas_kernels(void);
int mtli_blas_get_threads(void);
void mtli_blas_set_threads(int n);

#endif
