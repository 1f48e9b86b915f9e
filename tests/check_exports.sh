#!/bin/sh
# Fails when the shared library exports any symbol that is not mtl_-prefixed.
# Usage: check_exports.sh path/to/libmtl.so
set -eu
lib=$1
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
