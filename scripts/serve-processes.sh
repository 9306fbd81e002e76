# Sourced by scripts that start `trtllm-minitron serve` (test-openai-client,
# bench-serve): servers that never outlive the script and never hold the
# shared CPU lock.
#
#   start_server LOG COMMAND ARGS...   background COMMAND (a serve --port 0),
#       stdout/stderr in LOG.out/LOG.err; waits until it listens; sets
#       SERVER_URL and SERVER_PID. Exits the script if it does not start.
#   stop_servers                       kills and reaps every server started.
#
# The caller sets `trap stop_servers EXIT`; serve_processes_traps turns Ctrl-C
# and SIGTERM into an exit, so the EXIT trap runs for them too.

SERVER_PIDS=()
SERVER_URL=
SERVER_PID=

serve_processes_traps() {
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

start_server() {
    local log=$1
    shift
    (
        # Descriptors above 2 come from outside (a `flock` running this script
        # holds the shared CPU lock on one): a server must not keep them.
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        exec "$@"
    ) >"$log.out" 2>"$log.err" &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    local _
    for _ in $(seq 1 6000); do
        if grep -q "listening on" "$log.out" 2>/dev/null; then
            SERVER_URL=$(grep -o 'http://[^ ]*' "$log.out" | head -1)
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "serve did not start ($*):" >&2
    cat "$log.err" >&2
    exit 1
}

stop_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
}
