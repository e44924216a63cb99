#!/usr/bin/env bash
# Starts a private development stack in RUNDIR: a redis-server on a free loopback port
# (append-only file in RUNDIR/redis) and `flashstream broker` (the mock Kafka cluster).
# Waits until both answer, then writes RUNDIR/stack.env (REDIS_PORT, BOOTSTRAP_FILE,
# CONTROL). Pid files: RUNDIR/redis.pid, RUNDIR/broker.pid; stop with deploy/stack-down.sh.
#   usage: deploy/stack-up.sh RUNDIR      (env: FLS_PARTITIONS, default 6)
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 RUNDIR" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLS_BIN:-$ROOT/build/tools/flashstream}
PARTITIONS=${FLS_PARTITIONS:-6}
mkdir -p "$1"
RUNDIR=$(cd "$1" && pwd)

if [ ! -x "$BIN" ]; then
    echo "stack-up: $BIN not found; run deploy/build.sh first" >&2
    exit 1
fi
for f in redis.pid broker.pid; do
    if [ -e "$RUNDIR/$f" ]; then
        echo "stack-up: $RUNDIR/$f exists; run deploy/stack-down.sh $RUNDIR first" >&2
        exit 1
    fi
done

# On failure, stop whatever this script already started.
ok=0
on_exit() {
    if [ "$ok" -ne 1 ]; then
        "$ROOT/deploy/stack-down.sh" "$RUNDIR" || true
    fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port nothing listens on, outside the ephemeral range (a race is still possible, so
# redis is retried on another port if it cannot bind).
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

alive() {
    kill -0 "$1" 2>/dev/null
}

# --- redis ---
mkdir -p "$RUNDIR/redis"
REDIS_PORT=
for _ in 1 2 3 4 5; do
    port=$(free_port)
    # setsid: a Ctrl-C meant for the caller must not reach the stack directly.
    setsid redis-server --bind 127.0.0.1 --port "$port" --daemonize no \
        --dir "$RUNDIR/redis" --appendonly yes --appendfsync everysec --save '' \
        --logfile "$RUNDIR/redis.log" </dev/null >/dev/null 2>&1 &
    pid=$!
    echo "$pid" >"$RUNDIR/redis.pid"
    for _ in $(seq 50); do
        if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
            REDIS_PORT=$port
            break 2
        fi
        alive "$pid" || break
        sleep 0.1
    done
    # did not answer: stop it (if still there) and try another port
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$RUNDIR/redis.pid"
done
if [ -z "$REDIS_PORT" ]; then
    echo "stack-up: redis-server did not start; see $RUNDIR/redis.log" >&2
    exit 1
fi

# --- broker ---
BOOTSTRAP_FILE=$RUNDIR/bootstrap
rm -f "$BOOTSTRAP_FILE"
setsid "$BIN" broker --broker.bootstrap_file="$BOOTSTRAP_FILE" \
    --topic.partitions="$PARTITIONS" </dev/null >>"$RUNDIR/broker.log" 2>&1 &
pid=$!
echo "$pid" >"$RUNDIR/broker.pid"
for _ in $(seq 300); do
    [ -s "$BOOTSTRAP_FILE" ] && break
    if ! alive "$pid"; then
        echo "stack-up: the broker exited; see $RUNDIR/broker.log" >&2
        tail -n 5 "$RUNDIR/broker.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -s "$BOOTSTRAP_FILE" ]; then
    echo "stack-up: no $BOOTSTRAP_FILE after 30 s; see $RUNDIR/broker.log" >&2
    exit 1
fi
CONTROL=$(sed -n 's/^control=//p' "$BOOTSTRAP_FILE")

cat >"$RUNDIR/stack.env" <<EOF
REDIS_PORT=$REDIS_PORT
BOOTSTRAP_FILE=$BOOTSTRAP_FILE
CONTROL=$CONTROL
EOF
ok=1
echo "stack-up: redis on 127.0.0.1:$REDIS_PORT (pid $(cat "$RUNDIR/redis.pid")), broker pid $(cat "$RUNDIR/broker.pid"), $PARTITIONS partitions, control $CONTROL"
echo "stack-up: $RUNDIR/stack.env"
