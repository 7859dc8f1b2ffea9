"""Cross-cutting views: the health probes.

* ``/health/live`` — liveness: the process answers; touches no database (200 always).
  A load balancer or supervisor restarts a node that fails it.
* ``/health/ready`` and ``/health`` (the same answer; ``/health`` kept for existing
  probes) — readiness: 200 only when this node can serve secrets now, 503 otherwise,
  always JSON::

      {"status": "ok" | "sealed" | "uninitialised" | "unavailable" | "root_key_unavailable" | "error",
       "initialised": bool, "sealed": bool,
       "databases": {"default": "ok" | "unavailable", "kek": …, "dek": …},
       "root_key": {"version": n, "available": bool}}

  ``root_key.available`` says whether this node can use the *current* REK version (it
  holds it and its check value matches the kek database): a node left with an old copy
  of a keyring after a rotation, or sealed, is not ready.  No secret, no key material,
  no file path, no authentication needed.  Load balancers route on readiness.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections
from django.http import HttpRequest, JsonResponse

from hkms_core.outage import close_connections, dependency_unavailable
from keys_app.errors import HierarchyError
from keys_app.models import RootKeyVersion
from keys_app.providers import get_provider
from keys_app.services.root import rek_check

log = logging.getLogger("hkms.health")
ALIASES = ("default", "kek", "dek")


def _database_state(alias: str) -> str:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:
        if not dependency_unavailable(exc):
            log.warning("health: database %s: %s", alias, type(exc).__name__)
        return "unavailable"


def _root_key_state() -> tuple[bool, dict[str, Any]]:
    """(initialised, {"version", "available"}) for the current REK version, as this node sees it."""
    current = RootKeyVersion.objects.using("kek").filter(state=RootKeyVersion.State.ACTIVE).order_by("-version").first()
    if current is None:
        return False, {"version": None, "available": False}
    if get_provider(current.provider).sealed:
        return True, {"version": current.version, "available": False}
    try:
        rek_check(current)
        available = True
    except HierarchyError as exc:
        log.warning("health: root key version %s is not usable on this node: %s", current.version, exc)
        available = False
    return True, {"version": current.version, "available": available}


def readiness() -> tuple[int, dict[str, Any]]:
    databases = {alias: _database_state(alias) for alias in ALIASES}
    body: dict[str, Any] = {
        "status": "ok",
        "initialised": False,
        "sealed": False,
        "databases": databases,
        "root_key": {"version": None, "available": False},
    }
    if any(state != "ok" for state in databases.values()):
        close_connections()
        body["status"] = "unavailable"
        return 503, body
    try:
        body["sealed"] = bool(get_provider().sealed)
        body["initialised"], body["root_key"] = _root_key_state()
    except HierarchyError as exc:
        log.warning("health: %s", exc)
        body["status"] = "root_key_unavailable"
        return 503, body
    except Exception as exc:  # never an HTML 500 from a probe
        if dependency_unavailable(exc):
            close_connections()
            body["status"] = "unavailable"
        else:
            log.exception("health: unexpected error")
            body["status"] = "error"
        return 503, body
    if not body["initialised"]:
        body["status"] = "uninitialised"
    elif body["sealed"]:
        body["status"] = "sealed"
    elif not body["root_key"]["available"]:
        body["status"] = "root_key_unavailable"
    return (200 if body["status"] == "ok" else 503), body


def health(request: HttpRequest) -> JsonResponse:
    """Readiness (see the module docstring); kept at ``/health`` for existing probes."""
    status, body = readiness()
    response = JsonResponse(body, status=status)
    response._has_been_logged = True  # type: ignore[attr-defined]  # a probe every few seconds: logged above, once
    return response


def health_live(request: HttpRequest) -> JsonResponse:
    """Liveness: this process answers HTTP.  No database, no provider."""
    return JsonResponse({"status": "alive"})
