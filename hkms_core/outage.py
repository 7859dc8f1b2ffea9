"""A database (or shared cache) that cannot be reached answers 503, and the node recovers by itself.

What counts as *unavailable* (:func:`dependency_unavailable`), whatever wraps it
(Django's ``OperationalError``/``InterfaceError`` with the driver's error as
``__cause__``):

* PostgreSQL: a connection that cannot be made or was lost (psycopg
  ``OperationalError`` without SQLSTATE, ``InterfaceError``), SQLSTATE class
  ``08`` (connection exception), ``57P01``/``57P02``/``57P03`` (the server shuts
  down, crashed, or is starting, e.g. a standby being promoted), ``25006`` (a
  read-only transaction: connected to a standby), ``53300`` (too many connections);
* SQLite: ``database is locked`` (a writer held the lock past the busy timeout),
  ``unable to open database file``, ``disk I/O error``;
* Redis (the shared cache, when configured): connection errors and timeouts.

Anything else (a missing table, a constraint violation, a bug) is not an outage
and keeps its usual answer.

How it is answered:

* the REST API (``hkms_core.api.exceptions`` calls :func:`api_outage_response`):
  ``503 {"type": "service_unavailable", "message": …}`` with ``Retry-After``;
* anything that fails outside DRF (``handler500`` in ``hkms_site.urls`` is
  :func:`server_error`): on an API path the same JSON 503, on console pages a plain-text
  503 page, both with ``Retry-After``, never Django's HTML 500;
* one log line (``hkms.outage``, WARNING) per affected request, without a traceback.

How the node recovers (:class:`DatabaseOutageMiddleware`, first in ``MIDDLEWARE``):
after an outage answer every database connection of the thread is closed, so the
next use reconnects (with ``CONN_HEALTH_CHECKS`` on, which ``settings`` sets for every
PostgreSQL alias, a persistent connection is also pinged before its first use in
each request); and the request is run once more when that is safe — a read
(GET/HEAD/OPTIONS), or any request none of whose SQL statements had completed when
it failed (so nothing it did can have been committed: Django commits through
``connection.commit()``, which only follows a completed statement).  A write that
had completed a statement is never re-run: the client sees the 503 and decides.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connections
from django.db.utils import InterfaceError as DjangoInterfaceError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import server_error as default_server_error
from rest_framework.response import Response

log = logging.getLogger("hkms.outage")

#: Seconds a client is asked to wait before retrying (``Retry-After``).
RETRY_AFTER_SECONDS = 2
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Paths answered in Scaleway's JSON shape even when the failure happens outside DRF.
API_PREFIXES = ("/secret-manager/", "/key-manager/", "/api/")
_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "25006", "53300"})
_SQLITE_MESSAGES = ("database is locked", "unable to open database file", "disk i/o error")
_MARK = "_hkms_dependency_unavailable"


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis import exceptions as redis_exceptions  # local: only a redis:// cache loads the client
    except ImportError:  # redis is only needed with HKMS_CACHE_URL=redis://…
        return ()
    return (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError)


def _one_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, DjangoInterfaceError):
        return True
    redis_errors = _redis_errors()
    if redis_errors and isinstance(exc, redis_errors):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return any(text in message for text in _SQLITE_MESSAGES)
    try:
        import psycopg  # local: the PostgreSQL driver loads only when an error must be classified
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.Error):
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None:
            return isinstance(exc, psycopg.OperationalError)
        return sqlstate.startswith("08") or sqlstate in _SQLSTATES
    return False


def dependency_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) means a database or the cache is unreachable."""
    seen = 0
    while exc is not None and seen < 8:
        if _one_unavailable(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _summary(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


def _mark(response: HttpResponse, exc: BaseException) -> HttpResponse:
    """Tag an outage answer: Retry-After, the cause for the one log line, not logged again by Django."""
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    setattr(response, _MARK, _summary(exc))
    response._has_been_logged = True  # type: ignore[attr-defined]  # DatabaseOutageMiddleware logs it
    return response


def api_outage_response(exc: BaseException, context: dict[str, Any]) -> Any:
    """The REST API's 503 for an outage, or ``None`` when ``exc`` is not one (for the API exception handler)."""
    if not dependency_unavailable(exc):
        return None
    body = {"type": "service_unavailable", "message": "the service is temporarily unavailable; retry later"}
    return _mark(Response(body, status=503), exc)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a plain 503 for an outage, Django's default 500 page otherwise."""
    exc = sys.exc_info()[1]
    if dependency_unavailable(exc):
        assert exc is not None
        if request.path.startswith(API_PREFIXES):  # an API path outside DRF's handler (a middleware)
            response: HttpResponse = JsonResponse(
                {"type": "service_unavailable", "message": "the service is temporarily unavailable; retry later"},
                status=503,
            )
        else:
            response = HttpResponse(
                "503 Service Unavailable: a database is unreachable; retry in a moment.\n",
                status=503,
                content_type="text/plain; charset=utf-8",
            )
        return _mark(response, exc)
    return default_server_error(request)


def close_connections() -> None:
    """Drop every database connection of this thread (errors closing a dead one are ignored)."""
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            continue
        with contextlib.suppress(Exception):
            connection.close()


class _StatementCounter:
    """Counts SQL statements that completed, on every alias, while installed."""

    def __init__(self) -> None:
        self.completed = 0

    def __call__(self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        self.completed += 1
        return result

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(self))
            yield


class DatabaseOutageMiddleware:
    """Drop broken connections after an outage answer and run the request once more where safe."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        safe = request.method in SAFE_METHODS
        replayable = safe
        if not safe:
            try:
                request.body  # noqa: B018 - buffer the body so the request can be read twice
                replayable = True
            except Exception:  # too large, or a broken stream: the view answers it as usual
                replayable = False
        counter = _StatementCounter()
        if safe:  # re-run whatever happened: no need to count (and no cost on the read path)
            response = self.get_response(request)
        else:
            with counter.installed():
                response = self.get_response(request)
        cause = getattr(response, _MARK, None)
        if cause is None:
            return response
        close_connections()
        if not replayable or (not safe and counter.completed):
            log.warning("dependency unavailable: %s %s -> 503, not retried (%s)", request.method, request.path, cause)
            return response
        response = self.get_response(request)
        retry_cause = getattr(response, _MARK, None)
        if retry_cause is None:
            log.warning(
                "dependency unavailable: %s %s, served on fresh connections (%s)", request.method, request.path, cause
            )
        else:
            close_connections()
            log.warning(
                "dependency unavailable: %s %s -> 503 after one retry (%s)", request.method, request.path, retry_cause
            )
        return response
