"""drf-spectacular post-processing: document the error answers every API operation can give.

Views document their success bodies; the exception handler
(:mod:`hkms_core.api.exceptions`) gives every operation the same error answers,
so they are added here once: ``4XX`` (any client error, in Scaleway's shape) and
``503`` (sealed or uninitialised root key), both with the ``ScalewayError`` body.
A 5xx other than 503 is a bug, and stays undocumented.
"""

from __future__ import annotations

from typing import Any

_API_PREFIXES = ("/secret-manager/", "/key-manager/")
_METHODS = ("get", "put", "post", "patch", "delete")

SCALEWAY_ERROR: dict[str, Any] = {
    "type": "object",
    "description": "Scaleway's error shape (see docs/api.md, Errors). Other members depend on `type`.",
    "properties": {
        "type": {"type": "string", "example": "invalid_arguments"},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": True},
            "description": "invalid_arguments: [{argument_name, reason, help_message}]; "
            "permissions_denied: [{resource, resource_id, action}]",
        },
        "fields": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "invalid_arguments: messages by argument name",
        },
    },
    "required": ["type", "message"],
    "additionalProperties": True,
}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["ScalewayError"] = SCALEWAY_ERROR
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/ScalewayError"}}}
    errors = {
        "4XX": {"description": "Client error, in Scaleway's shape", "content": reference},
        "503": {"description": "The root key is sealed or not initialised", "content": reference},
    }
    for path, operations in result.get("paths", {}).items():
        if not path.startswith(_API_PREFIXES):
            continue
        for method, operation in operations.items():
            if method in _METHODS:
                responses = operation.setdefault("responses", {})
                for code, response in errors.items():
                    responses.setdefault(code, response)
    return result
