"""Encrypted secret storage (internal): projects, secrets, versions and their payloads.

These functions do no authorization and write no audit event: they are the
storage layer under ``secrets_app.services`` (which takes the acting principal,
checks its roles and audits) and under the rotation services.  Entry points
(API views, console, commands) must call ``secrets_app.services``, never this.

Each secret version has its own DEK (wrapped by the primary KEK version of the
secret's key).  The DEK is committed on the dek database before the version
row on default (see ``keys_app.services.material``).  Destroying a version
deletes its DEK first, then empties the row: after that the payload is gone
for good, including from backups of the default database.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from hkms_site.cluster.revisions import revision_next
from keys_app import crypto
from keys_app.errors import IntegrityError, KeyMaterialUnavailable
from keys_app.models import Key, KeyState
from keys_app.services.material import dek_create, dek_material, deks_destroy, key_create_with_material
from secrets_app.models import Project, Secret, SecretVersion, VersionStatus

#: Secret ciphertexts are sealed by single-version DEKs; the header's key version is constant.
DEK_KEY_VERSION = 1


class SecretError(Exception):
    code = "invalid_argument"


def payload_context(secret_id: object, revision: int, dek_id: object) -> bytes:
    return crypto.aad("secret", str(secret_id), revision, str(dek_id))


def payload_seal(
    *, material: crypto.SecretBytes, data: bytes, secret_id: object, revision: int, dek_id: object
) -> bytes:
    return crypto.seal(
        material, data, context=payload_context(secret_id, revision, dek_id), key_version=DEK_KEY_VERSION
    )


def payload_open(*, material: crypto.SecretBytes, version: SecretVersion) -> bytes:
    if version.ciphertext is None:
        raise KeyMaterialUnavailable(f"secret {version.secret_id} revision {version.revision} has no payload")
    try:
        return crypto.open_(
            material,
            bytes(version.ciphertext),
            context=payload_context(version.secret_id, version.revision, version.dek_id),
        )
    except crypto.InvalidCiphertext:
        raise IntegrityError(
            f"secret {version.secret_id} revision {version.revision} failed authentication "
            "(tampered or moved ciphertext)"
        ) from None


# --- projects ------------------------------------------------------------------------------
@transaction.atomic
def project_create(*, name: str, organization_id: uuid.UUID | None = None, description: str = "") -> Project:
    """A project and its default key (the KEK of secrets that name no key)."""
    project = Project.objects.create(
        name=name, organization_id=organization_id or uuid.uuid4(), description=description
    )
    key = key_create_with_material(project=project, name=f"{name}-default", description="Project default key")
    project.default_key = key
    project.save(update_fields=["default_key"])
    return project


# --- secrets -------------------------------------------------------------------------------
def secret_create(*, project: Project, name: str, path: str = "/", key: Key | None = None, **fields: Any) -> Secret:
    key = key or project.default_key
    if key is None:
        raise SecretError(f"project {project.id} has no default key")
    if key.project_id != project.id:
        raise SecretError("the key must belong to the secret's project")
    if key.usage != "symmetric_encryption" or key.state != KeyState.ENABLED:
        raise SecretError(f"key {key.id} must be an enabled symmetric key")
    return Secret.objects.create(project=project, name=name, path=path, key=key, **fields)


def secret_version_create(
    *,
    secret: Secret,
    data: bytes,
    description: str = "",
    disable_previous: bool = False,
    data_crc32: int | None = None,
    **fields: Any,
) -> SecretVersion:
    """Add a version with a fresh DEK. The DEK is committed first (see module docstring)."""
    version_id = uuid.uuid4()
    dek, material = dek_create(key=secret.key, owner_id=version_id)
    with transaction.atomic():
        locked = Secret.objects.select_for_update().get(id=secret.id)
        revision = revision_next(secret_id=locked.id, version_count=locked.version_count)  # never reused
        version = SecretVersion.objects.create(
            id=version_id,
            secret=locked,
            revision=revision,
            ciphertext=payload_seal(
                material=material, data=data, secret_id=secret.id, revision=revision, dek_id=dek.id
            ),
            dek_id=dek.id,
            data_crc32=data_crc32,
            description=description,
            **fields,
        )
        if disable_previous:
            SecretVersion.objects.filter(secret=locked, status=VersionStatus.ENABLED).exclude(id=version.id).update(
                status=VersionStatus.DISABLED, updated_at=timezone.now()
            )
        Secret.objects.filter(id=secret.id).update(version_count=revision, updated_at=timezone.now())
    secret.version_count = revision
    version.secret = secret
    return version


def secret_version_payload(version: SecretVersion) -> bytes:
    """Decrypt one version's payload (status checks are the caller's business).

    ``version.secret.key`` should be loaded with the version (``select_related``).
    A DEK rotation may replace the version's DEK between our read of the row
    and of the DEK; when the DEK is missing the row is read once more, so
    concurrent reads never fail because of a rotation.
    """
    key = version.secret.key
    try:
        return _payload(key, version)
    except (KeyMaterialUnavailable, IntegrityError):
        fresh = SecretVersion.objects.filter(id=version.id).values("dek_id", "ciphertext").first()
        if fresh is None or fresh["dek_id"] == version.dek_id:
            raise
        version.dek_id, version.ciphertext = fresh["dek_id"], fresh["ciphertext"]
        return _payload(key, version)


def _payload(key: Key, version: SecretVersion) -> bytes:
    if version.dek_id is None:
        raise KeyMaterialUnavailable(f"secret {version.secret_id} revision {version.revision} was destroyed")
    return payload_open(material=dek_material(key=key, dek_id=version.dek_id), version=version)


def secret_version_set_status(version: SecretVersion, status: str) -> SecretVersion:
    SecretVersion.objects.filter(id=version.id).update(status=status, updated_at=timezone.now())
    version.status = status
    return version


def secret_version_destroy(version: SecretVersion) -> SecretVersion:
    """Crypto-shred a version: delete its DEK (dek db), then empty the row (default db).

    A crash between the two steps leaves a version whose DEK is gone; running
    this again finishes it.  The payload is unrecoverable after the first step.
    """
    deks_destroy([version.dek_id] if version.dek_id else [])
    now = timezone.now()
    SecretVersion.objects.filter(id=version.id).update(
        status=VersionStatus.DELETED, ciphertext=None, dek_id=None, deleted_at=now, updated_at=now
    )
    version.status, version.ciphertext, version.dek_id, version.deleted_at = VersionStatus.DELETED, None, None, now
    return version
