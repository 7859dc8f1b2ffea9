"""SLIP-39 for the ``shamir`` provider: splitting a REK into K-of-N shares, combining them, check values.

Uses the ``shamir-mnemonic`` reference implementation: one group, member threshold
K of N, empty passphrase.  No Django, no I/O.

Check value (stored on ``RootKeyVersion.check_value``, 20 bytes)::

    b"S" || 0x01 || K (1 byte) || N (1 byte) || HMAC-SHA256(REK, LABEL || K || N || set_tag)[:16]
    set_tag = SHA-256(b"hkms shamir share set v1" || SLIP-39 digest share of the set)

It is self-describing (status pages read K and N without unsealing) and binds
the REK to *one share set*: the SLIP-39 digest share (the polynomial's value
at x = 254, with 28 fresh random bytes per split) is recomputable from any K
shares of a set and differs between sets of the same REK.  ``rekey`` issues a
new set for the same REK and replaces the stored check value, so shares of the
old set rebuild the right key but fail the check and are refused.  (They still
*are* shares of the REK: anyone holding K old shares and a copy of the kek
database can unwrap offline.  If old shares may have leaked, rotate the REK.)
The digest share itself is never kept: only its hash, inside the HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

import shamir_mnemonic
from shamir_mnemonic.shamir import DIGEST_INDEX, RawShare, ShareGroup, _interpolate, recover_ems
from shamir_mnemonic.share import Share

from keys_app import crypto

CHECK_FORMAT = b"S\x01"
CHECK_LABEL = b"hkms shamir check value v1"
SET_LABEL = b"hkms shamir share set v1"
MAX_SHARES = 16  # SLIP-39 encodes member counts in 4 bits
MIN_THRESHOLD = 2


class ShareRefused(Exception):
    """A submitted share (or set of shares) was refused; the message reveals no value."""


def validate_split(total: int, threshold: int) -> None:
    if not MIN_THRESHOLD <= threshold <= total <= MAX_SHARES:
        raise ValueError(
            f"a share set needs {MIN_THRESHOLD} <= threshold <= shares <= {MAX_SHARES} (got {threshold} of {total})"
        )


def resolve_split(
    requested: tuple[int | None, int | None] | None, active: dict[int, bytes], version: int, default: tuple[int, int]
) -> tuple[int, int]:
    """``(total, threshold)`` for a new version: what was asked for, else the policy of the newest
    other active shamir version (a rotation keeps the custodians' K-of-N), else the defaults.
    One of the two may be asked for alone; the other then comes from the same fallback."""
    asked_total, asked_threshold = requested or (None, None)
    base = default
    for other in sorted((v for v in active if v != version), reverse=True):
        params = check_value_params(active[other])
        if params is not None:
            base = (params[1], params[0])
            break
    total, threshold = asked_total or base[0], asked_threshold or base[1]
    validate_split(total, threshold)
    return total, threshold


def normalise(mnemonic: str) -> str:
    return " ".join(unicodedata.normalize("NFKD", mnemonic).lower().split())


def parse_share(mnemonic: str) -> Share:
    """A SLIP-39 share of the kind this provider issues, or :class:`ShareRefused`."""
    try:
        share = Share.from_mnemonic(normalise(mnemonic))
    except (shamir_mnemonic.MnemonicError, ValueError, KeyError):
        raise ShareRefused("this is not a valid share: check the words and their order") from None
    if share.group_count != 1 or share.group_threshold != 1 or share.member_threshold < MIN_THRESHOLD:
        raise ShareRefused("this share was not issued by HKMS (unexpected share-set parameters)")
    return share


def _set_tag(shares: list[Share]) -> bytes:
    # The digest share (x = 254) of the set, recomputed from K shares.  It is a full share
    # in its own right, so only its hash leaves this function.  shamir-mnemonic 0.3 keeps the
    # interpolation private; the version pin (<0.4) and the tests guard this use.
    digest_share = _interpolate([RawShare(s.index, s.value) for s in shares], DIGEST_INDEX)
    return hashlib.sha256(SET_LABEL + digest_share).digest()


def split(key: crypto.SecretBytes, total: int, threshold: int) -> tuple[list[str], bytes]:
    """Split ``key`` into ``total`` mnemonics, any ``threshold`` of which rebuild it."""
    validate_split(total, threshold)
    groups = shamir_mnemonic.generate_mnemonics(1, [(threshold, total)], key.reveal(), b"", extendable=False)
    mnemonics = groups[0]
    return mnemonics, _set_tag([Share.from_mnemonic(m) for m in mnemonics[:threshold]])


def combine(shares: list[Share]) -> tuple[crypto.SecretBytes, bytes]:
    """Rebuild the key from exactly K shares of one set; :class:`ShareRefused` if they disagree."""
    group = ShareGroup()
    try:
        for share in shares:
            group.add(share)
        secret = recover_ems({0: group}).decrypt(b"")
    except (shamir_mnemonic.MnemonicError, ValueError):
        raise ShareRefused("the submitted shares do not combine: one is corrupt or from another share set") from None
    if len(secret) != crypto.KEY_BYTES:
        raise ShareRefused("the submitted shares do not rebuild a root key")
    return crypto.SecretBytes(secret), _set_tag(shares)


def check_value(key: crypto.SecretBytes, set_tag: bytes, threshold: int, total: int) -> bytes:
    params = bytes([threshold, total])
    mac = hmac.new(key.reveal(), CHECK_LABEL + params + set_tag, hashlib.sha256).digest()[:16]
    return CHECK_FORMAT + params + mac


def check_value_params(value: bytes) -> tuple[int, int] | None:
    """``(threshold, total)`` read from a stored shamir check value, or None if it is not one."""
    if len(value) != len(CHECK_FORMAT) + 2 + 16 or not value.startswith(CHECK_FORMAT):
        return None
    return value[2], value[3]
