"""Grant and revoke roles on a project, secret or key (``access.role_grant``/``role_revoke``)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from hkms_core.access.models import RoleGrant
from hkms_core.access.services import role_grant, role_revoke, user_by_name
from hkms_core.errors import ObjectNotFound, PermissionDenied, ServiceError
from hkms_site.console.confirm import Confirmation, confirm_page, confirmed
from hkms_site.console.forms import RoleGrantForm, attach_service_error
from hkms_site.console.principal import console_principal
from hkms_site.console.selectors import grant_target, grant_targets, grants_visible, principal_can_grant
from hkms_site.console.views.common import denied, page


def roles(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    if not principal_can_grant(principal):
        return denied(request, "manage roles")
    targets = grant_targets(principal)
    initial = {"target": request.GET.get("target", "")}
    form = RoleGrantForm(request.POST or None, targets=targets, initial=initial)
    if request.method == "POST" and form.is_valid():
        target = grant_target(principal, form.cleaned_data["target"])
        try:
            user = user_by_name(form.cleaned_data["username"])
            if target is None:
                raise ObjectNotFound("object", form.cleaned_data["target"])
            role_grant(principal=principal, user=user, role=form.cleaned_data["role"], obj=target)
        except PermissionDenied as exc:
            field, message = _refusal(exc)
            form.add_error(field, message)
        except ServiceError as exc:
            attach_service_error(form, exc, {"user": "username"})
        else:
            messages.success(
                request, f"Granted {form.cleaned_data['role']} to {user.get_username()} on {_label(target)}."
            )
            return HttpResponseRedirect(f"{reverse('admin:roles')}?target={form.cleaned_data['target']}")
    labels = dict(targets)
    grants = [
        {
            "grant": g,
            "target": f"{g.content_type.model}:{g.object_pk}",
            "label": labels.get(f"{g.content_type.model}:{g.object_pk}", f"{g.content_type.model} {g.object_pk}"),
        }
        for g in grants_visible(principal)
    ]
    selected = request.GET.get("target", "")
    if selected:
        grants = [g for g in grants if g["target"] == selected]
    context = {"form": form, "grants": grants, "selected": labels.get(selected, "")}
    return page(request, "console/roles.html", context, title="Roles")


def _refusal(exc: PermissionDenied) -> tuple[str, str]:
    """The inline message for a refused grant (the rules: ``access.services._check_grantable``)."""
    action = str(exc.details.get("details", [{}])[0].get("action", ""))
    if action.endswith(".self"):
        return "username", "You may not grant or revoke your own roles."
    if action.endswith(".exceeds_own_rights"):
        return "role", "You may not grant this role: it gives rights you do not hold yourself."
    return "role", "You may not grant this role on that object."


def _label(obj: object) -> str:
    return f"{obj._meta.model_name} {getattr(obj, 'name', obj)}"  # type: ignore[attr-defined]


@require_http_methods(["GET", "POST"])
def role_revoke_view(request: HttpRequest) -> HttpResponse:
    """GET ``?grant=<id>`` (or a POST without the token): the confirmation page; confirmed POST: revoke."""
    principal = console_principal(request)
    raw = request.POST.get("grant") if request.method == "POST" else request.GET.get("grant")
    grant = (
        RoleGrant.objects.filter(pk=int(str(raw))).select_related("user", "content_type").first()
        if str(raw or "").isdigit()
        else None
    )
    target = grant_target(principal, f"{grant.content_type.model}:{grant.object_pk}") if grant else None
    if grant is None or target is None:
        return denied(request, "revoke that role")
    listing = f"{reverse('admin:roles')}?target={grant.content_type.model}:{grant.object_pk}"
    if not confirmed(request, scope=str(grant.pk)):
        return confirm_page(request, _revoke_confirmation(grant, target, listing), scope=str(grant.pk))
    try:
        role_revoke(principal=principal, user=grant.user, role=grant.role, obj=target)
    except (PermissionDenied, ObjectNotFound):
        return denied(request, "revoke that role")
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Revoked {grant.role} from {grant.user.get_username()}.")
    return HttpResponseRedirect(listing)


def _revoke_confirmation(grant: RoleGrant, target: object, listing: str) -> Confirmation:
    user = grant.user.get_username()
    return Confirmation(
        title="Revoke a role",
        subject=f"{grant.role} of {user} on {_label(target)}",
        button="Revoke the role",
        cancel_url=listing,
        consequences=[
            f"{user} loses what {grant.role} allows on {_label(target)}"
            f"{' and everything in it' if grant.content_type.model == 'project' else ''}, "
            "in the console and through every API key they hold, from their next request.",
            "Roles they hold through other grants are kept.",
        ],
        facts=[("Granted by", grant.granted_by or "—"), ("Granted", f"{grant.created_at:%Y-%m-%d %H:%M}")],
        reversible="Reversible: grant the role again.",
        hidden={"grant": str(grant.pk)},
    )
