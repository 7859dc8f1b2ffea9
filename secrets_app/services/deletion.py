"""The deletion window and destruction (THREAT_MODEL.md, "Destruction").

A deleted secret or version stays restorable for ``DELETION_DELAY``; after that
its deletion is final.  Nothing of a protected secret is ever destroyed: every
destruction passes :data:`DESTRUCTIBLE_VERSIONS` to ``storage.secret_version_destroy``,
which re-checks it under the secret's row lock, so a protection that commits first
wins.  Destruction deletes the DEK first (crypto-shredding): a crash leaves at worst
a version whose payload is already gone, and the next expiry run finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import authorize_audited, grants_forget
from hkms_core.lifecycle import DELETION_DELAY
from hkms_core.tenancy.models import Project
from secrets_app import states, storage
from secrets_app.models import EphemeralAction, Secret, SecretVersion, VersionStatus


# --- destruction (THREAT_MODEL.md, "Destruction") ---------------------------------------------
def destruction_allowed(secret: Secret) -> bool:
    """Whether versions of ``secret`` may be destroyed for good now: never while it is protected.

    Every route to destruction asks this -- an expiry or an expires-once-accessed
    read whose action is ``delete``, the immediate deletion of an ephemeral
    secret's version, the end of a deletion window.  Where it answers no, the
    version is disabled (or stays scheduled for deletion, restorable) instead.
    Reads the row afresh, so a protection set since ``secret`` was loaded counts;
    the destruction itself re-checks :data:`DESTRUCTIBLE_VERSIONS` under the lock.
    """
    return Secret.objects.filter(id=secret.id, protected=False).exists()


#: The versions that may be destroyed: none of a protected secret.  Every destruction passes
#: it to ``storage.secret_version_destroy(only_if=…)``, which re-checks it under the secret's
#: row lock, so a protection that commits first always wins.
DESTRUCTIBLE_VERSIONS = Q(secret__protected=False)


def require_destruction_right(principal: Principal, obj: Secret | Project, event: str, *actions: str) -> None:
    """Setting, changing or removing an ephemeral setting whose action destroys (``delete``)
    needs :attr:`Action.SECRET_ADMIN`, the permission to delete: a role that may not
    delete may not arrange a destruction either.  ``actions``: the ephemeral action
    before and after the change.  Raises ``PermissionDenied`` (audited)."""
    if EphemeralAction.DELETE in actions:
        authorize_audited(principal, Action.SECRET_ADMIN, obj, event)


def secret_destroy(secret: Secret, *, only_if: Q, audit: Callable[[Secret], Any] | None = None) -> bool:
    """Destroy every version (DEK first), then the secret row with the roles granted on it.

    ``only_if`` is re-checked on the secret row under its lock before anything
    is destroyed (a restore that committed first wins) and again before the row
    goes; each version is destroyed under its own lock (``storage.secret_version_destroy``).
    A crash in between leaves a secret still scheduled, past its window (not
    restorable), whose next expiry run finishes the job.  True if the secret went;
    ``audit(secret)`` is written in the transaction that deletes the row.
    """
    if not Secret.objects.filter(only_if, id=secret.id).exists():
        return False
    for version in SecretVersion.objects.filter(secret_id=secret.id).exclude(status=VersionStatus.DELETED):
        storage.secret_version_destroy(
            version, only_if=Q(secret__deletion_requested_at__isnull=False) & DESTRUCTIBLE_VERSIONS
        )
    with transaction.atomic():
        locked = storage.secret_lock(secret.id)
        if locked is None or not Secret.objects.filter(only_if, id=secret.id).exists():
            return False
        if audit is not None:
            audit(secret)
        grants_forget(secret)
        Secret.objects.filter(id=secret.id).delete()
    return True


def deletion_window_passed(requested_at: datetime | None, now: datetime) -> bool:
    return requested_at is not None and requested_at + DELETION_DELAY <= now


def version_unschedule(version: SecretVersion, now: datetime) -> bool:
    return storage.secret_version_transition(
        version,
        from_statuses=states.FROM["restore"],
        status=version.status_before_deletion or VersionStatus.DISABLED,
        status_before_deletion="",
        deletion_requested_at=None,
    )
