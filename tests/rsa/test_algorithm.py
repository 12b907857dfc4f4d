"""Markovian RSA on a stub engine: calls per round, concurrency, tails, prompt bound, vote, determinism.

``python -m pytest tests/rsa/test_algorithm.py -q``.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from rsa_stubs import StubEngine, regex_verify

from environments.base import Score
from zaya_rl.config.schema import RSAConfig
from zaya_rl.models.tokenizer import encode_chat
from zaya_rl.rsa.algorithm import MarkovianRSA, per_response
from zaya_rl.rsa.prompts import build_aggregation_messages


def reply(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]


def cfg(**kw) -> RSAConfig:
    base = dict(num_candidates=4, budget=64, tail_tokens=16, tails_per_prompt=2, aggregation_rounds=2)
    return RSAConfig(**{**base, **kw})


def test_engine_calls_per_round_and_concurrency(tok, problem):
    n, rounds = 5, 2
    engine = StubEngine(lambda req, k: reply(tok, f"round {k // n} ANSWER=42"))
    rsa = MarkovianRSA(engine, tok, per_response(regex_verify), cfg(num_candidates=n, aggregation_rounds=rounds))
    [result] = rsa.run([problem])
    assert len(engine.requests) == n * (rounds + 1)
    assert engine.max_in_flight == n  # a round's N requests are in flight together, rounds one after another
    initial = encode_chat(tok, problem.messages)
    assert all(list(r.prompt_ids) == initial for r in engine.requests[:n])
    for r in engine.requests[n:]:
        assert "Excerpt 1 of 2" in tok.decode(list(r.prompt_ids))
        assert r.params.max_new_tokens == 64 and r.params.stop_token_ids == (tok.eos_token_id,)
    assert [len(rd.candidates) for rd in result.rounds] == [n] * (rounds + 1)
    assert len({r.request_id for r in engine.requests}) == len(engine.requests)


def test_tails_and_prompt_bound_with_long_candidates(tok, problem):
    n, c, tau, budget = 4, 3, 24, 2000

    def script(req, k):  # even candidates overrun the budget (unfinished), odd ones stop at 1500 bytes
        t, i = divmod(k, n)
        body = f"r{t}c{i} " * 700
        return reply(tok, body[:1500] + f"|end r{t}c{i}|" if i % 2 else body)

    engine = StubEngine(script)
    rsa = MarkovianRSA(engine, tok, per_response(regex_verify),
                       cfg(num_candidates=n, tails_per_prompt=c, tail_tokens=tau, budget=budget))
    [result] = rsa.run([problem])
    base = len(encode_chat(tok, build_aggregation_messages(problem.messages, [""] * c)))
    for t in range(1, 3):
        prev = result.rounds[t - 1].candidates
        assert {p.finish_reason for p in prev} == {"length", "stop"}
        # Independent expectation: the last tau characters (ASCII) of the generated text, stop token excluded.
        expected = [tok.decode([x for x in p.token_ids.tolist() if x != tok.eos_token_id])[-tau:] for p in prev]
        for cand in result.rounds[t].candidates:
            assert len(cand.sources) == c == len(set(cand.sources))  # without replacement within a prompt
            assert cand.prompt_tokens == base + c * tau  # exactly tau tokens per tail, whatever the length
            text = tok.decode(list(engine.requests[t * n + cand.index].prompt_ids))
            positions = [text.index(expected[s]) for s in cand.sources]
            assert positions == sorted(positions)  # in draw order
    assert max(len(cd.token_ids) for rd in result.rounds for cd in rd.candidates) == budget


def test_majority_vote_fallback_and_accuracies(tok, problem):
    answers = [["41", "42", "41", None], ["42", "7", "42", "42"], [None, None, None, None]]

    def script(req, k):
        a = answers[k // 4][k % 4]
        return reply(tok, "no idea" if a is None else f"so ANSWER={a}")

    rsa = MarkovianRSA(StubEngine(script), tok, per_response(regex_verify), cfg())
    [r] = rsa.run([problem])
    r0, r1, r2 = r.rounds
    assert (r0.answer, r0.vote.votes, r0.vote.voters, r0.accuracy, r0.mean_accuracy) == ("41", 2, 3, 0.0, 0.25)
    assert (r1.answer, r1.vote.votes, r1.accuracy, r1.mean_accuracy, r1.answer_round) == ("42", 3, 1.0, 0.75, 1)
    # Nobody answers in the last round: fall back to the latest round with an answer.
    assert (r2.vote.answer, r2.answer, r2.answer_round, r2.accuracy) == (None, "42", 1, 1.0)
    assert (r.answer, r.accuracy) == ("42", 1.0)


def test_no_answer_anywhere_and_verifier_errors(tok, problem):
    def score(prob, responses):  # every "ANSWER=42" response is a verifier failure: it must not vote
        return [Score.failed("error", "boom") if "42" in x else regex_verify(prob, x) for x in responses]

    texts = ["ANSWER=42", "ANSWER=42", "ANSWER=42", "ANSWER=5"]
    rsa = MarkovianRSA(StubEngine(lambda req, k: reply(tok, texts[k % 4])), tok, score, cfg(aggregation_rounds=0))
    [r] = rsa.run([problem])
    assert (r.answer, r.rounds[0].vote.voters, r.accuracy) == ("5", 1, 0.0)
    silent = MarkovianRSA(StubEngine(lambda req, k: reply(tok, "...")), tok, per_response(regex_verify), cfg())
    [s] = silent.run([problem])
    assert (s.answer, s.accuracy, s.rounds[-1].answer_round) == (None, 0.0, None)


def test_deterministic_given_seed(tok, problem):
    def run(seed):
        engine = StubEngine(lambda req, k: reply(tok, f"c{k} ANSWER={k % 3}"))
        [r] = MarkovianRSA(engine, tok, per_response(regex_verify), cfg(num_candidates=8, tails_per_prompt=3),
                           seed=seed).run([problem])
        sources = [c.sources for rd in r.rounds for c in rd.candidates]
        return sources, [x.params.seed for x in engine.requests], [x.prompt_ids for x in engine.requests], r.answer

    assert run(0) == run(0)
    assert run(0)[0] != run(1)[0] and run(0)[1] != run(1)[1]


def test_many_problems_run_concurrently_and_independently(tok, problem):
    other = type(problem)(env="stub", seed=4, difficulty=0, answer="9", messages=problem.messages)
    engine = StubEngine(lambda req, k: reply(tok, f"ANSWER={9 if k % 2 else 42}"))
    rsa = MarkovianRSA(engine, tok, per_response(regex_verify), cfg(aggregation_rounds=1))
    results = rsa.run([problem, other, problem])
    assert engine.max_in_flight == 12  # the first rounds of all three problems are in flight together
    assert [r.problem.seed for r in results] == [3, 4, 3]
    assert results[0].rounds[1].candidates[0].sources == results[2].rounds[1].candidates[0].sources


def test_async_scorer_and_count_mismatch(tok, problem):
    async def ascore(prob, responses):
        return [regex_verify(prob, x) for x in responses]

    engine = StubEngine(lambda req, k: reply(tok, "ANSWER=42"))
    [r] = MarkovianRSA(engine, tok, ascore, cfg(aggregation_rounds=0)).run([problem])
    assert r.accuracy == 1.0
    bad = MarkovianRSA(engine, tok, lambda prob, responses: [], cfg(aggregation_rounds=0))
    with pytest.raises(ValueError, match="0 scores for 4 responses"):
        bad.run([problem])


def test_config_rejects_more_tails_than_candidates():
    with pytest.raises(ValidationError, match="rsa.tails_per_prompt"):
        RSAConfig(num_candidates=3, tails_per_prompt=4)
    d = RSAConfig()
    assert (d.num_candidates, d.budget, d.tail_tokens, d.tails_per_prompt, d.aggregation_rounds) == (
        16, 40000, 4000, 4, 2)
