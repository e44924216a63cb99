#!/usr/bin/env bash
# Stops every process whose pid file (*.pid) is in RUNDIR: SIGTERM, then SIGKILL if it
# is still there after 5 s. Other processes first, then the broker, then redis.
# Only pids from RUNDIR are signalled; the pid files are removed.
#   usage: deploy/stack-down.sh RUNDIR
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 RUNDIR" >&2
    exit 2
fi
RUNDIR=$1
[ -d "$RUNDIR" ] || exit 0

# Running means: exists and is not a zombie waiting for its parent.
running() {
    local state
    state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

stop_pidfile() {
    local f=$1 pid comm
    pid=$(cat "$f" 2>/dev/null || true)
    if ! [[ "$pid" =~ ^[0-9]+$ ]]; then
        rm -f "$f"
        return
    fi
    # Guard against a recycled pid: only our kinds of processes are signalled.
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    if running "$pid" && { [ "$comm" = redis-server ] || [ "$comm" = flashstream ]; }; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            running "$pid" || break
            sleep 0.1
        done
        if running "$pid"; then
            echo "stack-down: $(basename "$f" .pid) (pid $pid) ignored SIGTERM for 5 s; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}

shopt -s nullglob
for f in "$RUNDIR"/*.pid; do
    case $(basename "$f") in
    broker.pid | redis.pid) ;;
    *) stop_pidfile "$f" ;;
    esac
done
for f in "$RUNDIR/broker.pid" "$RUNDIR/redis.pid"; do
    [ -e "$f" ] && stop_pidfile "$f"
done
exit 0
