#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mtl/mtl.h>

#include "core/rng.h"
#include "kernels/gemm.h"
#include "test_main.h"

static void fill(float *x, size_t n, mtli_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = mtli_rng_uniform(r) * 2.0f - 1.0f;
}

/* Every transpose combination, odd sizes, padded leading dimensions, alpha/beta. */
START_TEST(gemm_matches_reference)
{
    mtli_rng r;
    mtli_rng_seed(&r, 42);
    const size_t sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 10, 256}, {130, 70, 3}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                size_t m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
                size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
                size_t arows = ta ? k : m, brows = tb ? n : k;
                float *a = malloc(arows * lda * sizeof(float));
                float *b = malloc(brows * ldb * sizeof(float));
                float *c = malloc(m * ldc * sizeof(float));
                float *ref = malloc(m * ldc * sizeof(float));
                fill(a, arows * lda, &r);
                fill(b, brows * ldb, &r);
                fill(c, m * ldc, &r);
                memcpy(ref, c, m * ldc * sizeof(float));
                mtli_gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, c, ldc);
                mtli_gemm_reference(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, ref, ldc);
                for (size_t i = 0; i < m; i++)
                    for (size_t j = 0; j < n; j++)
                        ck_assert_msg(fabsf(c[i * ldc + j] - ref[i * ldc + j]) <=
                                          1e-5f * (float)k + 1e-6f,
                                      "m=%zu n=%zu k=%zu ta=%d tb=%d at (%zu,%zu): %g vs %g", m,
                                      n, k, ta, tb, i, j, c[i * ldc + j], ref[i * ldc + j]);
                free(a);
                free(b);
                free(c);
                free(ref);
            }
}
END_TEST

START_TEST(gemm_beta_zero_ignores_nan_in_c)
{
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1}, c[4] = {NAN, NAN, NAN, NAN};
    mtli_gemm(false, false, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    ck_assert_float_eq(c[0], 1.0f);
    ck_assert_float_eq(c[3], 4.0f);
    float c2[4] = {NAN, NAN, NAN, NAN};
    mtli_gemm(false, false, 2, 2, 0, 1.0f, a, 2, b, 2, 0.0f, c2, 2);
    ck_assert_float_eq(c2[1], 0.0f);
}
END_TEST

START_TEST(syrk_is_symmetric_gram)
{
    mtli_rng r;
    mtli_rng_seed(&r, 7);
    float a[5 * 33], g[25], ref[25];
    fill(a, sizeof a / sizeof a[0], &r);
    mtli_syrk_full(5, 33, 1.0f, a, 33, 0.0f, g, 5);
    mtli_gemm_reference(false, true, 5, 5, 33, 1.0f, a, 33, a, 33, 0.0f, ref, 5);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) {
            ck_assert_float_eq(g[i * 5 + j], g[j * 5 + i]);
            ck_assert(fabsf(g[i * 5 + j] - ref[i * 5 + j]) < 1e-4f);
        }
}
END_TEST

/* On a CPU with AVX2 or AVX-512 the generic fallback must not be in use unless the user
 * chose it. */
START_TEST(kernels_are_not_the_generic_fallback)
{
    const char *k = mtl_blas_kernels();
    if (getenv("BLIS_ARCH_TYPE") == NULL) {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            ck_assert_msg(strcmp(k, "generic") != 0, "BLIS kernels: %s (%s)", k,
                          mtl_build_info());
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
            ck_assert_msg(strcmp(k, "skx") == 0 || strncmp(k, "zen", 3) == 0,
                          "BLIS kernels: %s", k);
#endif
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("gemm");
    tcase_add_test(tc, gemm_matches_reference);
    tcase_add_test(tc, gemm_beta_zero_ignores_nan_in_c);
    tcase_add_test(tc, syrk_is_symmetric_gram);
    tcase_add_test(tc, kernels_are_not_the_generic_fallback);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(suite)
