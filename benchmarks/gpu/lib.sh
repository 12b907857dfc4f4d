# Shared set-up of the device scripts (sourced by run_all.sh and run_x2.sh after they set ROOT, PY, BUDGET,
# OUT, WORK): environment for vLLM/Ray on the lent GPU machine, the optional extra wheels, the entry-point
# shim, and ``step``, which runs one time-boxed step in its own session and records its exit code.
rm -rf "$WORK" && mkdir -p "$WORK/res" "$WORK/logs" "$OUT"
export ZAYA_GPU_WORK=$WORK PYTHONPATH=$ROOT:/tmp/site:$WORK/ep:${PYTHONPATH:-}
export VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export VLLM_USE_FLASHINFER_SAMPLER=0 WANDB_MODE=disabled RAY_AUTH_MODE=disabled TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
STEPS=""
SETSID="setsid -w"  # each step in its own session, so its leftovers can be killed as a group
$SETSID true 2> /dev/null || SETSID=""

if compgen -G ".gpuwheels/extra/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpuwheels/extra/*.whl > "$WORK/logs/extra_wheels.log" 2>&1
fi
$PY benchmarks/gpu/entry_points_shim.py "$WORK/ep" > /dev/null

# machine_state LABEL: one line on what else holds this machine (load, GPU processes, the busiest processes),
# the whole picture in logs/machine_LABEL.log. A warm machine keeps what an earlier call left running: on
# 2026-12-07 every run_all.sh step hit its time box right after a trl_vs_zaya.sh call (cause not found).
machine_state() {
  local gpu_apps
  gpu_apps=$(nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader 2> /dev/null)
  { date; cat /proc/loadavg; echo "$gpu_apps"; ps -eo pid,pcpu,rss,etime,args --sort=-pcpu | head -12 | cut -c1-200; } \
    > "$WORK/logs/machine_$1.log" 2>&1
  echo "machine $1: load $(cut -d' ' -f1-3 /proc/loadavg); GPU processes: $(grep -c . <<< "$gpu_apps")"
}
machine_state start

# step NAME LIMIT_S CMD...: run CMD time-boxed (in its own session, killed as a group after), record rc;
# a NAME listed in $SKIP is not run.
step() {
  local name=$1 limit=$2; shift 2
  case " ${SKIP:-} " in *" $name "*)  # SKIP="name ...": steps left out of this call (a short device budget)
    STEPS="$STEPS\"$name\": \"skipped (SKIP)\", "; return 98;; esac
  local left=$(( BUDGET - ($(date +%s) - T0) ))
  if [ "$left" -lt 25 ]; then
    echo "{\"skipped\": \"budget\", \"left_s\": $left}" > "$WORK/res/skip_$name.json"; STEPS="$STEPS\"$name\": \"skipped\", "; return 99
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t=$(date +%s)
  $SETSID timeout -k 10 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1 &
  local pid=$!
  wait $pid; local rc=$?
  [ -n "$SETSID" ] && kill -9 -- -$pid 2> /dev/null   # stragglers of this step's process group (Ray workers, engine cores)
  STEPS="$STEPS\"$name\": \"rc=$rc $(( $(date +%s) - t ))s\", "
  echo "[$(( $(date +%s) - T0 ))s] $name rc=$rc ($(( $(date +%s) - t )) s)"
  return $rc
}

# MPS=1: run this call's CUDA processes under NVIDIA's Multi-Process Service. Without it, kernels of different
# processes on one GPU never run at the same time: the GPU time-slices between their contexts (NVIDIA MPS docs,
# "When to Use MPS"), so a colocated trainer and vLLM engine (placement.mode: colocated) take turns. The daemon
# is this call's own (pipe and log folders under $WORK), started before the steps and stopped when the script
# exits; the device's compute mode is left as it is. The call prints "MPS: <state>" (on, failed to start,
# unavailable); Python records see CUDA_MPS_PIPE_DIRECTORY (trl_vs_zaya.py's machine.cuda_mps).
MPS_STATE=off
if [ "${MPS:-0}" = 1 ]; then
  if command -v nvidia-cuda-mps-control > /dev/null 2>&1; then
    export CUDA_MPS_PIPE_DIRECTORY=$WORK/mps/pipe CUDA_MPS_LOG_DIRECTORY=$WORK/mps/log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if nvidia-cuda-mps-control -d; then
      MPS_STATE=on
      trap 'echo quit | nvidia-cuda-mps-control > /dev/null 2>&1' EXIT
    else
      MPS_STATE="failed to start"; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    fi
  else
    MPS_STATE="unavailable (no nvidia-cuda-mps-control)"
  fi
  echo "MPS: $MPS_STATE"
fi
