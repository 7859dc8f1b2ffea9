"""Endpoints of our own beside the Scaleway-compatible APIs."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hkms_site.api.authentication import request_principal


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
