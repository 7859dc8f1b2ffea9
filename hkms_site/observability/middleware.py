"""The outermost middleware: a request id for every request, request metrics, and (JSON logs)
one log line per request.

Request id: an incoming ``X-Request-Id`` of 1 to 64 letters, digits and ``-`` is kept
(a load balancer's id then follows the request through), anything else is replaced
by a fresh one; it is put back into ``request.META`` so the audit event of the
request carries the same id, made available to log records, and returned in the
``X-Request-Id`` response header.

Cost per request: no database access; a ``perf_counter`` pair (for the JSON request
line) and one queued observation (``metrics.request_observed``: a ``deque.append``).
"""

from __future__ import annotations

import functools
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from hkms_site.observability import logs
from hkms_site.observability.metrics import request_observed

HEADER = "HTTP_X_REQUEST_ID"
request_log = logging.getLogger("hkms.request")


def request_id_of(raw: str) -> str:
    """The incoming id when it is 1-64 characters of ``[A-Za-z0-9-]``, else a new one (no log injection)."""
    if raw and len(raw) <= 64 and raw.replace("-", "").isalnum() and raw.isascii():
        return raw
    return uuid.uuid4().hex


def _route(match: Any) -> str:
    """The URL pattern's name (``admin:secret_detail``), else the pattern itself with its
    placeholders (``…/secrets/<uuid:secret_id>/versions/<str:revision>/access``): never a
    concrete path, so never a secret's id or name."""
    return str(match.view_name if match.url_name else (match.route or "unnamed"))


#: Answers given before URL resolution (no ``resolver_match``): the payload reads that a
#: middleware may serve itself (the hot path), static files, redirects.  The two access
#: endpoints get the label their URL pattern has, so a read counts the same either way.
_ACCESS = (
    (
        re.compile(r"/secret-manager/v1beta1/regions/[^/]+/secrets/[^/]+/versions/[^/]+/access"),
        "/secret-manager/v1beta1/regions/fr-par/secrets/00000000-0000-0000-0000-000000000000/versions/1/access",
    ),
    (
        re.compile(r"/secret-manager/v1beta1/regions/[^/]+/secrets-by-path/versions/[^/]+/access"),
        "/secret-manager/v1beta1/regions/fr-par/secrets-by-path/versions/1/access",
    ),
)


@functools.cache
def _pattern_of(example: str) -> str:
    try:
        return _route(resolve(example))
    except Resolver404:
        return "unresolved"


def _unresolved_route(path: str, status: int) -> str:
    if status == 404:
        return "unmatched"
    if path.startswith(settings.STATIC_URL if settings.STATIC_URL.startswith("/") else "/" + settings.STATIC_URL):
        return "static"
    for pattern, example in _ACCESS:
        if pattern.fullmatch(path):
            return _pattern_of(example)
    return "unresolved"


class ObservabilityMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        rid = request_id_of(str(request.META.get(HEADER, "")))
        request.META[HEADER] = rid
        token = logs.REQUEST_ID.set(rid)
        try:
            response = self.get_response(request)
            match = request.resolver_match
            route = _route(match) if match is not None else _unresolved_route(request.path_info, response.status_code)
            seconds = time.perf_counter() - started
            request_observed(route, request.method or "", response.status_code)
            response.headers["X-Request-Id"] = rid
            if logs.REQUEST_LINES:
                request_log.info(
                    "%s %s %s",
                    request.method,
                    route,
                    response.status_code,
                    extra={
                        "route": route,
                        "method": request.method,
                        "status": response.status_code,
                        "duration_ms": round(seconds * 1000, 3),
                    },
                )
            return response
        finally:
            logs.REQUEST_ID.reset(token)
