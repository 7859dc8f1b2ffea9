"""Console forms.  They turn typed input into service arguments; services validate the rest.

Errors raised by services (``InvalidArgument``) are attached to the form field
they name (:func:`attach_service_error`), so a bad value is shown inline next to
everything the user typed.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm

from hkms_core.access.roles import ROLE_NAMES
from hkms_core.errors import InvalidArgument, ServiceError
from hkms_site.console.login import login_failed, login_locked
from hkms_site.console.principal import console_principal
from hkms_site.console.twofactor import totp_device, totp_verify
from secrets_app import validation
from secrets_app.models import SecretType


def _choice(form: forms.Form, name: str) -> forms.ChoiceField:
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField)
    return field


# --- login -------------------------------------------------------------------------------
class ConsoleLoginForm(AuthenticationForm):
    """Username, password and (for users who enrolled an authenticator) a TOTP code.

    Throttled per (username, client address) and audited as ``auth.login``.
    """

    otp_token = forms.CharField(
        label="Authenticator code",
        required=False,
        max_length=8,
        help_text="Only if you enrolled an authenticator app.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed attempts. Try again later.",
        "otp_required": "Enter the 6-digit code from your authenticator app.",
        "otp_invalid": "That authenticator code is not valid.",
    }

    def __init__(self, request: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        self.otp_device: Any = None

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        password = self.cleaned_data.get("password")
        assert self.request is not None
        principal = console_principal(self.request)
        if login_locked(username=username, ip=principal.source_ip):
            login_failed(principal=principal, username=username, reason="throttled")
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        if not (username and password):
            return self.cleaned_data
        user = authenticate(self.request, username=username, password=password)
        if user is None:
            login_failed(principal=principal, username=username, reason="bad_credentials")
            raise self.get_invalid_login_error()
        self.confirm_login_allowed(user)
        if totp_device(user) is not None:
            token = self.cleaned_data.get("otp_token") or ""
            if not token:
                raise forms.ValidationError({"otp_token": self.error_messages["otp_required"]})
            self.otp_device = totp_verify(user, token)
            if self.otp_device is None:
                login_failed(principal=principal, username=username, reason="bad_otp")
                raise forms.ValidationError({"otp_token": self.error_messages["otp_invalid"]})
        self.user_cache = user
        return self.cleaned_data


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Code from your authenticator",
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


# --- service errors ----------------------------------------------------------------------
def attach_service_error(form: forms.Form, error: ServiceError, field_map: dict[str, str] | None = None) -> None:
    """Show a service's refusal inline: on the field it names when the form has it."""
    field = None
    if isinstance(error, InvalidArgument):
        field = (field_map or {}).get(error.field, error.field)
        if field not in form.fields:
            field = None
        message = error.reason if field else error.message
    else:
        message = error.message
    form.add_error(field, message)


# --- secrets -----------------------------------------------------------------------------
def _tags(raw: str) -> list[str]:
    return [t.strip() for t in (raw or "").replace("\n", ",").split(",") if t.strip()]


class SecretFilterForm(forms.Form):
    q = forms.CharField(label="Search", required=False)
    project = forms.ChoiceField(required=False)
    path = forms.CharField(required=False)
    tags = forms.CharField(required=False, help_text="comma-separated; all must match")
    type = forms.ChoiceField(required=False, choices=[("", "any type"), *SecretType.choices])
    status = forms.ChoiceField(
        required=False,
        choices=[
            ("", "any status"),
            ("ready", "ready"),
            ("locked", "locked"),
            ("protected", "protected"),
            ("scheduled_for_deletion", "scheduled for deletion"),
        ],
    )

    def __init__(self, *args: Any, projects: Any = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choice(self, "project").choices = [("", "all projects")] + [(str(p.id), p.name) for p in projects]

    def tag_list(self) -> tuple[str, ...]:
        return tuple(_tags(self.cleaned_data.get("tags", "")))


class SecretCreateForm(forms.Form):
    """The secret's metadata; its first value comes from the typed version form of its type
    (``first_value_form``), on the same page."""

    project = forms.ChoiceField()
    name = forms.CharField(max_length=255)
    path = forms.CharField(max_length=1024, initial="/")
    type = forms.ChoiceField(choices=SecretType.choices, initial=SecretType.OPAQUE)
    tags = forms.CharField(required=False, help_text="comma-separated")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    key = forms.ChoiceField(required=False, label="Key (KEK)", help_text="the project's default key if empty")

    def __init__(self, *args: Any, projects: Any = (), keys: Any = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choice(self, "project").choices = [(str(p.id), p.name) for p in projects]
        _choice(self, "key").choices = [("", "project default")] + [
            (str(k.id), f"{k.project.name}: {k.name}") for k in keys
        ]

    def tag_list(self) -> list[str]:
        return _tags(self.cleaned_data.get("tags", ""))

    # The service's own rules, checked here too so that every mistake shows at once,
    # before the first value is asked for again.
    def clean_name(self) -> str:
        return str(_service_rule(validation.secret_name, self.cleaned_data["name"]))

    def clean_path(self) -> str:
        return str(_service_rule(validation.secret_path, self.cleaned_data["path"]))


def _service_rule(rule: Any, value: Any) -> Any:
    try:
        return rule(value)
    except InvalidArgument as exc:
        raise forms.ValidationError(exc.reason) from None


class SecretEditForm(forms.Form):
    """Metadata a writer may change; a new path moves the secret."""

    name = forms.CharField(max_length=255)
    path = forms.CharField(max_length=1024)
    tags = forms.CharField(required=False, help_text="comma-separated")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def tag_list(self) -> list[str]:
        return _tags(self.cleaned_data.get("tags", ""))


class VersionForm(forms.Form):
    """Base of the typed version forms: ``payload()`` gives the bytes to store.

    ``payload_field`` is where a service's complaint about the payload (``data``) is shown.
    """

    payload_field = "data"
    #: The fields that hold secret material: never sent back in a page (:func:`forget_secret_input`).
    secret_fields: tuple[str, ...] = ("data",)

    description = forms.CharField(required=False, max_length=1000)
    disable_previous = forms.BooleanField(required=False, label="Disable the previous versions")

    def payload(self) -> bytes:
        raise NotImplementedError


def _secret_input(label: str = "", **kwargs: Any) -> forms.CharField:
    # Never re-rendered: a bad submission asks for the secret again (forget_secret_input).
    return forms.CharField(label=label or None, widget=forms.PasswordInput(render_value=False), **kwargs)


#: Textareas holding secret material are masked (CSS) until "Show" is pressed (console.js).
_MASKED = {"rows": 6, "autocomplete": "off", "spellcheck": "false", "class": "masked", "data-masked": "1"}


def forget_secret_input(form: forms.Form) -> bool:
    """After a refused submission, drop what was typed in the secret fields so the page
    that shows the errors does not carry the secret back to the browser (or to a proxy,
    a screenshot, the browser's page cache).  Everything else typed stays.  Returns
    whether a secret field had been filled (the page then asks to enter it again)."""
    names = [form.add_prefix(name) for name in getattr(form, "secret_fields", ())]
    if not form.is_bound or not any(form.data.get(n) for n in names):
        return False
    data = form.data.copy()  # type: ignore[attr-defined]  # a QueryDict when bound to a request
    for name in names:
        data.pop(name, None)
    form.data = data
    return True


class OpaqueVersionForm(VersionForm):
    data = forms.CharField(  # type: ignore[assignment]  # the API's name; Django keeps form.data apart
        widget=forms.Textarea(attrs=_MASKED), strip=False
    )
    field_order = ["data", "description", "disable_previous"]

    def payload(self) -> bytes:
        return str(self.cleaned_data["data"]).encode()


class CertificateVersionForm(OpaqueVersionForm):
    data = forms.CharField(
        label="Certificate (PEM)",
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
        strip=False,
    )

    def clean_data(self) -> str:
        data = str(self.cleaned_data["data"]).strip()
        if "-----BEGIN " not in data or "-----END " not in data:
            raise forms.ValidationError("Paste one or more PEM blocks (-----BEGIN … -----END …).")
        return data + "\n"


class KeyValueVersionForm(VersionForm):
    payload_field = "pairs"
    secret_fields = ("pairs",)
    pairs = forms.CharField(
        label="Key/value pairs",
        help_text="one KEY=value per line",
        widget=forms.Textarea(attrs=_MASKED),
    )
    field_order = ["pairs", "description", "disable_previous"]

    def clean_pairs(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for number, line in enumerate(str(self.cleaned_data["pairs"]).splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Line {number} is not KEY=value.")
            pairs[key.strip()] = value
        if not pairs:
            raise forms.ValidationError("Enter at least one KEY=value line.")
        return pairs

    def payload(self) -> bytes:
        return json.dumps(self.cleaned_data["pairs"]).encode()


class BasicCredentialsVersionForm(VersionForm):
    payload_field = "username"
    secret_fields = ("password",)
    username = forms.CharField(max_length=255)
    password = _secret_input()
    field_order = ["username", "password", "description", "disable_previous"]

    def payload(self) -> bytes:
        return json.dumps(
            {"username": self.cleaned_data["username"], "password": self.cleaned_data["password"]}
        ).encode()


class DatabaseCredentialsVersionForm(VersionForm):
    payload_field = "engine"
    secret_fields = ("password",)
    engine = forms.CharField(max_length=64, initial="postgres")
    host = forms.CharField(max_length=255)
    port = forms.IntegerField(min_value=1, max_value=65535, initial=5432)
    dbname = forms.CharField(max_length=255, label="Database name")
    username = forms.CharField(max_length=255)
    password = _secret_input()
    field_order = ["engine", "host", "port", "dbname", "username", "password", "description", "disable_previous"]

    def payload(self) -> bytes:
        data = {name: self.cleaned_data[name] for name in ("engine", "username", "password", "host", "dbname")}
        data["port"] = str(self.cleaned_data["port"])
        return json.dumps(data).encode()


class SshKeyVersionForm(VersionForm):
    payload_field = "ssh_private_key"
    secret_fields = ("ssh_private_key",)
    ssh_private_key = forms.CharField(
        label="SSH private key",
        widget=forms.Textarea(attrs={**_MASKED, "rows": 8}),
        strip=False,
    )
    field_order = ["ssh_private_key", "description", "disable_previous"]

    def clean_ssh_private_key(self) -> str:
        key = str(self.cleaned_data["ssh_private_key"]).strip()
        if not key.startswith("-----BEGIN ") or "PRIVATE KEY-----" not in key:
            raise forms.ValidationError("Paste a private key in OpenSSH or PEM format (-----BEGIN … PRIVATE KEY-----).")
        return key + "\n"

    def payload(self) -> bytes:
        return json.dumps({"ssh_private_key": self.cleaned_data["ssh_private_key"]}).encode()


VERSION_FORMS: dict[str, type[VersionForm]] = {
    SecretType.OPAQUE: OpaqueVersionForm,
    SecretType.CERTIFICATE: CertificateVersionForm,
    SecretType.KEY_VALUE: KeyValueVersionForm,
    SecretType.BASIC_CREDENTIALS: BasicCredentialsVersionForm,
    SecretType.DATABASE_CREDENTIALS: DatabaseCredentialsVersionForm,
    SecretType.SSH_KEY: SshKeyVersionForm,
}


def first_value_forms(data: Any = None, *, chosen: str = "") -> dict[str, VersionForm]:
    """One typed value form per secret type (prefixed by the type), for the New secret page.

    Only the ``chosen`` type's form is bound to ``data``: the others render empty and are
    hidden by console.js.  A first version has no "disable the previous" choice.
    """
    forms_by_type: dict[str, VersionForm] = {}
    for secret_type, form_class in VERSION_FORMS.items():
        form = form_class(data if secret_type == chosen else None, prefix=secret_type)
        del form.fields["disable_previous"]
        form.fields["description"].label = "Version description"
        forms_by_type[secret_type] = form
    return forms_by_type


#: Which form field a service's ``InvalidArgument(field=…)`` belongs to.
VERSION_FIELD_MAP = {"data": "data", "payload": "data", "description": "description"}


# --- keys --------------------------------------------------------------------------------
class RotationPolicyForm(forms.Form):
    rotation_period_hours = forms.IntegerField(
        label="Rotation period (hours)",
        required=False,
        min_value=24,
        max_value=100 * 365 * 24,
        help_text="24 h to 100 years; empty for no automatic rotation",
    )
    next_rotation_at = forms.DateTimeField(
        label="Next rotation (UTC)",
        required=False,
        help_text="YYYY-MM-DD HH:MM; defaults to now + period",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def rotation_period(self) -> timedelta | None:
        hours = self.cleaned_data.get("rotation_period_hours")
        return timedelta(hours=hours) if hours else None


class KeyCreateForm(forms.Form):
    project = forms.ChoiceField()
    name = forms.CharField(max_length=255)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    algorithm = forms.ChoiceField(help_text="symmetric keys can protect secrets and rotate")
    protected = forms.BooleanField(required=False, initial=True, help_text="a protected key cannot be deleted")
    rotation_period_hours = RotationPolicyForm.base_fields["rotation_period_hours"]

    def __init__(self, *args: Any, projects: Any = (), algorithms: Any = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choice(self, "project").choices = [(str(p.id), p.name) for p in projects]
        _choice(self, "algorithm").choices = [(a.name, f"{a.name} ({a.usage})") for a in algorithms]

    def rotation_period(self) -> timedelta | None:
        hours = self.cleaned_data.get("rotation_period_hours")
        return timedelta(hours=hours) if hours else None


# --- roles and API keys ------------------------------------------------------------------
class RoleGrantForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=[(r, r) for r in ROLE_NAMES])
    target = forms.ChoiceField(label="On")

    def __init__(self, *args: Any, targets: Any = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choice(self, "target").choices = list(targets)


EXPIRY_CHOICES = [
    ("", "never"),
    ("1", "1 day"),
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "1 year"),
]


class ApiKeyCreateForm(forms.Form):
    description = forms.CharField(max_length=255, required=False)
    project = forms.ChoiceField(required=False, label="Default project")
    expires_in_days = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, label="Expires in")
    username = forms.CharField(max_length=150, required=False, label="For user", help_text="yourself if empty")

    def __init__(self, *args: Any, projects: Any = (), for_others: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choice(self, "project").choices = [("", "none")] + [(str(p.id), p.name) for p in projects]
        if not for_others:
            del self.fields["username"]

    def expires_in(self) -> timedelta | None:
        days = self.cleaned_data.get("expires_in_days")
        return timedelta(days=int(days)) if days else None


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, label="Principal")
    action = forms.CharField(required=False, help_text="prefix, e.g. secret. or auth.login")
    object_id = forms.CharField(required=False, label="Object id")
    object_type = forms.ChoiceField(
        required=False,
        choices=[
            ("", "any"),
            ("project", "project"),
            ("secret", "secret"),
            ("secretversion", "secret version"),
            ("key", "key"),
            ("api_key", "API key"),
        ],
        label="Object type",
    )
    outcome = forms.ChoiceField(
        required=False, choices=[("", "any"), ("allowed", "allowed"), ("denied", "denied"), ("failed", "failed")]
    )
    since = forms.DateTimeField(required=False, help_text="UTC, YYYY-MM-DD HH:MM")
    until = forms.DateTimeField(required=False)


# --- projects ----------------------------------------------------------------------------
class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=255)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
