"""The one in-process cache class: bounded (LRU), aged, tagged, thread-safe.

Both per-process caches are built on it: unwrapped key material
(``keys_app.cache.KeyCache``) and authenticated API-key principals
(``hkms_core.access.cache.PrincipalCache``).  An entry is served only while it
is younger than ``max_age`` seconds *and* was stored under the ``tag`` the
caller asks with (a key generation, the access generation): anything else is
dropped on sight.  Past ``max_entries`` the least recently used entry goes.
An entry may name an ``owner`` so that everything of one owner is dropped at
once (a key disabled, revoked or destroyed).

Never shared between processes, never pickled; :func:`repr` shows sizes, never
values (some are ``SecretBytes``).  ``observer`` (a class attribute, set once at
start-up by ``hkms_site.observability``) is told of every ``get``: True for a hit.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Clock = Callable[[], float]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    #: Told of every ``get`` (True: a hit); set per subclass at start-up by ``hkms_site.observability``.
    observer: Callable[[bool], None] | None = None

    def __init__(self, max_entries: int, max_age: float, clock: Clock = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        #: name -> (stored_at, tag, owner, value)
        self._entries: OrderedDict[K, tuple[float, object, object, V]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """False when sized to hold nothing: ``put`` then stores nothing."""
        return self.max_entries > 0

    def now(self) -> float:
        return self._clock()

    def lookup(self, name: K, tag: object = None) -> V | None:
        """The value stored under ``name``, unless expired or stored with another ``tag``; observed."""
        value = self._lookup(name, tag)
        if self.observer is not None:
            self.observer(value is not None)
        return value

    def _lookup(self, name: K, tag: object) -> V | None:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            stored_at, stored_tag, _owner, value = entry
            if self._clock() - stored_at > self.max_age or stored_tag != tag:
                del self._entries[name]
                return None
            self._entries.move_to_end(name)
            return value

    def store(
        self, name: K, value: V, *, tag: object = None, owner: object = None, stored_at: float | None = None
    ) -> None:
        """Keep ``value`` (its age counts from ``stored_at``, default now), evicting the least recently used."""
        if not self.enabled:
            return
        with self._lock:
            self._entries[name] = (self._clock() if stored_at is None else stored_at, tag, owner, value)
            self._entries.move_to_end(name)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop(self, name: K) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def drop_owner(self, owner: object) -> None:
        """Forget every entry stored with ``owner``."""
        with self._lock:
            for name in [n for n, (_t, _g, o, _v) in self._entries.items() if o == owner]:
                del self._entries[name]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} entries={len(self._entries)} max={self.max_entries}>"
