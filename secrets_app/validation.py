"""Rules for secret names, paths, tags, ephemeral policies and typed payloads.

Every rule raises :class:`hkms_core.errors.InvalidArgument` naming the field;
messages never quote a payload.
"""

from __future__ import annotations

import re
import zlib
from datetime import timedelta
from typing import Any

from hkms_core import safejson
from hkms_core.errors import InvalidArgument
from secrets_app.models import EphemeralAction, SecretType

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_TAGS = 50
MIN_TTL = timedelta(seconds=1)
MAX_TTL = timedelta(days=365)
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n[A-Za-z0-9+/=\r\n]+-----END \1-----", re.MULTILINE)

#: Required string fields of the structured types (Scaleway's JSON shapes).
TYPE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # type: (required, optional)
    SecretType.BASIC_CREDENTIALS: (("username", "password"), ()),
    SecretType.DATABASE_CREDENTIALS: (("engine", "username", "password", "host", "dbname", "port"), ()),
    SecretType.SSH_KEY: (("ssh_private_key",), ()),
}


def secret_name(raw: Any) -> str:
    if not isinstance(raw, str) or not _NAME.fullmatch(raw) or raw in {".", ".."}:
        raise InvalidArgument("name", "must be 1 to 255 characters from letters, digits, '.', '_' and '-'")
    return raw


def secret_path(raw: Any, field: str = "path") -> str:
    """A folder path: ``/`` or ``/seg/seg`` with segments of 1 to 255 of ``[A-Za-z0-9._-]``.

    One trailing slash is dropped; an empty segment anywhere else (``/a//b``, ``/a//``)
    is refused rather than silently collapsed.
    """
    if raw is None or raw == "":
        return "/"
    if not isinstance(raw, str) or not raw.startswith("/") or len(raw) > 1024:
        raise InvalidArgument(field, "must be an absolute path such as /apps/web")
    if raw != "/" and raw.endswith("/"):
        raw = raw[:-1]  # one trailing slash is dropped ("/apps/web/" is "/apps/web"); "/a//" is refused
    segments = raw[1:].split("/") if raw != "/" else []
    for segment in segments:
        if not _SEGMENT.fullmatch(segment) or segment in {".", ".."}:
            raise InvalidArgument(field, "segments must be 1 to 255 characters from letters, digits, '.', '_' and '-'")
    return "/" + "/".join(segments)


def tags(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_TAGS:
        raise InvalidArgument("tags", f"must be a list of at most {MAX_TAGS} strings")
    clean: list[str] = []
    for tag in raw:
        if not isinstance(tag, str) or not 1 <= len(tag) <= 255 or "\x00" in tag:
            raise InvalidArgument("tags", "each tag must be a string of 1 to 255 characters")
        if tag not in clean:
            clean.append(tag)
    return clean


def secret_type(raw: Any) -> str:
    if raw in (None, "", "unknown_type"):
        return SecretType.OPAQUE
    if raw not in SecretType.values:
        raise InvalidArgument("type", f"must be one of {', '.join(SecretType.values)}")
    return str(raw)


def ephemeral_action(raw: Any) -> str:
    if raw in (None, "", EphemeralAction.UNKNOWN):
        return ""
    if raw not in (EphemeralAction.DELETE, EphemeralAction.DISABLE):
        raise InvalidArgument("ephemeral_policy.action", "must be delete or disable")
    return str(raw)


def ttl(value: timedelta) -> timedelta:
    if not MIN_TTL <= value <= MAX_TTL:
        raise InvalidArgument("ephemeral_policy.time_to_live", "must be between 1s and 1 year (31536000s)")
    return value


def payload(data: bytes, *, type_: str, crc32: int | None) -> None:
    """Size, checksum and the JSON/PEM shape of the secret's type."""
    if not data:
        raise InvalidArgument("data", "must not be empty")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument("data", f"must be at most {MAX_PAYLOAD_BYTES} bytes")
    if crc32 is not None and zlib.crc32(data) != crc32:
        raise InvalidArgument("data_crc32", "does not match the CRC32 of data")
    if type_ == SecretType.CERTIFICATE:
        if not _PEM.search(data):
            raise InvalidArgument("data", "a certificate secret holds one or more PEM blocks")
        return
    if type_ == SecretType.KEY_VALUE:
        document = _json_object(data)
        if not all(isinstance(v, str | int | float | bool) or v is None for v in document.values()):
            raise InvalidArgument("data", "a key_value secret is a flat JSON object")
        return
    if type_ in TYPE_FIELDS:
        document = _json_object(data)
        required, _optional = TYPE_FIELDS[type_]
        missing = [name for name in required if not isinstance(document.get(name), str) or not document[name]]
        if missing:
            raise InvalidArgument("data", f"a {type_} secret needs the string fields: {', '.join(missing)}")
        if type_ == SecretType.SSH_KEY and not _PEM.search(document["ssh_private_key"].encode()):
            raise InvalidArgument("data", "ssh_private_key must be a PEM private key")


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        document = safejson.loads(data)  # bounded nesting: never a RecursionError
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("data", "must be a JSON object for this secret type") from None
    if not isinstance(document, dict):
        raise InvalidArgument("data", "must be a JSON object for this secret type")
    return document


def crc32_of(data: bytes) -> int:
    return zlib.crc32(data)


def revision_number(raw: str) -> int | None:
    """``raw`` as a revision number (ASCII digits, 1 to 2**31 - 1), or None if it is not one."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and 0 < int(raw) < 2**31:
        return int(raw)
    return None
