#!/usr/bin/env bash
# consumer-bench: issue 7's speed figures for the three consumers, on this machine,
# with the broker (`flashstream broker`, the mock cluster) and redis-server local
# (deploy/stack-up.sh, one private stack per measurement). Prints the figures table.
#
#   throughput  fixed, seeded event sets are produced up front (sim.realtime=false):
#               FLS_BENCH_EVENTS events (sim defaults) for clickstream, then
#               FLS_BENCH_OS_EVENTS more with more users (SIM_B below: ~7% orders and
#               ~1.5% shipments) so that those two have enough to time. On the same stack,
#               bench_ceiling (consume, decode, one pipelined HINCRBY per event) and
#               the consumer (all its work), each in a fresh group; rate from the
#               first to the last batch emitted (Redis meta, polled every 0.05 s),
#               ceiling rate timed inside the probe. Ratio.
#   latency     per consumer, the simulator in realtime mode (sim.spike=1: a steady
#               rate) at 50% and 70% of the consumer's median sustained rate of its own
#               topic; bench_latency reads the output topic: now - event_ts. Before
#               the reps, the same traffic (rep 1's seed) as a backlog, timed like the
#               throughput phase: the rate the consumer sustains on that traffic, and
#               so the load the latency figure was taken at (the steady traffic of a
#               fresh stack is not the throughput phase's event set and costs more
#               per event). Skipped below FLS_BENCH_LAT_CAP_MIN events (20000).
#   hot SKU     clickstream, uniform SKUs (sim.zipf_s=0) against 80% of product
#               views on one SKU (sim.hot_share=0.8, the clicks follow the views).
#   RSS         clickstream over FLS_BENCH_RSS_EVENTS events produced in waves while
#               it runs; VmHWM/VmRSS sampled every second, printed against events
#               consumed; Redis used_memory after it.
# Every measurement is repeated FLS_BENCH_REPS times, medians reported, and the 1-min
# load average before each one is logged (the machine is shared: quiet is load < 1).
#
#   full:   bash bench/consumer-bench.sh [RUNDIR]
#   short:  FLS_BENCH_SHORT=1 bash bench/consumer-bench.sh      (~5 min)
#   env:    FLS_BENCH_EVENTS (throughput event set, default 1000000; short 200000),
#           FLS_BENCH_OS_EVENTS (second set for orders/shipments, default 6000000;
#           short 1500000),
#           FLS_BENCH_RSS_EVENTS (default 10000000; short 1000000; 0 skips),
#           FLS_BENCH_REPS (default 3; short 1), FLS_BENCH_LAT_S (simulated seconds
#           per latency run, default 30; short 12), FLS_BENCH_PHASES (default
#           "throughput hot latency rss"), FLS_BENCH_APPS (default all three),
#           FLS_BUILD (build folder, default build), FLS_BENCH_WAIT_QUIET=N (wait up
#           to N s for load < 1 before each measurement; default 0: just log it),
#           FLS_BENCH_LAT_BASE (events/s the latency runs take 50% and 70% of,
#           instead of the sustained rate just measured: to compare builds at one
#           input rate),
#           FLS_BENCH_LAT_OPTS (options for the latency runs: kafka.* ones go to the
#           simulator, the consumer and the probe, the others to the consumer; e.g.
#           "--batch.max_ms=5 --kafka.fetch.wait.max.ms=2").
# Costs: one stack at a time (redis + broker, up to ~1 GB for the mock's logs), two
# cores busy during the runs; the RSS run lasts 10M / (consumer rate) seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FLS_BUILD:-$ROOT/build}
BIN=$BUILD/tools/flashstream
CEIL=$BUILD/bench/bench_ceiling
LATB=$BUILD/bench/bench_latency
SHORT=${FLS_BENCH_SHORT:-0}
if [ "$SHORT" = 1 ]; then
        EVENTS=${FLS_BENCH_EVENTS:-200000}
        OS_EVENTS=${FLS_BENCH_OS_EVENTS:-1500000}
        RSS_EVENTS=${FLS_BENCH_RSS_EVENTS:-1000000}
        REPS=${FLS_BENCH_REPS:-1}
        LAT_S=${FLS_BENCH_LAT_S:-12}
else
        EVENTS=${FLS_BENCH_EVENTS:-1000000}
        OS_EVENTS=${FLS_BENCH_OS_EVENTS:-6000000}
        RSS_EVENTS=${FLS_BENCH_RSS_EVENTS:-10000000}
        REPS=${FLS_BENCH_REPS:-3}
        LAT_S=${FLS_BENCH_LAT_S:-30}
fi
PHASES=${FLS_BENCH_PHASES:-throughput hot latency rss}
read -r -a APPS <<<"${FLS_BENCH_APPS:-clickstream orders shipments}"
WAIT_QUIET=${FLS_BENCH_WAIT_QUIET:-0}
read -r -a LAT_OPTS <<<"${FLS_BENCH_LAT_OPTS:-}"
LAT_KAFKA=()
for o in "${LAT_OPTS[@]}"; do
        case $o in --kafka.*) LAT_KAFKA+=("$o") ;; esac
done
# The mock keeps ~5 MiB per partition; a click event is ~120 bytes on the wire.
PARTS=$(((EVENTS * 130 / (4 * 1024 * 1024)) + 8))
[ "$PARTS" -lt 12 ] && PARTS=12
# Set B: many users and SKUs make many more orders and shipments per click.
SIM_B=(--sim.users=300000 --sim.rate=1000 --sim.skus=20000)
RSS_WAVE=400000 # events per wave of the RSS run: well inside retention
RSS_PARTS=32
RUN=${1:-$ROOT/run/bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)
declare -A OUT=([clickstream]=marketing-actions [orders]=restock-signals [shipments]=dispatch-decisions)

log() { printf '[%s] %s\n' "$(date +%T)" "$*" | tee -a "$RUN/bench.log" >&2; }
fail() {
        log "FAIL: $*"
        exit 1
}
for b in "$BIN" "$CEIL" "$LATB"; do
        [ -x "$b" ] || fail "$b not found: build first (cmake --build $BUILD)"
done

STACK=
lpid=
cleanup() {
        if [ -n "$lpid" ]; then kill -TERM "$lpid" 2>/dev/null || true; fi
        if [ -n "$STACK" ]; then "$ROOT/deploy/stack-down.sh" "$STACK" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

load1() { cut -d' ' -f1 /proc/loadavg; }
# Waits (up to WAIT_QUIET s) for load < 1, then logs the load the measurement starts at.
quiet() {
        local i
        for ((i = 0; i < WAIT_QUIET; i += 5)); do
                awk -v l="$(load1)" 'BEGIN { exit !(l < 1) }' && break
                sleep 5
        done
        load1 >>"$RUN/loads"
        log "  load before: $(load1) ($1)"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "n/a" }'; }
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

stack_up() { # NAME PARTITIONS
        STACK=$RUN/$1
        rm -rf "$STACK"
        FLS_BIN=$BIN FLS_PARTITIONS=$2 "$ROOT/deploy/stack-up.sh" "$STACK" >>"$RUN/bench.log"
        # shellcheck disable=SC1091
        source "$STACK/stack.env"
}
stack_down() {
        "$ROOT/deploy/stack-down.sh" "$STACK" >/dev/null 2>&1 || true
        rm -rf "$STACK/redis" # the append-only file can be large
        STACK=
}

# Batches emitted, as events, over the partitions of one topic (Redis meta).
DONE_LUA="local s = 0
for p = 0, tonumber(ARGV[2]) - 1 do
  local v = redis.call('HGET', 'fs:{' .. ARGV[1] .. '.' .. p .. '}:meta', 'emitted')
  if v then s = s + tonumber(v) + 1 end
end
return s"
done_count() { rcli EVAL "$DONE_LUA" 0 "$1" "$2" 2>/dev/null || echo -1; }

# produce SEED EVENTS START_TS [sim options...] -> "click orders shipments" counts
produce() {
        local seed=$1 n=$2 t0=$3 line
        shift 3
        line=$("$BIN" simulate --sim.realtime=false --sim.produce=true --sim.events="$n" \
                --sim.duration_s=0 --sim.seed="$seed" --sim.start_ts="$t0" --sim.progress_ms=0 \
                --bootstrap.file="$BOOTSTRAP_FILE" "$@" 2>&1 | tee -a "$RUN/simulate.log" |
                grep '"msg":"done ') || fail "simulate failed (see $RUN/simulate.log)"
        sed 's/.*clickstream=\([0-9]*\) orders=\([0-9]*\) shipments=\([0-9]*\).*/\1 \2 \3/' <<<"$line"
}
count_of() { # APP "c o s"
        local c o s
        read -r c o s <<<"$2"
        case $1 in clickstream) echo "$c" ;; orders) echo "$o" ;; shipments) echo "$s" ;; esac
}

start_consumer() { # APP GROUP LOGNAME [options]
        local app=$1 group=$2 name=$3
        shift 3
        setsid "$BIN" consume "$app" --bootstrap.file="$BOOTSTRAP_FILE" \
                --redis.port="$REDIS_PORT" --metrics.port=-1 --consumer.group="$group" \
                --kafka.session.timeout.ms=6000 "$@" </dev/null >>"$RUN/$name.log" 2>&1 &
        CPID=$!
        echo "$CPID" >"$STACK/consumer.pid"
}
stop_consumer() {
        kill -TERM "$CPID" 2>/dev/null || true
        wait "$CPID" 2>/dev/null || true
        rm -f "$STACK/consumer.pid"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
redis_cpu() { rcli INFO cpu | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.2f", s }'; }

# measure APP TOPIC_EVENTS PARTS NAME -> "events_per_s consumer_cpu_s redis_cpu_s"
measure() {
        local app=$1 want=$2 parts=$3 name=$4 c t t1='' c1='' r0 tick
        tick=$(getconf CLK_TCK)
        r0=$(redis_cpu)
        start_consumer "$app" "bench-$name-$RANDOM" "$name"
        local deadline=$((SECONDS + 1800))
        while :; do
                c=$(done_count "$app" "$parts")
                t=$(date +%s.%N)
                if [ -z "$t1" ] && [ "$c" -gt 0 ]; then
                        t1=$t c1=$c
                fi
                [ "$c" -ge "$want" ] && break
                kill -0 "$CPID" 2>/dev/null || fail "$app consumer exited (see $RUN/$name.log)"
                [ $SECONDS -lt $deadline ] || fail "$app: $c of $want after 1800 s"
                sleep 0.05
        done
        awk -v t1="$t1" -v t="$t" 'BEGIN { exit !(t - t1 > 0.5) }' ||
                fail "$app: $want events done in under 0.5 s: too few to time (raise the event counts)"
        local cpu
        cpu=$(cpu_ticks "$CPID")
        stop_consumer
        awk -v n="$want" -v c1="$c1" -v t1="$t1" -v t="$t" -v cpu="$cpu" -v hz="$tick" \
                -v r0="$r0" -v r1="$(redis_cpu)" \
                'BEGIN { printf "%.0f %.1f %.1f\n", (n - c1) / (t - t1), cpu / hz, r1 - r0 }'
}

# Set A (clickstream) starts 6 h ago, set B (orders, shipments) 3 h ago: each spans
# well under 3 h, so B follows A in event time too (no late events) and neither
# reaches the future (input.max_future_ms).
T_OLD=$(((($(date +%s) - 6 * 3600) / 60) * 60000))
T_OLD_B=$((T_OLD + 3 * 3600000))
log "consumer-bench: $RUN; events $EVENTS, reps $REPS, partitions $PARTS, phases: $PHASES${LAT_OPTS[*]:+, latency options: ${LAT_OPTS[*]}}"
log "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A RATE CEILR CCPU RCPU COUNT
: >"$RUN/loads"

# ---- throughput and ceiling -------------------------------------------------------
if [[ " $PHASES " == *" throughput "* ]]; then
        for ((rep = 1; rep <= REPS; rep++)); do
                stack_up "tp$rep" "$PARTS"
                counts=$(produce 42 "$EVENTS" "$T_OLD")
                log "throughput rep $rep: produced $counts (click orders shipments)"
                more=
                for app in "${APPS[@]}"; do
                        if [ "$app" != clickstream ] && [ -z "$more" ]; then
                                more=$(produce 43 "$OS_EVENTS" "$T_OLD_B" "${SIM_B[@]}")
                                log "throughput rep $rep: produced $more more (click orders shipments)"
                                read -r a1 a2 a3 <<<"$counts"
                                read -r b1 b2 b3 <<<"$more"
                                counts="$((a1 + b1)) $((a2 + b2)) $((a3 + b3))"
                        fi
                        n=$(count_of "$app" "$counts")
                        COUNT[$app]=$n
                        quiet "ceiling $app rep $rep"
                        line=$("$CEIL" --bootstrap.file="$BOOTSTRAP_FILE" --redis.port="$REDIS_PORT" \
                                --bench.topic="$app" --bench.subject="$app-value" --bench.events="$n" \
                                --consumer.group="ceil-$app-$rep" 2>>"$RUN/ceiling.log") ||
                                fail "bench_ceiling $app (see $RUN/ceiling.log)"
                        log "  $line"
                        sed 's/.*events_per_s=\([0-9]*\).*/\1/' <<<"$line" >>"$RUN/ceil.$app"
                        quiet "consumer $app rep $rep"
                        measure "$app" "$n" "$PARTS" "tp-$app-$rep" >"$RUN/m.out"
                        read -r r cpu rcpu <"$RUN/m.out"
                        log "  consumer $app: $r events/s over $n events, consumer cpu ${cpu}s, redis cpu ${rcpu}s"
                        echo "$r" >>"$RUN/rate.$app"
                        echo "$cpu" >>"$RUN/cpu.$app"
                        echo "$rcpu" >>"$RUN/rcpu.$app"
                done
                stack_down
        done
fi
for app in "${APPS[@]}"; do
        [ -s "$RUN/rate.$app" ] || continue
        RATE[$app]=$(median <"$RUN/rate.$app")
        CEILR[$app]=$(median <"$RUN/ceil.$app")
        CCPU[$app]=$(median <"$RUN/cpu.$app")
        RCPU[$app]=$(median <"$RUN/rcpu.$app")
done

# ---- hot SKU ------------------------------------------------------------------
if [[ " $PHASES " == *" hot "* ]]; then
        for ((rep = 1; rep <= REPS; rep++)); do
                for mode in uniform hot; do
                        opts=(--sim.zipf_s=0)
                        [ "$mode" = hot ] && opts+=(--sim.hot_share=0.8)
                        stack_up "hot-$mode$rep" "$PARTS"
                        counts=$(produce 42 "$EVENTS" "$T_OLD" "${opts[@]}")
                        n=$(count_of clickstream "$counts")
                        quiet "clickstream $mode rep $rep"
                        measure clickstream "$n" "$PARTS" "hot-$mode-$rep" >"$RUN/m.out"
                        read -r r _ _ <"$RUN/m.out"
                        log "  clickstream $mode: $r events/s over $n events"
                        echo "$r" >>"$RUN/hot.$mode"
                        stack_down
                done
        done
        # The share of click events with a SKU that name s1, from one hot event set.
        "$BIN" simulate --sim.realtime=false --sim.produce=false --sim.events=200000 \
                --sim.duration_s=0 --sim.zipf_s=0 --sim.hot_share=0.8 --sim.progress_ms=0 \
                --sim.out_dir="$RUN/hot-sim" 2>>"$RUN/simulate.log"
        HOT_SHARE=$(awk -F, 'NR > 1 && $5 != "" { n++; if ($5 == "s1") h++ } END { printf "%.1f%%", 100 * h / n }' \
                "$RUN/hot-sim/clickstream.csv")
        rm -rf "$RUN/hot-sim"
fi

# ---- latency --------------------------------------------------------------------
# A steady rate: sim.spike=1. sim.rate is click events per second; the orders and
# shipments topics get a fixed share of it, measured from the event set.
declare -A LAT
if [[ " $PHASES " == *" latency "* ]]; then
        # orders and shipments: the many-users options of set B (~10x their share).
        sim_counts() {
                "$BIN" simulate --sim.realtime=false --sim.produce=false --sim.events=200000 \
                        --sim.duration_s=0 --sim.spike=1 --sim.progress_ms=0 --sim.out_dir="$RUN/share-sim" \
                        "$@" 2>&1 | grep '"msg":"done ' |
                        sed 's/.*clickstream=\([0-9]*\) orders=\([0-9]*\) shipments=\([0-9]*\).*/\1 \2 \3/'
                rm -rf "$RUN/share-sim"
        }
        counts_a=$(sim_counts) || fail "simulate for the topic shares"
        counts_b=$(sim_counts "${SIM_B[@]}") || fail "simulate for the topic shares"
        for app in "${APPS[@]}"; do
                lat_opts=()
                counts=$counts_a
                if [ "$app" != clickstream ]; then
                        lat_opts=("${SIM_B[@]}")
                        counts=$counts_b
                fi
                base=${FLS_BENCH_LAT_BASE:-${RATE[$app]:-}}
                [ -n "$base" ] || fail "latency needs the throughput phase for $app (or FLS_BENCH_LAT_BASE)"
                share=$(awk -v a="$(count_of "$app" "$counts")" -v c="$(count_of clickstream "$counts")" \
                        'BEGIN { print a / c }')
                for pctl in 50 70; do
                        target=$(awk -v b="$base" -v p="$pctl" 'BEGIN { printf "%.0f", b * p / 100 }')
                        # The simulator's pace in realtime mode tops out near 100k clicks/s
                        # on this machine: beyond that the topic gets less than asked.
                        simrate=$(awk -v t="$target" -v s="$share" 'BEGIN { r = t / s; if (r > 100000) r = 100000; printf "%.0f", r }')
                        cap=
                        stack_up "lat-cap-$app-$pctl" 12
                        counts=$(produce 1 0 "$T_OLD" "${lat_opts[@]}" --sim.spike=1 \
                                --sim.rate="$simrate" --sim.duration_s="$LAT_S")
                        n=$(count_of "$app" "$counts")
                        if [ "$n" -ge "${FLS_BENCH_LAT_CAP_MIN:-20000}" ]; then
                                quiet "backlog rate of the latency traffic, $app at $pctl%"
                                measure "$app" "$n" 12 "lat-cap-$app-$pctl" >"$RUN/m.out"
                                read -r cap _ _ <"$RUN/m.out"
                                log "  $app at $pctl%: the same traffic as a backlog ($n events): $cap events/s"
                        fi
                        stack_down
                        for ((rep = 1; rep <= REPS; rep++)); do
                                name="lat-$app-$pctl-$rep"
                                stack_up "$name" 12
                                start_consumer "$app" "bench-$name" "$name" "${LAT_OPTS[@]}"
                                for _ in $(seq 300); do
                                        grep -q "assigned $app" "$RUN/$name.log" 2>/dev/null && break
                                        sleep 0.1
                                done
                                "$LATB" --bootstrap.file="$BOOTSTRAP_FILE" --bench.topic="${OUT[$app]}" \
                                        --bench.subject="${OUT[$app]}-value" --bench.idle_s=4 \
                                        --bench.max_s=$((LAT_S + 300)) "${LAT_KAFKA[@]}" >"$RUN/$name.out" 2>>"$RUN/latency.log" &
                                lpid=$!
                                sleep 2
                                quiet "latency $app at $pctl% rep $rep"
                                t_sim=$SECONDS
                                # lat_opts first: the rate asked for must win over set B's.
                                sline=$("$BIN" simulate "${lat_opts[@]}" --sim.realtime=true --sim.spike=1 \
                                        --sim.rate="$simrate" --sim.duration_s="$LAT_S" --sim.seed="$rep" \
                                        --sim.progress_ms=0 --bootstrap.file="$BOOTSTRAP_FILE" "${LAT_KAFKA[@]}" 2>&1 |
                                        tee -a "$RUN/simulate.log" | grep '"msg":"done ') || true
                                sim_s=$((SECONDS - t_sim))
                                # The probe stops 4 s after the last decision; a consumer
                                # far behind gets 30 s more, then the probe is stopped.
                                for _ in $(seq 300); do
                                        kill -0 "$lpid" 2>/dev/null || break
                                        sleep 0.1
                                done
                                kill -TERM "$lpid" 2>/dev/null || true
                                wait "$lpid" || true
                                got=$(count_of "$app" "$(sed 's/.*clickstream=\([0-9]*\) orders=\([0-9]*\) shipments=\([0-9]*\).*/\1 \2 \3/' <<<"$sline")")
                                line=$(cat "$RUN/$name.out")
                                stop_consumer
                                stack_down
                                [ -n "$line" ] || {
                                        log "  $app at $pctl%: no latency line (see $RUN/latency.log)"
                                        continue
                                }
                                achieved=$(awk -v n="$got" -v s="$LAT_S" 'BEGIN { printf "%.0f", n / s }')
                                log "  $app at $pctl% (target $target/s, sim.rate $simrate, got $achieved/s over ${sim_s}s wall): $line"
                                echo "$achieved $line" >>"$RUN/lat.$app.$pctl"
                        done
                        f=$RUN/lat.$app.$pctl
                        [ -s "$f" ] || continue
                        in=$(awk '{ print $1 }' "$f" | median)
                        load=n/a
                        [ -n "$cap" ] && load=$(awk -v i="$in" -v c="$cap" \
                                'BEGIN { printf "%.2f of its backlog rate %d/s", i / c, c }')
                        LAT[$app.$pctl]=$(printf '%s/s in (load %s), %s decisions, p50 %s, p99 %s, p99.9 %s ms' \
                                "$in" "$load" \
                                "$(sed 's/.*decisions=\([0-9]*\).*/\1/' "$f" | median)" \
                                "$(sed 's/.*p50_ms=\([0-9.]*\).*/\1/' "$f" | median)" \
                                "$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' "$f" | median)" \
                                "$(sed 's/.*p999_ms=\([0-9.]*\).*/\1/' "$f" | median)")
                done
        done
fi

# ---- RSS over a long run ---------------------------------------------------------
if [[ " $PHASES " == *" rss "* ]] && [ "$RSS_EVENTS" -gt 0 ]; then
        stack_up rss "$RSS_PARTS"
        quiet "rss run"
        # Waves an hour of simulated time apart, far enough in the past that the
        # newest is not in the future: the clock moves forward like a live stream.
        waves=$(((RSS_EVENTS + RSS_WAVE - 1) / RSS_WAVE))
        t_rss=$(((($(date +%s) - 3600 * (waves + 1)) / 60) * 60000))
        start_consumer clickstream bench-rss rss
        produced=0 wave=0
        echo "elapsed_s events_consumed vmrss_kb vmhwm_kb" >"$RUN/rss.tsv"
        last_n=-1 last_t=$SECONDS
        while :; do
                done_n=$(done_count clickstream "$RSS_PARTS")
                if [ "$done_n" != "$last_n" ]; then
                        last_n=$done_n last_t=$SECONDS
                fi
                [ $((SECONDS - last_t)) -lt 120 ] || fail "RSS run stalled at $done_n of $produced events"
                # Keep at most two waves ahead of the consumer (retention).
                if [ "$wave" -lt "$waves" ] && [ $((produced - done_n)) -lt "$RSS_WAVE" ]; then
                        n=$RSS_WAVE
                        [ $((RSS_EVENTS - wave * RSS_WAVE)) -lt "$n" ] && n=$((RSS_EVENTS - wave * RSS_WAVE))
                        c=$(produce $((100 + wave)) "$n" $((t_rss + wave * 3600000)) \
                                --sim.spike=1 --sim.rate=5000)
                        produced=$((produced + $(count_of clickstream "$c")))
                        wave=$((wave + 1))
                fi
                read -r rss hwm < <(awk '/^VmRSS/ { r = $2 } /^VmHWM/ { h = $2 } END { print r + 0, h + 0 }' \
                        "/proc/$CPID/status" 2>/dev/null || echo "0 0")
                echo "$SECONDS $done_n $rss $hwm" >>"$RUN/rss.tsv"
                [ "$wave" -ge "$waves" ] && [ "$done_n" -ge "$produced" ] && break
                kill -0 "$CPID" 2>/dev/null || fail "clickstream consumer exited during the RSS run"
                sleep 1
        done
        RSS_DONE=$done_n
        RSS_HWM=$hwm
        REDIS_MEM=$(rcli INFO memory | awk -F: '/^used_memory:/ { printf "%.0f MiB", $2 / 1048576 }')
        REDIS_KEYS=$(rcli DBSIZE)
        stop_consumer
        stack_down
        # VmRSS against events consumed at each tenth of the run.
        RSS_CURVE=$(awk -v tot="$RSS_DONE" 'NR > 1 && $2 > 0 {
                k = int(10 * $2 / tot); if (k > 10) k = 10
                if (!(k in seen)) { seen[k] = 1; printf "%s%.1fM: %d MiB", (n++ ? ", " : ""), $2 / 1e6, $3 / 1024 } }' "$RUN/rss.tsv")
fi

# ---- the table ------------------------------------------------------------------
LOADS=$(sort -g "$RUN/loads" | awk '{ v[NR] = $1 } END { if (NR) printf "min %s, median %s, max %s", v[1], v[int((NR + 1) / 2)], v[NR] }')
{
        echo
        echo "## consumer-bench ($(date -u +%FT%TZ), $(nproc) cores, load before measurements: $LOADS)"
        echo "events: $EVENTS (sim.seed=42) + $OS_EVENTS (sim.seed=43, ${SIM_B[*]}) per throughput run, reps $REPS (medians), $PARTS partitions"
        echo
        [ -n "$(ls "$RUN"/rate.* 2>/dev/null)" ] && {
                echo "| consumer | sustained events/s | ceiling events/s | ratio | consumer CPU s | redis CPU s |"
                echo "|---|---|---|---|---|---|"
        }
        for app in "${APPS[@]}"; do
                [ -n "${RATE[$app]:-}" ] || continue
                echo "| $app (${COUNT[$app]} events) | ${RATE[$app]} | ${CEILR[$app]} | $(awk -v a="${RATE[$app]}" -v b="${CEILR[$app]}" 'BEGIN { printf "%.2f", a / b }') | ${CCPU[$app]} | ${RCPU[$app]} |"
        done
        if [ -n "$(ls "$RUN"/lat.*.* 2>/dev/null)" ]; then
                echo
                echo "| consumer | latency at 50% of sustained | latency at 70% of sustained |"
                echo "|---|---|---|"
                for app in "${APPS[@]}"; do
                        echo "| $app | ${LAT[$app.50]:-n/a} | ${LAT[$app.70]:-n/a} |"
                done
        fi
        if [ -s "$RUN/hot.hot" ]; then
                u=$(median <"$RUN/hot.uniform")
                h=$(median <"$RUN/hot.hot")
                echo
                echo "hot SKU (clickstream, sim.hot_share=0.8: $HOT_SHARE of click events with a SKU on s1): uniform $u events/s, hot $h events/s, ratio $(awk -v a="$h" -v b="$u" 'BEGIN { printf "%.2f", a / b }')"
        fi
        if [ -n "${RSS_DONE:-}" ]; then
                echo
                echo "RSS (clickstream, $RSS_DONE events in waves of $RSS_WAVE): peak VmHWM $((RSS_HWM / 1024)) MiB; VmRSS by events consumed: $RSS_CURVE; Redis used_memory after: $REDIS_MEM ($REDIS_KEYS keys)"
        fi
} | tee "$RUN/figures.md"
