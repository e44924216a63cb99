#!/usr/bin/env bash
# Fuzzes the parsers on flashstream's untrusted edges (tests/fuzz/README.md): builds the
# libFuzzer targets with clang into build-fuzz (-DFLS_FUZZ=ON: libFuzzer + ASan + UBSan,
# the project libraries instrumented too), then runs each target for SECONDS (default
# 600) on its corpus, one target at a time at nice 10 (the machines have 2 cores).
# New inputs go to build-fuzz/work/<target>; afterwards `-merge=1` adds only those that
# reach new coverage to tests/fuzz/corpus/<target>, so the corpus stays small.
#
#   deploy/fuzz.sh [SECONDS]       fuzz and merge into the corpus
#   FLS_FUZZ_SMOKE=1 deploy/fuzz.sh   CI smoke: 20 s per target, nothing merged
#   FLS_FUZZ_TARGETS="codec csv"      only these targets
#
# A crash, leak, UB or timeout stops that target, keeps the input as
# build-fuzz/artifacts/<target>-crash-<sha1> and makes the script exit 1 after the
# other targets ran. Reproduce with build-fuzz/tests/fuzz/fuzz_<target> <file>; once
# fixed, copy the file into tests/fuzz/corpus/<target>/ so CI replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-600}
smoke=${FLS_FUZZ_SMOKE:-0}
[ "$smoke" = 1 ] && secs=20
targets=${FLS_FUZZ_TARGETS:-codec conf model csv}

if ! command -v clang >/dev/null; then
        echo "fuzz: clang is not installed (deploy/install-deps.sh installs it)" >&2
        exit 2
fi

echo "== build (clang, libFuzzer + ASan + UBSan) =="
# No -Werror here: the house rule is warning-free under gcc (the CI build), and
# clang's own warnings in code outside tests/fuzz must not stop a fuzz run.
# -O1 and line tables only: a third faster to build from scratch than RelWithDebInfo
# (26 s against 38 s here), which keeps the CI smoke under 2 minutes.
CC=clang cmake -S . -B build-fuzz -DFLS_FUZZ=ON -DFLS_WERROR=OFF \
        -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE="-O1 -gline-tables-only" \
        >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target $(printf 'fuzz_%s ' $targets) >/dev/null

mkdir -p build-fuzz/artifacts
failed=()
for t in $targets; do
        bin=build-fuzz/tests/fuzz/fuzz_$t
        corpus=tests/fuzz/corpus/$t
        work=build-fuzz/work/$t
        log=build-fuzz/fuzz_$t.log
        mkdir -p "$work"
        echo "== fuzz_$t: ${secs}s on $corpus =="
        # -timeout: an input that takes 10 s is a hang on a path that handles
        # millions of messages; -rss_limit_mb: the codec must bound what it allocates.
        if nice -n 10 "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
                -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$t-" \
                "$work" "$corpus" >"$log" 2>&1; then
                grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" || true
                grep -E '#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
        else
                echo "fuzz_$t FAILED: see $log and build-fuzz/artifacts/" >&2
                grep -E 'ERROR|SUMMARY|fuzz [a-z]+:|runtime error' "$log" | head -5 >&2 || true
                failed+=("$t")
                continue
        fi
        if [ "$smoke" != 1 ]; then
                before=$(ls "$corpus" | wc -l)
                nice -n 10 "$bin" -merge=1 -timeout=10 "$corpus" "$work" \
                        >"build-fuzz/merge_$t.log" 2>&1
                echo "corpus $corpus: $before -> $(ls "$corpus" | wc -l) files," \
                        "$(du -sh "$corpus" | cut -f1)"
        fi
done

if [ ${#failed[@]} -ne 0 ]; then
        echo "fuzz: failures in ${failed[*]}" >&2
        exit 1
fi
echo "fuzz: no failure"
