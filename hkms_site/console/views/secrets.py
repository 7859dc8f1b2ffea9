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
from django.views.decorators.http import require_POST

from hkms_site.access.principal import Principal
from hkms_site.access.roles import Action
from hkms_site.access.services import can, visible
from hkms_site.console.forms import (
    VERSION_FIELD_MAP,
    VERSION_FORMS,
    SecretCreateForm,
    SecretEditForm,
    SecretFilterForm,
    attach_service_error,
)
from hkms_site.console.principal import console_principal
from hkms_site.console.selectors import (
    SecretFilter,
    normalise_path,
    principal_can_grant,
    projects_visible,
    secret_folders,
    secrets_filtered,
)
from hkms_site.console.views.common import denied, not_found, page, run_action
from hkms_site.errors import ObjectNotFound, PermissionDenied, ServiceError
from keys_app.errors import HierarchyError
from keys_app.models import Key
from secrets_app import services as secret_services
from secrets_app.models import Project, Secret, SecretType

VERSION_OPERATIONS: dict[str, Callable[..., Any]] = {
    "enable": secret_services.secret_version_enable,
    "disable": secret_services.secret_version_disable,
    "delete": secret_services.secret_version_delete,
    "restore": secret_services.secret_version_restore,
}
SECRET_OPERATIONS: dict[str, Callable[..., Any]] = {
    "protect": secret_services.secret_protect,
    "unprotect": secret_services.secret_unprotect,
    "delete": secret_services.secret_delete,
    "restore": secret_services.secret_restore,
}
VERSION_ACTIONS = tuple(VERSION_OPERATIONS)
SECRET_ACTIONS = tuple(SECRET_OPERATIONS)
_STRUCTURED = {SecretType.KEY_VALUE, SecretType.BASIC_CREDENTIALS, SecretType.DATABASE_CREDENTIALS, SecretType.SSH_KEY}


def _visible_secret(principal: Principal, secret_id: Any) -> Secret:
    """``secret_get``: 404 for a secret the principal may not see."""
    try:
        return secret_services.secret_get(principal=principal, secret_id=secret_id)
    except ObjectNotFound as exc:
        raise not_found(exc) from None


def _writable_projects(principal: Principal) -> Any:
    return visible(principal, Project.objects.all(), Action.SECRET_WRITE).order_by("name")


# --- list and folders --------------------------------------------------------------------
def secret_list(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    form = SecretFilterForm(request.GET or None, projects=projects_visible(principal))
    data = form.cleaned_data if form.is_valid() else {}
    searching = any(data.get(k) for k in ("q", "tags", "type", "status"))
    f = SecretFilter(
        q=data.get("q", ""),
        project_id=data.get("project", ""),
        path=data.get("path", "") or "/",
        recursive=searching,
        tags=form.tag_list() if data else (),
        type=data.get("type", ""),
        status=data.get("status", ""),
    )
    path = normalise_path(f.path)
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
    folders = [] if searching else [{**d, "query": with_path(d["path"])} for d in secret_folders(principal, f)]
    context = {
        "form": form,
        "page_obj": Paginator(secrets_filtered(principal, f), 50).get_page(request.GET.get("page")),
        "query": query.urlencode(),
        "path": path,
        "crumbs": crumbs,
        "folders": folders,
        "can_create": _writable_projects(principal).exists(),
    }
    return page(request, "console/secret_list.html", context, title="Secrets")


# --- create ------------------------------------------------------------------------------
def secret_create(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    projects = _writable_projects(principal)
    if not projects.exists():
        return denied(request, "create secrets")
    # Naming a key for a secret needs key_user on it; the project default needs nothing more.
    keys = visible(principal, Key.objects.select_related("project"), Action.KEY_USE).filter(
        usage="symmetric_encryption", state="enabled"
    )
    initial = {"path": request.GET.get("path", "/")}
    form = SecretCreateForm(request.POST or None, projects=projects, keys=keys, initial=initial)
    if request.method == "POST" and form.is_valid():
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
            messages.success(request, f"Secret {secret.name} created. Add its first version.")
            return HttpResponseRedirect(reverse("admin:secret_detail", args=[secret.id]))
    context = {"form": form, "submit": "Create secret", "cancel_url": reverse("admin:secret_list")}
    return page(request, "console/form_page.html", context, title="New secret")


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
            version = secret_services.secret_version_create(
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
        accessed = secret_services.secret_version_access(principal=principal, secret_id=secret.id, revision=revision)
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


@require_POST
def secret_version_action(request: HttpRequest, secret_id: Any, revision: int, action: str) -> HttpResponse:
    principal = console_principal(request)
    secret = _visible_secret(principal, secret_id)
    if action not in VERSION_ACTIONS:
        raise not_found()
    operation = VERSION_OPERATIONS[action]
    verb = {"enable": "enabled", "disable": "disabled", "delete": "scheduled for deletion", "restore": "restored"}
    return run_action(
        request,
        lambda: operation(principal=principal, secret_id=secret.id, revision=revision),
        success=f"Version {revision} {verb[action]}.",
        fallback=reverse("admin:secret_detail", args=[secret.id]),
    )


@require_POST
def secret_action(request: HttpRequest, secret_id: Any, action: str) -> HttpResponse:
    principal = console_principal(request)
    secret = _visible_secret(principal, secret_id)
    if action not in SECRET_ACTIONS:
        raise not_found()
    operation = SECRET_OPERATIONS[action]
    verb = {
        "protect": "protected",
        "unprotect": "unprotected",
        "delete": "scheduled for deletion",
        "restore": "restored",
    }
    return run_action(
        request,
        lambda: operation(principal=principal, secret_id=secret.id),
        success=f"Secret {secret.name} {verb[action]}.",
        fallback=reverse("admin:secret_detail", args=[secret.id]),
    )
