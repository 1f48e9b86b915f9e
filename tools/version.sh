#!/bin/sh
# Print the library version from include/mtl/version.h, its single source.
dir=$(dirname "$0")/..
sed -n 's/^#define MTL_VERSION_STRING "\(.*\)"$/\1/p' "$dir/include/mtl/version.h"
