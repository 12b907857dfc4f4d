"""Host cost of streaming rollouts out of the ``stepped`` vLLM frontend: waking every request's stream after
every engine step (``rollout.vllm.stream_interval: 1``) against once per ``stream_interval`` tokens.

``SteppedLLM`` runs ``engine.step()`` and the streams' Python (asyncio hand-over, ``VLLMEngine._absorb``:
log-probs, the canary's detokenizer and LZ77 feed, version booking) in one thread, so on a GPU every
microsecond of the latter is a microsecond the engine does not step. This measures that Python alone: the
engine is a stand-in whose ``step`` returns one DELTA output per live request (one token, its log-prob) as
fast as Python can build them, and its own cost, measured separately with the same requests, is subtracted.
The vLLM engine's own per-step Python (scheduler, output processor) is not in it; it is the same either way.

    python benchmarks/stepped_stream.py                              # 256 requests x 256 tokens, canary on
    python benchmarks/stepped_stream.py --tokenizer /tmp/smollm2     # a real tokenizer for the canary
    python benchmarks/stepped_stream.py --requests 128 --no-canary --intervals 1 4 16

Prints one line per interval (host microseconds per token, per engine step at the given concurrency) and,
last, one JSON object with the ratio of interval 1's cost to each other interval's (rounds interleaved,
medians).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from types import SimpleNamespace

from zaya_rl.rollout.base import CanarySpec, GenerationRequest, SamplingParams
from zaya_rl.rollout.vllm_engine import VLLMEngine
from zaya_rl.rollout.vllm_stepped import SteppedLLM


class _Core:
    """``LLMEngine`` stand-in: one DELTA output per live request per ``step``, ``length`` tokens each; the
    text cycles through ``vocab`` (ids of distinct words) so that the canary sees prose, not a repetition."""

    def __init__(self, length: int, vocab: list[int]) -> None:
        self.length, self.vocab = length, vocab
        self.reqs: dict[str, int] = {}
        self.steps = 0
        self.step_s = 0.0

    def add_request(self, rid: str, prompt: object, params: object) -> None:
        self.reqs[rid] = 0

    def step(self) -> list[SimpleNamespace]:
        t = time.perf_counter()
        self.steps += 1
        outs = []
        for rid, n in list(self.reqs.items()):
            tok = self.vocab[(n * 7 + len(rid) * 13 + n * n) % len(self.vocab)]
            n += 1
            done = n == self.length
            completion = SimpleNamespace(token_ids=[tok], logprobs=[{tok: SimpleNamespace(logprob=-0.5)}],
                                         finish_reason="length" if done else None, routed_experts=None)
            outs.append(SimpleNamespace(request_id=rid, finished=done, outputs=[completion]))
            if done:
                del self.reqs[rid]
            else:
                self.reqs[rid] = n
        self.step_s += time.perf_counter() - t
        return outs

    def abort_request(self, ids: list[str]) -> None:
        for rid in ids:
            self.reqs.pop(rid, None)


def _tokenizer(path: str | None):
    if path is None:
        from zaya_rl.models.tokenizer import build_byte_tokenizer

        return build_byte_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _vocab(tokenizer, n: int = 512) -> list[int]:
    """Ids of ``n`` ordinary tokens (the tokenizer's own encoding of some English text)."""
    text = ("the model adds the two numbers and writes the answer after the word answer so the verifier can "
            "read it back and compare it with the expected value of the chain sum ") * 8
    ids = [i for i in tokenizer.encode(text) if i not in set(getattr(tokenizer, "all_special_ids", []))]
    return (ids * (n // max(1, len(ids)) + 1))[:n]


def _one(tokenizer, vocab: list[int], interval: int, requests: int, length: int, canary: bool) -> dict:
    core = _Core(length, vocab)
    engine = VLLMEngine(SteppedLLM(core, stream_interval=interval), tokenizer, make_params=lambda p: p,
                        in_process=True)
    spec = CanarySpec(threshold=0.10, patience=2, chunk_bytes=128) if canary else None
    reqs = [GenerationRequest(f"r{i}", [1, 2, 3], SamplingParams(max_new_tokens=length, stop_token_ids=()), spec)
            for i in range(requests)]

    async def run():
        return await asyncio.gather(*(engine.generate(r) for r in reqs))

    t = time.perf_counter()
    results = asyncio.run(run())
    wall = time.perf_counter() - t
    tokens = sum(len(r.token_ids) for r in results)
    degenerate = sum(r.finish_reason == "degenerate" for r in results)
    host = wall - core.step_s
    return {"interval": interval, "tokens": tokens, "steps": core.steps, "degenerate": degenerate,
            "host_us_per_token": 1e6 * host / tokens, "host_ms_per_step": 1e3 * host / core.steps,
            "stand_in_ms_per_step": 1e3 * core.step_s / core.steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=256, help="concurrent requests (two batches of 128: "
                    "configs/smollm2_gpu.yaml with max_lag 1)")
    ap.add_argument("--tokens", type=int, default=256, help="tokens per request (its max_new_tokens)")
    ap.add_argument("--intervals", type=int, nargs="+", default=[1, 16], help="stream intervals; the first is "
                    "the baseline of the ratios")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokenizer", default=None, help="a model folder (default: the byte tokenizer)")
    ap.add_argument("--no-canary", action="store_true")
    args = ap.parse_args()

    tokenizer = _tokenizer(args.tokenizer)
    vocab = _vocab(tokenizer)
    runs: dict[int, list[dict]] = {i: [] for i in args.intervals}
    for _ in range(args.rounds):
        for interval in args.intervals:
            runs[interval].append(_one(tokenizer, vocab, interval, args.requests, args.tokens, not args.no_canary))
    med = {i: statistics.median(r["host_us_per_token"] for r in rs) for i, rs in runs.items()}
    base = args.intervals[0]
    for i, rs in runs.items():
        last = rs[-1]
        print(f"stream_interval {i:3d}: host {med[i]:6.2f} us/token (median of {len(rs)}), "
              f"{statistics.median(r['host_ms_per_step'] for r in rs):6.2f} ms per step at {args.requests} requests; "
              f"stand-in engine {last['stand_in_ms_per_step']:.2f} ms/step; degenerate {last['degenerate']}")
    print(json.dumps({
        "benchmark": "stepped_stream", "requests": args.requests, "tokens": args.tokens,
        "canary": not args.no_canary, "tokenizer": args.tokenizer or "byte",
        "host_us_per_token": {str(i): round(v, 3) for i, v in med.items()},
        "speedup_vs_first": {str(i): round(med[base] / v, 3) for i, v in med.items()},
        "runs": runs,
    }))


if __name__ == "__main__":
    main()
