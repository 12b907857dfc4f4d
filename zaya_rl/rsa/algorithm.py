"""Markovian RSA: N candidates, rounds of aggregation over C random τ-token tails, majority vote.

research/algorithms.md §8.2 (ZAYA1, arXiv 2605.05365; RSA, arXiv 2509.26626)::

    P_0 = [generate(x, max_tokens=β) for i in 1..N]
    for t in 1..aggregation_rounds:
        P_t = [generate(AggPrompt(x, C tails of P_{t-1} drawn without replacement), max_tokens=β) for i in 1..N]
    answer = majority vote over the extracted answers of P_T   (fallback: the latest round with any answer)

Round semantics: ``aggregation_rounds`` counts aggregation rounds *after* the initial one, so a run makes
``aggregation_rounds + 1`` generation rounds. The RSA harness's T counts all generation rounds (harness
T = aggregation_rounds + 1); ZAYA1's "T = 2" is read as 2 aggregation rounds (§8.2 notes the ambiguity).

Engine-agnostic: every round sends its N requests to ``RolloutEngine.generate`` at once, and
``MarkovianRSA.run`` solves all problems concurrently, so the engine batches across problems too.
Answers for the vote come from the environment's verifier (``Score.extracted``); the runner takes a batch
``Scorer`` (``per_response(env.verify)`` in-process, ``VerifierPool.verify_many`` in real use), called in a
worker thread so the engine keeps decoding other problems meanwhile.

Randomness: tail draws, tie-breaks and per-request sampling seeds all derive from (``seed``, the problem's
env/seed/difficulty), never from the order problems finish in, so a run is reproducible given its seed.

Run ``python -m pytest tests/rsa -q``; ``zaya-rl rsa eval --help`` for the evaluation command.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from environments.base import Problem, Score
from zaya_rl.config.schema import RSAConfig
from zaya_rl.models.tokenizer import encode_chat
from zaya_rl.rollout.base import GenerationRequest, GenerationResult, RolloutEngine, SamplingParams
from zaya_rl.rsa.prompts import Messages, build_aggregation_messages
from zaya_rl.rsa.tails import TailTokenizer, decode_tail, sample_tails
from zaya_rl.rsa.vote import Vote, majority_vote, normalize_answer

#: ``(problem, responses) -> one Score per response``; a plain function or an ``async def``.
Scorer = Callable[[Problem, list[str]], Sequence[Score] | Awaitable[Sequence[Score]]]


def per_response(verify: Callable[[Problem, str], Score]) -> Scorer:
    """Adapt a one-response verifier (e.g. ``Environment.verify``) to the batch ``Scorer`` the runner takes."""

    def score(problem: Problem, responses: list[str]) -> list[Score]:
        return [verify(problem, r) for r in responses]

    return score


class ChatTokenizer(TailTokenizer, Protocol):
    eos_token_id: int | None

    def apply_chat_template(self, conversation: Messages, **kwargs): ...


@dataclass(frozen=True)
class Candidate:
    """One generated candidate.

    Attributes:
        index: position in its round (0..N-1).
        token_ids: generated token ids, int32 ``[G]`` (an array: with β = 40K, N = 16 and 3 rounds a problem
            holds up to 1.9M of them, 8 MB here against ~70 MB as a list of Python ints).
        text: decoded completion (special tokens skipped), as the verifier saw it.
        finish_reason: the engine's finish reason (``length``: ran out of budget β, still used for tails).
        score: the verifier's score.
        prompt_tokens: length of the prompt it was generated from.
        sources: indices of the previous round's candidates whose tails built its prompt; () in round 0.
    """

    index: int
    token_ids: np.ndarray
    text: str
    finish_reason: str
    score: Score
    prompt_tokens: int
    sources: tuple[int, ...]

    @property
    def answer(self) -> str | None:
        """The normalised extracted answer; None without one or when the verifier failed."""
        return normalize_answer(self.score.extracted) if self.score.status == "ok" else None

    @property
    def accuracy(self) -> float:
        """Verifier accuracy; a verifier failure counts as incorrect."""
        return self.score.accuracy if self.score.status == "ok" else 0.0


@dataclass(frozen=True)
class RoundResult:
    """One generation round of one problem.

    Attributes:
        index: 0 for the initial generation, t after t aggregation rounds.
        candidates: the N candidates.
        vote: the majority vote over this round's answers.
        answer: the RSA answer after this round: this round's vote, or when nobody here answered, the
            latest earlier round's (None if no round had an answer).
        answer_round: the round whose vote gave ``answer`` (None without an answer).
        accuracy: verifier accuracy of ``answer`` (that of a candidate who gave it); 0 without an answer.
    """

    index: int
    candidates: list[Candidate]
    vote: Vote
    answer: str | None
    answer_round: int | None
    accuracy: float

    @property
    def mean_accuracy(self) -> float:
        """Mean candidate accuracy: a single-rollout (pass@1) estimate for this round."""
        return sum(c.accuracy for c in self.candidates) / len(self.candidates)


@dataclass(frozen=True)
class RSAResult:
    """All rounds of one problem; ``rounds[-1]`` holds the final answer."""

    problem: Problem
    rounds: list[RoundResult]

    @property
    def answer(self) -> str | None:
        return self.rounds[-1].answer

    @property
    def accuracy(self) -> float:
        return self.rounds[-1].accuracy


def draw_aggregation_messages(
    problem_messages: Messages,
    candidates_token_ids: Sequence[Sequence[int]],
    tokenizer: TailTokenizer,
    rng: random.Random,
    *,
    C: int,
    tau: int,
    stop_token_ids: Collection[int] = (),
    answer_format: str | None = None,
    cache: dict[int, str] | None = None,
) -> tuple[Messages, tuple[int, ...]]:
    """One aggregation prompt from C random τ-tails of ``candidates_token_ids`` (the RL pipeline's entry too).

    Args:
        problem_messages: the problem's chat messages.
        candidates_token_ids: generated token ids of the candidates to draw from.
        tokenizer: decodes the tails (and re-encodes them to enforce τ).
        rng: seeded generator of the draw.
        C: tails per prompt.
        tau: tail length τ in tokens.
        stop_token_ids: end-of-turn ids dropped from the end of a candidate.
        answer_format: see ``build_aggregation_messages``.
        cache: source index -> tail text, shared across prompts drawn from the same candidates.

    Returns:
        The chat messages and the indices of the candidates whose tails they hold, in prompt order.
    """
    cache = {} if cache is None else cache
    tails = sample_tails(candidates_token_ids, C, tau, rng, stop_token_ids=stop_token_ids)
    for tail in tails:
        if tail.source not in cache:
            cache[tail.source] = decode_tail(tokenizer, tail, tau)
    texts = [cache[t.source] for t in tails]
    messages = build_aggregation_messages(problem_messages, texts, answer_format=answer_format)
    return messages, tuple(t.source for t in tails)


def _seeded(*parts: object) -> random.Random:
    # A string seed is hashed with SHA-512 by ``random.seed``: stable across processes (unlike ``hash``).
    return random.Random("/".join(str(p) for p in parts))


class MarkovianRSA:
    """Runs Markovian RSA on problems with any rollout engine (module docstring).

    Args:
        engine: the rollout engine (torch, vLLM or scripted).
        tokenizer: the policy's tokenizer (chat template, decode/encode for tails).
        score: ``(problem, responses) -> list[Score]``; see ``per_response`` for one-response verifiers.
        cfg: N, β, τ, C, rounds, sampling and answer format.
        seed: base seed of tail draws, tie-breaks and sampling.
    """

    def __init__(
        self, engine: RolloutEngine, tokenizer: ChatTokenizer, score: Scorer, cfg: RSAConfig, *, seed: int = 0
    ) -> None:
        self.engine, self.tokenizer, self.score, self.cfg, self.seed = engine, tokenizer, score, cfg, seed
        eos = tokenizer.eos_token_id
        self.stop_token_ids: tuple[int, ...] = () if eos is None else (int(eos),)
        self._uids = itertools.count()  # request ids stay unique when one problem is solved twice at once

    def run(self, problems: Sequence[Problem]) -> list[RSAResult]:
        """Solve ``problems`` concurrently from synchronous code; results in input order."""

        async def _all() -> list[RSAResult]:
            return list(await asyncio.gather(*(self.solve(p) for p in problems)))

        return asyncio.run(_all())

    async def solve(self, problem: Problem) -> RSAResult:
        """All ``aggregation_rounds + 1`` rounds of one problem."""
        key = (self.seed, problem.env, problem.seed, problem.difficulty)
        tails_rng, vote_rng = _seeded("rsa-tails", *key), _seeded("rsa-vote", *key)
        uid = next(self._uids)
        n = self.cfg.num_candidates
        prompts = [encode_chat(self.tokenizer, problem.messages)] * n
        sources: list[tuple[int, ...]] = [()] * n
        rounds: list[RoundResult] = []
        for t in range(self.cfg.aggregation_rounds + 1):
            if t > 0:
                prompts, sources = self.aggregation_prompts(problem, rounds[-1].candidates, tails_rng)
            candidates = await self._generate_round(problem, prompts, sources, t, key, uid)
            rounds.append(_tally(t, candidates, rounds, vote_rng))
        return RSAResult(problem=problem, rounds=rounds)

    def aggregation_prompts(
        self, problem: Problem, previous: Sequence[Candidate], rng: random.Random
    ) -> tuple[list[list[int]], list[tuple[int, ...]]]:
        """N aggregation prompts (token ids) and, for each, the previous-round candidates its tails come from."""
        cfg = self.cfg
        previous_ids = [c.token_ids for c in previous]
        cache: dict[int, str] = {}
        prompts, sources = [], []
        for _ in range(cfg.num_candidates):
            messages, src = draw_aggregation_messages(
                problem.messages, previous_ids, self.tokenizer, rng, C=cfg.tails_per_prompt, tau=cfg.tail_tokens,
                stop_token_ids=self.stop_token_ids, answer_format=cfg.answer_format, cache=cache,
            )
            prompts.append(encode_chat(self.tokenizer, messages))
            sources.append(src)
        return prompts, sources

    async def _generate_round(
        self, problem: Problem, prompts: list[list[int]], sources: list[tuple[int, ...]], t: int,
        key: tuple, uid: int,
    ) -> list[Candidate]:
        cfg = self.cfg
        requests = [
            GenerationRequest(
                request_id=f"rsa{uid}-r{t}-c{i}",
                prompt_ids=prompt,
                params=SamplingParams(
                    max_new_tokens=cfg.budget, temperature=cfg.temperature, top_p=cfg.top_p,
                    stop_token_ids=self.stop_token_ids, seed=_seeded("rsa-sample", *key, t, i).getrandbits(62),
                ),
            )
            for i, prompt in enumerate(prompts)
        ]
        results: list[GenerationResult] = await asyncio.gather(*(self.engine.generate(r) for r in requests))
        texts = [self.tokenizer.decode(list(r.token_ids), skip_special_tokens=True) for r in results]
        scores = await self._score(problem, texts)
        return [
            Candidate(index=i, token_ids=np.asarray(r.token_ids, dtype=np.int32), text=text, finish_reason=r.finish_reason, score=s,
                      prompt_tokens=len(r.prompt_ids), sources=src)
            for i, (r, text, s, src) in enumerate(zip(results, texts, scores, sources, strict=True))
        ]

    async def _score(self, problem: Problem, texts: list[str]) -> list[Score]:
        if inspect.iscoroutinefunction(self.score):
            scores = list(await self.score(problem, texts))
        else:  # a worker thread: a blocking verifier (pool round trip, math-verify) must not stall decoding
            scores = list(await asyncio.to_thread(self.score, problem, texts))
        if len(scores) != len(texts):
            raise ValueError(f"RSA scorer returned {len(scores)} scores for {len(texts)} responses "
                             f"(problem {problem.env}/{problem.seed})")
        return scores


def _tally(t: int, candidates: list[Candidate], earlier: Sequence[RoundResult], rng: random.Random) -> RoundResult:
    """Vote over round ``t``; without any answer here, fall back to the latest earlier round that had one."""
    vote = majority_vote([c.answer for c in candidates], rng)
    if vote.answer is not None:
        return RoundResult(t, candidates, vote, vote.answer, t, candidates[vote.winner].accuracy)
    for past in reversed(earlier):
        if past.answer is not None:
            return RoundResult(t, candidates, vote, past.answer, past.answer_round, past.accuracy)
    return RoundResult(t, candidates, vote, None, None, 0.0)
