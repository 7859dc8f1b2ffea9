"""Secret pages (placeholder until the guarded secret services land)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def _pending(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    raise Http404("not yet available")


secret_list = secret_create = secret_detail = secret_version_add = _pending
secret_version_reveal = secret_version_action = secret_action = _pending
