"""One registry per pluggable kind: the list of valid names *and* the factory.

Every error that names a pluggable kind derives its list of valid names from
the registry, so a name can never be "valid" without an implementation.
Registering a name twice is an error (no silent override).
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, List, TypeVar

from blis.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> implementation for one pluggable kind (e.g. ``scheduler``)."""

    def __init__(self, kind: str, flag: str = ""):
        self.kind = kind
        self.flag = flag or kind
        self._items: Dict[str, T] = {}
        self._aliases: Dict[str, str] = {}

    def register(self, name: str, item: T, *, aliases=()) -> T:
        """Add ``name``; raises ValueError if it (or an alias) is already taken."""
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} registry: name must be a non-empty string, got {name!r}")
        for n in (name, *aliases):
            if n in self._items or n in self._aliases:
                raise ValueError(f"{self.kind} registry: {n!r} is already registered")
        self._items[name] = item
        for a in aliases:
            self._aliases[a] = name
        return item

    def decorator(self, name: str, **kw) -> Callable[[T], T]:
        def wrap(item: T) -> T:
            return self.register(name, item, **kw)
        return wrap

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plugins that are unloaded)."""
        self._items.pop(name)
        for a in [a for a, n in self._aliases.items() if n == name]:
            del self._aliases[a]

    def names(self) -> List[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """The implementation for ``name``; ConfigError listing the valid names otherwise."""
        key = self._aliases.get(name, name)
        if key not in self._items:
            raise ConfigError(f"{self.flag}: must be a registered {self.kind}, got {name!r}; "
                              f"valid: {', '.join(self.names())}")
        return self._items[key]
