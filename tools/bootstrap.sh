#!/bin/sh
# Fresh-machine set-up for Debian 12 (run as root, or with sudo available).
#   tools/bootstrap.sh run    install dependencies, build, run the main job
#   tools/bootstrap.sh test   install dependencies, build, run every test suite
#                             (plain build, sanitizer build, ABI checks, Python tests)
set -eu
cd "$(dirname "$0")/.."
mode=${1:-}
[ "$mode" = run ] || [ "$mode" = test ] || { echo "usage: tools/bootstrap.sh run|test" >&2; exit 2; }

PKGS="build-essential g++ meson ninja-build pkg-config libblis-pthread-dev libyaml-dev check zlib1g-dev abigail-tools dataset-fashion-mnist python3 python3-numpy python3-pytest"
[ "$mode" = test ] && PKGS="$PKGS python3-torch python3-sklearn python3-matplotlib python3-venv python3-pip python3-yaml python3-setuptools"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

[ -d build ] || meson setup build
ninja -C build

if [ "$mode" = run ]; then
  # The main job: a short Multi-Fashion run (two tasks on overlapping Fashion-MNIST items,
  # a LeNet-style shared trunk); the data are built once from Debian's dataset-fashion-mnist.
  [ -f examples/data/multifashion/test_x.npy ] || build/tools/mtl/mtl make-multifashion examples/data/multifashion
  mkdir -p build/run
  cd build/run
  exec ../tools/mtl/mtl train ../../examples/configs/multifashion.yaml --set training.epochs=${MTL_EPOCHS:-5}
fi

meson test -C build --print-errorlogs --num-processes 2
[ -d build-san ] || meson setup build-san -Db_sanitize=address,undefined -Db_lundef=false -Dpython_tests=false
ninja -C build-san
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-san --print-errorlogs --num-processes 2
echo "all test suites passed"
