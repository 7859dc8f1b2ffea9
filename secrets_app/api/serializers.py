"""Scaleway Secret Manager v1beta1 JSON shapes (output) and request bodies (input).

Output serializers render model instances exactly as the official SDK's
``unmarshal_*`` functions expect; input serializers only check JSON types —
the rules themselves live in ``secrets_app.validation`` and the services.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from hkms_core.api.common import format_duration, timestamp
from hkms_core.api.fields import StringField
from secrets_app.models import Secret, SecretType, SecretVersion, VersionStatus


def ephemeral_policy_json(secret: Secret) -> dict[str, Any] | None:
    if not secret.is_ephemeral:
        return None
    return {
        "time_to_live": format_duration(secret.ephemeral_ttl),
        "expires_once_accessed": secret.ephemeral_expires_once_accessed,
        "action": secret.ephemeral_action or "unknown_action",
    }


class EphemeralPolicySerializer(serializers.Serializer[Any]):
    time_to_live = StringField(required=False, allow_null=True, help_text='duration such as "3600s"')
    expires_once_accessed = serializers.BooleanField(required=False, allow_null=True)
    action = serializers.ChoiceField(choices=["unknown_action", "delete", "disable"], required=False)


class SecretSerializer(serializers.Serializer[Secret]):
    id = serializers.UUIDField()
    project_id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.SerializerMethodField()
    updated_at = serializers.SerializerMethodField()
    tags = serializers.ListField(child=serializers.CharField())
    version_count = serializers.IntegerField()
    description = serializers.CharField()
    managed = serializers.SerializerMethodField()
    protected = serializers.BooleanField()
    type = serializers.ChoiceField(choices=SecretType.choices)
    path = serializers.CharField()
    ephemeral_policy = serializers.SerializerMethodField()
    used_by = serializers.ListField(child=serializers.CharField())
    deletion_requested_at = serializers.SerializerMethodField()
    key_id = serializers.UUIDField()
    region = serializers.CharField()

    def get_created_at(self, secret: Secret) -> str | None:
        return timestamp(secret.created_at)

    def get_updated_at(self, secret: Secret) -> str | None:
        return timestamp(secret.updated_at)

    def get_managed(self, secret: Secret) -> bool:
        return bool(secret.used_by)

    def get_ephemeral_policy(self, secret: Secret) -> dict[str, Any] | None:
        return ephemeral_policy_json(secret)

    def get_deletion_requested_at(self, secret: Secret) -> str | None:
        return timestamp(secret.deletion_requested_at)


class SecretVersionSerializer(serializers.Serializer[SecretVersion]):
    revision = serializers.IntegerField()
    secret_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=VersionStatus.choices)
    created_at = serializers.SerializerMethodField()
    updated_at = serializers.SerializerMethodField()
    deleted_at = serializers.SerializerMethodField()
    description = serializers.CharField()
    latest = serializers.SerializerMethodField()
    ephemeral_properties = serializers.SerializerMethodField()
    deletion_requested_at = serializers.SerializerMethodField()
    region = serializers.SerializerMethodField()

    def get_created_at(self, version: SecretVersion) -> str | None:
        return timestamp(version.created_at)

    def get_updated_at(self, version: SecretVersion) -> str | None:
        return timestamp(version.updated_at)

    def get_deleted_at(self, version: SecretVersion) -> str | None:
        return timestamp(version.deleted_at)

    def get_deletion_requested_at(self, version: SecretVersion) -> str | None:
        return timestamp(version.deletion_requested_at)

    def get_latest(self, version: SecretVersion) -> bool:
        return version.revision == version.secret.version_count

    def get_region(self, version: SecretVersion) -> str:
        return version.secret.region

    def get_ephemeral_properties(self, version: SecretVersion) -> dict[str, Any] | None:
        if version.expires_at is None and not version.expires_once_accessed:
            return None
        return {
            "expires_at": timestamp(version.expires_at),
            "expires_once_accessed": version.expires_once_accessed,
            "action": version.ephemeral_action or "unknown_action",
        }


class AccessSecretVersionSerializer(serializers.Serializer[Any]):
    secret_id = serializers.UUIDField()
    revision = serializers.IntegerField()
    data = serializers.CharField(help_text="base64 payload")  # type: ignore[assignment]
    type = serializers.ChoiceField(choices=SecretType.choices)
    data_crc32 = serializers.IntegerField(allow_null=True)


class ListSecretsSerializer(serializers.Serializer[Any]):
    secrets = SecretSerializer(many=True)
    total_count = serializers.IntegerField()


class ListSecretVersionsSerializer(serializers.Serializer[Any]):
    versions = SecretVersionSerializer(many=True)
    total_count = serializers.IntegerField()


class ListTagsSerializer(serializers.Serializer[Any]):
    tags = serializers.ListField(child=serializers.CharField())
    total_count = serializers.IntegerField()


class ListSecretTypesSerializer(serializers.Serializer[Any]):
    types = serializers.ListField(child=serializers.CharField())
    total_count = serializers.IntegerField()


class BrowseItemSecretSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    tags = serializers.ListField(child=serializers.CharField())
    version_count = serializers.IntegerField()
    protected = serializers.BooleanField()
    type = serializers.CharField()
    ephemeral_policy = EphemeralPolicySerializer(allow_null=True)


class BrowseItemSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    created_at = serializers.CharField()
    updated_at = serializers.CharField()
    secret = BrowseItemSecretSerializer(allow_null=True)
    folder = serializers.DictField(allow_null=True)


class BrowseSecretsSerializer(serializers.Serializer[Any]):
    items = BrowseItemSerializer(many=True)
    current_path = serializers.CharField()
    total_count = serializers.IntegerField()


# --- request bodies ------------------------------------------------------------------------------
class CreateSecretRequest(serializers.Serializer[Any]):
    name = StringField(max_length=255)
    project_id = StringField(max_length=64)
    protected = serializers.BooleanField(required=False, default=False)
    tags = serializers.ListField(child=StringField(max_length=255), required=False, allow_null=True)
    description = StringField(required=False, allow_blank=True, allow_null=True, max_length=4096)
    type = StringField(required=False, allow_null=True, max_length=32)
    path = StringField(required=False, allow_null=True, max_length=1024)
    ephemeral_policy = EphemeralPolicySerializer(required=False, allow_null=True)
    key_id = StringField(required=False, allow_null=True, allow_blank=True, max_length=64)


class UpdateSecretRequest(serializers.Serializer[Any]):
    name = StringField(required=False, allow_null=True, max_length=255)
    tags = serializers.ListField(child=StringField(max_length=255), required=False, allow_null=True)
    description = StringField(required=False, allow_null=True, allow_blank=True, max_length=4096)
    path = StringField(required=False, allow_null=True, max_length=1024)
    ephemeral_policy = EphemeralPolicySerializer(required=False, allow_null=True)


class AddSecretOwnerRequest(serializers.Serializer[Any]):
    product = StringField(max_length=64)


class CreateSecretVersionRequest(serializers.Serializer[Any]):
    data = StringField(allow_blank=True, trim_whitespace=False, help_text="base64 payload, at most 64 KiB")  # type: ignore[assignment]
    description = StringField(required=False, allow_null=True, allow_blank=True, max_length=4096)
    disable_previous = serializers.BooleanField(required=False, allow_null=True)
    data_crc32 = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**32 - 1)


class EphemeralPropertiesSerializer(serializers.Serializer[Any]):
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    expires_once_accessed = serializers.BooleanField(required=False, allow_null=True)
    action = serializers.ChoiceField(choices=["unknown_action", "delete", "disable"], required=False)


class UpdateSecretVersionRequest(serializers.Serializer[Any]):
    description = StringField(required=False, allow_null=True, allow_blank=True, max_length=4096)
    ephemeral_properties = EphemeralPropertiesSerializer(required=False, allow_null=True)
