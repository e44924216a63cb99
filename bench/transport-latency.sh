#!/usr/bin/env bash
# Latency of the transport alone, the floor under every consumer's latency figure:
# the realtime simulator produces click events into a fresh local stack (embedded
# broker and redis-server), and bench_latency reads the clickstream topic itself,
# event time "ts" to the moment the probe decodes it. No consumer runs, so the figure
# is simulator -> broker -> probe; a decision crosses such a leg twice (in, then out).
#   usage: bash bench/transport-latency.sh [RATE [SECONDS [--kafka.x=y ...]]]
#   env:   FLS_BUILD (default build), FLS_PARTITIONS (default 12)
# Prints bench_latency's line: latency topic=clickstream ... p50_ms p99_ms p999_ms.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FLS_BUILD:-$ROOT/build}
RATE=${1:-13000}
S=${2:-12}
shift $(($# < 2 ? $# : 2))
RUN=$(mktemp -d "${TMPDIR:-/tmp}/fls-transport.XXXXXX")
FLS_BIN=$BUILD/tools/flashstream FLS_PARTITIONS=${FLS_PARTITIONS:-12} \
        "$ROOT/deploy/stack-up.sh" "$RUN/stack" >"$RUN/stack.log"
trap '"$ROOT/deploy/stack-down.sh" "$RUN/stack" >/dev/null 2>&1 || true; rm -rf "$RUN"' EXIT
# shellcheck disable=SC1091
source "$RUN/stack/stack.env"
"$BUILD/bench/bench_latency" --bootstrap.file="$BOOTSTRAP_FILE" --bench.topic=clickstream \
        --bench.subject=clickstream-value --bench.ts_field=ts --bench.idle_s=4 \
        --bench.max_s=$((S + 60)) "$@" >"$RUN/probe.out" 2>"$RUN/probe.err" &
probe=$!
sleep 3
"$BUILD/tools/flashstream" simulate --sim.realtime=true --sim.spike=1 --sim.rate="$RATE" \
        --sim.duration_s="$S" --sim.seed=1 --sim.progress_ms=0 \
        --bootstrap.file="$BOOTSTRAP_FILE" "$@" >"$RUN/sim.log" 2>&1
wait "$probe" || { cat "$RUN/probe.err" >&2; exit 1; }
cat "$RUN/probe.out"
