"""Operator commands: listings, project names, audit export filters, who-ran-it, one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from hkms_core.access.principal import Principal, command_context, redact_command_line
from hkms_core.access.services import role_grant
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_verify
from hkms_core.tenancy.models import Project

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def error(*args: str) -> str:
    with pytest.raises(CommandError) as info:
        call_command(*args, stdout=StringIO(), stderr=StringIO())
    message = str(info.value)
    assert message and "\n" not in message and "Traceback" not in message
    return message


# --- project names -----------------------------------------------------------------------------
def test_create_project_twice_is_a_one_line_conflict(hierarchy):
    first = json.loads(run("create_project", "shop", "--json"))
    message = error("create_project", "shop")
    assert message == f"a project named 'shop' already exists in organization {first['organization_id']}"
    assert Project.objects.filter(name="shop").count() == 1
    # The second project joins the installation's organisation, so `--project NAME` stays unambiguous.
    other = json.loads(run("create_project", "web", "--json"))
    assert other["organization_id"] == first["organization_id"]
    assert error("create_project", "00000000-0000-0000-0000-000000000001").endswith(
        "must not be a UUID (projects are looked up by id or by name)"
    )


def test_the_same_name_in_another_organisation_is_allowed(hierarchy):
    run("create_project", "shop")
    other_org = "6a1c0d9e-8a43-4a8b-9d0c-6c5d3b2a1f00"
    created = json.loads(run("create_project", "shop", "--organization-id", other_org, "--json"))
    assert created["organization_id"] == other_org


def test_the_migration_renames_duplicates_oldest_first():
    import importlib

    migration = importlib.import_module("secrets_app.migrations.0003_project_name_unique")
    rows = [(1, "o1", "shop"), (2, "o1", "shop"), (3, "o1", "shop-2"), (4, "o2", "shop"), (5, "o1", "shop")]
    assert migration.plan_renames(rows) == {2: "shop-3", 5: "shop-4"}
    assert migration.plan_renames(rows[:1]) == {}


def test_create_project_without_a_hierarchy_is_one_line(db):
    message = error("create_project", "shop")
    assert message == "the key hierarchy is not initialised: run `manage.py init_hierarchy`"


def test_create_api_key_for_a_missing_project_says_how_to_create_it(hierarchy):
    message = error("create_api_key", "--user", "app", "--create-user", "--project", "shop")
    assert message == (
        "project 'shop' does not exist: create it first (manage.py create_project NAME) or use --create-project NAME"
    )


# --- listings ----------------------------------------------------------------------------------
def test_list_projects_roles_and_keys(project, other_project, django_user_model):
    alice = django_user_model.objects.create_user(username="alice")
    role_grant(principal=Principal.for_command(), user=alice, role="secret_reader", obj=project)
    projects = json.loads(run("list_projects", "--json"))
    assert [p["name"] for p in projects] == sorted(
        ["acme", "globex"],
        key=lambda n: {"acme": str(project.organization_id), "globex": str(other_project.organization_id)}[n],
    )
    acme = next(p for p in projects if p["name"] == "acme")
    assert acme == {**acme, "id": str(project.id), "default_key_id": str(project.default_key_id), "keys": 1}
    text = run("list_projects")
    assert text.splitlines()[0].split() == ["ID", "NAME", "ORGANIZATION_ID", "DEFAULT_KEY_ID", "SECRETS", "KEYS"]
    assert str(project.id) in text

    grants = json.loads(run("list_roles", "--json"))
    assert grants == [
        {
            **grants[0],
            "user": "alice",
            "role": "secret_reader",
            "object_type": "project",
            "object_id": str(project.id),
            "project_id": str(project.id),
        }
    ]
    assert json.loads(run("list_roles", "--json", "--user", "bob")) == []
    assert json.loads(run("list_roles", "--json", "--project", "globex")) == []
    assert "secret_reader" in run("list_roles", "--available")
    assert error("list_roles", "--project", "nope").startswith("project nope")

    keys = json.loads(run("list_keys", "--json"))
    assert {k["id"] for k in keys} == {str(project.default_key_id), str(other_project.default_key_id)}
    assert [k["project"] for k in json.loads(run("list_keys", "--json", "--project", "acme"))] == ["acme"]
    assert "wrapped" not in json.dumps(keys)  # metadata only


# --- audit export ------------------------------------------------------------------------------
def test_export_audit_log_filters_by_time_actor_action_and_object(project, django_user_model):
    alice = django_user_model.objects.create_user(username="alice")
    role_grant(principal=Principal.for_command(), user=alice, role="secret_reader", obj=project)
    run("create_project", "shop")
    events = list(AuditEvent.objects.order_by("seq"))
    middle = events[0].created_at + (events[-1].created_at - events[0].created_at) / 2

    def export(*args: str) -> list[dict]:
        return [json.loads(line) for line in run("export_audit_log", *args).splitlines()]

    everything = export()
    assert [e["seq"] for e in everything] == [e.seq for e in events]
    until = export("--until", events[-1].created_at.isoformat())
    assert [e["seq"] for e in until] == [e.seq for e in events if e.created_at < events[-1].created_at]
    window = export("--since", events[0].created_at.isoformat(), "--until", middle.isoformat())
    assert all(events[0].created_at.isoformat() <= e["created_at"] < middle.isoformat() for e in window)
    actor = Principal.for_command().username
    assert {e["actor"] for e in export("--actor", actor)} == {actor}
    assert [e["action"] for e in export("--action", "project.create")] == ["project.create"]
    assert {e["action"] for e in export("--action", "role.*")} == {"role.grant"}
    by_object = export("--object", f"project:{project.id}")
    assert by_object and {e["object_id"] for e in by_object} == {str(project.id)}
    assert export("--object", f"secret:{project.id}") == []
    assert export("--project", str(project.id)) == [e for e in everything if e["project_id"] == str(project.id)]
    assert error("export_audit_log", "--until", "tomorrow") == "--until 'tomorrow' is not an ISO 8601 date or time"
    assert error("export_audit_log", "--since", "2026-02-02", "--until", "2026-02-01") == (
        "--until must be later than --since"
    )


# --- accountability ----------------------------------------------------------------------------
def test_command_line_secret_values_are_redacted():
    line = redact_command_line(
        [
            "manage.py",
            "x",
            "--payload",
            "hunter2",
            "--share=abandon ability",
            "--secret",
            "pw",
            "--secret",
            "8f0e7a43-3a1c-4d55-9e76-9a0c6f1a2b3c",
            "--user",
            "app",
            "--pin=1234",
            "--data",
            "s3cret",
        ]
    )
    assert line == (
        "manage.py x --payload *** --share=*** --secret *** --secret 8f0e7a43-3a1c-4d55-9e76-9a0c6f1a2b3c "
        "--user app --pin=*** --data ***"
    )
    context = command_context(["manage.py", "seal"])
    assert context["pid"] == os.getpid() and context["host"] == socket.gethostname()


def test_a_command_event_names_the_operator_not_system(hierarchy):
    run("create_project", "shop")
    event = AuditEvent.objects.get(action="project.create")
    context = command_context()
    assert event.actor == f"{context['os_user']}@{context['host']}" and event.via == "command"
    assert {k: event.detail[k] for k in ("os_user", "host", "pid")} == {
        k: context[k] for k in ("os_user", "host", "pid")
    }
    assert audit_verify()["ok"]


def test_check_deploy_without_a_secret_key_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_SECRET_KEY")}
    env.update({"HKMS_PRODUCTION": "1", "HKMS_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "hkms_site.settings"})
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "configuration error: DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required when HKMS_PRODUCTION=1\n"
    )
