"""The two-GPU results (``run_x2.sh``) as ``gpu_x2.json`` and ``gpu_x2.md`` (issue 15 items 2-3).

    python benchmarks/gpu/x2_report.py OUT_DIR WORK_DIR [WORK_DIR ...]

Reads from each ``WORK_DIR`` (later ones win on equal names): ``res/env.json``, ``res/steps.json``,
``res/pytest.xml`` (JUnit), ``res/ds_x2_*.json`` (``tests/trainer/ds_equivalence.py`` on 2 ranks),
``res/link.json`` (``bench_link.py``), ``res/weights_nccl*.json`` (``bench_weights.py --nccl``),
``res/util_e2e_*.jsonl`` (``gpu_sampler.py``) and the run folders ``e2e_*`` (samples/s over the RL steps,
``summarize.rl_throughput``). Goals (issue 15): NCCL weight transfer >= 50% of the GPU-to-GPU copy
bandwidth; async >= 2x sync samples/s. A figure that was not measured is ``null`` and says why.
"""

from __future__ import annotations

import datetime
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_sampler import summarize as utilisation  # noqa: E402
from summarize import rl_throughput  # noqa: E402

GOALS = {"nccl_over_p2p": 0.5, "async_over_sync": 2.0}


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {"error": f"{path.name}: {e}"}


def _pytest(path: Path) -> dict[str, Any]:
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    cases = suite.findall("testcase")
    bad = [f"{c.get('classname')}::{c.get('name')}" for c in cases if c.find("failure") is not None or c.find("error") is not None]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed_tests": bad, "time_s": float(suite.get("time", 0.0))}


def collect(works: list[Path]) -> dict[str, Any]:
    """Everything ``run_x2.sh`` measured, by topic (module docstring)."""
    r: dict[str, Any] = {"env": {}, "steps": {}, "pytest": None, "deepspeed_2ranks": {}, "link": None,
                         "weights_nccl": None, "e2e": {}, "utilisation": {}}
    for work in works:
        res = work / "res"
        if (res / "env.json").is_file():
            r["env"] = _json(res / "env.json")
        if (res / "steps.json").is_file():
            r["steps"].update(_json(res / "steps.json"))
        if (res / "pytest.xml").is_file():
            r["pytest"] = _pytest(res / "pytest.xml")
        for p in sorted(res.glob("ds_x2_*.json")):
            r["deepspeed_2ranks"][p.stem[len("ds_x2_"):]] = _json(p)
        if (res / "link.json").is_file():
            r["link"] = _json(res / "link.json")
        for p in sorted(res.glob("weights_nccl*.json")):
            r["weights_nccl"] = _json(p)
        for p in sorted(res.glob("util_*.jsonl")):
            r["utilisation"][p.stem[len("util_"):]] = utilisation(p)
        for p in sorted(work.glob("e2e_*")):
            if p.is_dir():
                r["e2e"][p.name] = rl_throughput(p)
    return r


def headline(r: dict[str, Any]) -> dict[str, Any]:
    """The figures issue 15 asks for, with their goals."""
    gpus = r["env"].get("gpus") or [f"no GPU (cuda: {r['env'].get('cuda')}, python {r['env'].get('python')})"]
    h: dict[str, Any] = {"device": gpus, "date": datetime.date.today().isoformat()}
    w, link = r["weights_nccl"] or {}, r["link"] or {}
    nccl = w.get("nccl") if isinstance(w.get("nccl"), dict) else {}
    h["nccl_transfer_s"] = nccl.get("best_s")
    h["nccl_transfer_gbps"] = nccl.get("gbps")
    h["model_bytes"] = w.get("model_bytes")
    h["p2p_copy_gbps"] = link.get("p2p_copy_gbps")
    h["nccl_broadcast_gbps"] = link.get("nccl_broadcast_gbps")
    h["nccl_over_p2p"] = (h["nccl_transfer_gbps"] / h["p2p_copy_gbps"]
                          if h["nccl_transfer_gbps"] and h["p2p_copy_gbps"] else None)
    a = r["e2e"].get("e2e_async", {}).get("samples_per_s")
    s = r["e2e"].get("e2e_sync", {}).get("samples_per_s")
    h["async_samples_per_s"], h["sync_samples_per_s"] = a, s
    h["async_over_sync"] = a / s if a and s else None
    for mode in ("async", "sync"):
        by_role = r["utilisation"].get(f"e2e_{mode}", {}).get("by_role", {})
        for role in ("rollout", "trainer"):
            h[f"{mode}_{role}_gpu_util_pct"] = by_role.get(role, {}).get("mean_util_pct")
        h[f"{mode}_trainer_idle_frac"] = r["e2e"].get(f"e2e_{mode}", {}).get("trainer_idle_frac")
    h["goals_met"] = {k: (h[k] >= g if h[k] is not None else None) for k, g in GOALS.items()}
    h["pytest"] = {k: (r["pytest"] or {}).get(k) for k in ("passed", "failures", "errors", "skipped")}
    h["deepspeed_2ranks_ok"] = {k: v.get("ok") for k, v in r["deepspeed_2ranks"].items()}
    return h


def _fmt(v: Any) -> str:
    if v is None:
        return "not measured"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _met(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "NOT met")


def markdown(h: dict[str, Any], r: dict[str, Any]) -> str:
    rows = [
        ("NCCL weight transfer (trainer cuda:1 → vLLM cuda:0), s", h["nccl_transfer_s"], ""),
        ("NCCL weight transfer, GB/s (model bytes / whole update)", h["nccl_transfer_gbps"], ""),
        ("GPU-to-GPU copy, GB/s (same run)", h["p2p_copy_gbps"], ""),
        ("raw NCCL broadcast, 256 MiB, GB/s (same run)", h["nccl_broadcast_gbps"], ""),
        ("transfer / copy bandwidth", h["nccl_over_p2p"], f"≥ 0.5: {_met(h['goals_met']['nccl_over_p2p'])}"),
        ("async samples/s (disaggregated)", h["async_samples_per_s"], ""),
        ("sync samples/s (disaggregated)", h["sync_samples_per_s"], ""),
        ("async / sync", h["async_over_sync"], f"≥ 2: {_met(h['goals_met']['async_over_sync'])}"),
    ]
    for mode in ("async", "sync"):
        rows += [(f"{mode}: rollout GPU utilisation, %", h[f"{mode}_rollout_gpu_util_pct"], ""),
                 (f"{mode}: trainer GPU utilisation, %", h[f"{mode}_trainer_gpu_util_pct"], ""),
                 (f"{mode}: trainer idle fraction", h[f"{mode}_trainer_idle_frac"], "")]
    p = h["pytest"]
    rows.append(("pytest tests/gpu (passed / failed / errors / skipped)",
                 f"{p['passed']} / {p['failures']} / {p['errors']} / {p['skipped']}" if r["pytest"] else None, "all pass"))
    for case, res in r["deepspeed_2ranks"].items():
        refs = res.get("tolerance", {})
        errs = ", ".join(f"vs {k}: update {res[f'vs_{k}']['update_rel_err']:.2g}, loss {res[f'vs_{k}']['loss_rel_err']:.2g}"
                         for k in refs if f"vs_{k}" in res)
        rows.append((f"DeepSpeed 2 ranks {case} ({errs or res.get('error', 'no result')})", res.get("ok"), "ok"))
    lines = [f"# Two GPUs of one host ({', '.join(h['device'])}, {h['date']})", "",
             "Produced by `benchmarks/gpu/run_x2.sh` (raw: `gpu_x2.json`).", "",
             "| measurement | value | goal |", "|---|---|---|"]
    lines += [f"| {name} | {_fmt(v)} | {goal} |" for name, v, goal in rows]
    lines += ["", "Steps (exit code, seconds): " + ", ".join(f"{k} {v}" for k, v in r["steps"].items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    out, works = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:] if Path(p).is_dir()]
    r = collect(works)
    h = headline(r)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_x2.json").write_text(json.dumps({"headline": h, **r}, indent=1, default=str))
    md = markdown(h, r)
    (out / "gpu_x2.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
