#!/bin/sh
# ABI baseline check with libabigail.
#   tools/abi.sh check BUILD_DIR   compare the built libmtl.so with abi/libmtl.abi
#   tools/abi.sh update BUILD_DIR  rewrite the baseline (only for a deliberate, additive change)
set -eu
mode=$1; build=$2
root=$(cd "$(dirname "$0")/.." && pwd)
lib=$(find "$build" -maxdepth 3 -name 'libmtl.so.*.*.*' -type f ! -name '*.symbols' | head -n 1)
[ -n "$lib" ] || { echo "libmtl.so not found under $build"; exit 1; }
command -v abidw >/dev/null || { echo "abidw missing: apt-get install abigail-tools"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
abidw --headers-dir "$root/include/mtl" --no-corpus-path --out-file "$tmp/current.abi" "$lib"
if [ "$mode" = update ]; then
  cp "$tmp/current.abi" "$root/abi/libmtl.abi"; echo "baseline updated: abi/libmtl.abi"; exit 0
fi
set +e
abidiff --headers-dir1 "$root/include/mtl" --headers-dir2 "$root/include/mtl" "$root/abi/libmtl.abi" "$tmp/current.abi" >"$tmp/diff.txt"
rc=$?
set -e
cat "$tmp/diff.txt"
if [ $((rc & 8)) -ne 0 ]; then
  echo "ABI CHECK FAILED: incompatible change against abi/libmtl.abi (see docs/abi.md)"; exit 1
elif [ $((rc & 4)) -ne 0 ]; then
  echo "ABI CHECK FAILED: the ABI grew or changed compatibly, but abi/libmtl.abi was not updated."
  echo "If the change is a deliberate addition, run: tools/abi.sh update $build"; exit 1
elif [ $rc -ne 0 ]; then
  echo "abidiff failed with status $rc"; exit 1
fi
echo "ABI matches abi/libmtl.abi"
