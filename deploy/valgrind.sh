#!/usr/bin/env bash
# Runs the integration suites with every consumer they start under valgrind memcheck
# (issue 7: "the integration tests under valgrind memcheck with no leaks"). The test
# helper tests/testutil.c prefixes `flashstream consume` with $FLS_VALGRIND; memcheck
# exits 99 on any error or definite leak, which fails the test (the suites check that
# a stopped consumer exits 0). Suppressions for library internals: tests/valgrind.supp.
# Each consumer's report goes to BUILD/valgrind/vg.<pid>.log; a summary is printed.
#   usage: deploy/valgrind.sh [SUITE...]   (default: test_it_pipeline test_it_dlq)
#   env: FLS_VALGRIND_BUILD (build folder, default build; a RelWithDebInfo build)
#        FLS_VALGRIND_FILTER (a Criterion --filter, e.g. 'pipeline/full_run*')
# Cost: memcheck (with --track-origins) slows a consumer 20-50x; the suites run their
# executables directly (ctest's 600 s limit is too short; Criterion's own per-test
# timeouts still apply), and tests/testutil.c allows 10x its usual waits
# (fls_t_slowdown). test_it_pipeline also scales its loops and its Criterion time-out
# by that factor and halves its simulated sale: its 4 tests take 9-14 min on 2 cores;
# test_it_clickstream scales its waits and time-out the same way (one test, ~11 min).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${FLS_VALGRIND_BUILD:-build}
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(test_it_pipeline test_it_dlq)

command -v valgrind >/dev/null || {
        echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2
        exit 1
}
cmake -S . -B "$BUILD" -DFLS_WERROR=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
LOGS=$(cd "$BUILD" && pwd)/valgrind
rm -rf "$LOGS"
mkdir -p "$LOGS"
export FLS_VALGRIND="valgrind --error-exitcode=99 --leak-check=full \
--errors-for-leak-kinds=definite --show-leak-kinds=definite,possible \
--num-callers=40 --track-origins=yes --suppressions=$ROOT/tests/valgrind.supp --log-file=$LOGS/vg.%p.log"

status=0
for s in "${SUITES[@]}"; do
        echo "== $s under valgrind memcheck =="
        t0=$SECONDS
        (cd "$BUILD/tests" && "./$s" --jobs 1 ${FLS_VALGRIND_FILTER:+--filter "$FLS_VALGRIND_FILTER"}) ||
                status=1
        echo "== $s: $((SECONDS - t0)) s"
done

# Summary over every consumer process memcheck watched. A consumer the tests SIGKILL
# never prints an ERROR SUMMARY (nor a leak check), but memcheck writes each error
# report as it happens: count those.
n=0 bad=0 killed=0
for f in "$LOGS"/vg.*.log; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -n 1)
        if [ -z "$errs" ]; then
                killed=$((killed + 1))
                errs=$(grep -cE "^==[0-9]+== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched|Source and destination|Argument)" "$f" || true)
        fi
        if [ "$errs" != 0 ]; then
                bad=$((bad + 1))
                echo "-- $f: $errs errors"
                grep -E "definitely lost|Invalid|uninitialised|ERROR SUMMARY" "$f" | head -n 10
        fi
done
echo "== valgrind summary: $n consumer processes, $bad with errors or definite leaks ($killed killed by the tests: no leak check) =="
for k in "definitely lost" "indirectly lost" "possibly lost" "still reachable"; do
        awk -v k="$k" 'index($0, k ":") { gsub(/,/, "", $0); split($0, a, ":");
                split(a[2], b, " "); bytes += b[1]; n++ }
                END { printf "   %-16s %d bytes over %d processes (at exit)\n", k, bytes, n }' \
                "$LOGS"/vg.*.log 2>/dev/null || true
done
[ "$bad" -eq 0 ] || status=1
exit $status
