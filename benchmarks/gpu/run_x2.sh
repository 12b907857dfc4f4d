#!/usr/bin/env bash
# zaya_rl on TWO GPUs of one host (nvidia-h200-x2): rollout on GPU 0, training on GPU 1, NCCL weight transfer.
#
#   bash benchmarks/gpu/run_x2.sh            # after the vLLM wheels are in /tmp/site; ~8 min, steps time-boxed
#
# Steps (results in $WORK/res, logs in $WORK/logs; $OUT gets summary.json, summary.txt, logs.tar.gz):
#   env, pytest tests/gpu (incl. DeepSpeed ZeRO-2/3 on 2 ranks vs MuonAdamW),
#   weights_nccl  bench_weights.py --nccl: trainer model on cuda:1 broadcasts packed buckets into vLLM on cuda:0
#                 (plus file / state_dict for comparison), against the measured copy bandwidths,
#   e2e_*         disaggregated placement (placement group: rollout bundle GPU 0, trainer bundle GPU 1), async
#                 and sync -> samples/s ratio; weight_sync.transport=nccl (published by the trainer through
#                 WorkerSet.submit_version).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-530}
OUT=${OUT:-/tmp/zaya_gpu_out}
WORK=${ZAYA_GPU_WORK:-/tmp/zaya_gpu}
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

step() {  # step NAME LIMIT_S CMD...  (as in run_all.sh)
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - T0) ))
  if [ "$left" -lt 25 ]; then STEPS="$STEPS\"$name\": \"skipped\", "; return 99; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t=$(date +%s)
  $SETSID timeout -k 10 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1 &
  local pid=$!
  wait $pid; local rc=$?
  [ -n "$SETSID" ] && kill -9 -- -$pid 2> /dev/null
  STEPS="$STEPS\"$name\": \"rc=$rc $(( $(date +%s) - t ))s\", "
  echo "[$(( $(date +%s) - T0 ))s] $name rc=$rc ($(( $(date +%s) - t )) s)"
  return $rc
}

step env 60 $PY benchmarks/gpu/env_report.py
step pytest 200 $PY -m pytest tests/gpu -x -q -p no:cacheprovider --timeout 150
FRONTEND=async_llm
if ! step weights_nccl 170 $PY benchmarks/gpu/bench_weights.py --frontend async_llm --nccl --out "$WORK/res/weights_nccl.json"; then
  FRONTEND=stepped
  step weights_nccl_stepped 150 $PY benchmarks/gpu/bench_weights.py --frontend stepped --nccl --out "$WORK/res/weights_nccl_stepped.json"
fi
echo "{\"frontend\": \"$FRONTEND\"}" > "$WORK/res/frontend.json"
TRANSPORT=nccl  # the orchestrator publishes through the trainer for every transport but state_dict
PLACE="placement.mode=disaggregated rollout.resources.num_gpus=1 trainer.resources.num_gpus=1 rollout.vllm.gpu_memory_utilization=0.5 rollout.vllm.frontend=$FRONTEND weight_sync.transport=$TRANSPORT"
for mode in async sync; do
  step "e2e_$mode" 170 $PY -m zaya_rl.cli train benchmarks/gpu/e2e_tiny_qwen3moe.yaml run_dir="$WORK/e2e_$mode" \
    pipeline.mode=$mode $PLACE
  $PY -m ray.scripts.scripts stop --force > /dev/null 2>&1
done
echo "{${STEPS%, }, \"e2e_transport\": \"$TRANSPORT\"}" > "$WORK/res/steps.json"
$PY benchmarks/gpu/summarize.py "$WORK" "$OUT"
tar czf "$OUT/logs.tar.gz" -C "$WORK" logs res $(cd "$WORK" && ls -d e2e_*/metrics.jsonl e2e_*/summary.json e2e_*/train.log 2> /dev/null) 2> /dev/null
echo "total $(( $(date +%s) - T0 )) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
