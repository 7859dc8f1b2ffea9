"""API keys: creation (secret shown once), authentication, revocation.

Scaleway's model: the *access key* (``SCW`` + 17 upper-case letters/digits)
names the key and is not secret; the *secret key* (a random UUID) is sent in
the ``X-Auth-Token`` header.  Only ``sha256(secret_key)`` is stored.
Authentication looks the digest up by its unique index and confirms it with
``hmac.compare_digest``; unknown, malformed, expired and revoked tokens all
fail the same way (no hint which).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from hkms_core.access.generation import access_generation_bump
from hkms_core.access.models import ApiKey
from hkms_core.access.principal import Principal
from hkms_core.access.services import not_found_audited
from hkms_core.audit.services import audit_record
from hkms_core.errors import InvalidArgument, PermissionDenied

_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    secret_key: str  # shown once, never stored

    def __repr__(self) -> str:
        return f"<IssuedApiKey {self.api_key.access_key}>"


def new_access_key() -> str:
    return "SCW" + "".join(secrets.choice(_ALPHABET) for _ in range(17))


@sensitive_variables("secret_key")
def secret_digest(secret_key: str) -> str:
    return hashlib.sha256(secret_key.strip().lower().encode()).hexdigest()


@sensitive_variables("secret_key")
def api_key_create(
    *, principal: Principal, user: Any, project: Any = None, expires_in: timedelta | None = None, description: str = ""
) -> IssuedApiKey:
    """Issue a key for ``user`` (oneself, or anyone for a superuser); audited."""
    if not principal.is_superuser and principal.user_id != user.pk:
        raise PermissionDenied("api_key.create", "user", user.pk)
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidArgument("expires_in", "must be a positive duration")
    secret_key = str(uuid.uuid4())
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            access_key=new_access_key(),
            secret_digest=secret_digest(secret_key),
            user=user,
            default_project=project,
            description=description,
            expires_at=timezone.now() + expires_in if expires_in else None,
        )
        audit_record(
            principal,
            "api_key.create",
            ("api_key", api_key.access_key, project.pk if project else ""),
            owner=user.get_username(),
        )
    return IssuedApiKey(api_key=api_key, secret_key=secret_key)


@sensitive_variables("token", "canonical")
def token_digest(token: str) -> str | None:
    """The stored digest of a well-formed secret key (a UUID in any case or spelling), else None."""
    try:
        canonical = str(uuid.UUID(token.strip()))
    except (ValueError, AttributeError):
        return None
    return secret_digest(canonical)


@sensitive_variables("token")
def api_key_authenticate(token: str) -> ApiKey | None:
    """The active key whose secret is ``token``, or None (for every kind of failure).

    Requests go through ``hkms_core.access.cache.principal_authenticate``, which
    calls this on a cache miss.
    """
    digest = token_digest(token)
    if digest is None:
        return None
    api_key = ApiKey.objects.select_related("user").filter(secret_digest=digest).first()
    if api_key is None or not hmac.compare_digest(api_key.secret_digest, digest):
        return None
    if not api_key.is_active or not api_key.user.is_active:
        return None
    return api_key


def api_key_revoke(*, principal: Principal, access_key: str) -> ApiKey:
    """Revoke a key; every process refuses it from its next request (the access generation moves).

    The row is locked and re-read, ``revoked_at`` set by a conditional
    ``UPDATE … WHERE revoked_at IS NULL`` (a second revocation keeps the first
    instant), and the generation bump and the audit event commit with it: once
    this returns, no request that starts afterwards authenticates with the key.
    Someone else's key answers like a missing one (404); both refusals are
    audited, after the transaction so that the event is not rolled back.
    """
    with transaction.atomic():
        api_key = ApiKey.objects.select_for_update().filter(access_key=access_key).first()
        refused = api_key is None or not (principal.is_superuser or principal.user_id == api_key.user_id)
        if api_key is not None and not refused:
            now = timezone.now()
            if ApiKey.objects.filter(id=api_key.id, revoked_at__isnull=True).update(revoked_at=now):
                api_key.revoked_at = now
            access_generation_bump()
            audit_record(principal, "api_key.revoke", ("api_key", api_key.access_key, ""))
    if api_key is None or refused:
        raise not_found_audited(principal, "api_key.revoke", "api_key", str(access_key)[:64])
    return api_key


def api_keys_visible(principal: Principal) -> Any:
    qs = ApiKey.objects.select_related("user", "default_project")
    return qs if principal.is_superuser else qs.filter(user_id=principal.user_id or -1)
