/* libmtl — run-time configuration: threads and build information. */
#ifndef MTL_RUNTIME_H
#define MTL_RUNTIME_H

#include "mtl/status.h"

MTL_BEGIN_DECLS

/* Set the number of threads used by matrix products (BLIS). Default 1 (the fastest setting
 * on small and shared machines); n must be 1..1024. Applies process-wide to later products.
 * Since 1.0. */
MTL_API mtl_status mtl_set_num_threads(int n);

/* The current thread count for matrix products. Since 1.0. */
MTL_API int mtl_get_num_threads(void);

/* A one-line description of this build and its run-time choices: library version, BLIS
 * version and threading model, the BLIS kernel configuration in use, and why it was chosen.
 * Static storage, never NULL. Since 1.0. */
MTL_API const char *mtl_build_info(void);

/* The name of the BLIS kernel configuration in use ("skx", "haswell", "zen3", "generic",
 * ...). Static storage, never NULL. Since 1.0. */
MTL_API const char *mtl_blas_kernels(void);

MTL_END_DECLS

#endif
