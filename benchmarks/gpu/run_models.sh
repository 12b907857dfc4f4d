#!/usr/bin/env bash
# ZAYA on vLLM and the trainer's kernels on ONE GPU, in one device call, every step time-boxed (BUDGET,
# default 560 s). The companion of run_all.sh (rollout and pipeline) and real_model.sh (SmolLM2 learning).
#
#   bash benchmarks/gpu/run_models.sh             # on the GPU machine, after the wheels are in /tmp/site
#   DRY_RUN=1 PYTHON=python bash benchmarks/gpu/run_models.sh   # CPU rehearsal (vLLM for CPU, --dry-run modes)
#
# Steps, in this order (results in $OUT, logs in $OUT/models_logs.tar.gz):
#   zaya      200 s  zaya_vllm.py: ZAYA on vLLM (zaya_rl.vllm_plugin) fp32 exactness vs transformers, tokens/s
#                    vs the torch engine and generate, router-replay log-prob gap  -> zaya_vllm_gpu.json
#   logprobs  120 s  logprobs_memory.py at N = 8192 and 16384, H = 2048, V = 262,272, bf16 weights + fp32 head: peak
#                    memory and time of chunked / cce / cce_filtered vs naive           -> logprobs.json
#   mfu       100 s  trainer_mfu.py: tokens/s and MFU of a full trainer step, the real model (MODEL_DIR, made
#                    by real_model.sh's import) and a ZAYA-shaped model                  -> mfu.json
#   mfu_compiled 120 s  the same for the real model with trainer.compile (--compile)     -> mfu_compiled.json
# Knobs: SKIP (steps left out), ZAYA_S, ZAYA_ARGS, MFU_MODELS (models of the eager mfu step, default "real zaya"), MFU_ARGS
# (more trainer_mfu.py options for both mfu steps, e.g. "--micro-batch 16").
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3}
DRY=${DRY_RUN:-0}
BUDGET=${BUDGET:-560}
OUT=${OUT:-/tmp/zaya_gpu_out}
WORK=${ZAYA_GPU_WORK:-/tmp/zaya_models_run}
MODEL=${MODEL_DIR:-/tmp/zaya_models/smollm2-135m-instruct}
. benchmarks/gpu/lib.sh

if [ "$DRY" = 1 ]; then
  step zaya 1500 $PY benchmarks/gpu/zaya_vllm.py --dry-run --out "$OUT/zaya_vllm_dry.json"
  step logprobs 300 $PY benchmarks/logprobs_memory.py --tokens 256 --vocab 32768 --hidden 64 --repeats 1
  step mfu 600 $PY benchmarks/trainer_mfu.py --dry-run --out "$OUT/mfu.json"
  step mfu_compiled 600 $PY benchmarks/trainer_mfu.py --dry-run --models real --compile --out "$OUT/mfu_compiled.json"
else
  ZAYA_S=${ZAYA_S:-185}   # zaya_vllm.py's own time box (it writes its JSON when the box runs out)
  # ZAYA_ARGS: more zaya_vllm.py options, e.g. "--prompts 256 --max-new 128" (a rollout-sized batch)
  step zaya $(( ZAYA_S + 15 )) $PY benchmarks/gpu/zaya_vllm.py --time-box "$ZAYA_S" ${ZAYA_ARGS:-} --out "$OUT/zaya_vllm_gpu.json"
  step logprobs 120 $PY benchmarks/logprobs_memory.py --device cuda --tokens 8192 16384 --hidden 2048 --dtype bfloat16 \
    --fp32 --repeats 2 --timeout 50
  MP=""; [ -d "$MODEL" ] && MP="--model-path $MODEL"
  # shellcheck disable=SC2086  # MP is empty or one option with its value
  step mfu 100 $PY benchmarks/trainer_mfu.py $MP --models ${MFU_MODELS:-real zaya} ${MFU_ARGS:-} --time-box 90 \
    --out "$OUT/mfu.json"
  # shellcheck disable=SC2086
  step mfu_compiled 120 $PY benchmarks/trainer_mfu.py $MP --models real --compile ${MFU_ARGS:-} --warmup 2 \
    --time-box 110 --out "$OUT/mfu_compiled.json"
fi
grep '^{' "$WORK/logs/logprobs.log" 2> /dev/null | tail -1 > "$OUT/logprobs.json"   # its last line: one JSON
echo "{${STEPS%, }}" > "$OUT/models_steps.json"
tar czf "$OUT/models_logs.tar.gz" -C "$WORK" logs res 2> /dev/null
echo "total $(( $(date +%s) - T0 )) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
