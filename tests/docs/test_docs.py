"""The user guide stays true (STYLE.md rule 13): README.md and docs/*.md are checked against the repository.

* Markdown links ``[text](target)`` resolve: the file exists, and a ``#anchor`` names a heading of it.
* Every repository path in code (``configs/...``, ``launch/...``, ``zaya_rl/...``, ...) exists.
* Every dotted reference in code (``zaya_rl.pipeline.actors.check_resources``) names a module file and a
  name defined in it (read with ``ast``; nothing is imported).
* Every ``configs/*.yaml`` named validates; every ``zaya-rl ...`` command parses with the real CLI parser,
  and ``train``/``config show`` commands on existing config files validate with their overrides.
* ``--help`` of every ``zaya-rl`` subcommand runs.
* ``docs/configuration.md`` equals what ``zaya-rl config docs`` generates from the schema now.

"In code" means inline code spans and fenced blocks, where paths and commands live in these pages.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
import shlex
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "examples").glob("*/README.md"))]
#: Top-level folders whose paths the pages may name (``runs/...`` and ``<run_dir>/...`` are outputs, not checked).
SOURCE_DIRS = ("configs", "launch", "docs", "examples", "zaya_rl", "environments", "rewards", "tests",
               "benchmarks", ".ci", "tools")
PACKAGES = ("zaya_rl", "environments", "rewards")
FILE_SUFFIXES = {"md", "py", "yaml", "yml", "toml", "txt", "json", "sh", "sbatch"}
#: Dotted names that are not Python references: the environments' entry-point group.
NOT_REFERENCES = {"zaya_rl.environments"}

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(`+)(.+?)\1", re.S)
_DIRS = "|".join(re.escape(d) for d in SOURCE_DIRS)
PATH = re.compile(rf"(?<![\w./<$-])((?:{_DIRS})/[\w./-]*)")
DOTTED = re.compile(rf"(?<![\w./-])((?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+)")


def _rel(page: Path) -> str:
    return str(page.relative_to(REPO))


@cache
def _code(page: Path) -> tuple[list[str], list[str]]:
    """(fenced blocks, inline code spans) of a page."""
    text = page.read_text()
    blocks = FENCE.findall(text)
    prose = FENCE.sub("", text)
    return blocks, [m.group(2) for m in INLINE.finditer(prose)]


def _github_slug(heading: str) -> str:
    s = re.sub(r"[`*_]", "", heading.strip().lower())
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_github_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


# ------------------------------------------------------------------ links and paths
@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_links_resolve(page):
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{_rel(page)}: " + "; ".join(broken)


def _paths(page: Path) -> set[str]:
    blocks, spans = _code(page)
    found = set()
    for chunk in [*blocks, *spans]:
        for p in PATH.findall(chunk):
            p = p.rstrip(".,:;")
            if not any(c in p for c in "*{<"):
                found.add(p)
    return found


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_repository_paths_exist(page):
    missing = sorted(p for p in _paths(page) if not (REPO / p).exists())
    assert not missing, f"{_rel(page)} names paths that do not exist: {missing}"


def _defines(tree: ast.Module, dotted: list[str]) -> bool:
    """Whether ``a.b`` is a top-level name ``a`` of the module (with attribute/method ``b`` of a class)."""
    scope: list[ast.stmt] = tree.body
    for i, name in enumerate(dotted):
        hit = None
        for node in scope:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                hit = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    hit = node
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                    hit = node
        if hit is None:
            return False
        if i < len(dotted) - 1:
            if not isinstance(hit, ast.ClassDef):
                return True  # an attribute of a value: cannot be checked statically
            scope = hit.body
    return True


def _resolve(ref: str) -> str | None:
    """None when ``ref`` names a module (file or package) or a name defined in one; else why not."""
    parts = ref.split(".")
    if parts[-1] in FILE_SUFFIXES or ref in NOT_REFERENCES:
        return None  # a file name such as environments.md, not a reference
    for k in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:k])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            if k == len(parts):
                return None
            tree = ast.parse(module.read_text())
            return None if _defines(tree, parts[k:]) else f"{'.'.join(parts[k:])} is not defined in {module.name}"
    return "no such module"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_dotted_references_resolve(page):
    blocks, spans = _code(page)
    refs = {r for chunk in [*blocks, *spans] for r in DOTTED.findall(chunk)}
    bad = {r: why for r in sorted(refs) if (why := _resolve(r))}
    assert not bad, f"{_rel(page)}: {bad}"


# ------------------------------------------------------------------ configs and commands
def _configs_named() -> set[str]:
    return {p for page in PAGES for p in _paths(page) if re.fullmatch(r"configs/.+\.ya?ml", p)}


@pytest.mark.parametrize("config", sorted(_configs_named()))
def test_named_configs_validate(config):
    from zaya_rl.config import load_config

    if Path(config).name.startswith("_"):  # a layer of a layered config, validated with its command below
        assert (REPO / config).is_file()
        return
    load_config(REPO / config)


def _command_lines(page: Path) -> list[str]:
    """Shell lines (continuations joined, comments dropped) of the page's code that run ``zaya-rl``."""
    blocks, spans = _code(page)
    lines = []
    for chunk in [*blocks, *spans]:
        for line in chunk.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if "zaya-rl " in line:
                lines.append(line)
    return lines


def _zaya_commands(line: str) -> list[list[str]]:
    """The argument lists after each ``zaya-rl`` of a shell line (split at |, ;, &&, ||)."""
    try:
        tokens = shlex.split(line)
    except ValueError:  # an unbalanced quote inside prose-like inline code
        return []
    out: list[list[str]] = []
    current: list[str] | None = None
    for tok in tokens:
        if tok in {"|", "||", "&&", ";"}:
            current = None
        elif tok == "zaya-rl":
            current = []
            out.append(current)
        elif current is not None:
            current.append(tok)
    return [c for c in out if c]


def _all_commands() -> list[tuple[str, list[str]]]:
    return [(f"{_rel(page)}: zaya-rl {' '.join(args)}", args)
            for page in PAGES for line in _command_lines(page) for args in _zaya_commands(line)]


def _parse(args: list[str]) -> argparse.Namespace:
    from zaya_rl.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(args)
    except SystemExit as e:
        raise AssertionError(f"does not parse: {err.getvalue().strip()}") from e


def _subcommand_prefix(args: list[str]) -> tuple[str, ...]:
    """The longest leading run of ``args`` that is a subcommand path of the CLI."""
    from zaya_rl.cli import build_parser

    paths = set(_subcommand_paths(build_parser()))
    k = max((k for k in range(len(args) + 1) if tuple(args[:k]) in paths), default=0)
    return tuple(args[:k])


@pytest.mark.parametrize("where,args", _all_commands(), ids=[w for w, _ in _all_commands()])
def test_zaya_rl_commands_parse(where, args):
    path = _subcommand_prefix(args)
    assert path, f"{where}: {args[0]!r} is not a zaya-rl command"
    if len(path) == len(args):  # a mention of the command in prose, e.g. `zaya-rl resume`: it exists
        return
    ns = _parse(args)
    config = getattr(ns, "config", None)
    if config is None or not (REPO / config).is_file():
        return  # a placeholder (CONFIG) or a run folder: parsing is all that can be checked
    if ns.command == "train":
        from zaya_rl.curriculum.layers import load_layered

        load_layered([str(REPO / config), *[str(REPO / o) if o.endswith((".yaml", ".yml")) else o
                                             for o in ns.overrides]])
    elif ns.command == "config" and ns.config_command == "show":
        from zaya_rl.config import load_config

        load_config(REPO / config, ns.overrides)


def _subcommand_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if prefix else []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _subcommand_paths(sub, (*prefix, name))
    return out


def test_help_of_every_subcommand_runs():
    from zaya_rl.cli import build_parser

    paths = _subcommand_paths(build_parser())
    assert ("train",) in paths and ("envs", "check") in paths
    for path in paths:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
            build_parser().parse_args([*path, "--help"])
        assert e.value.code == 0 and "usage: zaya-rl" in out.getvalue(), path


# ------------------------------------------------------------------ generated reference, entry point
def test_configuration_reference_is_in_sync():
    from zaya_rl.config.commands import config_reference

    assert (REPO / "docs" / "configuration.md").read_text() == config_reference(), (
        "docs/configuration.md is stale: run `zaya-rl config docs --out docs/configuration.md`"
    )


def test_entry_point_group_is_the_registrys():
    from environments.registry import GROUP

    assert NOT_REFERENCES == {GROUP}


def test_readme_links_the_user_guide():
    assert "docs/README.md" in LINK.findall((REPO / "README.md").read_text()), (
        "README.md must link the user guide: [docs/README.md](docs/README.md)"
    )


def test_the_checks_catch_what_they_should(tmp_path):
    """The checkers themselves: a dead link, a missing path, a bad reference and a bad command are caught."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n[x](nope.md) [y](#title) [z](#nope)\n`configs/nope.yaml` `zaya_rl.cli.nope`\n")
    assert LINK.findall(page.read_text()) == ["nope.md", "#title", "#nope"]
    assert _anchors(page) == {"title"}
    assert _paths(page) == {"configs/nope.yaml"}
    assert _resolve("zaya_rl.cli.nope") and _resolve("zaya_rl.cli.build_parser") is None
    assert _resolve("zaya_rl.nope") == "nope is not defined in __init__.py"
    assert _resolve("zaya_rl.pipeline.actors.WorkerSet.generate") is None
    assert _zaya_commands("A=1 zaya-rl envs list | zaya-rl envs check x && echo ok") == [
        ["envs", "list"], ["envs", "check", "x"]]
    with pytest.raises(AssertionError, match="does not parse"):
        _parse(["rsa", "eval", "--env", "arithmetic"])
    assert _github_slug("Failed to merge the Job's runtime env") == "failed-to-merge-the-jobs-runtime-env"
