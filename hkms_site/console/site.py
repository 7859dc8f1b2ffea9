"""The console's admin site: Django's admin plus the operator pages, login with throttle and TOTP.

Any active user may log in; what each one sees is decided by their roles
(``hkms_core.access``), never by ``is_staff``.  The model admin pages (and
guardian's object-permission pages) are for superusers only.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.auth import logout as auth_logout
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from hkms_site.console import nav
from hkms_site.console.forms import ConsoleLoginForm
from hkms_site.console.login import logout_recorded
from hkms_site.console.principal import console_principal
from hkms_site.console.views import (
    account,
    apikeys,
    audit,
    custody,
    dashboard,
    keys,
    projects,
    roles,
    secrets,
)
from hkms_site.console.views.account import ConsoleLoginView


class ConsoleSite(admin.AdminSite):
    site_header = "HKMS console"
    site_title = "HKMS"
    index_title = "Dashboard"
    site_url = None  # no "View site" link: the console is the site
    login_form = ConsoleLoginForm
    login_template = "console/login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_authenticated)

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        # One navigation: the console's bar.  The model admin's sidebar would repeat its entries
        # (projects, secrets, keys, API keys, roles, audit); superusers reach the read-only
        # records through the "Records" entry instead.
        context["is_nav_sidebar_enabled"] = False
        if request.user.is_authenticated:
            context["console_nav"] = nav.console_nav(console_principal(request), request.resolver_match)
        return context

    @method_decorator(never_cache)
    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "GET" and self.has_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        context = {**self.each_context(request), "title": "Log in", "site_header": self.site_header}
        context.update(extra_context or {})
        view = ConsoleLoginView.as_view(
            authentication_form=self.login_form,
            template_name=self.login_template,
            extra_context=context,
            redirect_authenticated_user=False,
        )
        return cast(HttpResponse, view(request))

    @method_decorator(never_cache)
    def logout(  # type: ignore[override]  # a redirect, not the admin's "logged out" page
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """POST only (CSRF-checked); audited as ``auth.logout``."""
        return _logout(request)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        view = self.admin_view
        console = [
            path("", view(dashboard.dashboard), name="index"),
            path("2fa/", account.two_factor, name="two_factor"),
            path("secrets/", view(secrets.secret_list), name="secret_list"),
            path("secrets/new/", view(secrets.secret_create), name="secret_create"),
            path("secrets/<uuid:secret_id>/", view(secrets.secret_detail), name="secret_detail"),
            path("secrets/<uuid:secret_id>/versions/new/", view(secrets.secret_version_add), name="secret_version_add"),
            path(
                "secrets/<uuid:secret_id>/versions/<int:revision>/reveal/",
                view(secrets.secret_version_reveal),
                name="secret_version_reveal",
            ),
            path(
                "secrets/<uuid:secret_id>/versions/<int:revision>/<slug:action>/",
                view(secrets.secret_version_action),
                name="secret_version_action",
            ),
            path("secrets/<uuid:secret_id>/edit/", view(secrets.secret_edit), name="secret_edit"),
            path("secrets/<uuid:secret_id>/<slug:action>/", view(secrets.secret_action), name="secret_action"),
            path("keys/", view(keys.key_list), name="key_list"),
            path("keys/new/", view(keys.key_create), name="key_create"),
            path("keys/<uuid:key_id>/", view(keys.key_detail), name="key_detail"),
            path("keys/<uuid:key_id>/policy/", view(keys.key_policy), name="key_policy"),
            path("keys/<uuid:key_id>/<slug:action>/", view(keys.key_action), name="key_action"),
            path("roles/", view(roles.roles), name="roles"),
            path("roles/revoke/", view(roles.role_revoke_view), name="role_revoke"),
            path("api-keys/", view(apikeys.api_keys), name="api_keys"),
            path("api-keys/<str:access_key>/revoke/", view(apikeys.api_key_revoke_view), name="api_key_revoke"),
            path("audit-log/", view(audit.audit_log), name="audit_log"),
            path("root-key/", view(custody.custody), name="custody"),
            path("root-key/seal/", view(custody.custody_seal_view), name="custody_seal"),
            path("projects/", view(projects.project_list), name="project_list"),
            path("projects/new/", view(projects.project_new), name="project_new"),
            path("records/", view(self.records), name="records"),
            path("audit-log/verify/", view(audit.audit_log_verify), name="audit_verify"),
            path("audit-log/export/", view(audit.audit_log_export), name="audit_export"),
        ]
        return console + super().get_urls()

    def records(self, request: HttpRequest) -> HttpResponse:
        """The model admin's index (read-only records, superusers), under the console's navigation."""
        if not request.user.is_superuser:
            raise Http404("not found")
        return super().index(request, extra_context={"title": "Records (read-only)"})


@csrf_protect
def _logout(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if request.user.is_authenticated:
        logout_recorded(principal=console_principal(request))
    auth_logout(request)
    messages.info(request, "You are logged out.")
    return HttpResponseRedirect(reverse("admin:login"))
