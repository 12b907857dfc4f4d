#!/usr/bin/env bash
# Submit `zaya-rl train CONFIG [overrides]` to a running Ray cluster as a Ray Job (docs/cluster.md §4).
#
#   export RAY_ADDRESS=http://HEAD_NODE:8265          # the head's dashboard (job API) address
#   launch/submit.sh configs/examples/multinode.yaml run_dir=/shared/zaya_rl/runs/mn1
#
# The checkout is uploaded as the job's working_dir with launch/runtime_env.yaml (pip packages, env vars), so
# CONFIG is a path inside this checkout. run_dir (and checkpoint.dir, when set) must be absolute paths on a
# filesystem the head node writes and the trainer node shares: the job's working directory is a temporary copy.
# The config is validated here first, so a config error never reaches the cluster.
#
# Settings (environment variables):
#   RAY_ADDRESS     job API address of the cluster (required), e.g. http://10.0.0.1:8265
#   RUNTIME_ENV     runtime-env YAML (default launch/runtime_env.yaml)
#   SUBMISSION_ID   job id (default zaya-rl-<UTC time>-<random>); `ray job logs/stop/status ID` use it
#   NO_WAIT         1 returns after submission instead of streaming the logs until the job ends
#   RAY_AUTH_TOKEN  with token auth on the cluster (RAY_AUTH_MODE=token), the cluster's token
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
fi
cd "$(dirname "$0")/.."
: "${RAY_ADDRESS:?set RAY_ADDRESS to the cluster job API, e.g. http://HEAD_NODE:8265}"
run_dir=$(zaya-rl config show "$@" | python -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["run_dir"])')
if [[ $run_dir != /* ]]; then
    echo "launch/submit.sh: run_dir=$run_dir is relative; it would land in the job's temporary working" \
         "directory on the head node. Pass run_dir=/shared/path (a filesystem the trainer node shares)." >&2
    exit 2
fi
id=${SUBMISSION_ID:-zaya-rl-$(date -u +%Y%m%d-%H%M%S)-$RANDOM}
opts=(--address "$RAY_ADDRESS" --runtime-env "${RUNTIME_ENV:-launch/runtime_env.yaml}" --submission-id "$id")
[[ ${NO_WAIT:-0} == 1 ]] && opts+=(--no-wait)
echo "launch/submit.sh: submitting $id (run_dir $run_dir)"
# `python -m` (not the zaya-rl script) so the job imports the submitted working_dir's code.
exec ray job submit "${opts[@]}" -- python -m zaya_rl.cli train "$@"
