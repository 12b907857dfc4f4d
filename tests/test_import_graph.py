"""No import circles (STYLE.md §6 and rule 7): the packages' import graph, read with ``ast``, has no cycle,
and importing the config tree pulls in neither the pipeline nor torch/ray.

Every ``import`` counts, also one inside a function or under ``TYPE_CHECKING``: a lazy import hides a
circle from Python, not from a reader. Run ``python -m pytest tests/test_import_graph.py -q``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("zaya_rl", "environments", "rewards")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``PACKAGES`` under ``root``."""
    out = {}
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported_modules(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` (module ``name``) imports anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_files(root)
    return {name: imported_modules(path, name, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_packages_have_no_import_circle():
    graph = import_graph(REPO)
    assert "zaya_rl.config.schema" in graph and graph["zaya_rl.config.schema"]  # the graph was really read
    found = circles(graph)
    assert not found, "import circles (each: modules that import each other in a loop):\n" + "\n".join(
        " -> ".join(c) for c in found)


def test_importing_the_config_imports_no_pipeline_torch_or_ray():
    code = ("import sys, json; import zaya_rl.config, zaya_rl.config.commands; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'ray', 'vllm', 'environments') or m.startswith(('zaya_rl.pipeline', 'zaya_rl.curriculum', "
            "'zaya_rl.trainer', 'zaya_rl.models')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                         check=True)
    assert json.loads(out.stdout) == []


def _project_imports(path: Path) -> list[tuple[int, str, str]]:
    """``(line, module, name)`` of every ``from <PACKAGES...> import name`` in ``path``, lazy ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in PACKAGES:
            out += [(node.lineno, node.module, alias.name) for alias in node.names]
    return out


def test_every_project_name_imported_by_scripts_and_tests_exists():
    """Scripts import the package lazily, inside functions, so a moved function breaks them only at run time
    (``benchmarks/trl_vs_zaya.py`` imported ``checkpoint_root`` from the old ``pipeline/run.py`` and failed
    after a 20-minute comparison). Every ``from zaya_rl... import name`` in benchmarks/, tools/, tests/ and
    the packages themselves must resolve now."""
    import importlib

    files = [p for d in ("benchmarks", "tools", "tests", *PACKAGES) for p in (REPO / d).rglob("*.py")]
    missing = []
    for path in files:
        for line, module, name in _project_imports(path):
            try:
                mod = importlib.import_module(module)
            except ImportError as e:  # an optional dependency (vllm, deepspeed, gguf) missing here is fine
                if module.split(".")[0] in PACKAGES and f"'{module}'" in str(e):
                    missing.append(f"{path.relative_to(REPO)}:{line}: no module {module}")
                continue
            if name != "*" and not hasattr(mod, name):
                try:
                    importlib.import_module(f"{module}.{name}")
                except ImportError:
                    missing.append(f"{path.relative_to(REPO)}:{line}: {module} has no {name}")
    assert not missing, "\n".join(missing)


def _top_level_names(path: Path) -> set[str]:
    """Names a script module defines at its top level (functions, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_every_name_imported_from_a_sibling_script_exists():
    """Benchmark scripts import each other by file name (``from rollout_engine import ...``, with their folder
    or ``benchmarks/`` on the path). ``benchmarks/gpu/zaya_vllm.py`` imported a ``bench_generate`` that
    ``benchmarks/rollout_engine.py`` never had, and the GPU run lost its ``generate`` baseline to it."""
    bench = REPO / "benchmarks"
    missing = []
    for path in bench.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            sibling = next((d / f"{node.module}.py" for d in (path.parent, bench) if (d / f"{node.module}.py").exists()),
                           None)
            if sibling is None:
                continue
            defined = _top_level_names(sibling)
            missing += [f"{path.relative_to(REPO)}:{node.lineno}: {sibling.relative_to(REPO)} has no {a.name}"
                        for a in node.names if a.name != "*" and a.name not in defined]
    assert not missing, "\n".join(missing)
