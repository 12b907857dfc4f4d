#!/usr/bin/env bash
# Run `zaya-rl train` on a local Ray instance: join the one at $RAY_ADDRESS, or start a private head for this
# run (`ray start --head --block`) and stop it, and only it, when the run ends (docs/cluster.md §3).
#
#   launch/local.sh configs/tiny_cpu.yaml run_dir=runs/demo pipeline.total_steps=20
#   RAY_ADDRESS=127.0.0.1:6379 launch/local.sh configs/tiny_cpu.yaml          # join a running instance
#   RAY_RESOURCES='{"scorer_node": 1, "trainer_node": 1, "rollout_node": 2}' \
#       launch/local.sh configs/examples/multinode.yaml                         # a multi-node config on one box
#
# Settings (environment variables):
#   RAY_ADDRESS    join this instance (host:port) instead of starting one
#   NUM_CPUS       CPUs of the started head (default: all); NUM_GPUS likewise (default: Ray detects them)
#   RAY_RESOURCES  custom resources of the started head, JSON (default: none)
#   RAY_PORT       GCS port of the started head (default: a free port)
#   DASHBOARD      1 starts the dashboard (needed for `ray job submit` against this head; default 0)
#   RAY_AUTH_MODE  token auth of the started head; default `disabled` (a private single-host instance).
#                  With `token`, set RAY_AUTH_TOKEN too: docs/troubleshooting.md "Token authentication".
#   READY_TIMEOUT  seconds to wait for the head to come up (default 180)
# The run's own settings (run_dir, steps, ...) are config overrides after the config file.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
fi
[[ -f $1 ]] || { echo "launch/local.sh: config file not found: $1" >&2; exit 2; }
cd "$(dirname "$0")/.."

if [[ -z ${RAY_ADDRESS:-} ]]; then
    export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
    port=${RAY_PORT:-$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    log_dir=$(mktemp -d "${TMPDIR:-/tmp}/zaya_rl_ray.XXXXXX")
    args=(--head --block --port="$port" --disable-usage-stats
          --include-dashboard="$([[ ${DASHBOARD:-0} == 1 ]] && echo true || echo false)")
    [[ -n ${NUM_CPUS:-} ]] && args+=(--num-cpus="$NUM_CPUS")
    [[ -n ${NUM_GPUS:-} ]] && args+=(--num-gpus="$NUM_GPUS")
    [[ -n ${RAY_RESOURCES:-} ]] && args+=(--resources="$RAY_RESOURCES")
    ray start "${args[@]}" >"$log_dir/head.log" 2>&1 &
    head_pid=$!
    # SIGTERM to `ray start --block` stops exactly the processes it started (never `ray stop`, which would
    # stop every Ray instance of this user on the machine).
    trap 'kill -TERM "$head_pid" 2>/dev/null || true; wait "$head_pid" 2>/dev/null || true' EXIT
    trap 'exit 130' INT TERM
    export RAY_ADDRESS=127.0.0.1:$port
    deadline=$((SECONDS + ${READY_TIMEOUT:-180}))
    until ray status --address "$RAY_ADDRESS" >/dev/null 2>&1; do
        if ! kill -0 "$head_pid" 2>/dev/null || ((SECONDS > deadline)); then
            echo "launch/local.sh: the Ray head did not come up; its log:" >&2
            cat "$log_dir/head.log" >&2
            exit 1
        fi
        sleep 1
    done
    echo "launch/local.sh: started a Ray head at $RAY_ADDRESS (log: $log_dir/head.log)"
else
    echo "launch/local.sh: joining the Ray instance at $RAY_ADDRESS"
fi

zaya-rl train "$@"
