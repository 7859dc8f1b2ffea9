"""Secret Manager v1beta1 endpoints: parse, call one service, render. No logic here."""

from __future__ import annotations

from typing import Any

from django.views.decorators.debug import sensitive_variables
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers as drf
from rest_framework.request import Request
from rest_framework.response import Response

from hkms_core import lifecycle
from hkms_core.api.authentication import TOKEN_ONLY_AUTHENTICATION
from hkms_core.api.common import (
    ActionView,
    ScalewayView,
    action_view,
    b64decode_field,
    b64encode,
    page_params,
    paginate,
    parse_duration,
    timestamp,
)
from hkms_core.errors import InvalidArgument
from secrets_app import selectors
from secrets_app.api import serializers as s
from secrets_app.models import SecretType, VersionStatus
from secrets_app.selectors import SecretFilter
from secrets_app.services import access as access_services
from secrets_app.services import secrets as secret_services
from secrets_app.services import versions as version_services
from secrets_app.services.secrets import EphemeralPolicy
from secrets_app.validation import MAX_PAYLOAD_BYTES

TAG = ["Secret Manager v1beta1"]
ORDER_BY = list(lifecycle.ORDERINGS)
TYPES = ["unknown_type", *SecretType.values]


def _query(name: str, type_: Any = OpenApiTypes.STR, description: str = "", **kw: Any) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description, **kw)


#: Query parameters, as the SDK sends them (documented in the OpenAPI schema).
PAGING = [
    _query("page", OpenApiTypes.INT, "page number, from 1"),
    _query("page_size", OpenApiTypes.INT, "1 to 100 (default 20)"),
]
PROJECT = _query("project_id", OpenApiTypes.UUID, "only this project")
TAGS = _query("tags", description="every tag must match", many=True, explode=True)
TYPE = _query("type", enum=TYPES)
LIST_SECRETS = [
    _query("organization_id", OpenApiTypes.UUID, "only this organization"),
    PROJECT,
    _query("order_by", enum=ORDER_BY, default="created_at_asc"),
    *PAGING,
    TAGS,
    _query("name", description="exact name"),
    _query("path", description="exact folder path"),
    _query("ephemeral", OpenApiTypes.BOOL, "only ephemeral (true) or non-ephemeral (false) secrets"),
    TYPE,
    _query("scheduled_for_deletion", OpenApiTypes.BOOL, "secrets scheduled for deletion instead (default false)"),
]
BROWSE = [
    _query("prefix", description="folder to list (default /)"),
    PROJECT,
    _query("order_by", enum=ORDER_BY, default="name_asc"),
    *PAGING,
    TAGS,
    TYPE,
]
VERSION_STATUS = _query(
    "status", description="only these statuses", many=True, explode=True, enum=["unknown_status", *VersionStatus.values]
)
BY_PATH = [
    _query("project_id", OpenApiTypes.UUID, required=True),
    _query("secret_path", description="folder of the secret, e.g. /apps/web", required=True),
    _query("secret_name", required=True),
]


def _body(serializer: type[drf.Serializer[Any]], data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):  # an array, string, number or null is not a request body
        raise drf.ValidationError({"non_field_errors": ["the request body must be a JSON object"]})
    checked = serializer(data=data)
    checked.is_valid(raise_exception=True)
    return dict(checked.validated_data)


def _bool_param(params: Any, name: str) -> bool | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    if str(raw).lower() in ("true", "1"):
        return True
    if str(raw).lower() in ("false", "0"):
        return False
    raise InvalidArgument(name, "must be true or false")


def _policy(raw: dict[str, Any] | None) -> EphemeralPolicy | None:
    if not raw:
        return None
    ttl = raw.get("time_to_live")
    return EphemeralPolicy(
        time_to_live=parse_duration(ttl, "ephemeral_policy.time_to_live") if ttl else None,
        expires_once_accessed=bool(raw.get("expires_once_accessed")),
        action=raw.get("action") or "",
    )


def _secret(secret: Any) -> dict[str, Any]:
    return dict(s.SecretSerializer(secret).data)


def _version(version: Any) -> dict[str, Any]:
    return dict(s.SecretVersionSerializer(version).data)


class SecretsView(ScalewayView):
    @extend_schema(
        tags=TAG,
        operation_id="list_secrets",
        summary="List secrets",
        parameters=LIST_SECRETS,
        responses=s.ListSecretsSerializer,
    )
    def get(self, request: Request, region: str) -> Response:
        params = request.query_params
        filters = SecretFilter(
            organization_id=params.get("organization_id") or None,
            project_id=params.get("project_id") or None,
            tags=tuple(params.getlist("tags")),
            name=params.get("name") or None,
            path=params.get("path") or None,
            ephemeral=_bool_param(params, "ephemeral"),
            type=params.get("type") if params.get("type") not in (None, "", "unknown_type") else None,
            scheduled_for_deletion=bool(_bool_param(params, "scheduled_for_deletion")),
        )
        qs = selectors.secret_list(
            principal=self.principal,
            region=region,
            filters=filters,
            order_by=params.get("order_by") or "created_at_asc",
        )
        page, total = paginate(qs, params)
        return Response({"secrets": [_secret(x) for x in page], "total_count": total})

    @extend_schema(
        tags=TAG,
        operation_id="create_secret",
        summary="Create a secret",
        request=s.CreateSecretRequest,
        responses=s.SecretSerializer,
    )
    def post(self, request: Request, region: str) -> Response:
        body = _body(s.CreateSecretRequest, request.data)
        secret = secret_services.secret_create(
            principal=self.principal,
            region=region,
            project_id=body["project_id"],
            name=body["name"],
            path=body.get("path"),
            type=body.get("type"),
            tags=body.get("tags"),
            description=body.get("description") or "",
            protected=body.get("protected", False),
            ephemeral_policy=_policy(body.get("ephemeral_policy")),
            key_id=body.get("key_id"),
        )
        return Response(_secret(secret))


class SecretView(ScalewayView):
    @extend_schema(tags=TAG, operation_id="get_secret", summary="Get a secret's metadata", responses=s.SecretSerializer)
    def get(self, request: Request, region: str, secret_id: str) -> Response:
        return Response(
            _secret(secret_services.secret_get(principal=self.principal, secret_id=secret_id, region=region))
        )

    @extend_schema(
        tags=TAG,
        operation_id="update_secret",
        summary="Update a secret (a new path moves it)",
        request=s.UpdateSecretRequest,
        responses=s.SecretSerializer,
    )
    def patch(self, request: Request, region: str, secret_id: str) -> Response:
        body = _body(s.UpdateSecretRequest, request.data)
        secret = secret_services.secret_update(
            principal=self.principal,
            secret_id=secret_id,
            region=region,
            name=body.get("name"),
            tags=body.get("tags"),
            description=body.get("description"),
            path=body.get("path"),
            ephemeral_policy=_policy(body.get("ephemeral_policy")),
        )
        return Response(_secret(secret))

    @extend_schema(
        tags=TAG, operation_id="delete_secret", summary="Delete a secret (scheduled for 7 days)", responses={204: None}
    )
    def delete(self, request: Request, region: str, secret_id: str) -> Response:
        secret_services.secret_delete(principal=self.principal, secret_id=secret_id, region=region)
        return Response(status=204)


def _secret_action(name: str, service: Any, operation_id: str, summary: str) -> type[ActionView]:
    """POST …/secrets/{id}/{protect|unprotect|restore}, returning the secret."""
    schema = extend_schema(
        tags=TAG, operation_id=operation_id, summary=summary, request=None, responses=s.SecretSerializer
    )
    return action_view(name, service, _secret, schema)


ProtectSecretView = _secret_action(
    "ProtectSecretView", secret_services.secret_protect, "protect_secret", "Protect a secret (it cannot be deleted)"
)
UnprotectSecretView = _secret_action(
    "UnprotectSecretView", secret_services.secret_unprotect, "unprotect_secret", "Remove a secret's protection"
)
RestoreSecretView = _secret_action(
    "RestoreSecretView", secret_services.secret_restore, "restore_secret", "Restore a secret scheduled for deletion"
)


class AddSecretOwnerView(ScalewayView):
    @extend_schema(
        tags=TAG,
        operation_id="add_secret_owner",
        summary="Allow a product to use the secret",
        request=s.AddSecretOwnerRequest,
        responses={204: None},
    )
    def post(self, request: Request, region: str, secret_id: str) -> Response:
        body = _body(s.AddSecretOwnerRequest, request.data)
        secret_services.secret_add_owner(
            principal=self.principal, secret_id=secret_id, product=body["product"], region=region
        )
        return Response(status=204)


class BrowseSecretsView(ScalewayView):
    @extend_schema(
        tags=TAG,
        operation_id="browse_secrets",
        summary="Browse folders and secrets under a prefix",
        parameters=BROWSE,
        responses=s.BrowseSecretsSerializer,
    )
    def get(self, request: Request, region: str) -> Response:
        params = request.query_params
        current, items = selectors.secret_browse(
            principal=self.principal,
            region=region,
            project_id=params.get("project_id") or None,
            prefix=params.get("prefix") or "/",
            order_by=params.get("order_by") or "name_asc",
            tags=params.getlist("tags"),
            type=params.get("type") if params.get("type") not in (None, "", "unknown_type") else None,
        )
        page, page_size = page_params(params)
        chosen = items[(page - 1) * page_size : page * page_size]
        return Response(
            {"items": [_browse_item(i) for i in chosen], "current_path": current, "total_count": len(items)}
        )


def _browse_item(item: selectors.BrowseItem) -> dict[str, Any]:
    secret = item.secret
    return {
        "name": item.name,
        "created_at": timestamp(item.created_at),
        "updated_at": timestamp(item.updated_at),
        "secret": None
        if secret is None
        else {
            "id": str(secret.id),
            "tags": secret.tags,
            "version_count": secret.version_count,
            "protected": secret.protected,
            "type": secret.type,
            "ephemeral_policy": s.ephemeral_policy_json(secret),
        },
        "folder": {} if secret is None else None,
    }


class SecretVersionsView(ScalewayView):
    @extend_schema(
        tags=TAG,
        operation_id="list_secret_versions",
        summary="List a secret's versions",
        parameters=[*PAGING, VERSION_STATUS],
        responses=s.ListSecretVersionsSerializer,
    )
    def get(self, request: Request, region: str, secret_id: str) -> Response:
        qs = version_services.secret_version_list(
            principal=self.principal,
            secret_id=secret_id,
            region=region,
            statuses=request.query_params.getlist("status"),
        )
        page, total = paginate(qs, request.query_params)
        return Response({"versions": [_version(v) for v in page], "total_count": total})

    @sensitive_variables("data", "body")
    @extend_schema(
        tags=TAG,
        operation_id="create_secret_version",
        summary="Add a version (base64 data)",
        request=s.CreateSecretVersionRequest,
        responses=s.SecretVersionSerializer,
    )
    def post(self, request: Request, region: str, secret_id: str) -> Response:
        body = _body(s.CreateSecretVersionRequest, request.data)
        data = b64decode_field(body["data"], "data", max_bytes=MAX_PAYLOAD_BYTES)
        version = version_services.secret_version_create(
            principal=self.principal,
            secret_id=secret_id,
            region=region,
            data=data,
            description=body.get("description") or "",
            disable_previous=bool(body.get("disable_previous")),
            data_crc32=body.get("data_crc32"),
        )
        return Response(_version(version))


class SecretVersionView(ScalewayView):
    @extend_schema(
        tags=TAG,
        operation_id="get_secret_version",
        summary="Get a version's metadata",
        responses=s.SecretVersionSerializer,
    )
    def get(self, request: Request, region: str, secret_id: str, revision: str) -> Response:
        return Response(
            _version(
                version_services.secret_version_get(
                    principal=self.principal, secret_id=secret_id, revision=revision, region=region
                )
            )
        )

    @extend_schema(
        tags=TAG,
        operation_id="update_secret_version",
        summary="Update a version",
        request=s.UpdateSecretVersionRequest,
        responses=s.SecretVersionSerializer,
    )
    def patch(self, request: Request, region: str, secret_id: str, revision: str) -> Response:
        body = _body(s.UpdateSecretVersionRequest, request.data)
        props = body.get("ephemeral_properties") or {}
        version = version_services.secret_version_update(
            principal=self.principal,
            secret_id=secret_id,
            revision=revision,
            region=region,
            description=body.get("description"),
            expires_at=props.get("expires_at"),
            expires_once_accessed=props.get("expires_once_accessed"),
            ephemeral_action=props.get("action"),
        )
        return Response(_version(version))

    @extend_schema(
        tags=TAG,
        operation_id="delete_secret_version",
        summary="Delete a version (scheduled for 7 days)",
        responses={204: None},
    )
    def delete(self, request: Request, region: str, secret_id: str, revision: str) -> Response:
        version_services.secret_version_delete(
            principal=self.principal, secret_id=secret_id, revision=revision, region=region
        )
        return Response(status=204)


def _version_action(name: str, service: Any, operation_id: str, summary: str) -> type[ActionView]:
    """POST …/versions/{revision}/{enable|disable|restore}, returning the version."""
    schema = extend_schema(
        tags=TAG, operation_id=operation_id, summary=summary, request=None, responses=s.SecretVersionSerializer
    )
    return action_view(name, service, _version, schema)


EnableSecretVersionView = _version_action(
    "EnableSecretVersionView", version_services.secret_version_enable, "enable_secret_version", "Enable a version"
)
DisableSecretVersionView = _version_action(
    "DisableSecretVersionView", version_services.secret_version_disable, "disable_secret_version", "Disable a version"
)
RestoreSecretVersionView = _version_action(
    "RestoreSecretVersionView",
    version_services.secret_version_restore,
    "restore_secret_version",
    "Restore a version scheduled for deletion",
)


def _access_response(payload: access_services.AccessedPayload) -> Response:
    response = Response(
        {
            "secret_id": str(payload.secret_id),
            "revision": payload.revision,
            "data": b64encode(payload.data),
            "type": payload.type,
            "data_crc32": payload.data_crc32,
        }
    )
    response["Cache-Control"] = "no-store"
    return response


class AccessSecretVersionView(ScalewayView):
    #: No HEAD (Django would serve it by ``get``): a payload read decrypts, is audited and
    #: consumes an expires-once-accessed version, so it must deliver what it read.
    http_method_names = ["get", "options"]
    authentication_classes = TOKEN_ONLY_AUTHENTICATION

    @extend_schema(
        tags=TAG,
        operation_id="access_secret_version",
        summary="Access a version's payload",
        responses=s.AccessSecretVersionSerializer,
    )
    def get(self, request: Request, region: str, secret_id: str, revision: str) -> Response:
        return _access_response(
            access_services.secret_version_access(
                principal=self.principal, secret_id=secret_id, revision=revision, region=region
            )
        )


class AccessSecretVersionByPathView(ScalewayView):
    http_method_names = AccessSecretVersionView.http_method_names
    authentication_classes = TOKEN_ONLY_AUTHENTICATION

    @extend_schema(
        tags=TAG,
        operation_id="access_secret_version_by_path",
        summary="Access a payload by path and name",
        parameters=BY_PATH,
        responses=s.AccessSecretVersionSerializer,
    )
    def get(self, request: Request, region: str, revision: str) -> Response:
        params = request.query_params
        return _access_response(
            access_services.secret_version_access_by_path(
                principal=self.principal,
                project_id=params.get("project_id") or "",
                region=region,
                secret_path=params.get("secret_path") or "/",
                secret_name=params.get("secret_name") or "",
                revision=revision,
            )
        )


class TagsView(ScalewayView):
    @extend_schema(
        tags=TAG,
        operation_id="list_tags",
        summary="List tags",
        parameters=[PROJECT, *PAGING],
        responses=s.ListTagsSerializer,
    )
    def get(self, request: Request, region: str) -> Response:
        found = selectors.secret_tags(
            principal=self.principal, region=region, project_id=request.query_params.get("project_id") or None
        )
        page, page_size = page_params(request.query_params)
        return Response({"tags": found[(page - 1) * page_size : page * page_size], "total_count": len(found)})


class SecretTypesView(ScalewayView):
    @extend_schema(
        tags=TAG,
        operation_id="list_secret_types",
        summary="List secret types in use",
        parameters=[PROJECT, *PAGING],
        responses=s.ListSecretTypesSerializer,
    )
    def get(self, request: Request, region: str) -> Response:
        found = selectors.secret_types(
            principal=self.principal, region=region, project_id=request.query_params.get("project_id") or None
        )
        page, page_size = page_params(request.query_params)
        return Response({"types": found[(page - 1) * page_size : page * page_size], "total_count": len(found)})
