/* The only file that calls BLIS. Also chooses BLIS's kernel configuration at start-up:
 * Debian's BLIS 0.9.0 does not recognise recent CPUs (AMD Zen 4/5 and later) and then falls
 * back to its portable "generic" kernels, several times slower than the AVX-512 ("skx") or
 * AVX2 ("haswell") kernels those CPUs run correctly. BLIS reads BLIS_ARCH_TYPE (a numeric
 * arch_t id) once, at its initialisation, so the choice is made here before the first BLIS
 * call, and never overrides a value the user set. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>

#include "kernels/gemm.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_reason[160];
static char g_info[512];

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

typedef struct {
    int intel, amd, family;
    int avx2, fma, avx512; /* avx512: F, DQ, CD, BW and VL, as the skx kernels need */
    int os_avx, os_avx512;
} cpu_features;

static cpu_features detect_cpu(void)
{
    cpu_features f;
    memset(&f, 0, sizeof f);
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d))
        return f;
    unsigned maxleaf = a;
    char vendor[13];
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    vendor[12] = 0;
    f.intel = strcmp(vendor, "GenuineIntel") == 0;
    f.amd = strcmp(vendor, "AuthenticAMD") == 0;
    __get_cpuid(1, &a, &b, &c, &d);
    int base_family = (a >> 8) & 0xf;
    f.family = base_family == 0xf ? base_family + (int)((a >> 20) & 0xff) : base_family;
    f.fma = (c >> 12) & 1;
    int osxsave = (c >> 27) & 1;
    int avx = (c >> 28) & 1;
    if (osxsave && avx) {
        unsigned xlo, xhi;
        __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
        f.os_avx = (xlo & 0x6) == 0x6;
        f.os_avx512 = (xlo & 0xe6) == 0xe6;
    }
    if (maxleaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f.avx2 = (b >> 5) & 1;
        int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512cd = (b >> 28) & 1;
        int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
        f.avx512 = avx512f && avx512dq && avx512cd && avx512bw && avx512vl;
    }
    return f;
}
#endif

static void choose_kernels(void)
{
    const char *user = getenv("BLIS_ARCH_TYPE");
    if (user && *user) {
        snprintf(g_reason, sizeof g_reason, "chosen by the user (BLIS_ARCH_TYPE=%s)", user);
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    cpu_features f = detect_cpu();
    /* The families BLIS 0.9.0 maps to its own AMD configurations (zen, zen2, zen3, and the
     * bulldozer line); anything newer is a fallback to "generic". */
    int amd_known = f.amd && (f.family == 0x15 || f.family == 0x17 || f.family == 0x19);
    if (f.avx512 && f.os_avx512 && f.fma) {
        if (f.intel) {
            snprintf(g_reason, sizeof g_reason, "detected by BLIS (Intel AVX-512)");
            return;
        }
        setenv("BLIS_ARCH_TYPE", "0", 0); /* BLIS_ARCH_SKX */
        snprintf(g_reason, sizeof g_reason,
                 "selected by libmtl: AVX-512 CPU (%s family 0x%x) that BLIS would not use "
                 "AVX-512 kernels for",
                 f.amd ? "AMD" : "x86", f.family);
        return;
    }
    if (f.avx2 && f.fma && f.os_avx && !f.intel && !amd_known) {
        setenv("BLIS_ARCH_TYPE", "3", 0); /* BLIS_ARCH_HASWELL */
        snprintf(g_reason, sizeof g_reason,
                 "selected by libmtl: AVX2/FMA CPU (family 0x%x) not recognised by BLIS",
                 f.family);
        return;
    }
#endif
    snprintf(g_reason, sizeof g_reason, "detected by BLIS");
}

static void init_once(void)
{
    choose_kernels();
    bli_init();
    /* One thread unless the user asked BLIS for more through its own variables. */
    if (!getenv("BLIS_NUM_THREADS") && !getenv("OMP_NUM_THREADS"))
        bli_thread_set_num_threads(1);
    const char *threading = bli_info_get_enable_pthreads() ? "pthreads"
                            : bli_info_get_enable_openmp() ? "openmp"
                                                           : "serial";
    snprintf(g_info, sizeof g_info, "BLIS %s (%s); kernels %s, %s", bli_info_get_version_str(),
             threading, bli_arch_string(bli_arch_query_id()), g_reason);
}

void mtli_blas_init(void) { pthread_once(&g_once, init_once); }

const char *mtli_blas_info(void)
{
    mtli_blas_init();
    return g_info;
}

const char *mtli_blas_kernels(void)
{
    mtli_blas_init();
    return bli_arch_string(bli_arch_query_id());
}

int mtli_blas_get_threads(void)
{
    mtli_blas_init();
    dim_t n = bli_thread_get_num_threads();
    return n < 1 ? 1 : (int)n;
}

void mtli_blas_set_threads(int n)
{
    mtli_blas_init();
    bli_thread_set_num_threads((dim_t)n);
}

void mtli_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
               const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
               size_t ldc)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    mtli_blas_init();
    /* Row-major X with leading dimension ld: row stride ld, column stride 1. op(X) = X^T is
     * the same memory with the strides swapped, so no transposition flags are needed. */
    float al = alpha, be = beta;
    bli_sgemm(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
              trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &al,
              (float *)a, (inc_t)lda, 1, (float *)b, (inc_t)ldb, 1, &be, c, (inc_t)ldc, 1);
}

void mtli_syrk_full(size_t n, size_t k, float alpha, const float *a, size_t lda, float beta,
                    float *c, size_t ldc)
{
    if (n == 0)
        return;
    mtli_gemm(false, true, n, n, k, alpha, a, lda, a, lda, beta, c, ldc);
    /* make exactly symmetric (GEMM rounding can differ between the two triangles) */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            c[j * ldc + i] = c[i * ldc + j];
}

void mtli_gemm_reference(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                         const float *a, size_t lda, const float *b, size_t ldb, float beta,
                         float *c, size_t ldc)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0.0;
            for (size_t p = 0; p < k; p++) {
                double av = trans_a ? a[p * lda + i] : a[i * lda + p];
                double bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                s += av * bv;
            }
            double prev = beta == 0.0f ? 0.0 : (double)beta * c[i * ldc + j];
            c[i * ldc + j] = (float)(alpha * s + prev);
        }
}
