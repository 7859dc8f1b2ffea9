"""Prometheus metrics of this process (and, under gunicorn, of its sibling workers).

Multi-process: under gunicorn every worker is its own process, so counters are
kept in prometheus-client's **multiprocess mode** — each worker writes its
values to memory-mapped files in one directory and whichever worker answers a
scrape sums them all.  The directory is ``PROMETHEUS_MULTIPROC_DIR`` when the
operator sets it (it must then be emptied before the server starts), otherwise
``HKMS_DATA_DIR/metrics/gunicorn-<master pid>``, made by the first worker and
new for each gunicorn master, so no stale file from an earlier run is summed;
directories of masters that are gone are removed.  Outside gunicorn (runserver,
tests) the metrics live in this process only.  The choice must be made before
prometheus-client is first imported, hence at the top of this module, which is
the only one that imports it.

Labels never carry a secret's name or id, a key id, a path or a user: routes are
URL pattern names, actions are audit action names, databases are aliases.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings


def _multiprocess_dir() -> str | None:
    explicit = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if explicit:
        return explicit
    if not os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
        return None
    root = Path(settings.HKMS_DATA_DIR) / "metrics"
    path = root / f"gunicorn-{os.getppid()}"  # a worker's parent is the gunicorn master
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in root.glob("gunicorn-*"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(old.name.split("-", 1)[1])
            if pid != os.getppid() and not _alive(pid):
                shutil.rmtree(old, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return str(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
REQUEST_SECONDS = Histogram(
    "hkms_http_request_duration_seconds",
    "Time to answer a request, by interface (secret_manager, key_manager, console, api, health, metrics, other).",
    ["interface"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
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
_INTERFACES = (
    ("/secret-manager/", "secret_manager"),
    ("/key-manager/", "key_manager"),
    ("/admin/", "console"),
    ("/api/", "api"),
    ("/health", "health"),
    ("/metrics", "metrics"),
)
_request_children: dict[tuple[str, str, str], Any] = {}
_duration_children: dict[str, Any] = {}
_cache_children = {
    ("key", True): CACHE_LOOKUPS.labels("key", "hit"),
    ("key", False): CACHE_LOOKUPS.labels("key", "miss"),
    ("principal", True): CACHE_LOOKUPS.labels("principal", "hit"),
    ("principal", False): CACHE_LOOKUPS.labels("principal", "miss"),
}


def interface_of(path: str) -> str:
    for prefix, name in _INTERFACES:
        if path.startswith(prefix):
            return name
    return "other"


def request_observed(route: str, method: str, status: int, interface: str, seconds: float) -> None:
    """One answered request: a dict lookup and two updates (children are made once per label set)."""
    key = (route, method, str(status))
    child = _request_children.get(key)
    if child is None:
        child = _request_children[key] = REQUESTS.labels(*key)
    child.inc()
    timer = _duration_children.get(interface)
    if timer is None:
        timer = _duration_children[interface] = REQUEST_SECONDS.labels(interface)
    timer.observe(seconds)


def audit_appended(contents: Iterable[dict[str, Any]], seconds: float) -> None:
    """Called by the audit log after linking and inserting a batch of events."""
    AUDIT_APPEND_SECONDS.observe(seconds)
    for content in contents:
        action, outcome = str(content.get("action", "")), str(content.get("outcome", ""))
        AUDIT_EVENTS.labels(action, outcome).inc()
        if action == PAYLOAD_READ_ACTION:
            PAYLOAD_READS.labels(outcome).inc()
        if outcome == "denied":
            DENIALS.labels(action).inc()


def cache_observer(cache: str) -> Callable[[bool], None]:
    """A callback for a cache's ``observer``: counts each lookup as a hit or a miss."""
    hit, miss = _cache_children[(cache, True)], _cache_children[(cache, False)]

    def observe(found: bool) -> None:
        (hit if found else miss).inc()

    return observe


def count_database_errors(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: wrap the connection's queries to count their errors."""
    if any(getattr(w, "hkms_counts_errors", False) for w in connection.execute_wrappers):
        return
    alias = connection.alias

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        try:
            return execute(sql, params, many, context)
        except Exception as exc:
            DATABASE_ERRORS.labels(alias, type(exc).__name__).inc()
            raise

    wrapper.hkms_counts_errors = True  # type: ignore[attr-defined]
    connection.execute_wrappers.append(wrapper)


class StateCollector(Collector):
    """Gauges read when scraped (by the worker that answers): seal state, rotation jobs, cache sizes."""

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registering must not run collect(): that reads the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._seal()
        yield from self._jobs()
        yield from self._caches()

    def _seal(self) -> Iterator[GaugeMetricFamily]:
        from keys_app.providers import get_provider

        sealed = GaugeMetricFamily("hkms_root_key_sealed", "1 when the root key provider is sealed, else 0.")
        info = GaugeMetricFamily("hkms_root_key_provider", "The root key provider in use (value 1).",
                                 labels=["provider"])
        info.add_metric([str(settings.HKMS_ROOT_KEY_PROVIDER)], 1)
        up = GaugeMetricFamily("hkms_root_key_status_ok", "1 when the provider's state could be read, else 0.")
        try:
            sealed.add_metric([], 1 if get_provider().sealed else 0)
            up.add_metric([], 1)
        except Exception:
            up.add_metric([], 0)
        yield from (sealed, info, up)

    def _jobs(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count, Sum

        from keys_app.models import RotationJob

        jobs = GaugeMetricFamily("hkms_rotation_jobs", "Rotation jobs, by kind and state.", labels=["kind", "state"])
        processed = GaugeMetricFamily("hkms_rotation_jobs_processed",
                                      "Items done by the running rotation jobs, by kind.", labels=["kind"])
        total = GaugeMetricFamily("hkms_rotation_jobs_total_items",
                                  "Items to do in the running rotation jobs, by kind.", labels=["kind"])
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
            DATABASE_ERRORS.labels("kek", type(exc).__name__).inc()
        yield from (jobs, processed, total)

    def _caches(self) -> Iterator[GaugeMetricFamily]:
        from hkms_site.access.cache import principal_cache
        from keys_app.services.material import key_cache

        size = GaugeMetricFamily("hkms_cache_entries", "Entries in the caches of the worker that answered.",
                                 labels=["cache"])
        size.add_metric(["key"], len(key_cache()))
        size.add_metric(["principal"], len(principal_cache()))
        yield size


_state = StateCollector()
if MULTIPROCESS_DIR is None:
    REGISTRY.register(_state)


def render() -> bytes:
    """The exposition text: every worker's counters (multiprocess mode) plus this worker's state gauges."""
    if MULTIPROCESS_DIR is None:
        return bytes(generate_latest(REGISTRY))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
    registry.register(_state)
    return bytes(generate_latest(registry))
