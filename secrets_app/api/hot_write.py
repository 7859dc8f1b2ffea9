"""The hot path of ``POST …/regions/{region}/secrets/{id}/versions``: a version created without
DRF's request handling (request wrapping, content negotiation, serializer validation, response
serializer) and the console's middleware.

**Fast or general, never different** (the rule of :mod:`secrets_app.api.hot`).  :func:`serve`
decides before any side effect: it returns ``None`` (the request goes on to the DRF view,
``SecretVersionsView.post``, which answers exactly as before) unless the request is the plain
case it validates exactly as the general path does:

* an ``X-Auth-Token``, no cookie, no query string, a recognised ``Accept``, the content
  type ``application/json`` (optionally ``; charset=utf-8``), a ``Content-Length`` within
  :data:`MAX_BODY` and ``DATA_UPLOAD_MAX_MEMORY_SIZE``;
* a known region and a well-formed secret id;
* a body the general path's parser (``hkms_core.api.parsers.JSONParser``: nesting limit,
  strict constants) reads as a JSON object whose keys are only ``data`` (a base64 string
  decoding to 1 … ``MAX_PAYLOAD_BYTES`` bytes), ``description`` (``null`` or a string
  without NUL or lone surrogates, at most 4096 characters once stripped, as DRF's
  ``CharField`` strips it), ``disable_previous`` (``null`` or a boolean) and
  ``data_crc32`` (``null`` or an integer in 0 … 2³²-1, never a boolean or a string);
* a token that authenticates (the general path counts and audits a failure), the
  ``ALLOWED_HOSTS`` check passed, and the per-user throttle allowing it (else the
  general path answers the 429: such a request is counted twice).

Then it calls **the same domain action** as the view,
:func:`secrets_app.services.versions.secret_version_create` (authorization with its audited
404, the lock, the DEK committed first, the audit event in the version's transaction, the
revision high-water mark), and from that call on the answer is its own: the version
rendered as ``SecretVersionSerializer`` renders it, or the error rendered by the general
path's exception handler (``hkms_core.api.exceptions``: a 412 for a secret scheduled for
deletion, a 404 for no permission, a 503 in an outage…).  It never hands over after the
call: that would create a second version.  ``tests/secrets_app/test_hot_write.py``
compares both paths' bytes, headers, rows and audit events.
"""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.debug import sensitive_variables

from hkms_core.access.cache import principal_authenticate
from hkms_core.api.authentication import TOKEN_HEADER
from hkms_core.api.common import b64decode_field, timestamp
from hkms_core.api.parsers import JSONParser
from secrets_app.api.hot_common import PLAIN_ACCEPT, api_principal, error_response, json_response, throttle_allows
from secrets_app.api.views import SecretVersionsView
from secrets_app.models import SecretVersion
from secrets_app.services.versions import secret_version_create
from secrets_app.validation import MAX_PAYLOAD_BYTES

# Django's ``<str:…>`` converter is ``[^/]+``: the same path as secrets_app/api/urls.py.
_VERSIONS = re.compile(r"/secret-manager/v1beta1/regions/([^/]+)/secrets/([^/]+)/versions")
_CONTENT_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})
_KEYS = frozenset({"data", "description", "disable_previous", "data_crc32"})
#: A body the plain case can fill: base64 of the largest payload and an escaped description.
MAX_BODY = 2 * MAX_PAYLOAD_BYTES + 64 * 1024
#: What DRF's ``CharField`` refuses in a string (ProhibitNull/SurrogateCharactersValidator).
_PROHIBITED = re.compile("[\x00\ud800-\udfff]")
_ALLOW = "GET, POST, HEAD, OPTIONS"


class _Invalid(Exception):
    """The body is not the plain case: the general path answers it."""


@sensitive_variables("token", "body", "raw", "data")
def serve(request: HttpRequest) -> HttpResponse | None:
    """The answer to a plain version creation, or ``None`` (before any side effect): the general path."""
    meta = request.META
    token = meta.get(TOKEN_HEADER)
    if token is None or request.method != "POST" or meta.get("HTTP_COOKIE") or meta.get("QUERY_STRING"):
        return None
    if meta.get("HTTP_ACCEPT", "") not in PLAIN_ACCEPT or meta.get("CONTENT_TYPE") not in _CONTENT_TYPES:
        return None
    match = _VERSIONS.fullmatch(request.path_info)
    if match is None:
        return None
    region, raw_id = match.groups()
    if region not in settings.HKMS_REGIONS:
        return None
    try:
        uuid.UUID(raw_id)
        length = int(meta.get("CONTENT_LENGTH") or "")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if not 0 < length <= MAX_BODY or (limit is not None and length > limit):
            return None
        fields = _fields(request.body)
    except Exception:  # malformed id, length or body: the general path says what
        return None
    request.get_host()  # ALLOWED_HOSTS (DisallowedHost -> 400, as CommonMiddleware does it)
    try:
        entry = principal_authenticate(token)
        if entry is None:
            return None
        principal = api_principal(request, entry)
        if not throttle_allows(principal, meta):
            return None
    except Exception:  # nothing done yet: the general path meets it again (a 503 in an outage)
        return None
    # From here the answer is this call's: handing over would create a second version.
    try:
        version = secret_version_create(principal=principal, secret_id=raw_id, region=region, **fields)
    except Exception as exc:
        return error_response(exc, _versions_view(), allow=_ALLOW)
    return json_response(200, version_body(version), allow=_ALLOW)


@sensitive_variables("body", "raw", "data")
def _fields(body: bytes) -> dict[str, Any]:
    """The service's arguments from a plain body, exactly as the view derives them, else :class:`_Invalid`."""
    raw = JSONParser().parse(io.BytesIO(body), "application/json", {"encoding": "utf-8"})
    if not isinstance(raw, dict) or not raw.keys() <= _KEYS or not isinstance(raw.get("data"), str):
        raise _Invalid
    data = b64decode_field(raw["data"], "data", max_bytes=MAX_PAYLOAD_BYTES)
    description = raw.get("description")
    if description is not None:
        if not isinstance(description, str) or _PROHIBITED.search(description):
            raise _Invalid
        description = description.strip()  # DRF's CharField: trim_whitespace
        if len(description) > 4096:
            raise _Invalid
    disable_previous = raw.get("disable_previous")
    if disable_previous not in (None, True, False):
        raise _Invalid
    crc32 = raw.get("data_crc32")
    if crc32 is not None and (type(crc32) is not int or not 0 <= crc32 <= 2**32 - 1):
        raise _Invalid
    return {
        "data": data,
        "description": description or "",
        "disable_previous": bool(disable_previous),
        "data_crc32": crc32,
    }


def version_body(version: SecretVersion) -> dict[str, Any]:
    """``SecretVersionSerializer(version).data``: the same keys, order and values."""
    secret = version.secret
    ephemeral = None
    if version.expires_at is not None or version.expires_once_accessed:
        ephemeral = {
            "expires_at": timestamp(version.expires_at),
            "expires_once_accessed": version.expires_once_accessed,
            "action": version.ephemeral_action or "unknown_action",
        }
    return {
        "revision": int(version.revision),
        "secret_id": str(version.secret_id),
        "status": str(version.status),
        "created_at": timestamp(version.created_at),
        "updated_at": timestamp(version.updated_at),
        "deleted_at": timestamp(version.deleted_at),
        "description": str(version.description),
        "latest": version.revision == secret.version_count,
        "ephemeral_properties": ephemeral,
        "deletion_requested_at": timestamp(version.deletion_requested_at),
        "region": secret.region,
    }


def _versions_view() -> Any:
    return SecretVersionsView()
