"""The audit key: a random 256-bit HMAC key per version, held in the key hierarchy.

The audit log (``hkms_core.audit``) asks for it through the source this module
registers (:data:`SOURCE`, see :mod:`hkms_core.audit.keysource`) in
``KeysAppConfig.ready()``; the foundation never imports this app.

Each version is stored on the kek database (:class:`~hkms_core.audit.models.AuditKey`)
wrapped by a REK version through the root key provider, exactly like a KEK
version named ``("audit", version)`` (key ids of real KEKs are UUIDs, so the
associated data cannot collide), with its public check value.  The default
database records, on the chain head, each version's check value and the version
new events use.  So:

* someone with the default database (or a backup of it) cannot compute a MAC;
* someone with the kek database too still needs the REK (file, Shamir
  custodians or HSM) to unwrap the key;
* a kek database from another installation (or any other key) is refused at
  verification: its check value differs from the one the chain recorded.

Creation order (no transaction spans two databases): the wrapped key is
committed on kek first, then recorded on the head (default).  A crash in
between leaves an unrecorded kek row that the next :func:`audit_key_rotate`
adopts instead of creating another.  :func:`audit_keys_rewrap` moves every
version under a new REK during ``rotate_root_key``, before the old REK is retired.

Unwrapped versions are cached in :func:`keys_app.services.material.key_cache`
(bounded, aged, dropped on seal) under the owner ``"audit"``.
"""

from __future__ import annotations

import hmac

from django.db import IntegrityError as DbIntegrityError
from django.db import transaction

from hkms_core.audit.keysource import AuditKeyRefused, AuditKeyUnavailable
from hkms_core.audit.models import AuditChainHead, AuditKey
from keys_app import crypto
from keys_app.errors import IntegrityCheckFailed, KeyMaterialUnavailable, RootKeyError
from keys_app.models import RootKeyVersion
from keys_app.services import root
from keys_app.services.material import key_cache

_OWNER = "audit"
_KEY_ID = "audit"


def _unwrap(row_version: int) -> crypto.SecretBytes:
    """Unwrap one version from the kek database, checked against its stored check value."""
    row = AuditKey.objects.using("kek").filter(version=row_version).first()
    if row is None:
        raise KeyMaterialUnavailable(f"audit key version {row_version} is not in the kek database")
    try:
        key = root.rek_unwrap(row.rek_version, bytes(row.wrapped), key_id=_KEY_ID, kek_version=row.version)
    except (RootKeyError, IntegrityCheckFailed):
        # A root key rotation may have re-wrapped the row (and retired its REK) since we read it.
        fresh = AuditKey.objects.using("kek").filter(version=row_version).first()
        if fresh is None or fresh.rek_version == row.rek_version:
            raise
        row = fresh
        key = root.rek_unwrap(row.rek_version, bytes(row.wrapped), key_id=_KEY_ID, kek_version=row.version)
    if not hmac.compare_digest(crypto.key_check_value(key), bytes(row.check_value)):
        raise IntegrityCheckFailed(f"audit key version {row_version} does not match its check value")
    return key


def audit_key(version: int) -> crypto.SecretBytes:
    """Audit key ``version``, unwrapped (cached).

    Raises :class:`~keys_app.errors.RootKeyError` when the root key is sealed or
    unavailable, :class:`~keys_app.errors.IntegrityCheckFailed` or
    :class:`~keys_app.errors.KeyMaterialUnavailable` when the kek row was altered or removed.
    """
    cache = key_cache()
    cached = cache.get(("audit", version))
    if cached is not None:
        return cached
    key = _unwrap(version)
    cache.put(("audit", version), _OWNER, key)
    return key


def audit_key_for_verification(version: int, recorded: dict[str, str]) -> bytes:
    """Audit key ``version`` if it is the one the chain recorded; else :class:`AuditKeyRefused`.

    ``recorded`` is the head's ``key_checks``.  Never cached across calls' failures:
    the message names the version and the reason, never key bytes.
    """
    try:
        key = audit_key(version)
    except (RootKeyError, IntegrityCheckFailed, KeyMaterialUnavailable) as exc:
        raise AuditKeyRefused(f"cannot unwrap audit key version {version}: {exc}") from None
    expected = recorded.get(str(version))
    actual = crypto.key_check_value(key).hex()
    if expected is None or not hmac.compare_digest(expected, actual):
        raise AuditKeyRefused(
            f"audit key version {version} on the kek database is not the key this chain was written with "
            "(its check value differs from the one recorded on the chain head): refusing to verify"
        )
    return key.reveal()


def _head_for_update() -> AuditChainHead:
    head, _ = AuditChainHead.objects.select_for_update().get_or_create(id=1)
    return head


def audit_key_rotate() -> int:
    """Create the next audit key version (wrapped by the current REK) and key new events with it.

    Returns the version.  Adopts a version committed on kek but never recorded
    on the chain head (a crash between the two steps).
    """
    head = AuditChainHead.objects.filter(id=1).first()
    recorded = set(head.key_checks) if head is not None else set()
    last = AuditKey.objects.using("kek").order_by("-version").first()
    if last is not None and str(last.version) not in recorded:
        row = last
    else:
        version = (last.version + 1) if last is not None else 1
        rek = root.rek_current()
        material = crypto.generate_key()
        wrapped = root.rek_wrap(rek, material, key_id=_KEY_ID, kek_version=version)
        try:
            with transaction.atomic(using="kek"):
                row = AuditKey.objects.using("kek").create(
                    version=version,
                    wrapped=wrapped,
                    rek_version=rek.version,
                    check_value=crypto.key_check_value(material),
                )
        except DbIntegrityError:  # a concurrent rotation created it: record theirs
            row = AuditKey.objects.using("kek").get(version=version)
    check = crypto.key_check_value(audit_key(row.version)).hex()
    with transaction.atomic(using="default"):
        head = _head_for_update()
        head.key_checks = {**head.key_checks, str(row.version): check}
        head.key_version = max(head.key_version, row.version)
        head.save(update_fields=["key_checks", "key_version"])
    return int(row.version)


def audit_key_ensure() -> int:
    """The audit key version new events use, creating version 1 if there is none (idempotent)."""
    head = AuditChainHead.objects.filter(id=1).first()
    version = head.key_version if head is not None else 0
    if version and AuditKey.objects.using("kek").filter(version=version).exists():
        return int(version)
    return audit_key_rotate()


def audit_keys_rewrap(*, target: RootKeyVersion) -> int:
    """Re-wrap every audit key version under REK version ``target``; returns how many moved.

    Called by ``rek_rotate`` after each pass over the KEK versions and before old
    REK versions are retired.  Each row moves by compare-and-set on its old REK
    version, so a re-run after a crash re-wraps only what is left.  A row under a
    REK version already retired (an ``audit_key_rotate`` that raced a root key
    rotation) cannot be opened any more and is left: verification then refuses
    the events keyed with it, and ``rotate_audit_key`` keys new events again.
    """
    moved = 0
    retired = RootKeyVersion.objects.using("kek").filter(state=RootKeyVersion.State.RETIRED).values("version")
    rows = AuditKey.objects.using("kek").exclude(rek_version=target.version).exclude(rek_version__in=retired)
    for row in rows.order_by("version"):
        material = root.rek_unwrap(row.rek_version, bytes(row.wrapped), key_id=_KEY_ID, kek_version=row.version)
        wrapped = root.rek_wrap(target, material, key_id=_KEY_ID, kek_version=row.version)
        with transaction.atomic(using="kek"):
            moved += (
                AuditKey.objects.using("kek")
                .filter(version=row.version, rek_version=row.rek_version)
                .update(wrapped=wrapped, rek_version=target.version)
            )
    return moved


class RootKeyAuditKeySource:
    """The audit log's key source (:class:`hkms_core.audit.keysource.AuditKeySource`): REK-wrapped versions."""

    def key(self, version: int) -> bytes:
        try:
            return audit_key(version).reveal()
        except RootKeyError as exc:  # sealed or unreachable: the audit log writes unkeyed meanwhile
            raise AuditKeyUnavailable(str(exc)) from None

    def key_for_verification(self, version: int, recorded: dict[str, str]) -> bytes:
        return audit_key_for_verification(version, recorded)


SOURCE = RootKeyAuditKeySource()
