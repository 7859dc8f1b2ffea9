"""Key pages (placeholder until the guarded key services land)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def _pending(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    raise Http404("not yet available")


key_list = key_detail = key_policy = key_action = _pending
