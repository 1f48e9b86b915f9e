/* Allocation-failure sweep shared by the suites: run fn with allocation n failing for
 * n = 0, 1, 2, ... until it succeeds. Every failing run must return MTL_ERR_OUT_OF_MEMORY.
 * Returns the number of allocation points exercised. */
#ifndef MTL_TEST_OOM_H
#define MTL_TEST_OOM_H

#include <check.h>

#include <mtl/mtl.h>

#include "core/alloc.h"

typedef mtl_status (*mtl_test_fn)(void *ctx);

static inline int mtl_test_oom_sweep(mtl_test_fn fn, void *ctx)
{
    for (long n = 0; n < 100000; n++) {
        mtli_alloc_fail_after(n);
        mtl_status st = fn(ctx);
        mtli_alloc_fail_after(-1);
        if (st == MTL_OK)
            return (int)n;
        ck_assert_msg(st == MTL_ERR_OUT_OF_MEMORY,
                      "allocation %ld failing gave status %d (%s), expected out of memory: %s",
                      n, (int)st, mtl_status_string(st), mtl_last_error());
    }
    ck_abort_msg("function never succeeded");
    return -1;
}

#endif
