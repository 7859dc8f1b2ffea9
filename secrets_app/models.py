"""Secrets and secret versions (default database); their project is hkms_core.tenancy's.

A secret version's payload is stored only as ``ciphertext``: ``crypto.seal``
output under the version's own DEK with context
``aad("secret", secret_id, revision, dek_id)``.  The DEK lives on the dek
database (``dek_id`` is a plain UUID); destroying it makes the version
unrecoverable, backups of this database included.
"""

from __future__ import annotations

import uuid

from django.db import models

from hkms_core.tenancy.models import Project


class SecretType(models.TextChoices):
    OPAQUE = "opaque"
    CERTIFICATE = "certificate"
    KEY_VALUE = "key_value"
    BASIC_CREDENTIALS = "basic_credentials"
    DATABASE_CREDENTIALS = "database_credentials"
    SSH_KEY = "ssh_key"


class EphemeralAction(models.TextChoices):
    UNKNOWN = "unknown_action"
    DELETE = "delete"
    DISABLE = "disable"


class Secret(models.Model):
    class Status(models.TextChoices):
        READY = "ready"
        LOCKED = "locked"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="secrets")
    name = models.CharField(max_length=255)
    path = models.CharField(max_length=1024, default="/")
    type = models.CharField(max_length=32, choices=SecretType.choices, default=SecretType.OPAQUE)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    tags = models.JSONField(default=list, blank=True)
    description = models.TextField(blank=True, default="")
    protected = models.BooleanField(default=False)
    #: The Key Manager key whose primary KEK version wraps this secret's DEKs.
    key = models.ForeignKey("keys_app.Key", on_delete=models.PROTECT, related_name="secrets")
    version_count = models.PositiveIntegerField(default=0)
    region = models.CharField(max_length=16, default="fr-par")
    #: Products that manage this secret (Scaleway's ``used_by``; set by add_secret_owner).
    used_by = models.JSONField(default=list, blank=True)
    ephemeral_ttl = models.DurationField(null=True, blank=True)
    ephemeral_expires_once_accessed = models.BooleanField(default=False)
    ephemeral_action = models.CharField(max_length=16, choices=EphemeralAction.choices, blank=True, default="")
    deletion_requested_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "path", "name"],
                condition=models.Q(deletion_requested_at__isnull=True),
                name="secret_name_unique_per_path",
            )
        ]
        permissions = [
            ("read_secret_payload", "Read secret payloads"),
            ("write_secret", "Add versions and edit secret metadata"),
            ("admin_secret", "Delete, protect and manage permissions of secrets"),
            ("view_secret_metadata", "View secret metadata"),
        ]

    def __str__(self) -> str:
        return f"{self.path.rstrip('/')}/{self.name} ({self.id})"

    @property
    def is_ephemeral(self) -> bool:
        return self.ephemeral_ttl is not None or self.ephemeral_expires_once_accessed


class VersionStatus(models.TextChoices):
    ENABLED = "enabled"
    DISABLED = "disabled"
    SCHEDULED_FOR_DELETION = "scheduled_for_deletion"
    DELETED = "deleted"


class SecretVersion(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    secret = models.ForeignKey(Secret, on_delete=models.CASCADE, related_name="versions")
    revision = models.PositiveIntegerField()
    status = models.CharField(max_length=32, choices=VersionStatus.choices, default=VersionStatus.ENABLED)
    ciphertext = models.BinaryField(null=True)
    dek_id = models.UUIDField(null=True, db_index=True)
    data_crc32 = models.PositiveBigIntegerField(null=True, blank=True)
    description = models.TextField(blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    expires_once_accessed = models.BooleanField(default=False)
    ephemeral_action = models.CharField(max_length=16, choices=EphemeralAction.choices, blank=True, default="")
    accessed_at = models.DateTimeField(null=True, blank=True)
    #: The status to restore when a scheduled deletion is cancelled.
    status_before_deletion = models.CharField(max_length=32, blank=True, default="")
    deletion_requested_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["secret_id", "revision"]
        constraints = [models.UniqueConstraint(fields=["secret", "revision"], name="secret_revision_unique")]

    def __str__(self) -> str:
        return f"{self.secret_id} rev {self.revision} ({self.status})"
