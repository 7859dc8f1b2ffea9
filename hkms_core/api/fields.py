"""Request-body fields stricter than DRF's defaults, shared by both APIs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StringField(serializers.CharField):
    """A JSON string and nothing else.

    DRF's ``CharField`` turns numbers into strings (``{"name": 5}`` becomes ``"5"``);
    Scaleway's API refuses them, and so does this field, with DRF's usual
    validation error (a 400 in Scaleway's ``Validation Error`` shape).
    """

    default_error_messages = {"not_a_string": "must be a string"}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return str(super().to_internal_value(data))
