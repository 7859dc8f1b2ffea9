"""Root key custody page (superusers): what the provider in use is, and for ``shamir``
its seal status, unseal one share at a time, and seal (behind a confirmation page).

Everything that changes state goes through ``keys_app.services.custody``
(superuser check, audit).  Shares are typed into a password field, posted
once, and never echoed back.  The ``file`` and ``pkcs11`` providers cannot be
sealed: the page says so instead of showing the seal keeper's error.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from hkms_core.errors import ObjectNotFound, ServiceError
from hkms_site.console.confirm import Confirmation, confirm_page, confirmed
from hkms_site.console.principal import console_principal
from hkms_site.console.views.common import not_found, page
from keys_app.errors import HierarchyError
from keys_app.services.custody import custody_seal, custody_status, custody_unseal

SEALABLE = ("shamir",)
_ABOUT = {
    "file": (
        "The file provider is a development provider: the root key is a file on this machine "
        "({path}), readable by anyone who can read that file. It cannot be sealed or unsealed. "
        "Use the shamir or pkcs11 provider in production (HKMS_ROOT_KEY_PROVIDER)."
    ),
    "pkcs11": (
        "The pkcs11 provider keeps the root key inside the HSM, which never lets it out. HKMS cannot seal it: "
        "take the HSM or its PIN away to stop key use."
    ),
}


def provider_name() -> str:
    return str(settings.HKMS_ROOT_KEY_PROVIDER)


def _superuser_or_404(request: HttpRequest) -> None:
    if not request.user.is_superuser:  # the same answer custody_status gives (audited there)
        custody_status(principal=console_principal(request))


@sensitive_post_parameters("share")
def custody(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    name = provider_name()
    try:
        if name not in SEALABLE:
            _superuser_or_404(request)
            options = settings.HKMS_ROOT_KEY_OPTIONS.get(name, {})
            about = _ABOUT.get(name, f"The {name} provider cannot be sealed.").format(path=options.get("path", "?"))
            return page(request, "console/custody.html", {"provider": name, "about": about}, title="Root key")
        if request.method == "POST":
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
    context = {"provider": name, "sealable": True, "status": status, "error": error}
    return page(request, "console/custody.html", context, title="Root key custody")


@require_http_methods(["GET", "POST"])
def custody_seal_view(request: HttpRequest) -> HttpResponse:
    """GET (or a POST without the token): the confirmation page; confirmed POST: seal every worker."""
    principal = console_principal(request)
    try:
        _superuser_or_404(request)
        if provider_name() not in SEALABLE:
            messages.error(request, f"The {provider_name()} provider cannot be sealed.")
            return HttpResponseRedirect(reverse("admin:custody"))
        if not confirmed(request):
            status = custody_status(principal=principal)
            return confirm_page(request, _seal_confirmation(status))
        custody_seal(principal=principal)
    except ObjectNotFound as exc:
        raise not_found(exc) from None
    except (ServiceError, HierarchyError) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
        return HttpResponseRedirect(reverse("admin:custody"))
    messages.success(request, "Sealed: every worker has forgotten the root key.")
    return HttpResponseRedirect(reverse("admin:custody"))


def _seal_confirmation(status: dict[str, Any]) -> Confirmation:
    threshold = status.get("threshold")
    return Confirmation(
        title="Seal the root key",
        subject="every worker of this installation",
        button="Seal now",
        cancel_url=reverse("admin:custody"),
        consequences=[
            "Every worker forgets the root key: no secret can be read or written and no key can be used, "
            "through the API, the console or the commands.",
            "Applications get 503 answers until the service is unsealed.",
            f"Unsealing needs {threshold or 'the threshold number of'} custodians' shares.",
        ],
        facts=[("State", "sealed" if status.get("sealed") else "unsealed")],
        reversible="Reversible by the custodians (unseal), not by you alone.",
    )
