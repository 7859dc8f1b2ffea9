"""Root-key custody for people: seal status, unseal share by share, seal.

The one guarded, audited path over ``keys_app.services.seal`` used by the REST
endpoints and the console page.  Superusers only; anyone else gets
``ObjectNotFound`` (the page does not exist for them), recorded as denied.
Share words never reach an audit event, a log or an exception message.

Audit ordering, deliberately not one transaction with the action: the action
happens outside the databases (the seal keeper, the provider), so no database
transaction could undo it.  A seal is recorded *after* it happened because
sealing must never depend on the database (a seal whose event cannot be written
still seals, and the operator sees the error); an unseal is recorded after the
keeper answered, since only then is its outcome (progress, sealed) known, and a
refused share is recorded as ``failed``.  Each event is one committed append.
"""

from __future__ import annotations

from typing import Any

from django.views.decorators.debug import sensitive_variables

from hkms_core.access.principal import Principal
from hkms_core.audit.services import audit_denied, audit_record
from hkms_core.errors import InvalidArgument, ObjectNotFound
from keys_app.errors import HierarchyError
from keys_app.services import seal as seal_service

MAX_SHARE_CHARS = 2000


def _require_superuser(principal: Principal, event: str) -> None:
    if not (principal.user is not None and principal.user.is_active and principal.user.is_superuser):
        error = ObjectNotFound("endpoint", event)
        audit_denied(principal, event, None, error)
        raise error


def custody_status(*, principal: Principal) -> dict[str, Any]:
    _require_superuser(principal, "root_key.seal_status")
    return seal_service.seal_status()


@sensitive_variables("share")
def custody_unseal(*, principal: Principal, share: Any) -> dict[str, Any]:
    """Submit one custodian share; the K-th valid one unseals every worker."""
    _require_superuser(principal, "root_key.unseal")
    if not isinstance(share, str) or not share.strip() or len(share) > MAX_SHARE_CHARS:
        raise InvalidArgument("share", "must be one SLIP-39 share (words separated by spaces)")
    try:
        result = seal_service.unseal_submit(share)
    except HierarchyError as exc:
        audit_record(principal, "root_key.unseal", None, outcome="failed", error=type(exc).__name__)
        raise
    audit_record(
        principal, "root_key.unseal", None, sealed=bool(result.get("sealed")), progress=str(result.get("progress", ""))
    )
    return result


def custody_seal(*, principal: Principal) -> dict[str, Any]:
    _require_superuser(principal, "root_key.seal")
    result = seal_service.seal()
    audit_record(principal, "root_key.seal", None)
    return result
