"""Tables of choices: every config key that picks an implementation by name looks it up in one.

A :class:`Table` maps names to implementations (classes, functions, plain values). The same
table validates a config value (with one error that names the key and lists the valid names)
and dispatches on it, so a choice lives in one place: adding an attention block, an RoI
pooling or an interaction head is one file plus one table line (see docs/architecture.md).

    ROI_POOLS = Table("model.roi_pool", {"official": official_roi_pool, "align": align_roi_pool})
    pool = ROI_POOLS[cfg.roi_pool]          # ConfigError listing 'align', 'official' if unknown
    ROI_POOLS.check(cfg.roi_pool)           # validate without using it
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from hoi.config import ConfigError

T = TypeVar("T")


class Table(Mapping[str, T], Generic[T]):
    """Named implementations of one config choice.

    Args:
        key: the config key whose value names an entry (quoted in errors), e.g. ``model.roi_pool``.
        entries: the initial ``{name: implementation}``; more with :meth:`register`.
    """

    def __init__(self, key: str, entries: Mapping[str, T] | None = None) -> None:
        self.key = key
        self._entries: dict[str, T] = dict(entries or {})

    def __getitem__(self, name: str) -> T:
        self.check(name)
        return self._entries[name]

    def get(self, name: str, default: T | None = None) -> T | None:
        """The entry ``name``, or ``default`` when there is none (no error)."""
        return self._entries.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Table({self.key!r}, names={self.names})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def check(self, name: object) -> None:
        """Raise ConfigError unless ``name`` is an entry of the table."""
        if name not in self._entries:
            raise ConfigError(f"{self.key}: unknown value {name!r}; valid names: "
                              f"{', '.join(self.names)}")

    def register(self, name: str, impl: T | None = None) -> Callable[[T], T] | T:
        """Add ``impl`` under ``name`` (or use as a decorator: ``@TABLE.register("name")``).

        A name already in the table is refused: a silent replacement would change what an
        existing config means.
        """
        if name in self._entries:
            raise ValueError(f"{self.key}: {name!r} is already registered")

        def add(obj: T) -> T:
            self._entries[name] = obj
            return obj

        return add if impl is None else add(impl)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a toy entry clean up with this)."""
        self.check(name)
        del self._entries[name]
