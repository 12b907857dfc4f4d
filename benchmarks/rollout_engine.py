"""Throughput of ``TorchEngine`` against a plain transformers ``generate`` loop, same model and batch.

    python benchmarks/rollout_engine.py                      # tiny-zaya, 32 prompts x 64 new tokens, CPU
    python benchmarks/rollout_engine.py --preset tiny-qwen3moe --batch 64 --device cuda

Both sides sample (T = 1) exactly ``--new-tokens`` tokens for every prompt (no stop token; ``generate``
gets ``min_new_tokens``), from the same left-padded prompts of mixed lengths. The engine additionally
returns behaviour log-probs, versions and (with routing on) routed experts, which ``generate`` does not.
Prints tokens/s of each and the ratio engine / generate, best of ``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from zaya_rl.models.policy import load_policy  # noqa: E402
from zaya_rl.rollout.base import GenerationRequest, SamplingParams, run_requests  # noqa: E402
from zaya_rl.rollout.torch_engine import TorchEngine  # noqa: E402


def _prompts(n: int) -> list[list[int]]:
    return [[257, 260, *[(7 * i + 3 * j) % 256 for j in range(4 + i % 13)], 258, 261] for i in range(n)]


def _time_best(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_engine(model, tok, prompts, new_tokens: int, record: bool, repeats: int) -> float:
    def run():
        engine = TorchEngine(model, tok, max_batch_size=len(prompts), record_routing=record)
        reqs = [
            GenerationRequest(f"r{i}", p, SamplingParams(max_new_tokens=new_tokens, seed=i))
            for i, p in enumerate(prompts)
        ]
        results = run_requests(engine, reqs)
        assert all(len(r.token_ids) == new_tokens for r in results)

    return len(prompts) * new_tokens / _time_best(run, repeats)


def bench_generate(model, tok, prompts, new_tokens: int, repeats: int) -> float:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts], device=model.device)
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()

    def run():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask.to(model.device),
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=tok.pad_token_id,
        )
        assert out.shape[1] == width + new_tokens

    return len(prompts) * new_tokens / _time_best(run, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny-zaya")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (rollout actors use 1)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_policy(args.preset, device=args.device)
    model.eval()
    prompts = _prompts(args.batch)
    with torch.inference_mode():
        hf = bench_generate(model, tok, prompts, args.new_tokens, args.repeats)
    eng = bench_engine(model, tok, prompts, args.new_tokens, True, args.repeats)
    eng_plain = bench_engine(model, tok, prompts, args.new_tokens, False, args.repeats)
    print(
        f"{args.preset} on {args.device}, {args.threads} thread(s), batch {args.batch} x {args.new_tokens} new tokens"
    )
    print(f"  transformers generate          : {hf:9.0f} tok/s")
    print(f"  TorchEngine (routing recorded) : {eng:9.0f} tok/s   ratio {eng / hf:.2f}")
    print(f"  TorchEngine (no routing)       : {eng_plain:9.0f} tok/s   ratio {eng_plain / hf:.2f}")


if __name__ == "__main__":
    main()
