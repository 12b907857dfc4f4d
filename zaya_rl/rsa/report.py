"""Per-round summary of an RSA evaluation: single-rollout accuracy vs RSA accuracy after each round.

Row 0 is the initial generation: ``mean_accuracy`` is single-rollout accuracy (mean over candidates, a
pass@1 estimate) and ``majority_accuracy`` is majority@N of N independent samples. Row t ≥ 1 is after t
aggregation rounds; its ``majority_accuracy`` is the RSA answer's accuracy at that point. All accuracies
are means over problems (each problem weighs the same). Pure functions; the CLI writes the outputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from zaya_rl.rsa.algorithm import RSAResult

#: Longest answer kept in the per-problem records: some environments' "answer" is the whole response.
_MAX_RECORD_ANSWER_CHARS = 200

#: Column key -> (header, format) of the Markdown table, in order.
_COLUMNS = {
    "round": ("round", "{}"),
    "label": ("stage", "{}"),
    "mean_accuracy": ("mean acc (single rollout)", "{:.3f}"),
    "majority_accuracy": ("majority@N acc", "{:.3f}"),
    "answered": ("answered frac", "{:.3f}"),
    "mean_new_tokens": ("mean new tokens", "{:.1f}"),
    "truncated": ("hit budget frac", "{:.3f}"),
    "max_prompt_tokens": ("max prompt tokens", "{}"),
    "verifier_errors": ("verifier errors", "{}"),
}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(results: Sequence[RSAResult]) -> list[dict[str, Any]]:
    """One row per round (see the module docstring); empty for no results."""
    if not results:
        return []
    rows = []
    for t in range(len(results[0].rounds)):
        rounds = [r.rounds[t] for r in results]
        cands = [c for rd in rounds for c in rd.candidates]
        rows.append({
            "round": t,
            "label": "initial" if t == 0 else f"after aggregation {t}",
            "mean_accuracy": _mean([rd.mean_accuracy for rd in rounds]),
            "majority_accuracy": _mean([rd.accuracy for rd in rounds]),
            "answered": _mean([float(c.answer is not None) for c in cands]),
            "mean_new_tokens": _mean([len(c.token_ids) for c in cands]),
            "truncated": _mean([float(c.finish_reason == "length") for c in cands]),
            "max_prompt_tokens": max(c.prompt_tokens for c in cands),
            "verifier_errors": sum(c.score.status != "ok" for c in cands),
        })
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table (columns of ``_COLUMNS``)."""
    head = "| " + " | ".join(h for h, _ in _COLUMNS.values()) + " |"
    rule = "|" + "|".join("---" for _ in _COLUMNS) + "|"
    body = ["| " + " | ".join(fmt.format(row[k]) for k, (_, fmt) in _COLUMNS.items()) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def _clip(answer: str | None) -> str | None:
    if answer is None or len(answer) <= _MAX_RECORD_ANSWER_CHARS:
        return answer
    return answer[:_MAX_RECORD_ANSWER_CHARS] + "..."


def problem_records(results: Sequence[RSAResult]) -> list[dict[str, Any]]:
    """Per problem and round: answer, its accuracy, vote counts (no texts: candidates can be 40K tokens)."""
    return [
        {
            "env": r.problem.env, "seed": r.problem.seed, "difficulty": r.problem.difficulty,
            "reference": r.problem.answer,
            "rounds": [
                {"answer": _clip(rd.answer), "answer_round": rd.answer_round, "accuracy": rd.accuracy,
                 "votes": rd.vote.votes, "voters": rd.vote.voters, "tied": rd.vote.tied,
                 "mean_accuracy": rd.mean_accuracy}
                for rd in r.rounds
            ],
        }
        for r in results
    ]


def to_json(rows: Sequence[dict[str, Any]], settings: dict[str, Any], results: Sequence[RSAResult]) -> str:
    """The JSON report: settings, per-round rows and per-problem records."""
    return json.dumps({"settings": settings, "rounds": list(rows), "problems": problem_records(results)}, indent=2)
