"""Named plug-ins: devices, networks, codecs, solvers, zoo models, compression methods,
runtimes and simulator policies all sit in one kind of :class:`Registry`.

Each kind keeps one registry as a public constant of the module that defines the kind
(``DEVICES``, ``CODECS``, ``SOLVERS`` …), filled by ``register`` when the modules holding
the built-in items are imported (the package's ``__init__`` imports them). Every kind is
reached the same way::

    DEVICES.register(profile)          # under profile.name; a second "rpi4" is a bug
    DEVICES.get("rpi4")                # or the user error listing the choices
    DEVICES.list()                     # every item, sorted by name
    "rpi4" in DEVICES; DEVICES.names()
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Generic, TypeVar

from partitioner.errors import EdgecutError, unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Items of one ``kind`` by name; a second item under a name is a programming error."""

    def __init__(self, kind: str, *, error: type[EdgecutError] = EdgecutError) -> None:
        self.kind = kind
        self._error = error
        self._items: dict[str, T] = {}

    def register(self, item: T, name: str | None = None) -> T:
        """Add ``item`` under ``name`` (default: ``item.name``) and return it."""
        key = name if name is not None else getattr(item, "name", None)
        if not isinstance(key, str) or not key:
            raise ValueError(f"{self.kind} {item!r} has no name to register under")
        if key in self._items:
            raise ValueError(f"{self.kind} {key!r} registered twice")
        self._items[key] = item
        return item

    def get(self, name: str) -> T:
        """The item called ``name``, or the user error naming the choices."""
        if name not in self:
            raise unknown_name(self.kind, str(name), self.names(), self._error)
        return self._items[name]

    def list(self) -> builtins.list[T]:
        """Every item, sorted by name."""
        return [self._items[name] for name in self.names()]

    def names(self) -> builtins.list[str]:  # `list` is a method here
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._items
        except TypeError:  # an unhashable name, such as a list from a config file
            return False

    def __iter__(self) -> Iterator[str]:
        """Names in registration order (``names()`` and ``list()`` sort)."""
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
