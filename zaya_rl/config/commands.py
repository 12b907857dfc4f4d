"""``zaya-rl config show CONFIG [overrides]`` and ``zaya-rl config docs`` (the generated reference)."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from zaya_rl.config import dump_config, load_config
from zaya_rl.config.schema import RunConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show a validated config, or write the configuration reference")
    csub = p.add_subparsers(dest="config_command", required=True)
    show = csub.add_parser("show", help="validate CONFIG with overrides and print the full tree as YAML")
    show.add_argument("config")
    show.add_argument("overrides", nargs="*", help="key.sub=value")
    show.set_defaults(handler=lambda a: print(dump_config(load_config(a.config, a.overrides)), end=""))
    docs = csub.add_parser("docs", help="write the Markdown configuration reference generated from the schema")
    docs.add_argument("--out", default="docs/configuration.md")
    docs.set_defaults(handler=_write_docs)


def _write_docs(args: argparse.Namespace) -> int:
    Path(args.out).write_text(config_reference())
    print(f"wrote {args.out}")
    return 0


def _type_name(tp: object) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _sections(model: type[BaseModel], prefix: str) -> list[tuple[str, type[BaseModel]]]:
    out = [(prefix, model)]
    for name, field in model.model_fields.items():
        tp = field.annotation
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            out += _sections(tp, f"{prefix}.{name}" if prefix else name)
    return out


def config_reference() -> str:
    """Markdown tables of every config field: dotted key, type, default, description."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `zaya_rl/config/schema.py` by `zaya-rl config docs`; a test keeps it in sync.",
        "Override any key on the command line: `zaya-rl train CONFIG key.sub=value`.",
        "",
    ]
    for prefix, model in _sections(RunConfig, ""):
        lines += [f"## `{prefix or '(top level)'}`", "", "| key | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            tp = field.annotation
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                continue
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump(mode="json")
            if isinstance(default, list):
                default = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in default]
            key = f"{prefix}.{name}" if prefix else name
            desc = (field.description or "").replace("\n", " ").replace("|", "\\|")
            lines.append(f"| `{key}` | {_type_name(tp)} | `{default!r}` | {desc} |")
        lines.append("")
    return "\n".join(lines)
