"""Endpoints of our own beside the Scaleway-compatible APIs."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hkms_core.api.authentication import request_principal
from keys_app.services.custody import custody_seal, custody_status, custody_unseal


class WhoAmIView(APIView):
    """The authenticated principal: a cheap authenticated call for clients and benchmarks."""

    @extend_schema(
        summary="Who am I",
        responses=inline_serializer(
            "WhoAmI",
            {
                "user": serializers.CharField(),
                "access_key": serializers.CharField(allow_null=True),
                "default_project_id": serializers.UUIDField(allow_null=True),
            },
        ),
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        principal = request_principal(request)
        api_key = principal.api_key
        return Response(
            {
                "user": principal.username,
                "access_key": api_key.access_key if api_key is not None else None,
                "default_project_id": str(api_key.default_project_id)
                if api_key is not None and api_key.default_project_id
                else None,
            }
        )


class SealStatusView(APIView):
    """Seal state and unseal progress (superusers; 404 for anyone else)."""

    @extend_schema(summary="Seal state and unseal progress (superusers)", responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(custody_status(principal=request_principal(request)))


class UnsealView(APIView):
    """Submit one custodian share; the K-th valid share unseals every worker."""

    @extend_schema(
        summary="Submit one unseal share (superusers)",
        request=inline_serializer("UnsealRequest", {"share": serializers.CharField()}),
        responses={200: dict},
    )
    def post(self, request: Request) -> Response:
        share = request.data.get("share") if isinstance(request.data, dict) else None
        return Response(custody_unseal(principal=request_principal(request), share=share))


class SealView(APIView):
    @extend_schema(
        summary="Seal: forget the root key in every worker (superusers)", request=None, responses={200: dict}
    )
    def post(self, request: Request) -> Response:
        return Response(custody_seal(principal=request_principal(request)))
