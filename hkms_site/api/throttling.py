"""Throttles backed by Django's cache: per client IP for anonymous and failed
authentication, per user for authenticated callers."""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import SimpleRateThrottle


class ClientIpThrottle(SimpleRateThrottle):
    """Bounds unauthenticated requests (token guessing) per client address."""

    scope = "anon"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if getattr(request, "user", None) is not None and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PrincipalThrottle(SimpleRateThrottle):
    scope = "user"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if getattr(request, "user", None) is None or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
