/* Allocation-failure torture: every create function is run with its n-th allocation failing,
 * for every n until it succeeds; each failure must return MTL_ERR_OUT_OF_MEMORY, leave the
 * output NULL and leak nothing (LeakSanitizer checks the last part in the sanitizer build). */
#include <string.h>

#include <mtl/mtl.h>

#include "core/alloc.h"
#include "test_main.h"
#include "test_oom.h"

static mtl_status create_tensor(void *ctx)
{
    (void)ctx;
    mtl_tensor *t = NULL;
    int64_t shape[2] = {3, 4};
    mtl_status st = mtl_tensor_create(&t, MTL_FLOAT32, 2, shape);
    if (st != MTL_OK && t != NULL)
        return MTL_ERR_INTERNAL;
    mtl_tensor_free(t);
    return st;
}

static mtl_status clone_tensor(void *ctx)
{
    mtl_tensor *t = NULL;
    mtl_status st = mtl_tensor_clone(&t, ctx);
    if (st != MTL_OK && t != NULL)
        return MTL_ERR_INTERNAL;
    mtl_tensor_free(t);
    return st;
}

static mtl_status wrap_tensor(void *ctx)
{
    (void)ctx;
    static float buf[8];
    mtl_tensor *t = NULL;
    int64_t shape[1] = {8};
    mtl_status st = mtl_tensor_wrap(&t, MTL_FLOAT32, buf, 1, shape);
    mtl_tensor_free(t);
    return st;
}

START_TEST(tensor_creation_survives_every_allocation_failure)
{
    mtl_tensor *src = NULL;
    int64_t shape[1] = {5};
    ck_assert_ok(mtl_tensor_create(&src, MTL_INT32, 1, shape));
    ck_assert_int_ge(mtl_test_oom_sweep(create_tensor, NULL), 2);
    ck_assert_int_ge(mtl_test_oom_sweep(clone_tensor, src), 2);
    ck_assert_int_ge(mtl_test_oom_sweep(wrap_tensor, NULL), 1);
    mtl_tensor_free(src);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("alloc");
    tcase_add_test(tc, tensor_creation_survives_every_allocation_failure);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(suite)
