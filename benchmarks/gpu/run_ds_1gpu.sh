#!/usr/bin/env bash
# DeepSpeed ZeRO-3 on ONE GPU: the production trainer path (configs/zaya1/_base.yaml scaled down: tiny ZAYA,
# bf16, fp32 LM head, router replay, Muon/AdamW) against the plain torch step; issue 15 item 1. ~1 min.
#
#   bash benchmarks/gpu/make_extra_wheels.sh          # here, once: .gpuwheels/extra (deepspeed, hjson, pydantic)
#   device call: carry [".gpuwheels/extra"], timeout_s 150:  bash benchmarks/gpu/run_ds_1gpu.sh
#   CPU rehearsal (gloo; ~3 min on 2 loaded cores):  DEVICE=cpu PYTHON=python BUDGET=600 bash benchmarks/gpu/run_ds_1gpu.sh
#
# Steps (tests/trainer/ds_equivalence.py, each time-boxed): zero3_bf16 (the production dtype: against the
# float32 step and against bf16 with fp32 master weights without DeepSpeed), zero3_fp32 (exact: float32
# rounding only). $OUT/ds_1gpu.json holds per case the losses per step, update_rel_err (per optimizer),
# max_abs_diff, the tolerances, ok/failures, the device name and versions; the table is printed last.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-120}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/zaya_gpu_out}
WORK=${ZAYA_GPU_WORK:-/tmp/zaya_ds}
. benchmarks/gpu/lib.sh

$PY -c "import deepspeed, hjson, pydantic, yaml, transformers" > "$WORK/logs/preflight.log" 2>&1 \
  || echo "preflight: $(tail -1 "$WORK/logs/preflight.log") (make_extra_wheels.sh; carry .gpuwheels/extra)"
SLOW=1; [ "$DEVICE" = cpu ] && SLOW=6   # time boxes of the CPU rehearsal
for case in "zero3_bf16 bfloat16 55" "zero3_fp32 float32 45"; do
  set -- $case
  step "ds_$1" $(( $3 * SLOW )) $PY tests/trainer/ds_equivalence.py --device "$DEVICE" --dtype "$2" --stage 3 \
    --out "$WORK/res/ds_$1.json"
done
echo "{${STEPS%, }}" > "$WORK/res/steps.json"
$PY - "$WORK/res" "$OUT/ds_1gpu.json" <<'EOF'
import json, sys
from pathlib import Path
res, out = Path(sys.argv[1]), Path(sys.argv[2])
cases = {p.stem[3:]: json.loads(p.read_text()) for p in sorted(res.glob("ds_*.json"))}
summary = {"cases": cases, "steps": json.loads((res / "steps.json").read_text())}
out.write_text(json.dumps(summary, indent=1))
print(f"{'case':12} {'machine':26} {'ok':5} {'reference':12} {'loss_rel_err':>12} {'update_rel':>10} {'muon':>8} {'adamw':>8} {'max_abs':>9}")
for name, r in cases.items():
    for ref in r["tolerance"]:
        v = r[f"vs_{ref}"]
        print(f"{name:12} {r['machine'][:26]:26} {str(r['ok']):5} {ref:12} {v['loss_rel_err']:12.2e} "
              f"{v['update_rel_err']:10.2e} {v['update_rel_err_muon']:8.1e} {v['update_rel_err_adamw']:8.1e} {v['max_abs_diff']:9.1e}")
    print(f"{'':12} losses ds {['%.6f' % x for x in r['losses']['deepspeed']]} ref {['%.6f' % x for x in r['losses']['fp32']]}; "
          f"replay changes the update by {r['replay_effect']['update_rel']:.2f}; failures {r['failures']}")
print("steps:", summary["steps"])
EOF
echo "total $(( $(date +%s) - T0 )) s; $OUT/ds_1gpu.json"
