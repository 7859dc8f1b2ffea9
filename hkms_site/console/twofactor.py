"""Optional TOTP two-factor authentication (django-otp) for console accounts.

A user with a *confirmed* TOTP device must give a code at every login.  With
``HKMS_REQUIRE_2FA=1`` a superuser must have one: until they enrol, their
session reaches nothing but the enrolment page (``TwoFactorMiddleware``).
Enrolment and removal are audited (``auth.2fa.enable`` / ``auth.2fa.disable``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from hkms_core.access.principal import Principal
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_record
from hkms_core.errors import InvalidArgument, PreconditionFailed

DEVICE_NAME = "authenticator"


def totp_device(user: Any, *, confirmed: bool | None = True) -> TOTPDevice | None:
    devices = TOTPDevice.objects.filter(user=user)
    if confirmed is not None:
        devices = devices.filter(confirmed=confirmed)
    return devices.order_by("id").first()


def otp_required(user: Any) -> bool:
    if not user.is_authenticated:
        return False
    if settings.HKMS_REQUIRE_2FA and user.is_superuser:
        return True
    return totp_device(user) is not None


def otp_pending(request: HttpRequest) -> bool:
    """The session's user must (still) prove a TOTP code."""
    user: Any = request.user
    return otp_required(user) and not user.is_verified()


def totp_verify(user: Any, token: str) -> TOTPDevice | None:
    """The user's confirmed device if ``token`` is a valid code for it (codes are single-use)."""
    device = totp_device(user)
    token = (token or "").strip().replace(" ", "")
    if device is None or not token.isdigit() or not device.verify_token(token):
        return None
    return device


def totp_enrol_start(*, user: Any) -> TOTPDevice:
    """The user's pending (unconfirmed) device, created on first call."""
    device = totp_device(user, confirmed=False)
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    return device


def totp_enrol_confirm(*, principal: Principal, request: HttpRequest, token: str) -> TOTPDevice:
    """Confirm the pending device with a first code and mark the session verified."""
    user = principal.user
    device = totp_device(user, confirmed=False)
    if device is None:
        raise PreconditionFailed("totp_enrolment", "start the enrolment first")
    token = (token or "").strip().replace(" ", "")
    if not token.isdigit() or not device.verify_token(token):
        with transaction.atomic():
            audit_record(principal, "auth.2fa.enable", None, outcome=AuditEvent.Outcome.DENIED, reason="bad_code")
        raise InvalidArgument("token", "that code is not valid for this authenticator; check the device's clock")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=True).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        audit_record(principal, "auth.2fa.enable", None)
    otp_login(request, device)
    return device


def totp_disable(*, principal: Principal, token: str) -> None:
    """Remove the user's authenticator; needs a current code, refused where 2FA is mandatory."""
    user = principal.user
    if settings.HKMS_REQUIRE_2FA and user is not None and user.is_superuser:
        raise PreconditionFailed("two_factor_required", "two-factor authentication is mandatory for superusers")
    if totp_verify(user, token) is None:
        with transaction.atomic():
            audit_record(principal, "auth.2fa.disable", None, outcome=AuditEvent.Outcome.DENIED, reason="bad_code")
        raise InvalidArgument("token", "that code is not valid")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        audit_record(principal, "auth.2fa.disable", None)


def totp_qr_svg(device: TOTPDevice) -> str:
    """The ``otpauth://`` URI as an inline SVG QR code (no script, no external request)."""
    import segno  # local: the QR code library is loaded only when someone enrols a TOTP device

    return str(segno.make(device.config_url, error="m").svg_inline(scale=4, dark="#1f2933", light="#ffffff"))
