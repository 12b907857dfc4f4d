"""What a run prints and logs: held-out accuracy with the error count, ``train.log`` one record per line,
the last lines of ``zaya-rl train`` naming where the results are.

Run ``python -m pytest tests/pipeline/test_run_output.py -q``.
"""

from __future__ import annotations

import logging

from zaya_rl.pipeline.commands import _report
from zaya_rl.pipeline.session import _log_trainer, _print_eval
from zaya_rl.pipeline.setup import setup_logging


def test_held_out_accuracy_prints_the_error_count_as_a_count(capsys):
    _print_eval("before RL", {"arithmetic": 0.1015625, "arithmetic/d0": 0.1015625, "accuracy": 0.1015625,
                              "errors": 8.0})
    _print_eval("after RL", {"rg/jugs": 0.5, "rg/jugs/d0": 0.75, "rg/jugs/d1": 0.25, "arithmetic": 1.0,
                             "arithmetic/d3": 1.0, "accuracy": 0.75, "errors": 0.0})
    assert capsys.readouterr().out == (
        "[zaya-rl] held-out accuracy before RL: 0.102 (arithmetic=0.102 (d0); verifier errors 8)\n"
        "[zaya-rl] held-out accuracy after RL: 0.750 (rg/jugs=0.500 (d0 0.750, d1 0.250), arithmetic=1.000 (d3); "
        "verifier errors 0)\n")


def test_train_log_holds_one_record_per_line(tmp_path):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        for h in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(h)
        setup_logging(tmp_path)
        _log_trainer({"parameters": 669542, "device": "cpu",
                      "partition": "group  optimizer\nmuon/matrices  muon\nadamw/vectors  adamw"})
    finally:
        for h in root.handlers:
            if h not in handlers:
                h.close()
                root.removeHandler(h)
        root.setLevel(level)
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert [line.split(" zaya_rl: ", 1)[1] for line in lines] == [
        "trainer: 669,542 parameters on cpu", "trainer partition: group  optimizer",
        "trainer partition: muon/matrices  muon", "trainer partition: adamw/vectors  adamw"]
    assert all(line[:4].isdigit() and "\\n" not in line for line in lines)  # each a timestamped record


def test_the_end_of_a_run_says_where_the_results_are(capsys):
    _report({"eval_accuracy_before": 0.1, "eval_accuracy_after": 0.2, "optimizer_steps": 20, "wall_seconds": 61.0,
             "samples_generated": 10, "samples_trained": 8, "samples_dropped": 2, "run_dir": "runs/demo",
             "final_model": "runs/demo/checkpoints/step_000020/model",
             "warnings": [{"step": 7, "kind": "reward_collapse", "message": "reward collapse: ..."}]})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[zaya-rl] done: 20 steps in 61 s; held-out accuracy 0.100 -> 0.200 (2.00x)")
    assert lines[1] == "[zaya-rl] warning (step 7): reward collapse: ..."
    assert lines[2] == ("[zaya-rl] results in runs/demo: summary.json, metrics.jsonl (every step), train.log, plots/; "
                        "final weights runs/demo/checkpoints/step_000020/model; `zaya-rl eval runs/demo` "
                        "re-evaluates them")
