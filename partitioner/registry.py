"""Named plug-ins: devices, codecs, solvers, zoo models, compression methods, runtimes.

Each kind keeps one :class:`Registry`, filled at import time by ``add``. ``lookup`` is
the user-facing access: a missing name raises an :class:`~partitioner.errors.EdgecutError`
that lists what exists and the closest match. Reading it as a mapping (``in``, ``[]``,
iteration in registration order) is for code that checks names itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from partitioner.errors import EdgecutError, unknown_name

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Items of one ``kind`` by name; a second item under a name is a programming error.

    ``load`` imports the modules that register the built-in items, for kinds whose
    modules are heavy to import: it runs the first time a name is missing or the
    whole list is asked for (``sorted_names``, ``sorted_items``), never on a hit.
    """

    def __init__(
        self,
        kind: str,
        *,
        error: type[EdgecutError] = EdgecutError,
        load: Callable[[], None] | None = None,
    ) -> None:
        self.kind = kind
        self._error = error
        self._load = load
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = item
        return item

    def lookup(self, name: str) -> T:
        """The item called ``name``, or the user error naming the choices."""
        if not self._has(name):
            self._load_builtins()
            if not self._has(name):
                raise unknown_name(self.kind, str(name), self.sorted_names(), self._error)
        return self._items[name]

    def _has(self, name: str) -> bool:
        try:
            return name in self._items
        except TypeError:  # an unhashable name, such as a list from a config file
            return False

    def sorted_names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._items)

    def sorted_items(self) -> list[T]:
        return [self._items[name] for name in self.sorted_names()]

    def _load_builtins(self) -> None:
        load, self._load = self._load, None  # once, even if a loaded module looks names up
        if load is not None:
            try:
                load()
            except BaseException:
                self._load = load  # not loaded: try again next time
                raise

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
