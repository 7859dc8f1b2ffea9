"""Key Manager services: the guarded, audited operations behind the v1alpha1 API.

Every function takes the acting ``principal`` (keyword-only) and enforces the
roles of :mod:`hkms_core.access` itself, so the REST API, the console and the
commands cannot skip a check:

* metadata reads need ``KEY_VIEW``; encrypt, decrypt, data keys, sign, verify,
  wrap and unwrap need ``KEY_USE``; everything that changes a key needs
  ``KEY_ADMIN`` (creating one: ``KEY_ADMIN`` on the project);
* a key the principal may not see, a key in another region and a key whose
  deletion became final answer :class:`ObjectNotFound` (404), never 403.

Audit: every state change is recorded inside the transaction of the change
(``default`` database), every key use before its result is returned; a
refusal is recorded as ``denied`` and a use or change that fails its
precondition as ``failed``.  Events carry ids, versions and algorithm names,
never plaintexts, ciphertexts, signatures or key bytes.

Keys are the KEKs of the hierarchy: each version's material is sealed by the
REK on the ``kek`` database (``material.kek_version_create``), metadata lives
on ``default``.  There is no transaction across databases; each multi-database
operation below says in which order it commits and why a crash is safe.

Ciphertext format of ``encrypt`` and ``generate_data_key`` (symmetric keys):
``crypto.seal`` output under the key version that made it (the header names
that version), with associated data ``aad("key-manager", key_id,
associated_data)``.  Old versions keep decrypting after a rotation; decrypting
with an old version also returns the plaintext re-encrypted under the primary
version (Scaleway's ``DecryptResponse.ciphertext``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import authorize_audited, grants_forget, not_found_audited, visible
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_record
from hkms_core.errors import (
    InvalidArgument,
    ObjectNotFound,
    PermissionDenied,
    PreconditionFailed,
    ServiceError,
    parse_uuid,
)
from hkms_core.lifecycle import DELETION_DELAY, ORDERINGS
from hkms_core.queries import filter_json_list_contains
from hkms_core.tenancy.models import Project
from keys_app import asymmetric, crypto
from keys_app.errors import HierarchyError, KeyDisabled, KeyMaterialUnavailable
from keys_app.models import Dek, KekVersion, Key, KeyOrigin, KeyState, KeyUsage
from keys_app.services.material import (
    kek_material,
    kek_version_create,
    key_cache,
    key_create_with_material,
    key_require_enabled,
    key_set_state,
)
from keys_app.services.projects import key_is_a_project_default
from keys_app.services.rotation import deks_rewrap, kek_rotate, kek_rotate_cas, key_exposure_report

MIN_ROTATION_PERIOD = timedelta(hours=24)
MAX_ROTATION_PERIOD = timedelta(hours=876_000)  # 100 years
MAX_ENCRYPT_PLAINTEXT = 65_535
MAX_DECRYPT_CIPHERTEXT = 131_071
MAX_ASSOCIATED_DATA = 65_535
MAX_NAME = 255
MAX_DESCRIPTION = 4096
MAX_TAGS = 64
MAX_TAG = 128


@dataclass(frozen=True)
class RotationPolicy:
    """``period`` None clears the policy; ``next_rotation_at`` defaults to now + period."""

    period: timedelta | None
    next_rotation_at: datetime | None = None


@dataclass(frozen=True)
class CryptoResult:
    """The output of a key use.  ``data`` (plaintext, ciphertext or signature) never shows in a repr."""

    key: Key
    data: bytes = field(repr=False)
    #: decrypt only: the plaintext re-encrypted under the primary version, when an older one made it.
    reencrypted: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DataKey:
    key: Key
    ciphertext: bytes = field(repr=False)
    plaintext: bytes | None = field(repr=False)
    created_at: datetime
    algorithm: str = "aes_256_gcm"


# --- small helpers -----------------------------------------------------------------------------
def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def _uuid(raw: Any, name: str) -> uuid.UUID:
    return parse_uuid(raw, name)  # a malformed id is a 400 in both APIs (hkms_core.errors.parse_uuid)


def _aware(value: datetime) -> datetime:
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def deletion_is_final(key: Key, now: datetime | None = None) -> bool:
    """A key scheduled for deletion more than :data:`DELETION_DELAY` ago is gone for every caller.

    Never while the key is protected (protected since it was scheduled): protection
    blocks every route to destruction, so it stays restorable (THREAT_MODEL.md, "Destruction").
    """
    return (
        not key.protected
        and key.state == KeyState.SCHEDULED_FOR_DELETION
        and key.deletion_requested_at is not None
        and key.deletion_requested_at + DELETION_DELAY <= _now(now)
    )


def _live_keys(now: datetime | None = None) -> QuerySet[Key]:
    """Keys whose deletion is not final (purged keys may keep a row while a secret names them)."""
    cutoff = _now(now) - DELETION_DELAY
    return Key.objects.exclude(
        state=KeyState.SCHEDULED_FOR_DELETION, deletion_requested_at__lte=cutoff, protected=False
    )


def _key_for(
    principal: Principal, key_id: Any, action: Action, event: str, *, region: str | None, now: datetime | None = None
) -> Key:
    """The key ``key_id`` if the principal may do ``action`` on it; 404 if it may not see it.

    Missing, finally deleted, in another region or hidden: the same audited 404
    naming the canonical id (THREAT_MODEL.md, "No existence oracles")."""
    kid = _uuid(key_id, "key_id")
    key = Key.objects.filter(id=kid).first()
    if key is None or deletion_is_final(key, now) or (region is not None and key.region != region):
        raise not_found_audited(principal, event, "key", kid, key, region=region)
    authorize_audited(principal, action, key, event)
    return key


def _lock(key: Key) -> Key:
    """Re-read ``key`` with a row lock (call inside ``transaction.atomic()`` on default)."""
    return Key.objects.select_for_update().get(id=key.id)


@contextmanager
def _failures_audited(principal: Principal, event: str, obj: Any) -> Iterator[None]:
    """Record an operation that failed its preconditions as a ``failed`` event, then re-raise."""
    try:
        yield
    except (ServiceError, HierarchyError) as exc:
        if not isinstance(exc, ObjectNotFound | PermissionDenied):
            with transaction.atomic():
                audit_record(principal, event, obj, outcome=AuditEvent.Outcome.FAILED, error=type(exc).__name__)
        raise


def _entry(key: Key) -> asymmetric.Algorithm:
    try:
        return asymmetric.algorithm(key.algorithm)
    except asymmetric.UnsupportedAlgorithm as exc:
        raise PreconditionFailed("unsupported_algorithm", str(exc)) from None


def _require_family(key: Key, families: tuple[str, ...], operation: str) -> asymmetric.Algorithm:
    entry = _entry(key)
    if entry.family not in families:
        raise PreconditionFailed(
            "key_usage",
            f"{operation} is not possible with key {key.id} ({key.usage}, {key.algorithm})",
        )
    return entry


def _require_enabled(key: Key) -> None:
    try:
        key_require_enabled(key)
    except KeyDisabled:
        raise PreconditionFailed(
            "key_state", f"key {key.id} is {key.state}: it cannot be used until it is enabled"
        ) from None


def _public_der(key: Key) -> bytes:
    row = KekVersion.objects.using("kek").filter(key_id=key.id, version=key.primary_version).first()
    if row is None or row.public_key is None or row.state == KekVersion.State.DESTROYED:
        raise PreconditionFailed("key_material", f"key {key.id} has no public key")
    return bytes(row.public_key)


def _bytes_arg(value: bytes | None, name: str, *, low: int, high: int) -> bytes:
    data = value or b""
    if not low <= len(data) <= high:
        raise InvalidArgument(name, f"must be {low} to {high} bytes")
    return data


def _context(key: Key, associated_data: bytes | None) -> bytes:
    return crypto.aad("key-manager", str(key.id), associated_data or b"")


def _undecryptable() -> InvalidArgument:
    return InvalidArgument(
        "ciphertext", "cannot be decrypted by this key with this associated data (wrong key or data, or altered)"
    )


# --- validation of metadata ---------------------------------------------------------------------
def _text(value: str, name: str) -> str:
    """Refuse NUL characters (PostgreSQL text cannot hold them; nothing legitimate needs them)."""
    if "\x00" in value:
        raise InvalidArgument(name, "must not contain NUL characters")
    return value


def _clean_name(name: str | None) -> str:
    if name is None or not str(name).strip():
        return f"key-{uuid.uuid4().hex[:8]}"
    name = _text(str(name).strip(), "name")
    if len(name) > MAX_NAME:
        raise InvalidArgument("name", f"must be at most {MAX_NAME} characters")
    return name


def _clean_description(description: str | None) -> str:
    description = _text(description or "", "description")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidArgument("description", f"must be at most {MAX_DESCRIPTION} characters")
    return description


def _clean_tags(tags: list[str] | None) -> list[str]:
    tags = list(tags or [])
    if len(tags) > MAX_TAGS:
        raise InvalidArgument("tags", f"at most {MAX_TAGS} tags")
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG or "\x00" in tag:
            raise InvalidArgument("tags", f"each tag must be a non-empty string of at most {MAX_TAG} characters")
    return list(dict.fromkeys(tag.strip() for tag in tags))


def _clean_policy(
    policy: RotationPolicy | None, *, usage: str, origin: str, now: datetime
) -> tuple[timedelta | None, datetime | None]:
    if policy is None or (policy.period is None and policy.next_rotation_at is None):
        return None, None
    if usage != KeyUsage.SYMMETRIC_ENCRYPTION or origin != KeyOrigin.SCALEWAY_KMS:
        raise InvalidArgument(
            "rotation_policy", "only symmetric keys whose material Key Manager generated can have a rotation policy"
        )
    if policy.period is None:
        raise InvalidArgument("rotation_policy.rotation_period", "is required with next_rotation_at")
    if not MIN_ROTATION_PERIOD <= policy.period <= MAX_ROTATION_PERIOD:
        raise InvalidArgument("rotation_policy.rotation_period", "must be between 24 hours and 100 years")
    next_at = _aware(policy.next_rotation_at) if policy.next_rotation_at else now + policy.period
    return policy.period, next_at


def _clean_usage(usage: str | None, algorithm: str | None) -> asymmetric.Algorithm:
    usage = usage or KeyUsage.SYMMETRIC_ENCRYPTION
    algorithm = algorithm or ("aes_256_gcm" if usage == KeyUsage.SYMMETRIC_ENCRYPTION else "")
    if usage not in asymmetric.USAGES:
        raise InvalidArgument("usage", f"must be one of {', '.join(asymmetric.USAGES)}")
    if algorithm.startswith("unknown_") or not algorithm:
        raise InvalidArgument(
            f"usage.{usage}",
            "an algorithm is required (with the Python SDK, set the other KeyUsage fields to None)",
        )
    try:
        entry = asymmetric.algorithm(algorithm)
    except asymmetric.UnsupportedAlgorithm as exc:
        raise InvalidArgument(f"usage.{usage}", str(exc)) from None
    if entry.usage != usage:
        raise InvalidArgument(f"usage.{usage}", f"{algorithm} is an algorithm for {entry.usage}")
    return entry


# --- metadata: create, read, list, update ----------------------------------------------------------
def _project_for(principal: Principal, project_id: Any) -> Any:
    if project_id in (None, ""):
        api_key = principal.api_key
        if api_key is None or api_key.default_project_id is None:
            raise InvalidArgument("project_id", "is required")
        project_id = api_key.default_project_id
    pid = _uuid(project_id, "project_id")
    project = Project.objects.filter(id=pid).first()
    if project is None:
        raise not_found_audited(principal, "key.create", "project", pid)
    return project


def key_create(
    *,
    principal: Principal,
    project_id: Any = None,
    name: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    usage: str | None = None,
    algorithm: str | None = None,
    unprotected: bool = False,
    rotation_policy: RotationPolicy | None = None,
    origin: str | None = None,
    region: str | None = None,
    now: datetime | None = None,
) -> Key:
    """Create a key; needs ``KEY_ADMIN`` on the project.

    Order: the key pair (if any) is generated first, outside any transaction;
    then KEK version 1 commits on kek, then the ``Key`` row and its audit event
    commit together on default.  A crash in between leaves only an
    unreferenced KEK row.  ``origin="external"`` keys start in
    ``pending_key_material`` with no version until :func:`key_import_key_material`.
    """
    project = _project_for(principal, project_id)
    authorize_audited(principal, Action.KEY_ADMIN, project, "key.create")
    now = _now(now)
    entry = _clean_usage(usage, algorithm)
    origin = origin if origin and origin != "unknown_origin" else KeyOrigin.SCALEWAY_KMS
    if origin not in KeyOrigin.values:
        raise InvalidArgument("origin", f"must be one of {', '.join(KeyOrigin.values)}")
    if origin == KeyOrigin.EXTERNAL and not entry.is_symmetric:
        raise InvalidArgument("origin", "only symmetric (aes_256_gcm) key material can be imported")
    period, next_at = _clean_policy(rotation_policy, usage=entry.usage, origin=origin, now=now)
    fields: dict[str, Any] = {
        "description": _clean_description(description),
        "tags": _clean_tags(tags),
        "usage": entry.usage,
        "algorithm": entry.name,
        "state": KeyState.PENDING_KEY_MATERIAL if origin == KeyOrigin.EXTERNAL else KeyState.ENABLED,
        "protected": not unprotected,
        "origin": origin,
        "rotation_period": period,
        "next_rotation_at": next_at,
        "region": region or settings.HKMS_REGIONS[0],
    }
    name = _clean_name(name)
    pair = asymmetric.generate(entry.name) if not entry.is_symmetric else None
    with _failures_audited(principal, "key.create", project), transaction.atomic():
        key = key_create_with_material(project=project, name=name, material=pair.private if pair else None, **fields)
        if pair is not None:
            KekVersion.objects.using("kek").filter(key_id=key.id, version=1).update(public_key=pair.public_der)
        audit_record(principal, "key.create", key, usage=entry.usage, algorithm=entry.name, origin=origin)
    return key


def key_get(*, principal: Principal, key_id: Any, region: str | None = None, now: datetime | None = None) -> Key:
    return _key_for(principal, key_id, Action.KEY_VIEW, "key.get", region=region, now=now)


def key_list(
    *,
    principal: Principal,
    region: str | None = None,
    project_id: Any = None,
    organization_id: Any = None,
    name: str | None = None,
    tags: list[str] | None = None,
    usage: str | None = None,
    scheduled_for_deletion: bool = False,
    order_by: str | None = None,
    now: datetime | None = None,
) -> QuerySet[Key]:
    """The keys the principal may see, filtered and ordered (Scaleway's list_keys).

    ``scheduled_for_deletion`` selects the keys awaiting deletion instead of
    the others; ``name`` matches a part of the name (case-insensitive);
    ``tags`` keeps keys holding every tag given.  Visibility is two ``IN``
    clauses (see ``visible``); tags match exactly (``filter_json_list_contains``).
    """
    qs = visible(principal, _live_keys(now))
    if region is not None:
        qs = qs.filter(region=region)
    if project_id not in (None, ""):
        qs = qs.filter(project_id=_uuid(project_id, "project_id"))
    if organization_id not in (None, ""):
        qs = qs.filter(project__organization_id=_uuid(organization_id, "organization_id"))
    if name:
        qs = qs.filter(name__icontains=_text(name, "name"))
    if usage and usage != "unknown_usage":
        if usage not in asymmetric.USAGES:
            raise InvalidArgument("usage", f"must be one of {', '.join(asymmetric.USAGES)}")
        qs = qs.filter(usage=usage)
    if scheduled_for_deletion:
        qs = qs.filter(state=KeyState.SCHEDULED_FOR_DELETION)
    else:
        qs = qs.exclude(state=KeyState.SCHEDULED_FOR_DELETION)
    qs = filter_json_list_contains(qs, "tags", [_text(tag, "tags") for tag in tags or []])
    ordering = ORDERINGS.get(order_by or "name_asc")
    if ordering is None:
        raise InvalidArgument("order_by", f"must be one of {', '.join(ORDERINGS)}")
    return qs.order_by(*ordering)


def key_update(
    *,
    principal: Principal,
    key_id: Any,
    region: str | None = None,
    name: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    rotation_policy: RotationPolicy | None = None,
    now: datetime | None = None,
) -> Key:
    """Change name, description, tags (None: unchanged) and the rotation policy.

    ``rotation_policy=RotationPolicy(None)`` removes the policy.
    """
    key = _key_for(principal, key_id, Action.KEY_ADMIN, "key.update", region=region, now=now)
    now = _now(now)
    with _failures_audited(principal, "key.update", key), transaction.atomic():
        key = _lock(key)
        if key.state == KeyState.SCHEDULED_FOR_DELETION:
            raise PreconditionFailed("key_state", f"key {key.id} is scheduled for deletion: restore it first")
        changed: list[str] = []
        if name is not None:
            key.name, changed = _clean_name(name), [*changed, "name"]
        if description is not None:
            key.description, changed = _clean_description(description), [*changed, "description"]
        if tags is not None:
            key.tags, changed = _clean_tags(tags), [*changed, "tags"]
        if rotation_policy is not None:
            key.rotation_period, key.next_rotation_at = _clean_policy(
                rotation_policy, usage=key.usage, origin=key.origin, now=now
            )
            changed += ["rotation_period", "next_rotation_at"]
        key.save(update_fields=[*changed, "updated_at"])
        audit_record(principal, "key.update", key, fields=[f for f in changed if f != "next_rotation_at"])
    return key


# --- lifecycle -----------------------------------------------------------------------------------------
def key_delete(*, principal: Principal, key_id: Any, region: str | None = None, now: datetime | None = None) -> Key:
    """Schedule deletion in :data:`DELETION_DELAY`; the key stops working at once.

    Refused for protected keys and for a project's default key.  Idempotent.
    Secrets protected by the key become unreadable (the key is not enabled)
    and, once the deletion is final and ``purge_deleted_keys`` ran, are
    crypto-shredded.
    """
    key = _key_for(principal, key_id, Action.KEY_ADMIN, "key.delete", region=region, now=now)
    now = _now(now)
    with _failures_audited(principal, "key.delete", key), transaction.atomic():
        key = _lock(key)
        if key.protected:
            raise PreconditionFailed("key_protected", f"key {key.id} is protected: unprotect it before deleting it")
        if key_is_a_project_default(key.id):
            raise PreconditionFailed("project_default_key", f"key {key.id} is its project's default key")
        if key.state != KeyState.SCHEDULED_FOR_DELETION:
            key.pre_deletion_state = key.state
            key.state, key.deletion_requested_at = KeyState.SCHEDULED_FOR_DELETION, now
            key.save(update_fields=["pre_deletion_state", "state", "deletion_requested_at", "updated_at"])
            key_cache().drop_owner(str(key.id))
        requested = key.deletion_requested_at or now
        audit_record(principal, "key.delete", key, final_at=(requested + DELETION_DELAY).isoformat())
    return key


def key_restore(*, principal: Principal, key_id: Any, region: str | None = None, now: datetime | None = None) -> Key:
    """Cancel a scheduled deletion; the key returns to the state it had before."""
    key = _key_for(principal, key_id, Action.KEY_ADMIN, "key.restore", region=region, now=now)
    with _failures_audited(principal, "key.restore", key), transaction.atomic():
        key = _lock(key)
        if key.state != KeyState.SCHEDULED_FOR_DELETION:
            raise PreconditionFailed("key_state", f"key {key.id} is not scheduled for deletion")
        key.state = key.pre_deletion_state or KeyState.DISABLED
        key.pre_deletion_state, key.deletion_requested_at = "", None
        key.save(update_fields=["state", "pre_deletion_state", "deletion_requested_at", "updated_at"])
        audit_record(principal, "key.restore", key, state=key.state)
    return key


def _set_protected(principal: Principal, key_id: Any, region: str | None, protected: bool) -> Key:
    event = "key.protect" if protected else "key.unprotect"
    key = _key_for(principal, key_id, Action.KEY_ADMIN, event, region=region)
    with transaction.atomic():
        key = _lock(key)
        key.protected = protected
        key.save(update_fields=["protected", "updated_at"])
        audit_record(principal, event, key)
    return key


def key_protect(*, principal: Principal, key_id: Any, region: str | None = None) -> Key:
    """Protected keys cannot be deleted (they can be used and modified)."""
    return _set_protected(principal, key_id, region, True)


def key_unprotect(*, principal: Principal, key_id: Any, region: str | None = None) -> Key:
    return _set_protected(principal, key_id, region, False)


def key_enable(*, principal: Principal, key_id: Any, region: str | None = None) -> Key:
    """Enable a disabled key: encrypt, decrypt, data keys and its secrets work again."""
    key = _key_for(principal, key_id, Action.KEY_ADMIN, "key.enable", region=region)
    with _failures_audited(principal, "key.enable", key), transaction.atomic():
        key = _lock(key)
        if key.state == KeyState.PENDING_KEY_MATERIAL:
            raise PreconditionFailed("key_state", f"key {key.id} has no key material: import it first")
        if key.state == KeyState.SCHEDULED_FOR_DELETION:
            raise PreconditionFailed("key_state", f"key {key.id} is scheduled for deletion: restore it first")
        key_set_state(key, KeyState.ENABLED)
        audit_record(principal, "key.enable", key)
    return key


def key_disable(*, principal: Principal, key_id: Any, region: str | None = None) -> Key:
    """Disable a key: its uses and every secret it protects fail until it is enabled again.

    The unwrapped material is dropped from this process's cache at once; other
    processes re-read the key's state on every use.
    """
    key = _key_for(principal, key_id, Action.KEY_ADMIN, "key.disable", region=region)
    with _failures_audited(principal, "key.disable", key), transaction.atomic():
        key = _lock(key)
        if key.state not in (KeyState.ENABLED, KeyState.DISABLED):
            raise PreconditionFailed("key_state", f"key {key.id} is {key.state}: only enabled keys can be disabled")
        key_set_state(key, KeyState.DISABLED)
        audit_record(principal, "key.disable", key)
    return key


def key_rotate(*, principal: Principal, key_id: Any, region: str | None = None, now: datetime | None = None) -> Key:
    """A new version becomes primary (``kek_rotate``); older versions still decrypt.

    Only symmetric keys whose material Key Manager generated rotate
    (asymmetric keys: create a new key; external keys: delete and import
    material).  DEKs of secrets under the key stay wrapped by the old version
    until ``rewrap_deks`` runs.  Order: the new version commits on kek, then the
    primary version moves (compare-and-set) with its audit event on default.
    """
    key = _key_for(principal, key_id, Action.KEY_ADMIN, "key.rotate", region=region, now=now)
    with _failures_audited(principal, "key.rotate", key):
        if key.usage != KeyUsage.SYMMETRIC_ENCRYPTION or key.origin != KeyOrigin.SCALEWAY_KMS:
            raise PreconditionFailed(
                "key_usage", f"key {key.id} cannot be rotated: only symmetric keys generated by Key Manager rotate"
            )
        with transaction.atomic():
            key = _lock(key)
            if key.state not in (KeyState.ENABLED, KeyState.DISABLED):
                raise PreconditionFailed("key_state", f"key {key.id} is {key.state}: it cannot be rotated")
            key = kek_rotate(key=key, now=now)
            audit_record(principal, "key.rotate", key, version=key.primary_version)
    return key


# --- symmetric and asymmetric use ------------------------------------------------------------------
def _use(principal: Principal, key_id: Any, event: str, region: str | None) -> Key:
    return _key_for(principal, key_id, Action.KEY_USE, event, region=region)


def _audit_use(principal: Principal, event: str, key: Key, **detail: Any) -> None:
    with transaction.atomic():
        audit_record(principal, event, key, **detail)


def key_encrypt(
    *,
    principal: Principal,
    key_id: Any,
    plaintext: bytes,
    associated_data: bytes | None = None,
    region: str | None = None,
) -> CryptoResult:
    """Encrypt 1..65,535 bytes; the server picks the nonce.  RSA-OAEP keys take no associated data."""
    key = _use(principal, key_id, "key.encrypt", region)
    with _failures_audited(principal, "key.encrypt", key):
        entry = _require_family(key, ("aes", "rsa_oaep"), "encrypt")
        plaintext = _bytes_arg(plaintext, "plaintext", low=1, high=MAX_ENCRYPT_PLAINTEXT)
        _require_enabled(key)
        if entry.is_symmetric:
            associated_data = _bytes_arg(associated_data, "associated_data", low=0, high=MAX_ASSOCIATED_DATA)
            ciphertext = crypto.seal(
                kek_material(key.id, key.primary_version),
                plaintext,
                context=_context(key, associated_data),
                key_version=key.primary_version,
            )
        else:
            if associated_data:
                raise InvalidArgument("associated_data", "is only supported by symmetric keys")
            try:
                ciphertext = asymmetric.encrypt(key.algorithm, _public_der(key), plaintext)
            except ValueError as exc:
                raise InvalidArgument("plaintext", str(exc)) from None
        _audit_use(principal, "key.encrypt", key, key_version=key.primary_version)
    return CryptoResult(key=key, data=ciphertext)


def _decrypt_symmetric(key: Key, ciphertext: bytes, associated_data: bytes | None) -> tuple[bytes, bytes | None, int]:
    try:
        version = crypto.key_version_of(ciphertext)
    except crypto.InvalidCiphertext:
        raise _undecryptable() from None
    if not 1 <= version <= key.primary_version:
        raise _undecryptable()
    if version != key.primary_version:
        # Older versions may have been destroyed (delete_key_material, revoke_key) by another
        # process whose cache drop did not reach ours: ask the kek database, not the cache.
        row = KekVersion.objects.using("kek").filter(key_id=key.id, version=version).values("state").first()
        if row is None or row["state"] == KekVersion.State.DESTROYED:
            raise KeyMaterialUnavailable(f"version {version} of key {key.id} was destroyed")
    context = _context(key, associated_data)
    try:
        plaintext = crypto.open_(
            kek_material(key.id, version), ciphertext, context=context, max_bytes=MAX_DECRYPT_CIPHERTEXT
        )
    except crypto.InvalidCiphertext:
        raise _undecryptable() from None
    reencrypted = None
    if version != key.primary_version:
        reencrypted = crypto.seal(
            kek_material(key.id, key.primary_version), plaintext, context=context, key_version=key.primary_version
        )
    return plaintext, reencrypted, version


def key_decrypt(
    *,
    principal: Principal,
    key_id: Any,
    ciphertext: bytes,
    associated_data: bytes | None = None,
    region: str | None = None,
) -> CryptoResult:
    """Decrypt a ciphertext (≤ 131,071 bytes) made by any non-destroyed version of the key.

    Every way a ciphertext can fail to open (wrong key, wrong associated data,
    altered, truncated, unknown version) is the same ``invalid_arguments``
    error; a version that was crypto-shredded answers ``resource_expired``.
    """
    key = _use(principal, key_id, "key.decrypt", region)
    with _failures_audited(principal, "key.decrypt", key):
        entry = _require_family(key, ("aes", "rsa_oaep"), "decrypt")
        ciphertext = _bytes_arg(ciphertext, "ciphertext", low=1, high=MAX_DECRYPT_CIPHERTEXT)
        associated_data = _bytes_arg(associated_data, "associated_data", low=0, high=MAX_ASSOCIATED_DATA)
        _require_enabled(key)
        reencrypted = None
        version = key.primary_version
        if entry.is_symmetric:
            plaintext, reencrypted, version = _decrypt_symmetric(key, ciphertext, associated_data)
        else:
            if associated_data:
                raise InvalidArgument("associated_data", "is only supported by symmetric keys")
            try:
                plaintext = asymmetric.decrypt(key.algorithm, kek_material(key.id, key.primary_version), ciphertext)
            except crypto.InvalidCiphertext:
                raise _undecryptable() from None
        _audit_use(principal, "key.decrypt", key, key_version=version, reencrypted=reencrypted is not None)
    return CryptoResult(key=key, data=plaintext, reencrypted=reencrypted)


def key_generate_data_key(
    *,
    principal: Principal,
    key_id: Any,
    without_plaintext: bool = False,
    algorithm: str | None = None,
    region: str | None = None,
    now: datetime | None = None,
) -> DataKey:
    """A fresh AES-256 data key sealed by the key's primary version (envelope encryption).

    The ciphertext has the format of :func:`key_encrypt` without associated
    data, so :func:`key_decrypt` returns the data key.  Nothing is stored.
    """
    key = _use(principal, key_id, "key.generate_data_key", region)
    with _failures_audited(principal, "key.generate_data_key", key):
        if algorithm not in (None, "", "aes_256_gcm", "unknown_symmetric_encryption"):
            raise InvalidArgument("algorithm", "data keys are aes_256_gcm")
        _require_family(key, ("aes",), "generate_data_key")
        _require_enabled(key)
        data_key = crypto.generate_key()
        ciphertext = crypto.seal(
            kek_material(key.id, key.primary_version),
            data_key.reveal(),
            context=_context(key, None),
            key_version=key.primary_version,
        )
        _audit_use(
            principal,
            "key.generate_data_key",
            key,
            key_version=key.primary_version,
            with_plaintext=not without_plaintext,
        )
    return DataKey(
        key=key,
        ciphertext=ciphertext,
        plaintext=None if without_plaintext else data_key.reveal(),
        created_at=_now(now),
    )


def key_sign(*, principal: Principal, key_id: Any, digest: bytes, region: str | None = None) -> CryptoResult:
    """Sign a digest (ML-DSA: the given bytes) with an ``asymmetric_signing`` key."""
    key = _use(principal, key_id, "key.sign", region)
    with _failures_audited(principal, "key.sign", key):
        _require_family(key, ("ecdsa", "rsa_pss", "rsa_pkcs1", "ml_dsa"), "sign")
        _require_enabled(key)
        try:
            signature = asymmetric.sign(key.algorithm, kek_material(key.id, key.primary_version), digest)
        except ValueError as exc:
            raise InvalidArgument("digest", str(exc)) from None
        _audit_use(principal, "key.sign", key, key_version=key.primary_version)
    return CryptoResult(key=key, data=signature)


def key_verify(
    *, principal: Principal, key_id: Any, digest: bytes, signature: bytes, region: str | None = None
) -> tuple[Key, bool]:
    """Whether ``signature`` is valid for ``digest``; a malformed signature is just invalid."""
    key = _use(principal, key_id, "key.verify", region)
    with _failures_audited(principal, "key.verify", key):
        _require_family(key, ("ecdsa", "rsa_pss", "rsa_pkcs1", "ml_dsa"), "verify")
        _require_enabled(key)
        _bytes_arg(signature, "signature", low=1, high=MAX_DECRYPT_CIPHERTEXT)
        try:
            valid = asymmetric.verify(key.algorithm, _public_der(key), digest, signature)
        except ValueError as exc:
            raise InvalidArgument("digest", str(exc)) from None
        _audit_use(principal, "key.verify", key, valid=valid)
    return key, valid


def key_get_public_key(*, principal: Principal, key_id: Any, region: str | None = None) -> str:
    """The PEM public key of an asymmetric key (public: not audited as a use)."""
    key = _key_for(principal, key_id, Action.KEY_VIEW, "key.get_public_key", region=region)
    _require_family(key, ("rsa_oaep", "ecdsa", "rsa_pss", "rsa_pkcs1", "ml_dsa", "ml_kem"), "get_public_key")
    return asymmetric.public_pem(_public_der(key))


def _wrap_context(associated_data: bytes | None) -> bytes:
    return crypto.aad("key-manager-wrap", associated_data or b"")


def key_wrap(
    *,
    principal: Principal,
    key_id: Any,
    plaintext: bytes,
    associated_data: bytes | None = None,
    region: str | None = None,
) -> CryptoResult:
    """Wrap up to 2,048 bytes of key material to an ML-KEM key (format in ``keys_app.asymmetric``)."""
    key = _use(principal, key_id, "key.wrap", region)
    with _failures_audited(principal, "key.wrap", key):
        _require_family(key, ("ml_kem",), "wrap_key")
        associated_data = _bytes_arg(associated_data, "associated_data", low=0, high=MAX_ASSOCIATED_DATA)
        plaintext = _bytes_arg(plaintext, "plaintext", low=1, high=asymmetric.WRAP_MAX_PLAINTEXT)
        _require_enabled(key)
        blob = asymmetric.wrap(
            key.algorithm,
            _public_der(key),
            plaintext,
            context=_wrap_context(associated_data),
            key_version=key.primary_version,
        )
        _audit_use(principal, "key.wrap", key, key_version=key.primary_version)
    return CryptoResult(key=key, data=blob)


def key_unwrap(
    *,
    principal: Principal,
    key_id: Any,
    ciphertext: bytes,
    associated_data: bytes | None = None,
    region: str | None = None,
) -> CryptoResult:
    key = _use(principal, key_id, "key.unwrap", region)
    with _failures_audited(principal, "key.unwrap", key):
        _require_family(key, ("ml_kem",), "unwrap_key")
        associated_data = _bytes_arg(associated_data, "associated_data", low=0, high=MAX_ASSOCIATED_DATA)
        ciphertext = _bytes_arg(ciphertext, "ciphertext", low=1, high=asymmetric.WRAP_MAX_CIPHERTEXT)
        _require_enabled(key)
        try:
            plaintext = asymmetric.unwrap(
                key.algorithm,
                kek_material(key.id, key.primary_version),
                ciphertext,
                context=_wrap_context(associated_data),
            )
        except crypto.InvalidCiphertext:
            raise _undecryptable() from None
        _audit_use(principal, "key.unwrap", key, key_version=key.primary_version)
    return CryptoResult(key=key, data=plaintext)


def key_list_algorithms(*, usages: list[str] | None = None) -> list[asymmetric.Algorithm]:
    """The algorithms this installation supports (those the OpenSSL build lacks are left out)."""
    wanted = {u for u in (usages or []) if u and u != "unknown_usage"}
    unknown = wanted - set(asymmetric.USAGES)
    if unknown:
        raise InvalidArgument("usages", f"unknown usage {sorted(unknown)[0]!r}")
    return [entry for entry in asymmetric.available_algorithms() if not wanted or entry.usage in wanted]


# --- imported material and crypto-shredding ---------------------------------------------------------
def _shred(key: Key) -> dict[str, int]:
    """Destroy every version of ``key`` on kek, then its DEKs on dek (idempotent).

    After this nothing encrypted under the key -- Key Manager ciphertexts,
    data keys, secret versions -- can be decrypted again, backups of the
    default and dek databases included.
    """
    key_cache().drop_owner(str(key.id))
    destroyed = (
        KekVersion.objects.using("kek")
        .filter(key_id=key.id)
        .exclude(state=KekVersion.State.DESTROYED)
        .update(state=KekVersion.State.DESTROYED, wrapped_material=None, destroyed_at=timezone.now())
    )
    deks, _ = Dek.objects.using("dek").filter(key_id=key.id).delete()
    key_cache().drop_owner(str(key.id))
    return {"kek_versions_destroyed": destroyed, "deks_destroyed": deks}


def _exposure_detail(key: Key) -> dict[str, Any]:
    report = key_exposure_report(key)
    return {
        "kek_versions": report["kek_versions"],
        "secrets": len(report["secrets"]),
        "secret_versions": report["secret_versions"],
    }


def key_import_key_material(
    *, principal: Principal, key_id: Any, key_material: bytes, salt: bytes | None = None, region: str | None = None
) -> Key:
    """Give an ``external`` key its material: 32 bytes, used through HKDF-SHA256 (optional salt).

    The key goes from ``pending_key_material`` to ``enabled`` with a new
    version (one past every version it ever had, so material left by a crashed
    attempt is never reused).  Order: the key row is locked on default, the
    version commits on kek, then the state and primary version commit with
    the audit event; concurrent imports are serialised by the row lock.
    """
    key = _key_for(principal, key_id, Action.KEY_ADMIN, "key.import_key_material", region=region)
    with _failures_audited(principal, "key.import_key_material", key):
        if key.origin != KeyOrigin.EXTERNAL:
            raise PreconditionFailed("key_origin", f"key {key.id} was not created with origin external")
        if salt is not None and len(salt) > 1024:
            raise InvalidArgument("salt", "must be at most 1024 bytes")
        try:
            derived = asymmetric.derive_imported_key(key_material or b"", salt)
        except ValueError as exc:
            raise InvalidArgument("key_material", str(exc)) from None
        with transaction.atomic():
            key = _lock(key)
            if key.state != KeyState.PENDING_KEY_MATERIAL:
                raise PreconditionFailed(
                    "key_state", f"key {key.id} already has key material: delete it before importing new material"
                )
            _shred(key)  # leftovers of an interrupted delete_key_material
            versions = KekVersion.objects.using("kek").filter(key_id=key.id).values_list("version", flat=True)
            version = max(versions, default=0) + 1
            kek_version_create(key_id=key.id, version=version, material=derived, algorithm=key.algorithm)
            key.primary_version, key.state = version, KeyState.ENABLED
            key.save(update_fields=["primary_version", "state", "updated_at"])
            audit_record(principal, "key.import_key_material", key, version=version, salted=bool(salt))
    return key


def key_delete_key_material(*, principal: Principal, key_id: Any, region: str | None = None) -> Key:
    """Crypto-shred an ``external`` key's material and everything under it; the key waits for new material.

    Order: the state becomes ``pending_key_material`` (with an audit event
    carrying the exposure summary) on default first, so nothing uses the key
    any more; then the versions are destroyed on kek and the DEKs deleted on
    dek.  A crash in between leaves an unusable key; running this again, or
    importing new material, finishes the shredding.
    """
    key = _key_for(principal, key_id, Action.KEY_ADMIN, "key.delete_key_material", region=region)
    with _failures_audited(principal, "key.delete_key_material", key):
        if key.origin != KeyOrigin.EXTERNAL:
            raise PreconditionFailed("key_origin", f"key {key.id} was not created with origin external")
        with transaction.atomic():
            key = _lock(key)
            if key.state == KeyState.SCHEDULED_FOR_DELETION:
                raise PreconditionFailed("key_state", f"key {key.id} is scheduled for deletion: restore it first")
            key_set_state(key, KeyState.PENDING_KEY_MATERIAL)
            audit_record(principal, "key.delete_key_material", key, **_exposure_detail(key))
        _shred(key)
    return key


# --- operator services (commands) ------------------------------------------------------------------
def _require_operator(principal: Principal, event: str) -> None:
    if not principal.is_superuser:
        raise PermissionDenied(event)


def keys_due_for_rotation(now: datetime | None = None) -> QuerySet[Key]:
    """Enabled symmetric Key Manager keys whose ``next_rotation_at`` has passed."""
    return Key.objects.filter(
        state=KeyState.ENABLED,
        usage=KeyUsage.SYMMETRIC_ENCRYPTION,
        origin=KeyOrigin.SCALEWAY_KMS,
        rotation_period__isnull=False,
        next_rotation_at__lte=_now(now),
    ).order_by("next_rotation_at", "id")


def keys_rotate_due(
    *,
    principal: Principal,
    now: datetime | None = None,
    rewrap: bool = False,
    dry_run: bool = False,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Rotate every key whose rotation is due, each exactly once however many runs race.

    For each due key, ``kek_rotate_cas(due_by=now)`` makes the due-check and
    the rotation one conditional ``UPDATE`` (with its audit event, in one
    transaction on default): a concurrent run -- another cron on another
    machine -- finds the row no longer due and skips it.  With ``rewrap`` the
    run that rotated a key then re-wraps its DEKs (``deks_rewrap``); a failure
    there is reported and left to ``rewrap_deks``, the rotation stands.
    """
    _require_operator(principal, "key.rotate")
    now = _now(now)
    due = list(keys_due_for_rotation(now))
    if dry_run:
        return {
            "dry_run": True,
            "now": now.isoformat(),
            "due": [
                {"key_id": str(k.id), "name": k.name, "next_rotation_at": k.next_rotation_at.isoformat()}
                for k in due
                if k.next_rotation_at is not None
            ],
        }
    rotated: list[dict[str, Any]] = []
    skipped: list[str] = []
    errors: list[dict[str, str]] = []
    for key in due:
        try:
            with transaction.atomic():
                won = kek_rotate_cas(key=key, now=now, due_by=now)
                if won:
                    audit_record(principal, "key.rotate", key, version=key.primary_version + 1, scheduled=True)
        except HierarchyError as exc:
            errors.append({"key_id": str(key.id), "error": str(exc)})
            continue
        if not won:
            skipped.append(str(key.id))
            continue
        key.refresh_from_db()
        entry: dict[str, Any] = {
            "key_id": str(key.id),
            "name": key.name,
            "primary_version": key.primary_version,
            "next_rotation_at": key.next_rotation_at.isoformat() if key.next_rotation_at else None,
        }
        if rewrap:
            try:
                entry["deks_rewrapped"] = deks_rewrap(key=key, batch_size=batch_size)["deks_rewrapped"]
            except HierarchyError as exc:
                errors.append({"key_id": str(key.id), "error": f"rotated, but re-wrapping failed: {exc}"})
        rotated.append(entry)
    return {"now": now.isoformat(), "rotated": rotated, "skipped_rotated_elsewhere": skipped, "errors": errors}


def keys_purge_deleted(*, principal: Principal, now: datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Crypto-shred keys whose deletion became final (scheduled more than 7 days ago).

    Per key: the exposure report is taken first (what is being destroyed);
    then, with the key row locked and still due (re-checked under the lock),
    the versions are destroyed on kek and the DEKs deleted on dek (``_shred``,
    committed there), then on default its role grants go and the row is
    deleted -- or kept, invisible, while a secret still names it or a project
    names it as its default key -- with the audit event.  (A default key cannot
    be scheduled for deletion, ``key_delete``; the check here keeps the rule of
    keys_app.services.projects -- a default key id always resolves to a row --
    even for a key scheduled some other way, as the old ``PROTECT`` foreign key
    from the project did.)  A crash after the shredding leaves a due key that the next
    run purges again.  Idempotent.
    """

    from secrets_app.models import Secret

    _require_operator(principal, "key.purge")
    now = _now(now)
    due = list(
        Key.objects.filter(
            state=KeyState.SCHEDULED_FOR_DELETION, deletion_requested_at__lte=now - DELETION_DELAY, protected=False
        ).order_by("deletion_requested_at", "id")
    )
    reports = [key_exposure_report(key) for key in due]
    if dry_run:
        return {"dry_run": True, "now": now.isoformat(), "keys": reports}
    purged = []
    for key, report in zip(due, reports, strict=True):
        with transaction.atomic():
            # The locking rule: lock the row, re-check that its deletion is still final, then shred
            # (kek and dek commit while the lock is held) and delete; a restore that won keeps the key.
            still_due = Key.objects.select_for_update().filter(
                id=key.id, state=KeyState.SCHEDULED_FOR_DELETION, deletion_requested_at__lte=now - DELETION_DELAY
            )
            if still_due.values_list("id", flat=True).first() is None:
                continue
            shredded = _shred(key)
            grants_forget(key)
            kept = Secret.objects.filter(key_id=key.id).exists() or key_is_a_project_default(key.id)
            audit_record(
                principal,
                "key.purge",
                ("key", key.id, key.project_id),
                secrets=len(report["secrets"]),
                secret_versions=report["secret_versions"],
                row_kept=kept,
            )
            if not kept:
                Key.objects.filter(id=key.id).delete()
        purged.append({**report, **shredded, "row_kept": kept})
    return {"now": now.isoformat(), "purged": purged}


__all__ = [
    "DELETION_DELAY",
    "CryptoResult",
    "DataKey",
    "RotationPolicy",
    "deletion_is_final",
    "key_create",
    "key_decrypt",
    "key_delete",
    "key_delete_key_material",
    "key_disable",
    "key_enable",
    "key_encrypt",
    "key_generate_data_key",
    "key_get",
    "key_get_public_key",
    "key_import_key_material",
    "key_list",
    "key_list_algorithms",
    "key_protect",
    "key_restore",
    "key_rotate",
    "key_sign",
    "key_unprotect",
    "key_unwrap",
    "key_update",
    "key_verify",
    "key_wrap",
    "keys_due_for_rotation",
    "keys_purge_deleted",
    "keys_rotate_due",
]
