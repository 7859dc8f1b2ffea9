"""Key metadata (default database) and key material (kek and dek databases).

Only :class:`Key` lives on ``default``: guardian permissions and project
filters need it beside the permission tables.  Wrapped material lives on the
``kek`` (:class:`RootKeyVersion`, :class:`KekVersion`, :class:`RotationJob`)
and ``dek`` (:class:`Dek`) databases, linked by plain UUID columns (see
``hkms_core.routers``).  No column anywhere holds an unwrapped key.
"""

from __future__ import annotations

import uuid

from django.db import models


class KeyUsage(models.TextChoices):
    SYMMETRIC_ENCRYPTION = "symmetric_encryption"
    ASYMMETRIC_ENCRYPTION = "asymmetric_encryption"
    ASYMMETRIC_SIGNING = "asymmetric_signing"


class KeyState(models.TextChoices):
    ENABLED = "enabled"
    DISABLED = "disabled"
    PENDING_KEY_MATERIAL = "pending_key_material"
    SCHEDULED_FOR_DELETION = "scheduled_for_deletion"


class KeyOrigin(models.TextChoices):
    SCALEWAY_KMS = "scaleway_kms"
    EXTERNAL = "external"


class Key(models.Model):
    """A Key Manager key: the metadata of one KEK and its versions."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("tenancy.Project", on_delete=models.PROTECT, related_name="keys")
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    usage = models.CharField(max_length=32, choices=KeyUsage.choices, default=KeyUsage.SYMMETRIC_ENCRYPTION)
    algorithm = models.CharField(max_length=32, default="aes_256_gcm")
    state = models.CharField(max_length=32, choices=KeyState.choices, default=KeyState.ENABLED)
    protected = models.BooleanField(default=True)
    origin = models.CharField(max_length=16, choices=KeyOrigin.choices, default=KeyOrigin.SCALEWAY_KMS)
    #: The KEK version that wraps new DEKs and encrypts new data.
    primary_version = models.PositiveIntegerField(default=1)
    rotation_count = models.PositiveIntegerField(default=0)
    rotated_at = models.DateTimeField(null=True, blank=True)
    rotation_period = models.DurationField(null=True, blank=True)
    next_rotation_at = models.DateTimeField(null=True, blank=True, db_index=True)
    deletion_requested_at = models.DateTimeField(null=True, blank=True)
    #: The state to return to when a key scheduled for deletion is restored.
    pre_deletion_state = models.CharField(max_length=32, blank=True, default="")
    #: Scaleway region the key lives in (``/regions/{region}/`` paths see only their own keys).
    region = models.CharField(max_length=16, default="fr-par")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        permissions = [
            ("use_key", "Encrypt, decrypt and generate data keys"),
            ("manage_key", "Rotate, enable, disable, protect and delete keys"),
            ("view_key_metadata", "View key metadata"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def is_enabled(self) -> bool:
        return self.state == KeyState.ENABLED


class RootKeyVersion(models.Model):
    """Metadata of one REK version (kek database). The REK itself is in the provider."""

    class State(models.TextChoices):
        ACTIVE = "active"
        RETIRED = "retired"

    version = models.PositiveIntegerField(primary_key=True)
    provider = models.CharField(max_length=16)
    check_value = models.BinaryField(max_length=32)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["version"]

    def __str__(self) -> str:
        return f"REK v{self.version} ({self.provider}, {self.state})"


class KekVersion(models.Model):
    """One version of a key's material, sealed by a REK version (kek database).

    ``wrapped_material`` is ``crypto.seal`` output with context
    ``aad("kek", key_id, version, rek_version)``; it is emptied when the version
    is destroyed.
    """

    class State(models.TextChoices):
        ENABLED = "enabled"  # may wrap (if primary) and unwrap
        RETIRED = "retired"  # no DEK references it any more; unwraps old ciphertexts only
        DESTROYED = "destroyed"  # material shredded

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key_id = models.UUIDField(db_index=True)
    version = models.PositiveIntegerField()
    algorithm = models.CharField(max_length=32, default="aes_256_gcm")
    wrapped_material = models.BinaryField(null=True)
    public_key = models.BinaryField(null=True)
    rek_version = models.PositiveIntegerField(db_index=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ENABLED)
    created_at = models.DateTimeField(auto_now_add=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["key_id", "version"]
        constraints = [models.UniqueConstraint(fields=["key_id", "version"], name="kek_version_unique")]

    def __str__(self) -> str:
        return f"KEK {self.key_id} v{self.version} ({self.state})"


class Dek(models.Model):
    """A data encrypting key sealed by a KEK version (dek database).

    ``wrapped`` is ``crypto.seal`` output with context
    ``aad("dek", id, key_id, kek_version)``.  ``owner_id`` names the secret
    version it encrypts (a plain UUID: the owner lives on another database); it
    lets rotation find DEKs orphaned by a crash.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key_id = models.UUIDField()
    kek_version = models.PositiveIntegerField()
    wrapped = models.BinaryField()
    owner_id = models.UUIDField(null=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["key_id", "kek_version", "id"], name="dek_by_kek_version")]

    def __str__(self) -> str:
        return f"DEK {self.id} (key {self.key_id} v{self.kek_version})"


class RotationJob(models.Model):
    """A resumable rotation: a cursor advanced after each committed batch (kek database).

    One running job per ``(kind, scope)``: re-running an interrupted command
    finds the job and continues from ``cursor``.  ``lease_owner``
    (``host:boot-id:pid-namespace:pid:random``) / ``lease_until`` stop two live
    processes from running the same job; a lease that expired, or whose owner
    died on this machine and pid namespace, is taken over (``services.jobs``).
    """

    class Kind(models.TextChoices):
        ROTATE_ROOT_KEY = "rotate_root_key"
        REWRAP_DEKS = "rewrap_deks"
        ROTATE_DEKS = "rotate_deks"
        REVOKE_KEY = "revoke_key"

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    scope = models.CharField(max_length=128)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    params = models.JSONField(default=dict)
    cursor = models.CharField(max_length=128, blank=True, default="")
    phase = models.CharField(max_length=32, blank=True, default="")
    processed = models.PositiveBigIntegerField(default=0)
    total = models.PositiveBigIntegerField(default=0)
    lease_owner = models.CharField(max_length=128, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "scope"],
                condition=models.Q(state="running"),
                name="one_running_job_per_scope",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}[{self.scope}] {self.state} {self.processed}/{self.total}"


class RotationLease(models.Model):
    """The fencing token of a running job that writes the default database (default database).

    Mirrors the owner of a :class:`RotationJob` lease (which lives on kek).  A
    batch that moves secret versions checks, row-locked inside its own default
    transaction, that it still names this process; a takeover or a release
    rewrites it first.  So a process frozen past its lease can never commit a
    batch after another process took the job over (``services.jobs``).
    """

    job_id = models.UUIDField(primary_key=True)
    owner = models.CharField(max_length=128, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"lease of job {self.job_id}: {self.owner or '(released)'}"
