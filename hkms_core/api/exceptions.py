"""The one exception handler of both APIs: every error in Scaleway's JSON shape, never a traceback.

Each error family is mapped to an HTTP status and a body by one *rule* below,
registered with :func:`renders` in order of precedence (the first rule whose
class matches wins, so specific classes come before their bases).  To map a new
kind of error (for example a 503 for a database outage), add one function::

    @renders(django.db.OperationalError)
    def _database_down(exc):
        return 503, {"type": "service_unavailable", "message": "…"}

Families: :class:`hkms_core.errors.HkmsError`, the root of the project's one
error hierarchy, whose every error carries its own status and body (services'
refusals, the key hierarchy's errors, ``secrets_app``'s; this module imports no
app), DRF's and Django's request errors, and anything else: a generic 500 whose
details go to the server log only (without request data).  The hot read path
(``secrets_app.api.hot``) answers its errors through :func:`exception_handler`
too: there is no second mapping.

Every ``invalid_arguments`` answer (a service's ``InvalidArgument`` or a request
that does not fit its serializer) has the body of
:func:`hkms_core.errors.invalid_arguments_body`: Scaleway's ``details`` with
dotted ``argument_name``\\ s, which both official SDKs turn into their
validation error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from hkms_core.errors import HkmsError, invalid_arguments_body
from hkms_core.outage import api_outage_response

log = logging.getLogger("hkms.api")

#: ``(status, body)`` or ``(status, body, headers)``.
Rendered = tuple[int, dict[str, Any]] | tuple[int, dict[str, Any], dict[str, str]]
Renderer = Callable[[Any], Rendered]
_RULES: list[tuple[type[BaseException], Renderer]] = []


def renders(*classes: type[BaseException]) -> Callable[[Renderer], Renderer]:
    """Register ``renderer(exc) -> (status, body[, headers])`` for ``classes``, after every earlier rule."""

    def register(renderer: Renderer) -> Renderer:
        _RULES.extend((cls, renderer) for cls in classes)
        return renderer

    return register


def scaleway_error(status: int, body: dict[str, Any]) -> Response:
    return Response(body, status=status)


def error_response(exc: BaseException) -> Response | None:
    """The response for ``exc`` under the first matching rule, or None if no rule matches."""
    for cls, renderer in _RULES:
        if isinstance(exc, cls):
            status, body, *headers = renderer(exc)
            response = scaleway_error(status, body)
            for name, value in (headers[0] if headers else {}).items():
                response[name] = value
            return response
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    outage = api_outage_response(exc, context)  # a database or the shared cache is unreachable: 503
    if outage is not None:
        return outage  # type: ignore[no-any-return]
    response = error_response(exc)
    if response is not None:
        return response
    log.exception("unexpected error in %s", type(context.get("view")).__name__)
    return scaleway_error(500, {"type": "internal_error", "message": "internal error"})


# --- the project's own errors ----------------------------------------------------------------
@renders(HkmsError)
def _hkms(exc: HkmsError) -> Rendered:
    """Every app's errors: each carries its status and body (:mod:`hkms_core.errors`).

    A root key provider's text or a tampering report goes to the server log
    (``server_log``); the client gets the body, which never repeats it.
    """
    if exc.server_log is not None:
        level, text = exc.server_log
        log.log(level, text, exc)
    return exc.status, exc.as_scaleway()


# --- request errors (DRF and Django) ---------------------------------------------------------
@renders(RequestDataTooBig)
def _too_big(exc: RequestDataTooBig) -> Rendered:
    return 413, {"type": "invalid_request_error", "message": "request body is too large"}


#: DRF error codes -> Scaleway's reasons (anything else is a ``constraint``).
_REASONS = {
    "required": "required",
    "null": "required",
    "blank": "required",
    "invalid": "format",
    "not_a_string": "format",
    "not_a_list": "format",
    "not_a_dict": "format",
    "not_a_number": "format",
    "invalid_choice": "format",
    "date": "format",
    "datetime": "format",
    "parse_error": "format",
}


def flatten_validation(detail: Any, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """``(argument_name, reason, help_message)`` for every message in a DRF error tree.

    Nested serializers give dotted names (``rotation_policy.rotation_period``),
    list items their index (``tags.3``); a serializer's own errors
    (``non_field_errors``) are named after the serializer (the body itself:
    ``non_field_errors`` at the top).
    """
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = str(key)
            if name in ("non_field_errors", "__all__"):
                yield from flatten_validation(value, prefix or "non_field_errors")
            else:
                yield from flatten_validation(value, f"{prefix}.{name}" if prefix else name)
    elif isinstance(detail, list | tuple):
        if all(isinstance(item, str) for item in detail):  # ErrorDetail is a str
            for item in detail:
                yield from flatten_validation(item, prefix)
        else:  # one entry per list item (ListSerializer): empty ones were valid
            for index, item in enumerate(detail):
                if item:
                    yield from flatten_validation(item, f"{prefix}.{index}" if prefix else str(index))
    else:
        code = getattr(detail, "code", None) or "invalid"
        yield prefix or "non_field_errors", _REASONS.get(str(code), "constraint"), str(detail)


@renders(drf.ValidationError)
def _validation(exc: drf.ValidationError) -> Rendered:
    details = list(flatten_validation(exc.detail))
    if not details:
        details = [("non_field_errors", "constraint", "invalid request")]
    return 400, invalid_arguments_body(details)


@renders(drf.NotAuthenticated, drf.AuthenticationFailed)
def _unauthenticated(exc: drf.APIException) -> Rendered:
    body = {
        "type": "denied_authentication",
        "method": "api_key",
        "reason": "invalid_argument",
        "message": "authentication is denied",
    }
    return 401, body, {"WWW-Authenticate": "X-Auth-Token"}


@renders(drf.Throttled)
def _throttled(exc: drf.Throttled) -> Rendered:
    wait = getattr(exc, "wait", None)  # whole seconds (DRF rounds up), or None
    body = {
        "type": "quotas_exceeded",
        "message": "too many requests; retry later",
        "details": [{"resource": "requests", "wait": wait}],
    }
    return 429, body, ({"Retry-After": str(max(int(wait), 1))} if wait is not None else {})


NOT_FOUND = {"type": "not_found", "message": "resource is not found"}


@renders(Http404, drf.NotFound)
def _not_found(exc: Exception) -> Rendered:
    return 404, dict(NOT_FOUND)


def unknown_endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """No such endpoint under an API's prefix (a plain Django view, outside DRF): the same 404 body."""
    return JsonResponse(NOT_FOUND, status=404)


@renders(drf.PermissionDenied)
def _forbidden(exc: drf.PermissionDenied) -> Rendered:
    return 403, {"type": "permissions_denied", "message": "insufficient permissions"}


@renders(drf.MethodNotAllowed)
def _method(exc: drf.MethodNotAllowed) -> Rendered:
    return 405, {"type": "method_not_allowed", "message": str(exc.detail)}


@renders(drf.APIException)
def _request(exc: drf.APIException) -> Rendered:
    """Unparseable or too deep JSON (``ParseError``), unsupported media types, and the rest of DRF's."""
    return exc.status_code, {"type": "invalid_request_error", "message": str(exc.detail)}
