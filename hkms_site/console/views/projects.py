"""Projects: the list of the projects a principal may see, and (superusers) a new project
with its default key, through ``keys_app.services.projects.project_create``."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from hkms_core.errors import PermissionDenied, ServiceError
from hkms_site.console.forms import ProjectCreateForm, attach_service_error
from hkms_site.console.principal import console_principal
from hkms_site.console.selectors import principal_can_grant
from hkms_site.console.views.common import denied, page
from keys_app.selectors import key_counts_by_project
from keys_app.services.projects import project_create, project_default_keys
from secrets_app.selectors import projects_visible, secret_counts_by_project


def project_list(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    projects = list(projects_visible(principal))
    default_keys = project_default_keys(projects)
    secrets = secret_counts_by_project(principal)
    keys = key_counts_by_project(principal)
    rows = [
        {
            "project": p,
            "default_key": default_keys.get(p.id),
            "secrets": secrets.get(p.id, 0),
            "keys": keys.get(p.id, 0),
        }
        for p in projects
    ]
    context = {"rows": rows, "can_create": principal.is_superuser, "can_grant": principal_can_grant(principal)}
    return page(request, "console/project_list.html", context, title="Projects")


def project_new(request: HttpRequest) -> HttpResponse:
    """A project and its default key (``project_create``: superusers only, audited)."""
    principal = console_principal(request)
    if not principal.is_superuser:
        return denied(request, "create projects")
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = project_create(
                principal=principal, name=form.cleaned_data["name"], description=form.cleaned_data["description"]
            )
        except PermissionDenied:
            return denied(request, "create projects")
        except ServiceError as exc:
            attach_service_error(form, exc)
        else:
            messages.success(request, f"Project {project.name} created, with its default key.")
            return HttpResponseRedirect(reverse("admin:project_list"))
    context = {
        "form": form,
        "submit": "Create project",
        "intro": "A project holds secrets and keys; it gets its own default key (the KEK of its secrets).",
        "cancel_url": reverse("admin:project_list"),
    }
    return page(request, "console/form_page.html", context, title="New project")
