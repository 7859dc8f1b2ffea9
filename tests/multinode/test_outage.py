"""A database that cannot be reached answers 503 (API: Scaleway's shape; console: a plain page;
/health: JSON), never a 500, and the next request after it comes back is served again.  On
PostgreSQL, a persistent connection that the server dropped is replaced and the request re-run:
a read, and a write none of whose statements had reached the server, succeed once."""

from __future__ import annotations

import base64
import json
import socket

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from hkms_core.outage import dependency_unavailable
from secrets_app.models import Secret

pytestmark = [
    pytest.mark.usefixtures("clear_throttles"),
    pytest.mark.django_db(databases=["default", "kek", "dek"], transaction=True),
]
BASE = "/secret-manager/v1beta1/regions/fr-par"


def api_client(project) -> APIClient:
    operator = Principal.for_command()
    user = get_user_model().objects.create_user("owner")
    role_grant(principal=operator, user=user, role="project_admin", obj=project)
    issued = api_key_create(principal=operator, user=user, project=project)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=issued.secret_key)
    return client


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable():
    """``unreachable(alias)`` points the alias at nothing (a closed port, or a file that cannot be
    opened) until ``restore()``; the real driver fails to connect."""
    saved: dict[str, dict] = {}

    def cut(alias: str) -> None:
        connection = connections[alias]
        saved[alias] = dict(connection.settings_dict)
        connection.close()
        if connection.vendor == "postgresql":
            connection.settings_dict["PORT"] = str(_closed_port())
        else:
            connection.settings_dict["NAME"] = "/nonexistent-hkms-dir/unreachable.sqlite3"

    def restore() -> None:
        for alias, settings_dict in saved.items():
            connections[alias].close()
            connections[alias].settings_dict.update(settings_dict)
        saved.clear()

    cut.restore = restore  # type: ignore[attr-defined]
    yield cut
    restore()


def test_an_unreachable_database_is_a_503_everywhere_and_the_node_recovers(project, unreachable, caplog):
    api = api_client(project)
    assert api.get(f"{BASE}/secrets").status_code == 200
    for alias in ("default", "dek"):
        unreachable(alias)
        if alias == "default":
            listed = api.get(f"{BASE}/secrets")
        else:  # the dek database is first needed to write a version
            secret = Secret.objects.using("default").first() or None
            assert secret is None
            listed = api.post(
                f"{BASE}/secrets",
                data=json.dumps({"name": "s", "project_id": str(project.id)}),
                content_type="application/json",
            )
            assert listed.status_code == 200, listed.content
            listed = api.post(
                f"{BASE}/secrets/{listed.json()['id']}/versions",
                data=json.dumps({"data": base64.b64encode(b"x").decode()}),
                content_type="application/json",
            )
        assert listed.status_code == 503, listed.content
        assert listed.json() == {
            "type": "service_unavailable",
            "message": "the service is temporarily unavailable; retry later",
        }
        assert int(listed["Retry-After"]) >= 1
        unreachable.restore()
    unreachable("default")
    health = APIClient().get("/health")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    page = APIClient(raise_request_exception=False).post("/admin/login/", {"username": "owner", "password": "not-this"})
    assert page.status_code == 503
    assert page["Content-Type"].startswith("text/plain") and page["Retry-After"]
    assert b"<html" not in page.content.lower()
    outage_lines = [r for r in caplog.records if r.name == "hkms.outage" and "-> 503" in r.getMessage()]
    assert outage_lines and all(r.exc_info is None for r in outage_lines)
    assert not [r for r in caplog.records if r.name == "django.request" and r.levelname == "ERROR"]
    unreachable.restore()
    assert api.get(f"{BASE}/secrets").status_code == 200
    assert APIClient().get("/health").status_code == 200
    assert APIClient().get("/admin/login/").status_code == 200


def _as_django(driver_error: Exception) -> Exception:
    """What Django raises: its own class of the same name, the driver's error as ``__cause__``."""
    from django.db import utils

    try:
        try:
            raise driver_error
        except Exception as exc:
            raise getattr(utils, type(exc).__mro__[1].__name__, utils.OperationalError)(str(exc)) from exc
    except Exception as wrapped:
        return wrapped


def test_other_database_errors_are_not_outages():
    import sqlite3

    from django.db.utils import IntegrityError

    assert not dependency_unavailable(IntegrityError("duplicate key"))
    assert not dependency_unavailable(_as_django(sqlite3.OperationalError("no such table: x")))
    assert dependency_unavailable(_as_django(sqlite3.OperationalError("database is locked")))
    assert not dependency_unavailable(_as_django(psycopg.errors.UndefinedTable("relation does not exist")))
    assert not dependency_unavailable(_as_django(psycopg.errors.QueryCanceled("statement timeout")))
    assert dependency_unavailable(_as_django(psycopg.errors.AdminShutdown("terminating connection")))
    assert dependency_unavailable(_as_django(psycopg.errors.ReadOnlySqlTransaction("read-only transaction")))
    assert dependency_unavailable(_as_django(psycopg.OperationalError("connection failed: refused")))


def _terminate_backends_of(alias: str) -> None:
    """Kill the server side of this thread's persistent connection (as a failover or restart does)."""
    connection = connections[alias]
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params.pop("server_side_binding", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_dropped_connection_is_replaced_and_safe_requests_are_rerun(project):
    if connections["default"].vendor != "postgresql":
        pytest.skip("a server-side connection drop is a PostgreSQL matter")
    api = api_client(project)
    assert api.get(f"{BASE}/secrets").status_code == 200
    _terminate_backends_of("default")
    assert api.get(f"{BASE}/secrets").status_code == 200  # a read: re-run on a fresh connection
    _terminate_backends_of("default")
    created = api.post(
        f"{BASE}/secrets",
        data=json.dumps({"name": "after-drop", "project_id": str(project.id)}),
        content_type="application/json",
    )
    assert created.status_code == 200, created.content  # its first statement never reached the server
    assert Secret.objects.filter(name="after-drop").count() == 1


def test_an_outage_outside_drf_on_an_api_path_is_json(project, unreachable, settings):
    """A middleware (here the cluster seal check) meets the outage before DRF does."""
    from keys_app.cluster_seal import forget_seen_epoch

    api = api_client(project)
    settings.HKMS_ROOT_KEY_PROVIDER = "shamir"
    settings.HKMS_SEAL_CHECK_SECONDS = 0
    forget_seen_epoch()
    api.raise_request_exception = False
    unreachable("default")
    try:
        refused = api.get(f"{BASE}/secrets")
    finally:
        unreachable.restore()
        forget_seen_epoch()
    assert refused.status_code == 503 and refused["Retry-After"]
    assert refused.json() == {
        "type": "service_unavailable",
        "message": "the service is temporarily unavailable; retry later",
    }
