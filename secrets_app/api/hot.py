"""The hot path: the two payload-access endpoints, served without the generic machinery.

``GET …/secrets/{id}/versions/{rev}/access`` and ``GET …/secrets-by-path/versions/{rev}/access``
are what applications call most.  :class:`HotPathMiddleware` (early in ``MIDDLEWARE``,
after the security-header middleware) answers them itself when the read is the plain,
successful case, without DRF's request wrapping and content negotiation, the session,
CSRF, authentication, OTP and message middleware that only serve the console, or the
ORM's query compilation (one raw parameterised query finds version, secret and key).

**Fast or general, never different.**  The hot path serves a request only when it can
prove the answer is a 200 with the payload; for anything else it returns ``None`` and
the request continues through the middleware to the ordinary DRF view
(``secrets_app.api.views``), which answers exactly as before (errors byte for byte,
refusals audited, expires-once-accessed consumed in its transaction).  The hot path
has no side effect before it decides, except filling the unwrapped-DEK cache, so
handing over is always safe.  It hands over when:

* the method is not GET, there is no ``X-Auth-Token``, or there is a cookie (console
  sessions go the general way, whatever it and the session middleware decide for them,
  e.g. the two-factor gate), an ``Accept`` it does not recognise or a ``format``
  parameter (DRF's content negotiation decides those);
* the region is unknown, the revision or an id is malformed, the by-path arguments do
  not validate;
* the token does not authenticate (the general path counts and audits the failure);
* the version is not readable by the rules every read path applies
  (``secrets_app.states.version_readable``: expired, not ``enabled``, secret scheduled
  for deletion, key not ``enabled``, destroyed), or it is ``expires_once_accessed``
  (the general path marks it accessed and records the event in one transaction:
  exactly once), or the secret is in another region;
* the principal may not read the secret (the general path audits the refusal);
* decryption fails for any reason (DEK destroyed or rotated meanwhile, key disabled,
  tampering, sealed root key): the general path retries or answers the error;
* anything raises before the audit append (a database outage, say): the general path
  meets it again and answers it (503 for an outage);
* the per-user throttle refuses (the general path answers the 429).

**What it does itself**, in the order of the general path: authentication through the
principal cache (one read of the access generation: a revoked key, role or user is
refused on the next request, in every process), the ``ALLOWED_HOSTS`` check
(``CommonMiddleware`` does it on the general path), the version lookup, authorization
(``hkms_core.access.services.can``: the same grants), decryption
(``keys_app.services.material.dek_material``: the same DEK cache and key-state check),
the per-user throttle (the same counters), then the audit event, committed before the
payload leaves (``audit_record_committed``: group commit; if it fails the answer is what
the general path's exception handler gives, a 503 in an outage, else a 500, and no
payload).  The response has the general path's body and headers (``tests/secrets_app/test_hot_path.py`` compares them).

The same middleware hands ``POST …/secrets/{id}/versions`` to the write hot path,
:mod:`secrets_app.api.hot_write` (same rule: it decides before any side effect, then calls
the general path's service and answers for it); both share :mod:`secrets_app.api.hot_common`
(principal, throttle, responses rendered with the general path's bytes and headers).

``HKMS_HOT_PATH=0`` turns both off (every request then takes the general path).
Nothing here logs; payloads and tokens never reach an exception message.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from hkms_core.access.cache import principal_authenticate
from hkms_core.access.roles import Action
from hkms_core.access.services import can
from hkms_core.api.authentication import TOKEN_HEADER
from hkms_core.api.common import b64encode
from hkms_core.audit.services import audit_record_committed
from keys_app import crypto
from keys_app.models import Key
from keys_app.services.material import dek_material
from secrets_app import states, storage, validation
from secrets_app.api import hot_write
from secrets_app.api.hot_common import PLAIN_ACCEPT, api_principal, error_response, json_response, throttle_allows
from secrets_app.api.views import AccessSecretVersionView
from secrets_app.models import Secret, SecretVersion, VersionStatus

_PREFIX = "/secret-manager/v1beta1/regions/"
# Django's ``<str:…>`` converter is ``[^/]+``: the same paths as secrets_app/api/urls.py.
_BY_ID = re.compile(r"/secret-manager/v1beta1/regions/([^/]+)/secrets/([^/]+)/versions/([^/]+)/access")
_BY_PATH = re.compile(r"/secret-manager/v1beta1/regions/([^/]+)/secrets-by-path/versions/([^/]+)/access")
_EVENT = "secret.version.access"
_ALLOW = "GET, OPTIONS"


class _SecretRef:
    """What ``can`` reads of a secret (its model, id and project), without a model instance."""

    __slots__ = ("pk", "project_id")
    _meta = Secret._meta

    def __init__(self, pk: uuid.UUID, project_id: uuid.UUID) -> None:
        self.pk = pk
        self.project_id = project_id


class _KeyRef:
    """What ``dek_material`` reads of a key: id, state and primary version (the cache tag)."""

    __slots__ = ("id", "primary_version", "state")

    def __init__(self, id: uuid.UUID, state: str, primary_version: int) -> None:
        self.id = id
        self.state = state
        self.primary_version = primary_version


class _SecretRow:
    """What ``states.version_readable`` reads of a secret."""

    __slots__ = ("deletion_requested_at", "id", "key")

    def __init__(self, id: uuid.UUID, deletion_requested_at: Any, key: _KeyRef) -> None:
        self.id = id
        self.deletion_requested_at = deletion_requested_at
        self.key = key


class _VersionRow:
    """What ``states.version_readable`` reads of a version.  The query compares ``expires_at``
    with the request's time itself; the row carries ``now`` when it is due (``None`` if not),
    and ``now`` for ``accessed_at`` when set: the same answers to the same checks."""

    __slots__ = ("accessed_at", "ciphertext", "dek_id", "expires_at", "expires_once_accessed", "revision", "status")

    def __init__(
        self, revision: int, status: str, ciphertext: Any, dek_id: Any, once: bool, expires_at: Any, accessed_at: Any
    ) -> None:
        self.revision, self.status, self.ciphertext, self.dek_id = revision, status, ciphertext, dek_id
        self.expires_once_accessed, self.expires_at, self.accessed_at = bool(once), expires_at, accessed_at


# --- the one query ---------------------------------------------------------------------------
_COLUMNS = (
    "v.revision, v.status, v.ciphertext, v.dek_id, v.data_crc32, v.expires_once_accessed, "
    "(v.expires_at IS NOT NULL AND v.expires_at <= %s), v.accessed_at IS NOT NULL, "
    "s.id, s.project_id, s.region, s.type, s.deletion_requested_at, k.id, k.state, k.primary_version"
)
_sql: dict[tuple[str, str], str] = {}


def _query(vendor: str, kind: str) -> str:
    """The lookup for ``kind`` (``number``, ``latest``, ``latest_enabled``, with ``path:`` for by-path)."""
    key = (vendor, kind)
    if key not in _sql:
        ops = connections["default"].ops
        version, secret = (ops.quote_name(m._meta.db_table) for m in (SecretVersion, Secret))
        key_table = ops.quote_name(Key._meta.db_table)
        by_path = kind.startswith("path:")
        selector = kind.removeprefix("path:")
        where = (
            "s.project_id = %s AND s.path = %s AND s.name = %s AND s.region = %s AND s.deletion_requested_at IS NULL"
            if by_path
            else "v.secret_id = %s"
        )
        if selector == "number":
            where += " AND v.revision = %s"
        elif selector == "latest_enabled":
            where += f" AND v.status = '{VersionStatus.ENABLED}'"
        order = "" if selector == "number" else " ORDER BY v.revision DESC LIMIT 1"
        _sql[key] = (
            f"SELECT {_COLUMNS} FROM {version} v JOIN {secret} s ON s.id = v.secret_id "  # noqa: S608 (model metadata)
            f"JOIN {key_table} k ON k.id = s.key_id WHERE {where}{order}"
        )
    return _sql[key]


def _revision(raw: str) -> tuple[str, int | None] | None:
    if raw in ("latest", "latest_enabled"):
        return raw, None
    number = validation.revision_number(raw)
    return ("number", number) if number is not None else None


def _uuid_param(value: uuid.UUID) -> Any:
    return value if connections["default"].features.has_native_uuid_field else value.hex


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


# --- serving -----------------------------------------------------------------------------------
def _target(request: HttpRequest) -> tuple[str, str, list[Any]] | None:
    """``(region, revision, sql arguments)`` of a payload read the hot path may try, else None."""
    path = request.path_info
    if not path.startswith(_PREFIX):
        return None
    query = request.META.get("QUERY_STRING", "")
    match = _BY_ID.fullmatch(path)
    if match is not None:
        if query:  # ?format=… and friends: DRF's business
            return None
        region, secret_id, raw_revision = match.groups()
        revision = _revision(raw_revision)
        if revision is None:
            return None
        try:
            wanted = uuid.UUID(secret_id)
        except ValueError:
            return None
        args: list[Any] = [_uuid_param(wanted)]
        kind = revision[0]
    else:
        match = _BY_PATH.fullmatch(path)
        if match is None:
            return None
        region, raw_revision = match.groups()
        revision = _revision(raw_revision)
        params = request.GET
        if revision is None or "format" in params:
            return None
        try:
            project = uuid.UUID(params.get("project_id") or "")
            secret_path = validation.secret_path(params.get("secret_path") or "/", "secret_path")
            name = validation.secret_name(params.get("secret_name") or "")
        except Exception:  # malformed: the general path says what
            return None
        args = [_uuid_param(project), secret_path, name, region]
        kind = "path:" + revision[0]
    if revision[1] is not None:
        args.append(revision[1])
    return region, kind, args


@sensitive_variables("token", "data", "body")
def serve(request: HttpRequest) -> HttpResponse | None:
    """The response to a plain successful payload read, or ``None``: the general path decides."""
    meta = request.META
    token = meta.get(TOKEN_HEADER)
    if token is None or request.method != "GET" or meta.get("HTTP_ACCEPT", "") not in PLAIN_ACCEPT:
        return None
    if meta.get("HTTP_COOKIE"):  # a console session rides along: its middleware decides (2FA gate, …)
        return None
    target = _target(request)
    if target is None:
        return None
    region, kind, args = target
    if region not in settings.HKMS_REGIONS:
        return None
    request.get_host()  # ALLOWED_HOSTS (DisallowedHost -> 400, as CommonMiddleware does it)
    try:
        return _serve(request, meta, token, region, kind, args)
    except Exception:  # before the audit append nothing was done: the general path answers (a 503 in an outage)
        return None


@sensitive_variables("token", "data", "body")
def _serve(request: HttpRequest, meta: Any, token: str, region: str, kind: str, args: list[Any]) -> HttpResponse | None:
    # A valid key is served whatever the failures from its address (only failures are throttled).
    entry = principal_authenticate(token)
    if entry is None:
        return None
    connection = connections["default"]
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_query(connection.vendor, kind), [connection.ops.adapt_datetimefield_value(now), *args])
        row = cursor.fetchone()
    if row is None:
        return None
    (revision, status, ciphertext, dek_id, crc32, once, expired, accessed,
     secret_id, project_id, secret_region, secret_type, deletion_requested_at,
     key_id, key_state, primary_version) = row  # fmt: skip
    if once or secret_region != region:  # once: consumed in the general path's transaction
        return None
    secret_id, project_id = _as_uuid(secret_id), _as_uuid(project_id)
    key = _KeyRef(_as_uuid(key_id), key_state, primary_version)
    due, read = (now if expired else None), (now if accessed else None)
    version = _VersionRow(revision, status, ciphertext, dek_id, once, due, read)
    try:  # the read rules every read path applies (race-secrets' state machine)
        secret = _SecretRow(secret_id, deletion_requested_at, key)
        states.version_readable(cast(Secret, secret), cast(SecretVersion, version), now)
    except Exception:
        return None
    dek_id = _as_uuid(dek_id)
    principal = api_principal(request, entry)
    if not can(principal, Action.SECRET_READ, _SecretRef(secret_id, project_id)):
        return None
    try:
        material = dek_material(key=cast(Key, key), dek_id=dek_id)
        data = crypto.open_(material, bytes(ciphertext), context=storage.payload_context(secret_id, revision, dek_id))
    except Exception:  # destroyed, rotated meanwhile, disabled, tampered, sealed: the general path
        return None
    if not throttle_allows(principal, meta):
        return None  # counted once more there: it answers the 429 with its wait
    try:
        audit_record_committed(principal, _EVENT, ("secret", secret_id, project_id), revision=revision)
    except Exception as exc:  # fail closed, as the general path: no event, no payload
        return error_response(exc, _access_view(), allow=_ALLOW)
    body = {
        "secret_id": str(secret_id),
        "revision": revision,
        "data": b64encode(data),
        "type": secret_type,
        "data_crc32": crc32,
    }
    return json_response(200, body, allow=_ALLOW, no_store=True)


def _access_view() -> Any:
    return AccessSecretVersionView()


class HotPathMiddleware:
    """Answers plain payload reads with :func:`serve` and plain version creations with
    :func:`secrets_app.api.hot_write.serve`; hands everything else down the chain.

    Sits after the security-header middleware (whose headers every response gets)
    and before the session, CSRF, authentication, OTP and message middleware.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(_PREFIX) and settings.HKMS_HOT_PATH:
            response = None
            if path.endswith("/access"):
                response = serve(request)
            elif path.endswith("/versions"):
                response = hot_write.serve(request)
            if response is not None:
                return response
        return self.get_response(request)
