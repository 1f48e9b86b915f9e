/* Shared helpers for the Check suites. */
#ifndef MTL_TEST_MAIN_H
#define MTL_TEST_MAIN_H

#include <check.h>
#include <stdlib.h>

#define MTL_TEST_MAIN(suite_fn)                                          \
    int main(void)                                                       \
    {                                                                    \
        SRunner *sr = srunner_create(suite_fn());                        \
        srunner_run_all(sr, CK_NORMAL);                                  \
        int failed = srunner_ntests_failed(sr);                          \
        srunner_free(sr);                                                \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                \
    }

#define ck_assert_status(expr, want)                                                     \
    do {                                                                                 \
        mtl_status st_ = (expr);                                                         \
        ck_assert_msg(st_ == (want), "%s returned %d (%s), expected %d; last error: %s", \
                      #expr, (int)st_, mtl_status_string(st_), (int)(want),             \
                      mtl_last_error());                                                 \
    } while (0)

#define ck_assert_ok(expr) ck_assert_status(expr, MTL_OK)

#endif
