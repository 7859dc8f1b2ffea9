"""HKMS's WSGI application plus probe routes, for the multi-worker seal test only.

Every response carries ``X-Probe-Pid`` (the worker that answered), so the
test can tell that *each* gunicorn worker serves secrets after an unseal and
refuses after a seal.  ``POST /_probe/seed`` writes a secret through the
services; ``GET /_probe/read?id=…`` reads its payload (503 with the error
code when the hierarchy refuses); ``GET /_probe/meta`` counts secrets
(metadata only, which must keep working while sealed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hkms_site.settings")

from django.core.wsgi import get_wsgi_application

_django = get_wsgi_application()


def _respond(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps({**body, "pid": os.getpid()}).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("X-Probe-Pid", str(os.getpid()))],
    )
    return [data]


def _probe(path: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    from keys_app.errors import HierarchyError
    from keys_app.services.projects import project_create_with_default_key as project_create
    from secrets_app.models import Secret, SecretVersion
    from secrets_app.storage import secret_create, secret_version_create, secret_version_payload

    try:
        if path == "/_probe/seed" and environ["REQUEST_METHOD"] == "POST":
            project = project_create(name="probe")
            secret = secret_create(project=project, name="probe-secret")
            version = secret_version_create(secret=secret, data=b"probe payload")
            return _respond(start_response, "200 OK", {"id": str(version.id)})
        if path == "/_probe/read":
            version_id = parse_qs(environ.get("QUERY_STRING", ""))["id"][0]
            version = SecretVersion.objects.select_related("secret__key").get(id=version_id)
            return _respond(start_response, "200 OK", {"payload": secret_version_payload(version).decode()})
        if path == "/_probe/meta":
            return _respond(start_response, "200 OK", {"secrets": Secret.objects.count()})
    except HierarchyError as exc:
        return _respond(start_response, "503 Service Unavailable", {"error": exc.code})
    return _respond(start_response, "404 Not Found", {})


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path.startswith("/_probe/"):
        from django.db import close_old_connections

        close_old_connections()
        try:
            return _probe(path, environ, start_response)
        finally:
            close_old_connections()

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, ("X-Probe-Pid", str(os.getpid()))], exc_info)

    return _django(environ, start)
