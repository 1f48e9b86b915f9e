/* Prints the library version and build information. */
#include <stdio.h>

#include <mtl/mtl.h>

int main(void)
{
    printf("%s\n", mtl_build_info());
    return 0;
}
