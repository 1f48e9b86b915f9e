// Every public header compiles as C++ (with -Wall -Wextra -Wpedantic -Werror) and the library
// links into a C++ program.
#include <mtl/mtl.h>
#include <mtl/mtl.h> // include guards

#include <cstdio>

int main()
{
    mtl_tensor *t = nullptr;
    int64_t shape[2] = {2, 2};
    if (mtl_tensor_create(&t, MTL_FLOAT32, 2, shape) != MTL_OK)
        return 1;
    if (mtl_tensor_numel(t) != 4)
        return 2;
    mtl_tensor_free(t);
    if (mtl_version() != MTL_VERSION_NUMBER)
        return 3;
    std::printf("%s\n", mtl_version_string());
    return 0;
}
