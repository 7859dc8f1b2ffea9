"""The landing page: the key hierarchy at a glance."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from hkms_site.console.principal import console_principal
from hkms_site.console.selectors import dashboard_summary
from hkms_site.console.views.common import page


def dashboard(request: HttpRequest, extra_context: object = None) -> HttpResponse:
    summary = dashboard_summary(console_principal(request))
    return page(request, "console/dashboard.html", {"s": summary}, title="Dashboard")
