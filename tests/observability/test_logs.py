"""HKMS_LOG_FORMAT=json: one JSON object per log line with the request id (an incoming
X-Request-Id is kept when well formed, else replaced), returned in the X-Request-Id header and
recorded in the request's audit event; never a payload or a token in the log."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from hkms_core.audit.models import AuditEvent
from hkms_site.observability import logs
from hkms_site.observability.middleware import request_id_of
from tests.observability.test_metrics import BASE, _api_user


@pytest.fixture
def json_log(settings, monkeypatch):
    """Switch logging to the JSON configuration and capture what the root handler writes."""
    logging.config.dictConfig(logs.logging_config(fmt="json", level="INFO"))
    buffer = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    monkeypatch.setattr(logs, "REQUEST_LINES", False)
    logging.config.dictConfig(settings.LOGGING)


def records(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]  # every line is JSON


def test_request_ids_are_kept_only_when_well_formed():
    assert request_id_of("trace-abc-123") == "trace-abc-123"
    for bad in ("", "a b", "x" * 65, 'id\n{"level": "forged"}', "é-id", "a;b"):
        assert request_id_of(bad) != bad and len(request_id_of(bad)) == 32


@pytest.mark.usefixtures("clear_throttles")
@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_json_lines_carry_the_request_id_and_no_secret(json_log, project, make_secret):
    secret = make_secret(b"payload-never-logged", name="logged-secret")
    reader, token = _api_user(project, "secret_reader", "log-reader")
    response = reader.get(f"{BASE}/secrets/{secret.id}/versions/1/access", HTTP_X_REQUEST_ID="trace-log-1")
    assert response.status_code == 200 and response["X-Request-Id"] == "trace-log-1"
    event = AuditEvent.objects.filter(action="secret.version.access").latest("seq")
    assert event.request_id == "trace-log-1"  # the audit event and the log line share the id

    missing = reader.get(f"{BASE}/secrets/00000000-0000-0000-0000-000000000000")  # a 404: Django logs a warning
    generated = missing["X-Request-Id"]
    assert missing.status_code == 404 and len(generated) == 32

    lines = records(json_log)
    first = [r for r in lines if r.get("request_id") == "trace-log-1"]
    assert any(r["logger"] == "hkms.request" and r["status"] == 200 and "secret_id" in r["route"] for r in first)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in lines)
    assert any(r.get("request_id") == generated and r["level"] == "WARNING" for r in lines)
    text = json_log.getvalue()
    for leak in ("payload-never-logged", token, "logged-secret", str(secret.id)):
        assert leak not in text, leak


def test_a_logged_exception_is_one_json_line(json_log):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("hkms.test").exception("failed")
    (entry,) = records(json_log)
    assert entry["message"] == "failed" and "ValueError: boom" in entry["exception"] and "request_id" not in entry
