"""run_due_rotations: an injected clock, exactly-once rotation under concurrent runs, --rewrap, purge."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.audit.models import AuditEvent
from hkms_core.audit.services import audit_verify
from keys_app.models import Dek, KekVersion, Key
from keys_app.services.keys.lifecycle import key_delete, key_disable
from keys_app.services.keys.metadata import key_create
from keys_app.services.keys.scheduling import keys_rotate_due
from keys_app.services.keys.validation import RotationPolicy
from secrets_app.models import SecretVersion
from secrets_app.storage import secret_version_payload

ALL = ["default", "kek", "dek"]
DAY = timedelta(days=1)


def run(*args: str, capsys) -> dict:
    call_command("run_due_rotations", "--json", *args)
    return json.loads(capsys.readouterr().out)


def make_key(project, t0, *, period=DAY, **fields) -> Key:
    return key_create(
        principal=Principal.for_command(),
        project_id=project.id,
        rotation_policy=RotationPolicy(period) if period else None,
        now=t0,
        **fields,
    )


@pytest.mark.django_db(databases=ALL)
def test_rotates_due_keys_once_per_period_with_an_injected_clock(project, capsys):
    t0 = timezone.now()
    key = make_key(project, t0)
    idle = make_key(project, t0, period=None)
    assert run("--now", (t0 + timedelta(hours=1)).isoformat(), capsys=capsys)["rotated"] == []
    dry = run("--dry-run", "--now", (t0 + DAY).isoformat(), capsys=capsys)
    assert [k["key_id"] for k in dry["due"]] == [str(key.id)]
    key.refresh_from_db()
    assert key.primary_version == 1

    first = t0 + DAY + timedelta(seconds=1)
    result = run("--now", first.isoformat(), capsys=capsys)
    assert [k["key_id"] for k in result["rotated"]] == [str(key.id)]
    key.refresh_from_db()
    assert (key.primary_version, key.rotation_count, key.rotated_at) == (2, 1, first)
    assert key.next_rotation_at == first + DAY
    assert run("--now", first.isoformat(), capsys=capsys)["rotated"] == []  # idempotent
    assert run("--now", (first + DAY).isoformat(), capsys=capsys)["rotated"][0]["primary_version"] == 3
    idle.refresh_from_db()
    assert idle.primary_version == 1
    events = AuditEvent.objects.filter(action="key.rotate", object_id=str(key.id))
    assert events.count() == 2 and all(e.detail["scheduled"] for e in events)


@pytest.mark.django_db(databases=ALL)
def test_only_enabled_symmetric_generated_keys_rotate(project, capsys):
    t0 = timezone.now() - 2 * DAY
    disabled = make_key(project, t0)
    key_disable(principal=Principal.for_command(), key_id=disabled.id)
    external = make_key(project, t0, period=None, origin="external")
    Key.objects.filter(id=external.id).update(rotation_period=DAY, next_rotation_at=t0)
    assert run(capsys=capsys)["rotated"] == []


@pytest.mark.django_db(databases=ALL)
def test_rewrap_moves_the_deks_of_rotated_keys(project, make_secret, capsys):
    t0 = timezone.now() - 2 * DAY
    key = make_key(project, t0)
    secret = make_secret(b"one", b"two", key=key)
    result = run("--rewrap", capsys=capsys)
    assert result["rotated"][0]["deks_rewrapped"] == 2
    assert set(Dek.objects.using("dek").filter(key_id=key.id).values_list("kek_version", flat=True)) == {2}
    versions = SecretVersion.objects.filter(secret=secret).select_related("secret__key").order_by("revision")
    assert [secret_version_payload(v) for v in versions] == [b"one", b"two"]


@pytest.mark.django_db(databases=ALL)
def test_a_rewrap_busy_elsewhere_exits_75_and_keeps_the_rotation(project, make_secret, capsys):
    """Another process re-wraps the key (a live lease): the key is still rotated, its re-wrap is
    left to the next run, and the command exits 75 (EX_TEMPFAIL) like every busy command."""
    from keys_app.models import RotationJob
    from keys_app.services.jobs import EXIT_BUSY

    key = make_key(project, timezone.now() - 2 * DAY)
    make_secret(b"one", key=key)
    now = timezone.now()
    RotationJob.objects.using("kek").create(
        kind=RotationJob.Kind.REWRAP_DEKS,
        scope=f"key:{key.id}",
        started_at=now,
        lease_owner="elsewhere:0123456789ab:4026531836:1:abcdefabcdef",
        lease_until=now + timedelta(seconds=300),
    )
    with pytest.raises(CommandError) as caught:
        call_command("run_due_rotations", "--rewrap", "--json")
    assert caught.value.returncode == EXIT_BUSY == 75
    (error,) = json.loads(capsys.readouterr().out)["errors"]
    assert error["busy"] is True and error["key_id"] == str(key.id)
    key.refresh_from_db()
    assert key.primary_version == 2


@pytest.mark.django_db(databases=ALL)
def test_bad_now_is_a_clear_error(hierarchy):
    with pytest.raises(CommandError, match="ISO 8601"):
        call_command("run_due_rotations", "--now", "yesterday")


@pytest.mark.django_db(databases=ALL, transaction=True)
def test_concurrent_runs_rotate_each_due_key_exactly_once(project):
    """Two runs with their own database connections race over the same due keys."""
    t0 = timezone.now() - 2 * DAY
    keys = [make_key(project, t0, name=f"k{i}") for i in range(12)]
    barrier = threading.Barrier(2)
    results: list[dict] = []
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(keys_rotate_due(principal=Principal.for_command()))
        except BaseException as exc:  # reported to the main thread
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert len(results) == 2
    rotated = [k["key_id"] for r in results for k in r["rotated"]]
    assert sorted(rotated) == sorted(str(k.id) for k in keys)  # each key once, across both runs
    assert not any(r["errors"] for r in results)
    for key in keys:
        key.refresh_from_db()
        assert (key.primary_version, key.rotation_count) == (2, 1)
        assert KekVersion.objects.using("kek").filter(key_id=key.id).count() == 2
    scheduled = AuditEvent.objects.filter(action="key.rotate", detail__scheduled=True)
    assert scheduled.count() == len(keys)
    assert audit_verify()["ok"]


@pytest.mark.django_db(databases=ALL)
def test_purge_deleted_keys_command(project, capsys):
    key = make_key(project, timezone.now(), period=None, unprotected=True)
    key_delete(principal=Principal.for_command(), key_id=key.id, now=timezone.now() - 8 * DAY)
    call_command("purge_deleted_keys", "--dry-run", "--json")
    assert json.loads(capsys.readouterr().out)["keys"][0]["key_id"] == str(key.id)
    assert Key.objects.filter(id=key.id).exists()
    with pytest.raises(CommandError, match=r"^refusing without confirmation: this would crypto-shred 1 key"):
        call_command("purge_deleted_keys")  # not a terminal, no --yes
    assert Key.objects.filter(id=key.id).exists()
    call_command("purge_deleted_keys", "--yes")
    assert "purged 1 key(s)" in capsys.readouterr().out
    assert not Key.objects.filter(id=key.id).exists()
    assert KekVersion.objects.using("kek").get(key_id=key.id).state == "destroyed"
