#!/bin/sh
# Installs the build into a temporary prefix and builds tests/consumer.c out of tree with
# `pkg-config --cflags --libs mtl`, then runs it against the installed library.
# Usage: check_install.sh SOURCE_ROOT BUILD_ROOT CC
set -eu
src=$1; build=$2; cc=$3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
pc=$(find "$tmp/root" -name mtl.pc | head -n 1)
[ -n "$pc" ] || { echo "mtl.pc was not installed"; exit 1; }
# relocate: point the installed file's prefix at the temporary root
prefix=$(sed -n 's/^prefix=//p' "$pc")
sed -i "s|^prefix=.*|prefix=$tmp/root$prefix|" "$pc"
export PKG_CONFIG_PATH=$(dirname "$pc")
flags=$(pkg-config --cflags --libs mtl)
echo "pkg-config --cflags --libs mtl: $flags"
libdir=$(pkg-config --variable=libdir mtl)
$cc -std=c11 -Wall -Wextra -Werror "$src/tests/consumer.c" -o "$tmp/consumer" $flags
LD_LIBRARY_PATH=$libdir "$tmp/consumer"
# the consumer must have linked the installed copy
LD_LIBRARY_PATH=$libdir ldd "$tmp/consumer" | grep -q "$libdir/libmtl.so.1" || { echo "consumer did not load the installed libmtl"; exit 1; }
test -f "$libdir/libmtl.a" || { echo "static libmtl.a was not installed"; exit 1; }
test -f "$(pkg-config --variable=includedir mtl)/mtl/mtl.h" || { echo "headers not installed"; exit 1; }
echo "installed library, headers and mtl.pc work for an out-of-tree consumer"
