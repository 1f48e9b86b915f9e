/* Built out of tree against the installed library with pkg-config (tests/check_install.sh). */
#include <stdio.h>
#include <mtl/mtl.h>

int main(void)
{
    mtl_tensor *t = NULL;
    int64_t shape[1] = {3};
    if (mtl_tensor_create(&t, MTL_FLOAT32, 1, shape) != MTL_OK) {
        fprintf(stderr, "%s\n", mtl_last_error());
        return 1;
    }
    mtl_tensor_free(t);
    printf("installed libmtl %s works\n", mtl_version_string());
    return mtl_version() == MTL_VERSION_NUMBER ? 0 : 2;
}
