"""Login (throttled, audited, TOTP when enrolled) and the two-factor page."""

from __future__ import annotations

from base64 import b32encode
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django_otp import login as otp_login

from hkms_core.errors import ServiceError
from hkms_site.console.forms import ConsoleLoginForm, TokenForm, attach_service_error
from hkms_site.console.login import login_succeeded
from hkms_site.console.principal import console_principal
from hkms_site.console.twofactor import (
    otp_pending,
    otp_required,
    totp_device,
    totp_disable,
    totp_enrol_confirm,
    totp_enrol_start,
    totp_qr_svg,
)
from hkms_site.console.views.common import page


class ConsoleLoginView(LoginView):
    def form_valid(self, form: Any) -> HttpResponse:
        assert isinstance(form, ConsoleLoginForm)
        response = super().form_valid(form)  # rotates the session key (fixation)
        if form.otp_device is not None:
            otp_login(self.request, form.otp_device)
        self.request._hkms_principal = None  # type: ignore[attr-defined]  # now someone else
        principal = console_principal(self.request)
        login_succeeded(principal=principal, method="password+totp" if form.otp_device else "password")
        return response


@never_cache
@csrf_protect
def two_factor(request: HttpRequest) -> HttpResponse:
    """Enrol, confirm or remove a TOTP authenticator (any logged-in user)."""
    if not request.user.is_authenticated:
        return HttpResponseRedirect(f"{reverse('admin:login')}?next={request.path}")
    principal = console_principal(request)
    user: Any = principal.user
    confirmed = totp_device(user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        step = request.POST.get("step")
        try:
            if step == "confirm":
                totp_enrol_confirm(principal=principal, request=request, token=form.cleaned_data["token"])
                messages.success(request, "Two-factor authentication is on: you will need a code at every login.")
                return HttpResponseRedirect(reverse("admin:index"))
            if step == "disable":
                totp_disable(principal=principal, token=form.cleaned_data["token"])
                messages.success(request, "Two-factor authentication is off.")
                return HttpResponseRedirect(reverse("admin:two_factor"))
        except ServiceError as exc:
            attach_service_error(form, exc)
    pending = None
    if confirmed is None and (request.method == "POST" or request.GET.get("enrol") or otp_required(user)):
        pending = totp_enrol_start(user=user)
    context = {
        "confirmed": confirmed,
        "pending": pending,
        "qr_svg": totp_qr_svg(pending) if pending is not None else "",
        "secret_b32": _b32(pending) if pending is not None else "",
        "form": form,
        "mandatory": otp_required(user) and confirmed is None,
        "must_verify": otp_pending(request),
    }
    return page(request, "console/two_factor.html", context, title="Two-factor authentication")


def _b32(device: Any) -> str:
    return b32encode(device.bin_key).decode()
