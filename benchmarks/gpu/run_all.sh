#!/usr/bin/env bash
# zaya_rl on ONE GPU: tests and measurements in one device call, every step time-boxed (~8 min in all).
#
#   bash benchmarks/gpu/run_all.sh                 # on the GPU machine, from the repo root, after the vLLM
#                                                  # wheels are in /tmp/site (shared/gpu/README.md)
#   DRY_RUN=1 PYTHON=python bash benchmarks/gpu/run_all.sh   # CPU rehearsal: torch engine instead of vLLM
#
# Steps (results in $WORK/res/<step>.json, logs in $WORK/logs/<step>.log):
#   env      versions, GPU, /dev/shm                       pytest   python -m pytest tests/gpu -x -q
#   vllm_*   bench_vllm.py: tokens/s, stop, canary, trainer/rollout log-prob gap (replay on/off), in-flight
#            update; async_llm first, the in-process "stepped" frontend if that fails or hangs
#   e2e_*    python -m zaya_rl.cli train (async, then sync) with the frontend that worked -> samples/s ratio
#   weights  bench_weights.py: update seconds and GB/s per transport (~1 GB model) vs copy bandwidths
# $OUT receives summary.json, summary.txt and logs.tar.gz (3 files); the summary is printed last.
# Optional: .gpuwheels/extra/*.whl (deepspeed, hjson: benchmarks/gpu/make_extra_wheels.sh) are installed first.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3}
DRY=${DRY_RUN:-0}
BUDGET=${BUDGET:-530}            # seconds for all steps; a step that would start later is skipped
ONLY=${ONLY:-all}                # "e2e": only the async/sync end-to-end pair (with FRONTEND, E2E_OVR)
FRONTEND=${FRONTEND:-}           # force the vLLM frontend (skips the frontend probe)
E2E_OVR=${E2E_OVR:-}             # extra key=value overrides of both e2e runs, e.g. pipeline.total_steps=30
OUT=${OUT:-/tmp/zaya_gpu_out}
WORK=${ZAYA_GPU_WORK:-/tmp/zaya_gpu}
. benchmarks/gpu/lib.sh

ray_stop() {  # Ray daemons of a killed e2e run may outlive its process group; only on the device
  [ "$DRY" = 1 ] || $PY -m ray.scripts.scripts stop --force > /dev/null 2>&1
}

step env 60 $PY benchmarks/gpu/env_report.py

if [ "$DRY" = 1 ]; then
  step pytest 120 $PY -m pytest tests/gpu -x -q -p no:cacheprovider
  step vllm_dry 120 $PY benchmarks/gpu/bench_vllm.py --dry-run --out "$WORK/res/vllm_dry.json"
  FRONTEND=stepped
  ENGINE_OVR="placement.mode=ray rollout.engine=torch model.dtype=float32 rollout.resources.num_gpus=0 trainer.resources.num_gpus=0 ray.num_cpus=2 pipeline.total_steps=3 pipeline.groups_per_step=4 eval.num_problems=4 rollout.sampling.max_new_tokens=8 pipeline.scorer_processes=1 rollout.resources.num_cpus=0.5 trainer.resources.num_cpus=0.5 pipeline.scorer_resources.num_cpus=0.5"
elif [ "$ONLY" = e2e ]; then
  FRONTEND=${FRONTEND:-async_llm}
  ENGINE_OVR="rollout.vllm.frontend=$FRONTEND"
else
  step pytest 150 $PY -m pytest tests/gpu -x -q -p no:cacheprovider --timeout 120
  FRONTEND=async_llm
  if ! step vllm_async_llm 150 $PY benchmarks/gpu/bench_vllm.py --frontend async_llm --out "$WORK/res/vllm_async_llm.json"; then
    FRONTEND=stepped
    step vllm_stepped 120 $PY benchmarks/gpu/bench_vllm.py --frontend stepped --out "$WORK/res/vllm_stepped.json"
  fi
  ENGINE_OVR="rollout.vllm.frontend=$FRONTEND"
fi
echo "{\"frontend\": \"$FRONTEND\"}" > "$WORK/res/frontend.json"

for mode in async sync; do
  step "e2e_$mode" 170 $PY -m zaya_rl.cli train benchmarks/gpu/e2e_tiny_qwen3moe.yaml \
    run_dir="$WORK/e2e_$mode" pipeline.mode=$mode $ENGINE_OVR $E2E_OVR
  ray_stop
done

if [ "$ONLY" = e2e ]; then
  :
elif [ "$DRY" = 1 ]; then
  step weights 120 $PY benchmarks/gpu/bench_weights.py --dry-run --repeats 2 --out "$WORK/res/weights.json"
else
  step weights 150 $PY benchmarks/gpu/bench_weights.py --frontend $FRONTEND --out "$WORK/res/weights.json"
fi

echo "{${STEPS%, }}" > "$WORK/res/steps.json"
$PY benchmarks/gpu/summarize.py "$WORK" "$OUT"
tar czf "$OUT/logs.tar.gz" -C "$WORK" logs res $(cd "$WORK" && ls -d e2e_*/metrics.jsonl e2e_*/summary.json e2e_*/train.log 2> /dev/null) 2> /dev/null
echo "total $(( $(date +%s) - T0 )) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
