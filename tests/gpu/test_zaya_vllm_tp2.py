"""ZAYA plugin with tensor parallelism 2 against transformers (needs 2 GPUs; skipped otherwise).

    python -m pytest tests/gpu/test_zaya_vllm_tp2.py -q        # on a 2-GPU machine (benchmarks/gpu/run_x2.sh)

The ``deep`` reference (8 heads / 2 kv heads: each rank holds 4 query heads, 1 kv head, half the conv
channels, the value rows of one head — rank 0 the current-token half, rank 1 the delayed half — half of
every expert's intermediate dimension) in float32, eager: prompt logits and 32 decode steps of 3 prompts
within 1e-3 of transformers on one GPU (TF32 off; the tolerance covers the split reductions).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed"),
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs"),
]


def test_tp2_matches_transformers(tmp_path):
    from vllm import LLM, SamplingParams

    from zaya_rl.vllm_plugin.reference import build_reference

    torch.backends.cuda.matmul.allow_tf32 = False
    model = build_reference("deep", tmp_path, seed=0).cuda()
    vocab = model.config.vocab_size
    llm = LLM(model=str(tmp_path), dtype="float32", enforce_eager=True, tensor_parallel_size=2, max_model_len=512,
              logprobs_mode="raw_logits", max_logprobs=vocab, gpu_memory_utilization=0.3, seed=0)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, 250, (n,), generator=g).tolist() for n in (4, 37, 150)]
    sp = SamplingParams(max_tokens=32, temperature=1.0, ignore_eos=True, logprobs=vocab, prompt_logprobs=vocab,
                        detokenize=False)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)
    for p, o in zip(prompts, outs, strict=True):
        gen = list(o.outputs[0].token_ids)
        with torch.no_grad():
            ref = model(torch.tensor([p + gen], device="cuda")).logits[0].float().cpu()
        dec = torch.tensor([[e[j].logprob for j in range(vocab)] for e in o.outputs[0].logprobs])
        pre = torch.tensor([[e[j].logprob for j in range(vocab)] for e in o.prompt_logprobs[1:]])
        assert (dec - ref[len(p) - 1 : len(p) - 1 + len(gen)]).abs().max() <= 1e-3
        assert (pre - ref[: len(p) - 1]).abs().max() <= 1e-3
