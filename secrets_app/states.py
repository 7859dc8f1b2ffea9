"""The state machines of a secret and of a secret version, and the read check.

A secret is *live* (``deletion_requested_at`` NULL) or *scheduled for
deletion*; its versions move as below (``docs/architecture.md`` draws it)::

    enabled  <-> disabled                       enable / disable, expiry "disable"
    enabled | disabled -> scheduled_for_deletion  version delete, secret delete
    scheduled_for_deletion -> enabled | disabled  restore (to ``status_before_deletion``)
    any but deleted -> deleted                  destroy (expiry, ephemeral "delete")

Precedence, enforced by compare-and-set under the locking rule
(``docs/architecture.md``, "The locking rule"):

* every transition names the states it starts from in its ``UPDATE … WHERE``
  (:data:`FROM`), so a transition whose start state was changed by a
  concurrent one updates nothing and fails (412) instead of undoing it;
* enable / disable also require the *secret* not to be scheduled for
  deletion, checked with the secret row locked: a deletion request always
  wins over a concurrent enable, whichever commits first;
* ``deleted`` is final; a deletion whose window passed cannot be restored.

Invariant: a secret scheduled for deletion has no enabled or disabled version.
"""

from __future__ import annotations

from datetime import datetime

from hkms_core.errors import PreconditionFailed, ServiceError
from keys_app.errors import KeyDisabled, KeyMaterialUnavailable
from keys_app.models import KeyState
from secrets_app.models import Secret, SecretVersion, VersionStatus

S = VersionStatus
#: For each transition, the version states it may start from (its CAS condition).
FROM: dict[str, tuple[str, ...]] = {
    "enable": (S.ENABLED, S.DISABLED),
    "disable": (S.ENABLED, S.DISABLED),
    "expire_disable": (S.ENABLED,),
    "access_once": (S.ENABLED,),
    "schedule_deletion": (S.ENABLED, S.DISABLED),
    "restore": (S.SCHEDULED_FOR_DELETION,),
    "destroy": (S.ENABLED, S.DISABLED, S.SCHEDULED_FOR_DELETION),
}


class Expired(ServiceError):
    status = 410
    type = "resource_expired"

    def __init__(self, resource: str, resource_id: object) -> None:
        super().__init__(f"{resource} {resource_id} has expired", resource=resource, resource_id=str(resource_id))


def version_expired(version: SecretVersion, now: datetime) -> bool:
    """An ephemeral version past its ``expires_at``, or read once when it may be read once."""
    if version.expires_at is not None and version.expires_at <= now:
        return True
    return version.expires_once_accessed and version.accessed_at is not None


def version_readable(secret: Secret, version: SecretVersion, now: datetime) -> None:
    """Raise unless ``version``'s payload may be served at ``now``; every read path calls this.

    ``secret`` and ``secret.key`` must be read with (or after) ``version``, in
    the request (one ``select_related`` query is enough).  The checks, in order,
    and what each raises (the REST layer's status in brackets):

    1. the version expired (ephemeral policy) -> :class:`Expired` (410);
    2. the version is not ``enabled``, or its secret is scheduled for deletion
       -> ``PreconditionFailed(<status>)`` (412; a version of a scheduled secret
       reports ``scheduled_for_deletion`` whatever its own row says);
    3. the secret's key is not ``enabled`` (disabled, scheduled for deletion,
       waiting for material) -> ``KeyDisabled`` (412);
    4. the version has no DEK or ciphertext any more (destroyed) ->
       ``KeyMaterialUnavailable`` (410).

    A DEK row or KEK version destroyed underneath (crypto-shredding) is found
    by the unwrap itself (``KeyMaterialUnavailable``, 410).  No lock is taken:
    a read linearises at the query that loaded ``version`` — a read that loaded
    it before a deletion committed may still answer, one that starts after the
    deletion's acknowledgment cannot.
    """
    if version_expired(version, now):
        raise Expired("secret_version", f"{secret.id}/{version.revision}")
    status = version.status
    if status == S.ENABLED and secret.deletion_requested_at is not None:
        status = S.SCHEDULED_FOR_DELETION
    if status != S.ENABLED:
        raise PreconditionFailed(status, f"revision {version.revision} of secret {secret.id} is {status}")
    key = secret.key
    if key.state != KeyState.ENABLED:
        raise KeyDisabled(key.id, key.state)
    if version.dek_id is None or version.ciphertext is None:
        raise KeyMaterialUnavailable(f"secret {secret.id} revision {version.revision} was destroyed")
