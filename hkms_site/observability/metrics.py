"""Prometheus metrics of this process (and, under gunicorn, of its sibling workers).

Multi-process: under gunicorn or granian every worker is its own process, so counters are
kept in prometheus-client's **multiprocess mode** — each worker writes its
values to memory-mapped files in one directory and whichever worker answers a
scrape sums them all.  The directory is ``PROMETHEUS_MULTIPROC_DIR`` when the
operator sets it (it must then be emptied before the server starts), otherwise
``HKMS_DATA_DIR/metrics/<server>-<main process pid>`` (``gunicorn-…``, ``granian-…``),
made by the first worker and new for each server start, so no stale file from an earlier run is summed;
directories of masters that are gone are removed.  Outside such a server (runserver,
tests) the metrics live in this process only.  The choice must be made before
prometheus-client is first imported, hence at the top of this module, which is
the only one that imports it.

Cost on the request path: recording is a ``deque.append`` of a small tuple (thread-safe,
well under a microsecond); a daemon thread of each process applies the queue to the
prometheus-client metrics every :data:`FLUSH_SECONDS` (an update of a multiprocess value is
a lock and a write into a memory map: several microseconds, kept off the request; identical
observations are added up first, so one update per label set and second), and a
scrape first applies what the answering process has queued.  So /metrics may lag the other
workers by up to a second; counts are never lost, except those queued in the last second
of a process killed with SIGKILL.

Labels never carry a secret's name or id, a key id, a path or a user: routes are
URL pattern names, actions are audit action names, databases are aliases.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import shutil
import threading
import time
from collections import Counter as _Tally
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Count, Sum

from hkms_core.access.cache import principal_cache
from keys_app.models import RotationJob
from keys_app.processes import pid_alive
from keys_app.providers import get_provider
from keys_app.services.material import key_cache


def _server_worker() -> str | None:
    """The multi-process server this process is a worker of (``gunicorn``, ``granian``), if any."""
    if os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn"):  # set by gunicorn's master
        return "gunicorn"
    if multiprocessing.current_process().name == "granian-worker":  # granian's worker processes
        return "granian"
    return None


def _multiprocess_dir() -> str | None:
    explicit = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if explicit:
        return explicit
    server = _server_worker()
    if server is None:
        return None
    root = Path(settings.HKMS_DATA_DIR) / "metrics"
    path = root / f"{server}-{os.getppid()}"  # a worker's parent is the server's main process
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in [*root.glob("gunicorn-*"), *root.glob("granian-*")]:
        with contextlib.suppress(ValueError, OSError):
            pid = int(old.name.split("-", 1)[1])
            if pid != os.getppid() and not pid_alive(pid):  # that server is gone
                shutil.rmtree(old, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return str(path)


MULTIPROCESS_DIR = _multiprocess_dir()

from prometheus_client import (  # noqa: E402  (after the multiprocess decision above)
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

__all__ = ["CONTENT_TYPE_LATEST", "render"]

REQUESTS = Counter(
    "hkms_http_requests_total",
    "HTTP requests answered, by route (URL pattern name), method and status code.",
    ["route", "method", "status"],
)
AUDIT_EVENTS = Counter(
    "hkms_audit_events_total",
    "Audit events appended (in a transaction that may still roll back), by action and outcome.",
    ["action", "outcome"],
)
PAYLOAD_READS = Counter(
    "hkms_payload_reads_total",
    "Secret payload reads (audit action secret.version.access), by outcome (allowed, denied, failed).",
    ["outcome"],
)
DENIALS = Counter("hkms_denials_total", "Refused operations (audit outcome denied), by audit action.", ["action"])
AUDIT_APPEND_SECONDS = Histogram(
    "hkms_audit_append_duration_seconds",
    "Time to link and insert a batch of audit events (chain head lock, inserts, head move), commit excluded.",
    buckets=(0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CACHE_LOOKUPS = Counter(
    "hkms_cache_lookups_total",
    "Lookups in the per-process caches (key: unwrapped KEKs/DEKs; principal: API key principals), by result.",
    ["cache", "result"],
)
DATABASE_ERRORS = Counter(
    "hkms_database_errors_total",
    "Queries that raised a database error, by database alias and error class.",
    ["database", "error"],
)

PAYLOAD_READ_ACTION = "secret.version.access"
_request_children: dict[tuple[str, str, str], Any] = {}
_cache_children = {
    ("key", True): CACHE_LOOKUPS.labels("key", "hit"),
    ("key", False): CACHE_LOOKUPS.labels("key", "miss"),
    ("principal", True): CACHE_LOOKUPS.labels("principal", "hit"),
    ("principal", False): CACHE_LOOKUPS.labels("principal", "miss"),
}


FLUSH_SECONDS = 1.0
_queue: deque[tuple[Any, ...]] = deque()
_flusher_pid = 0
_flusher_lock = threading.Lock()


def _record(item: tuple[Any, ...]) -> None:
    """Queue one observation; the process's flusher thread applies it (started once per process)."""
    _queue.append(item)
    if _flusher_pid != os.getpid():
        _start_flusher()


def _start_flusher() -> None:
    global _flusher_pid
    with _flusher_lock:
        if _flusher_pid == os.getpid():
            return
        _flusher_pid = os.getpid()  # a forked child has no flusher thread: it starts its own
        threading.Thread(target=_flush_forever, name="hkms-metrics-flush", daemon=True).start()


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        flush()


def flush() -> None:
    """Apply every queued observation to the metrics (thread-safe: each item is popped once).

    Identical observations are added up first: one metric update per distinct label set
    and flush, whatever the request rate; only the audit latency is observed one by one.
    """
    counts: _Tally[tuple[Any, ...]] = _Tally()
    pop = _queue.popleft
    while True:
        try:
            item = pop()
        except IndexError:
            break
        if item[0] == "audit":
            AUDIT_APPEND_SECONDS.observe(item[2])
            counts.update(("audit_event", action, outcome) for action, outcome in item[1])
        else:
            counts[item] += 1
    for item, n in counts.items():
        _APPLY[item[0]](*item[1:], n=n)


atexit.register(flush)  # a worker that exits normally (gunicorn's SIGTERM, max_requests) flushes first


def request_observed(route: str, method: str, status: int) -> None:
    """One answered request (called by the middleware): queued, applied by the flusher."""
    _record(("request", route, method, status))


def _apply_request(route: str, method: str, status: int, *, n: int) -> None:
    key = (route, method, str(status))
    child = _request_children.get(key)
    if child is None:
        child = _request_children[key] = REQUESTS.labels(*key)
    child.inc(n)


def audit_appended(contents: Iterable[dict[str, Any]], seconds: float) -> None:
    """The audit log's observer (registered with ``hkms_core.metrics.set_audit_observer``): one batch appended."""
    _record(("audit", tuple((str(c.get("action", "")), str(c.get("outcome", ""))) for c in contents), seconds))


def _apply_audit_event(action: str, outcome: str, *, n: int) -> None:
    AUDIT_EVENTS.labels(action, outcome).inc(n)
    if action == PAYLOAD_READ_ACTION:
        PAYLOAD_READS.labels(outcome).inc(n)
    if outcome == "denied":
        DENIALS.labels(action).inc(n)


def cache_observer(cache: str) -> Callable[[bool], None]:
    """A callback for a cache's ``observer``: queues each lookup as a hit or a miss."""
    hit, miss = ("cache", cache, True), ("cache", cache, False)

    def observe(found: bool) -> None:
        _record(hit if found else miss)

    return observe


def _apply_cache(cache: str, found: bool, *, n: int) -> None:
    _cache_children[(cache, found)].inc(n)


def _apply_database_error(alias: str, error: str, *, n: int) -> None:
    DATABASE_ERRORS.labels(alias, error).inc(n)


_APPLY: dict[str, Callable[..., None]] = {
    "request": _apply_request,
    "audit_event": _apply_audit_event,
    "cache": _apply_cache,
    "database_error": _apply_database_error,
}


def count_database_errors(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: wrap the connection's queries to count their errors."""
    if any(getattr(w, "hkms_counts_errors", False) for w in connection.execute_wrappers):
        return
    alias = connection.alias

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        try:
            return execute(sql, params, many, context)
        except Exception as exc:
            _record(("database_error", alias, type(exc).__name__))
            exc.hkms_counted = True  # type: ignore[attr-defined]
            raise

    wrapper.hkms_counts_errors = True  # type: ignore[attr-defined]
    connection.execute_wrappers.append(wrapper)


class StateCollector(Collector):
    """Gauges read when scraped (by the worker that answers): seal state, rotation jobs, cache sizes."""

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registering must not run collect(): that reads the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._databases()
        yield from self._seal()
        yield from self._jobs()
        yield from self._caches()

    def _databases(self) -> Iterator[GaugeMetricFamily]:
        """``SELECT 1`` on each database: a connection refused is an error no query wrapper sees."""
        up = GaugeMetricFamily(
            "hkms_database_up", "1 when the database answered SELECT 1 at this scrape.", labels=["database"]
        )
        for alias in connections:
            try:
                with connections[alias].cursor() as cursor:
                    cursor.execute("SELECT 1")
                up.add_metric([alias], 1)
            except Exception as exc:
                if not getattr(exc, "hkms_counted", False):
                    _record(("database_error", alias, type(exc).__name__))
                up.add_metric([alias], 0)
        flush()
        yield up

    def _seal(self) -> Iterator[GaugeMetricFamily]:
        sealed = GaugeMetricFamily("hkms_root_key_sealed", "1 when the root key provider is sealed, else 0.")
        info = GaugeMetricFamily(
            "hkms_root_key_provider", "The root key provider in use (value 1).", labels=["provider"]
        )
        info.add_metric([str(settings.HKMS_ROOT_KEY_PROVIDER)], 1)
        up = GaugeMetricFamily("hkms_root_key_status_ok", "1 when the provider's state could be read, else 0.")
        try:
            sealed.add_metric([], 1 if get_provider().sealed else 0)
            up.add_metric([], 1)
        except Exception:
            up.add_metric([], 0)
        yield from (sealed, info, up)

    def _jobs(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("hkms_rotation_jobs", "Rotation jobs, by kind and state.", labels=["kind", "state"])
        processed = GaugeMetricFamily(
            "hkms_rotation_jobs_processed", "Items done by the running rotation jobs, by kind.", labels=["kind"]
        )
        total = GaugeMetricFamily(
            "hkms_rotation_jobs_total_items", "Items to do in the running rotation jobs, by kind.", labels=["kind"]
        )
        try:
            rows = RotationJob.objects.values("kind", "state").annotate(
                n=Count("id"), done=Sum("processed"), todo=Sum("total")
            )
            for row in rows:
                jobs.add_metric([row["kind"], row["state"]], row["n"])
                if row["state"] == RotationJob.State.RUNNING:
                    processed.add_metric([row["kind"]], row["done"] or 0)
                    total.add_metric([row["kind"]], row["todo"] or 0)
        except Exception as exc:  # the kek database is down: say so in the error counter, skip the gauges
            if not getattr(exc, "hkms_counted", False):
                _record(("database_error", "kek", type(exc).__name__))
        yield from (jobs, processed, total)

    def _caches(self) -> Iterator[GaugeMetricFamily]:
        size = GaugeMetricFamily(
            "hkms_cache_entries", "Entries in the caches of the worker that answered.", labels=["cache"]
        )
        size.add_metric(["key"], len(key_cache()))
        size.add_metric(["principal"], len(principal_cache()))
        yield size


_state = StateCollector()
if MULTIPROCESS_DIR is None:
    REGISTRY.register(_state)


def render() -> bytes:
    """The exposition text: every worker's counters (multiprocess mode) plus this worker's state gauges."""
    flush()
    if MULTIPROCESS_DIR is None:
        return bytes(generate_latest(REGISTRY))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
    registry.register(_state)
    return bytes(generate_latest(registry))
