"""Render every error in Scaleway's JSON shape; never a traceback.

* ``ServiceError`` subclasses carry their own status and ``type``;
* hierarchy errors (disabled key, destroyed material, tampered data, sealed
  root key) map to 412 / 410 / 500 / 503 with a clear message;
* DRF's validation errors become ``{"message": "Validation Error", "fields": …}``;
* anything unexpected is logged server-side (without request data) and
  answered with a generic 500 body.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from hkms_site.errors import ServiceError
from hkms_site.outage import api_outage_response
from keys_app import errors as hierarchy
from keys_app.services.seal import ShareRefused, public_root_key_message

log = logging.getLogger("hkms.api")

_HIERARCHY_STATUS: list[tuple[type[Exception], int, str]] = [
    (ShareRefused, 400, "invalid_arguments"),
    (hierarchy.KeyDisabled, 412, "precondition_failed"),
    (hierarchy.KeyMaterialUnavailable, 410, "resource_expired"),
    (hierarchy.RootKeyError, 503, "sealed"),
    (hierarchy.NotInitialised, 503, "sealed"),
    (hierarchy.IntegrityError, 500, "integrity_error"),
]


def scaleway_error(status: int, body: dict[str, Any]) -> Response:
    return Response(body, status=status)


def _validation_fields(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in detail.items()}
    return {"non_field_errors": [str(m) for m in (detail if isinstance(detail, list) else [detail])]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    outage = api_outage_response(exc, context)  # a database or the shared cache is unreachable: 503
    if outage is not None:
        return outage  # type: ignore[no-any-return]
    if isinstance(exc, ServiceError):
        return scaleway_error(exc.status, exc.as_scaleway())
    for cls, status, kind in _HIERARCHY_STATUS:
        if isinstance(exc, cls):
            if status >= 500 and kind != "sealed":
                log.error("hierarchy integrity failure: %s", exc)
            message = str(exc)
            if kind == "sealed":  # the provider's text may name a key file or module: log it, say the state
                log.warning("root key unavailable: %s", exc)
                message = public_root_key_message(exc)
            return scaleway_error(status, {"type": kind, "message": message})
    if isinstance(exc, RequestDataTooBig):
        return scaleway_error(413, {"type": "invalid_request_error", "message": "request body is too large"})
    if isinstance(exc, drf.ValidationError):
        return scaleway_error(
            400, {"message": "Validation Error", "type": "invalid_arguments", "fields": _validation_fields(exc.detail)}
        )
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        response = scaleway_error(
            401,
            {
                "type": "denied_authentication",
                "method": "api_key",
                "reason": "invalid_argument",
                "message": "authentication is denied",
            },
        )
        response["WWW-Authenticate"] = "X-Auth-Token"
        return response
    if isinstance(exc, drf.Throttled):
        wait = getattr(exc, "wait", None)  # whole seconds (DRF rounds up), or None
        response = scaleway_error(
            429,
            {
                "type": "quotas_exceeded",
                "message": "too many requests; retry later",
                "details": [{"resource": "requests", "wait": wait}],
            },
        )
        if wait is not None:
            response["Retry-After"] = str(max(int(wait), 1))
        return response
    if isinstance(exc, Http404 | drf.NotFound):
        return scaleway_error(404, {"type": "not_found", "message": "resource is not found"})
    if isinstance(exc, drf.PermissionDenied):
        return scaleway_error(403, {"type": "permissions_denied", "message": "insufficient permissions"})
    if isinstance(exc, drf.MethodNotAllowed):
        return scaleway_error(405, {"type": "method_not_allowed", "message": str(exc.detail)})
    if isinstance(exc, drf.UnsupportedMediaType | drf.ParseError | drf.NotAcceptable):
        return scaleway_error(exc.status_code, {"type": "invalid_request_error", "message": str(exc.detail)})
    if isinstance(exc, drf.APIException):
        return scaleway_error(exc.status_code, {"type": "invalid_request_error", "message": str(exc.detail)})
    log.exception("unexpected error in %s", type(context.get("view")).__name__)
    return scaleway_error(500, {"type": "internal_error", "message": "internal error"})
