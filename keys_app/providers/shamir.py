"""The ``shamir`` root key provider: a REK that exists only in memory, rebuilt from k-of-n shares.

At ``init_hierarchy --provider shamir`` (or when a REK rotation creates a
version here) a fresh 256-bit REK is generated in memory and split with
SLIP-39 (the ``shamir-mnemonic`` reference implementation: one group, member
threshold K of N, empty passphrase), and the N mnemonics are handed to a
*share sink* that shows them once to the operator.  No share and no REK is
written anywhere: the kek database keeps the REK version and its check value.

The check value format and the SLIP-39 helpers are in :mod:`keys_app.providers.slip39`.

Unsealing: shares arrive one at a time (:meth:`submit_share`); a malformed
share, a duplicate, one from another set than those already submitted, or one
whose threshold matches no recorded version is refused with a message that
says which rule it broke and nothing about any value.  When K shares of one
set are in, they are combined and the result compared with every *active*
``shamir`` REK version's stored check value; on a match that version is held
in memory, otherwise nothing is kept and the progress resets.  The provider
is ``sealed`` while any active ``shamir`` version is not held.

This class holds the keyring *in this process*.  Under gunicorn the workers
instead talk to a seal keeper process that runs this class
(:mod:`keys_app.providers.shamir_keeper`); both share the method set used by
:mod:`keys_app.services.seal`.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from shamir_mnemonic.share import Share

from hkms_core.cluster.epoch import seal_epoch_current
from keys_app import crypto
from keys_app.models import RootKeyVersion
from keys_app.providers.base import RootKeyProvider, RootKeyUnavailable, Sealed
from keys_app.providers.slip39 import (
    ShareRefused,
    check_value,
    check_value_params,
    combine,
    parse_share,
    resolve_split,
    split,
    validate_split,
)

#: Seconds after a seal at which seal listeners run a second time (see :meth:`_fire_seal`).
SECOND_SEAL_SWEEP = 1.0

#: ``(version, mnemonics, threshold, total)`` -> shows the new shares to the operator, once.
ShareSink = Callable[[int, list[str], int, int], None]
SealListener = Callable[[], None]


class StoredCheckValues:
    """Reads and updates the check values of active ``shamir`` REK versions (kek database)."""

    def active(self) -> dict[int, bytes]:
        rows = RootKeyVersion.objects.using("kek").filter(provider="shamir", state=RootKeyVersion.State.ACTIVE)
        return {row.version: bytes(row.check_value) for row in rows}

    def replace(self, version: int, old: bytes, new: bytes) -> bool:
        """Compare-and-set one version's check value; False if it changed meanwhile."""
        with transaction.atomic(using="kek"):
            updated = (
                RootKeyVersion.objects.using("kek")
                .filter(version=version, provider="shamir", state=RootKeyVersion.State.ACTIVE, check_value=old)
                .update(check_value=new)
            )
        return updated == 1

    def seal_epoch(self) -> int:
        """The cluster's seal epoch (:mod:`keys_app.cluster_seal`), read when keys start being held."""
        return seal_epoch_current()


@dataclass
class _Held:
    key: crypto.SecretBytes
    set_tag: bytes
    threshold: int
    total: int

    @property
    def check_value(self) -> bytes:
        return check_value(self.key, self.set_tag, self.threshold, self.total)


@dataclass
class _PendingRekey:
    version: int
    old_check_value: bytes
    held: _Held
    created: float


class ShamirRootKeyProvider(RootKeyProvider):
    """REK versions held in this process's memory, unsealed by k-of-n SLIP-39 shares."""

    name = "shamir"
    mode = "in-process"

    def __init__(self, options: dict[str, Any], store: StoredCheckValues | None = None) -> None:
        super().__init__(options)
        self.default_total = int(options.get("shares", 5))
        self.default_threshold = int(options.get("threshold", 3))
        self.store = store or StoredCheckValues()
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)
        self._held: dict[int, _Held] = {}
        self._pending: list[Share] = []
        self._split: tuple[int | None, int | None] | None = None
        self._authorization: list[str] | None = None
        self._rekeys: dict[str, _PendingRekey] = {}
        self._listeners: list[SealListener] = []
        #: Bumped on every seal; watchers compare it to notice a seal they missed.
        self.seal_count = 0
        #: Bumped on every change of what is held (unseal, seal, new version, rekey).
        self.generation = 0
        #: The cluster seal epoch read when this process started holding keys (see
        #: :meth:`seal_if_unsealed_before`); a seal recorded after it seals this process too.
        self.unsealed_epoch = 0
        self.share_sink: ShareSink | None = None

    # -- configuration by commands -------------------------------------------------------
    def configure_split(self, total: int | None, threshold: int | None) -> None:
        """Share count and threshold for the next version this provider creates; ``None`` keeps
        the current version's (or, for the first version, the configured default)."""
        if total and threshold:
            try:
                validate_split(total, threshold)
            except ValueError as exc:
                raise RootKeyUnavailable(str(exc)) from None
        self._split = (total, threshold)

    def add_seal_listener(self, listener: SealListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def _fire_seal(self) -> None:
        """Tell listeners (key caches) to forget; once now and once a moment later.

        The second sweep catches a request that unwrapped a key just before the
        seal and put it in a cache just after the first sweep.
        """
        for listener in list(self._listeners):
            listener()
        timer = threading.Timer(SECOND_SEAL_SWEEP, lambda: [listener() for listener in list(self._listeners)])
        timer.daemon = True
        timer.start()

    def _epoch(self) -> int:
        reader = getattr(self.store, "seal_epoch", None)
        return int(reader()) if reader is not None else 0

    def _hold(self, version: int, held: _Held, epoch: int) -> None:
        """Hold ``version``; the first key held after a seal takes the epoch read before the
        operation began (so a seal committed meanwhile still seals it).  Caller holds the lock."""
        if not self._held:
            self.unsealed_epoch = epoch
        self._held[version] = held

    def seal_if_unsealed_before(self, epoch: int) -> bool:
        """Seal when the keys held were unsealed before cluster seal ``epoch``; True if it sealed."""
        with self._lock:
            stale = bool(self._held) and self.unsealed_epoch < epoch
        if stale:
            self.forget()
        return stale

    def _bump(self, *, sealed: bool = False) -> None:
        self.generation += 1
        if sealed:
            self.seal_count += 1
        self.changed.notify_all()

    # -- state ---------------------------------------------------------------------------
    def _active(self) -> dict[int, bytes]:
        return {v: cv for v, cv in self.store.active().items() if check_value_params(cv) is not None}

    @property
    def sealed(self) -> bool:
        try:
            active = self._active()
        except Exception:  # a database outage: report sealed rather than fail the health probe
            return True
        with self._lock:
            return any(version not in self._held for version in active)

    def status(self) -> dict[str, Any]:
        """Seal state and unseal progress; no secret, safe to show to anyone."""
        active = self._active()
        with self._lock:
            needed = sorted(v for v in active if v not in self._held)
            threshold = None
            if self._pending:
                threshold = self._pending[0].member_threshold
            elif needed:
                params = check_value_params(active[needed[-1]])
                threshold = params[0] if params else None
            versions = {}
            for version, value in sorted(active.items()):
                params = check_value_params(value)
                versions[str(version)] = {
                    "threshold": params[0] if params else None,
                    "shares": params[1] if params else None,
                    "unsealed": version in self._held,
                }
            return {
                "sealed": bool(needed),
                "progress": len(self._pending),
                "threshold": threshold,
                "sealed_versions": needed,
                "unsealed_versions": sorted(v for v in self._held if v in active),
                "versions": versions,
                "seal_count": self.seal_count,
                "generation": self.generation,
            }

    # -- unsealing -----------------------------------------------------------------------
    def _match(
        self, key: crypto.SecretBytes, set_tag: bytes, threshold: int, active: dict[int, bytes]
    ) -> tuple[int, _Held]:
        """The active version whose stored check value these rebuilt key and set match."""
        for version, stored in sorted(active.items(), reverse=True):
            params = check_value_params(stored)
            if params is None or params[0] != threshold:
                continue
            candidate = _Held(key, set_tag, threshold, params[1])
            if hmac.compare_digest(candidate.check_value, stored):
                return version, candidate
        raise ShareRefused(
            "the shares rebuild a key that matches no active root key version "
            "(an old share set replaced by rekey, or another installation's): nothing was unsealed"
        )

    def _verify(self, mnemonics: list[str]) -> tuple[int, _Held]:
        """Check a complete set of shares given at once; ``(version, held)`` on success."""
        shares: list[Share] = []
        for mnemonic in mnemonics:
            share = parse_share(mnemonic)
            if shares and share.common_parameters() != shares[0].common_parameters():
                raise ShareRefused("the shares are not all from the same share set")
            if any(s.index == share.index for s in shares):
                raise ShareRefused("the same share was given twice")
            shares.append(share)
        if not shares:
            raise ShareRefused("no share was given")
        threshold = shares[0].member_threshold
        if len(shares) < threshold:
            raise ShareRefused(f"{len(shares)} shares were given; {threshold} are needed")
        key, set_tag = combine(shares[:threshold])
        return self._match(key, set_tag, threshold, self._active())

    def submit_share(self, mnemonic: str) -> dict[str, Any]:
        """Add one share to the unseal in progress; unseal when K shares of a set are in."""
        epoch = self._epoch()
        active = self._active()
        if not active:
            raise ShareRefused("no active root key version is held by the shamir provider")
        share = parse_share(mnemonic)
        thresholds = {p[0] for p in map(check_value_params, active.values()) if p}
        with self._lock:
            if all(version in self._held for version in active):
                return {**self.status(), "message": "already unsealed"}
            if share.member_threshold not in thresholds:
                raise ShareRefused("this share is not from a current share set (its threshold matches none)")
            if self._pending and share.common_parameters() != self._pending[0].common_parameters():
                raise ShareRefused(
                    f"this share is from another share set than the {len(self._pending)} already submitted "
                    "(submit shares of one set, or reset the unseal progress)"
                )
            if any(p.index == share.index for p in self._pending):
                raise ShareRefused("this share was already submitted")
            self._pending.append(share)
            if len(self._pending) < share.member_threshold:
                return {**self.status(), "message": f"share accepted: {len(self._pending)} of {share.member_threshold}"}
            shares, self._pending = self._pending, []
            key, set_tag = combine(shares)
            version, held = self._match(key, set_tag, share.member_threshold, active)
            self._hold(version, held, epoch)
            self._bump()
            return {**self.status(), "message": f"root key version {version} unsealed", "unsealed_version": version}

    def reset_unseal(self) -> dict[str, Any]:
        """Forget the shares submitted so far (not the keys already unsealed)."""
        with self._lock:
            self._pending = []
        return {**self.status(), "message": "unseal progress reset"}

    def authorize(self, mnemonics: list[str]) -> int:
        """Verify K shares of an active version given at once, hold that version, and allow
        this process's next :meth:`create_version` (REK rotation under shamir needs a quorum).
        """
        epoch = self._epoch()
        version, held = self._verify(mnemonics)
        with self._lock:
            if version not in self._held:
                self._hold(version, held, epoch)
                self._bump()
            self._authorization = list(mnemonics)
        return version

    def forget(self) -> None:
        """Forget every REK version and every pending share in this process (no database access)."""
        with self._lock:
            self._held.clear()
            self._pending = []
            self._authorization = None
            self._rekeys.clear()
            self._bump(sealed=True)
        self._fire_seal()

    def seal(self) -> dict[str, Any]:
        """:meth:`forget`, then report the (sealed) status."""
        self.forget()
        return {**self.status(), "message": "sealed"}

    # -- rekey: a new share set for the same REK ----------------------------------------
    def rekey_prepare(self, mnemonics: list[str], total: int, threshold: int) -> dict[str, Any]:
        """Verify K current shares and split the same REK anew; nothing is committed yet.

        Returns the new mnemonics and a token for :meth:`rekey_commit`.  The caller
        shows the mnemonics *before* committing, so a crash leaves the old set valid.
        """
        try:
            validate_split(total, threshold)
        except ValueError as exc:
            raise RootKeyUnavailable(str(exc)) from None
        version, current = self._verify(mnemonics)
        new_mnemonics, set_tag = split(current.key, total, threshold)
        while set_tag == current.set_tag:  # pragma: no cover - 2**-224
            new_mnemonics, set_tag = split(current.key, total, threshold)
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._rekeys = {t: p for t, p in self._rekeys.items() if time.monotonic() - p.created < 3600}
            self._rekeys[token] = _PendingRekey(
                version, current.check_value, _Held(current.key, set_tag, threshold, total), time.monotonic()
            )
        return {"token": token, "rek_version": version, "shares": new_mnemonics, "threshold": threshold, "total": total}

    def rekey_commit(self, token: str) -> dict[str, Any]:
        with self._lock:
            pending = self._rekeys.pop(token, None)
        if pending is None:
            raise ShareRefused("this rekey is unknown or expired: run rekey again (the old shares stay valid)")
        if not self.store.replace(pending.version, pending.old_check_value, pending.held.check_value):
            raise ShareRefused(
                f"root key version {pending.version} changed while rekeying: the new shares are void, "
                "the shares valid before remain valid"
            )
        with self._lock:
            if pending.version in self._held:
                self._held[pending.version] = pending.held
            self._bump()
        return {"rek_version": pending.version, "threshold": pending.held.threshold, "total": pending.held.total}

    # -- provider interface --------------------------------------------------------------
    def create(
        self, version: int, authorization: list[str] | None = None, *, split_params: tuple[int, int] | None = None
    ) -> tuple[bytes, list[str], int, int]:
        """Create REK ``version`` in memory: ``(check value, new mnemonics, K, N)``.

        Idempotent for a version that is held *and* recorded.  A held version with
        no row yet (a crash before the row was written) is replaced: nothing can be
        wrapped under a version without a row, and its shares may never have been seen.
        When another shamir version is active, K of its shares must authorise this.
        """
        epoch = self._epoch()
        active = self.store.active()
        with self._lock:
            if version in self._held and version in active:
                return self._held[version].check_value, [], self._held[version].threshold, self._held[version].total
            others = [v for v in active if v != version]
            if others:
                if not authorization:
                    raise RootKeyUnavailable(
                        "creating a shamir root key version needs K shares of the current one "
                        "(the command asks for them)"
                    )
                authorised, _ = self._verify(authorization)
                if authorised != max(others):
                    raise RootKeyUnavailable(
                        f"the shares given unseal root key version {authorised}, not the current {max(others)}"
                    )
            try:
                total, threshold = resolve_split(
                    split_params or self._split, active, version, (self.default_total, self.default_threshold)
                )
            except ValueError as exc:
                raise RootKeyUnavailable(str(exc)) from None
            key = crypto.generate_key()
            mnemonics, set_tag = split(key, total, threshold)
            held = _Held(key, set_tag, threshold, total)
            self._hold(version, held, epoch)
            self._bump()
            return held.check_value, mnemonics, threshold, total

    def create_version(self, version: int) -> bytes:
        if self.share_sink is None:
            raise RootKeyUnavailable(
                "a shamir root key version can only be created by a command that shows its shares "
                "(init_hierarchy, rotate_root_key)"
            )
        with self._lock:
            authorization, self._authorization = self._authorization, None
        value, mnemonics, threshold, total = self.create(version, authorization)
        if mnemonics:
            try:
                self.share_sink(version, mnemonics, threshold, total)
            except BaseException:
                with self._lock:
                    self._held.pop(version, None)
                raise
        return value

    def _key(self, version: int) -> crypto.SecretBytes:
        with self._lock:
            held = self._held.get(version)
        if held is None:
            raise Sealed(f"root key version {version} is sealed: custodians must unseal it (manage.py unseal)")
        return held.key

    def has_version(self, version: int) -> bool:
        with self._lock:
            return version in self._held

    def check_value(self, version: int) -> bytes:
        self._key(version)
        with self._lock:
            return self._held[version].check_value

    def wrap(self, version: int, plaintext: bytes, *, context: bytes) -> bytes:
        return crypto.seal(self._key(version), plaintext, context=context, key_version=version)

    def unwrap(self, version: int, blob: bytes, *, context: bytes) -> bytes:
        return crypto.open_(self._key(version), blob, context=context)

    def destroy_version(self, version: int) -> None:
        with self._lock:
            if self._held.pop(version, None) is not None:
                self._bump()

    def describe(self) -> dict[str, Any]:
        try:
            status = self.status()
        except Exception as exc:
            return {"provider": self.name, "mode": self.mode, "sealed": True, "error": type(exc).__name__}
        return _describe(self.name, self.mode, status)


def _describe(name: str, mode: str, status: dict[str, Any]) -> dict[str, Any]:
    """Status facts for ``hierarchy_status`` and the console, from :meth:`status`."""
    versions = status.get("versions", {})
    current = versions[max(versions, key=int)] if versions else {}
    return {
        "provider": name,
        "mode": mode,
        "sealed": status["sealed"],
        "unseal_progress": status["progress"],
        "unseal_threshold": status["threshold"],
        "threshold": current.get("threshold"),
        "shares": current.get("shares"),
        "versions": versions,
    }
