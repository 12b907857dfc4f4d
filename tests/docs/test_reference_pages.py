"""Reference pages: ``docs/configuration.md`` as generated says *required* (never pydantic's
``PydanticUndefined``); ``docs/environments.md`` says where the contract is imported from and what it means.

Run ``python -m pytest tests/docs/test_reference_pages.py -q``.
"""

from __future__ import annotations

from pathlib import Path

from zaya_rl.config.commands import config_reference

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_required_fields_read_required_not_pydantic_undefined():
    text = config_reference()
    assert "PydanticUndefined" not in text and "PydanticUndefined" not in PAGE.read_text()
    rows = {line.split(" | ")[0].strip("| `"): line for line in text.splitlines() if line.startswith("| `")}
    for key in ("data.environments[].name", "stages[].name", "stages[].steps"):
        assert rows[key].split(" | ")[2] == "*required*", rows[key]
    assert rows["pipeline.max_lag"].split(" | ")[2] == "`1`"  # a default stays a code span


def test_the_environment_guide_says_where_the_contract_is_imported_from_and_what_its_fields_mean():
    text = (PAGE.parent / "environments.md").read_text()
    line = "from environments import Environment, Problem, Score"
    assert line in text
    exec(line, {})  # the documented import works
    # `source`, `Score.status` and the form of `reference_response` (a whole response, verified to accuracy 1)
    assert "source: ClassVar[str]" in text and "- `source` names where the environment comes from" in text
    assert "- `Score.status` is `\"ok\"` for every verdict your `verify` returns" in text
    assert "- `reference_response(problem)` returns a complete **model response**, not only the answer" in text
    assert "## 4. What the tiny default model can learn" in text
