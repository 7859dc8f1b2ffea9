"""A bounded, per-process cache of unwrapped key material.

Entries expire after ``max_age`` seconds and the least recently used entry is
evicted past ``max_entries``.  Entries are tagged with the id of the key they
belong to so that disabling, revoking or destroying a key drops them at once
in this process; other processes drop them within ``max_age``, and every use
re-reads the key's state from the database anyway.  Never shared between
processes, never pickled, never logged (values are ``SecretBytes``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from keys_app.crypto import SecretBytes

Clock = Callable[[], float]


class KeyCache:
    #: Told of every ``get`` (True: a hit); set once at start-up by ``hkms_site.observability`` (metrics).
    observer: Callable[[bool], None] | None = None

    def __init__(self, max_entries: int, max_age: float, clock: Clock = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[float, str, SecretBytes, object]] = OrderedDict()

    def get(self, name: Hashable, tag: object = None) -> SecretBytes | None:
        """The cached value, unless expired or stored with another ``tag`` (a key generation)."""
        value = self._lookup(name, tag)
        if self.observer is not None:
            self.observer(value is not None)
        return value

    def _lookup(self, name: Hashable, tag: object) -> SecretBytes | None:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            stored_at, _owner, value, stored_tag = entry
            if self._clock() - stored_at > self.max_age or stored_tag != tag:
                del self._entries[name]
                return None
            self._entries.move_to_end(name)
            return value

    def put(self, name: Hashable, owner: str, value: SecretBytes, tag: object = None) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._entries[name] = (self._clock(), owner, value, tag)
            self._entries.move_to_end(name)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop_name(self, name: Hashable) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def drop_owner(self, owner: str) -> None:
        """Forget every entry of one key (disable, revoke, destroy)."""
        with self._lock:
            for name in [n for n, (_t, o, _v, _g) in self._entries.items() if o == owner]:
                del self._entries[name]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<KeyCache entries={len(self._entries)} max={self.max_entries}>"
