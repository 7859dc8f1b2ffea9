"""Throttles backed by Django's cache: per client IP for anonymous and failed
authentication, per user for authenticated callers.

Fixed-window counters: a request increments ``throttle:<scope>:<ident>:<window start>``
(one ``cache.incr``, an ``add`` when the window's first request creates it) and is
refused once the count passes the rate; ``wait()`` is the time left in the window.
That costs a few microseconds whatever the rate, where DRF's ``SimpleRateThrottle``
stores the list of every request time of the last window and (de)serialises it through
the cache on every request (20 000 entries, ~1 ms, at 100000/minute and 333 req/s).
The price of a fixed window is burstiness at its edges: up to twice the rate within
one window's length straddling two windows.

The rates are DRF's ``DEFAULT_THROTTLE_RATES`` (``HKMS_THROTTLE_ANON``,
``HKMS_THROTTLE_USER``), written ``<count>/<period>`` with a period of second, minute,
hour or day (only its first letter counts, as in DRF).  The counters live in the
``default`` cache, which is process-local memory (``LocMemCache``): each gunicorn
worker counts on its own, so a client may make up to ``workers x rate`` requests per
window in all.  With a shared cache (memcached, Redis) the same code counts across
workers: ``incr`` is atomic there.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache as default_cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_parsed: dict[str, tuple[int, int]] = {}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"60/minute"`` -> ``(60, 60)``: the number of requests and the window in seconds."""
    parsed = _parsed.get(rate)
    if parsed is None:
        try:
            num, period = rate.split("/")
            parsed = (int(num), _PERIODS[period.strip()[0].lower()])
        except (ValueError, IndexError, KeyError):
            raise ImproperlyConfigured(f"throttle rate {rate!r} is not <count>/<second|minute|hour|day>") from None
        if parsed[0] < 0:
            raise ImproperlyConfigured(f"throttle rate {rate!r} has a negative count")
        _parsed[rate] = parsed
    return parsed


class FixedWindowThrottle(BaseThrottle):
    """A counter per (scope, identity, window); subclasses name the identity."""

    scope: str = ""
    cache: Any = default_cache
    timer = staticmethod(time.time)

    def __init__(self) -> None:
        rate: Any = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)  # None: no throttle
        self.num_requests: int | None = None
        self.duration = 0
        if rate:
            self.num_requests, self.duration = parse_rate(str(rate))
        self._wait: float | None = None

    def get_throttle_ident(self, request: Any) -> str | None:
        """Whom to count this request against, or ``None`` for not this throttle's business."""
        raise NotImplementedError

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.num_requests is None:
            return True
        ident = self.get_throttle_ident(request)
        if ident is None:
            return True
        now = self.timer()
        window_start = int(now // self.duration) * self.duration
        key = f"throttle:{self.scope}:{ident}:{window_start}"
        count = self._increment(key)
        if count <= self.num_requests:
            return True
        self._wait = window_start + self.duration - now
        return False

    def _increment(self, key: str) -> int:
        try:
            return int(self.cache.incr(key))
        except ValueError:  # the window's first request (or its key was evicted)
            pass
        # The key outlives its window (it is created inside it); a later window has another key.
        if self.cache.add(key, 1, timeout=self.duration):
            return 1
        try:
            return int(self.cache.incr(key))  # another thread created it in between
        except ValueError:  # evicted again in between: count this request alone
            self.cache.set(key, 1, timeout=self.duration)
            return 1

    def wait(self) -> float | None:
        return self._wait


class ClientIpThrottle(FixedWindowThrottle):
    """Bounds unauthenticated requests (token guessing) per client address."""

    scope = "anon"

    def get_throttle_ident(self, request: Any) -> str | None:
        if getattr(request, "user", None) is not None and request.user.is_authenticated:
            return None
        return str(self.get_ident(request))


class PrincipalThrottle(FixedWindowThrottle):
    """Bounds authenticated requests per user (all of a user's API keys together)."""

    scope = "user"

    def get_throttle_ident(self, request: Any) -> str | None:
        if getattr(request, "user", None) is None or not request.user.is_authenticated:
            return None
        return str(request.user.pk)
