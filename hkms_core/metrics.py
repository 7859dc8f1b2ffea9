"""What the foundation reports to the metrics, without depending on the metrics' implementation.

The Prometheus counters live in ``hkms_site.observability.metrics`` (the roof:
it must decide the multi-process directory before prometheus-client is first
imported).  The foundation only *reports*: the audit log calls
:func:`audit_appended` after linking and inserting a batch of events, and the
observability app registers its recorder with :func:`set_audit_observer` in its
``AppConfig.ready()``.  With none registered (a command run without the
observability app) reporting costs one attribute read and records nothing.
An observer must not raise: it runs inside the audited transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: ``observer(event_contents, seconds)``: the batch's events (dicts with ``action`` and ``outcome``) and its duration.
AuditObserver = Callable[[Iterable[dict[str, Any]], float], None]

_audit_observer: AuditObserver | None = None


def set_audit_observer(observer: AuditObserver | None) -> None:
    """Register (or, with None, remove) the recorder of appended audit events."""
    global _audit_observer
    _audit_observer = observer


def audit_appended(contents: Iterable[dict[str, Any]], seconds: float) -> None:
    """Report a batch of audit events linked and inserted in ``seconds`` (events, payload reads, denials, latency)."""
    observer = _audit_observer
    if observer is not None:
        observer(contents, seconds)
