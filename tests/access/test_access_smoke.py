"""API keys, role grants and the audit chain, end to end through the services and commands."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from hkms_core.access.apikeys import api_key_authenticate
from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import authorize, can, role_grant, role_revoke, visible
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_verify
from hkms_core.errors import ObjectNotFound, PermissionDenied
from secrets_app.models import Secret

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def test_create_api_key_command_issues_a_working_key(hierarchy, capsys):
    call_command(
        "create_api_key",
        "--user",
        "app",
        "--create-user",
        "--create-project",
        "shop",
        "--role",
        "secret_reader",
        "--json",
    )
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"access_key", "secret_key", "project_id", "organization_id", "user"}
    assert out["access_key"].startswith("SCW") and len(out["access_key"]) == 20
    api_key = api_key_authenticate(out["secret_key"])
    assert api_key is not None and api_key.user.username == "app"
    secret = out["secret_key"]
    tampered = secret[:-1] + ("1" if secret[-1] == "0" else "0")  # differs in its last digit
    assert api_key_authenticate(tampered) is None
    assert api_key_authenticate("not-a-uuid") is None
    call_command("revoke_api_key", out["access_key"])
    assert api_key_authenticate(out["secret_key"]) is None
    assert audit_verify()["ok"]


def test_roles_on_project_apply_to_its_secrets(make_secret, project, other_project):
    users = get_user_model().objects
    alice = users.create_user("alice")
    secret = make_secret(b"x")
    foreign = make_secret(b"y", target_project=other_project)
    operator = Principal.for_command()
    role_grant(principal=operator, user=alice, role="secret_reader", obj=project)
    me = Principal(user=alice)
    assert can(me, Action.SECRET_READ, secret)
    assert not can(me, Action.SECRET_WRITE, secret)
    with pytest.raises(PermissionDenied):
        authorize(me, Action.SECRET_WRITE, secret)
    with pytest.raises(ObjectNotFound):
        authorize(me, Action.SECRET_READ, foreign)
    assert list(visible(me, Secret.objects.all())) == [secret]
    role_revoke(principal=operator, user=alice, role="secret_reader", obj=project)
    assert not can(Principal(user=alice), Action.SECRET_READ, secret)
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("role.grant") == 1 and actions.count("role.revoke") == 1
