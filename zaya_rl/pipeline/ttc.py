"""Test-time-compute (aggregation) prompts in RL: the policy learns to aggregate its own reasoning tails.

research/algorithms.md §8.2 ("RL for both modes") and research/environments.md §8 (aggregation-aware RL,
arXiv 2509.26626; ZAYA1's Markovian RSA, arXiv 2605.05365). With ``ttc.fraction > 0``:

1. Every finished normal group leaves its completions (token ids of the rollouts the verifier scored and
   the canary did not flag) in ``TailCache``, keyed by problem (env, seed, difficulty): the
   ``completions_per_problem`` most recent per problem, at most ``cache_problems`` problems (the least
   recently updated is evicted).
2. At admission, a seeded draw per admitted group (``Random(("ttc", seed, index))``, index = groups
   submitted so far) makes it an aggregation group with probability ``fraction``. It takes the most
   recently updated problem with at least C cached completions and builds one prompt from C of them,
   drawn without replacement and cut to their last τ tokens
   (``zaya_rl.rsa.algorithm.draw_aggregation_messages``). Only the problem's messages change; answer and
   metadata stay, so the same verifier scores the completions against the same ground truth. With no
   usable problem in the cache, a normal group is admitted.
3. The group is admitted with kind ``"ttc"``: G completions of the aggregation prompt form their own
   group with their own advantages. It does not feed the RLVE ladders (aggregation accuracy would push
   the level up) or the cache (training aggregates first-round candidates only).

Prompt bound: |x| + C·τ + template tokens (``zaya_rl.rsa.prompts``). The cache is not checkpointed: it
refills from the next finished groups. A TTC group pending at a checkpoint has no draw to rebuild it from,
so ``Orchestrator.pending_draws`` leaves it out and a resume books its samples ``interrupted``.

Metrics per optimizer step: ``ttc/group_frac`` (among finished training groups), ``ttc/accuracy`` against
``ttc/base_accuracy`` (normal groups: the single-rollout accuracy), ``ttc/reward``, ``ttc/prompt_tokens``,
``ttc/samples``, ``ttc/base_samples``, ``ttc/cache_problems``. The orchestrator's ``rollout/*`` and
``env/*`` window statistics count both kinds of groups. Run ``python -m pytest tests/pipeline/test_ttc.py -q``.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from environments.sampler import Draw
from zaya_rl.config import RunConfig
from zaya_rl.config.schema import ModelConfig, TTCConfig
from zaya_rl.pipeline.records import Group

ProblemKey = tuple[str, int, int]


@dataclass
class CacheEntry:
    """One problem's recent completions.

    Attributes:
        draw: the problem's (env, seed, difficulty); ``index`` None (not a position of the stream).
        problem: the problem as a dict (``Problem.to_dict()``).
        completions: generated token ids of its most recent completions, oldest first.
        uses: aggregation groups built from this entry so far.
    """

    draw: Draw
    problem: dict[str, Any]
    completions: deque[list[int]]
    uses: int = 0


class TailCache:
    """Bounded cache of recent completions per problem (module docstring, step 1).

    Args:
        max_problems: problems kept; the least recently updated is evicted first.
        per_problem: most recent completions kept per problem.
    """

    def __init__(self, max_problems: int, per_problem: int) -> None:
        self.max_problems, self.per_problem = max_problems, per_problem
        self._entries: OrderedDict[ProblemKey, CacheEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, draw: Draw, problem: dict[str, Any], completions: list[list[int]]) -> None:
        """Append ``completions`` of ``draw``'s problem; the entry becomes the most recent."""
        if not completions:
            return
        key = (draw.env, draw.seed, draw.difficulty)
        entry = self._entries.pop(key, None)
        if entry is None:
            entry = CacheEntry(draw, problem, deque(maxlen=self.per_problem))
        entry.completions.extend(list(c) for c in completions)
        self._entries[key] = entry
        while len(self._entries) > self.max_problems:
            self._entries.popitem(last=False)

    def take(self, min_completions: int, max_uses: int) -> CacheEntry | None:
        """The most recently updated entry with ``min_completions``; it leaves after ``max_uses`` takes."""
        for key in reversed(self._entries):
            entry = self._entries[key]
            if len(entry.completions) >= min_completions:
                entry.uses += 1
                if entry.uses >= max_uses:
                    del self._entries[key]
                return entry
        return None


@dataclass(frozen=True)
class AggregationPrompt:
    """What ``Orchestrator.run_group`` needs to admit one TTC group.

    Attributes:
        draw: the problem's draw (env, seed, difficulty).
        problem: the problem dict with its messages replaced by the aggregation prompt.
        sources: indices (into the entry's completions) of the tails, in prompt order.
    """

    draw: Draw
    problem: dict[str, Any]
    sources: tuple[int, ...]


@dataclass
class _Tally:
    groups: int = 0
    samples: int = 0
    accuracy: float = 0.0
    reward: float = 0.0
    prompt_tokens: int = 0

    def add(self, group: Group) -> None:
        self.groups += 1
        for r in group.rollouts:
            if r.status == "ok":
                self.samples += 1
                self.accuracy += r.accuracy
                self.reward += r.reward
                self.prompt_tokens += len(r.prompt_ids)


@dataclass
class _Window:
    ttc: _Tally = field(default_factory=_Tally)
    base: _Tally = field(default_factory=_Tally)


def load_tokenizer(model: ModelConfig) -> Any:
    """The policy's tokenizer without its weights: an HF folder's, or the byte tokenizer every preset uses."""
    if model.path is not None:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model.path, local_files_only=True)
    from zaya_rl.models.tokenizer import build_byte_tokenizer

    return build_byte_tokenizer()


class TTCMixer:
    """Turns a fraction of admissions into aggregation groups (module docstring).

    Args:
        cfg: the ``ttc`` section.
        seed: run seed (admission decisions and tail draws derive from it and the admission index).
        tokenizer: the policy's tokenizer (decodes tails and re-encodes them to enforce τ).
    """

    def __init__(self, cfg: TTCConfig, *, seed: int, tokenizer: Any) -> None:
        self.cfg, self.seed, self.tokenizer = cfg, seed, tokenizer
        eos = tokenizer.eos_token_id
        self.stop_token_ids: tuple[int, ...] = () if eos is None else (int(eos),)
        self.cache = TailCache(cfg.cache_problems, cfg.completions_per_problem)
        self._window = _Window()

    @classmethod
    def from_run_config(cls, cfg: RunConfig) -> TTCMixer | None:
        """A mixer for ``cfg``, or None when ``ttc.fraction`` is 0 (no tokenizer is loaded then)."""
        if cfg.ttc.fraction <= 0:
            return None
        return cls(cfg.ttc, seed=cfg.seed, tokenizer=load_tokenizer(cfg.model))

    def take(self, index: int) -> AggregationPrompt | None:
        """The aggregation prompt for admission number ``index``, or None for a normal group."""
        if random.Random(f"ttc/{self.seed}/{index}").random() >= self.cfg.fraction:
            return None
        entry = self.cache.take(self.cfg.tails_per_prompt, self.cfg.uses_per_problem)
        if entry is None:
            return None
        from zaya_rl.rsa.algorithm import draw_aggregation_messages  # imports transformers: TTC runs only

        messages, sources = draw_aggregation_messages(
            entry.problem["messages"], list(entry.completions), self.tokenizer,
            random.Random(f"ttc-tails/{self.seed}/{index}"), C=self.cfg.tails_per_prompt,
            tau=self.cfg.tail_tokens, stop_token_ids=self.stop_token_ids, answer_format=self.cfg.answer_format,
        )
        return AggregationPrompt(entry.draw, {**entry.problem, "messages": messages}, sources)

    def on_group_done(self, group: Group) -> None:
        """Tally a finished training group; a normal group's usable completions go into the cache."""
        if group.spec.kind == "ttc":
            self._window.ttc.add(group)
            return
        self._window.base.add(group)
        usable = [r.token_ids for r in group.rollouts if r.status == "ok" and not r.canary_flagged]
        spec = group.spec
        self.cache.add(Draw(spec.env, spec.seed, spec.difficulty), spec.problem, usable)

    def metrics(self) -> dict[str, float]:
        """Namespaced ``ttc/*`` metrics since the last call (module docstring); resets the window."""
        w, self._window = self._window, _Window()
        m = {"ttc/cache_problems": float(len(self.cache)), "ttc/samples": float(w.ttc.samples),
             "ttc/base_samples": float(w.base.samples)}
        if w.ttc.groups + w.base.groups:
            m["ttc/group_frac"] = w.ttc.groups / (w.ttc.groups + w.base.groups)
        if w.ttc.samples:
            m.update({"ttc/accuracy": w.ttc.accuracy / w.ttc.samples, "ttc/reward": w.ttc.reward / w.ttc.samples,
                      "ttc/prompt_tokens": w.ttc.prompt_tokens / w.ttc.samples})
        if w.base.samples:
            m["ttc/base_accuracy"] = w.base.accuracy / w.base.samples
        return m
