"""Wire format of Scaleway's Key Manager v1alpha1 (see the SDK's ``key_manager/v1alpha1``).

Plain serializers: the shapes are fixed by Scaleway.  Binary fields travel as
standard base64; durations as ``"3600s"``; timestamps as RFC 3339 in UTC.
Input serializers only check types and encodings; sizes, states and
algorithms are the services' business (so every entry point gets the same
checks).
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from hkms_core.api.common import b64decode_field, format_duration, parse_duration, timestamp
from hkms_core.api.fields import StringField
from hkms_core.errors import InvalidArgument
from keys_app.models import Key
from keys_app.services.keys.validation import RotationPolicy

#: Generous bound on any base64 field (the services enforce the real limits).
_MAX_B64_CHARS = 200_000


class Base64Field(serializers.CharField):
    """Standard base64 in, bytes out."""

    def __init__(self, *, allow_empty: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("max_length", _MAX_B64_CHARS)
        kwargs.setdefault("allow_blank", allow_empty)
        self.allow_empty = allow_empty
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> bytes:  # type: ignore[override]
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a base64 string")
        text = super().to_internal_value(data)
        try:
            return b64decode_field(text, self.field_name or "value", allow_empty=self.allow_empty)
        except InvalidArgument as exc:
            raise serializers.ValidationError(exc.reason) from None


class RotationPolicyInput(serializers.Serializer[Any]):
    rotation_period = StringField(required=False, allow_null=True)
    next_rotation_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate_rotation_period(self, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse_duration(value, "rotation_period")
        except InvalidArgument as exc:
            raise serializers.ValidationError(exc.reason) from None


class _MetadataInput(serializers.Serializer[Any]):
    name = StringField(required=False, allow_null=True, allow_blank=True, max_length=255)
    description = StringField(required=False, allow_null=True, allow_blank=True, max_length=4096, trim_whitespace=False)
    tags = serializers.ListField(child=StringField(max_length=128), required=False, allow_null=True, max_length=64)
    rotation_policy = RotationPolicyInput(required=False, allow_null=True)

    def rotation_policy_value(self) -> RotationPolicy | None:
        """None when absent (unchanged); an empty policy clears it."""
        raw = self.validated_data.get("rotation_policy")
        if raw is None:
            return None
        return RotationPolicy(period=raw.get("rotation_period"), next_rotation_at=raw.get("next_rotation_at"))


class CreateKeyInput(_MetadataInput):
    unprotected = serializers.BooleanField(required=False, default=False)
    project_id = StringField(required=False, allow_null=True, allow_blank=True)
    usage = serializers.DictField(child=StringField(allow_null=True), required=False, allow_null=True)
    origin = StringField(required=False, allow_null=True, allow_blank=True)

    def validate_usage(self, value: dict[str, Any] | None) -> tuple[str | None, str | None]:
        if not value:
            return None, None
        given = {k: v for k, v in value.items() if v is not None}
        unknown = set(given) - {"symmetric_encryption", "asymmetric_encryption", "asymmetric_signing"}
        if unknown:
            raise serializers.ValidationError(f"unknown usage {sorted(unknown)[0]!r}")
        if len(given) != 1:
            raise serializers.ValidationError(
                "give exactly one of symmetric_encryption, asymmetric_encryption, asymmetric_signing"
            )
        ((usage, algorithm),) = given.items()
        return usage, algorithm


class UpdateKeyInput(_MetadataInput):
    pass


class EncryptInput(serializers.Serializer[Any]):
    plaintext = Base64Field()
    associated_data = Base64Field(required=False, allow_null=True, allow_empty=True)


class DecryptInput(serializers.Serializer[Any]):
    ciphertext = Base64Field()
    associated_data = Base64Field(required=False, allow_null=True, allow_empty=True)


class GenerateDataKeyInput(serializers.Serializer[Any]):
    without_plaintext = serializers.BooleanField(required=False, default=False)
    algorithm = StringField(required=False, allow_null=True, allow_blank=True)


class SignInput(serializers.Serializer[Any]):
    digest = Base64Field()


class VerifyInput(serializers.Serializer[Any]):
    digest = Base64Field()
    signature = Base64Field()


class ImportKeyMaterialInput(serializers.Serializer[Any]):
    key_material = Base64Field()
    salt = Base64Field(required=False, allow_null=True, allow_empty=True)


class WrapKeyInput(serializers.Serializer[Any]):
    plaintext = Base64Field()
    associated_data = Base64Field(required=False, allow_null=True, allow_empty=True)


class UnwrapKeyInput(serializers.Serializer[Any]):
    ciphertext = Base64Field()
    associated_data = Base64Field(required=False, allow_null=True, allow_empty=True)


# --- output ------------------------------------------------------------------------------------------
class RotationPolicyOutput(serializers.Serializer[Any]):
    rotation_period = serializers.CharField(allow_null=True)
    next_rotation_at = serializers.CharField(allow_null=True)


class KeyOutput(serializers.Serializer[Any]):
    """``Key`` as ``unmarshal_Key`` reads it."""

    id = serializers.UUIDField()
    project_id = serializers.UUIDField()
    name = serializers.CharField()
    state = serializers.CharField()
    rotation_count = serializers.IntegerField()
    usage = serializers.DictField(child=serializers.CharField())
    created_at = serializers.CharField()
    updated_at = serializers.CharField()
    protected = serializers.BooleanField()
    locked = serializers.BooleanField()
    tags = serializers.ListField(child=serializers.CharField())
    origin = serializers.CharField()
    region = serializers.CharField()
    description = serializers.CharField()
    rotated_at = serializers.CharField(allow_null=True)
    rotation_policy = RotationPolicyOutput(allow_null=True)
    deletion_requested_at = serializers.CharField(allow_null=True)

    def to_representation(self, instance: Key) -> dict[str, Any]:
        policy = None
        if instance.rotation_period is not None:
            policy = {
                "rotation_period": format_duration(instance.rotation_period),
                "next_rotation_at": timestamp(instance.next_rotation_at),
            }
        return {
            "id": str(instance.id),
            "project_id": str(instance.project_id),
            "name": instance.name,
            "state": instance.state,
            "rotation_count": instance.rotation_count,
            "usage": {instance.usage: instance.algorithm},
            "created_at": timestamp(instance.created_at),
            "updated_at": timestamp(instance.updated_at),
            "protected": instance.protected,
            "locked": False,
            "tags": list(instance.tags or []),
            "origin": instance.origin,
            "region": instance.region,
            "description": instance.description,
            "rotated_at": timestamp(instance.rotated_at),
            "rotation_policy": policy,
            "deletion_requested_at": timestamp(instance.deletion_requested_at),
        }


class ListKeysOutput(serializers.Serializer[Any]):
    keys = KeyOutput(many=True)
    total_count = serializers.IntegerField()


class EncryptOutput(serializers.Serializer[Any]):
    key_id = serializers.UUIDField()
    ciphertext = serializers.CharField()


class DecryptOutput(serializers.Serializer[Any]):
    key_id = serializers.UUIDField()
    plaintext = serializers.CharField()
    ciphertext = serializers.CharField(allow_null=True)


class DataKeyOutput(serializers.Serializer[Any]):
    key_id = serializers.UUIDField()
    algorithm = serializers.CharField()
    ciphertext = serializers.CharField()
    plaintext = serializers.CharField(allow_null=True)
    created_at = serializers.CharField()


class SignOutput(serializers.Serializer[Any]):
    key_id = serializers.UUIDField()
    signature = serializers.CharField()


class VerifyOutput(serializers.Serializer[Any]):
    key_id = serializers.UUIDField()
    valid = serializers.BooleanField()


class PublicKeyOutput(serializers.Serializer[Any]):
    pem = serializers.CharField()


class WrapKeyOutput(serializers.Serializer[Any]):
    key_id = serializers.UUIDField()
    ciphertext = serializers.CharField()


class UnwrapKeyOutput(serializers.Serializer[Any]):
    key_id = serializers.UUIDField()
    plaintext = serializers.CharField()


class AlgorithmOutput(serializers.Serializer[Any]):
    usage = serializers.CharField()
    name = serializers.CharField()
    recommended = serializers.BooleanField()


class ListAlgorithmsOutput(serializers.Serializer[Any]):
    algorithms = AlgorithmOutput(many=True)
