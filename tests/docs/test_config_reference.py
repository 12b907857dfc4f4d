"""``docs/configuration.md`` as generated: required fields say so (never pydantic's ``PydanticUndefined``).

Run ``python -m pytest tests/docs/test_config_reference.py -q``.
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
