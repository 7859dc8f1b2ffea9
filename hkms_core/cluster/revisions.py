"""Revision numbers that never go backwards on a secret, even after a failover lost writes.

A secret's next revision is ``version_count + 1``, read from the default database.  If
that database fails over to a replica that had not received the last commits (asynchronous
replication), ``version_count`` goes back and the revisions already acknowledged to clients
would be handed out again, naming other payloads.

So each allocation also keeps a per-secret *high-water mark* outside the database, in the
shared cache (``HKMS_CACHE_URL``; Redis in a cluster): the next revision is one more than
the larger of the two, and the mark is raised **before** the transaction commits, while the
secret's row lock serialises allocations (a transaction that then rolls back leaves a gap
in the numbers, never a reuse).  After a lossy failover the lost revisions stay unused: a
client that asks for one gets 404, never another payload, and the server logs which
revisions were lost.

What this guarantees, precisely: no reuse while the shared cache outlives the failover
(Redis is a separate service; it keeps the marks in memory, so a Redis restart at the same
moment as a lossy database failover loses the guarantee).  With the per-process default
cache it holds per process only.  Only synchronous replication
(``synchronous_commit=remote_apply``, docs/deployment.md) loses no acknowledged revision
at all — the mark prevents reuse, it does not bring lost payloads back.
"""

from __future__ import annotations

import logging

from django.core.cache import caches

log = logging.getLogger("hkms.revisions")


def _key(secret_id: object) -> str:
    return f"hkms:revision-hwm:{secret_id}"


def revision_next(*, secret_id: object, version_count: int) -> int:
    """The revision for a new version of ``secret_id``; call it under the secret's row lock."""
    cache = caches["default"]
    mark = int(cache.get(_key(secret_id)) or 0)
    if mark > version_count:
        log.error(
            "secret %s: revisions %s to %s were handed out but the database does not have them "
            "(acknowledged writes lost in a failover?); they are not reused, the next revision is %s",
            secret_id,
            version_count + 1,
            mark,
            mark + 1,
        )
    revision = max(mark, version_count) + 1
    cache.set(_key(secret_id), revision, timeout=None)
    return revision
