#!/bin/sh
# README command 2 (and CI): install what hutch and its tests need, build
# with warnings as errors, run the whole test suite; then build again with
# AddressSanitizer/UndefinedBehaviorSanitizer and run it once more.
#   scripts/test.sh [--quick] [ctest args...]   (--quick: skip the sanitizer pass)
set -eu
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = "--quick" ]; then
	quick=1
	shift
fi
scripts/install-deps.sh --test
# The debian_slim base the image tests share is built once (minutes) and
# kept here for both passes and later runs (tests/integration/debian_base.py).
export HUTCH_TEST_CACHE="${HUTCH_TEST_CACHE:-$PWD/build-test-cache}"
scripts/build.sh -DHUTCH_WERROR=ON -DHUTCH_TESTS=ON
(cd "${HUTCH_BUILD_DIR:-build}" && ctest --output-on-failure -j"${HUTCH_TEST_JOBS:-2}" "$@")
if [ "$quick" -eq 0 ]; then
	echo "test.sh: again under ASan/UBSan"
	HUTCH_BUILD_DIR=build-asan HUTCH_BUILD_TYPE=Debug \
		scripts/build.sh -DHUTCH_WERROR=ON -DHUTCH_TESTS=ON -DHUTCH_SANITIZE=ON
	(cd build-asan && ASAN_OPTIONS=detect_leaks=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j"${HUTCH_TEST_JOBS:-2}" "$@")
fi
