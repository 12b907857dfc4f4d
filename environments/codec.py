"""Type-preserving JSON encoding of plain Python data, for problem metadata that crosses processes.

Problems travel between the trainer and the worker processes as JSON (never pickle: a worker that ran
model output, e.g. through ``sympy.sympify``, must not be able to send back an object that executes code
when loaded). Plain JSON turns tuples into lists and int dict keys into strings, which silently breaks
verifiers that compare against them (RLVE ``BucketSorting``, ``Cinema`` and ``QuadMagicItems`` fail their
own reference answers after a plain JSON round trip). ``encode`` tags those types; ``decode`` restores them.

Tags are one-key dicts: ``{"__tuple__": [...]}``, ``{"__set__": [...]}``, ``{"__frozenset__": [...]}``,
``{"__dict__": [[key, value], ...]}`` (dicts with a non-string key, or a key that looks like a tag), and
``{"__fraction__": "p/q"}``. NumPy scalars become Python numbers (their dtype is dropped).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

_TAGS = ("__tuple__", "__set__", "__frozenset__", "__dict__", "__fraction__")


def encode(obj: Any) -> Any:
    """Return a JSON-serialisable structure that ``decode`` turns back into ``obj``."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v) for v in obj]}
    if isinstance(obj, frozenset):
        return {"__frozenset__": [encode(v) for v in obj]}
    if isinstance(obj, set):
        return {"__set__": [encode(v) for v in obj]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not (len(obj) == 1 and next(iter(obj)) in _TAGS):
            return {k: encode(v) for k, v in obj.items()}
        return {"__dict__": [[encode(k), encode(v)] for k, v in obj.items()]}
    if isinstance(obj, Fraction):
        return {"__fraction__": f"{obj.numerator}/{obj.denominator}"}
    if hasattr(obj, "item") and type(obj).__module__ == "numpy":  # numpy scalar
        return encode(obj.item())
    raise TypeError(
        f"cannot encode {type(obj).__module__}.{type(obj).__qualname__} for transport: {obj!r:.80}"
    )


_DECODERS = {
    "__tuple__": lambda v: tuple(decode(x) for x in v),
    "__set__": lambda v: {decode(x) for x in v},
    "__frozenset__": lambda v: frozenset(decode(x) for x in v),
    "__dict__": lambda v: {decode(k): decode(x) for k, x in v},
    "__fraction__": Fraction,
}


def decode(obj: Any) -> Any:
    """Inverse of ``encode``."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1:
            tag, value = next(iter(obj.items()))
            if tag in _DECODERS:
                return _DECODERS[tag](value)
        return {k: decode(v) for k, v in obj.items()}
    return obj
