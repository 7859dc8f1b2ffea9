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

Counters are shared by every process that shares the cache: with ``HKMS_CACHE_URL``
naming Redis (or the database), one limit holds across workers and nodes; with the
zero-configuration default (process memory) each process counts on its own.

Client addresses (:func:`client_address`) come from ``REMOTE_ADDR`` unless the peer is
one of ``HKMS_TRUSTED_PROXIES`` (CIDRs): then ``X-Forwarded-For`` is read from the right,
skipping trusted hops, and the first untrusted address is the client.  An address a client
wrote itself (the left of the header) is never believed past an untrusted hop, so behind a
proxy that appends what it saw, nobody can pose as another address.

Failed ``X-Auth-Token`` attempts (:func:`auth_failure_record`)
are counted per client address and window; once past ``HKMS_AUTH_FAILURES_PER_MINUTE`` the
*failures* answer 429, while a valid key from the same address is still served (checking a
token first costs one indexed lookup; secret keys are 122-bit random UUIDs, so the limit
bounds load and noise, not the odds of guessing one).

The rates are DRF's ``DEFAULT_THROTTLE_RATES`` (``HKMS_THROTTLE_ANON``,
``HKMS_THROTTLE_USER``), written ``<count>/<period>`` with a period of second, minute,
hour or day (only its first letter counts, as in DRF).  The counters live in the
``default`` cache, which is process-local memory (``LocMemCache``): each gunicorn
worker counts on its own, so a client may make up to ``workers x rate`` requests per
window in all.  With a shared cache (memcached, Redis) the same code counts across
workers: ``incr`` is atomic there.
"""

from __future__ import annotations

import ipaddress
import time
from functools import lru_cache
from typing import Any

from django.conf import settings
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


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def trusted_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)
    except ValueError as exc:
        raise ImproperlyConfigured(f"HKMS_TRUSTED_PROXIES: {exc}") from None


def _parse_ip(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = raw.strip()
    if value.startswith("[") and "]" in value:  # "[v6]:port"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "v4:port"
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_address(request: Any) -> str:
    """The client's address: ``REMOTE_ADDR``, or the rightmost untrusted ``X-Forwarded-For`` hop
    when the peer is a trusted proxy.  A malformed hop stops the walk at the trusted proxy that
    wrote it (the request counts against that proxy's address, never against a forged one)."""
    meta = getattr(request, "META", {})
    remote = str(meta.get("REMOTE_ADDR", ""))
    networks = trusted_networks(tuple(settings.HKMS_TRUSTED_PROXIES))
    if not networks:
        return remote

    def trusted(address: Any) -> bool:
        return any(address.version == net.version and address in net for net in networks)

    peer = _parse_ip(remote)
    if peer is None or not trusted(peer):
        return remote
    client = peer
    for hop in reversed(str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",")):
        address = _parse_ip(hop)
        if address is None:
            break
        client = address
        if not trusted(address):
            break
    return str(client)


def count_in_cache(cache: Any, key: str, timeout: int) -> int:
    """Add one to ``key`` (created with ``timeout``) and return the new count; atomic on Redis."""
    try:
        return int(cache.incr(key))
    except ValueError:  # missing (first of its window, or evicted)
        pass
    if cache.add(key, 1, timeout=timeout):
        return 1
    try:
        return int(cache.incr(key))  # another process created it in between
    except ValueError:
        cache.set(key, 1, timeout=timeout)
        return 1


def _auth_failure_key(address: str, now: float) -> str:
    return f"hkms:auth-failures:{address}:{int(now // 60) * 60}"


def auth_failure_record(address: str, *, now: float | None = None) -> tuple[int, float]:
    """Count one failed attempt from ``address``: (the count in this minute, seconds left in it)."""
    now = time.time() if now is None else now
    count = count_in_cache(default_cache, _auth_failure_key(address, now), 60)
    return count, int(now // 60) * 60 + 60 - now


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
        # The key outlives its window (it is created inside it); a later window has another key.
        count = count_in_cache(self.cache, key, self.duration)
        if count <= self.num_requests:
            return True
        self._wait = window_start + self.duration - now
        return False

    def get_ident(self, request: Any) -> str:
        return client_address(request)

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
