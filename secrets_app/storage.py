"""Encrypted secret storage (internal): secrets, versions and their payloads.

(A project and its default key are created by keys_app.services.projects.)

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
from collections.abc import Callable
from typing import Any, Protocol

from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from hkms_core.cluster.revisions import revision_next
from hkms_core.errors import HkmsError, PreconditionFailed, invalid_arguments_body
from hkms_core.queries import insert_row
from hkms_core.tenancy.models import Project
from keys_app import crypto
from keys_app.errors import IntegrityCheckFailed, KeyMaterialUnavailable
from keys_app.models import Dek, Key, KeyState
from keys_app.services.material import dek_create, dek_material, deks_destroy
from keys_app.services.projects import project_default_key
from secrets_app.models import Secret, SecretVersion, VersionStatus

#: Secret ciphertexts are sealed by single-version DEKs; the header's key version is constant.
DEK_KEY_VERSION = 1


class SecretError(HkmsError):
    """The key a secret would be sealed with is not usable for it (wrong project, disabled, none): 400 on ``key_id``."""

    code = "invalid_argument"
    status = 400
    type = "invalid_arguments"

    def as_scaleway(self) -> dict[str, Any]:
        return invalid_arguments_body([("key_id", "constraint", self.message)], self.message)


def payload_context(secret_id: object, revision: int, dek_id: object) -> bytes:
    return crypto.aad("secret", str(secret_id), revision, str(dek_id))


def payload_seal(
    *, material: crypto.SecretBytes, data: bytes, secret_id: object, revision: int, dek_id: object
) -> bytes:
    return crypto.seal(
        material, data, context=payload_context(secret_id, revision, dek_id), key_version=DEK_KEY_VERSION
    )


class SealedPayload(Protocol):
    """What opening a payload reads of a version (a ``SecretVersion`` or a row of its columns)."""

    @property
    def secret_id(self) -> uuid.UUID: ...
    @property
    def revision(self) -> int: ...
    @property
    def dek_id(self) -> uuid.UUID | None: ...
    @property
    def ciphertext(self) -> bytes | memoryview | None: ...


def payload_open(*, material: crypto.SecretBytes, version: SealedPayload) -> bytes:
    if version.ciphertext is None:
        raise KeyMaterialUnavailable(f"secret {version.secret_id} revision {version.revision} has no payload")
    try:
        return crypto.open_(
            material,
            bytes(version.ciphertext),
            context=payload_context(version.secret_id, version.revision, version.dek_id),
        )
    except crypto.InvalidCiphertext:
        raise IntegrityCheckFailed(
            f"secret {version.secret_id} revision {version.revision} failed authentication "
            "(tampered or moved ciphertext)"
        ) from None


# --- secrets -------------------------------------------------------------------------------
def secret_create(*, project: Project, name: str, path: str = "/", key: Key | None = None, **fields: Any) -> Secret:
    key = key or project_default_key(project)
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
    audit: Callable[[SecretVersion], Any] | None = None,
    **fields: Any,
) -> SecretVersion:
    """Add a version with a fresh DEK. The DEK is committed first (see module docstring).

    The secret row is locked, then the secret must not be scheduled for deletion
    (``PreconditionFailed`` otherwise); ``audit(version)`` runs in that transaction.
    If the transaction fails, the fresh DEK is deleted again (a crash leaves it
    behind, owned by a version id that never existed: an orphan that
    ``verify_hierarchy`` reports).
    """
    version_id = uuid.uuid4()
    dek, material = dek_create(key=secret.key, owner_id=version_id)
    try:
        with transaction.atomic():
            scheduled, version_count = _secret_lock_for_version(secret.id)
            if scheduled:  # checked under the lock: a deletion wins
                raise PreconditionFailed("scheduled_for_deletion", f"secret {secret.id} is scheduled for deletion")
            revision = revision_next(secret_id=secret.id, version_count=version_count)  # never reused
            version = insert_row(
                SecretVersion,
                "default",
                id=version_id,
                secret_id=secret.id,
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
                SecretVersion.objects.filter(secret=secret, status=VersionStatus.ENABLED).exclude(id=version.id).update(
                    status=VersionStatus.DISABLED, updated_at=timezone.now()
                )
            _secret_count_version(secret.id, revision)
            if audit is not None:
                audit(version)
    except BaseException:
        deks_destroy([dek.id])  # the version never committed: its DEK protects nothing
        raise
    secret.version_count = revision
    version.secret = secret
    return version


_SECRET_WITH_KEY: dict[str, tuple[str, list[Any], int]] = {}
_SECRET_NAMES = [field.attname for field in Secret._meta.concrete_fields]
_KEY_NAMES = [field.attname for field in Key._meta.concrete_fields]


def secret_with_key(secret_id: uuid.UUID) -> Secret | None:
    """The secret with its key loaded (``secret.key``), in one plain parameterised query.

    The same instances as ``Secret.objects.select_related("key").get(id=…)`` (every
    concrete column, converted by the ORM's own converters: ``Model.from_db``), without
    the ORM's query compilation, which costs several times the query."""
    connection = connections["default"]
    if connection.vendor not in _SECRET_WITH_KEY:
        ops = connection.ops
        columns, converters = [], []
        for alias, model in (("s", Secret), ("k", Key)):
            for field in model._meta.concrete_fields:
                col = field.get_col(alias)
                columns.append(f"{alias}.{ops.quote_name(str(field.column))}")
                converters.append((col, ops.get_db_converters(col) + col.get_db_converters(connection)))
        secret_table, key_table = ops.quote_name(Secret._meta.db_table), ops.quote_name(Key._meta.db_table)
        sql = (
            f"SELECT {', '.join(columns)} FROM {secret_table} s "  # noqa: S608 (model metadata)
            f"JOIN {key_table} k ON k.id = s.key_id WHERE s.id = %s"
        )
        _SECRET_WITH_KEY[connection.vendor] = (sql, converters, len(Secret._meta.concrete_fields))
    sql, converters, split = _SECRET_WITH_KEY[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(sql, [Secret._meta.pk.get_db_prep_value(secret_id, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, (col, functions) in enumerate(converters):
        for convert in functions:
            values[index] = convert(values[index], col, connection)
    secret = Secret.from_db("default", _SECRET_NAMES, values[:split])
    secret.key = Key.from_db("default", _KEY_NAMES, values[split:])
    return secret


def _secret_lock_for_version(secret_id: uuid.UUID) -> tuple[bool, int]:
    """``(scheduled for deletion, version_count)`` of the secret, its row locked until the
    transaction ends (``FOR UPDATE``; SQLite's immediate transaction holds the write lock).

    Plain parameterised SQL: the two columns the new version depends on, without the ORM's
    query compilation (which cost more than the query).  A vanished secret raises
    ``Secret.DoesNotExist``, as the ORM's ``get`` did."""
    connection = connections["default"]
    table = connection.ops.quote_name(Secret._meta.db_table)
    sql = f"SELECT deletion_requested_at IS NOT NULL, version_count FROM {table} WHERE id = %s"  # noqa: S608
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [Secret._meta.pk.get_db_prep_value(secret_id, connection)])
        row = cursor.fetchone()
    if row is None:
        raise Secret.DoesNotExist(f"secret {secret_id} does not exist")
    return bool(row[0]), int(row[1])


def _secret_count_version(secret_id: uuid.UUID, revision: int) -> None:
    """``version_count = revision`` and ``updated_at = now`` on the (locked) secret row, in plain SQL."""
    connection = connections["default"]
    table = connection.ops.quote_name(Secret._meta.db_table)
    updated_at = Secret._meta.get_field("updated_at").get_db_prep_value(timezone.now(), connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET version_count = %s, updated_at = %s WHERE id = %s",  # noqa: S608 (model metadata)
            [revision, updated_at, Secret._meta.pk.get_db_prep_value(secret_id, connection)],
        )


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
    except (KeyMaterialUnavailable, IntegrityCheckFailed):
        fresh = SecretVersion.objects.filter(id=version.id).values("dek_id", "ciphertext").first()
        if fresh is None or fresh["dek_id"] == version.dek_id:
            raise
        version.dek_id, version.ciphertext = fresh["dek_id"], fresh["ciphertext"]
        return _payload(key, version)


def _payload(key: Key, version: SecretVersion) -> bytes:
    if version.dek_id is None:
        raise KeyMaterialUnavailable(f"secret {version.secret_id} revision {version.revision} was destroyed")
    return payload_open(material=dek_material(key=key, dek_id=version.dek_id), version=version)


def secret_version_transition(
    version: SecretVersion, *, from_statuses: tuple[str, ...], status: str, secret_live: bool = False, **fields: Any
) -> bool:
    """Move ``version`` to ``status`` if its row is still in one of ``from_statuses``; True if it moved.

    One conditional ``UPDATE`` checked by its row count (compare-and-set): a
    concurrent transition that changed the status first makes this one update
    nothing, instead of being undone by it.  With ``secret_live`` the caller
    must hold the secret's row lock (``secret_lock``) and have checked that
    the secret is not scheduled for deletion.  Call it inside the caller's
    transaction, with the audit event.  ``fields`` are extra columns to set.
    """
    now = timezone.now()
    moved = (
        SecretVersion.objects.filter(id=version.id, status__in=from_statuses).update(
            status=status, updated_at=now, **fields
        )
        == 1
    )
    if moved:
        version.status = status
    return moved


def secret_lock(secret_id: uuid.UUID) -> Secret | None:
    """The secret row, locked until the end of the caller's transaction (``None`` if gone).

    The locking rule for a secret and its versions: lock the secret row first,
    then read what the change depends on, then write.  On SQLite the immediate
    transaction already holds the database's write lock.
    """
    return Secret.objects.select_for_update().filter(id=secret_id).first()


def deks_destroy_for(*, owner_id: uuid.UUID, dek_id: uuid.UUID | None) -> int:
    """Delete (and commit on dek) the DEK ``dek_id`` and every DEK owned by version ``owner_id``."""
    match = Q(owner_id=owner_id) if dek_id is None else Q(owner_id=owner_id) | Q(id=dek_id)
    ids = list(Dek.objects.using("dek").filter(match).values_list("id", flat=True))
    return deks_destroy(ids)


def secret_version_destroy(version: SecretVersion, *, only_if: Q | None = None) -> bool:
    """Crypto-shred a version: delete its *current* DEK (dek db), then empty the row (default db).

    In one default-database transaction the secret row then the version row
    are locked (``SELECT … FOR UPDATE``; SQLite's immediate transaction locks
    the database) and the version re-read; if it no longer matches ``only_if`` (say, it was
    restored meanwhile) nothing happens and False is returned.  Then every DEK
    the row names or owns -- its current ``dek_id``, read under the lock, and
    any DEK a concurrent ``rotate_deks`` created for it -- is deleted and
    committed on dek, and only then is the row emptied (ciphertext and dek_id
    NULL, status ``deleted``) and committed.

    Why this is complete against a concurrent DEK rotation (which moves
    ``(ciphertext, dek_id)`` by CAS ``WHERE dek_id = old``, then deletes the
    old DEK, or its new one if the CAS lost): while we hold the row lock the
    rotation's CAS waits; if it committed before we locked, we read and delete
    its new DEK (it deletes the old one); if it runs after, its CAS finds
    ``dek_id`` NULL, loses, and it deletes its new DEK.  No DEK of a destroyed
    version survives either way.

    A crash after the DEK commit leaves a row whose DEK is gone (unreadable)
    but not yet marked: running this again finishes it.  Called inside an
    outer transaction (to write the audit event with the marking), the lock
    and the marking are the outer transaction's.
    """
    now = timezone.now()
    with transaction.atomic():
        secret_lock(version.secret_id)  # the locking rule: the secret row, then the version row
        rows = SecretVersion.objects.select_for_update(of=("self",)).filter(id=version.id)
        if only_if is not None:
            rows = rows.filter(only_if)
        current = rows.values("dek_id", "status").first()
        if current is None or (current["status"] == VersionStatus.DELETED and current["dek_id"] is None):
            return False
        deks_destroy_for(owner_id=version.id, dek_id=current["dek_id"])
        SecretVersion.objects.filter(id=version.id).update(
            status=VersionStatus.DELETED, ciphertext=None, dek_id=None, deleted_at=now, updated_at=now
        )
    version.status, version.ciphertext, version.dek_id, version.deleted_at = VersionStatus.DELETED, None, None, now
    return True
