#!/usr/bin/env bash
# zaya_rl on TWO GPUs of one host (nvidia-h100-x2 / nvidia-h200-x2), in two device calls of <= 9 min each:
#
#   PART=tests bash benchmarks/gpu/run_x2.sh   # env; pytest tests/gpu (vLLM); DeepSpeed ZeRO-3/2 on 2 ranks
#                                              # (bf16 and fp32, vs the torch step); GPU-to-GPU bandwidth
#   PART=bench bash benchmarks/gpu/run_x2.sh   # GPU-to-GPU bandwidth; NCCL weight transfer cuda:1 -> vLLM cuda:0;
#                                              # e2e disaggregated (rollout GPU 0, trainer GPU 1) async then sync,
#                                              # GPU utilisation sampled during both
#   DRY_RUN=1 PYTHON=python bash benchmarks/gpu/run_x2.sh   # CPU rehearsal of both parts (gloo, torch engine)
#
# Before: the vLLM wheels in /tmp/site (shared/gpu/README.md) and .gpuwheels/extra carried (DeepSpeed, hjson,
# pydantic: benchmarks/gpu/make_extra_wheels.sh). Every step is time-boxed; a step that would start after
# BUDGET s is skipped. Results: $WORK/res/*.json, logs: $WORK/logs. $OUT gets gpu_x2.json and gpu_x2.md
# (x2_report.py: both parts' results when the machine still holds the first part's /tmp/zaya_x2_tests) and
# logs_<part>.tar.gz. Knobs: FRONTEND (auto: rollout.vllm.frontend picks per vLLM version; or stepped, async_llm),
# E2E_CONFIG (default configs/smollm2_gpu.yaml if present, else the tiny Qwen3-MoE), E2E_OVR (extra overrides).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3}
DRY=${DRY_RUN:-0}
PART=${PART:-tests}
BUDGET=${BUDGET:-540}
[ "${DRY_RUN:-0}" = 1 ] && BUDGET=${BUDGET_DRY:-1500}   # both parts, on CPU
OUT=${OUT:-/tmp/zaya_gpu_out}
WORK=${ZAYA_GPU_WORK:-/tmp/zaya_x2_$PART}
[ "${DRY_RUN:-0}" = 1 ] && WORK=${ZAYA_GPU_WORK:-/tmp/zaya_x2_dry}
FRONTEND=${FRONTEND:-auto}
if [ -z "${E2E_CONFIG:-}" ]; then
  E2E_CONFIG=benchmarks/gpu/e2e_tiny_qwen3moe.yaml
  [ -f configs/smollm2_gpu.yaml ] && E2E_CONFIG=configs/smollm2_gpu.yaml
fi
E2E_OVR=${E2E_OVR:-pipeline.total_steps=20 eval.num_problems=4}
DEVICE=cuda; SLOW=1
[ "$DRY" = 1 ] && DEVICE=cpu && SLOW=4   # CPU rehearsal: gloo ranks, longer time boxes
. benchmarks/gpu/lib.sh

ray_stop() {  # Ray daemons of a killed e2e run may outlive its process group; only on the device
  [ "$DRY" = 1 ] || $PY -m ray.scripts.scripts stop --force > /dev/null 2>&1
}

link() {
  if [ "$DRY" = 1 ]; then step link 60 $PY benchmarks/gpu/bench_link.py --dry-run --out "$WORK/res/link.json"
  else step link 45 $PY benchmarks/gpu/bench_link.py --out "$WORK/res/link.json"; fi
}

step env 40 $PY benchmarks/gpu/env_report.py
if [ "$PART" = tests ] || [ "$DRY" = 1 ]; then
  step pytest 200 $PY -m pytest tests/gpu -q -p no:cacheprovider --timeout 150 -k "not deepspeed" \
    --junitxml "$WORK/res/pytest.xml"
  # ZeRO on 2 ranks, one GPU each (tests/gpu/test_deepspeed_gpu.py's world-2 cases, with their figures kept)
  CASES="zero3_bf16:bfloat16:3:70 zero2_bf16:bfloat16:2:70 zero3_fp32:float32:3:60"
  [ "$DRY" = 1 ] && CASES="zero3_fp32:float32:3:60"
  for c in $CASES; do
    IFS=: read -r name dtype stage limit <<< "$c"
    step "ds_x2_$name" $(( limit * SLOW )) $PY tests/trainer/ds_equivalence.py --device $DEVICE --world 2 \
      --dtype "$dtype" --stage "$stage" --out "$WORK/res/ds_x2_$name.json"
  done
  link
fi
if [ "$PART" = bench ] || [ "$DRY" = 1 ]; then
  [ -f "$WORK/res/link.json" ] || link
  if [ "$DRY" = 1 ]; then
    step weights_nccl 150 $PY benchmarks/gpu/bench_weights.py --dry-run --repeats 2 --out "$WORK/res/weights_dry.json"
    PLACE="placement.mode=ray rollout.engine=torch weight_sync.transport=state_dict model.dtype=float32 rollout.resources.num_gpus=0 trainer.resources.num_gpus=0 ray.num_cpus=2 pipeline.total_steps=3 pipeline.groups_per_step=4 eval.num_problems=4 rollout.sampling.max_new_tokens=8 pipeline.scorer_processes=1 rollout.resources.num_cpus=0.5 trainer.resources.num_cpus=0.5 pipeline.scorer_resources.num_cpus=0.5"
    E2E_OVR=""
  else
    step weights_nccl 150 $PY benchmarks/gpu/bench_weights.py --frontend "$FRONTEND" --nccl --out "$WORK/res/weights_nccl.json"
    PLACE="placement.mode=disaggregated rollout.resources.num_gpus=1 trainer.resources.num_gpus=1 rollout.vllm.gpu_memory_utilization=0.5 rollout.vllm.frontend=$FRONTEND weight_sync.transport=nccl"
  fi
  echo "{\"frontend\": \"$FRONTEND\", \"e2e_config\": \"$E2E_CONFIG\", \"e2e_overrides\": \"$PLACE $E2E_OVR\"}" > "$WORK/res/e2e_setup.json"
  for mode in async sync; do
    $PY benchmarks/gpu/gpu_sampler.py "$WORK/res/util_e2e_$mode.jsonl" --period 0.5 > /dev/null 2>&1 &
    sampler=$!
    # shellcheck disable=SC2086  # PLACE and E2E_OVR are lists of key=value overrides
    step "e2e_$mode" $(( 160 * SLOW )) $PY -m zaya_rl.cli train "$E2E_CONFIG" run_dir="$WORK/e2e_$mode" pipeline.mode=$mode $PLACE $E2E_OVR
    kill "$sampler" 2> /dev/null; wait "$sampler" 2> /dev/null
    ray_stop
  done
fi

echo "{${STEPS%, }}" > "$WORK/res/steps.json"
PARTS="/tmp/zaya_x2_tests /tmp/zaya_x2_bench"   # the first call's results, if this machine kept them
[ "$DRY" = 1 ] && PARTS=""
$PY benchmarks/gpu/x2_report.py "$OUT" $PARTS "$WORK"
tar czf "$OUT/logs_$PART.tar.gz" -C "$WORK" logs res $(cd "$WORK" && ls -d e2e_*/metrics.jsonl e2e_*/summary.json e2e_*/train.log 2> /dev/null) 2> /dev/null
echo "total $(( $(date +%s) - T0 )) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
