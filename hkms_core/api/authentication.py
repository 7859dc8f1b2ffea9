"""DRF authentication by Scaleway's ``X-Auth-Token`` header, and the request principal."""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request

from hkms_core.access.cache import principal_authenticate
from hkms_core.access.models import ApiKey
from hkms_core.access.principal import Principal
from hkms_core.api.throttling import auth_failure_record, client_address
from hkms_core.audit.services import audit_denied

TOKEN_HEADER = "HTTP_X_AUTH_TOKEN"


def client_ip(request: Any) -> str:
    """REMOTE_ADDR, or the client named by trusted proxies (``HKMS_TRUSTED_PROXIES``)."""
    return client_address(request)


def request_id(request: Any) -> str:
    raw = str(request.META.get("HTTP_X_REQUEST_ID", ""))[:64]
    return raw if raw and raw.replace("-", "").isalnum() else uuid.uuid4().hex


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticate an API key's secret key; every failure is the same 401 and is audited.

    The key, its user and the user's grants come from the per-process principal
    cache (``hkms_core.access.cache``): one primary-key read of the access
    generation per request when cached, and revocations apply on the next request.
    """

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        token = request.META.get(TOKEN_HEADER)
        if token is None:
            return None
        # A valid key is served whatever the failures from its address; only failures are throttled.
        entry = principal_authenticate(token)
        if entry is None:
            self._refuse(request)
        request._hkms_grants = entry.grants  # type: ignore[attr-defined]
        return entry.api_key.user, entry.api_key

    @staticmethod
    def _refuse(request: Request) -> NoReturn:
        """Count the failure against the client address; 401 up to the limit (audited), then 429.

        Past the limit one ``throttled`` refusal is audited per address and minute, not every
        attempt, so a flood cannot fill the audit log."""
        address = client_ip(request)
        limit = settings.HKMS_AUTH_FAILURES_PER_MINUTE
        count, wait = auth_failure_record(address)
        anonymous = Principal(user=None, source_ip=address, request_id=request_id(request))
        if count > limit:
            if count == limit + 1:
                audit_denied(anonymous, "auth.api_key", None, Throttled(wait=wait), reason="throttled")
            raise Throttled(wait=wait)
        audit_denied(anonymous, "auth.api_key", None, AuthenticationFailed())
        raise AuthenticationFailed("authentication is denied")

    def authenticate_header(self, request: Request) -> str:
        return "X-Auth-Token"


class ConsoleSessionAuthentication(SessionAuthentication):
    """Session authentication for the browser console (CSRF enforced by DRF)."""


def request_principal(request: Request) -> Principal:
    """The principal of an authenticated DRF request, cached on the request."""
    cached = getattr(request, "_hkms_principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    api_key = request.auth if isinstance(request.auth, ApiKey) else None
    principal = Principal(
        user=request.user if getattr(request.user, "is_authenticated", False) else None,
        api_key=api_key,
        source_ip=client_ip(request),
        request_id=request_id(request),
        via="api" if api_key is not None else "console",
        _grants=getattr(request, "_hkms_grants", None) if api_key is not None else None,
    )
    request._hkms_principal = principal  # type: ignore[attr-defined]
    return principal


#: Authentication of the endpoints that read, consume or use secret material (Secret
#: Manager payload access by id and by path; Key Manager encrypt, decrypt, data keys,
#: sign, verify, wrap, unwrap): the ``X-Auth-Token`` header only, never the console's
#: session cookie.  A cross-site top-level navigation carries the ``Lax`` cookie on a
#: GET, so a cookie must not read (or consume) a payload; the console reveals payloads
#: by its own POST with confirmation.  A cookie-only request answers 401 in Scaleway's
#: shape (THREAT_MODEL.md, "Payloads need an API key").
TOKEN_ONLY_AUTHENTICATION = [ApiKeyAuthentication]
