#!/usr/bin/env bash
# Replays a public dataset through its consumer as real traffic and reports what the
# consumer decided: starts a private stack (deploy/stack-up.sh) in a fresh
# run/replay-<dataset>-<timestamp>/, imports the dataset into the consumer's input
# topic (`flashstream import`, mappings in tools/IMPORT.md), runs the consumer until
# it has consumed every imported event with lag 0, prints `flashstream report` (read
# back from the input, output and dead-letter topics) and stops everything again.
#
#   usage: deploy/replay.sh rees46|retail|olist-orders|olist-shipments [--no-build]
#   env:   FLS_DATA   folder of the datasets (default ../shared/data from the repo)
#          FLS_BIN    the flashstream binary (default build/tools/flashstream)
#          FLS_PARTITIONS  partitions per topic (default 6)
#
# The replay settings (chosen in tools/IMPORT.md):
#   rees46        the first 30 minutes are before the sale (--import.sale_start_s=1800,
#                 campaign rees46-replay), the sale lasts to the last event: the
#                 consumer gets clickstream.sale_start_ts and sale_duration_s from
#                 the importer's summary; budget, coupon value and caps are defaults.
#   retail, olist-orders   event times compressed 1440x (a day becomes a minute:
#                 --import.time_scale=1440) so that the consumer's minute windows see
#                 months of orders; opening stock = units of each SKU's first 7 days.
#   olist-shipments  `flashstream convert olist-shipments` writes the orders as shipment
#                 events plus ground truth (tools/IMPORT.md), `flashstream produce`
#                 replays them in real time order into one partition, the consumer
#                 decides one event per batch with models/delivery-olist.flsm, and the
#                 report is `flashstream judge shipments` next to `flashstream eval
#                 delivery-sim` on the same folder: their MAE on eval's rows must be
#                 equal (the script fails otherwise).
# Exit status: 0 when the import and the consumer succeeded and the consumer caught
# up; 0 with a message when the dataset is absent.
set -euo pipefail

usage() {
    echo "usage: $0 rees46|retail|olist-orders|olist-shipments [--no-build]" >&2
    exit 2
}

DATASET=
BUILD=1
for arg in "$@"; do
    case $arg in
    --no-build) BUILD=0 ;;
    rees46 | retail | olist-orders | olist-shipments) DATASET=$arg ;;
    *) usage ;;
    esac
done
[ -n "$DATASET" ] || usage

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export FLS_BIN=${FLS_BIN:-$ROOT/build/tools/flashstream}
BIN=$FLS_BIN
DATA=${FLS_DATA:-$ROOT/../shared/data}
case $DATASET in
rees46)
    DIR=$DATA/rees46-ecommerce-behavior-sample
    CONSUMER=clickstream
    IMPORT_OPTS=(--import.sale_start_s=1800 --import.campaign_id=rees46-replay)
    ;;
retail)
    DIR=$DATA/uci-online-retail-sample
    CONSUMER=orders
    IMPORT_OPTS=(--import.time_scale=1440 --import.opening_days=7)
    ;;
olist-orders)
    DIR=$DATA/olist-brazilian-ecommerce
    CONSUMER=orders
    IMPORT_OPTS=(--import.time_scale=1440 --import.opening_days=7)
    ;;
olist-shipments)
    DIR=$DATA/olist-brazilian-ecommerce
    CONSUMER=shipments
    # One partition and one event per batch: the consumer then reads exactly the
    # features eval computes from the file (no later event of a batch included).
    export FLS_PARTITIONS=1
    ;;
esac

say() { echo "replay: $*"; }

if [ ! -d "$DIR" ]; then
    say "dataset folder $DIR is absent: nothing to replay (set FLS_DATA)"
    exit 0
fi

RUNDIR=$ROOT/run/replay-$DATASET-$(date +%Y%m%d-%H%M%S)
[ -e "$RUNDIR" ] && RUNDIR=$RUNDIR-$$
mkdir -p "$RUNDIR"
CPID=

# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    set +e
    trap - EXIT
    trap '' INT TERM
    if [ -n "$CPID" ]; then
        kill -TERM "$CPID" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$CPID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$CPID" 2>/dev/null
        wait "$CPID" 2>/dev/null
        rm -f "$RUNDIR/$CONSUMER.pid"
    fi
    "$ROOT/deploy/stack-down.sh" "$RUNDIR"
    [ "$rc" -ne 0 ] && say "stopped (exit status $rc); logs in $RUNDIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$BUILD" -eq 1 ]; then
    say "building (log: $RUNDIR/build.log)"
    if ! "$ROOT/deploy/build.sh" >"$RUNDIR/build.log" 2>&1; then
        tail -n 20 "$RUNDIR/build.log" >&2
        exit 1
    fi
elif [ ! -x "$BIN" ]; then
    say "$BIN not found: run without --no-build" >&2
    exit 1
fi

"$ROOT/deploy/stack-up.sh" "$RUNDIR"
# shellcheck source=/dev/null
. "$RUNDIR/stack.env"
COMMON=(--bootstrap.file="$BOOTSTRAP_FILE" --redis.port="$REDIS_PORT")

# ---- 1. import (the consumer reads from the beginning, so it can start after) ----
say "importing $DATASET from $DIR"
if [ "$DATASET" = olist-shipments ]; then
    "$BIN" convert olist-shipments "$DIR" "$RUNDIR/olist-ship" | tee "$RUNDIR/import.log"
    "$BIN" produce shipments "$RUNDIR/olist-ship/shipments.csv" "${COMMON[@]}" |
        tee -a "$RUNDIR/import.log"
    PRODUCED=$(sed -n 's/.*"produced":\([0-9]*\).*/\1/p' "$RUNDIR/import.log")
else
    "$BIN" import "$DATASET" "$DIR" "${COMMON[@]}" "${IMPORT_OPTS[@]}" | tee "$RUNDIR/import.log"
    PRODUCED=$(sed -n 's/.*produced=\([0-9]*\).*/\1/p' "$RUNDIR/import.log")
fi
[ -n "$PRODUCED" ] || {
    say "no produced count in $RUNDIR/import.log"
    exit 1
}

CONSUMER_OPTS=()
if [ "$CONSUMER" = clickstream ]; then
    start=$(sed -n 's/.*sale_start_ts=\([0-9]*\).*/\1/p' "$RUNDIR/import.log")
    dur=$(sed -n 's/.*sale_duration_s=\([0-9]*\).*/\1/p' "$RUNDIR/import.log")
    CONSUMER_OPTS=(--clickstream.sale_start_ts="$start" --clickstream.sale_duration_s="$dur")
elif [ "$CONSUMER" = shipments ]; then
    CONSUMER_OPTS=(--topic.partitions=1 --batch.max_messages=1
        --shipments.model="$ROOT/models/delivery-olist.flsm")
fi

# ---- 2. the consumer, until it has read every event with lag 0 ---------------------
PORT=$((20000 + RANDOM % 12000))
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((20000 + RANDOM % 12000)); done
T0=${EPOCHREALTIME/./}
setsid "$BIN" consume "$CONSUMER" "${COMMON[@]}" --metrics.port="$PORT" \
    "${CONSUMER_OPTS[@]}" </dev/null >"$RUNDIR/$CONSUMER.log" 2>&1 &
CPID=$!
echo "$CPID" >"$RUNDIR/$CONSUMER.pid"
say "consumer $CONSUMER pid $CPID ${CONSUMER_OPTS[*]}"

msum() {
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.0f\n", s }' <<<"$1"
}
IN=0 LAG=-1 DLQ=0 OUT=0 CAUGHT=0
DEADLINE=$((EPOCHSECONDS + 600))
while [ "$EPOCHSECONDS" -lt "$DEADLINE" ]; do
    if ! kill -0 "$CPID" 2>/dev/null; then
        tail -n 5 "$RUNDIR/$CONSUMER.log" >&2
        say "consumer exited; see $RUNDIR/$CONSUMER.log"
        exit 1
    fi
    t=$(curl -s --max-time 1 "http://127.0.0.1:$PORT/metrics" || true)
    if [ -n "$t" ]; then
        IN=$(msum "$t" flashstream_events_in_total)
        LAG=$(msum "$t" flashstream_consumer_lag)
        DLQ=$(msum "$t" flashstream_dead_letters_total)
        OUT=$(msum "$t" flashstream_decisions_out_total)
        if [ "$IN" -ge "$PRODUCED" ] && [ "$LAG" -eq 0 ]; then
            CAUGHT=1
            break
        fi
    fi
    sleep 0.5
done
WALL_MS=$(((${EPOCHREALTIME/./} - T0) / 1000))
if [ "$CAUGHT" -ne 1 ]; then
    say "consumer did NOT catch up in 600 s: in=$IN of $PRODUCED lag=$LAG"
    exit 1
fi
say "consumer caught up: events_in=$IN of $PRODUCED, dead_letters=$DLQ, decisions=$OUT," \
    "${WALL_MS} ms from start (with start-up and group join), $((IN * 1000 / (WALL_MS > 0 ? WALL_MS : 1))) events/s"

# ---- 3. the report, read back from the topics --------------------------------------
echo
STATUS=0
if [ "$CONSUMER" = shipments ]; then
    "$BIN" judge shipments "$RUNDIR/olist-ship" "${COMMON[@]}" "${CONSUMER_OPTS[@]}" |
        tee "$RUNDIR/report.txt" || STATUS=1
    "$BIN" eval delivery-sim --model "$ROOT/models/delivery-olist.flsm" \
        --data "$RUNDIR/olist-ship" | tee "$RUNDIR/eval.json"
    live=$(sed -n 's/.*"eval_mae_h":\([0-9.e+-]*\).*/\1/p' "$RUNDIR/report.txt")
    offline=$(sed -n 's/.*"value":\([0-9.e+-]*\).*/\1/p' "$RUNDIR/eval.json")
    if [ -n "$live" ] && [ "$live" = "$offline" ]; then
        say "delivery MAE on eval's rows: live path $live h = eval delivery-sim $offline h"
    else
        say "delivery MAE on eval's rows: live path '$live' h != eval delivery-sim '$offline' h"
        STATUS=1
    fi
else
    "$BIN" report "$CONSUMER" "${COMMON[@]}" --topic.partitions="${FLS_PARTITIONS:-6}" "${CONSUMER_OPTS[@]}" | tee "$RUNDIR/report.txt"
fi
echo
say "logs and report in $RUNDIR"
if [ "$DLQ" -ne 0 ]; then
    say "$DLQ dead letters: see the dlq lines of the report"
fi
exit "$STATUS"
