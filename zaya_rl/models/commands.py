"""``zaya-rl model init --preset tiny-zaya --out DIR [--seed N] [--dtype float32]``: write a preset model folder.

The folder holds ``config.json``, ``model.safetensors``, the tokenizer and its chat template; it loads with
``load_policy(DIR)`` / ``model.path=DIR`` and with vLLM. Torch and transformers are imported inside the
handler only, so ``zaya-rl --help`` stays instant (STYLE.md rule 7).
"""

from __future__ import annotations

import argparse

#: Kept in sync with ``zaya_rl.models.policy.PRESETS`` by tests/models/test_commands.py (no torch import here).
PRESET_NAMES = ("tiny-zaya", "tiny-qwen3moe")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="build policy models locally")
    msub = p.add_subparsers(dest="model_command", required=True)
    init = msub.add_parser(
        "init", help="randomly initialise a preset and write model + tokenizer to a folder"
    )
    init.add_argument("--preset", required=True, choices=PRESET_NAMES)
    init.add_argument("--out", required=True, help="output folder (created)")
    init.add_argument("--seed", type=int, default=0, help="initialisation seed")
    init.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="parameter dtype")
    init.set_defaults(handler=_init)


def _init(args: argparse.Namespace) -> int:
    from zaya_rl.models.policy import load_policy, save_policy

    model, tokenizer = load_policy(args.preset, args.dtype, seed=args.seed)
    out = save_policy(model, tokenizer, args.out)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {args.preset} ({type(model).__name__}, {n_params:,} parameters, vocab {len(tokenizer)}) to {out}"
    )
    return 0
