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
. benchmarks/gpu/lib.sh

step env 60 $PY benchmarks/gpu/env_report.py
step pytest 200 $PY -m pytest tests/gpu -x -q -p no:cacheprovider --timeout 150
step weights_nccl 170 $PY benchmarks/gpu/bench_weights.py --nccl --out "$WORK/res/weights_nccl.json"  # frontend auto
TRANSPORT=nccl  # the orchestrator publishes through the trainer for every transport but state_dict
PLACE="placement.mode=disaggregated rollout.resources.num_gpus=1 trainer.resources.num_gpus=1 rollout.vllm.gpu_memory_utilization=0.5 weight_sync.transport=$TRANSPORT"
for mode in async sync; do
  step "e2e_$mode" 170 $PY -m zaya_rl.cli train benchmarks/gpu/e2e_tiny_qwen3moe.yaml run_dir="$WORK/e2e_$mode" \
    pipeline.mode=$mode $PLACE
  $PY -m ray.scripts.scripts stop --force > /dev/null 2>&1
done
echo "{${STEPS%, }, \"e2e_transport\": \"$TRANSPORT\"}" > "$WORK/res/steps.json"
$PY benchmarks/gpu/summarize.py "$WORK" "$OUT"
tar czf "$OUT/logs.tar.gz" -C "$WORK" logs res $(cd "$WORK" && ls -d e2e_*/metrics.jsonl e2e_*/summary.json e2e_*/train.log 2> /dev/null) 2> /dev/null
echo "total $(( $(date +%s) - T0 )) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
