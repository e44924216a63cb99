#!/usr/bin/env bash
# The flashstream demo, the first thing to run: installs the Debian packages
# (deploy/install-deps.sh), builds (deploy/build.sh), starts a private Redis and mock Kafka
# cluster (deploy/stack-up.sh) in a fresh run/demo-<timestamp>/, runs the three
# consumers, simulates a flash sale for DURATION_S seconds while showing live metrics,
# waits for the consumers to catch up, prints a summary and stops everything again.
#
#   usage: deploy/demo.sh [--no-install] [--no-build] [DURATION_S]   (default 60)
#   env:   FLS_DEMO_FAST=1   simulate as fast as possible (sim.realtime=false)
#          FLS_PARTITIONS    partitions per topic (default 6)
#
# Exit status: 0 when the consumers caught up and all exited 0 on SIGTERM.
set -euo pipefail

usage() {
    echo "usage: $0 [--no-install] [--no-build] [DURATION_S]" >&2
    exit 2
}

DURATION=60
INSTALL=1
BUILD=1
for arg in "$@"; do
    case $arg in
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    -h | --help) usage ;;
    *)
        [[ "$arg" =~ ^[1-9][0-9]*$ ]] || usage
        DURATION=$arg
        ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/tools/flashstream
REALTIME=true
[ "${FLS_DEMO_FAST:-0}" = 1 ] && REALTIME=false
SALE_START=$((DURATION / 6))
CONSUMERS=(clickstream orders shipments)

say() { echo "demo: $*"; }

# ---- processes this script starts: pids, and how to stop them --------------------

declare -A PID=()  # consumer name (or "simulate") -> pid
declare -A PORT=() # consumer name -> metrics port
RUNDIR=

# Running means: exists and is not a zombie (an exited child not yet waited for).
running() {
    local state
    state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# stop NAME: SIGTERM, SIGKILL after 5 s; sets STOP_RC (exit status) and STOP_MS.
stop() {
    local name=$1 pid=${PID[$1]} t0
    t0=${EPOCHREALTIME/./}
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        running "$pid" || break
        sleep 0.1
    done
    if running "$pid"; then
        say "$name (pid $pid) still running 5 s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    STOP_RC=0
    wait "$pid" 2>/dev/null || STOP_RC=$?
    STOP_MS=$(((${EPOCHREALTIME/./} - t0) / 1000))
    unset "PID[$name]"
    rm -f "$RUNDIR/$name.pid"
}

# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    set +e
    trap - EXIT
    trap '' INT TERM # a second Ctrl-C must not cut the clean-up short
    if [ ${#PID[@]} -gt 0 ] || [ -n "$RUNDIR" ]; then
        [ "$rc" -ne 0 ] && [ -t 1 ] && echo
        [ "$rc" -ne 0 ] && say "stopping (exit status $rc)"
        [ -n "${PID[simulate]:-}" ] && stop simulate
        for name in "${CONSUMERS[@]}"; do
            if [ -n "${PID[$name]:-}" ]; then
                stop "$name"
                say "consumer $name: exit status $STOP_RC after SIGTERM (${STOP_MS} ms)"
            fi
        done
        if [ -n "$RUNDIR" ]; then
            "$ROOT/deploy/stack-down.sh" "$RUNDIR"
            say "everything stopped; logs in $RUNDIR"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nothing listens on, outside the ephemeral range.
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

# ---- metrics ------------------------------------------------------------------------

declare -A TEXT=() # consumer -> last /metrics text ("" when it did not answer)
declare -A IN=() PREV_IN=() RATE=() LAG=() DLQ=() LATE=() OUT=() OUT_TOPIC=()
declare -A BSUM=() BCOUNT=()
PREV_T=0

# msum TEXT METRIC: sum of all series of METRIC in a /metrics text.
msum() {
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.6f\n", s }' <<<"$1"
}
int() { printf '%.0f' "$1"; }

sample() {
    local now name t dt
    now=${EPOCHREALTIME/./}
    dt=$((now - PREV_T))
    for name in "${CONSUMERS[@]}"; do
        t=$(curl -s --max-time 1 "http://127.0.0.1:${PORT[$name]}/metrics" || true)
        TEXT[$name]=$t
        [ -n "$t" ] || continue
        IN[$name]=$(int "$(msum "$t" flashstream_events_in_total)")
        LAG[$name]=$(int "$(msum "$t" flashstream_consumer_lag)")
        DLQ[$name]=$(int "$(msum "$t" flashstream_dead_letters_total)")
        LATE[$name]=$(int "$(msum "$t" flashstream_late_events_total)")
        OUT[$name]=$(int "$(msum "$t" flashstream_decisions_out_total)")
        OUT_TOPIC[$name]=$(sed -n 's/^flashstream_decisions_out_total{topic="\([^"]*\)"}.*/\1/p' <<<"$t")
        BSUM[$name]=$(msum "$t" flashstream_batch_seconds_sum)
        BCOUNT[$name]=$(int "$(msum "$t" flashstream_batch_seconds_count)")
        if [ "$PREV_T" -gt 0 ] && [ "$dt" -gt 0 ]; then
            RATE[$name]=$(((IN[$name] - ${PREV_IN[$name]:-0}) * 1000000 / dt))
        else
            RATE[$name]=0
        fi
        PREV_IN[$name]=${IN[$name]}
    done
    PREV_T=$now
}

T0=0
DRAWN=0
progress() {
    local phase=$1 name secs=$(((${EPOCHREALTIME/./} - T0) / 1000000))
    if [ -t 1 ]; then
        # redraw a small table in place
        [ "$DRAWN" -eq 1 ] && printf '\033[5F'
        printf '\033[K%s  %ss  (sale at %ss, realtime=%s)\n' "$phase" "$secs" "$SALE_START" "$REALTIME"
        printf '\033[K  %-12s %8s %9s %7s %6s   %-19s %9s\n' input in/s consumed lag dlq output decisions
        for name in "${CONSUMERS[@]}"; do
            if [ -n "${TEXT[$name]}" ]; then
                printf '\033[K  %-12s %8s %9s %7s %6s   %-19s %9s\n' "$name" "${RATE[$name]}" \
                    "${IN[$name]}" "${LAG[$name]}" "${DLQ[$name]}" "${OUT_TOPIC[$name]}" "${OUT[$name]}"
            else
                printf '\033[K  %-12s   (no answer from its /metrics)\n' "$name"
            fi
        done
        DRAWN=1
    else
        local line="[$phase ${secs}s]"
        for name in "${CONSUMERS[@]}"; do
            if [ -n "${TEXT[$name]}" ]; then
                line+=" $name in=${RATE[$name]}/s lag=${LAG[$name]} dlq=${DLQ[$name]} ${OUT_TOPIC[$name]}=${OUT[$name]};"
            else
                line+=" $name down;"
            fi
        done
        echo "${line%;}"
    fi
}

# ---- 1. packages, build ---------------------------------------------------------------

if [ "$INSTALL" -eq 1 ]; then
    "$ROOT/deploy/install-deps.sh"
fi

RUNDIR=$ROOT/run/demo-$(date +%Y%m%d-%H%M%S)
[ -e "$RUNDIR" ] && RUNDIR=$RUNDIR-$$
mkdir -p "$RUNDIR"

if [ "$BUILD" -eq 1 ]; then
    say "building (log: $RUNDIR/build.log)"
    if ! "$ROOT/deploy/build.sh" >"$RUNDIR/build.log" 2>&1; then
        tail -n 20 "$RUNDIR/build.log" >&2
        say "build failed; see $RUNDIR/build.log" >&2
        exit 1
    fi
elif [ ! -x "$BIN" ]; then
    say "$BIN not found: run without --no-build" >&2
    exit 1
fi

# ---- 2. stack and consumers -----------------------------------------------------------

"$ROOT/deploy/stack-up.sh" "$RUNDIR"
# shellcheck source=/dev/null
. "$RUNDIR/stack.env"

# The demo's sale lasts minutes at most, so the reminder to participants inactive since
# the sale began comes a third into it rather than after the default 300 s (the
# environment outranks the defaults; an explicit setting wins).
export FLASHSTREAM_CLICKSTREAM_INACTIVE_AFTER_S=${FLASHSTREAM_CLICKSTREAM_INACTIVE_AFTER_S:-$(((DURATION - SALE_START) / 3))}
for name in "${CONSUMERS[@]}"; do
    port=$(free_port)
    while [[ " ${PORT[*]} " == *" $port "* ]]; do port=$(free_port); done
    PORT[$name]=$port
    # setsid: Ctrl-C reaches this script only; the trap stops the children in order.
    setsid "$BIN" consume "$name" --bootstrap.file="$BOOTSTRAP_FILE" --redis.port="$REDIS_PORT" \
        --metrics.port="$port" </dev/null >"$RUNDIR/$name.log" 2>&1 &
    PID[$name]=$!
    echo "${PID[$name]}" >"$RUNDIR/$name.pid"
done
for name in "${CONSUMERS[@]}"; do
    for _ in $(seq 100); do
        curl -s --max-time 1 -o /dev/null "http://127.0.0.1:${PORT[$name]}/metrics" && break
        if ! running "${PID[$name]}"; then
            tail -n 5 "$RUNDIR/$name.log" >&2
            say "consumer $name exited at start-up; see $RUNDIR/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    say "consumer $name: pid ${PID[$name]}, metrics http://127.0.0.1:${PORT[$name]}/metrics"
done

# ---- 3. the simulated sale -------------------------------------------------------------

say "simulating ${DURATION}s of flash sale (sale starts at ${SALE_START}s, realtime=$REALTIME)"
setsid "$BIN" simulate --bootstrap.file="$BOOTSTRAP_FILE" --sim.duration_s="$DURATION" \
    --sim.realtime="$REALTIME" --sim.sale_start_s="$SALE_START" --sim.out_dir="$RUNDIR/sim" \
    </dev/null >"$RUNDIR/simulate.log" 2>&1 &
PID[simulate]=$!
echo "${PID[simulate]}" >"$RUNDIR/simulate.pid"

T0=${EPOCHREALTIME/./}
sample
while running "${PID[simulate]}"; do
    sleep 2
    sample
    progress simulating
done
STATUS=0
SIM_RC=0
wait "${PID[simulate]}" || SIM_RC=$?
unset "PID[simulate]"
rm -f "$RUNDIR/simulate.pid"
if [ "$SIM_RC" -ne 0 ]; then
    say "simulate exited with status $SIM_RC; see $RUNDIR/simulate.log"
    STATUS=1
fi

# ---- 4. wait for the consumers to catch up ---------------------------------------------

produced() { # topic -> events produced, from sim/summary.json
    sed -n 's/.*"events": {.*"'"$1"'": \([0-9]*\).*/\1/p' "$RUNDIR/sim/summary.json" 2>/dev/null
}
declare -A PRODUCED=()
for name in "${CONSUMERS[@]}"; do
    PRODUCED[$name]=$(produced "$name")
    PRODUCED[$name]=${PRODUCED[$name]:-?}
done

caught_up() {
    local name
    for name in "${CONSUMERS[@]}"; do
        [ -n "${TEXT[$name]}" ] || return 1
        [ "${LAG[$name]}" -eq 0 ] || return 1
        # the lag gauge can read 0 before the last fetch: also compare with the counts
        [ "${PRODUCED[$name]}" = "?" ] || [ "${IN[$name]}" -ge "${PRODUCED[$name]}" ] || return 1
    done
}

# A backlog (FLS_DEMO_FAST produces the whole sale in seconds) drains at the consumers'
# pace: wait while the total lag keeps falling, and give up after 30 s without progress
# or 10 minutes in all.
total_lag() {
    local name sum=0
    for name in "${CONSUMERS[@]}"; do
        sum=$((sum + ${LAG[$name]:-0}))
    done
    echo "$sum"
}
DRAINED=0
DEADLINE=$((EPOCHSECONDS + 600))
BEST=-1
STALL=$((EPOCHSECONDS + 30))
while :; do
    sample
    if caught_up; then
        DRAINED=1
        break
    fi
    lag=$(total_lag)
    if [ "$BEST" -lt 0 ] || [ "$lag" -lt "$BEST" ]; then
        BEST=$lag
        STALL=$((EPOCHSECONDS + 30))
    fi
    if [ "$EPOCHSECONDS" -ge "$DEADLINE" ] || [ "$EPOCHSECONDS" -ge "$STALL" ]; then
        break
    fi
    progress draining
    sleep 2
done
progress final
if [ "$DRAINED" -eq 1 ]; then
    say "consumers caught up (lag 0)"
else
    say "consumers did NOT catch up (lag $(total_lag): no progress for 30 s, or 10 minutes)"
    STATUS=1
fi

# ---- 5. summary -----------------------------------------------------------------------

echo
echo "== summary: ${DURATION}s simulated, realtime=$REALTIME, run dir $RUNDIR"
printf '%-12s %9s %9s %6s %6s %8s %12s\n' input produced consumed late dlq batches "batch mean"
for name in "${CONSUMERS[@]}"; do
    mean=-
    if [ "${BCOUNT[$name]:-0}" -gt 0 ]; then
        mean=$(awk -v s="${BSUM[$name]}" -v n="${BCOUNT[$name]}" 'BEGIN { printf "%.2f ms", 1000 * s / n }')
    fi
    printf '%-12s %9s %9s %6s %6s %8s %12s\n' "$name" "${PRODUCED[$name]}" "${IN[$name]:--}" \
        "${LATE[$name]:--}" "${DLQ[$name]:--}" "${BCOUNT[$name]:--}" "$mean"
done
echo
printf '%-20s %9s\n' output decisions
for name in "${CONSUMERS[@]}"; do
    printf '%-20s %9s\n' "${OUT_TOPIC[$name]:-($name)}" "${OUT[$name]:--}"
done

# example features: the most active user of the simulated clickstream
USER_ID=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "user_id") c = i; next }
                   c { n[$c]++ } END { for (u in n) if (n[u] > best) { best = n[u]; id = u }; print id }' \
    "$RUNDIR/sim/clickstream.csv" 2>/dev/null || true)
if [ -n "$USER_ID" ]; then
    echo
    echo "\$ flashstream features user $USER_ID --redis.port=$REDIS_PORT --bootstrap.file=$BOOTSTRAP_FILE"
    "$BIN" features user "$USER_ID" --redis.port="$REDIS_PORT" --bootstrap.file="$BOOTSTRAP_FILE" \
        2>>"$RUNDIR/features.log" || say "features failed; see $RUNDIR/features.log"
fi

# the decisions judged against the simulator's ground truth
for name in "${CONSUMERS[@]}"; do
    echo
    echo "\$ flashstream judge $name $RUNDIR/sim"
    "$BIN" judge "$name" "$RUNDIR/sim" --redis.port="$REDIS_PORT" \
        --bootstrap.file="$BOOTSTRAP_FILE" 2>>"$RUNDIR/judge.log" ||
        say "judge $name: no verdict; see $RUNDIR/judge.log"
done

echo
echo "logs: $RUNDIR/{clickstream,orders,shipments,simulate,broker,redis,judge}.log, events in $RUNDIR/sim/"

# ---- 6. stop ---------------------------------------------------------------------------

echo
for name in "${CONSUMERS[@]}"; do
    stop "$name"
    say "consumer $name: exit status $STOP_RC after SIGTERM (${STOP_MS} ms)"
    [ "$STOP_RC" -eq 0 ] || STATUS=1
done
if [ "$STATUS" -eq 0 ]; then
    say "OK"
else
    say "FAILED (see above)"
fi
exit "$STATUS"
