"""The unwrapped-key cache: bounded in size and age, tagged by key generation."""

from __future__ import annotations

from keys_app.cache import KeyCache
from keys_app.crypto import SecretBytes


def test_age_size_and_tag_bounds():
    now = [0.0]
    cache = KeyCache(max_entries=2, max_age=10, clock=lambda: now[0])
    cache.put("a", "k1", SecretBytes(b"1" * 32), tag=1)
    assert cache.get("a", tag=1) is not None
    assert cache.get("a", tag=2) is None  # another generation of the key: never served
    cache.put("b", "k1", SecretBytes(b"2" * 32))
    cache.put("c", "k2", SecretBytes(b"3" * 32))
    assert len(cache) == 2
    now[0] = 11
    assert cache.get("b") is None  # too old
    cache.drop_owner("k2")
    assert cache.get("c") is None
    assert "3333" not in repr(cache)
