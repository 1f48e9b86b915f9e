#!/bin/sh
# Fails when the shared library exports any symbol that is not mtl_-prefixed.
# With a second argument (the static archive of the library's objects), also fails when an
# object gives default visibility (MTL_API) to a symbol without the prefix: the version script
# would hide it from the shared library, but it would leak from a static link.
# Usage: check_exports.sh path/to/libmtl.so [path/to/objects.a]
set -eu
lib=$1
if [ $# -ge 2 ]; then
  # (mtli_ names are the library's own namespace: GCC gives the ifunc of a target_clones
  # function default visibility; the version script still hides it from the shared library)
  leaked=$(readelf -sW "$2" | awk '$5 == "GLOBAL" && $6 == "DEFAULT" && $7 != "UND" {print $8}' | grep -v '^mtli\{0,1\}_' | sort -u || true)
  if [ -n "$leaked" ]; then
    echo "symbols with default visibility but without the mtl_ prefix in $2:"; printf '%s\n' "$leaked"; exit 1
  fi
fi
syms=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | sed 's/@.*//')
[ -n "$syms" ] || { echo "no exported symbols found in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^mtl_' || true)
if [ -n "$bad" ]; then
  echo "symbols exported without the mtl_ prefix:"; printf '%s\n' "$bad"; exit 1
fi
# every exported symbol carries the version node
unversioned=$(nm -D --defined-only --with-symbol-versions "$lib" 2>/dev/null | awk '$2 != "A" && $3 !~ /@@?MTL_/ {print $3}' || true)
if [ -n "$unversioned" ]; then
  echo "symbols without an MTL_ version node:"; printf '%s\n' "$unversioned"; exit 1
fi
echo "$(printf '%s\n' "$syms" | wc -l) exported symbols, all mtl_-prefixed and versioned"
