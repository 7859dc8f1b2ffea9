"""Endpoints of our own beside the Scaleway-compatible APIs."""

from __future__ import annotations

from typing import Any

from django.views.decorators.debug import sensitive_variables
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hkms_site.api.authentication import request_principal
from hkms_site.audit.services import audit_denied, audit_record
from hkms_site.errors import InvalidArgument, ObjectNotFound
from keys_app.errors import HierarchyError
from keys_app.services import seal as seal_service


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


class _SuperuserView(APIView):
    """Root-key custody endpoints: superusers only (others get 404), every call audited."""

    event = ""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        principal = request_principal(request)
        if not (principal.user is not None and principal.user.is_superuser):
            error = ObjectNotFound("endpoint", request.path)
            audit_denied(principal, self.event, None, error)
            raise error


class SealStatusView(_SuperuserView):
    event = "root_key.seal_status"

    @extend_schema(summary="Seal state and unseal progress (superusers)", responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(seal_service.seal_status())


class UnsealView(_SuperuserView):
    """Submit one custodian share; the K-th valid share unseals every worker."""

    event = "root_key.unseal"

    @sensitive_variables("share")
    @extend_schema(
        summary="Submit one unseal share (superusers)",
        request=inline_serializer("UnsealRequest", {"share": serializers.CharField()}),
        responses={200: dict},
    )
    def post(self, request: Request) -> Response:
        share = request.data.get("share") if isinstance(request.data, dict) else None
        if not isinstance(share, str) or not share.strip() or len(share) > 2000:
            raise InvalidArgument("share", "must be one SLIP-39 share (words separated by spaces)")
        principal = request_principal(request)
        try:
            result = seal_service.unseal_submit(share)
        except HierarchyError as exc:
            audit_record(principal, self.event, None, outcome="failed", error=type(exc).__name__)
            raise
        audit_record(principal, self.event, None, sealed=bool(result.get("sealed")),
                     progress=str(result.get("progress", "")))
        return Response(result)


class SealView(_SuperuserView):
    event = "root_key.seal"

    @extend_schema(summary="Seal: forget the root key in every worker (superusers)", request=None,
                   responses={200: dict})
    def post(self, request: Request) -> Response:
        result = seal_service.seal()
        audit_record(request_principal(request), self.event, None)
        return Response(result)
