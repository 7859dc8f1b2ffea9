"""Structured JSON logs (``HKMS_LOG_FORMAT=json``): one JSON object per line.

Fields: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``request_id``
(when the record was made while serving a request), the request line's ``route``,
``method``, ``status`` and ``duration_ms``, and ``exception`` (the formatted
traceback) when there is one.  Nothing else from a record's ``extra`` is written:
Django's request logger attaches the request object (headers, cookies, the
``X-Auth-Token``) and it never reaches the output.  The request line names the
URL pattern, not the path, so no secret name or id is logged by it.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("hkms_request_id", default="")
#: Whether the middleware writes one ``hkms.request`` line per request (set from settings: JSON logs).
REQUEST_LINES = False
_REQUEST_FIELDS = ("route", "method", "status", "duration_ms")


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (empty outside a request); works with any formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = _request_id(record)
        return True


def _request_id(record: logging.LogRecord) -> str:
    # Django logs 4xx/5xx answers (django.request) after the middleware has returned, with the
    # request attached: its id is the one the middleware put into META.
    meta = getattr(getattr(record, "request", None), "META", None)
    if isinstance(meta, dict) and meta.get("HTTP_X_REQUEST_ID"):
        return str(meta["HTTP_X_REQUEST_ID"])
    return REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "") or _request_id(record)
        if rid:
            entry["request_id"] = rid
        for name in _REQUEST_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(*, fmt: str, level: str) -> dict[str, object]:
    """The ``LOGGING`` dict for ``HKMS_LOG_FORMAT`` ``text`` (default) or ``json``."""
    global REQUEST_LINES
    json_logs = fmt == "json"
    REQUEST_LINES = json_logs
    formatter = (
        {"()": "hkms_site.observability.logs.JsonFormatter"}
        if json_logs
        else {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "hkms_site.observability.logs.RequestIdFilter"}},
        "formatters": {"hkms": formatter},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "hkms", "filters": ["request_id"]},
        },
        "root": {"handlers": ["console"], "level": level},
    }
