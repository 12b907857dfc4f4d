#!/usr/bin/env bash
# Wheels the GPU machine lacks beyond shared/gpu/make_wheel_chunks.sh's set: DeepSpeed 0.19.8 (an sdist on
# PyPI, so it is built here into a pure-Python wheel: its CUDA ops are JIT-built on use, and zaya_rl's ZeRO
# path needs none of them), hjson, its one dependency missing there, and the fused log-prob kernels
# cut-cross-entropy 25.1.1 and liger-kernel 0.8.5. Run from the repo root:
#     bash benchmarks/gpu/make_extra_wheels.sh       # -> .gpuwheels/extra/*.whl (~3 MB, git-ignored)
# The device call that runs benchmarks/gpu/run_all.sh carries ".gpuwheels/extra"; run_all.sh installs them.
set -euo pipefail
out=.gpuwheels/extra
exclude=$(git rev-parse --git-path info/exclude)  # .git is a file in a worktree
grep -qxF "/.gpuwheels/" "$exclude" 2>/dev/null || echo "/.gpuwheels/" >> "$exclude"
rm -rf "$out" && mkdir -p "$out"
DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps --no-build-isolation deepspeed==0.19.8 -w "$out"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform any hjson==3.1.0 -d "$out"
# pydantic (zaya_rl.config, DeepSpeed's config), pinned as in shared/gpu/make_wheel_chunks.sh: so that
# run_ds_1gpu.sh also runs on a fresh machine without the vLLM wheel set.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types typing-inspection -d "$out"
# the fused log-prob kernels (trainer.logprob_impl; pure Python + Triton, which the GPU image has: 3.6)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform any cut-cross-entropy==25.1.1 liger-kernel==0.8.5 -d "$out"
ls -la "$out"
