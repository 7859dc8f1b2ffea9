"""Seal, unseal and rekey of the ``shamir`` root key provider.

The one write path for the ``unseal`` / ``seal`` / ``rekey`` commands and for
the HTTP endpoint and console page that let superusers unseal (those must
authenticate the caller as a superuser and audit the call; these functions
do neither).  Under gunicorn each call goes to the seal keeper, so the
effect reaches every worker (see :mod:`keys_app.providers.shamir_keeper`).

Results are plain dicts safe to show to the caller: seal state, progress
("2 of 3"), version numbers.  A refused share raises :class:`ShareRefused`,
whose message says which rule the share broke and nothing about any value;
REST callers should map it to 400 (``code`` ``"share_refused"``), and
:class:`~keys_app.errors.RootKeyError` (sealed keeper unreachable, …) to 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from hkms_core.cluster.epoch import seal_epoch_bump
from hkms_core.errors import invalid_arguments_body
from keys_app.errors import HierarchyError, RootKeyError
from keys_app.models import RootKeyVersion
from keys_app.providers import get_provider
from keys_app.providers.base import RootKeyUnavailable
from keys_app.providers.shamir import ShareSink
from keys_app.providers.slip39 import ShareRefused as _ProviderShareRefused
from keys_app.providers.slip39 import check_value_params

log = logging.getLogger("hkms.seal")


class ShareRefused(HierarchyError):
    """A share or share set was refused; nothing was unsealed by it (400, naming the ``share`` argument)."""

    code = "share_refused"
    status = 400
    type = "invalid_arguments"
    server_log = None

    def as_scaleway(self) -> dict[str, Any]:
        return invalid_arguments_body([("share", "constraint", self.message)], self.message)


class SealableProvider(Protocol):
    share_sink: ShareSink | None

    @property
    def sealed(self) -> bool: ...
    def status(self) -> dict[str, Any]: ...
    def submit_share(self, mnemonic: str) -> dict[str, Any]: ...
    def reset_unseal(self) -> dict[str, Any]: ...
    def seal(self) -> dict[str, Any]: ...
    def authorize(self, mnemonics: list[str]) -> int: ...
    def configure_split(self, total: int | None, threshold: int | None) -> None: ...
    def has_version(self, version: int) -> bool: ...
    def rekey_prepare(self, mnemonics: list[str], total: int, threshold: int) -> dict[str, Any]: ...
    def rekey_commit(self, token: str) -> dict[str, Any]: ...


_PUBLIC = (
    "sealed",
    "progress",
    "threshold",
    "sealed_versions",
    "unsealed_versions",
    "message",
    "unsealed_version",
    "cluster_epoch",
)


def shamir_provider() -> SealableProvider:
    provider: Any = get_provider("shamir")
    return provider  # type: ignore[no-any-return]


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result[key] for key in _PUBLIC if key in result}


def _call(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return _public(action())
    except _ProviderShareRefused as exc:
        raise ShareRefused(str(exc)) from None
    except RootKeyUnavailable as exc:
        raise RootKeyError(str(exc)) from None


def seal_status() -> dict[str, Any]:
    """Whether the shamir provider is sealed and how far an unseal has got."""
    return _call(lambda: shamir_provider().status())


def unseal_submit(share: str) -> dict[str, Any]:
    """Submit one custodian share; returns progress, or the unsealed state at the K-th share."""
    return _call(lambda: shamir_provider().submit_share(share))


def unseal_reset() -> dict[str, Any]:
    """Discard the shares submitted so far (e.g. one came from the wrong set)."""
    return _call(lambda: shamir_provider().reset_unseal())


def seal() -> dict[str, Any]:
    """Forget the REK on every node: record a new cluster seal epoch, then seal this node.

    The epoch is committed first, so every other node seals itself within
    ``HKMS_SEAL_CHECK_SECONDS`` of its next request (:mod:`keys_app.cluster_seal`).  If the
    database cannot be reached, this node is sealed all the same and the result says that
    the cluster was not told (``cluster_epoch`` is ``None``): seal the other nodes one by one.
    """
    try:
        epoch: int | None = seal_epoch_bump()
    except Exception as exc:  # sealing must not depend on the database
        log.error("seal: the cluster seal epoch could not be recorded (%s); sealing this node only", type(exc).__name__)
        epoch = None
    result = _call(lambda: shamir_provider().seal())
    result["cluster_epoch"] = epoch
    if epoch is None:
        result["message"] = "sealed this node only: the database is unreachable, seal every other node yourself"
    return result


def shamir_threshold(version: int | None = None) -> int | None:
    """K of the newest (or given) active shamir REK version, read from its check value."""
    rows = RootKeyVersion.objects.using("kek").filter(provider="shamir", state=RootKeyVersion.State.ACTIVE)
    if version is not None:
        rows = rows.filter(version=version)
    row = rows.order_by("-version").first()
    if row is None:
        return None
    params = check_value_params(bytes(row.check_value))
    return params[0] if params else None


def shamir_authorize(shares: list[str]) -> int:
    """Verify K shares of an active shamir REK version given at once; hold it; allow one new version."""
    try:
        return shamir_provider().authorize(shares)
    except _ProviderShareRefused as exc:
        raise ShareRefused(str(exc)) from None
    except RootKeyUnavailable as exc:
        raise RootKeyError(str(exc)) from None


def shamir_rekey(
    *, shares: list[str], total: int, threshold: int, show: Callable[[int, list[str]], None]
) -> dict[str, Any]:
    """Issue a new share set for the same REK, given K current shares.

    Order: verify the current shares, split anew, ``show`` the new shares, and
    only then replace the stored check value (compare-and-set).  A crash before
    the last step leaves the old set valid and the shown shares void.
    ``show(rek_version, new_shares)`` must display them before returning.
    """
    provider = shamir_provider()
    try:
        prepared = provider.rekey_prepare(shares, total, threshold)
        show(int(prepared["rek_version"]), list(prepared["shares"]))
        committed = provider.rekey_commit(str(prepared["token"]))
    except _ProviderShareRefused as exc:
        raise ShareRefused(str(exc)) from None
    except RootKeyUnavailable as exc:
        raise RootKeyError(str(exc)) from None
    return {"rek_version": committed["rek_version"], "threshold": committed["threshold"], "shares": committed["total"]}
