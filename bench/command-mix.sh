#!/usr/bin/env bash
# What one clickstream event costs Redis, command by command: the simulator produces a
# fixed event set into a fresh local stack (deploy/stack-up.sh), one clickstream
# consumer works through the backlog, and Redis's INFO commandstats (reset before the
# consumer starts) is divided by the events. Commands called from inside the script
# count on their own lines; the evalsha line holds the whole script, them included.
# Also prints the consumer's CPU, Redis's CPU and the time the consumer spent inside
# polls (flashstream_batch_seconds_sum), the figures bench/README.md "Update 4" compares,
# and how much of that time it waited for Redis's script replies, for claims on global
# counters and for output acknowledgements (the rest is its own work; "Update 5").
#   usage: bash bench/command-mix.sh [EVENTS [PARTITIONS [--consumer options ...]]]
#   env:   FLS_BUILD (default build); FLS_MIX_APPENDONLY=no switches Redis's AOF off
#          before the consumer starts, to measure what it costs (the stack runs with
#          appendonly yes, as the fault model needs); FLS_MIX_SIM="--sim.x=y ..."
#          adds simulator options, e.g. the consumer-bench latency traffic:
#          FLS_MIX_SIM="--sim.spike=1 --sim.rate=15534 --sim.duration_s=10 --sim.seed=1"
#          with EVENTS 0 (no limit)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FLS_BUILD:-$ROOT/build}
BIN=$BUILD/tools/flashstream
N=${1:-200000}
PARTS=${2:-6}
shift $(($# < 2 ? $# : 2))
RUN=$(mktemp -d "${TMPDIR:-/tmp}/fls-mix.XXXXXX")
FLS_BIN=$BIN FLS_PARTITIONS=$PARTS "$ROOT/deploy/stack-up.sh" "$RUN/stack" >"$RUN/stack.log"
cons=
cleanup() {
        [ -n "$cons" ] && kill "$cons" 2>/dev/null && wait "$cons" 2>/dev/null
        "$ROOT/deploy/stack-down.sh" "$RUN/stack" >/dev/null 2>&1 || true
        rm -rf "$RUN"
}
trap cleanup EXIT
# shellcheck disable=SC1091
source "$RUN/stack/stack.env"
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
cpu_of() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }

# Event times start on a whole minute 6 h ago, so that every run sees the same buckets.
# shellcheck disable=SC2017 # the division rounds down to the minute on purpose
t0=$((($(date +%s) - 6 * 3600) / 60 * 60000))
read -r -a sim_extra <<<"${FLS_MIX_SIM:-}"
"$BIN" simulate --sim.realtime=false --sim.produce=true --sim.events="$N" \
        --sim.duration_s=0 --sim.seed=7 --sim.start_ts="$t0" --sim.progress_ms=0 \
        --bootstrap.file="$BOOTSTRAP_FILE" "${sim_extra[@]}" >"$RUN/sim.log" 2>&1 ||
        { tail -5 "$RUN/sim.log" >&2; exit 1; }
clicks=$(grep -o 'clickstream=[0-9]*' "$RUN/sim.log" | head -1 | cut -d= -f2)
[ -n "$clicks" ] || { cat "$RUN/sim.log" >&2; exit 1; }

[ "${FLS_MIX_APPENDONLY:-yes}" = yes ] || rcli CONFIG SET appendonly no >/dev/null
rcli CONFIG RESETSTAT >/dev/null
# Outside the ephemeral range (32768-60999 here), where an outgoing connection's own
# port made one run in ~30 fail with "Address already in use".
mport=$((20000 + RANDOM % 12000))
while (exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null; do mport=$((20000 + RANDOM % 12000)); done
"$BIN" consume clickstream --bootstrap.file="$BOOTSTRAP_FILE" --redis.port="$REDIS_PORT" \
        --metrics.port="$mport" --consumer.group="mix$RANDOM" "$@" >"$RUN/consumer.log" 2>&1 &
cons=$!
# Done when the partitions' "emitted" marks cover every click event.
lua="local s = 0 for p = 0, $((PARTS - 1)) do
  local v = redis.call('HGET', 'fs:{clickstream.' .. p .. '}:meta', 'emitted')
  if v then s = s + tonumber(v) + 1 end end return s"
while [ "$(rcli EVAL "$lua" 0)" -lt "$clicks" ]; do
        kill -0 "$cons" 2>/dev/null || { tail -5 "$RUN/consumer.log" >&2; exit 1; }
        sleep 0.05
done
metric() { awk -v m="$1" '$1 ~ "^" m "_sum" { printf "%.2f", $2 }' "$RUN/metrics"; }
curl -s "localhost:$mport/metrics" >"$RUN/metrics"
echo "click events $clicks, partitions $PARTS"
echo "consumer CPU $(cpu_of "$cons") s, time in polls $(metric flashstream_batch_seconds) s:" \
        "waiting for script replies $(metric flashstream_redis_seconds) s," \
        "for claims $(metric flashstream_claims_seconds) s," \
        "for output acks $(metric flashstream_flush_seconds) s"
rcli INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { s += $2 }
        END { printf "redis CPU %.2f s (user + sys)\n", s }'
rcli INFO commandstats | tr -d '\r' |
        awk -F'[:,=]' -v n="$clicks" '/^cmdstat_/ {
                sub("cmdstat_", "", $1)
                printf "%-14s calls/event %7.3f   us/event %6.2f\n", $1, $3 / n, $5 / n }' |
        sort -k5 -g -r
