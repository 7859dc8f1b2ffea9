"""What both hot paths share (``hot`` serves payload reads, ``hot_write`` version creation):
the API principal of an authenticated token, the per-user throttle, and responses rendered
with the general path's bytes and headers.

Nothing here has a side effect but the throttle counter (counted as the general path counts
it) and nothing logs; tokens and payloads never reach an exception message.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework.renderers import JSONRenderer

from hkms_core.access.cache import CachedPrincipal
from hkms_core.access.principal import Principal
from hkms_core.api.authentication import client_ip, request_id
from hkms_core.api.exceptions import exception_handler
from hkms_core.api.throttling import PrincipalThrottle

#: ``Accept`` values DRF's negotiation maps to its JSON renderer without question.
PLAIN_ACCEPT = frozenset({"", "*/*", "application/json", "application/json, */*", "application/json, text/plain, */*"})
#: DRF's ``JSONRenderer`` with the project's settings (compact, UTF-8, no NaN).
_JSON: dict[str, Any] = {"separators": (",", ":"), "ensure_ascii": False, "allow_nan": False}


class _ThrottleRequest:
    """What ``PrincipalThrottle`` reads of a request: the user (and the address for its ident)."""

    __slots__ = ("META", "user")

    def __init__(self, user: Any, meta: dict[str, Any]) -> None:
        self.user = user
        self.META = meta


def api_principal(request: HttpRequest, entry: CachedPrincipal) -> Principal:
    """The principal ``request_principal`` builds for a request authenticated by ``entry``'s key."""
    api_key = entry.api_key
    return Principal(
        user=api_key.user,
        api_key=api_key,
        source_ip=client_ip(request),
        request_id=request_id(request),
        via="api",
        _grants=entry.grants,
    )


def throttle_allows(principal: Principal, meta: Any) -> bool:
    """The general path's per-user throttle (the same counters); a refusal is the general path's 429."""
    return PrincipalThrottle().allow_request(_ThrottleRequest(principal.user, meta), None)


def json_response(status: int, body: dict[str, Any], *, allow: str, no_store: bool = False) -> HttpResponse:
    """What the DRF view and the middleware after the hot path would send (same bytes, same headers)."""
    text = json.dumps(body, **_JSON)
    # DRF's JSONRenderer escapes the two JavaScript line terminators JSON allows raw.
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    content = text.encode()
    response = HttpResponse(content, status=status, content_type="application/json")
    if no_store:
        response["Cache-Control"] = "no-store"
    return _finish(response, allow)


def error_response(exc: Exception, view: Any, *, allow: str) -> HttpResponse:
    """The general path's answer to ``exc``: its exception handler (a 503 for an outage, else the
    error's own status, a 500 for the unexpected), rendered as its view would render it."""
    response = exception_handler(exc, {"view": view})
    response.accepted_renderer = JSONRenderer()
    response.accepted_media_type = "application/json"
    response.renderer_context = {}  # type: ignore[attr-defined]
    response.render()
    return _finish(response, allow)


def _finish(response: HttpResponse, allow: str) -> HttpResponse:
    response["Allow"] = allow
    response["X-Frame-Options"] = settings.X_FRAME_OPTIONS
    response["Content-Length"] = str(len(response.content))
    response["Vary"] = "Cookie"
    return response
