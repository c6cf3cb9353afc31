#!/bin/sh
# README command 2 (and CI): install what hutch and its tests need, build
# with warnings as errors, run the whole test suite.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh -DHUTCH_WERROR=ON -DHUTCH_TESTS=ON
cd "${HUTCH_BUILD_DIR:-build}"
ctest --output-on-failure -j"${HUTCH_TEST_JOBS:-2}" "$@"
