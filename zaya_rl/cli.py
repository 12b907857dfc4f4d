"""``zaya-rl``: the command line.

Each command group lives next to the code it drives and contributes its sub-parser through an
``add_parser(subparsers)`` function; those modules import torch/ray only inside their handlers, so
``zaya-rl --help`` and config errors return at once (STYLE.md rule 7).

    zaya-rl train configs/tiny_cpu.yaml run_dir=runs/demo pipeline.max_lag=2
    zaya-rl resume runs/demo
    zaya-rl eval runs/demo
    zaya-rl model init --preset tiny-zaya --out models/tiny-zaya
    zaya-rl envs list | sample NAME --difficulty D -n K | check NAME
    zaya-rl config show configs/tiny_cpu.yaml | docs
    zaya-rl rsa eval --env math --model tiny-zaya -n 4 --N 4 --C 2 --tau 16 --budget 32 --out runs/rsa
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that contribute a command group, in ``--help`` order.
_COMMAND_MODULES = (
    "zaya_rl.pipeline.commands",
    "zaya_rl.models.commands",
    "environments.commands",
    "zaya_rl.config.commands",
    "zaya_rl.rsa.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zaya-rl", description="Asynchronous RL post-training for MoE LLMs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from zaya_rl.config import ConfigError
    from zaya_rl.pipeline.stopping import EXIT_INTERRUPTED, RunStopped

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as e:
        print(f"zaya-rl: {e}", file=sys.stderr)
        return 2
    except RunStopped as e:  # a run that stopped early wrote its summary; the message says where
        print(f"zaya-rl: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside a run's event loop (start-up, shutdown, other commands)
        print("zaya-rl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
