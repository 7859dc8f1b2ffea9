"""Expiry (the ``expire_secret_versions`` command): apply ephemeral actions for good and
destroy what the deletion window left behind.

Operators only.  Candidates are listed without locks; each change re-checks its own
condition under the row locks (CAS), so what changed meanwhile is never undone.  Each
destruction deletes the DEK first; a crash leaves work that a re-run finishes.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.audit.services import audit_record
from hkms_core.errors import ObjectNotFound
from hkms_core.lifecycle import DELETION_DELAY
from secrets_app import states, storage
from secrets_app.models import EphemeralAction, Secret, SecretVersion, VersionStatus
from secrets_app.services.deletion import DESTRUCTIBLE_VERSIONS, destruction_allowed, secret_destroy


# --- expiry (the expire_secret_versions command) ---------------------------------------------
def secret_versions_expire(
    *, principal: Principal, now: datetime | None = None, dry_run: bool = False
) -> dict[str, int]:
    """Apply ephemeral actions for good and destroy what was scheduled more than 7 days ago.

    Operators only.  The candidates are listed without locks; each change then
    re-checks its own condition under the row locks (CAS), so what changed
    meanwhile (a restore, an enable, a new expiry date) is never undone: an
    expiry ``disable`` moves only an enabled version, a destruction happens only
    if the version (or secret) is still due when locked.  Each destruction
    deletes the DEK first (``storage.secret_version_destroy``), so a crash
    leaves at worst a version whose payload is already gone; a re-run finishes it.
    Counts are of what this run changed.
    """
    if not principal.is_superuser:
        raise ObjectNotFound("command", "expire_secret_versions")
    now = now or timezone.now()
    cutoff = now - DELETION_DELAY
    counts = {"versions_disabled": 0, "versions_destroyed": 0, "secrets_destroyed": 0}
    expired_q = Q(expires_at__lte=now) | Q(expires_once_accessed=True, accessed_at__isnull=False)
    expired = SecretVersion.objects.select_related("secret").filter(expired_q).exclude(status=VersionStatus.DELETED)
    # A protected secret's versions are never destroyed (``DESTRUCTIBLE_VERSIONS``, re-checked
    # under the locks): scheduled ones wait, restorable, until it is unprotected; expired
    # ones with action ``delete`` are disabled instead.
    due_q = Q(status=VersionStatus.SCHEDULED_FOR_DELETION, deletion_requested_at__lte=cutoff) & DESTRUCTIBLE_VERSIONS
    due_versions = SecretVersion.objects.select_related("secret").filter(due_q)
    due_secrets = Secret.objects.filter(deletion_requested_at__lte=cutoff, protected=False)
    for version in expired:
        # Only an explicit ``delete`` action destroys; an expiry without one (set on a
        # single version) disables, which can be undone.
        if version.ephemeral_action != EphemeralAction.DELETE or not destruction_allowed(version.secret):
            if version.status != VersionStatus.ENABLED:
                continue
            if dry_run:
                counts["versions_disabled"] += 1
                continue
            with transaction.atomic():
                storage.secret_lock(version.secret_id)
                if SecretVersion.objects.filter(expired_q, id=version.id).exists() and (
                    storage.secret_version_transition(
                        version, from_statuses=states.FROM["expire_disable"], status=VersionStatus.DISABLED
                    )
                ):
                    counts["versions_disabled"] += 1
                    event = "secret.version.expire"
                    audit_record(principal, event, version.secret, revision=version.revision, ephemeral="disable")
        elif dry_run or _destroy_audited(
            principal,
            version,
            "ephemeral",
            only_if=expired_q & ~Q(status=VersionStatus.DELETED) & DESTRUCTIBLE_VERSIONS,
        ):
            counts["versions_destroyed"] += 1
    for version in due_versions:
        if dry_run or _destroy_audited(principal, version, "deletion_window_passed", only_if=due_q):
            counts["versions_destroyed"] += 1
    for secret in due_secrets:
        if dry_run:
            counts["secrets_destroyed"] += 1
            continue
        audit = lambda s: audit_record(principal, "secret.destroy", s)  # noqa: E731
        if secret_destroy(secret, only_if=Q(deletion_requested_at__lte=cutoff, protected=False), audit=audit):
            counts["secrets_destroyed"] += 1
    return counts


def _destroy_audited(principal: Principal, version: SecretVersion, reason: str, *, only_if: Q) -> bool:
    """Destroy ``version`` if it still matches ``only_if`` under its lock; the event commits with the marking."""
    with transaction.atomic():
        destroyed = storage.secret_version_destroy(version, only_if=only_if)
        if destroyed:
            audit_record(principal, "secret.version.destroy", version.secret, revision=version.revision, reason=reason)
    return destroyed
