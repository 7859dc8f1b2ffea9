"""The authorization matrix of the access issue, extended to every console page and action.

One table: for each page or action, the expected status for each user of the
``world`` fixture (see conftest).  A user missing from a row is an error, so a
new page cannot be added without deciding who may use it.  200 = shown,
302 = done (redirect), 403 = may see the object but not do that, 404 = may not
even see the object (ids cannot be probed).  ``CONFIRM`` rows are destructive actions,
taken the way a person takes them: the confirmation page, then its button.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pytest
from django.contrib import admin
from django.urls import URLPattern, resolve, reverse

from hkms_core.access.models import RoleGrant
from tests.console.conftest import USERS, confirm_post

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])

ALL = dict.fromkeys(USERS, 200)


def only(ok: int, allowed: set[str], *, seen: set[str] = frozenset(), seen_status: int = 403, other: int = 404):
    """``ok`` for ``allowed`` (and admin), ``seen_status`` for ``seen``, ``other`` for the rest."""
    return {u: ok if u in allowed | {"admin"} else seen_status if u in seen else other for u in USERS}


ACME_SECRET_VIEW = {"reader", "writer", "sadmin", "auditor", "padmin"}
ACME_SECRET_WRITE = {"writer", "sadmin", "padmin"}
ACME_SECRET_ADMIN = {"sadmin", "padmin"}
ACME_SECRET_READ = {"reader", "padmin"}
ACME_KEY_VIEW = {"keyuser", "keyadmin", "auditor", "padmin"}
ACME_KEY_ADMIN = {"keyadmin", "padmin"}
GRANTERS = {"sadmin", "keyadmin", "padmin"}
AUDITORS = {"auditor", "padmin"}


@dataclass(frozen=True)
class Row:
    name: str
    method: str
    url: Callable[[Any], str]
    expected: dict[str, int]
    data: Callable[[Any], dict[str, Any]] | None = None


def _secret(w, name, *args):
    return reverse(name, args=[w.secret.id, *args])


def _key(w, name, *args):
    return reverse(name, args=[w.key.id, *args])


MATRIX = [
    Row("dashboard", "GET", lambda w: reverse("admin:index"), ALL),
    Row("secret list", "GET", lambda w: reverse("admin:secret_list"), ALL),
    Row("secret detail", "GET", lambda w: _secret(w, "admin:secret_detail"), only(200, ACME_SECRET_VIEW)),
    Row(
        "other project's secret",
        "GET",
        lambda w: reverse("admin:secret_detail", args=[w.other_secret.id]),
        only(200, {"other"}),
    ),
    Row(
        "new secret form",
        "GET",
        lambda w: reverse("admin:secret_create"),
        only(200, ACME_SECRET_WRITE, seen=set(USERS) - ACME_SECRET_WRITE - {"admin"}),
    ),
    Row(
        "new version form",
        "GET",
        lambda w: _secret(w, "admin:secret_version_add"),
        only(200, ACME_SECRET_WRITE, seen=ACME_SECRET_VIEW),
    ),
    Row(
        "edit secret",
        "POST",
        lambda w: _secret(w, "admin:secret_edit"),
        only(302, ACME_SECRET_WRITE, seen=ACME_SECRET_VIEW),
        lambda w: {"name": w.secret.name, "path": "/prod/db", "tags": "prod, db, edited", "description": "edited"},
    ),
    Row(
        "add version",
        "POST",
        lambda w: _secret(w, "admin:secret_version_add"),
        only(302, ACME_SECRET_WRITE, seen=ACME_SECRET_VIEW),
        lambda w: {"data": "v2-payload"},
    ),
    Row(
        "reveal confirmation",
        "GET",
        lambda w: _secret(w, "admin:secret_version_reveal", 1),
        only(200, ACME_SECRET_READ, seen=ACME_SECRET_VIEW),
    ),
    Row(
        "reveal",
        "POST",
        lambda w: _secret(w, "admin:secret_version_reveal", 1),
        only(200, ACME_SECRET_READ, seen=ACME_SECRET_VIEW),
        lambda w: {"confirm": "1"},
    ),
    Row(
        "disable version",
        "CONFIRM",
        lambda w: _secret(w, "admin:secret_version_action", 1, "disable"),
        only(302, ACME_SECRET_WRITE, seen=ACME_SECRET_VIEW),
    ),
    Row(
        "delete version",
        "CONFIRM",
        lambda w: _secret(w, "admin:secret_version_action", 1, "delete"),
        only(302, ACME_SECRET_ADMIN, seen=ACME_SECRET_VIEW),
    ),
    Row(
        "restore version",
        "POST",
        lambda w: _secret(w, "admin:secret_version_action", 1, "restore"),
        only(302, ACME_SECRET_ADMIN, seen=ACME_SECRET_VIEW),
    ),
    Row(
        "protect secret",
        "POST",
        lambda w: _secret(w, "admin:secret_action", "protect"),
        only(302, ACME_SECRET_ADMIN, seen=ACME_SECRET_VIEW),
    ),
    Row(
        "schedule key deletion (a default key: refused after the confirmation)",
        "CONFIRM",
        lambda w: _key(w, "admin:key_action", "delete"),
        only(302, ACME_KEY_ADMIN, seen=ACME_KEY_VIEW),
    ),
    Row(
        "delete secret",
        "CONFIRM",
        lambda w: _secret(w, "admin:secret_action", "delete"),
        only(302, ACME_SECRET_ADMIN, seen=ACME_SECRET_VIEW),
    ),
    Row("key list", "GET", lambda w: reverse("admin:key_list"), ALL),
    Row(
        "new key form",
        "GET",
        lambda w: reverse("admin:key_create"),
        only(200, ACME_KEY_ADMIN, seen=set(USERS) - ACME_KEY_ADMIN - {"admin"}),
    ),
    Row(
        "create key",
        "POST",
        lambda w: reverse("admin:key_create"),
        only(302, ACME_KEY_ADMIN, seen=set(USERS) - ACME_KEY_ADMIN - {"admin"}),
        lambda w: {"project": str(w.project.id), "name": "new-key", "algorithm": "aes_256_gcm", "protected": "on"},
    ),
    Row("key detail", "GET", lambda w: _key(w, "admin:key_detail"), only(200, ACME_KEY_VIEW)),
    Row(
        "other project's key",
        "GET",
        lambda w: reverse("admin:key_detail", args=[w.other_key.id]),
        only(200, set()),
    ),
    Row(
        "rotation policy form",
        "GET",
        lambda w: _key(w, "admin:key_policy"),
        only(200, ACME_KEY_ADMIN, seen=ACME_KEY_VIEW),
    ),
    Row(
        "rotate key",
        "POST",
        lambda w: _key(w, "admin:key_action", "rotate"),
        only(302, ACME_KEY_ADMIN, seen=ACME_KEY_VIEW),
    ),
    Row(
        "disable key",
        "CONFIRM",
        lambda w: _key(w, "admin:key_action", "disable"),
        only(302, ACME_KEY_ADMIN, seen=ACME_KEY_VIEW),
    ),
    Row(
        "re-wrap DEKs",
        "POST",
        lambda w: _key(w, "admin:key_action", "rewrap"),
        only(302, ACME_KEY_ADMIN, seen=ACME_KEY_VIEW),
    ),
    Row("roles page", "GET", lambda w: reverse("admin:roles"), only(200, GRANTERS, seen=set(USERS))),
    Row(
        "grant secret_reader on the project",
        "POST",
        lambda w: reverse("admin:roles"),
        # Key admins, and secret admins (who do not read payloads: a grant never exceeds the
        # granter's rights), see the form but may not grant it: refused inline (200).
        {**only(302, {"padmin"}, seen=set(USERS)), "keyadmin": 200, "sadmin": 200},
        lambda w: {"username": "stranger", "role": "secret_reader", "target": f"project:{w.project.id}"},
    ),
    Row(
        "grant secret_writer on the project",
        "POST",
        lambda w: reverse("admin:roles"),
        {**only(302, ACME_SECRET_ADMIN, seen=set(USERS)), "keyadmin": 200},
        lambda w: {"username": "stranger", "role": "secret_writer", "target": f"project:{w.project.id}"},
    ),
    Row("API keys", "GET", lambda w: reverse("admin:api_keys"), ALL),
    Row("change own password", "GET", lambda w: reverse("admin:password_change"), ALL),
    Row("two-factor", "GET", lambda w: reverse("admin:two_factor"), ALL),
    Row(
        "model admin",
        "GET",
        lambda w: reverse("admin:secrets_app_secret_changelist"),
        {**dict.fromkeys(USERS, 403), "admin": 200},
    ),
    Row("audit log", "GET", lambda w: reverse("admin:audit_log"), only(200, AUDITORS, seen=set(USERS))),
    Row("audit export", "GET", lambda w: reverse("admin:audit_export"), only(200, AUDITORS, seen=set(USERS))),
    Row(
        "verify audit chain",
        "POST",
        lambda w: reverse("admin:audit_verify"),
        only(302, AUDITORS, seen=set(USERS)),
    ),
    Row("root key custody", "GET", lambda w: reverse("admin:custody"), only(200, set())),
    # The file provider cannot be sealed: the superuser is sent back with a message.
    Row("seal", "CONFIRM", lambda w: reverse("admin:custody_seal"), only(302, set())),
    Row("projects", "GET", lambda w: reverse("admin:project_list"), ALL),
    Row("new project form", "GET", lambda w: reverse("admin:project_new"), only(200, set(), seen=set(USERS))),
    Row(
        "create project",
        "POST",
        lambda w: reverse("admin:project_new"),
        only(302, set(), seen=set(USERS)),
        lambda w: {"name": "matrix-project"},
    ),
    Row("records", "GET", lambda w: reverse("admin:records"), only(200, set())),
    Row(
        "revoke reader's API key",
        "CONFIRM",
        lambda w: reverse("admin:api_key_revoke", args=[w.reader_api_key]),
        only(302, {"reader"}),
    ),
    # Last: it changes what the reader may do.  Only who could grant secret_reader revokes it.
    Row(
        "revoke reader's role",
        "CONFIRM",
        lambda w: reverse("admin:role_revoke"),
        only(302, {"padmin"}, seen=set(USERS)),
        lambda w: {"grant": RoleGrant.objects.get(user=w.users["reader"]).pk},
    ),
]

#: Django admin views that are not console pages (each has its own checks).
ADMIN_BUILTINS = {"login", "logout", "password_change_done", "jsi18n", "view_on_site", "autocomplete", "app_list"}


def test_every_console_page_has_a_row(world):
    named = {p.name for p in admin.site.get_urls() if isinstance(p, URLPattern) and p.name} - ADMIN_BUILTINS
    covered = {resolve(urlparse(row.url(world)).path).url_name for row in MATRIX}
    assert named <= covered, f"console pages without a matrix row: {sorted(named - covered)}"


def test_every_row_names_every_user():
    for row in MATRIX:
        assert set(row.expected) == set(USERS), row.name


@pytest.mark.parametrize("user", USERS)
def test_console_authorization_matrix(world, as_user, user):
    failures = []
    for row in MATRIX:
        client = as_user(user)
        url = row.url(world)
        data = row.data(world) if row.data else {}
        if row.method == "CONFIRM":  # a destructive action: through its confirmation page
            response = confirm_post(client, url, data)
        else:
            response = client.get(url) if row.method == "GET" else client.post(url, data)
        if response.status_code != row.expected[user]:
            failures.append(f"{row.name}: {row.method} {url} -> {response.status_code}, expected {row.expected[user]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("user", ["admin", "sadmin", "keyadmin", "padmin"])
def test_nobody_grants_or_revokes_their_own_roles_in_the_console(world, as_user, user):
    """Self-granting breaks separation of duties: refused inline (and audited), whoever asks."""
    from hkms_core.audit.models import AuditEvent

    target = {"sadmin": "secret_writer", "keyadmin": "key_admin"}.get(user, "secret_reader")
    held = set(RoleGrant.objects.filter(user=world.users[user]).values_list("role", "object_pk"))
    page = as_user(user).post(
        reverse("admin:roles"), {"username": user, "role": target, "target": f"project:{world.project.id}"}
    )
    assert page.status_code == 200
    assert "You may not grant or revoke your own roles." in page.content.decode()
    assert set(RoleGrant.objects.filter(user=world.users[user]).values_list("role", "object_pk")) == held
    assert AuditEvent.objects.filter(action="role.grant", outcome="denied", actor=user).exists()
    own = RoleGrant.objects.filter(user=world.users[user]).first()
    if own is not None:
        # Through the confirmation page, as a person would: the service refuses (403).
        assert confirm_post(as_user(user), reverse("admin:role_revoke"), {"grant": own.pk}).status_code == 403
        assert RoleGrant.objects.filter(pk=own.pk).exists()
