"""Root key custody page (superusers): seal status, unseal one share at a time, seal.

Everything goes through ``hkms_site.access.custody`` (superuser check, audit).
Shares are typed into a password field, posted once, and never echoed back.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters

from hkms_site.access.custody import custody_seal, custody_status, custody_unseal
from hkms_site.console.principal import console_principal
from hkms_site.console.views.common import not_found, page
from hkms_site.errors import ObjectNotFound, ServiceError
from keys_app.errors import HierarchyError


@sensitive_post_parameters("share")
def custody(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    try:
        if request.method == "POST":
            if request.POST.get("action") == "seal":
                custody_seal(principal=principal)
                messages.success(request, "Sealed: every worker has forgotten the root key.")
            else:
                result = custody_unseal(principal=principal, share=request.POST.get("share"))
                if result.get("sealed"):
                    messages.info(request, f"Share accepted: {result.get('progress', '')}.")
                else:
                    messages.success(request, "Unsealed: every worker serves secrets again.")
            return HttpResponseRedirect(reverse("admin:custody"))
        status: dict[str, Any] | None = custody_status(principal=principal)
        error = ""
    except ObjectNotFound as exc:
        raise not_found(exc) from None
    except (ServiceError, HierarchyError) as exc:
        if request.method == "POST":
            messages.error(request, getattr(exc, "message", str(exc)))
            return HttpResponseRedirect(reverse("admin:custody"))
        status, error = None, getattr(exc, "message", str(exc))
    return page(request, "console/custody.html", {"status": status, "error": error}, title="Root key custody")
