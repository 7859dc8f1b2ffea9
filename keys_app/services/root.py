"""The root level: REK versions, their check values, and sealing KEK material.

Invariant: a REK version is used only after the provider's check value for it
has matched the one recorded on the kek database (``RootKeyVersion``); the
match is remembered per process, so the cost is paid once per version.  The
current REK is the highest ``active`` version; its provider is recorded on the
row, so during a migration between providers each version is served by the
provider that holds it.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from keys_app import crypto
from keys_app.errors import IntegrityCheckFailed, NotInitialised, RootKeyError
from keys_app.models import RootKeyVersion
from keys_app.providers import RootKeyProvider, RootKeyUnavailable, get_provider, on_seal

_verified_lock = threading.Lock()
_verified: set[tuple[str, int]] = set()
#: Rows of verified REK versions, so that unwrapping a KEK costs one kek query (its own row).
#: A version's provider never changes (a provider migration is a new version); a retired
#: version wraps nothing any more, so a stale ``state`` here is harmless.
_verified_rows: dict[int, RootKeyVersion] = {}


def forget_verified_root_keys() -> None:
    """Forget which REK versions were checked (after a seal or a provider change)."""
    with _verified_lock:
        _verified.clear()
        _verified_rows.clear()


on_seal(forget_verified_root_keys)

#: Callables ``(rek_version) -> bool``: True while something outside the hierarchy still needs
#: that REK version's material (a retained backup: ``hkms_site.backup`` registers its retention
#: in its ``AppConfig.ready()``).  :func:`rek_retire` destroys the material only when none does.
_retention_checks: list[Callable[[int], bool]] = []


def register_rek_retention(check: Callable[[int], bool]) -> None:
    """Keep a retired REK version's material while ``check(version)`` is True (registered once)."""
    if check not in _retention_checks:
        _retention_checks.append(check)


def rek_version_retained(version: int) -> bool:
    """Whether a registered retention (e.g. a retained backup) still needs REK ``version``."""
    return any(check(version) for check in list(_retention_checks))


def rek_versions() -> list[RootKeyVersion]:
    return list(RootKeyVersion.objects.using("kek").order_by("version"))


def rek_current() -> RootKeyVersion:
    current = RootKeyVersion.objects.using("kek").filter(state=RootKeyVersion.State.ACTIVE).order_by("-version").first()
    if current is None:
        raise NotInitialised()
    return current


def hierarchy_is_initialised() -> bool:
    return RootKeyVersion.objects.using("kek").exists()


def _provider_for(row: RootKeyVersion) -> RootKeyProvider:
    try:
        return get_provider(row.provider)
    except RootKeyUnavailable as exc:
        raise RootKeyError(str(exc)) from None


def rek_check(row: RootKeyVersion) -> RootKeyProvider:
    """The provider of ``row`` once its material matched the stored check value."""
    provider = _provider_for(row)
    with _verified_lock:
        if (row.provider, row.version) in _verified:
            return provider
    try:
        actual = provider.check_value(row.version)
    except RootKeyUnavailable as exc:
        raise RootKeyError(str(exc)) from None
    if not hmac.compare_digest(actual, bytes(row.check_value)):
        raise RootKeyError(
            f"root key version {row.version} held by provider '{row.provider}' does not match "
            "the check value stored in the kek database: refusing to use a wrong root key"
        )
    with _verified_lock:
        _verified.add((row.provider, row.version))
        _verified_rows[row.version] = row
    return provider


def _row(version: int) -> RootKeyVersion:
    try:
        return RootKeyVersion.objects.using("kek").get(version=version)
    except RootKeyVersion.DoesNotExist:
        raise RootKeyError(f"root key version {version} is not recorded in the kek database") from None


def kek_context(key_id: object, kek_version: int, rek_version: int) -> bytes:
    return crypto.aad("kek", key_id, kek_version, rek_version)  # type: ignore[arg-type]


def rek_wrap(row: RootKeyVersion, material: crypto.SecretBytes, *, key_id: object, kek_version: int) -> bytes:
    provider = rek_check(row)
    try:
        return provider.wrap(row.version, material.reveal(), context=kek_context(key_id, kek_version, row.version))
    except RootKeyUnavailable as exc:
        raise RootKeyError(str(exc)) from None


def rek_unwrap(rek_version: int, blob: bytes, *, key_id: object, kek_version: int) -> crypto.SecretBytes:
    with _verified_lock:
        cached = _verified_rows.get(rek_version)
    row = cached if cached is not None else _row(rek_version)
    provider = rek_check(row)
    try:
        return crypto.SecretBytes(
            provider.unwrap(rek_version, bytes(blob), context=kek_context(key_id, kek_version, rek_version))
        )
    except crypto.InvalidCiphertext:
        raise IntegrityCheckFailed(
            f"KEK version {kek_version} of key {key_id} failed authentication under root key "
            f"version {rek_version} (tampered, moved or wrong root key)"
        ) from None
    except RootKeyUnavailable as exc:
        raise RootKeyError(str(exc)) from None


def rek_create_version(provider_name: str | None = None) -> RootKeyVersion:
    """Create the next REK version in the provider, then record it (kek database).

    Order: provider first, row second.  A crash in between leaves a provider
    version without a row; the next call adopts it (``create_version`` is
    idempotent), so no version number is ever reused for different material.
    """
    provider = get_provider(provider_name)
    provider_name = provider.name
    last = RootKeyVersion.objects.using("kek").order_by("-version").first()
    version = (last.version + 1) if last else 1
    try:
        check_value = provider.create_version(version)
    except RootKeyUnavailable as exc:
        raise RootKeyError(str(exc)) from None
    with transaction.atomic(using="kek"):
        row, _ = RootKeyVersion.objects.using("kek").get_or_create(
            version=version, defaults={"provider": provider_name, "check_value": check_value}
        )
    return row


def rek_retire(row: RootKeyVersion) -> None:
    """Mark a REK version retired and destroy its material in the provider.

    Only called once no KEK version is wrapped by it (the caller checks).  The
    row is marked first so that a crash leaves a retired row whose material may
    still exist; re-running destroys it (idempotent).  Material that a registered
    retention needs (:func:`register_rek_retention`: a retained backup) is kept
    until it no longer does (``forget_backup``).
    """
    RootKeyVersion.objects.using("kek").filter(version=row.version).exclude(state=RootKeyVersion.State.RETIRED).update(
        state=RootKeyVersion.State.RETIRED, retired_at=timezone.now()
    )
    if not rek_version_retained(row.version):
        try:
            _provider_for(row).destroy_version(row.version)
        except RootKeyUnavailable as exc:
            raise RootKeyError(str(exc)) from None
    with _verified_lock:
        _verified.discard((row.provider, row.version))
        _verified_rows.pop(row.version, None)


def hierarchy_init(provider_name: str | None = None) -> tuple[RootKeyVersion, bool]:
    """Create REK version 1 unless the hierarchy exists; returns ``(current, created)``.

    Idempotent: on an initialised hierarchy the current REK is checked against
    its stored check value (a missing or wrong REK is an error, not a no-op).
    """
    if hierarchy_is_initialised():
        current = rek_current()
        rek_check(current)
        return current, False
    return rek_create_version(provider_name), True
