#!/bin/sh
# Configures and builds hutch into ./build (or $HUTCH_BUILD_DIR).
# Extra arguments go to cmake's configure step, e.g. -DHUTCH_SANITIZE=ON.
set -eu
cd "$(dirname "$0")/.."
build=${HUTCH_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=${HUTCH_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$build" -j"${HUTCH_JOBS:-2}"
