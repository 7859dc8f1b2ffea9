"""API keys: list, create (the secret key is shown once, on the response page), revoke."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from hkms_core.access.apikeys import api_key_create, api_key_revoke, api_keys_visible
from hkms_core.access.services import user_by_name
from hkms_core.errors import ObjectNotFound, PermissionDenied, ServiceError
from hkms_site.console.confirm import Confirmation, confirm_page, confirmed
from hkms_site.console.forms import ApiKeyCreateForm, attach_service_error
from hkms_site.console.principal import console_principal
from hkms_site.console.selectors import api_key_usage
from hkms_site.console.views.common import not_found, page
from secrets_app.selectors import projects_visible


def api_keys(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    projects = projects_visible(principal)
    form = ApiKeyCreateForm(request.POST or None, projects=projects, for_others=principal.is_superuser)
    issued: Any = None
    if request.method == "POST" and form.is_valid():
        try:
            user: Any = principal.user
            if form.cleaned_data.get("username"):
                user = user_by_name(form.cleaned_data["username"])
            project = projects.filter(id=form.cleaned_data["project"]).first() if form.cleaned_data["project"] else None
            issued = api_key_create(
                principal=principal,
                user=user,
                project=project,
                expires_in=form.expires_in(),
                description=form.cleaned_data["description"],
            )
        except PermissionDenied:
            form.add_error("username", "You may only create API keys for yourself.")
        except ServiceError as exc:
            attach_service_error(form, exc, {"user": "username", "expires_in": "expires_in_days"})
        else:
            form = ApiKeyCreateForm(projects=projects, for_others=principal.is_superuser)
    context = {"form": form, "issued": issued, "keys": api_keys_visible(principal).order_by("-created_at")[:200]}
    response = page(request, "console/api_keys.html", context, title="API keys")
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
def api_key_revoke_view(request: HttpRequest, access_key: str) -> HttpResponse:
    """GET (or a POST without the token): the confirmation page; confirmed POST: revoke."""
    principal = console_principal(request)
    api_key = api_keys_visible(principal).filter(access_key=access_key).first()
    if api_key is not None and api_key.revoked_at is None and not confirmed(request):
        return confirm_page(request, _revoke_confirmation(api_key))
    if request.method != "POST":  # a GET never acts
        if api_key is None:
            raise not_found()  # someone else's key: as if it did not exist
        messages.info(request, f"API key {access_key} is already revoked.")
        return HttpResponseRedirect(reverse("admin:api_keys"))
    try:
        api_key_revoke(principal=principal, access_key=access_key)
    except ObjectNotFound as exc:
        raise not_found(exc) from None  # someone else's key: as if it did not exist
    messages.success(request, f"API key {access_key} revoked.")
    return HttpResponseRedirect(reverse("admin:api_keys"))


def _revoke_confirmation(api_key: Any) -> Confirmation:
    usage = api_key_usage(api_key.access_key)
    if usage["events"]:
        count = usage["events"]
        seen = f"{count} audited request{'s' * (count != 1)} in the last {usage['window_days']} days"
        if usage["sources"]:
            seen += " from " + ", ".join(usage["sources"]) + (" and others" if usage["more_sources"] else "")
        used = [
            f"The applications using it ({seen}; last at {usage['last_used_at']:%Y-%m-%d %H:%M} UTC) are refused "
            "from their next request (401)."
        ]
    else:
        used = [
            f"No use of it in the audit log for the last {usage['window_days']} days; any application that still "
            "holds it is refused from its next request (401)."
        ]
    return Confirmation(
        title="Revoke an API key",
        subject=f"{api_key.access_key} of {api_key.user.get_username()}",
        button="Revoke the key",
        cancel_url=reverse("admin:api_keys"),
        consequences=used,
        facts=[
            ("Description", api_key.description or "—"),
            ("Default project", api_key.default_project.name if api_key.default_project else "—"),
            ("Created", f"{api_key.created_at:%Y-%m-%d %H:%M}"),
        ],
        reversible="Not reversible: issue a new key and give it to the applications.",
    )
