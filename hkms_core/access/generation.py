"""The access generation: one row whose value grows whenever who-may-do-what changes.

Every change of access bumps it **in the transaction of the change**
(:func:`access_generation_bump`: API-key revocation, role grants and
revocations, and through :func:`bump_on_change`, registered in
``AccessConfig.ready``, any save or delete of a user, an API key or a guardian
object permission).  The principal cache (:mod:`hkms_core.access.cache`) reads
it on every request and drops what it cached under an older value.  This module
depends on the models only, so the services that change access and the cache
that reads it both stand on it without importing each other.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, transaction

from hkms_core.access.models import AccessGeneration, ApiKey


def _table() -> str:
    return connections["default"].ops.quote_name(AccessGeneration._meta.db_table)


def access_generation() -> int:
    """The current value (0 when the row is missing, e.g. after a flush)."""
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT value FROM {_table()} WHERE id = 1")  # noqa: S608 (our own table name)
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def access_generation_bump() -> None:
    """Invalidate every cached principal in every process, when the caller's transaction commits."""
    with transaction.atomic(using="default", savepoint=False), connections["default"].cursor() as cursor:
        cursor.execute(f"UPDATE {_table()} SET value = value + 1 WHERE id = 1")  # noqa: S608
        if cursor.rowcount == 0:
            AccessGeneration.objects.using("default").get_or_create(id=1, defaults={"value": 1})


def bump_on_change(sender: Any, instance: Any = None, created: bool = False, **kwargs: Any) -> None:
    """Signal receiver (post_save/post_delete of users, API keys, object permissions)."""
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a console login changes nobody's rights
    if created and sender is ApiKey:
        return  # a new key is not in any cache yet
    access_generation_bump()
