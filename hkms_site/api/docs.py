"""The browsable API reference at ``/api/docs/``: Redoc from local assets (no CDN).

Redoc renders with styled-components, which injects ``<style>`` elements, and runs
its search index in a ``blob:`` worker; the site-wide CSP (no inline style) would
break it.  This page alone therefore sends its own, slightly wider policy: inline
*styles* and ``blob:`` workers, still no inline script and no third-party origin.
It shows the schema only — never a secret — and needs no authentication.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularRedocView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
)


class ApiDocsView(SpectacularRedocView):
    template_name = "api/redoc.html"
    permission_classes = [AllowAny]
    url_name = "schema"
    title = "HKMS API"
    schema = None  # the page itself is not part of the API

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CSP
        return response


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Describes ``X-Auth-Token`` (an API key's secret key) in the schema."""

    target_class = "hkms_core.api.authentication.ApiKeyAuthentication"
    name = "ScalewayToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}


class ConsoleSessionScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The console's session cookie (browsers; CSRF-protected)."""

    target_class = "hkms_core.api.authentication.ConsoleSessionAuthentication"
    name = "consoleSession"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
