"""Environment registry over the ``zaya_rl.environments`` entry-point group.

Any installed distribution that declares an entry point in this group is found with no change to this
repository. An entry point names either

* one ``Environment`` subclass; the entry-point name must equal the class's ``name``, e.g.
  ``arithmetic = "environments.builtin.tiny:Arithmetic"``; or
* a *provider*: a callable returning a list of ``Environment`` subclasses. Providers serve whole
  families under a namespace, e.g. ``rlve = "environments.adapters.rlve:provide"`` gives ``rlve/Sorting``
  and 399 more. A provider whose backing package is missing raises ``EnvironmentUnavailable``; its names
  are then absent from the listing, and the reason is logged once and returned by ``registry_problems``.
  A provider may carry an ``excluded`` attribute, a callable returning ``{name: why}`` for members it does
  not offer (too slow to generate, broken upstream): those appear in ``registry_problems`` too, and an
  attempt to use one says why.

Lookups load as little as possible: ``get_spec("arithmetic")`` loads only the entry point named
``arithmetic``; ``get_spec("rlve/Sorting")`` loads the entry point named by the namespace (``rlve``) first;
only an unknown name loads every entry point (to suggest close matches). An entry point that fails to
load is reported by name with its error, and the others keep working.

Specs describe an environment from its class attributes, so listing never instantiates anything (and
never imports what an adapter imports lazily in ``__init__``).
"""

from __future__ import annotations

import difflib
import logging
import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from environments.base import Environment

GROUP = "zaya_rl.environments"
#: Separator between a provider's namespace and an environment name (``rlve/Sorting``).
NAMESPACE_SEP = "/"

log = logging.getLogger(__name__)


class EnvironmentUnavailable(RuntimeError):
    """Raised by a provider whose backing package is not installed; the message says how to install it."""


class EnvironmentNotFound(KeyError):
    """No registered environment has this name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class EnvSpec:
    """What the registry knows about one environment without instantiating it.

    Attributes:
        name: registry name.
        category: coarse family ("tiny", "puzzle", "rlve", "rg", "math", ...).
        min_difficulty: lowest level.
        max_difficulty: highest level, or None for an unbounded ladder.
        source: the package the environment comes from: the class's ``source`` when it sets one (adapters
            name the package they wrap), else the distribution that declares the entry point.
        note: the class's ``note`` (e.g. levels it does not offer and why).
        entry_point: ``name = value`` of the entry point that registered it.
        cls: the Environment subclass; ``create`` instantiates it.
    """

    name: str
    category: str
    min_difficulty: int
    max_difficulty: int | None
    source: str
    entry_point: str
    cls: type[Environment]
    note: str = ""

    def create(self, **kwargs: Any) -> Environment:
        """Instantiate the environment; a bad keyword names the environment and the keyword."""
        try:
            return self.cls(**kwargs)
        except TypeError as e:
            raise TypeError(f"environment {self.name!r}: bad constructor arguments {kwargs!r}: {e}") from e

    @property
    def difficulty_range(self) -> str:
        return f"{self.min_difficulty}..{'inf' if self.max_difficulty is None else self.max_difficulty}"


class _Registry:
    """Process-wide cache of loaded entry points; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.specs: dict[str, EnvSpec] = {}
        self.problems: dict[str, str] = {}  # entry-point name -> why it gave no environments
        self._loaded: set[str] = set()

    def entry_points(self) -> list[EntryPoint]:
        seen: dict[tuple[str, str], EntryPoint] = {}
        for ep in entry_points(group=GROUP):  # the same dist can be visible twice (egg-info + dist-info)
            seen.setdefault((ep.name, ep.value), ep)
        return list(seen.values())

    def load(self, ep: EntryPoint) -> None:
        with self._lock:
            key = f"{ep.name} = {ep.value}"
            if key in self._loaded:
                return
            self._loaded.add(key)
            try:
                classes, excluded = _classes_of(ep), _excluded_by(ep)
            except EnvironmentUnavailable as e:
                self._problem(ep.name, f"unavailable: {e}", logging.INFO)
                return
            except Exception as e:  # a broken plugin must not break the others
                self._problem(ep.name, f"failed to load entry point '{key}': {type(e).__name__}: {e}")
                return
            dist = ep.dist.name if ep.dist is not None else "unknown"
            for cls in classes:
                self._add(cls, key, dist)
            for name, why in excluded.items():
                self._problem(name, f"not offered: {why}", logging.DEBUG)

    def _add(self, cls: type[Environment], key: str, dist: str) -> None:
        if cls.name in self.specs:
            self._problem(
                cls.name, f"duplicate name from '{key}' ignored (kept {self.specs[cls.name].entry_point})"
            )
            return
        self.specs[cls.name] = EnvSpec(
            name=cls.name,
            category=cls.category,
            min_difficulty=cls.min_difficulty,
            max_difficulty=cls.max_difficulty,
            source=cls.source if cls.source != Environment.source else dist,
            entry_point=key,
            cls=cls,
            note=cls.note,
        )

    def _problem(self, ep_name: str, message: str, level: int = logging.WARNING) -> None:
        self.problems[ep_name] = message
        log.log(level, "zaya_rl.environments entry point %r: %s", ep_name, message)

    def load_matching(self, names: set[str]) -> None:
        for ep in self.entry_points():
            if ep.name in names:
                self.load(ep)

    def load_all(self) -> None:
        for ep in self.entry_points():
            self.load(ep)


def _classes_of(ep: EntryPoint) -> list[type[Environment]]:
    """Load one entry point and return the Environment subclasses it provides."""
    obj = ep.load()
    if isinstance(obj, type) and issubclass(obj, Environment):
        if getattr(obj, "name", None) != ep.name:
            raise ValueError(
                f"class {obj.__qualname__} has name {getattr(obj, 'name', None)!r}, expected {ep.name!r}"
            )
        return [obj]
    if not callable(obj):
        raise TypeError(f"{ep.value} is neither an Environment subclass nor a provider callable")
    classes = list(obj())
    bad = [c for c in classes if not (isinstance(c, type) and issubclass(c, Environment))]
    if bad:
        raise TypeError(f"provider returned non-Environment objects, e.g. {bad[0]!r}")
    return classes


def _excluded_by(ep: EntryPoint) -> dict[str, str]:
    """A provider's ``excluded()`` (members it does not offer, with the reason); {} for anything else."""
    excluded = getattr(ep.load(), "excluded", None)
    return dict(excluded()) if callable(excluded) else {}


_REGISTRY = _Registry()


def get_spec(name: str) -> EnvSpec:
    """The spec of a registered environment (loads only the entry points needed to find it)."""
    reg = _REGISTRY
    if name not in reg.specs:
        reg.load_matching({name, name.split(NAMESPACE_SEP, 1)[0]})
    if name not in reg.specs:
        reg.load_all()
    if name in reg.specs:
        return reg.specs[name]
    raise EnvironmentNotFound(_not_found_message(name))


def _not_found_message(name: str) -> str:
    if name in _REGISTRY.problems:  # a provider's member it does not offer
        return f"environment {name!r} is {_REGISTRY.problems[name]}"
    msg = f"unknown environment {name!r}"
    namespace = name.split(NAMESPACE_SEP, 1)[0]
    if NAMESPACE_SEP in name and namespace in _REGISTRY.problems:
        msg += f"; entry point {namespace!r} gave no environments: {_REGISTRY.problems[namespace]}"
    close = difflib.get_close_matches(name, list(_REGISTRY.specs), n=5, cutoff=0.6)
    if close:
        msg += f"; did you mean {', '.join(close)}?"
    return msg + " (list them with `zaya-rl envs list`)"


def get_environment(name: str, **kwargs: Any) -> Environment:
    """Instantiate the registered environment ``name`` with constructor ``kwargs``."""
    return get_spec(name).create(**kwargs)


def list_environments(category: str | None = None) -> list[EnvSpec]:
    """Every registered environment (loads all entry points), sorted by name, optionally of one category."""
    _REGISTRY.load_all()
    specs = sorted(_REGISTRY.specs.values(), key=lambda s: s.name)
    return [s for s in specs if category is None or s.category == category]


def registry_problems() -> dict[str, str]:
    """Entry points that gave no environments (unavailable package, import error), with the reason."""
    _REGISTRY.load_all()
    return dict(_REGISTRY.problems)


def clear_registry_cache() -> None:
    """Forget loaded entry points (tests that install a plugin at run time call this)."""
    global _REGISTRY
    _REGISTRY = _Registry()
