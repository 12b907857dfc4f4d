"""Shared by the plugin's vLLM tests: CPU engine settings, reference logits, vLLM logits as tensors."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator, Sequence

import torch

#: vLLM-for-CPU settings (research/vllm_cpu_probe.md): both cores, 1 GiB of KV cache, offline, engine in
#: this process (tests reach the model and the scheduler directly).
CPU_ENV = {
    "VLLM_CPU_OMP_THREADS_BIND": "0-1",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


@contextlib.contextmanager
def cpu_env() -> Iterator[None]:
    """``CPU_ENV`` for the duration of a module's engines (vLLM reads its variables when used)."""
    saved = {k: os.environ.get(k) for k in CPU_ENV}
    os.environ.update(CPU_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_llm(folder: str, vocab: int, **kw):
    """An eager float32 ``vllm.LLM`` that returns raw logits as its "log-probs" (full vocabulary)."""
    from vllm import LLM

    args = dict(model=folder, dtype="float32", enforce_eager=True, max_model_len=512, seed=0,
                logprobs_mode="raw_logits", max_logprobs=vocab)
    args.update(kw)
    return LLM(**args)


def shutdown(llm) -> None:
    """Stop an in-process engine and its (single-rank) distributed state, so the next module can start one."""
    from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

    llm.llm_engine.engine_core.shutdown()
    destroy_model_parallel()
    destroy_distributed_environment()
    gc.collect()


def sampling(vocab: int, max_tokens: int, *, prompt_logits: bool = True):
    from vllm import SamplingParams

    return SamplingParams(max_tokens=max_tokens, temperature=1.0, ignore_eos=True, logprobs=vocab,
                          prompt_logprobs=vocab if prompt_logits else None, detokenize=False)


def as_logits(entries: Sequence[dict], vocab: int) -> torch.Tensor:
    """vLLM's per-position ``{token: Logprob}`` (raw-logits mode, full vocabulary) -> ``[n, V]``."""
    return torch.tensor([[e[j].logprob for j in range(vocab)] for e in entries])


def reference_logits(model, ids: Sequence[int]) -> torch.Tensor:
    """transformers' logits for one sequence in one forward (no cache): ``[len(ids), V]`` float32."""
    with torch.no_grad():
        return model(torch.tensor([list(ids)])).logits[0].float()


def max_logit_error(model, prompt: Sequence[int], output, vocab: int) -> tuple[float, float]:
    """(prefill, decode) max |vLLM - transformers| over all positions of one finished request.

    Prefill: vLLM's prompt scores (position i predicts prompt token i + 1), compared as log-probabilities:
    vLLM 0.32 (CPU) returns raw logits there in ``raw_logits`` mode, vLLM 0.24 (GPU) always log-softmaxes them, and
    ``log_softmax`` leaves log-probabilities unchanged, so both compare right. Decode: the raw logits each
    generated token was sampled from (position P - 1 + j).
    """
    gen = list(output.outputs[0].token_ids)
    ref = reference_logits(model, list(prompt) + gen)
    p = len(prompt)
    decode = (as_logits(output.outputs[0].logprobs, vocab) - ref[p - 1 : p - 1 + len(gen)]).abs().max().item()
    prefill = 0.0
    if p > 1 and output.prompt_logprobs is not None:
        got = as_logits(output.prompt_logprobs[1:], vocab).log_softmax(-1)
        prefill = (got - ref[: p - 1].log_softmax(-1)).abs().max().item()
    return prefill, decode


def random_prompts(lengths: Sequence[int], seed: int) -> list[list[int]]:
    """Byte-token prompts (ids 3..249) of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 250, (n,), generator=g).tolist() for n in lengths]
