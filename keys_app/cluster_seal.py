"""One seal state for the cluster: ``seal`` on any node seals every node within a bounded delay.

Nodes share no process, so the signal travels through the default database: ``seal``
bumps :class:`~hkms_core.cluster.models.SealEpoch` (committed, :mod:`hkms_core.cluster.epoch`) and then seals its own
node.  A shamir provider records the epoch current when it started holding keys
(``unsealed_epoch``, read from this row at unseal, authorisation or creation).  Every
request on a node with ``HKMS_ROOT_KEY_PROVIDER=shamir`` runs :func:`cluster_seal_check`
(``ClusterSealMiddleware``), which reads the row at most every ``HKMS_SEAL_CHECK_SECONDS``
(default 1 s) per process and, when it grew, asks the provider to seal itself if its keys
are older than it.  So:

* a node learns of a seal within ``HKMS_SEAL_CHECK_SECONDS`` of its next request (an idle
  node at its next request, which is where it would use a key), and its workers drop
  their cached keys as on a local seal;
* a node unsealed *after* the seal is not sealed again (its keys are not older);
* if the database cannot be reached, the request fails with 503 anyway (nothing is
  served without it), and ``seal`` still seals its own node and says the cluster was not told.

Nodes with the ``file`` or ``pkcs11`` provider have no seal and skip the check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from hkms_core.cluster.epoch import seal_epoch_current
from keys_app.providers import get_provider

log = logging.getLogger("hkms.cluster")
_lock = threading.Lock()
_state: dict[str, Any] = {"seen": None, "checked_at": float("-inf")}


def forget_seen_epoch() -> None:
    """Tests: check again on the next request."""
    with _lock:
        _state.update(seen=None, checked_at=float("-inf"))


def cluster_seal_check(*, now: float | None = None) -> None:
    """Seal this node's shamir provider if a newer seal epoch was recorded since its keys were unsealed."""
    if settings.HKMS_ROOT_KEY_PROVIDER != "shamir":
        return
    now = time.monotonic() if now is None else now
    with _lock:
        if now - _state["checked_at"] < settings.HKMS_SEAL_CHECK_SECONDS:
            return
        _state["checked_at"] = now
    epoch = seal_epoch_current()
    with _lock:
        seen = _state["seen"]
        if seen is not None and epoch <= seen:
            return
    if epoch > 0:
        provider: Any = get_provider("shamir")
        if provider.seal_if_unsealed_before(epoch):
            log.warning("sealed: the cluster seal epoch is now %s (a seal on another node)", epoch)
    with _lock:
        _state["seen"] = epoch


class ClusterSealMiddleware:
    """Runs :func:`cluster_seal_check` before every request (cheap: at most one read a second)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        cluster_seal_check()
        return self.get_response(request)
