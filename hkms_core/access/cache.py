"""A per-process cache of authenticated API-key principals, invalidated by a generation row.

Authenticating an ``X-Auth-Token`` costs a query for the key and its user and
another for the user's object grants.  Both change rarely, so each process
keeps, per token digest, the ``ApiKey`` (with its user) and the grants it
loaded, tagged with the *access generation* read just before loading them.

Correctness rests on one row, ``AccessGeneration`` (id 1) on default
(:mod:`hkms_core.access.generation`, which the services that change access
import; this module sits above them):

* every change of who may do what bumps it **in the transaction of the
  change**: API-key revocation (``api_key_revoke``), role grants and
  revocations (``role_grant``/``role_revoke``), and, through signal receivers
  registered in ``AccessConfig.ready``, any save or delete of a user (say,
  deactivation in the console), of an API key or of a guardian object
  permission, wherever it comes from;
* every request reads the row (one primary-key read, no ORM) and uses a cached
  principal only if it was cached under the same value — so a revoked key, a
  revoked role or a deactivated user stops working **on the next request, in
  every process**, with no delay;
* the generation is read *before* the key and grants are loaded, so a change
  that commits in between leaves an entry tagged with the older value, which
  the next request discards.

Two bounds cover what bypasses the row (a bulk ``QuerySet.update()`` on users
or keys in a shell, a manual SQL edit): entries live at most
``HKMS_PRINCIPAL_CACHE_SECONDS`` (default 10 s; 0 disables the cache), and the
cache holds at most ``HKMS_PRINCIPAL_CACHE_SIZE`` entries (LRU).  A key's
expiry (``expires_at``) is re-checked against the clock on every hit.

The cache holds no secret: entries are keyed by the SHA-256 digest of the token
(what the database stores), and values are model instances that requests treat
as read-only.  Never shared between processes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.conf import settings

from hkms_core.access.apikeys import api_key_authenticate, token_digest
from hkms_core.access.generation import access_generation
from hkms_core.access.models import ApiKey
from hkms_core.access.principal import Grants
from hkms_core.access.services import user_grants
from hkms_core.env import env_int
from hkms_core.lru import BoundedCache

DEFAULT_MAX_AGE = 10
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CachedPrincipal:
    api_key: ApiKey
    grants: Grants
    generation: int
    stored_at: float

    def __repr__(self) -> str:
        return f"<CachedPrincipal {self.api_key.access_key} generation={self.generation}>"


class PrincipalCache(BoundedCache[str, CachedPrincipal]):
    """Bounded (LRU), aged, generation-checked (the entry's tag); thread-safe (gthread workers)."""

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_age > 0

    def get(self, digest: str, generation: int) -> CachedPrincipal | None:
        return self.lookup(digest, generation)

    def put(self, digest: str, entry: CachedPrincipal) -> None:
        self.store(digest, entry, tag=entry.generation, stored_at=entry.stored_at)

    def __repr__(self) -> str:
        return f"<PrincipalCache entries={len(self._entries)} max={self.max_entries} age={self.max_age}s>"


_cache: PrincipalCache | None = None
_cache_lock = threading.Lock()


def _setting(name: str, default: int) -> int:
    value = getattr(settings, name, None)
    return int(value) if value is not None else env_int(name, default, minimum=0)


def principal_cache() -> PrincipalCache:
    """The process-wide cache (sized from settings or the environment on first use)."""
    global _cache
    if _cache is None:
        with _cache_lock:
            if _cache is None:
                _cache = PrincipalCache(
                    _setting("HKMS_PRINCIPAL_CACHE_SIZE", DEFAULT_MAX_ENTRIES),
                    _setting("HKMS_PRINCIPAL_CACHE_SECONDS", DEFAULT_MAX_AGE),
                )
    return _cache


def principal_cache_reset() -> None:
    """Forget the cache and its sizing (tests that change the settings)."""
    global _cache
    with _cache_lock:
        _cache = None


# --- authentication -------------------------------------------------------------------------
def principal_authenticate(token: str) -> CachedPrincipal | None:
    """The active API key whose secret is ``token`` and its user's grants, or None.

    Cached per token digest (see the module docstring); a miss costs what it
    always did (one query for the key and user, one for the grants).
    """
    digest = token_digest(token)
    if digest is None:
        return None
    cache = principal_cache()
    if not cache.enabled:
        api_key = api_key_authenticate(token)
        return None if api_key is None else CachedPrincipal(api_key, user_grants(api_key.user), 0, 0.0)
    generation = access_generation()
    entry = cache.get(digest, generation)
    if entry is not None:
        if entry.api_key.is_active and entry.api_key.user.is_active:  # expiry moves with the clock
            return entry
        return None
    api_key = api_key_authenticate(token)
    if api_key is None:
        return None
    entry = CachedPrincipal(api_key, user_grants(api_key.user), generation, cache.now())
    cache.put(digest, entry)
    return entry
