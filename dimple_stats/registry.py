"""One small registry for every named vocabulary: claims, datasets, attacks, executors, ...

A :class:`Registry` maps names to objects (or to lazy ``"module:attribute"`` targets, resolved
on first use, as lm-evaluation-harness names its task functions) and answers an unknown name
with a "did you mean". The protocol schema validates names against the registries at validation
time, so an entry registered at run time (a plugin, or a toy claim in a test) is accepted
everywhere without editing the schema.

Examples
--------
>>> shapes = Registry("shape")
>>> shapes.register("circle", 1)
1
>>> shapes["circle"], "circle" in shapes, shapes.names()
(1, True, ('circle',))
>>> shapes["circel"]
Traceback (most recent call last):
...
dimple_stats.errors.UnknownNameError: unknown shape 'circel' (did you mean 'circle'?); known: circle
>>> resolve("math:sqrt")(4.0)
2.0
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

from dimple_stats.errors import UnknownNameError
from dimple_stats.suggest import did_you_mean

__all__ = ["Registry", "resolve"]

T = TypeVar("T")


def resolve(target: str) -> Any:
    """The object a ``"package.module:attribute"`` target names (imports the module).

    >>> resolve("dimple_stats.suggest:closest").__name__
    'closest'
    """
    module, sep, attribute = target.partition(":")
    if not sep or not module or not attribute:
        raise ValueError(f"target {target!r} is not 'module:attribute'")
    obj: Any = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Parameters
    ----------
    kind : str
        What the entries are, for messages ("claim", "dataset", ...).
    error : type
        The exception raised for an unknown name (a subclass of
        :class:`~dimple_stats.errors.UnknownNameError`).
    """

    def __init__(self, kind: str, *, error: type[UnknownNameError] = UnknownNameError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: Any = None) -> Any:
        """Add ``obj`` under ``name`` (or, without ``obj``, return a decorator that does).

        A name registered twice is an error: two plugins claiming one name would otherwise
        silently replace each other.
        """
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> T:
        """Remove and return an entry (for plugins and tests that register temporarily)."""
        return self._entries.pop(name)

    @contextlib.contextmanager
    def registered(self, name: str, obj: T) -> Iterator[T]:
        """Register ``obj`` for the duration of a ``with`` block.

        >>> colours = Registry("colour")
        >>> with colours.registered("red", "#f00"):
        ...     "red" in colours
        True
        >>> "red" in colours
        False
        """
        self.register(name, obj)
        try:
            yield obj
        finally:
            self.unregister(name)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = ", ".join(self._entries)
            raise self.error(f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}"
                             f"; known: {known}") from None

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._entries.get(name, default)

    def check(self, name: str) -> str:
        """``name`` if registered, else the registry's error (a ``ValueError``, so a pydantic
        validator can return ``REGISTRY.check(v)``).

        >>> colours = Registry("colour"); _ = colours.register("red", "#f00")
        >>> colours.check("red")
        'red'
        >>> colours.check("blue")
        Traceback (most recent call last):
        ...
        dimple_stats.errors.UnknownNameError: unknown colour 'blue'; known: red
        """
        self[name]
        return name

    def load(self, name: str) -> Any:
        """The entry for ``name`` with a lazy ``"module:attribute"`` target imported.

        >>> funcs = Registry("function"); _ = funcs.register("sqrt", "math:sqrt")
        >>> funcs["sqrt"], funcs.load("sqrt")(9.0)
        ('math:sqrt', 3.0)
        """
        entry = self[name]
        return resolve(entry) if isinstance(entry, str) else entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def state(self) -> tuple[tuple[str, int], ...]:
        """What is registered now, as a hashable key: models built from the entries (the
        protocol's claim items, its dataset union) are cached per state and rebuilt when a
        plugin or a test registers or removes one.

        >>> r = Registry("thing"); before = r.state(); _ = r.register("a", 1)
        >>> before == r.state()
        False
        """
        return tuple((name, id(entry)) for name, entry in self._entries.items())

    def names(self) -> tuple[str, ...]:
        """Registered names in registration order."""
        return tuple(self._entries)

    def values(self) -> list[T]:
        return list(self._entries.values())

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
