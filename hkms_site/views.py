"""Cross-cutting views: the health probe."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from keys_app.errors import HierarchyError
from keys_app.providers import get_provider
from keys_app.services.root import hierarchy_is_initialised


def health(request: HttpRequest) -> JsonResponse:
    """Liveness and seal state; no secret, no key material, no authentication needed."""
    try:
        initialised = hierarchy_is_initialised()
        sealed = get_provider().sealed
    except HierarchyError as exc:
        return JsonResponse({"status": "error", "message": str(exc)}, status=503)
    status = "ok" if initialised and not sealed else ("sealed" if sealed else "uninitialised")
    return JsonResponse(
        {"status": status, "initialised": initialised, "sealed": sealed}, status=200 if status == "ok" else 503
    )
