"""A bounded, per-process cache of unwrapped key material (:class:`hkms_core.lru.BoundedCache`).

Entries expire after ``max_age`` seconds and the least recently used entry is
evicted past ``max_entries``.  Entries are tagged with the id of the key they
belong to (their *owner*) so that disabling, revoking or destroying a key drops
them at once in this process; other processes drop them within ``max_age``, and
every use re-reads the key's state from the database anyway.  A ``tag`` (the
key's generation) keeps material of another generation from being served.
Never shared between processes, never pickled, never logged (values are ``SecretBytes``).
"""

from __future__ import annotations

from collections.abc import Hashable

from hkms_core.lru import BoundedCache
from keys_app.crypto import SecretBytes


class KeyCache(BoundedCache[Hashable, SecretBytes]):
    def get(self, name: Hashable, tag: object = None) -> SecretBytes | None:
        """The cached value, unless expired or stored with another ``tag`` (a key generation)."""
        return self.lookup(name, tag)

    def put(self, name: Hashable, owner: str, value: SecretBytes, tag: object = None) -> None:
        self.store(name, value, tag=tag, owner=owner)

    def drop_name(self, name: Hashable) -> None:
        self.drop(name)
