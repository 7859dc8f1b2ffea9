"""Who may do what to which key: lookups that answer 404 for what the caller may not see.

``key_for`` is the one way in for every key service: missing, finally deleted, in another
region or hidden all give the same audited 404 (THREAT_MODEL.md, "No existence oracles");
otherwise the action is authorised (denied: audited, 403).  ``failures_audited`` records a
precondition failure as a ``failed`` event.  ``key_lock`` re-reads a key with its row lock
(the locking rule, docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import authorize_audited, not_found_audited
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_record
from hkms_core.errors import ObjectNotFound, PermissionDenied, ServiceError, parse_uuid
from hkms_core.lifecycle import DELETION_DELAY
from keys_app.errors import HierarchyError
from keys_app.models import Key, KeyState


def current_time(now: datetime | None) -> datetime:
    return now or timezone.now()


def deletion_is_final(key: Key, now: datetime | None = None) -> bool:
    """A key scheduled for deletion more than :data:`DELETION_DELAY` ago is gone for every caller.

    Never while the key is protected (protected since it was scheduled): protection
    blocks every route to destruction, so it stays restorable (THREAT_MODEL.md, "Destruction").
    """
    return (
        not key.protected
        and key.state == KeyState.SCHEDULED_FOR_DELETION
        and key.deletion_requested_at is not None
        and key.deletion_requested_at + DELETION_DELAY <= current_time(now)
    )


def live_keys(now: datetime | None = None) -> QuerySet[Key]:
    """Keys whose deletion is not final (purged keys may keep a row while a secret names them)."""
    cutoff = current_time(now) - DELETION_DELAY
    return Key.objects.exclude(
        state=KeyState.SCHEDULED_FOR_DELETION, deletion_requested_at__lte=cutoff, protected=False
    )


def key_for(
    principal: Principal, key_id: Any, action: Action, event: str, *, region: str | None, now: datetime | None = None
) -> Key:
    """The key ``key_id`` if the principal may do ``action`` on it; 404 if it may not see it.

    Missing, finally deleted, in another region or hidden: the same audited 404
    naming the canonical id (THREAT_MODEL.md, "No existence oracles")."""
    kid = parse_uuid(key_id, "key_id")
    key = Key.objects.filter(id=kid).first()
    if key is None or deletion_is_final(key, now) or (region is not None and key.region != region):
        raise not_found_audited(principal, event, "key", kid, key, region=region)
    authorize_audited(principal, action, key, event)
    return key


def key_lock(key: Key) -> Key:
    """Re-read ``key`` with a row lock (call inside ``transaction.atomic()`` on default)."""
    return Key.objects.select_for_update().get(id=key.id)


@contextmanager
def failures_audited(principal: Principal, event: str, obj: Any) -> Iterator[None]:
    """Record an operation that failed its preconditions as a ``failed`` event, then re-raise."""
    try:
        yield
    except (ServiceError, HierarchyError) as exc:
        if not isinstance(exc, ObjectNotFound | PermissionDenied):
            with transaction.atomic():
                audit_record(principal, event, obj, outcome=AuditEvent.Outcome.FAILED, error=type(exc).__name__)
        raise


def require_operator(principal: Principal, event: str) -> None:
    if not principal.is_superuser:
        raise PermissionDenied(event)


__all__ = [
    "current_time",
    "deletion_is_final",
    "failures_audited",
    "key_for",
    "key_lock",
    "live_keys",
    "require_operator",
]
