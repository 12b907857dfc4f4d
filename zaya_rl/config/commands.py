"""``zaya-rl config show CONFIG [overrides]`` and ``zaya-rl config docs`` (the generated reference)."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from zaya_rl.config import Section, dump_config, load_config
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


def _model_in(tp: object) -> tuple[type[BaseModel] | None, str]:
    """The config model inside an annotation (``M``, ``list[M]``, ``M | None``) and its key suffix."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp, ""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0], "[]"
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return (models[0], "") if len(models) == 1 else (None, "")


def _sections(model: type[BaseModel], prefix: str) -> list[tuple[str, type[BaseModel]]]:
    out = [(prefix, model)]
    for name, field in model.model_fields.items():
        sub, suffix = _model_in(field.annotation)
        if sub is not None:
            out += _sections(sub, f"{prefix}.{name}{suffix}" if prefix else f"{name}{suffix}")
    return out


def _bounds(field: object) -> str:
    """The numeric bounds of a field (``>= 0``, ``(0, 1]``, ...) from its pydantic metadata."""
    marks = []
    for m in getattr(field, "metadata", []):
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(m, attr, None)
            if value is not None:
                marks.append(f"{sym} {value}")
    return ", ".join(marks)


def _default(field: object) -> str:
    """The default as a code span, or *required* for a field without one."""
    if field.is_required():
        return "*required*"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        default = default.model_dump(mode="json")
    if isinstance(default, list):
        default = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in default]
    return f"`{default!r}`"


def _row(prefix: str, name: str, field: object) -> str:
    key = f"{prefix}.{name}" if prefix else name
    desc = (field.description or "").replace("\n", " ").replace("|", "\\|")
    return f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {_bounds(field)} | {desc} |"


def config_reference() -> str:
    """Markdown: per section its docstring and a table of fields (dotted key, type, default, bounds, description)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `zaya_rl/config/schema.py` by `zaya-rl config docs`; a test keeps it in sync.",
        "Override any key on the command line: `zaya-rl train CONFIG key.sub=value`.",
        "",
    ]
    for prefix, model in _sections(RunConfig, ""):
        lines += [f"## `{prefix or '(top level)'}`", ""]
        if prefix and model.__doc__ and model.__doc__ != Section.__doc__:
            lines += [" ".join(model.__doc__.split()), ""]
        lines += ["| key | type | default | bounds | description |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            sub, suffix = _model_in(field.annotation)
            if sub is None or suffix:  # nested single sections get their own table
                lines.append(_row(prefix, name, field))
        lines.append("")
    return "\n".join(lines)
