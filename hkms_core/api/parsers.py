"""The request-body parser of both APIs: DRF's JSON parser with a nesting limit.

A body nested deeper than :data:`hkms_core.safejson.MAX_DEPTH` levels is a
``ParseError`` (400 in Scaleway's shape, see ``hkms_core.api.exceptions``)
before the decoder runs; the cost stays linear in the body size (bounded by
``DATA_UPLOAD_MAX_MEMORY_SIZE``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.settings import api_settings
from rest_framework.utils import json as drf_json

from hkms_core import safejson


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        constant = drf_json.strict_constant if api_settings.STRICT_JSON else None
        try:
            return safejson.loads(text, parse_constant=constant)
        except ValueError as exc:  # TooDeep included
            raise ParseError(f"JSON parse error - {exc}") from None
