#include <stdint.h>
#include <string.h>

#include <mtl/mtl.h>

#include "test_main.h"

START_TEST(create_is_zeroed_and_owned)
{
    mtl_tensor *t = NULL;
    int64_t shape[3] = {2, 3, 4};
    ck_assert_ok(mtl_tensor_create(&t, MTL_FLOAT32, 3, shape));
    ck_assert_int_eq(mtl_tensor_ndim(t), 3);
    ck_assert_int_eq(mtl_tensor_numel(t), 24);
    ck_assert_uint_eq(mtl_tensor_nbytes(t), 96);
    ck_assert_int_eq(mtl_tensor_dim(t, -1), 4);
    ck_assert_int_eq(mtl_tensor_dtype(t), MTL_FLOAT32);
    ck_assert_int_eq(mtl_tensor_is_owned(t), 1);
    const float *d = mtl_tensor_data(t);
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq(d[i], 0.0f);
    ck_assert_uint_eq((uintptr_t)d % 64, 0);
    int64_t got[4];
    ck_assert_ok(mtl_tensor_shape(t, got, 4));
    ck_assert_int_eq(got[0], 2);
    ck_assert_int_eq(got[2], 4);
    ck_assert_status(mtl_tensor_shape(t, got, 2), MTL_ERR_INVALID_ARGUMENT);
    mtl_tensor_free(t);
}
END_TEST

START_TEST(wrap_is_zero_copy_and_borrowed)
{
    int32_t buf[6] = {1, 2, 3, 4, 5, 6};
    mtl_tensor *t = NULL;
    int64_t shape[2] = {2, 3};
    ck_assert_ok(mtl_tensor_wrap(&t, MTL_INT32, buf, 2, shape));
    ck_assert_ptr_eq(mtl_tensor_data(t), buf);
    ck_assert_int_eq(mtl_tensor_is_owned(t), 0);
    ck_assert_ok(mtl_tensor_fill(t, 7));
    ck_assert_int_eq(buf[5], 7);
    mtl_tensor_free(t); /* must not free buf */
    ck_assert_int_eq(buf[0], 7);
}
END_TEST

START_TEST(clone_copy_fill_reshape)
{
    mtl_tensor *a = NULL, *b = NULL, *c = NULL;
    int64_t s6[1] = {6}, s23[2] = {2, 3}, s7[1] = {7};
    ck_assert_ok(mtl_tensor_create(&a, MTL_FLOAT32, 1, s6));
    ck_assert_ok(mtl_tensor_fill(a, 2.5));
    ck_assert_ok(mtl_tensor_clone(&b, a));
    ck_assert_ptr_ne(mtl_tensor_data(b), mtl_tensor_data(a));
    ck_assert_float_eq(((float *)mtl_tensor_data(b))[5], 2.5f);
    ck_assert_ok(mtl_tensor_reshape(b, 2, s23));
    ck_assert_int_eq(mtl_tensor_dim(b, 1), 3);
    ck_assert_status(mtl_tensor_reshape(b, 1, s7), MTL_ERR_SHAPE);
    ck_assert_ok(mtl_tensor_create(&c, MTL_FLOAT32, 1, s7));
    ck_assert_status(mtl_tensor_copy(c, a), MTL_ERR_SHAPE);
    ck_assert_msg(strstr(mtl_last_error(), "6 elements") != NULL, "%s", mtl_last_error());
    ((float *)mtl_tensor_data(a))[0] = -1.0f;
    ck_assert_ok(mtl_tensor_copy(b, a));
    ck_assert_float_eq(((float *)mtl_tensor_data(b))[0], -1.0f);
    mtl_tensor_free(a);
    mtl_tensor_free(b);
    mtl_tensor_free(c);
}
END_TEST

START_TEST(bad_arguments_are_errors)
{
    mtl_tensor *t = (mtl_tensor *)0x1;
    int64_t ok[2] = {2, 2}, zero[2] = {2, 0}, neg[1] = {-3};
    int64_t huge[4] = {INT64_MAX, INT64_MAX, 2, 2};
    ck_assert_status(mtl_tensor_create(NULL, MTL_FLOAT32, 2, ok), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_tensor_create(&t, MTL_FLOAT32, 0, ok), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(t);
    ck_assert_status(mtl_tensor_create(&t, MTL_FLOAT32, 5, ok), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_tensor_create(&t, (mtl_dtype)9, 2, ok), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(mtl_last_error(), "dtype 9") != NULL, "%s", mtl_last_error());
    ck_assert_status(mtl_tensor_create(&t, MTL_FLOAT32, 2, zero), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(mtl_last_error(), "shape[1] is 0") != NULL, "%s", mtl_last_error());
    ck_assert_status(mtl_tensor_create(&t, MTL_FLOAT32, 1, neg), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_tensor_create(&t, MTL_FLOAT32, 2, NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_tensor_create(&t, MTL_FLOAT32, 4, huge), MTL_ERR_RANGE);
    ck_assert_status(mtl_tensor_wrap(&t, MTL_FLOAT32, NULL, 2, ok), MTL_ERR_INVALID_ARGUMENT);
    char bytes[32];
    ck_assert_status(mtl_tensor_wrap(&t, MTL_FLOAT32, bytes + 1, 2, ok),
                     MTL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mtl_tensor_ndim(NULL), 0);
    ck_assert_int_eq(mtl_tensor_numel(NULL), 0);
    ck_assert_ptr_null(mtl_tensor_data(NULL));
    ck_assert_int_eq(mtl_tensor_dtype(NULL), -1);
    ck_assert_status(mtl_tensor_fill(NULL, 1), MTL_ERR_INVALID_ARGUMENT);
    mtl_tensor_free(NULL);
}
END_TEST

START_TEST(int_fill_range_checked)
{
    mtl_tensor *t = NULL;
    int64_t s[1] = {3};
    ck_assert_ok(mtl_tensor_create(&t, MTL_INT32, 1, s));
    ck_assert_status(mtl_tensor_fill(t, 1.5), MTL_ERR_RANGE);
    ck_assert_status(mtl_tensor_fill(t, 3e10), MTL_ERR_RANGE);
    ck_assert_ok(mtl_tensor_fill(t, -4));
    ck_assert_int_eq(((int32_t *)mtl_tensor_data(t))[2], -4);
    mtl_tensor_free(t);
}
END_TEST

START_TEST(status_strings_and_last_error)
{
    for (int s = 0; s <= MTL_ERR_INTERNAL; s++)
        ck_assert_ptr_nonnull(mtl_status_string((mtl_status)s));
    ck_assert_str_eq(mtl_status_string(MTL_OK), "ok");
    ck_assert_str_eq(mtl_status_string((mtl_status)999), "unknown status");
    mtl_clear_error();
    ck_assert_str_eq(mtl_last_error(), "");
    ck_assert_int_eq(mtl_last_status(), MTL_OK);
    mtl_tensor_fill(NULL, 0);
    ck_assert_int_eq(mtl_last_status(), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(mtl_last_error(), "mtl_tensor_fill") != NULL, "%s", mtl_last_error());
}
END_TEST

START_TEST(version_and_build_info)
{
    ck_assert_int_eq(mtl_version(), MTL_VERSION_NUMBER);
    ck_assert_str_eq(mtl_version_string(), MTL_VERSION_STRING);
    const char *info = mtl_build_info();
    ck_assert_msg(strstr(info, "BLIS") != NULL && strstr(info, "kernels") != NULL, "%s", info);
    ck_assert_msg(strstr(info, mtl_blas_kernels()) != NULL, "%s", info);
    ck_assert_status(mtl_set_num_threads(0), MTL_ERR_RANGE);
    ck_assert_ok(mtl_set_num_threads(2));
    ck_assert_int_eq(mtl_get_num_threads(), 2);
    ck_assert_ok(mtl_set_num_threads(1));
    ck_assert_int_eq(mtl_get_num_threads(), 1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("tensor");
    tcase_add_test(tc, create_is_zeroed_and_owned);
    tcase_add_test(tc, wrap_is_zero_copy_and_borrowed);
    tcase_add_test(tc, clone_copy_fill_reshape);
    tcase_add_test(tc, bad_arguments_are_errors);
    tcase_add_test(tc, int_fill_range_checked);
    tcase_add_test(tc, status_strings_and_last_error);
    tcase_add_test(tc, version_and_build_info);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(suite)
