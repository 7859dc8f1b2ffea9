"""The acting principal of a console request."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import empty

from hkms_core.access.principal import Principal
from hkms_core.api.authentication import client_ip, request_id


def console_principal(request: HttpRequest) -> Principal:
    """``Principal(user=request.user, via="console", ...)``, built once per request.

    The principal caches the user's grants, so one request costs one permission query.
    """
    cached = getattr(request, "_hkms_principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    user = _unwrap(request.user) if request.user.is_authenticated else None
    principal = Principal(user=user, via="console", source_ip=client_ip(request), request_id=request_id(request))
    request._hkms_principal = principal  # type: ignore[attr-defined]
    return principal


def _unwrap(user: Any) -> Any:
    """The real user object behind ``request.user``'s lazy wrappers (model relations need it)."""
    while getattr(user, "_wrapped", None) is not None:  # django-otp wraps the auth wrapper again
        if user._wrapped is empty:
            user._setup()
        user = user._wrapped
    return user
