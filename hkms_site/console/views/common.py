"""Helpers shared by the console views: page rendering and service-error handling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme

from hkms_core.errors import ObjectNotFound, PermissionDenied, ServiceError
from keys_app.errors import HierarchyError

T = TypeVar("T")


def page(
    request: HttpRequest, template: str, context: dict[str, Any], *, title: str, status: int = 200
) -> HttpResponse:
    """Render a console page inside the admin's chrome."""
    full = {**admin.site.each_context(request), "title": title, **context}
    return TemplateResponse(request, template, full, status=status)


def denied(request: HttpRequest, what: str = "do that") -> HttpResponse:
    return page(request, "console/denied.html", {"what": what}, title="Not allowed", status=403)


def not_found(error: ObjectNotFound | None = None) -> Http404:
    return Http404(error.message if error is not None else "not found")


def back(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Redirect to the form's ``next`` when it is a local path, else to ``fallback``."""
    target = str(request.POST.get("next") or "")
    # A path on this site only: browsers read a backslash as a slash, so "/" + "\\evil.example" leaves it.
    if not target.startswith("/") or not url_has_allowed_host_and_scheme(target, allowed_hosts=None):
        target = fallback
    return HttpResponseRedirect(target)


def run_action(request: HttpRequest, call: Callable[[], T], *, success: str, fallback: str) -> HttpResponse:
    """Run a state-changing service for a POST button; report the outcome as a message.

    ``ObjectNotFound`` is a 404 and ``PermissionDenied`` a 403 page (both already
    audited by the service); other refusals become an error message.
    """
    try:
        call()
    except ObjectNotFound as exc:
        raise not_found(exc) from None
    except PermissionDenied:
        return denied(request)
    except ServiceError as exc:
        messages.error(request, exc.message)
    except HierarchyError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return back(request, fallback)
