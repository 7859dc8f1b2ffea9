"""Model admin pages (superusers only) and guardian's per-object permission pages.

Everything here is read-only: changes go through the console pages, which call
the guarded, audited services.  Secret versions are not registered at all (their
rows hold ciphertext), and no page shows a payload, a wrapped key or an API
key's digest.  Guardian's "Object permissions" page edits raw object
permissions; the Roles page (``RoleGrant``) is the supported way to grant roles,
and it re-derives an object's permissions from the grants whenever it changes them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from guardian.admin import GuardedModelAdmin

from hkms_core.access.models import ApiKey, RoleGrant
from hkms_core.audit.models import AuditEvent
from hkms_core.tenancy.models import Project
from keys_app.models import Key
from secrets_app.models import Secret


class SuperuserReadOnly:
    """Visible to superusers only; no add, delete or field edits."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]  # type: ignore[attr-defined]


class GuardedReadOnly(SuperuserReadOnly, GuardedModelAdmin):  # type: ignore[misc]
    # The change page must exist (read-only) for guardian's "Object permissions" button.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)


@admin.register(Project)
class ProjectAdmin(GuardedReadOnly):
    list_display = ("name", "id", "organization_id", "created_at")
    search_fields = ("name", "id")


@admin.register(Secret)
class SecretAdmin(GuardedReadOnly):
    list_display = ("name", "path", "project", "type", "version_count", "protected", "deletion_requested_at")
    list_filter = ("type", "protected", "status")
    search_fields = ("name", "path", "id")


@admin.register(Key)
class KeyAdmin(GuardedReadOnly):
    list_display = ("name", "project", "state", "primary_version", "rotation_count", "next_rotation_at")
    list_filter = ("state", "usage", "protected")
    search_fields = ("name", "id")


@admin.register(AuditEvent)
class AuditEventAdmin(SuperuserReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("seq", "created_at", "actor", "action", "object_type", "object_id", "outcome", "source_ip")
    list_filter = ("outcome", "via")
    search_fields = ("actor", "action", "object_id")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(SuperuserReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("access_key", "user", "default_project", "expires_at", "revoked_at")
    exclude = ("secret_digest",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in ApiKey._meta.fields if f.name != "secret_digest"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RoleGrant)
class RoleGrantAdmin(SuperuserReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("user", "role", "content_type", "object_pk", "granted_by", "created_at")
    list_filter = ("role",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
