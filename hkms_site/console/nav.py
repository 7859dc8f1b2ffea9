"""The console's navigation: only the pages the principal may use."""

from __future__ import annotations

from typing import Any

from django.urls import ResolverMatch, reverse

from hkms_core.access.principal import Principal
from hkms_site.console.selectors import principal_can_audit, principal_can_grant

_SECTIONS = {
    "index": "dashboard",
    "secret": "secrets",
    "key_": "keys",
    "role": "roles",
    "api_key": "api_keys",
    "audit": "audit",
    "two_factor": "two_factor",
    "custody": "custody",
    "project": "projects",
    "records": "records",
}


_MODEL_ADMIN = ("_changelist", "_change", "_history", "_add", "_delete", "_permissions", "_user", "_group")


def _section(match: ResolverMatch | None) -> str:
    name = match.url_name if match is not None else ""
    if name and (name == "app_list" or name.endswith(_MODEL_ADMIN)):
        return "records"
    for prefix, section in _SECTIONS.items():
        if name and name.startswith(prefix):
            return section
    return ""


def console_nav(principal: Principal, match: ResolverMatch | None) -> list[dict[str, Any]]:
    items = [
        ("dashboard", "Dashboard", "admin:index"),
        ("projects", "Projects", "admin:project_list"),
        ("secrets", "Secrets", "admin:secret_list"),
        ("keys", "Keys", "admin:key_list"),
    ]
    if principal_can_grant(principal):
        items.append(("roles", "Roles", "admin:roles"))
    items.append(("api_keys", "API keys", "admin:api_keys"))
    if principal_can_audit(principal):
        items.append(("audit", "Audit log", "admin:audit_log"))
    if principal.is_superuser:
        items.append(("custody", "Root key", "admin:custody"))
        items.append(("records", "Records", "admin:records"))
    items.append(("two_factor", "Two-factor", "admin:two_factor"))
    current = _section(match)
    return [{"id": i, "label": label, "url": reverse(name), "active": i == current} for i, label, name in items]
