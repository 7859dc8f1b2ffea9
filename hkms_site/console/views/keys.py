"""Key pages: list, detail with versions, rotate / enable / disable / protect / delete /
restore, rotation policy, and a background DEK re-wrap with visible progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import can
from hkms_core.errors import ObjectNotFound, PermissionDenied, ServiceError
from hkms_core.lifecycle import DELETION_DELAY
from hkms_site.console.confirm import Confirmation, action_run
from hkms_site.console.forms import KeyCreateForm, RotationPolicyForm, attach_service_error
from hkms_site.console.jobs import rewrap_start
from hkms_site.console.principal import console_principal
from hkms_site.console.selectors import principal_can_grant
from hkms_site.console.views.common import denied, not_found, page
from keys_app import asymmetric
from keys_app.models import Key
from keys_app.selectors import key_rewrap_job, key_versions
from keys_app.services.keys import metadata
from keys_app.services.keys.key_material import key_delete_key_material
from keys_app.services.keys.lifecycle import (
    key_delete,
    key_disable,
    key_enable,
    key_protect,
    key_restore,
    key_rotate,
    key_unprotect,
)
from keys_app.services.keys.metadata import key_get, key_update
from keys_app.services.keys.validation import RotationPolicy
from secrets_app.selectors import key_dependents, projects_visible

KEY_OPERATIONS: dict[str, Callable[..., Key]] = {
    "rotate": key_rotate,
    "enable": key_enable,
    "disable": key_disable,
    "protect": key_protect,
    "unprotect": key_unprotect,
    "delete": key_delete,
    "restore": key_restore,
    "delete_key_material": key_delete_key_material,
}
_POLICY_FIELDS = {
    "rotation_policy.rotation_period": "rotation_period_hours",
    "rotation_policy": "rotation_period_hours",
}
KEY_ACTIONS = (
    "rotate",
    "enable",
    "disable",
    "protect",
    "unprotect",
    "delete",
    "restore",
    "rewrap",
    "delete_key_material",
)
#: The message each action leaves on the key's page.
KEY_DONE = {
    "rotate": "Key rotated: new DEKs use the new version.",
    "enable": "Key enabled.",
    "disable": "Key disabled: its secrets cannot be read until it is enabled again.",
    "protect": "Key protected.",
    "unprotect": "Key unprotected.",
    "delete": "Key scheduled for deletion.",
    "restore": "Key restored.",
    "delete_key_material": "Key material deleted: the key waits for new material.",
    "rewrap": "DEK re-wrap started: progress below.",
}
#: Actions that stop something working: they go through a confirmation page (``console.confirm``).
KEY_CONFIRMED = ("disable", "delete", "delete_key_material")


def _visible_key(principal: Principal, key_id: Any) -> Key:
    """``key_get``: 404 for a key the principal may not see, or whose deletion is final."""
    try:
        return key_get(principal=principal, key_id=key_id)
    except ObjectNotFound as exc:
        raise not_found(exc) from None


def key_list(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    name = request.GET.get("name", "")
    try:
        keys = metadata.key_list(principal=principal, name=name)
        scheduled = metadata.key_list(principal=principal, name=name, scheduled_for_deletion=True)
    except ServiceError as exc:  # a filter the service refuses (a NUL character): say so, list nothing
        messages.error(request, exc.message)
        keys = scheduled = Key.objects.none()
    context = {
        "keys": keys.select_related("project"),
        "scheduled": scheduled.select_related("project"),
        "name": name,
        "can_create": _administered_projects(principal).exists(),
    }
    return page(request, "console/key_list.html", context, title="Keys")


def _administered_projects(principal: Principal) -> Any:
    return projects_visible(principal, Action.KEY_ADMIN)


def key_create(request: HttpRequest) -> HttpResponse:
    """A new Key Manager key (``key_create``), in a project the principal administers keys of."""
    principal = console_principal(request)
    projects = _administered_projects(principal)
    if not projects.exists():
        return denied(request, "create keys")
    form = KeyCreateForm(
        request.POST or None,
        projects=projects,
        algorithms=asymmetric.available_algorithms(),
        initial={"algorithm": "aes_256_gcm"},
    )
    if request.method == "POST" and form.is_valid():
        chosen = asymmetric.ALGORITHMS[form.cleaned_data["algorithm"]]
        period = form.rotation_period()
        try:
            key = metadata.key_create(
                principal=principal,
                project_id=form.cleaned_data["project"],
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                usage=chosen.usage,
                algorithm=chosen.name,
                unprotected=not form.cleaned_data["protected"],
                rotation_policy=RotationPolicy(period) if period else None,
            )
        except PermissionDenied:
            form.add_error("project", "You may not create keys in this project.")
        except ServiceError as exc:
            attach_service_error(form, exc, _POLICY_FIELDS)
        else:
            messages.success(request, f"Key {key.name} created.")
            return HttpResponseRedirect(reverse("admin:key_detail", args=[key.id]))
    context = {"form": form, "submit": "Create key", "cancel_url": reverse("admin:key_list")}
    return page(request, "console/form_page.html", context, title="New key")


def key_detail(request: HttpRequest, key_id: Any) -> HttpResponse:
    principal = console_principal(request)
    key = _visible_key(principal, key_id)
    versions = key_versions(key)
    job = key_rewrap_job(key)
    dependents = key_dependents(key)
    context = {
        "key": key,
        "versions": versions,
        "deks_on_older": sum(v["deks"] for v in versions if not v["primary"]),
        "secrets_count": dependents["secrets"],
        "is_default_key": bool(dependents["default_of"]),
        "job": job,
        "job_running": job is not None and job["running"],
        "can": {"admin": can(principal, Action.KEY_ADMIN, key), "grant": principal_can_grant(principal)},
        "urls": {a: reverse("admin:key_action", args=[key.id, a]) for a in KEY_ACTIONS},
    }
    return page(request, "console/key_detail.html", context, title=f"Key {key.name}")


@require_http_methods(["GET", "POST"])
def key_action(request: HttpRequest, key_id: Any, action: str) -> HttpResponse:
    """POST runs the action; those in :data:`KEY_CONFIRMED` need the confirmation page's token first."""
    principal = console_principal(request)
    key = _visible_key(principal, key_id)
    detail = reverse("admin:key_detail", args=[key.id])
    if action not in KEY_ACTIONS:
        raise not_found()
    if action == "rewrap":

        def call() -> Any:
            return rewrap_start(principal=principal, key=key)

    else:
        operation = KEY_OPERATIONS[action]

        def call() -> Any:
            return operation(principal=principal, key_id=key.id)

    return action_run(
        request,
        call=call,
        success=KEY_DONE[action],
        fallback=detail,
        confirmation=(lambda: _key_confirmation(key, action, detail)) if action in KEY_CONFIRMED else None,
        may_act=lambda: can(principal, Action.KEY_ADMIN, key),
        refused="change this key",
    )


def _key_confirmation(key: Key, action: str, detail: str) -> Confirmation:
    """What disabling, deleting or shredding ``key`` stops, in counts (``key_dependents``)."""
    d = key_dependents(key)
    reads = (
        f"{d['secrets']} secret{'s' * (d['secrets'] != 1)} ({d['versions']} version{'s' * (d['versions'] != 1)}, "
        f"{d['enabled_versions']} enabled) protected by this key"
    )
    consequences = {
        "disable": [
            f"{reads} cannot be read or given new versions until the key is enabled again.",
            "Encrypt, decrypt and data-key calls with this key fail.",
        ],
        "delete": [
            f"{reads} cannot be read from now on.",
            "Encrypt, decrypt and data-key calls with this key fail.",
            f"After {DELETION_DELAY.days} days the deletion is final and the key material is destroyed: "
            "those secrets are crypto-shredded.",
        ],
        "delete_key_material": [
            f"{reads} are crypto-shredded now: their payloads become unrecoverable, backups included.",
            "The key cannot be used until new material is imported.",
        ],
    }[action]
    if d["default_of"]:
        consequences.append(f"It is the default key of project {', '.join(d['default_of'])}: new secrets there use it.")
    reversible = {
        "disable": "Reversible: enable the key again.",
        "delete": f"Reversible for {DELETION_DELAY.days} days: restore the key.",
        "delete_key_material": "Not reversible.",
    }[action]
    title = {
        "disable": "Disable a key",
        "delete": "Schedule a key's deletion",
        "delete_key_material": "Delete a key's material",
    }[action]
    button = {
        "disable": "Disable the key",
        "delete": "Schedule the deletion",
        "delete_key_material": "Destroy the key material",
    }[action]
    return Confirmation(
        title=title,
        subject=f"key {key.name} ({key.project.name})",
        button=button,
        cancel_url=detail,
        consequences=consequences,
        facts=[("Id", key.id), ("State", key.state), ("Primary version", f"v{key.primary_version}")],
        reversible=reversible,
    )


def key_policy(request: HttpRequest, key_id: Any) -> HttpResponse:
    principal = console_principal(request)
    key = _visible_key(principal, key_id)
    if not can(principal, Action.KEY_ADMIN, key):
        return denied(request, "change this key's rotation policy")
    initial = {
        "rotation_period_hours": int(key.rotation_period.total_seconds() // 3600) if key.rotation_period else None,
        "next_rotation_at": key.next_rotation_at,
    }
    form = RotationPolicyForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        policy = RotationPolicy(form.rotation_period(), form.cleaned_data.get("next_rotation_at"))
        try:
            key_update(principal=principal, key_id=key.id, rotation_policy=policy)
        except PermissionDenied:
            return denied(request, "change this key's rotation policy")
        except ServiceError as exc:
            attach_service_error(form, exc, _POLICY_FIELDS)
        else:
            messages.success(request, "Rotation policy saved.")
            return HttpResponseRedirect(reverse("admin:key_detail", args=[key.id]))
    context = {"form": form, "submit": "Save policy", "cancel_url": reverse("admin:key_detail", args=[key.id])}
    return page(request, "console/form_page.html", context, title=f"Rotation policy of {key.name}")
