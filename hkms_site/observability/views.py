"""``/metrics``: the Prometheus exposition, behind a bearer token.

Disabled (404, as if absent) unless ``HKMS_METRICS_TOKEN`` (or ``HKMS_METRICS_TOKEN_FILE``)
is set; then a scrape must send ``Authorization: Bearer <token>`` (compared in
constant time), anything else gets 401.  No session, no API key: a scraper is not
a user and the metrics carry no secret.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from hkms_site.observability.metrics import CONTENT_TYPE_LATEST, render


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    expected = settings.HKMS_METRICS_TOKEN
    if not expected:
        return HttpResponse("not found\n", status=404, content_type="text/plain")
    scheme, _, given = str(request.META.get("HTTP_AUTHORIZATION", "")).partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        response = HttpResponse("a bearer token is required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="hkms-metrics"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
