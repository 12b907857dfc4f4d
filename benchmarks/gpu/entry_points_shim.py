"""Make this checkout's entry points visible without installing it (the GPU machine has no zaya_rl).

    python benchmarks/gpu/entry_points_shim.py DIR     # then: export PYTHONPATH=...:DIR

Writes ``DIR/zaya_rl-0.0.0.dist-info/{METADATA,entry_points.txt}`` from pyproject.toml's
``[project.entry-points]``, so ``importlib.metadata.entry_points(group="zaya_rl.environments")`` finds the
built-in environments in every process that has DIR on its path (Ray actors and verifier workers inherit
PYTHONPATH). Nothing is copied: the code is imported from the checkout as usual.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def main(target: str) -> None:
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    info = Path(target) / "zaya_rl-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zaya-rl\nVersion: 0.0.0\n")
    lines = []
    for group, entries in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in entries.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    print(f"entry points of {sum(len(e) for e in project.get('entry-points', {}).values())} names -> {info}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/zaya_ep")
