"""Key Manager v1alpha1 endpoints: one thin view per SDK method.

Each view validates the body with its input serializer, calls one service of
``keys_app.services.keys`` with the request's principal and region, and
renders the output in Scaleway's shape.  Errors are rendered by
``hkms_core.api.exceptions`` (Scaleway error JSON, never a traceback).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hkms_core.api.authentication import TOKEN_ONLY_AUTHENTICATION
from hkms_core.api.common import ActionView, ScalewayView, action_view, b64encode, paginate, timestamp
from hkms_core.errors import InvalidArgument
from keys_app.api import serializers as s
from keys_app.services.keys.key_material import key_delete_key_material, key_import_key_material
from keys_app.services.keys.lifecycle import (
    key_delete,
    key_disable,
    key_enable,
    key_protect,
    key_restore,
    key_rotate,
    key_unprotect,
)
from keys_app.services.keys.metadata import key_create, key_get, key_list, key_update
from keys_app.services.keys.use import (
    key_decrypt,
    key_encrypt,
    key_generate_data_key,
    key_get_public_key,
    key_list_algorithms,
    key_sign,
    key_unwrap,
    key_verify,
    key_wrap,
)

_TAG = ["Key Manager"]


def _body(serializer_class: type[serializers.Serializer[Any]], request: Request) -> Any:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer


def _flag(raw: Any, name: str) -> bool:
    value = str(raw or "false").strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise InvalidArgument(name, "must be true or false")


def _key(key: Any) -> dict[str, Any]:
    return s.KeyOutput(key).data


class KeysView(ScalewayView):
    @extend_schema(tags=_TAG, operation_id="list_keys", summary="List keys", responses=s.ListKeysOutput)
    def get(self, request: Request, region: str) -> Response:
        params = request.query_params
        keys = key_list(
            principal=self.principal,
            region=region,
            project_id=params.get("project_id"),
            organization_id=params.get("organization_id"),
            name=params.get("name"),
            tags=params.getlist("tags"),
            usage=params.get("usage"),
            scheduled_for_deletion=_flag(params.get("scheduled_for_deletion"), "scheduled_for_deletion"),
            order_by=params.get("order_by"),
        )
        page, total = paginate(keys, params)
        return Response({"keys": [_key(k) for k in page], "total_count": total})

    @extend_schema(
        tags=_TAG, operation_id="create_key", summary="Create a key", request=s.CreateKeyInput, responses=s.KeyOutput
    )
    def post(self, request: Request, region: str) -> Response:
        body = _body(s.CreateKeyInput, request)
        data = body.validated_data
        usage, algorithm = data.get("usage") or (None, None)
        key = key_create(
            principal=self.principal,
            region=region,
            project_id=data.get("project_id"),
            name=data.get("name"),
            description=data.get("description"),
            tags=data.get("tags"),
            usage=usage,
            algorithm=algorithm,
            unprotected=data.get("unprotected", False),
            rotation_policy=body.rotation_policy_value(),
            origin=data.get("origin"),
        )
        return Response(_key(key))


class KeyView(ScalewayView):
    @extend_schema(tags=_TAG, operation_id="get_key", summary="Get key metadata", responses=s.KeyOutput)
    def get(self, request: Request, region: str, key_id: str) -> Response:
        return Response(_key(key_get(principal=self.principal, key_id=key_id, region=region)))

    @extend_schema(
        tags=_TAG, operation_id="update_key", summary="Update a key", request=s.UpdateKeyInput, responses=s.KeyOutput
    )
    def patch(self, request: Request, region: str, key_id: str) -> Response:
        body = _body(s.UpdateKeyInput, request)
        data = body.validated_data
        key = key_update(
            principal=self.principal,
            key_id=key_id,
            region=region,
            name=data.get("name"),
            description=data.get("description"),
            tags=data.get("tags"),
            rotation_policy=body.rotation_policy_value(),
        )
        return Response(_key(key))

    @extend_schema(
        tags=_TAG, operation_id="delete_key", summary="Delete a key (scheduled in 7 days)", responses={204: None}
    )
    def delete(self, request: Request, region: str, key_id: str) -> Response:
        key_delete(principal=self.principal, key_id=key_id, region=region)
        return Response(status=204)


def _action(name: str, service: Any, summary: str) -> type[ActionView]:
    """``POST keys/{key_id}/<action>`` returning the key."""
    operation_id = service.__name__.removeprefix("key_") + "_key"
    schema = extend_schema(tags=_TAG, operation_id=operation_id, summary=summary, request=None, responses=s.KeyOutput)
    return action_view(name, service, _key, schema)


RotateKeyView = _action("RotateKeyView", key_rotate, "Rotate a key")
ProtectKeyView = _action("ProtectKeyView", key_protect, "Apply key protection")
UnprotectKeyView = _action("UnprotectKeyView", key_unprotect, "Remove key protection")
EnableKeyView = _action("EnableKeyView", key_enable, "Enable a key")
DisableKeyView = _action("DisableKeyView", key_disable, "Disable a key")
RestoreKeyView = _action("RestoreKeyView", key_restore, "Restore a key scheduled for deletion")


class DeleteKeyMaterialView(ScalewayView):
    @extend_schema(
        tags=_TAG,
        operation_id="delete_key_material",
        summary="Delete imported key material",
        request=None,
        responses={204: None},
    )
    def post(self, request: Request, region: str, key_id: str) -> Response:
        key_delete_key_material(principal=self.principal, key_id=key_id, region=region)
        return Response(status=204)


class ImportKeyMaterialView(ScalewayView):
    @extend_schema(
        tags=_TAG,
        operation_id="import_key_material",
        summary="Import key material",
        request=s.ImportKeyMaterialInput,
        responses=s.KeyOutput,
    )
    def post(self, request: Request, region: str, key_id: str) -> Response:
        data = _body(s.ImportKeyMaterialInput, request).validated_data
        key = key_import_key_material(
            principal=self.principal,
            key_id=key_id,
            region=region,
            key_material=data["key_material"],
            salt=data.get("salt"),
        )
        return Response(_key(key))


class GenerateDataKeyView(ScalewayView):
    authentication_classes = TOKEN_ONLY_AUTHENTICATION  # key use: X-Auth-Token only

    @extend_schema(
        tags=_TAG,
        operation_id="generate_data_key",
        summary="Create a data encryption key",
        request=s.GenerateDataKeyInput,
        responses=s.DataKeyOutput,
    )
    def post(self, request: Request, region: str, key_id: str) -> Response:
        data = _body(s.GenerateDataKeyInput, request).validated_data
        result = key_generate_data_key(
            principal=self.principal,
            key_id=key_id,
            region=region,
            without_plaintext=data.get("without_plaintext", False),
            algorithm=data.get("algorithm"),
        )
        return Response(
            {
                "key_id": str(result.key.id),
                "algorithm": result.algorithm,
                "ciphertext": b64encode(result.ciphertext),
                "plaintext": b64encode(result.plaintext) if result.plaintext is not None else None,
                "created_at": timestamp(result.created_at),
            }
        )


class _KeyCryptoView(ScalewayView):
    """``POST keys/{key_id}/<encrypt|decrypt|wrap-key|unwrap-key>``: one body for the four.

    Encrypt and wrap take a plaintext and answer a ciphertext; decrypt and unwrap take a
    ciphertext and answer a plaintext (decrypt also the plaintext re-encrypted under the
    primary version, Scaleway's ``DecryptResponse.ciphertext``).  Key use: X-Auth-Token only.
    """

    authentication_classes = TOKEN_ONLY_AUTHENTICATION
    service: Any = None
    input_serializer: Any = None
    given: str = "plaintext"  # the field sent: "plaintext" or "ciphertext"
    answered: str = "ciphertext"  # the field answered
    with_reencrypted: bool = False

    def post(self, request: Request, region: str, key_id: str) -> Response:
        cls = type(self)
        data = _body(cls.input_serializer, request).validated_data
        result = cls.service(
            principal=self.principal,
            key_id=key_id,
            region=region,
            associated_data=data.get("associated_data"),
            **{cls.given: data[cls.given]},
        )
        answer: dict[str, Any] = {"key_id": str(result.key.id), cls.answered: b64encode(result.data)}
        if cls.with_reencrypted:
            answer["ciphertext"] = b64encode(result.reencrypted) if result.reencrypted is not None else None
        return Response(answer)


def _crypto(
    name: str,
    service: Any,
    operation_id: str,
    summary: str,
    request: Any,
    response: Any,
    *,
    given: str,
    with_reencrypted: bool = False,
) -> type[_KeyCryptoView]:
    def post(self: _KeyCryptoView, request: Request, region: str, key_id: str) -> Response:
        return _KeyCryptoView.post(self, request, region, key_id)

    post = extend_schema(tags=_TAG, operation_id=operation_id, summary=summary, request=request, responses=response)(
        post
    )
    attrs = {
        "service": staticmethod(service),
        "input_serializer": request,
        "given": given,
        "answered": "plaintext" if given == "ciphertext" else "ciphertext",
        "with_reencrypted": with_reencrypted,
        "post": post,
    }
    return type(name, (_KeyCryptoView,), attrs)


EncryptView = _crypto(
    "EncryptView", key_encrypt, "encrypt", "Encrypt a payload", s.EncryptInput, s.EncryptOutput, given="plaintext"
)
DecryptView = _crypto(
    "DecryptView",
    key_decrypt,
    "decrypt",
    "Decrypt a payload",
    s.DecryptInput,
    s.DecryptOutput,
    given="ciphertext",
    with_reencrypted=True,
)
WrapKeyView = _crypto(
    "WrapKeyView", key_wrap, "wrap_key", "Wrap a key (ML-KEM)", s.WrapKeyInput, s.WrapKeyOutput, given="plaintext"
)
UnwrapKeyView = _crypto(
    "UnwrapKeyView",
    key_unwrap,
    "unwrap_key",
    "Unwrap a key (ML-KEM)",
    s.UnwrapKeyInput,
    s.UnwrapKeyOutput,
    given="ciphertext",
)


class SignView(ScalewayView):
    authentication_classes = TOKEN_ONLY_AUTHENTICATION  # key use: X-Auth-Token only

    @extend_schema(
        tags=_TAG, operation_id="sign", summary="Sign a message digest", request=s.SignInput, responses=s.SignOutput
    )
    def post(self, request: Request, region: str, key_id: str) -> Response:
        data = _body(s.SignInput, request).validated_data
        result = key_sign(principal=self.principal, key_id=key_id, region=region, digest=data["digest"])
        return Response({"key_id": str(result.key.id), "signature": b64encode(result.data)})


class VerifyView(ScalewayView):
    authentication_classes = TOKEN_ONLY_AUTHENTICATION  # key use: X-Auth-Token only

    @extend_schema(
        tags=_TAG,
        operation_id="verify",
        summary="Verify a message signature",
        request=s.VerifyInput,
        responses=s.VerifyOutput,
    )
    def post(self, request: Request, region: str, key_id: str) -> Response:
        data = _body(s.VerifyInput, request).validated_data
        key, valid = key_verify(
            principal=self.principal,
            key_id=key_id,
            region=region,
            digest=data["digest"],
            signature=data["signature"],
        )
        return Response({"key_id": str(key.id), "valid": valid})


class PublicKeyView(ScalewayView):
    @extend_schema(
        tags=_TAG,
        operation_id="get_public_key",
        summary="Get the public key in PEM format",
        responses=s.PublicKeyOutput,
    )
    def get(self, request: Request, region: str, key_id: str) -> Response:
        return Response({"pem": key_get_public_key(principal=self.principal, key_id=key_id, region=region)})


class AlgorithmsView(ScalewayView):
    @extend_schema(
        tags=_TAG, operation_id="list_algorithms", summary="List available algorithms", responses=s.ListAlgorithmsOutput
    )
    def get(self, request: Request, region: str) -> Response:
        algorithms = key_list_algorithms(usages=request.query_params.getlist("usages"))
        return Response(
            {"algorithms": [{"usage": a.usage, "name": a.name, "recommended": a.recommended} for a in algorithms]}
        )
