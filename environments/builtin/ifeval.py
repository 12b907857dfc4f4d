"""Instruction following: a procedural chat request plus 1-3 IFEval constraints, verified by ``rewards.ifeval``.

Generation: a base request (a template such as "Write a short blog post about {topic}." with one of 30
topics; all comma-free so ``repeat_prompt`` and ``no_comma`` can combine) followed by the descriptions
of ``1 + d // 2`` constraints (at most 3). Even difficulties draw from ``EASY`` (formatting and keyword
rules), odd ones from all 25 types. Constraints never combine when lm-eval's conflict table or
``EXTRA_CONFLICTS`` forbids it, nor when their keywords clash (a word both required and forbidden).
Each constraint's arguments are drawn by ``rewards.ifeval.build_constraint`` from a per-constraint
seed, so the problem is a pure function of (seed, difficulty).

Verification: ``rewards.ifeval.check_constraints`` (``mode`` strict/loose; reward = fraction followed,
or all-or-nothing); ``accuracy`` = all followed.

``reference_response`` builds a response constructively (``_compose``: natural English filler sentences
about the topic, shaped by every constraint) and returns the first candidate that passes the strict
check, trying a few sentence counts. It cannot build ``language:response_language`` (needs text in
another language) and sometimes fails on tight combinations (e.g. a rare letter limit with a long minimum
word count); then it raises ``NotImplementedError`` naming the constraints, and ``zaya-rl envs check``
should skip that problem. tests/environments/test_ifeval_env.py measures how often this happens.
"""

from __future__ import annotations

import json
import random

from environments.base import Environment, Problem, Score
from rewards.ifeval import Constraint, IFMode, build_constraint, check_constraints, conflicts, instruction_ids

TEMPLATES = (
    "Write a short blog post about {topic}.", "Write a letter to a friend about {topic}.",
    "Explain {topic} to a ten year old.", "Write a short essay on {topic}.", "Write a poem about {topic}.",
    "Give some practical advice about {topic}.", "Describe {topic} to someone who has never heard of it.",
    "Write a short speech about {topic}.", "Write a diary entry about {topic}.", "Write an ad for {topic}.",
)  # fmt: skip
TOPICS = (
    "the ocean", "city gardens", "learning to cook", "the history of maps", "electric bicycles",
    "a rainy weekend", "public libraries", "mountain hiking", "board games", "the night sky", "coffee",
    "recycling", "a first job", "honey bees", "old trains", "music practice", "winter sports",
    "a small bakery", "friendship", "the moon landing", "street food", "time management", "a lost cat",
    "volcanoes", "the internet", "chess", "desert plants", "a school trip", "sleep", "kindness",
)  # fmt: skip
EASY = (
    "change_case:english_lowercase", "change_case:english_capital", "punctuation:no_comma",
    "startend:quotation", "startend:end_checker", "detectable_format:title", "detectable_content:postscript",
    "keywords:existence", "keywords:forbidden_words", "detectable_content:number_placeholders",
    "detectable_format:number_highlighted_sections", "length_constraints:number_words",
)  # fmt: skip
#: Pairs lm-eval's table misses but no response can satisfy: section headers ("Section"/"SECTION")
#: break an all-lowercase or all-capital response.
EXTRA_CONFLICTS = (
    ("detectable_format:multiple_sections", "change_case:english_lowercase"),
    ("detectable_format:multiple_sections", "change_case:english_capital"),
)
#: Comma-free filler about the topic; natural English so langdetect reads it as "en".
SENTENCES = (
    "This is a short note about {topic}.", "Many people find {topic} more interesting than they expect.",
    "It is worth taking some time to think about {topic}.", "There is always something new to learn here.",
    "A good place to start is to ask what matters most.", "Small steps often lead to the best results.",
    "You do not need to be an expert to enjoy it.", "Most of us have a story that fits this subject.",
    "The details change but the main idea stays the same.", "Talking with others can make the topic clearer.",
    "It helps to keep things simple at the beginning.", "Over time the picture becomes much easier to see.",
    "Every season brings a slightly different view of it.", "Books and friends are both good guides.",
    "Try to look at it from more than one side.", "A calm mind notices much more than a busy one.",
)  # fmt: skip
MAX_CONSTRAINTS = 3
_DRAW_ATTEMPTS = 20


class IFEvalEnv(Environment):
    """Chat requests with verifiable IFEval constraints (module docstring).

    Args:
        mode: ``strict`` or ``loose`` checking.
        all_or_nothing: reward 1 iff all constraints are followed, instead of the fraction followed.
    """

    name = "ifeval"
    category = "if"
    min_difficulty = 0
    max_difficulty = 5
    source = "lm-eval"

    def __init__(self, mode: IFMode = "strict", all_or_nothing: bool = False) -> None:
        if mode not in ("strict", "loose"):
            raise ValueError(f"ifeval: mode must be strict or loose, got {mode!r}")
        self.mode, self.all_or_nothing = mode, all_or_nothing

    def generate(self, seed: int, difficulty: int) -> Problem:
        d = self.clamp_difficulty(difficulty)
        rng = random.Random(f"ifeval/{seed}/{d}")
        topic = rng.choice(TOPICS)
        base = rng.choice(TEMPLATES).format(topic=topic)
        pool = list(EASY) if d % 2 == 0 else instruction_ids()
        chosen = _draw_constraints(rng, pool, min(MAX_CONSTRAINTS, 1 + d // 2), base)
        prompt = " ".join([base, *(c.description for c in chosen)])
        return Problem(env=self.name, seed=seed, difficulty=d, messages=[{"role": "user", "content": prompt}],
                       metadata={"base_prompt": base, "topic": topic,
                                 "constraints": [vars(c) for c in chosen]})

    def verify(self, problem: Problem, response: str) -> Score:
        constraints = [Constraint(**c) for c in problem.metadata["constraints"]]
        verdict = check_constraints(problem.metadata["base_prompt"], response, constraints, mode=self.mode,
                                    all_or_nothing=self.all_or_nothing)
        if verdict.status != "ok":
            return Score.failed("error", verdict.reason)
        return Score(reward=verdict.reward, accuracy=float(all(verdict.followed)), format_ok=True,
                     reason=verdict.reason)

    def reference_response(self, problem: Problem) -> str:
        meta = problem.metadata
        constraints = [Constraint(**c) for c in meta["constraints"]]
        for n_sentences in (3, 1, 2, 5, 8, 12, 18, 30, 45, 70):
            text = _compose(constraints, meta["base_prompt"], meta["topic"], n_sentences)
            if text is not None and all(check_constraints(meta["base_prompt"], text, constraints).followed):
                return text
        raise NotImplementedError(f"ifeval: no constructed response satisfies "
                                  f"{[c.instruction_id for c in constraints]} (seed {problem.seed})")

    def wrong_response(self, problem: Problem) -> str:
        return ""  # an empty response follows no instruction (lm-eval requires a non-empty response)


def _draw_constraints(rng: random.Random, pool: list[str], k: int, base: str) -> list[Constraint]:
    """k mutually compatible constraints from ``pool``, each built from its own seed drawn from ``rng``.

    A greedy pass over a shuffled pool can dead-end (``constrained_response`` excludes everything), so
    up to ``_DRAW_ATTEMPTS`` shuffles are tried and the first complete set (else the largest) is kept.
    """
    table = conflicts()
    for a, b in EXTRA_CONFLICTS:
        table[a].add(b)
        table[b].add(a)
    best: list[Constraint] = []
    for _ in range(_DRAW_ATTEMPTS):
        chosen: list[Constraint] = []
        candidates = sorted(pool)
        rng.shuffle(candidates)
        for instruction_id in candidates:
            if len(chosen) == k:
                break
            if any(instruction_id in table[c.instruction_id] for c in chosen):
                continue
            constraint = build_constraint(instruction_id, rng.randrange(2**31), base)
            if not _keywords_clash([*chosen, constraint]):
                chosen.append(constraint)
        if len(chosen) > len(best):
            best = chosen
        if len(best) == k:
            break
    return best


def _keywords_clash(constraints: list[Constraint]) -> bool:
    """Whether a word is both required (existence, frequency >= n, first word) and forbidden or capped."""
    required, banned = set(), set()
    for c in constraints:
        kw = c.kwargs
        required |= set(kw.get("keywords") or [])
        if c.instruction_id == "keywords:frequency":
            (required if kw["relation"] == "at least" else banned).add(kw["keyword"])
        if c.instruction_id == "length_constraints:nth_paragraph_first_word":
            required.add(kw["first_word"])
        banned |= set(kw.get("forbidden_words") or [])
    return bool({w.lower() for w in required} & {w.lower() for w in banned})


def _compose(constraints: list[Constraint], base: str, topic: str, n_sentences: int) -> str | None:
    """A response shaped by every constraint, or None when one is out of reach (see module docstring)."""
    spec = {c.instruction_id: c.kwargs for c in constraints}
    if "detectable_format:constrained_response" in spec:
        return "My answer is yes."
    if "language:response_language" in spec:
        return None
    avoid = {w.lower() for kw in spec.values() for w in (kw.get("forbidden_words") or [])}
    if spec.get("keywords:frequency", {}).get("relation") == "less than":
        avoid.add(spec["keywords:frequency"]["keyword"].lower())
    letter = spec.get("keywords:letter_frequency", {})
    pool = [s.format(topic=topic) for s in SENTENCES]
    pool = [s for s in pool if not avoid & set(s.lower().rstrip(".").split())]
    if letter.get("let_relation") == "less than":
        pool = [s for s in pool if letter["letter"] not in s.lower()]
    if not pool:
        return None
    sentences = [pool[i % len(pool)] for i in range(n_sentences)] + _extra_sentences(spec)
    paragraphs = _paragraphs(sentences, spec)
    return _finish("\n\n".join(paragraphs) if "length_constraints:number_paragraphs" not in spec
                   else "\n\n***\n\n".join(paragraphs), spec, base)


def _extra_sentences(spec: dict[str, dict]) -> list[str]:
    """Sentences that carry required words, placeholders, highlights, capitals and letters."""
    extra = []
    if "keywords:existence" in spec:
        extra.append("We mention " + " and ".join(spec["keywords:existence"]["keywords"]) + ".")
    freq = spec.get("keywords:frequency", {})
    if freq.get("relation") == "at least":
        extra.append(" ".join([freq["keyword"]] * freq["frequency"]) + ".")
    if "detectable_content:number_placeholders" in spec:
        n = spec["detectable_content:number_placeholders"]["num_placeholders"]
        extra.append("Fill in " + " ".join(f"[detail {i + 1}]" for i in range(n)) + ".")
    if "detectable_format:number_highlighted_sections" in spec:
        n = spec["detectable_format:number_highlighted_sections"]["num_highlights"]
        extra.append("Key points are " + " and ".join(f"*point {i + 1}*" for i in range(n)) + ".")
    caps = spec.get("change_case:capital_word_frequency", {})
    if caps.get("capital_relation") == "at least":
        extra.append(" ".join(["NOTE"] * caps["capital_frequency"]) + ".")
    letter = spec.get("keywords:letter_frequency", {})
    if letter.get("let_relation") == "at least":
        extra.append(letter["letter"] * letter["let_frequency"] + ".")
    return extra


def _paragraphs(sentences: list[str], spec: dict[str, dict]) -> list[str]:
    """Split sentences into the required paragraphs/sections; add bullets to the last one."""
    nth = spec.get("length_constraints:nth_paragraph_first_word")
    sections = spec.get("detectable_format:multiple_sections")
    count = (nth or spec.get("length_constraints:number_paragraphs") or sections or {}).get(
        "num_paragraphs", (sections or {}).get("num_sections", 1))
    chunks = [sentences[i::count] for i in range(count)]
    chunks = [chunk or ["There is more to say."] for chunk in chunks]
    if nth is not None:
        chunks[nth["nth_paragraph"] - 1].insert(0, f"{nth['first_word'].capitalize()} comes first here.")
    paragraphs = [" ".join(chunk) for chunk in chunks]
    if sections is not None:
        paragraphs = [f"{sections['section_spliter']} {i + 1}\n{p}" for i, p in enumerate(paragraphs)]
    if "detectable_format:number_bullet_lists" in spec:
        n = spec["detectable_format:number_bullet_lists"]["num_bullets"]
        paragraphs[-1] += "".join(f"\n* Idea number {i + 1}" for i in range(n))
    if "detectable_format:title" in spec:
        first_is_checked = nth is not None and nth["nth_paragraph"] == 1
        paragraphs[0] = f"{paragraphs[0]}\n<<A Short Note>>" if first_is_checked else f"<<A Short Note>>\n{paragraphs[0]}"
    return paragraphs


def _finish(text: str, spec: dict[str, dict], base: str) -> str:
    """Whole-response rules: postscript, end phrase, repeat/two responses/JSON, case, quotes, commas."""
    if "detectable_content:postscript" in spec:
        text += f"\n{spec['detectable_content:postscript']['postscript_marker']} Thanks for reading."
    if "startend:end_checker" in spec:
        text += " " + spec["startend:end_checker"]["end_phrase"]
    if "combination:two_responses" in spec:
        text = f"{text}\n******\n{text} That is all."
    if "combination:repeat_prompt" in spec:
        text = f"{base}\n{text}"
    if "detectable_format:json_format" in spec:
        text = json.dumps({"response": text})
    if "change_case:english_lowercase" in spec:
        text = text.lower()
    if "change_case:english_capital" in spec:
        text = text.upper()
    if "startend:quotation" in spec:
        text = f'"{text}"'
    return text
