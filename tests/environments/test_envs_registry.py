"""Entry-point registry: built-ins, a third-party plugin, broken entry points, missing adapter packages.

python -m pytest tests/environments/test_envs_registry.py -q
"""

from __future__ import annotations

import sys

import pytest

import environments.registry as registry
from environments import EnvironmentNotFound, get_environment, get_spec, list_environments, registry_problems
from environments.builtin.tiny import Arithmetic


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.clear_registry_cache()
    yield
    registry.clear_registry_cache()


def test_builtin_spec_comes_from_class_attributes():
    spec = get_spec("arithmetic")
    assert (spec.name, spec.category, spec.min_difficulty, spec.max_difficulty) == (
        "arithmetic",
        "tiny",
        0,
        7,
    )
    assert spec.cls is Arithmetic and spec.source == "zaya-rl"
    assert spec.entry_point == "arithmetic = environments.builtin.tiny:Arithmetic"
    assert isinstance(get_environment("arithmetic"), Arithmetic)


def test_lookup_by_name_loads_only_that_entry_point():
    get_spec("reverse")
    assert registry._REGISTRY._loaded == {"reverse = environments.builtin.tiny:Reverse"}
    get_spec("rlve/Sorting")  # namespace lookup: only the `rlve` provider
    assert registry._REGISTRY._loaded == {
        "reverse = environments.builtin.tiny:Reverse",
        "rlve = environments.adapters.rlve:provide",
    }


def test_third_party_plugin_is_found_without_changes_here(plugin):
    spec = get_spec("third_party_env")
    assert (spec.category, spec.source) == ("plugin", "zaya-test-plugin")
    problem = get_environment("third_party_env").generate(3, 1)
    assert problem.answer == "3"
    names = {s.name for s in list_environments()}
    assert {"zt/echo", "zt/hang", "third_party_env", "arithmetic"} <= names
    assert [s.name for s in list_environments("plugin")] == ["third_party_env"]


def test_broken_entry_points_are_reported_by_name_and_do_not_break_others(plugin):
    problems = registry_problems()
    assert problems["zt_broken"].startswith(
        "failed to load entry point 'zt_broken = zaya_test_plugin_missing:provide': ModuleNotFoundError"
    )
    assert "has name 'zt/echo', expected 'zt_misnamed'" in problems["zt_misnamed"]
    assert get_spec("zt/echo").category == "testing"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(EnvironmentNotFound) as info:
        get_spec("arithmetc")
    assert str(info.value).startswith("unknown environment 'arithmetc'; did you mean arithmetic")


def test_bad_constructor_kwargs_name_the_environment():
    with pytest.raises(TypeError, match="environment 'arithmetic': bad constructor arguments {'digits': 3}"):
        get_environment("arithmetic", digits=3)


def test_missing_rlve_package_drops_names_and_says_why(monkeypatch):
    import environments.adapters.rlve as rlve

    monkeypatch.setattr(rlve.importlib.util, "find_spec", lambda name: None)
    assert not [s for s in list_environments() if s.name.startswith("rlve/")]
    assert registry_problems()["rlve"] == f"unavailable: rlve-gym is not installed ({rlve.INSTALL_HINT})"
    with pytest.raises(
        EnvironmentNotFound, match="entry point 'rlve' gave no environments: unavailable: rlve-gym"
    ):
        get_spec("rlve/Sorting")


def test_missing_reasoning_gym_drops_names_and_says_why(monkeypatch):
    import environments.adapters.reasoning_gym as rg

    rg._tasks.cache_clear()
    monkeypatch.setitem(sys.modules, "reasoning_gym.factory", None)
    try:
        assert not [s for s in list_environments() if s.name.startswith("rg/")]
        assert registry_problems()["rg"].startswith("unavailable: reasoning-gym is not installed")
    finally:
        rg._tasks.cache_clear()


def test_difficulty_checks_name_the_environment():
    env = get_environment("reverse")
    with pytest.raises(ValueError, match=r"reverse: difficulty 9 outside \[0, 8\]"):
        env.generate(0, 9)
    assert env.clamp_difficulty(42) == 8 and env.clamp_difficulty(-3) == 0
