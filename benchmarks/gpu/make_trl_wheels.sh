#!/usr/bin/env bash
# Wheels that benchmarks/gpu/trl_vs_zaya.sh needs on the GPU machine beyond the vLLM set of
# shared/gpu/make_wheel_chunks.sh (which already has dill 0.4.1) and the image (torch 2.11, transformers 5.17,
# accelerate 1.15, pandas, pyarrow, psutil, requests, aiohttp): TRL and the `datasets` it imports, with the
# datasets dependencies the image lacks. Exact versions: TRL 1.16.0 supports vLLM 0.22-0.31 (trl/import_utils.py)
# and transformers >= 4.56.2; datasets 4.8.4 is the newest that accepts huggingface-hub < 1.31 (5.x needs >= 1.31).
# Run from the repo root:
#     bash benchmarks/gpu/make_trl_wheels.sh        # -> .gpuwheels/extra/*.whl (~1.6 MB, git-ignored)
# lib.sh installs .gpuwheels/extra/*.whl into /tmp/site before the steps run.
set -euo pipefail
out=.gpuwheels/extra
grep -qxF "/.gpuwheels/" .git/info/exclude 2> /dev/null || echo "/.gpuwheels/" >> "$(git rev-parse --git-path info/exclude)"
mkdir -p "$out"
plat="--only-binary=:all: --python-version 3.12 --implementation cp"
for p in manylinux_2_17 manylinux_2_28 manylinux2014; do plat="$plat --platform ${p}_x86_64"; done
plat="$plat --platform any"
for p in trl==1.16.0 datasets==4.8.4 multiprocess==0.70.19 xxhash==3.6.0 fsspec==2026.2.0; do
  # shellcheck disable=SC2086  # plat is a list of options
  python3 -m pip download -q --no-deps $plat -d "$out" "$p"
done
ls -la "$out"
