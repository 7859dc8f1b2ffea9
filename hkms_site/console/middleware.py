"""Security headers (CSP) and the two-factor gate for console sessions."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseRedirect
from django.urls import reverse

from hkms_site.console.twofactor import otp_pending


class SecurityHeadersMiddleware:
    """Adds ``Content-Security-Policy`` (no inline script, no third-party origin) and
    ``Permissions-Policy`` to every response that does not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.HKMS_CSP:
            response.headers.setdefault("Content-Security-Policy", settings.HKMS_CSP)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        return response


class TwoFactorMiddleware:
    """A session that still owes a TOTP verification may only reach the pages that settle it.

    That happens to a superuser without a device when ``HKMS_REQUIRE_2FA=1``: the
    console sends them to enrol; anything else (the REST API by session included)
    is refused until they have.
    """

    ALLOWED = ("admin:login", "admin:logout", "admin:two_factor", "admin:jsi18n")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and otp_pending(request):
            allowed = {reverse(name) for name in self.ALLOWED}
            static_prefix = "/" + settings.STATIC_URL.strip("/") + "/"
            if request.path not in allowed and not request.path.startswith(static_prefix):
                if request.path.startswith(reverse("admin:index")):
                    return HttpResponseRedirect(reverse("admin:two_factor"))
                return HttpResponseForbidden("two-factor verification required")
        return self.get_response(request)
