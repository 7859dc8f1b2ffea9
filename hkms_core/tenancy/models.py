"""The project: the tenant every secret and key belongs to (default database).

Foundation layer: this module imports Django only.  Keys (keys_app) and
secrets (secrets_app) point at a project; a project points at nothing above
it.  Its default key is therefore a plain UUID column (``default_key_id``),
like the cross-database references of hkms_core.routers, not a foreign key:
keys_app keeps the guarantee the old ``PROTECT`` foreign key gave (a
project's default key is never deleted; keys_app.services.keys).

The model moved here from secrets_app; the table keeps its name
(``secrets_app_project``) and its content type was renamed in place, so ids,
guardian grants and permissions survived (migration ``tenancy.0001_initial``).
"""

from __future__ import annotations

import uuid

from django.db import models


class Project(models.Model):
    """The tenant: every secret and key belongs to one."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    #: The id of the Key Manager key (keys_app.Key) used as the KEK of secrets that name no key;
    #: a plain UUID (no foreign key: a foundation model does not point up a layer).
    default_key_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "secrets_app_project"
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization_id", "name"], name="project_name_unique_per_organization")
        ]
        # Project-wide grants of every role (see hkms_core.access.roles).
        permissions = [
            ("view_secret_metadata", "View secret metadata in the project"),
            ("read_secret_payload", "Read secret payloads in the project"),
            ("write_secret", "Add versions and edit secrets in the project"),
            ("admin_secret", "Delete, protect and manage secrets in the project"),
            ("view_key_metadata", "View key metadata in the project"),
            ("use_key", "Use keys of the project"),
            ("manage_key", "Create, rotate and manage keys in the project"),
            ("view_audit_log", "Read the project's audit log"),
            ("manage_roles", "Grant and revoke roles in the project"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"
