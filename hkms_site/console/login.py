"""Console login bookkeeping: the failed-login throttle and the ``auth.*`` audit events.

Failures are counted per ``(username, client address)`` in the ``login`` cache
(the shared cache of ``HKMS_CACHE_URL`` when one is configured, so every node counts
together; otherwise a file cache shared by the gunicorn workers of this node): after
``HKMS_LOGIN_FAILURES_LIMIT`` failures the pair is locked out for
``HKMS_LOGIN_LOCKOUT_SECONDS``, counted from the last failure.  Locking per
pair, not per username, stops an attacker from locking a victim out from
elsewhere.  Every attempt is audited as ``auth.login`` (allowed / denied with
the reason); the password is never recorded.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import transaction

from hkms_core.access.principal import Principal
from hkms_core.api.throttling import count_in_cache
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_record


def _cache() -> Any:
    return caches["login"]


def _throttle_key(username: str, ip: str) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}\x00{ip}".encode()).hexdigest()
    return f"hkms:login-failures:{digest}"


def login_locked(*, username: str, ip: str) -> bool:
    return int(_cache().get(_throttle_key(username, ip), 0)) >= settings.HKMS_LOGIN_FAILURES_LIMIT


def login_failed(*, principal: Principal, username: str, reason: str) -> None:
    """Count a failure (unless already locked) and audit it, committed on its own."""
    key, cache, timeout = _throttle_key(username, principal.source_ip), _cache(), settings.HKMS_LOGIN_LOCKOUT_SECONDS
    if reason != "throttled":
        count_in_cache(cache, key, timeout)  # one atomic increment (Redis), so concurrent failures all count
    cache.touch(key, timeout)  # the lockout runs from the last failure
    with transaction.atomic():
        audit_record(
            principal, "auth.login", None, outcome=AuditEvent.Outcome.DENIED, username=username[:150], reason=reason
        )


def login_succeeded(*, principal: Principal, method: str) -> None:
    _cache().delete(_throttle_key(principal.username, principal.source_ip))
    with transaction.atomic():
        audit_record(principal, "auth.login", None, method=method)


def logout_recorded(*, principal: Principal) -> None:
    with transaction.atomic():
        audit_record(principal, "auth.logout", None)
