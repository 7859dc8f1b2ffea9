"""The audit chain's hash formats: one tag per event says how its hash was computed.

Every event stores ``hash_version`` beside its ``hash``:

``"0"`` — legacy, unkeyed
    ``hash = SHA-256(prev_hash || canonical_v1(event)).hex()``.  The format of
    every event written before the chain was keyed (and of events written while
    no audit key could be had: hierarchy not initialised, or sealed).  Anyone
    can recompute it, so it proves nothing by itself; it is protected only by
    the first *keyed* event after it, whose MAC covers ``prev_hash`` and so,
    link by link, the whole unkeyed run before it.

``"1.<n>"`` — keyed, version 1
    ``hash = HMAC-SHA256(audit_key_n, "hkms-audit" NUL tag NUL prev_hash NUL
    canonical_v1(event)).hex()``.  The tag itself is authenticated, so an event
    cannot be downgraded to the legacy format, and moving an event to another
    key version breaks its MAC.

``canonical_v1`` is the sorted, compact JSON of the fields in :data:`FIELDS_V1`.
A future field goes into a new format (``"2.<n>"`` with its own field list); old
events keep the tag, and the canonical form, they were written with.
Hashes are always 64 hex characters, so ``prev_hash`` needs no format of its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from json.encoder import encode_basestring_ascii as _escape
from typing import Any

GENESIS = "0" * 64
LEGACY = "0"
KEYED_FORMAT = 1
FIELDS_V1 = (
    "seq",
    "created_at",
    "actor",
    "actor_user_id",
    "api_key",
    "via",
    "action",
    "object_type",
    "object_id",
    "project_id",
    "outcome",
    "source_ip",
    "request_id",
    "detail",
)
_DOMAIN = b"hkms-audit\x00"
_dump = json.dumps
_BLOCK = 64  # SHA-256's block size


class UnknownFormat(ValueError):
    """A ``hash_version`` tag this code cannot verify (corrupt, or from a newer release)."""


def canonical_v1(values: dict[str, Any]) -> bytes:
    document = {name: values[name] for name in FIELDS_V1}
    if isinstance(document["created_at"], datetime):
        document["created_at"] = document["created_at"].isoformat(timespec="microseconds")
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def canonical_v1_fast(
    seq: int,
    created_at: str,
    actor: str,
    actor_user_id: int | None,
    api_key: str,
    via: str,
    action: str,
    object_type: str,
    object_id: str,
    project_id: str,
    outcome: str,
    source_ip: str,
    request_id: str,
    detail: str,
) -> bytes:
    """:func:`canonical_v1` byte for byte, about four times faster (for verification).

    ``created_at`` is already the ``isoformat(timespec="microseconds")`` string and
    ``detail`` the canonical JSON of the detail (:func:`canonical_detail`).
    Keys are written in sorted order by hand; strings go through the json
    module's own C escaper, so the output is the same bytes.
    """
    esc = _escape
    return (
        f'{{"action":{esc(action)},"actor":{esc(actor)},'
        f'"actor_user_id":{"null" if actor_user_id is None else int(actor_user_id)},'
        f'"api_key":{esc(api_key)},"created_at":{esc(created_at)},'
        f'"detail":{detail},'
        f'"object_id":{esc(object_id)},"object_type":{esc(object_type)},"outcome":{esc(outcome)},'
        f'"project_id":{esc(project_id)},"request_id":{esc(request_id)},"seq":{int(seq)},'
        f'"source_ip":{esc(source_ip)},"via":{esc(via)}}}'
    ).encode()


def canonical_detail(stored: str | dict[str, Any]) -> str:
    """The canonical JSON of a ``detail`` column as the database returns it (JSON text or a dict)."""
    if stored == "{}":
        return "{}"
    value = json.loads(stored) if isinstance(stored, str) else stored
    return _dump(value, sort_keys=True, separators=(",", ":")) if value else "{}"


def legacy_hash(prev_hash: str, values: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_v1(values)).hexdigest()


def keyed_tag(key_version: int) -> str:
    return f"{KEYED_FORMAT}.{key_version}"


def parse_tag(tag: str) -> int | None:
    """The audit key version a tag names, ``None`` for the legacy format; raises :class:`UnknownFormat`."""
    if tag == LEGACY:
        return None
    fmt, _, version = tag.partition(".")
    if fmt != str(KEYED_FORMAT) or not version.isdigit() or not version.isascii() or int(version) < 1:
        raise UnknownFormat(tag)
    return int(version)


Hasher = Callable[[str, dict[str, Any]], str]
#: ``(prev_hash, canonical bytes) -> hash``: the verifier's form, for canonical bytes it built itself.
RawHasher = Callable[[str, bytes], str]


def legacy_raw(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


def keyed_raw(key: bytes, key_version: int) -> RawHasher:
    """HMAC-SHA256 (RFC 2104) with the padded-key states computed once.

    Equal to ``hmac.new(key, message, "sha256")``; copying two prepared SHA-256
    states costs about half of what ``hmac.digest`` spends setting up the key
    on every call, and verification hashes every event.
    """
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    padded = key.ljust(_BLOCK, b"\x00")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
    inner.update(_DOMAIN + keyed_tag(key_version).encode() + b"\x00")

    def raw(prev_hash: str, canonical: bytes) -> str:
        i = inner.copy()
        i.update(prev_hash.encode() + b"\x00" + canonical)
        o = outer.copy()
        o.update(i.digest())
        return o.hexdigest()

    return raw


def keyed_hasher(key: bytes, key_version: int) -> Hasher:
    """``hasher(prev_hash, values)`` for format 1 under ``key`` (one HMAC per event)."""
    raw = keyed_raw(key, key_version)

    def hasher(prev_hash: str, values: dict[str, Any]) -> str:
        return raw(prev_hash, canonical_v1(values))

    return hasher
