#!/usr/bin/env bash
# fault-suite: issue 7's fault suite. A fixed, seeded event set (1M+ events) goes
# through all three consumers twice, on two private stacks (deploy/stack-up.sh: a
# redis-server with appendonly yes / appendfsync everysec, and `flashstream broker`):
#   clean  produced up front, one instance per consumer, no fault: the reference,
#          with every read of state sent to Redis and checked against the consumer's
#          copy (--redis.mirror_verify);
#   fault  the same events produced up front too, reads answered from the copy as in
#          production (redis.mirror_mb); while the consumers work through
#          them, a seeded random schedule (points of progress) SIGKILLs and restarts
#          consumers (two clickstream instances share the group, so kills and
#          bounces rebalance mid-stream), takes brokers down and up, injects Fetch,
#          Produce and OffsetCommit errors on the broker's control port, and SIGKILLs
#          and restarts redis-server.
# Then tests/fault/fault_check.c (built here with cc, no project code) reads both ends
# of both stacks and the script compares them: input topics complete; every Redis key
# of every partition (fields, list items, TTL present or not) equal to the clean pass;
# lifetime counters (units sold, stock, coupon budget, express capacity) exact against
# the events and the output topics; every decision id of the clean pass present, and
# duplicates byte-identical. It prints the table and exits 1 on any mismatch.
# Injected Produce errors make the mock lose messages librdkafka reports delivered
# without an offset; the runner replays those (tests/fault/mock_implicit_ack.c shows it
# outside the project; README, Faults).
#
#   full run (~1.0M events, 20+ kill points, ~10 min):  bash bench/fault-suite.sh [RUNDIR]
#   short run (~200k events, 5 kill points, < 4 min):  FLS_FAULT_SHORT=1 bash bench/fault-suite.sh
#   env: FLS_FAULT_SEED (schedule and simulator seed, default 7), FLS_BIN (flashstream
#        binary, default build/tools/flashstream), FLS_FAULT_KEEP=1 keeps RUNDIR
#        (default run/fault-<time>; kept anyway when a check fails).
# Costs: two stacks at once on loopback, peak ~1.5 GB of RAM for the mock cluster's
# logs. Input is produced before any fault: a Produce error or a broker going down
# while the simulator writes makes the mock cluster append a few events twice
# (measured: 7 in 955k), which would change the input rather than test the consumers.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLS_BIN:-$ROOT/build/tools/flashstream}
SEED=${FLS_FAULT_SEED:-7}
SHORT=${FLS_FAULT_SHORT:-0}
RUN=${1:-$ROOT/run/fault-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)
TOPICS=(clickstream orders shipments)
OUTS=(marketing-actions restock-signals dispatch-decisions)
AVSC=(MarketingAction RestockSignal DispatchDecision)

if [ "$SHORT" = 1 ]; then
        PARTS=12
        SIM=(--sim.duration_s=0 --sim.events=200000)
        N_KILL=5 N_BROKER=1 N_ERR=1 N_REDIS=1 N_BOUNCE=1
else
        PARTS=32 # the mock keeps ~5 MiB per partition: 1M events need ~20
        SIM=(--sim.duration_s=200)
        N_KILL=22 N_BROKER=3 N_ERR=2 N_REDIS=3 N_BOUNCE=2
fi
# Recent enough for input.max_future_ms, old enough that the whole sale is past;
# on a minute boundary so both passes see the same buckets.
T0=$(((($(date +%s) - 900) / 60) * 60000))
SIM+=(--sim.seed="$SEED" --sim.start_ts="$T0" --sim.progress_ms=0)

log() { printf '[%s] %s\n' "$(date +%T)" "$*" | tee -a "$RUN/suite.log"; }
fail() {
        log "FAIL: $*"
        exit 1
}

[ -x "$BIN" ] || fail "$BIN not found: build first (deploy/build.sh)"
CHECK=$RUN/fault_check
# shellcheck disable=SC2046 # pkg-config flags are several words
cc -std=c11 -O2 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -o "$CHECK" \
        "$ROOT/tests/fault/fault_check.c" $(pkg-config --cflags --libs rdkafka hiredis avro-c)

cleanup() {
        for s in fault clean; do
                [ -d "$RUN/$s" ] && "$ROOT/deploy/stack-down.sh" "$RUN/$s" >/dev/null 2>&1 || true
        done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the fixed event set (files: the truth the checks count from) ---------------
log "events: simulate ${SIM[*]}"
"$BIN" simulate "${SIM[@]}" --sim.realtime=false --sim.produce=false \
        --sim.out_dir="$RUN/sim" 2>>"$RUN/simulate.log"
declare -A WANT
total=0
for t in "${TOPICS[@]}"; do
        WANT[$t]=$(($(wc -l <"$RUN/sim/$t.csv") - 1))
        total=$((total + WANT[$t]))
done
# Length of the simulated sale in seconds (for the log).
SPAN=$(awk -F, -v t0="$T0" 'FNR > 1 && $NF + 0 > m { m = $NF + 0 } END { print int((m - t0) / 1000) }' \
        "$RUN/sim/clickstream.csv")
log "events: $total (clickstream ${WANT[clickstream]}, orders ${WANT[orders]}, shipments ${WANT[shipments]}), sale ${SPAN}s, $PARTS partitions"

# ---- helpers per stack -------------------------------------------------------
stack_env() { # STACK -> REDIS_PORT, BOOTSTRAP_FILE, CONTROL, BOOTSTRAP
        # shellcheck disable=SC1090
        source "$RUN/$1/stack.env"
        BOOTSTRAP=$(sed -n 's/^bootstrap=//p' "$BOOTSTRAP_FILE")
}
rcli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

# Messages whose outputs are flushed, over all partitions of the three input topics.
DONE_LUA="local s = 0
for _, t in ipairs({'clickstream', 'orders', 'shipments'}) do
  for p = 0, tonumber(ARGV[1]) - 1 do
    local v = redis.call('HGET', 'fs:{' .. t .. '.' .. p .. '}:meta', 'emitted')
    if v then s = s + tonumber(v) + 1 end
  end
end
return s"
done_count() { rcli "$1" EVAL "$DONE_LUA" 0 "$PARTS" 2>/dev/null || echo -1; }

# The coupon budget both passes run with (currency). A budget that binds refuses
# claims by the order partitions reach Redis (consumers/clickstream.c: the one outcome
# not fixed by a partition's input): measured with the default 1000, 11342 of 11425
# claims were refused and 82 of the 83 granted coupons differed between the clean and
# the fault pass, with every later decision of those users. The passes are compared
# with a budget that does not bind, so that a difference is a fault bug; budget
# accounting (used = grants, ids = coupons) is still checked, the limit itself is
# tested by the claims tests (tests/test_store.c).
BUDGET=${FLS_FAULT_BUDGET:-10000000}
# Consumer NAME (pid file STACK/NAME.pid) of app APP.
start_consumer() { # STACK NAME APP
        local s=$1 name=$2 app=$3 extra=()
        stack_env "$s"
        [ "$app" = clickstream ] && extra=(--clickstream.coupon_budget="$BUDGET")
        [ "$s" = clean ] && extra+=(--redis.mirror_verify=true)
        setsid "$BIN" consume "$app" "${extra[@]}" --bootstrap.file="$BOOTSTRAP_FILE" \
                --redis.port="$REDIS_PORT" --metrics.port=-1 \
                --kafka.session.timeout.ms=6000 --kafka.reconnect.backoff.max.ms=500 \
                --redis.retry_max_ms=200 </dev/null >>"$RUN/$s/$name.log" 2>&1 &
        echo $! >"$RUN/$s/$name.pid"
}
pid_of() { cat "$RUN/$1/$2.pid" 2>/dev/null || echo 0; }
# Running: exists and is not a zombie (a dead child stays one until waited for).
alive() {
        local st
        st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
        [ -n "$st" ] && [ "$st" != Z ]
}
# Waits for a pid that is not our child: up to $2 tenths of a second.
wait_gone() {
        local i
        for ((i = 0; i < $2; i++)); do
                alive "$1" || return 0
                sleep 0.1
        done
        return 1
}
stop_consumer() { # STACK NAME -> exit status in $RUN/STACK/NAME.rc
        local pid
        pid=$(pid_of "$1" "$2")
        if [ "$pid" != 0 ] && alive "$pid"; then
                kill -TERM "$pid"
                wait "$pid" 2>/dev/null && echo 0 >"$RUN/$1/$2.rc" || echo $? >"$RUN/$1/$2.rc"
        fi
        rm -f "$RUN/$1/$2.pid"
}
# The mock cluster is librdkafka's test code: under this much group churn it can hit
# one of its own assertions (seen once in a full run: rd_kafka_mock_cgrp_member_sync_set:
# Assertion `!member->resp' failed). Its topics die with it, so say so at once.
broker_check() { # STACK
        local pid
        pid=$(cat "$RUN/$1/broker.pid" 2>/dev/null || echo 0)
        if [ "$pid" = 0 ] || ! kill -0 "$pid" 2>/dev/null; then
                fail "$1: the broker process died (the mock cluster, not a consumer): $(tail -n 1 "$RUN/$1/broker.log" 2>/dev/null)"
        fi
}
wait_done() { # STACK TIMEOUT_S
        local got=-1 i
        stack_env "$1"
        for ((i = 0; i < $2 * 2; i++)); do
                got=$(done_count "$REDIS_PORT")
                [ "$got" = "$total" ] && return 0
                ((i % 10)) || broker_check "$1"
                sleep 0.5
        done
        fail "$1: $got of $total events done after $2 s"
}
check_input() { # STACK: the broker still holds every event, once
        local t w
        stack_env "$1"
        for t in "${TOPICS[@]}"; do
                w=$("$CHECK" watermarks "$BOOTSTRAP" "$t" "$PARTS")
                read -r lo hi dropped <<<"$w"
                [ "$lo" = 0 ] && [ "$hi" = "${WANT[$t]}" ] ||
                        fail "$1: topic $t holds offsets $lo..$hi for ${WANT[$t]} events ($dropped partitions lost their head)"
        done
}

# ---- clean pass --------------------------------------------------------------
log "clean: stack, produce, consume"
FLS_PARTITIONS=$PARTS "$ROOT/deploy/stack-up.sh" "$RUN/clean" >>"$RUN/suite.log"
stack_env clean
"$BIN" simulate "${SIM[@]}" --sim.realtime=false --bootstrap.file="$BOOTSTRAP_FILE" \
        2>>"$RUN/simulate.log"
check_input clean
t_clean=$SECONDS
for app in "${TOPICS[@]}"; do
        start_consumer clean "$app" "$app"
done
wait_done clean 900
for app in "${TOPICS[@]}"; do
        stop_consumer clean "$app"
done
log "clean: $total events in $((SECONDS - t_clean)) s"

# ---- fault pass --------------------------------------------------------------
# The schedule: fault kinds shuffled with awk srand(SEED), at sorted random points of
# progress (2% .. 90% of the events done), each with its random target and parameters.
# Points of progress rather than times: every fault lands mid-stream at any speed.
awk -v seed="$SEED" -v nk="$N_KILL" -v nb="$N_BROKER" -v ne="$N_ERR" \
        -v nr="$N_REDIS" -v nbo="$N_BOUNCE" 'BEGIN {
        srand(seed); n = 0
        split("click-a click-b orders shipments", who, " ")
        for (i = 0; i < nk; i++) k[n++] = "kill " who[int(rand() * 4) + 1] " " sprintf("%.1f", 0.2 + rand() * 1.8)
        for (i = 0; i < nb; i++) k[n++] = "broker " (int(rand() * 3) + 1) " " sprintf("%.1f", 1 + rand() * 3)
        for (i = 0; i < ne; i++) {
                k[n++] = "error Fetch " (5 + int(rand() * 40)) " " (rand() < 0.5 ? "REQUEST_TIMED_OUT" : "NOT_LEADER_FOR_PARTITION")
                k[n++] = "error Produce " (5 + int(rand() * 40)) " " (rand() < 0.5 ? "REQUEST_TIMED_OUT" : "NOT_LEADER_FOR_PARTITION")
                k[n++] = "error OffsetCommit " (5 + int(rand() * 40)) " " (rand() < 0.5 ? "REQUEST_TIMED_OUT" : "NOT_COORDINATOR")
        }
        for (i = 0; i < nr; i++) k[n++] = "redis " sprintf("%.1f", 0.3 + rand() * 1.7)
        for (i = 0; i < nbo; i++) k[n++] = "bounce click-" (rand() < 0.5 ? "a" : "b")
        for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = k[i]; k[i] = k[j]; k[j] = t }
        for (i = 0; i < n; i++) at[i] = 0.02 + rand() * 0.88
        for (i = 1; i < n; i++) for (j = i; j > 0 && at[j - 1] > at[j]; j--) { t = at[j]; at[j] = at[j - 1]; at[j - 1] = t }
        for (i = 0; i < n; i++) printf "%.3f %s\n", at[i], k[i]
}' >"$RUN/schedule.txt"
log "fault: $(wc -l <"$RUN/schedule.txt") faults scheduled (seed $SEED): $RUN/schedule.txt"

FLS_PARTITIONS=$PARTS "$ROOT/deploy/stack-up.sh" "$RUN/fault" >>"$RUN/suite.log"
stack_env fault
"$BIN" simulate "${SIM[@]}" --sim.realtime=false --bootstrap.file="$BOOTSTRAP_FILE" \
        2>>"$RUN/simulate.log"
check_input fault
declare -A APP=([click-a]=clickstream [click-b]=clickstream [orders]=orders [shipments]=shipments)
declare -A NF=()
t_fault=$SECONDS
for name in click-a click-b orders shipments; do
        start_consumer fault "$name" "${APP[$name]}"
done

ctl() { # one control-port command; the reply must be "ok ..."
        local reply
        exec 3<>"/dev/tcp/${CONTROL%:*}/${CONTROL##*:}"
        printf '%s\n' "$1" >&3
        read -r reply <&3 || reply="(no reply)"
        exec 3>&-
        echo "$(date +%T) ctl $1 -> $reply" >>"$RUN/faults.log"
        [[ $reply == ok* ]]
}
redis_start() { # the same server again: port, folder, append-only file
        setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize no \
                --dir "$RUN/fault/redis" --appendonly yes --appendfsync everysec --save '' \
                --logfile "$RUN/fault/redis.log" </dev/null >/dev/null 2>&1 &
        echo $! >"$RUN/fault/redis.pid"
        for _ in $(seq 100); do
                rcli "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
                sleep 0.1
        done
        fail "redis-server did not come back on $REDIS_PORT"
}
# A consumer that exited by itself is counted and restarted (a fault suite must not
# stop on it; the table shows it).
supervise() {
        local name pid
        for name in click-a click-b orders shipments; do
                pid=$(pid_of fault "$name")
                if ! alive "$pid"; then
                        wait "$pid" 2>/dev/null && rc=0 || rc=$?
                        echo "$(date +%T) $name (pid $pid) exited by itself, status $rc; restarted" >>"$RUN/faults.log"
                        NF[unexpected_exit]=$((${NF[unexpected_exit]:-0} + 1))
                        start_consumer fault "$name" "${APP[$name]}"
                fi
        done
}

while read -r at kind a b c; do
        want=$(awk -v f="$at" -v t="$total" 'BEGIN { printf "%d", f * t }')
        last=-1 since=$SECONDS
        while got=$(done_count "$REDIS_PORT") && [ "$got" -lt "$want" ]; do
                [ "$got" != "$last" ] && last=$got since=$SECONDS
                [ $((SECONDS - since)) -lt 300 ] || fail "fault: no progress for 300 s at $got of $total"
                [ $((SECONDS - since)) -lt 5 ] || broker_check fault
                supervise
                sleep 0.2
        done
        echo "$(date +%T) at $at of the events: $kind $a $b $c" >>"$RUN/faults.log"
        case $kind in
        kill)
                pid=$(pid_of fault "$a")
                echo "$(date +%T) SIGKILL $a (pid $pid), restart after ${b}s" >>"$RUN/faults.log"
                kill -KILL "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
                sleep "$b"
                start_consumer fault "$a" "${APP[$a]}"
                NF[kill]=$((${NF[kill]:-0} + 1))
                ;;
        bounce)
                echo "$(date +%T) SIGTERM $a (leaves the group), start again" >>"$RUN/faults.log"
                stop_consumer fault "$a"
                [ "$(cat "$RUN/fault/$a.rc")" = 0 ] ||
                        NF[unclean_stop]=$((${NF[unclean_stop]:-0} + 1))
                start_consumer fault "$a" "${APP[$a]}"
                NF[bounce]=$((${NF[bounce]:-0} + 1))
                ;;
        broker)
                ctl "down $a" || fail "broker control: down $a"
                sleep "$b"
                ctl "up $a" || fail "broker control: up $a"
                NF[broker_down]=$((${NF[broker_down]:-0} + 1))
                ;;
        error)
                ctl "error $a $b $c" || fail "broker control: error $a $b $c"
                NF[err_$a]=$((${NF[err_$a]:-0} + 1))
                ;;
        redis)
                pid=$(cat "$RUN/fault/redis.pid")
                echo "$(date +%T) SIGKILL redis-server (pid $pid), restart after ${a}s" >>"$RUN/faults.log"
                kill -KILL "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
                wait_gone "$pid" 50 || fail "redis-server survived SIGKILL"
                sleep "$a"
                redis_start
                NF[redis_kill]=$((${NF[redis_kill]:-0} + 1))
                ;;
        esac
done <"$RUN/schedule.txt"
log "fault: schedule done after $((SECONDS - t_fault)) s; waiting for the consumers"
for ((i = 0; i < 1800; i++)); do
        [ "$(done_count "$REDIS_PORT")" = "$total" ] && break
        supervise
        sleep 0.5
done
wait_done fault 1
# The final stop may find a consumer still joining (after a SIGKILL its old member
# holds the group until the session times out): it then gives up leaving after
# shutdown.timeout_ms and still exits 0. Any other exit status is counted.
unclean=0
for name in click-a click-b orders shipments; do
        stop_consumer fault "$name"
        [ "$(cat "$RUN/fault/$name.rc" 2>/dev/null || echo 0)" = 0 ] || unclean=$((unclean + 1))
done
log "fault: $total events in $((SECONDS - t_fault)) s"
rebal=$(cat "$RUN"/fault/click-*.log | grep -c '"msg":"assigned clickstream' || true)
# The copy of state (redis.mirror_mb): reads it answered in the fault pass (consumers
# that exited; a SIGKILLed one logs nothing), and in the clean pass, where every read
# went to Redis, how many differed from the copy and how many consumers said so.
mirror_sum() { # STACK FIELD-PATTERN
        cat "$RUN/$1"/*.log | grep -o "\"msg\":\"mirror: .*" | grep -o "$2" |
                awk '{ s += $1 } END { print s + 0 }'
}
mir_hits=$(mirror_sum fault '[0-9]* reads from memory')
mir_miss=$(mirror_sum fault '[0-9]* from Redis')
mir_diff=$(mirror_sum clean '[0-9]* differed')
mir_told=$(cat "$RUN"/clean/*.log | grep -c '"msg":"mirror: ' || true)

# ---- checks ------------------------------------------------------------------
C=$RUN/check
mkdir -p "$C"
# A clickstream user's history (u:<user>:h) and a category's views (k:<cat>:tr) are
# lists that deferred pushes append to: a replay over recorded writes pushes copies of
# entries they hold, which their readers skip (consumers/clickstream.c, load_user,
# load_cat). Compared as the reader sees them: copies (an offset at or below one
# already seen) left out, then the last entries read (16 for the LSTM's sequence, the
# last one holding the user's state; 200 for trending), renumbered.
hist_view() {
        awk -F'\t' 'BEGIN { OFS = "\t" }
        function flush(   k, from) {
                from = n > keep ? n - keep : 0
                for (k = from; k < n; k++) print key, "[" (k - from) "]", item[k]
                n = 0; key = ""
        }
        $1 ~ /^fs:\{clickstream\.[0-9]+\}:(u:.*:h|k:.*:tr)$/ && $2 ~ /^\[[0-9]+\]$/ {
                if ($1 != key) { flush(); key = $1; max = ""; keep = $1 ~ /:h$/ ? 16 : 200 }
                split($3, a, " ")
                if (max != "" && a[1] + 0 <= max) next
                max = a[1] + 0; item[n++] = $3; next
        }
        { if (key != "") flush(); print }
        END { if (key != "") flush() }'
}
for s in clean fault; do
        stack_env "$s"
        # Partition state (everything under a {topic.partition} tag) and global counters.
        # (The pattern also matches capacity counters "fs:{dispatch.r3.4988}": those
        # are global, checked below, and left out here.)
        "$CHECK" dump 127.0.0.1 "$REDIS_PORT" 'fs:{*.[0-9]*}:*' | hist_view |
                grep -v -e '^fs:{dispatch\.' -e '^fs:{budget:' | LC_ALL=C sort >"$C/$s.state"
        "$CHECK" dump 127.0.0.1 "$REDIS_PORT" 'fs:{budget:*' | LC_ALL=C sort >"$C/$s.budget"
        "$CHECK" dump 127.0.0.1 "$REDIS_PORT" 'fs:{dispatch.*' | LC_ALL=C sort >"$C/$s.capacity"
        for i in 0 1 2; do
                "$CHECK" decisions "$BOOTSTRAP" "${OUTS[$i]}" "$PARTS" \
                        "$ROOT/schemas/${AVSC[$i]}.avsc" >"$C/$s.${OUTS[$i]}"
        done
done

# Features: (key, field) pairs whose value differs or exists on one side only. Fields
# that decisions write (fls_emit_defer: a user's last action, coupon and reminder
# marks, caps, signal state, delivery feedback) are reported on their own line.
DEFER_RE='^(act_ts|cpn:.*|rem|capped|capped_users|sig_kind|sig_level|sig_qty|peak_r5m|dlv#[0-9]+|dlv_ms@[0-9]+|dlv_n@[0-9]+|kind|fed|pre|irem)$'
LC_ALL=C join -t $'\t' -a1 -a2 -e '<absent>' -o 0,1.2,2.2 \
        <(awk -F'\t' '{ print $1 "|" $2 "\t" $3 }' "$C/clean.state" | LC_ALL=C sort -t $'\t' -k1,1) \
        <(awk -F'\t' '{ print $1 "|" $2 "\t" $3 }' "$C/fault.state" | LC_ALL=C sort -t $'\t' -k1,1) |
        awk -F'\t' '$2 != $3' >"$C/state.diff" || true
feat_keys=$(cut -f1 "$C/clean.state" | uniq | wc -l)
feat_fields=$(wc -l <"$C/clean.state")
# Per-batch policy state: the orders consumer evaluates restock signals once per
# micro-batch on the SKUs the batch touched (hysteresis per batch, consumers/orders.c),
# so its signal state and the sampled peak rate depend on where batches end, which
# differs between the passes. Not promised equal to the clean pass; checked below
# against the pass's own signals instead. Everything else is.
# Likewise a shipment's decided kind (sh:<id> kind): express and priority capacity is
# one counter per region and hour shared by all partitions, so which shipment gets it
# depends on the order partitions claim in, which differs between the passes; checked
# against the pass's own dispatch decisions instead.
PERBATCH_KEY_RE='^fs:\{orders\.[0-9]+\}:sw:[^:]*:[^:]*$'
PERBATCH_RE='^(sig_kind|sig_level|sig_qty|peak_r5m)$'
SHIP_KEY_RE='^fs:\{shipments\.[0-9]+\}:sh:'
perbatch='function pb(k, f) { return (k ~ kre && f ~ pre) || (k ~ sre && f == "kind") }'
diff_feat=$(awk -F'\t' -v re="$DEFER_RE" '{ split($1, kf, "|"); if (kf[2] !~ re) n++ } END { print n + 0 }' "$C/state.diff")
diff_defer=$(awk -F'\t' -v re="$DEFER_RE" -v kre="$PERBATCH_KEY_RE" -v pre="$PERBATCH_RE" -v sre="$SHIP_KEY_RE" "$perbatch"'{ split($1, kf, "|"); if (kf[2] ~ re && !pb(kf[1], kf[2])) n++ } END { print n + 0 }' "$C/state.diff")
diff_perbatch=$(awk -F'\t' -v kre="$PERBATCH_KEY_RE" -v pre="$PERBATCH_RE" -v sre="$SHIP_KEY_RE" "$perbatch"'{ split($1, kf, "|"); if (pb(kf[1], kf[2])) n++ } END { print n + 0 }' "$C/state.diff")
# What per-batch signals do promise (README, Delivery guarantees): every signal
# decodes, duplicates are identical (checked with the other outputs), and the signal
# state a pass leaves in Redis is the one its own last signal per sku:warehouse says
# (by input offset: RESTOCK -> kind 0, its urgency and quantity; OVERSTOCK -> 1, LOW,
# its quantity; RESOLVED or none -> -1, -1, 0). Prints the keys that disagree.
signal_state() { # DECISIONS STATE
        awk -F'\t' -v kre="$PERBATCH_KEY_RE" '
        function js(s, f,   v) {
                if (!match(s, "\"" f "\": *(\"[^\"]*\"|-?[0-9]+)")) return ""
                v = substr(s, RSTART, RLENGTH); sub(/^"[^"]*": */, "", v); gsub(/"/, "", v)
                return v
        }
        FILENAME == ARGV[1] {
                if ($1 ~ /^\?/) next
                n = split($1, a, "/"); off = a[3] + 0
                k = "fs:{orders." a[2] "}:sw:" js($5, "sku") ":" js($5, "warehouse_id")
                kind = js($5, "kind"); u = js($5, "urgency"); q = js($5, "recommended_qty")
                lvl = u == "LOW" ? 0 : u == "MEDIUM" ? 1 : u == "HIGH" ? 2 : u == "CRITICAL" ? 3 : "?"
                w = kind == "RESTOCK" ? "0 " lvl " " q : kind == "OVERSTOCK" ? "1 0 " q : "-1 -1 0"
                if (!(k in at) || off >= at[k]) { at[k] = off; want[k] = w }
                next
        }
        $1 ~ kre && ($2 == "sig_kind" || $2 == "sig_level" || $2 == "sig_qty") { v[$1 "|" $2] = $3; keys[$1] = 1 }
        END {
                for (k in keys) if (!(k in want)) want[k] = "-1 -1 0"
                for (k in want) {
                        h = (k "|sig_kind" in v ? v[k "|sig_kind"] : -1) " " (k "|sig_level" in v ? v[k "|sig_level"] : -1) " " (k "|sig_qty" in v ? v[k "|sig_qty"] : 0)
                        if (h != want[k]) print k "\tstate " h "\tlast signal " want[k]
                }
        }' "$1" "$2"
}
signal_state "$C/clean.restock-signals" "$C/clean.state" >"$C/clean.signal-state"
signal_state "$C/fault.restock-signals" "$C/fault.state" >"$C/fault.signal-state"
sig_bad_clean=$(wc -l <"$C/clean.signal-state")
sig_bad_fault=$(wc -l <"$C/fault.signal-state")
sig_keys=$(awk -F'\t' -v kre="$PERBATCH_KEY_RE" '$1 ~ kre && $2 == "sig_kind"' "$C/fault.state" | wc -l)
# A shipment's kind in Redis is the highest kind among the pass's own decisions for it
# (STANDARD 0, EXPRESS 1, PRIORITY 2); prints the shipments that disagree.
ship_kind_state() { # DECISIONS STATE
        awk -F'\t' -v sre="$SHIP_KEY_RE" '
        FILENAME == ARGV[1] {
                if ($1 ~ /^\?/) next
                if (!match($5, /"shipment_id": *"[^"]*"/)) next
                sh = substr($5, RSTART, RLENGTH); sub(/^"shipment_id": *"/, "", sh); sub(/"$/, "", sh)
                k = 2
                if ($5 ~ /"decision": *"STANDARD"/) k = 0
                else if ($5 ~ /"decision": *"EXPRESS"/) k = 1
                if (!(sh in want) || k > want[sh]) want[sh] = k
                next
        }
        $1 ~ sre && $2 == "kind" { s = $1; sub(/.*:sh:/, "", s); have[s] = $3 }
        END {
                for (s in want) if (!(s in have) || have[s] != want[s]) print s "\tstate " (s in have ? have[s] : "none") "\tdecisions " want[s]
                for (s in have) if (!(s in want)) print s "\tstate " have[s] "\tno decision"
        }' "$1" "$2"
}
ship_kind_state "$C/clean.dispatch-decisions" "$C/clean.state" >"$C/clean.ship-kind"
ship_kind_state "$C/fault.dispatch-decisions" "$C/fault.state" >"$C/fault.ship-kind"
kind_bad_clean=$(wc -l <"$C/clean.ship-kind")
kind_bad_fault=$(wc -l <"$C/fault.ship-kind")
kind_keys=$(awk -F'\t' -v sre="$SHIP_KEY_RE" '$1 ~ sre && $2 == "kind"' "$C/fault.state" | wc -l)

# Lifetime counters. Units sold and stock: per sku:warehouse, against the events
# (PLACED quantities) and against the clean pass.
units_csv=$(awk -F, 'FNR > 1 && $2 == "PLACED" { s += $7 } END { print s + 0 }' "$RUN/sim/orders.csv")
sum_field() { awk -F'\t' -v f="$2" '$1 ~ /:sw:[^:]*:[^:]*$/ && $2 == f { s += $3 } END { print s + 0 }' "$1"; }
units_clean=$(sum_field "$C/clean.state" u_placed)
units_fault=$(sum_field "$C/fault.state" u_placed)
stock_clean=$(sum_field "$C/clean.state" stock)
stock_fault=$(sum_field "$C/fault.state" stock)
# Stock per sku:warehouse replayed from the events (receipts add, a placed line takes
# its quantity if that much is on hand); keys with other event types are left out.
awk -F, 'FNR > 1 { k = $5 ":" $6; if (skip[k]) next
        if ($2 == "STOCK_RECEIPT") st[k] += $7
        else if ($2 == "PLACED") { if (st[k] >= $7) st[k] -= $7 }
        else skip[k] = 1 }
        END { for (k in st) if (!skip[k]) print k "\t" st[k] }' "$RUN/sim/orders.csv" |
        LC_ALL=C sort >"$C/events.stock"
stock_vs_events() {
        awk -F'\t' '$1 ~ /:sw:[^:]*:[^:]*$/ && $2 == "stock" { k = $1; sub(/^.*:sw:/, "", k); print k "\t" $3 }' "$1" |
                LC_ALL=C sort | LC_ALL=C join -t $'\t' -a1 -e 0 -o 0,1.2,2.2 "$C/events.stock" - |
                awk -F'\t' '$2 != $3' >"$1.stock-diff"
        wc -l <"$1.stock-diff"
}
stock_keys=$(wc -l <"$C/events.stock")
stock_bad_clean=$(stock_vs_events "$C/clean.state")
stock_bad_fault=$(stock_vs_events "$C/fault.state")
# Global counters: "used" must equal the sum of the amounts granted to claim ids, and
# every granted id must be a decision in the output topic that spends it (coupons;
# express or priority dispatch), and no such decision may lack a grant.
counter_check() { # DUMP DECISIONS KIND_RE -> "used granted_ids decisions orphan_ids ungranted_decisions"
        awk -F'\t' -v re="$3" '
        FILENAME == ARGV[1] && $2 == "used" && $1 !~ /:ids$/ { used += $3 }
        FILENAME == ARGV[1] && $1 ~ /:ids$/ && $2 != "~ttl" && $3 + 0 > 0 { g[$2] = 1; ng++; gsum += $3 }
        FILENAME == ARGV[2] && $5 ~ re { d[$1] = 1 }
        END {
                for (i in d) { nd++; if (!(i in g)) und++ }
                for (i in g) if (!(i in d)) orph++
                printf "%d %d %d %d %d %d\n", used, gsum, ng, nd, orph, und
        }' "$1" "$2"
}
read -r cpn_used cpn_gsum cpn_ids cpn_dec cpn_orph cpn_und < <(counter_check "$C/fault.budget" "$C/fault.marketing-actions" '"kind": *"COUPON"')
read -r cap_used cap_gsum cap_ids cap_dec cap_orph cap_und < <(counter_check "$C/fault.capacity" "$C/fault.dispatch-decisions" '"courier_class": *"(express|priority)"')
read -r ccpn_used _ _ ccpn_dec _ _ < <(counter_check "$C/clean.budget" "$C/clean.marketing-actions" '"kind": *"COUPON"')
read -r ccap_used _ _ ccap_dec _ _ < <(counter_check "$C/clean.capacity" "$C/clean.dispatch-decisions" '"courier_class": *"(express|priority)"')
# Limits (clickstream.coupon_budget $BUDGET, in cents; shipments.capacity_per_hour 200).
budget_limit_bad=$(awk -F'\t' -v lim="$((BUDGET * 100))" '$2 == "used" && $1 !~ /:ids$/ && $3 + 0 > lim + 0 { n++ } END { print n + 0 }' "$C/fault.budget")
cap_limit_bad=$(awk -F'\t' '$2 == "used" && $1 !~ /:ids$/ && $3 + 0 > 200 { n++ } END { print n + 0 }' "$C/fault.capacity")

# Decisions per output topic: messages, distinct ids, duplicates, duplicates whose
# bytes differ, clean ids missing from the fault run, fault ids the clean run lacks,
# ids in both whose bytes differ from the clean pass.
dec_stats() { # CLEAN FAULT
        awk -F'\t' '
        FILENAME == ARGV[1] { ch[$1] = $2; next }
        { n++; if ($1 in fh) { dup++; if (fh[$1] != $2 && !($1 in bad)) { bad[$1] = 1; conf++ } } else { fh[$1] = $2; u++ } }
        END {
                for (i in ch) if (!(i in fh)) miss++; else if (ch[i] != fh[i]) differ++
                for (i in fh) if (!(i in ch)) extra++
                printf "%d %d %d %d %d %d %d %d\n", length(ch), n, u, dup, conf, miss, extra, differ
        }' "$1" "$2"
}
created=$(awk -F, 'FNR > 1 && $4 == "CREATED"' "$RUN/sim/shipments.csv" | wc -l)

# ---- the table ---------------------------------------------------------------
mism=0
row() { printf '| %-44s | %14s | %-6s |\n' "$1" "$2" "$3"; }
verdict() { # NAME VALUE OK(0/1)
        if [ "$3" = 1 ]; then row "$1" "$2" ok; else
                row "$1" "$2" FAIL
                mism=$((mism + 1))
        fi
}
{
        echo
        echo "fault suite: seed $SEED, $PARTS partitions, run $RUN"
        echo
        row "faults injected" count ""
        row "--------------------------------------------" "--------------" "------"
        row "consumer SIGKILL + restart" "${NF[kill]:-0}" ""
        row "clickstream instance SIGTERM + rejoin" "${NF[bounce]:-0}" ""
        row "clickstream partition assignments (rebal.)" "$rebal" ""
        row "broker down + up" "${NF[broker_down]:-0}" ""
        row "request errors: Fetch (commands)" "${NF[err_Fetch]:-0}" ""
        row "request errors: Produce (commands)" "${NF[err_Produce]:-0}" ""
        row "request errors: OffsetCommit (commands)" "${NF[err_OffsetCommit]:-0}" ""
        row "redis-server SIGKILL + restart (AOF)" "${NF[redis_kill]:-0}" ""
        verdict "consumers that exited by themselves" "${NF[unexpected_exit]:-0}" "$([ "${NF[unexpected_exit]:-0}" = 0 ] && echo 1)"
        verdict "final SIGTERM not exiting 0" "$unclean" "$([ "$unclean" = 0 ] && echo 1)"
        row "reads from memory / Redis (fault pass)" "$mir_hits / $mir_miss" ""
        verdict "copies unlike Redis (clean pass, verify)" "$mir_diff" "$([ "$mir_diff" = 0 ] && [ "$mir_told" = "${#TOPICS[@]}" ] && echo 1)"
        echo
        row "check" value result
        row "--------------------------------------------" "--------------" "------"
        row "events in (clickstream/orders/shipments)" "$total" ""
        verdict "  all in both stacks' topics, applied once" "$total" 1
        row "partition keys / fields compared" "$feat_keys / $feat_fields" ""
        verdict "feature fields differing from clean pass" "$diff_feat" "$([ "$diff_feat" = 0 ] && echo 1)"
        verdict "decision-state fields differing from clean" "$diff_defer" "$([ "$diff_defer" = 0 ] && echo 1)"
        row "  per-batch signal state, shipment kind, differing (info)" "$diff_perbatch" ""
        verdict "  signal state unlike own last signal: clean/fault" "$sig_bad_clean/$sig_bad_fault of $sig_keys" "$([ "$sig_bad_clean" = 0 ] && [ "$sig_bad_fault" = 0 ] && echo 1)"
        verdict "  shipment kind unlike own decisions: clean/fault" "$kind_bad_clean/$kind_bad_fault of $kind_keys" "$([ "$kind_bad_clean" = 0 ] && [ "$kind_bad_fault" = 0 ] && echo 1)"
        verdict "units sold: events / clean / fault" "$units_csv/$units_clean/$units_fault" "$([ "$units_csv" = "$units_fault" ] && [ "$units_clean" = "$units_fault" ] && echo 1)"
        verdict "stock on hand: clean / fault" "$stock_clean/$stock_fault" "$([ "$stock_clean" = "$stock_fault" ] && echo 1)"
        verdict "stock keys unlike the events: clean / fault" "$stock_bad_clean/$stock_bad_fault of $stock_keys" "$([ "$stock_bad_clean" = 0 ] && [ "$stock_bad_fault" = 0 ] && echo 1)"
        verdict "coupon budget used = sum of grants (cents)" "$cpn_used/$cpn_gsum" "$([ "$cpn_used" = "$cpn_gsum" ] && [ "$budget_limit_bad" = 0 ] && echo 1)"
        verdict "coupons: granted ids / COUPON decisions" "$cpn_ids/$cpn_dec" "$([ "$cpn_orph" = 0 ] && [ "$cpn_und" = 0 ] && echo 1)"
        row "  (clean pass: used / COUPON decisions)" "$ccpn_used/$ccpn_dec" ""
        verdict "capacity used = sum of grants" "$cap_used/$cap_gsum" "$([ "$cap_used" = "$cap_gsum" ] && [ "$cap_limit_bad" = 0 ] && echo 1)"
        verdict "capacity: granted ids / express decisions" "$cap_ids/$cap_dec" "$([ "$cap_orph" = 0 ] && [ "$cap_und" = 0 ] && echo 1)"
        row "  (clean pass: used / express decisions)" "$ccap_used/$ccap_dec" ""
        for i in 0 1 2; do
                o=${OUTS[$i]}
                read -r cn n u dup conf miss extra differ < <(dec_stats "$C/clean.$o" "$C/fault.$o")
                row "$o: decisions out (clean / fault)" "$cn / $n" ""
                row "  distinct ids / duplicates" "$u / $dup" ""
                verdict "  duplicates with different bytes" "$conf" "$([ "$conf" = 0 ] && echo 1)"
                undec=$(grep -c '^?' "$C/fault.$o" || true)
                verdict "  messages that do not decode" "$undec" "$([ "$undec" = 0 ] && echo 1)"
                if [ "$o" = restock-signals ]; then
                        # Per-batch policy: the set of signals depends on where batches
                        # end (orders.c, hysteresis per batch), not promised across runs.
                        row "  clean ids missing / extra (info: per batch)" "$miss / $extra" ""
                else
                        verdict "  clean ids missing / extra in fault" "$miss / $extra" "$([ "$miss" = 0 ] && [ "$extra" = 0 ] && echo 1)"
                fi
                # Not promised across runs: a decision reads its partition's state
                # after its whole micro-batch is applied, and batch boundaries
                # differ between the passes (README, Delivery guarantees).
                row "  same id, bytes differ from clean (info)" "$differ" ""
                if [ "$o" = dispatch-decisions ]; then
                        verdict "  one per created shipment" "$created/$u" "$([ "$created" = "$u" ] && echo 1)"
                fi
        done
        echo
        row "mismatches (must be 0)" "$mism" "$([ "$mism" = 0 ] && echo ok || echo FAIL)"
        echo
} | tee "$RUN/table.txt"
mism=$(grep -c '| FAIL' "$RUN/table.txt" || true)
if [ "$mism" != 0 ]; then
        log "details: $C/state.diff (key|field, clean, fault), $C/*.<topic> (id, fnv64, partition, offset, json)"
        exit 1
fi
# Stacks down first: the EXIT trap finds them by their folders, gone after rm.
cleanup
[ "${FLS_FAULT_KEEP:-0}" = 1 ] || [ $# -ge 1 ] || rm -rf "$RUN"
exit 0
