#include <pthread.h>
#include <stdio.h>

#include "core/error.h"
#include "kernels/gemm.h"
#include "mtl/runtime.h"

MTL_API int mtl_version(void) { return MTL_VERSION_NUMBER; }

MTL_API const char *mtl_version_string(void) { return MTL_VERSION_STRING; }

MTL_API mtl_status mtl_set_num_threads(int n)
{
    if (n < 1 || n > 1024)
        return mtli_error(MTL_ERR_RANGE, "mtl_set_num_threads: n is %d, expected 1..1024", n);
    mtli_blas_set_threads(n);
    return MTL_OK;
}

MTL_API int mtl_get_num_threads(void) { return mtli_blas_get_threads(); }

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_info[640];

static void build_info_once(void)
{
    snprintf(g_info, sizeof g_info, "libmtl %s; %s", MTL_VERSION_STRING, mtli_blas_info());
}

MTL_API const char *mtl_build_info(void)
{
    pthread_once(&g_once, build_info_once);
    return g_info;
}

MTL_API const char *mtl_blas_kernels(void) { return mtli_blas_kernels(); }
