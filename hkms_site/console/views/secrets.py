"""Secret pages: search and folder browsing, detail with version history, typed version
forms, version and secret actions, and the audited, confirmed, no-store payload reveal.

Payloads appear only on the reveal page (a POST response with ``Cache-Control:
no-store``), never in lists, detail pages, admin forms or logs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import can
from hkms_core.errors import ObjectNotFound, PermissionDenied, ServiceError
from hkms_core.lifecycle import DELETION_DELAY
from hkms_site.console.confirm import Confirmation, action_run
from hkms_site.console.forms import (
    VERSION_FIELD_MAP,
    VERSION_FORMS,
    SecretCreateForm,
    SecretEditForm,
    SecretFilterForm,
    attach_service_error,
    first_value_forms,
    forget_secret_input,
)
from hkms_site.console.principal import console_principal
from hkms_site.console.selectors import normalise_path, principal_can_grant
from hkms_site.console.views.common import denied, not_found, page
from keys_app.errors import HierarchyError
from keys_app.selectors import keys_usable_for_secrets
from secrets_app.models import Secret, SecretType
from secrets_app.selectors import (
    SecretFilter,
    projects_visible,
    secret_browse,
    secret_dependents,
    version_successor,
)
from secrets_app.selectors import secret_list as secrets_listed
from secrets_app.services import access as access_services
from secrets_app.services import secrets as secret_services
from secrets_app.services import versions as version_services

VERSION_OPERATIONS: dict[str, Callable[..., Any]] = {
    "enable": version_services.secret_version_enable,
    "disable": version_services.secret_version_disable,
    "delete": version_services.secret_version_delete,
    "restore": version_services.secret_version_restore,
}
SECRET_OPERATIONS: dict[str, Callable[..., Any]] = {
    "protect": secret_services.secret_protect,
    "unprotect": secret_services.secret_unprotect,
    "delete": secret_services.secret_delete,
    "restore": secret_services.secret_restore,
}
VERSION_ACTIONS = tuple(VERSION_OPERATIONS)
SECRET_ACTIONS = tuple(SECRET_OPERATIONS)
#: Actions that stop something working: they go through a confirmation page (``console.confirm``).
VERSION_CONFIRMED = {"disable": Action.SECRET_WRITE, "delete": Action.SECRET_ADMIN}
SECRET_CONFIRMED = {"delete": Action.SECRET_ADMIN}
_STRUCTURED = {SecretType.KEY_VALUE, SecretType.BASIC_CREDENTIALS, SecretType.DATABASE_CREDENTIALS, SecretType.SSH_KEY}


def _visible_secret(principal: Principal, secret_id: Any) -> Secret:
    """``secret_get``: 404 for a secret the principal may not see."""
    try:
        return secret_services.secret_get(principal=principal, secret_id=secret_id)
    except ObjectNotFound as exc:
        raise not_found(exc) from None


def _writable_projects(principal: Principal) -> Any:
    return projects_visible(principal, Action.SECRET_WRITE)


# --- list and folders --------------------------------------------------------------------
def secret_list(request: HttpRequest) -> HttpResponse:
    """Browse folders (``secret_browse``) or, with a search, every matching secret below the folder.

    Listed in the API's order (``name_asc``: by name, ties by id).  Without a status filter
    the secrets scheduled for deletion are listed with the others."""
    principal = console_principal(request)
    form = SecretFilterForm(request.GET or None, projects=projects_visible(principal))
    data = form.cleaned_data if form.is_valid() else {}
    searching = any(data.get(k) for k in ("q", "tags", "type", "status"))
    path = normalise_path(data.get("path", "") or "/")
    f = SecretFilter(
        text=data.get("q", ""),
        project_id=data.get("project", ""),
        path=path,
        recursive=searching,
        tags=form.tag_list() if data else (),
        type=data.get("type", ""),
        **_STATUS_FILTERS.get(data.get("status", ""), {"scheduled_for_deletion": None}),
    )
    query = request.GET.copy()
    query.pop("page", None)

    def with_path(target: str) -> str:
        q = query.copy()
        q["path"] = target
        return q.urlencode()

    parts = [p for p in path.strip("/").split("/") if p]
    crumbs = [{"name": "/", "query": with_path("/")}] + [
        {"name": part, "query": with_path("/" + "/".join(parts[: i + 1]) + "/")} for i, part in enumerate(parts)
    ]
    try:
        secrets = secrets_listed(principal=principal, filters=f, order_by="name_asc").select_related("key")
        folders = [] if searching else _folders(principal, f, path, with_path)
    except ServiceError as exc:  # a filter the service refuses (a malformed path, a NUL): say so, list nothing
        messages.error(request, exc.message)
        secrets, folders = Secret.objects.none(), []
    context = {
        "form": form,
        "page_obj": Paginator(secrets, 50).get_page(request.GET.get("page")),
        "query": query.urlencode(),
        "path": path,
        "crumbs": crumbs,
        "folders": folders,
        "can_create": _writable_projects(principal).exists(),
    }
    return page(request, "console/secret_list.html", context, title="Secrets")


#: The console's status filter as :class:`SecretFilter` fields.
_STATUS_FILTERS: dict[str, dict[str, Any]] = {
    "scheduled_for_deletion": {"scheduled_for_deletion": True},
    "protected": {"protected": True},
    Secret.Status.READY: {"status": Secret.Status.READY},
    Secret.Status.LOCKED: {"status": Secret.Status.LOCKED},
}


def _folders(principal: Principal, f: SecretFilter, path: str, with_path: Callable[[str], str]) -> list[dict[str, Any]]:
    """The sub-folders of ``path`` (``secret_browse``), each with its number of secrets and its link."""
    _current, items = secret_browse(principal=principal, region=None, project_id=None, prefix=path, filters=f)
    folders = []
    for item in items:
        if item.secret is None:
            target = f"{path}{item.name}/"
            folders.append({"path": target, "name": item.name, "count": str(item.count), "query": with_path(target)})
    return folders


# --- create ------------------------------------------------------------------------------
@sensitive_post_parameters()  # error reports never include a typed value
@sensitive_variables("value_form", "value_forms")
def secret_create(request: HttpRequest) -> HttpResponse:
    """A secret and its first value in one form: ``secret_create`` then ``secret_version_create``.

    Those are two services and two transactions (as on Scaleway's API).  The value is
    validated by its typed form before anything is created; if the version is still
    refused afterwards (the root key is sealed, the key is disabled…), the secret exists
    without a version and the page it lands on says so: add the value there.  On a refused
    submission the secret fields are not sent back (``forget_secret_input``).
    """
    principal = console_principal(request)
    projects = _writable_projects(principal)
    if not projects.exists():
        return denied(request, "create secrets")
    # Naming a key for a secret needs key_user on it; the project default needs nothing more.
    keys = keys_usable_for_secrets(principal)
    initial = {"path": request.GET.get("path", "/"), "type": request.GET.get("type", SecretType.OPAQUE)}
    form = SecretCreateForm(request.POST or None, projects=projects, keys=keys, initial=initial)
    chosen = str(request.POST.get("type") or initial["type"]) if request.method == "POST" else ""
    value_forms = first_value_forms(request.POST if request.method == "POST" else None, chosen=chosen)
    value_form = value_forms.get(chosen)
    if request.method == "POST" and form.is_valid() and value_form is not None and value_form.is_valid():
        project = projects.filter(id=form.cleaned_data["project"]).first()
        key = keys.filter(id=form.cleaned_data["key"]).first() if form.cleaned_data["key"] else None
        try:
            secret = secret_services.secret_create(
                principal=principal,
                project_id=project.id if project else None,
                name=form.cleaned_data["name"],
                path=form.cleaned_data["path"],
                type=form.cleaned_data["type"],
                tags=form.tag_list(),
                description=form.cleaned_data["description"],
                key_id=key.id if key else None,
            )
        except PermissionDenied:
            form.add_error("project", "You may not create secrets in this project.")
        except ServiceError as exc:
            attach_service_error(form, exc, {"key_id": "key", "project_id": "project"})
        else:
            detail = reverse("admin:secret_detail", args=[secret.id])
            try:
                version = version_services.secret_version_create(
                    principal=principal,
                    secret_id=secret.id,
                    data=value_form.payload(),
                    description=value_form.cleaned_data["description"],
                )
            except (ServiceError, HierarchyError) as exc:
                reason = getattr(exc, "message", str(exc))
                messages.error(
                    request,
                    f"Secret {secret.name} created, but its value was refused: {reason}. Add it as a new version.",
                )
            else:
                messages.success(request, f"Secret {secret.name} created with version {version.revision}.")
            return HttpResponseRedirect(detail)
    retype = request.method == "POST" and any([forget_secret_input(f) for f in value_forms.values()])
    context = {
        "form": form,
        "value_forms": value_forms,
        "chosen": chosen or str(form["type"].value() or SecretType.OPAQUE),
        "retype": retype,
        "cancel_url": reverse("admin:secret_list"),
    }
    response = page(request, "console/secret_create.html", context, title="New secret")
    response["Cache-Control"] = "no-store, private"
    return response


# --- detail ------------------------------------------------------------------------------
def secret_detail(request: HttpRequest, secret_id: Any) -> HttpResponse:
    principal = console_principal(request)
    secret = _visible_secret(principal, secret_id)
    versions = list(secret.versions.order_by("-revision"))
    for v in versions:
        v.urls = {  # type: ignore[attr-defined]
            a: reverse("admin:secret_version_action", args=[secret.id, v.revision, a]) for a in VERSION_ACTIONS
        }
    enabled = [v.revision for v in versions if v.status == "enabled"]
    context = {
        "secret": secret,
        "versions": versions,
        "latest_enabled": max(enabled) if enabled else None,
        "can": {
            "read": can(principal, Action.SECRET_READ, secret),
            "write": can(principal, Action.SECRET_WRITE, secret),
            "admin": can(principal, Action.SECRET_ADMIN, secret),
            "key_view": can(principal, Action.KEY_VIEW, secret.key),
            "grant": principal_can_grant(principal) and can(principal, Action.SECRET_ADMIN, secret),
        },
        "urls": {a: reverse("admin:secret_action", args=[secret.id, a]) for a in SECRET_ACTIONS},
    }
    return page(request, "console/secret_detail.html", context, title=f"Secret {secret.name}")


def secret_edit(request: HttpRequest, secret_id: Any) -> HttpResponse:
    """Rename, move (path), retag or describe a secret (``secret_update``)."""
    principal = console_principal(request)
    secret = _visible_secret(principal, secret_id)
    if not can(principal, Action.SECRET_WRITE, secret):
        return denied(request, "edit this secret")
    initial = {
        "name": secret.name,
        "path": secret.path,
        "tags": ", ".join(secret.tags),
        "description": secret.description,
    }
    form = SecretEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            secret_services.secret_update(
                principal=principal,
                secret_id=secret.id,
                name=form.cleaned_data["name"],
                path=form.cleaned_data["path"],
                tags=form.tag_list(),
                description=form.cleaned_data["description"],
            )
        except PermissionDenied:
            return denied(request, "edit this secret")
        except ServiceError as exc:
            attach_service_error(form, exc)
        else:
            messages.success(request, "Secret updated.")
            return HttpResponseRedirect(reverse("admin:secret_detail", args=[secret.id]))
    context = {"form": form, "submit": "Save", "cancel_url": reverse("admin:secret_detail", args=[secret.id])}
    return page(request, "console/form_page.html", context, title=f"Edit {secret.name}")


# --- versions ----------------------------------------------------------------------------
@sensitive_post_parameters()  # error reports never include a typed payload
@sensitive_variables("form")
def secret_version_add(request: HttpRequest, secret_id: Any) -> HttpResponse:
    principal = console_principal(request)
    secret = _visible_secret(principal, secret_id)
    if not can(principal, Action.SECRET_WRITE, secret):
        return denied(request, "add versions to this secret")
    form_class = VERSION_FORMS.get(secret.type, VERSION_FORMS[SecretType.OPAQUE])
    form = form_class(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            version = version_services.secret_version_create(
                principal=principal,
                secret_id=secret.id,
                data=form.payload(),
                description=form.cleaned_data["description"],
                disable_previous=form.cleaned_data["disable_previous"],
            )
        except PermissionDenied:
            return denied(request, "add versions to this secret")
        except ServiceError as exc:
            attach_service_error(form, exc, {**VERSION_FIELD_MAP, "data": form.payload_field})
        except HierarchyError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Version {version.revision} added.")
            return HttpResponseRedirect(reverse("admin:secret_detail", args=[secret.id]))
    if request.method == "POST" and forget_secret_input(form):
        form.add_error(None, "For your safety the secret value was not sent back: enter it again.")
    context = {
        "form": form,
        "submit": "Add version",
        "intro": f"New version of {secret.path.rstrip('/')}/{secret.name} ({secret.type}).",
        "cancel_url": reverse("admin:secret_detail", args=[secret.id]),
    }
    return page(request, "console/form_page.html", context, title=f"New version of {secret.name}")


@sensitive_variables("accessed", "context")
def secret_version_reveal(request: HttpRequest, secret_id: Any, revision: int) -> HttpResponse:
    """GET: a confirmation page; POST: the payload, once, audited, never cached."""
    principal = console_principal(request)
    secret = _visible_secret(principal, secret_id)
    version = secret.versions.filter(revision=revision).first()
    if version is None:
        raise not_found(ObjectNotFound("secret_version", revision))
    if request.method != "POST":
        if not can(principal, Action.SECRET_READ, secret):
            return denied(request, "read this secret's payload")
        return page(request, "console/reveal_confirm.html", {"secret": secret, "version": version}, title="Reveal")
    try:
        accessed = access_services.secret_version_access(principal=principal, secret_id=secret.id, revision=revision)
    except ObjectNotFound as exc:
        raise not_found(exc) from None
    except PermissionDenied:
        return denied(request, "read this secret's payload")
    except (ServiceError, HierarchyError) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
        return HttpResponseRedirect(reverse("admin:secret_detail", args=[secret.id]))
    context = {"secret": secret, "version": version, "now": timezone.now(), **_display(secret, accessed.data)}
    response = page(request, "console/reveal.html", context, title=f"Revision {revision} of {secret.name}")
    response["Cache-Control"] = "no-store, private"
    response["Pragma"] = "no-cache"
    return response


def _display(secret: Secret, payload: bytes) -> dict[str, Any]:
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return {"text": base64.b64encode(payload).decode(), "binary": True}
    if secret.type in _STRUCTURED:
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict):
            return {"fields": [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in document.items()]}
    return {"text": text}


@require_http_methods(["GET", "POST"])
def secret_version_action(request: HttpRequest, secret_id: Any, revision: int, action: str) -> HttpResponse:
    """POST runs the action; disable and delete need the confirmation page's token first."""
    principal = console_principal(request)
    secret = _visible_secret(principal, secret_id)
    if action not in VERSION_ACTIONS:
        raise not_found()
    detail = reverse("admin:secret_detail", args=[secret.id])
    needed = VERSION_CONFIRMED.get(action)

    def confirmation() -> Confirmation:
        version = secret.versions.filter(revision=revision).first()
        if version is None:
            raise not_found(ObjectNotFound("secret_version", revision))
        return _version_confirmation(secret, version.revision, version.status, action, detail)

    operation = VERSION_OPERATIONS[action]
    verb = {"enable": "enabled", "disable": "disabled", "delete": "scheduled for deletion", "restore": "restored"}
    return action_run(
        request,
        call=lambda: operation(principal=principal, secret_id=secret.id, revision=revision),
        success=f"Version {revision} {verb[action]}.",
        fallback=detail,
        confirmation=confirmation if needed is not None else None,
        may_act=lambda: needed is not None and can(principal, needed, secret),
        refused="change this version",
    )


def _version_confirmation(secret: Secret, revision: int, status: str, action: str, detail: str) -> Confirmation:
    after = version_successor(secret, revision)
    name = f"{secret.path.rstrip('/')}/{secret.name}"
    consequences = [f"Applications reading revision {revision} of {name} get an error."]
    if after["is_latest_enabled"]:
        if after["next_latest_enabled"] is not None:
            consequences.append(
                f"It is the latest enabled revision: readers of latest_enabled get revision "
                f"{after['next_latest_enabled']} instead."
            )
        else:
            consequences.append("It is the only enabled revision: reading latest_enabled fails until a new version.")
    if action == "delete":
        consequences.append(
            f"After {DELETION_DELAY.days} days the version is destroyed (its data key is shredded)."
            if not secret.is_ephemeral
            else "This secret is ephemeral: the version is destroyed at once."
        )
    return Confirmation(
        title="Disable a version" if action == "disable" else "Delete a version",
        subject=f"revision {revision} of {name} ({secret.project.name})",
        button="Disable the version" if action == "disable" else "Schedule the deletion",
        cancel_url=detail,
        consequences=consequences,
        facts=[("Status", status)],
        reversible=(
            "Reversible: enable the version again."
            if action == "disable"
            else (
                "Not reversible."
                if secret.is_ephemeral
                else f"Reversible for {DELETION_DELAY.days} days: restore the version."
            )
        ),
    )


@require_http_methods(["GET", "POST"])
def secret_action(request: HttpRequest, secret_id: Any, action: str) -> HttpResponse:
    """POST runs the action; delete needs the confirmation page's token first."""
    principal = console_principal(request)
    secret = _visible_secret(principal, secret_id)
    if action not in SECRET_ACTIONS:
        raise not_found()
    detail = reverse("admin:secret_detail", args=[secret.id])
    needed = SECRET_CONFIRMED.get(action)
    operation = SECRET_OPERATIONS[action]
    verb = {
        "protect": "protected",
        "unprotect": "unprotected",
        "delete": "scheduled for deletion",
        "restore": "restored",
    }
    # After a deletion the secret's page is still there (scheduled): back to it.
    return action_run(
        request,
        call=lambda: operation(principal=principal, secret_id=secret.id),
        success=f"Secret {secret.name} {verb[action]}.",
        fallback=detail,
        confirmation=(lambda: _secret_confirmation(secret, detail)) if needed is not None else None,
        may_act=lambda: needed is not None and can(principal, needed, secret),
        refused="change this secret",
    )


def _secret_confirmation(secret: Secret, detail: str) -> Confirmation:
    d = secret_dependents(secret)
    name = f"{secret.path.rstrip('/')}/{secret.name}"
    consequences = [
        f"Applications reading {name} get an error: its {d['versions']} version{'s' * (d['versions'] != 1)} "
        f"({d['enabled_versions']} enabled) can no longer be read.",
    ]
    if secret.is_ephemeral:
        consequences.append("This secret is ephemeral: it is destroyed at once.")
        reversible = "Not reversible."
    else:
        consequences.append(f"After {DELETION_DELAY.days} days every version is destroyed (data keys shredded).")
        reversible = f"Reversible for {DELETION_DELAY.days} days: restore the secret."
    return Confirmation(
        title="Delete a secret",
        subject=f"{name} ({secret.project.name})",
        button="Schedule the deletion",
        cancel_url=detail,
        consequences=consequences,
        facts=[("Id", secret.id), ("Type", secret.type)],
        reversible=reversible,
    )
