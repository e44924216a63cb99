#!/usr/bin/env bash
# The test command of the README (and of .ci/run): installs what is missing, checks
# the C files' format, builds with -Werror, runs every Criterion suite (unit and integration: the integration
# suites start their own redis-server and `flashstream broker`) and the short fault
# suite (bench/fault-suite.sh), then builds again
# with AddressSanitizer + UndefinedBehaviorSanitizer and runs the whole suite again.
# FLS_TEST_QUICK=1 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh

echo "== format (.clang-format) =="
find consumers models tools tests bench -name '*.[ch]' -print0 |
        xargs -0 clang-format --dry-run --Werror

jobs=$(nproc)
echo "== build (-Werror) =="
cmake -S . -B build -DFLS_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
echo "== tests =="
(cd build && ctest --output-on-failure)
# bench/fault-suite.sh, short: ~200k events through the three consumers clean and
# under SIGKILLs, rebalances, a broker down, Fetch/Produce/OffsetCommit errors and a
# Redis SIGKILL, compared; exits 1 on any mismatch (~70 s here, README "Faults").
echo "== fault suite (short) =="
FLS_FAULT_SHORT=1 FLS_BIN="$PWD/build/tools/flashstream" bash bench/fault-suite.sh

if [ "${FLS_TEST_QUICK:-0}" != 1 ]; then
        echo "== build (ASan + UBSan) =="
        cmake -S . -B build-asan -DFLS_WERROR=ON -DFLS_SANITIZE=ON \
                -DCMAKE_BUILD_TYPE=Debug >/dev/null
        cmake --build build-asan -j"$jobs"
        echo "== tests under ASan + UBSan =="
        (cd build-asan &&
                ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                ctest --output-on-failure)
fi

# Fuzz smoke (tests/fuzz/README.md): 20 s per libFuzzer target, only where clang is.
if command -v clang >/dev/null; then
        echo "== fuzz smoke =="
        FLS_FUZZ_SMOKE=1 bash deploy/fuzz.sh
fi
