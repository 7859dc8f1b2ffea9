"""The project's one error hierarchy, shaped after Scaleway's API errors.

Every error the code raises on purpose derives from :class:`HkmsError`, which
carries all the REST layer needs to answer it: the HTTP ``status``, Scaleway's
``type``, the ``message`` and extra body fields (``details``), whether a retry
may succeed (``retryable``: an outage, a busy job) and what, if anything, goes
to the server log (``server_log``).  So the one exception handler
(:mod:`hkms_core.api.exceptions`) renders any of them without knowing the app
that raised it; the apps' families derive from it:

* :class:`ServiceError` (this module): a refused request (not found,
  permission, invalid argument, precondition, conflict), and ``secrets_app``'s
  ``Expired``;
* ``keys_app.errors.HierarchyError``: disabled key, destroyed material, sealed
  or unavailable root key (503), tampered data (500), a busy rotation job (409),
  a refused custodian share;
* ``secrets_app.storage.SecretError``: the key a secret would be sealed with is
  not usable for it.

``ServiceError`` and ``HierarchyError`` stay siblings: code that catches one of
them does not catch the other.  Commands render any of them as a one-line
``CommandError``, the console as an inline message.  Messages never contain
payloads or keys (a root key provider's text, which may name a file or a module,
is only logged: :meth:`HkmsError.as_scaleway` says the state in words).
"""

from __future__ import annotations

import uuid
from typing import Any


class HkmsError(Exception):
    """The root of the hierarchy: an error with its Scaleway answer.

    Subclasses set ``status`` and ``type`` and, when the body is not
    ``{"type", "message", **details}``, override :meth:`as_scaleway`.
    """

    status = 500
    type = "internal_error"
    #: True when the same request may succeed later (sealed, root key unreachable, job busy).
    retryable = False
    #: ``(level, format)`` to log ``str(exc)`` with on the server when the handler answers it, or None.
    server_log: tuple[int, str] | None = None

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_scaleway(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, **self.details}


class ServiceError(HkmsError):
    """A request a service refuses (400 unless a subclass says otherwise)."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, **details)


class ObjectNotFound(ServiceError):
    """The object does not exist *or the caller may not see it* (never a 403, so ids cannot be probed)."""

    status = 404
    type = "not_found"

    def __init__(self, resource: str, resource_id: object) -> None:
        super().__init__(f"{resource} {resource_id} not found", resource=resource, resource_id=str(resource_id))


class PermissionDenied(ServiceError):
    """The caller can see the object but may not perform this action on it."""

    status = 403
    type = "permissions_denied"

    def __init__(self, action: str, resource: str = "", resource_id: object = "") -> None:
        super().__init__(
            "insufficient permissions",
            details=[{"resource": resource, "resource_id": str(resource_id), "action": action}],
        )


class Unauthenticated(ServiceError):
    status = 401
    type = "denied_authentication"

    def __init__(self) -> None:
        super().__init__("authentication is denied", method="api_key", reason="invalid_argument")


#: Scaleway's ``reason`` values for an invalid argument (the SDKs word each one).
REASONS = ("required", "format", "constraint", "unknown")
VALIDATION_MESSAGE = "Validation Error"


def invalid_arguments_body(details: list[tuple[str, str, str]], message: str = VALIDATION_MESSAGE) -> dict[str, Any]:
    """The one body of every ``invalid_arguments`` answer, from ``(argument_name, reason, help_message)``.

    Scaleway's shape (``details``: the TypeScript SDK raises ``InvalidArgumentsError``
    from it) plus ``fields`` (name -> messages).  With the default ``message``
    ("Validation Error", request bodies and parameters that do not fit their
    serializer) the Python SDK raises ``scaleway_core.api.ValidationError``; a
    service's own check says what is wrong in ``message`` and the Python SDK
    raises its base ``ScalewayException``, as it does for Scaleway's own
    ``invalid argument(s)``.  Names are dotted paths into the request
    (``rotation_policy.rotation_period``, ``tags.3``); messages are plain
    sentences, never a Python repr.
    """
    fields: dict[str, list[str]] = {}
    for name, _reason, help_message in details:
        fields.setdefault(name, []).append(help_message)
    return {
        "type": "invalid_arguments",
        "message": message,
        "details": [{"argument_name": n, "reason": r, "help_message": m} for n, r, m in details],
        "fields": fields,
    }


class InvalidArgument(ServiceError):
    """One argument is invalid; rendered as Scaleway's validation error (:func:`invalid_arguments_body`)."""

    status = 400
    type = "invalid_arguments"

    def __init__(self, field: str, reason: str, *, kind: str = "constraint") -> None:
        super().__init__(f"invalid argument {field}: {reason}")
        self.field = field
        self.reason = reason
        self.kind = kind

    def as_scaleway(self) -> dict[str, Any]:
        return invalid_arguments_body([(self.field, self.kind, self.reason)], self.message)


def parse_uuid(raw: Any, argument_name: str) -> uuid.UUID:
    """``raw`` as a UUID, or :class:`InvalidArgument` naming ``argument_name`` (``"must be a UUID"``).

    One rule for both APIs, in the path and in the body: a malformed id is a 400
    ``invalid_arguments``, as Scaleway answers (its SDKs say "``secret_id`` is
    wrongly formatted, value must be a valid UUID"); a well-formed id of an
    object that does not exist, or that the caller may not see, is the uniform
    404.  This is no existence oracle: whether a string is a UUID says nothing
    about any object.  (Until issue 13 the Secret Manager answered 404 for a
    malformed secret or project id and the Key Manager 400.)
    """
    try:
        return uuid.UUID(str(raw))
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(argument_name, "must be a UUID") from None


class PreconditionFailed(ServiceError):
    status = 412
    type = "precondition_failed"

    def __init__(self, precondition: str, message: str) -> None:
        super().__init__(message, precondition=precondition, help_message=message)


class Conflict(ServiceError):
    status = 409
    type = "conflict"


class Sealed(ServiceError):
    status = 503
    type = "sealed"
    retryable = True

    def __init__(self, message: str = "the service is sealed: root key custodians must unseal it") -> None:
        super().__init__(message)
