"""PNG plots of a run's ``metrics.jsonl``, written at the end of a run (``<run_dir>/plots/``).

One file per panel: reward and accuracy per environment, lag, DPPO masked fraction, canary rate, throughput,
plus ``overview.png`` with all panels. Uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zaya_rl.logging.metrics import read_metrics

#: (file name, title, key prefixes or exact keys plotted in that panel)
PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("reward.png", "reward (per environment)", ("rollout/reward", "env/*/reward")),
    ("accuracy.png", "accuracy (per environment)", ("rollout/accuracy", "env/*/accuracy", "eval/accuracy")),
    ("difficulty.png", "difficulty level (adaptive)", ("env/*/difficulty",)),
    ("lag.png", "lag (optimizer steps)", ("pipeline/lag_mean", "pipeline/lag_max")),
    ("dppo_masked.png", "DPPO masked fraction", ("loss/dppo_masked_frac",)),
    ("canary.png", "canary flag rate", ("canary/flag_rate", "env/*/canary_rate")),
    ("throughput.png", "throughput", ("perf/tokens_per_s", "perf/samples_per_s")),
)


def _match(key: str, pattern: str) -> bool:
    if "*" not in pattern:
        return key == pattern
    head, tail = pattern.split("*", 1)
    return key.startswith(head) and key.endswith(tail)


def _series(records: list[dict[str, Any]], patterns: tuple[str, ...]) -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for rec in records:
        for k, v in rec.items():
            if isinstance(v, (int, float)) and any(_match(k, p) for p in patterns):
                xs, ys = out.setdefault(k, ([], []))
                xs.append(rec["step"])
                ys.append(v)
    return out


def write_plots(run_dir: str | Path) -> list[Path]:
    """Write the PNG panels for ``run_dir``; returns the files written (panels with no data are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written, panels = [], []
    for fname, title, patterns in PANELS:
        series = _series(records, patterns)
        if not series:
            continue
        panels.append((title, series))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        _draw(ax, title, series)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=100)
        plt.close(fig)
        written.append(out_dir / fname)
    if panels:
        cols = 2
        rows = (len(panels) + 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), squeeze=False)
        for ax, (title, series) in zip(axes.flat, panels, strict=False):
            _draw(ax, title, series)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out_dir / "overview.png", dpi=90)
        plt.close(fig)
        written.append(out_dir / "overview.png")
    return written


def _draw(ax: Any, title: str, series: dict[str, tuple[list, list]]) -> None:
    for key, (xs, ys) in sorted(series.items()):
        ax.plot(xs, ys, label=key, marker="o" if len(xs) < 4 else None, linewidth=1.2)
    ax.set_title(title)
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
    if len(series) <= 8:
        ax.legend(fontsize=7)
