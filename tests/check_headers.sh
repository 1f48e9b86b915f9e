#!/bin/sh
# Each public header compiles on its own as C11 and as C++17, warnings as errors.
# Usage: check_headers.sh SOURCE_ROOT CC CXX
set -eu
src=$1; cc=$2; cxx=$3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for h in "$src"/include/mtl/*.h; do
  name=$(basename "$h")
  printf '#include <mtl/%s>\nint mtl_header_probe_%s;\n' "$name" "$(echo "$name" | tr -c 'a-z0-9\n' _)" > "$tmp/t.c"
  cp "$tmp/t.c" "$tmp/t.cpp"
  $cc -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$src/include" "$tmp/t.c" || { echo "C: $name"; exit 1; }
  $cxx -std=c++17 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$src/include" "$tmp/t.cpp" || { echo "C++: $name"; exit 1; }
done
echo "all public headers compile alone as C11 and C++17"
