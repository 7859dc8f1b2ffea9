"""Pieces of Scaleway's wire format shared by both APIs: regions, paging, durations,
timestamps, base64, the base view every endpoint derives from, and the one view of the
``POST …/{id}/<action>`` endpoints of both APIs (:func:`action_view`)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hkms_core.access.principal import Principal
from hkms_core.api.authentication import request_principal
from hkms_core.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
#: Scaleway's ``page`` is a uint32; the bound also keeps OFFSET within the databases' integers.
MAX_PAGE = 2**32 - 1
#: ASCII digits only, and nothing after the ``s`` (``$`` would let a trailing newline through).
_DURATION = re.compile(r"(-?[0-9]+(?:\.[0-9]{1,9})?)s")


def region_check(region: str) -> str:
    if region not in settings.HKMS_REGIONS:
        raise InvalidArgument(
            "region", f"unknown region {region!r}; this server serves {', '.join(settings.HKMS_REGIONS)}"
        )
    return region


def parse_duration(raw: Any, field: str) -> timedelta:
    """A protobuf JSON duration such as ``"3600s"`` or ``"1.5s"``."""
    match = _DURATION.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise InvalidArgument(field, 'must be a duration in seconds such as "3600s"')
    try:
        seconds = Decimal(match.group(1))
    except InvalidOperation:
        raise InvalidArgument(field, 'must be a duration in seconds such as "3600s"') from None
    if abs(seconds) > Decimal(10**11):
        raise InvalidArgument(field, "duration out of range")
    return timedelta(seconds=float(seconds))


def format_duration(value: timedelta | None) -> str | None:
    if value is None:
        return None
    seconds = value.total_seconds()
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:.9f}".rstrip("0") + "s"


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, as Scaleway's API writes them."""
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def b64decode_field(raw: Any, field: str, *, max_bytes: int | None = None, allow_empty: bool = False) -> bytes:
    if not isinstance(raw, str):
        raise InvalidArgument(field, "must be a base64 string")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(field, "is not valid base64") from None
    if not data and not allow_empty:
        raise InvalidArgument(field, "must not be empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidArgument(field, f"must be at most {max_bytes} bytes")
    return data


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def page_params(params: Any) -> tuple[int, int]:
    """``page`` (1…2³²-1) and ``page_size`` (1…100) from query parameters."""
    try:
        page = int(params.get("page") or 1)
        page_size = int(params.get("page_size") or DEFAULT_PAGE_SIZE)
    except (TypeError, ValueError):
        raise InvalidArgument("page", "page and page_size must be integers") from None
    if not 1 <= page <= MAX_PAGE:
        raise InvalidArgument("page", f"must be between 1 and {MAX_PAGE}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
    return page, page_size


def paginate(queryset: QuerySet[Any], params: Any) -> tuple[list[Any], int]:
    """One page of ``queryset`` and the total count."""
    page, page_size = page_params(params)
    total = queryset.count()
    start = (page - 1) * page_size
    return list(queryset[start : start + page_size]), total


class ScalewayView(APIView):
    """Base of every Scaleway-compatible endpoint: checks the region, exposes the principal."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if "region" in kwargs:
            region_check(kwargs["region"])

    @property
    def principal(self) -> Principal:
        return request_principal(self.request)


class ActionView(ScalewayView):
    """``POST …/{id}/<action>``: one service call on the object the URL names, its result rendered.

    One subclass per action, made by :func:`action_view`.  The URL's keyword arguments
    (``key_id``, ``secret_id``, ``revision``…) go to the service as they are, with the
    region and the principal; the service checks, changes and audits."""

    service: Callable[..., Any]
    render: Callable[[Any], Any]

    def post(self, request: Request, region: str, **ids: str) -> Response:
        cls = type(self)
        return Response(cls.render(cls.service(principal=self.principal, region=region, **ids)))


def action_view(
    name: str, service: Callable[..., Any], render: Callable[[Any], Any], schema: Callable[[Any], Any]
) -> type[ActionView]:
    """A subclass of :class:`ActionView` for ``service``; ``schema`` decorates its ``post``
    (``extend_schema(...)``: operation id, summary, response)."""

    def post(self: ActionView, request: Request, region: str, **ids: str) -> Response:
        return ActionView.post(self, request, region, **ids)

    attributes = {"service": staticmethod(service), "render": staticmethod(render), "post": schema(post)}
    return type(name, (ActionView,), attributes)
