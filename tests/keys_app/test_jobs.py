"""Job claims, leases, release, and verify_hierarchy --repair (in-process, deterministic)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from hkms_core.audit.models import AuditEvent
from keys_app.models import Dek, Key, RotationJob, RotationLease
from keys_app.services import jobs
from keys_app.services.jobs import EXIT_BUSY, JobBusy, LeaseLost, job_advance, job_claim, lease_owner
from keys_app.services.material import dek_create
from secrets_app.models import SecretVersion
from secrets_app.services.dek_rotation import deks_rotate
from secrets_app.services.verification import hierarchy_repair, hierarchy_verify
from secrets_app.storage import secret_version_payload

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def held_by(owner: str, *, scope: str = "all", kind: str = RotationJob.Kind.ROTATE_DEKS, seconds: int = 300):
    now = timezone.now()
    return RotationJob.objects.using("kek").create(
        kind=kind, scope=scope, started_at=now, lease_owner=owner, lease_until=now + timedelta(seconds=seconds)
    )


def my_prefix() -> str:
    return lease_owner().rsplit(":", 1)[0]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_owner_names_machine_namespace_pid_and_a_random_part():
    _host, boot, namespace, pid, random_part = lease_owner().rsplit(":", 4)
    assert pid.isdigit() and len(random_part) == 12 and boot and namespace


def test_a_live_lease_on_another_container_is_never_taken_over(hierarchy):
    host, boot, namespace, _pid = my_prefix().split(":")
    # Same hostname, same machine, pid 1 in another pid namespace: a container beside us.
    held_by(f"{host}:{boot}:{int(namespace) + 1 if namespace.isdigit() else 1}:1:abcdefabcdef")
    with pytest.raises(JobBusy, match="is being run by"):
        job_claim(RotationJob.Kind.ROTATE_DEKS, "all")
    # Same hostname, namespace and pid, another machine (boot id).
    RotationJob.objects.using("kek").all().delete()
    held_by(f"{host}:0123456789ab:{namespace}:1:abcdefabcdef")
    with pytest.raises(JobBusy):
        job_claim(RotationJob.Kind.ROTATE_DEKS, "all")


def test_an_expired_lease_or_a_dead_local_owner_is_taken_over(hierarchy):
    job = held_by("elsewhere:0123456789ab:4026531836:1:abcdefabcdef", seconds=-1)
    claimed, resumed = job_claim(RotationJob.Kind.ROTATE_DEKS, "all")
    assert resumed and claimed.id == job.id and claimed.lease_owner == lease_owner()
    RotationJob.objects.using("kek").all().delete()
    held_by(f"{my_prefix().rsplit(':', 1)[0]}:{dead_pid()}:abcdefabcdef")  # killed -9 on this machine
    assert job_claim(RotationJob.Kind.ROTATE_DEKS, "all")[1] is True


def test_conflicting_dek_rotation_scopes_exclude_each_other(hierarchy):
    job_claim(RotationJob.Kind.ROTATE_DEKS, "all", exclusive=True)
    with pytest.raises(JobBusy, match="unfinished rotate_deks job exists for all"):
        job_claim(RotationJob.Kind.ROTATE_DEKS, f"key:{uuid.uuid4()}", exclusive=True)
    # Other kinds are not affected.
    job_claim(RotationJob.Kind.REWRAP_DEKS, "all")


def test_progress_after_a_takeover_raises_lease_lost_and_writes_nothing(hierarchy):
    job, _ = job_claim(RotationJob.Kind.REWRAP_DEKS, "all")
    RotationJob.objects.using("kek").filter(id=job.id).update(lease_owner="other:0:0:1:abcdefabcdef", processed=7)
    with pytest.raises(LeaseLost):
        job_advance(job, processed=100, cursor="x")
    assert RotationJob.objects.using("kek").get(id=job.id).processed == 7


def test_a_busy_command_exits_75_with_one_line(make_secret):
    make_secret(b"a")
    held_by("elsewhere:0123456789ab:4026531836:1:abcdefabcdef")
    with pytest.raises(CommandError) as caught:
        call_command("rotate_deks", "--all")
    assert caught.value.returncode == EXIT_BUSY == 75
    assert "\n" not in str(caught.value)
    assert AuditEvent.objects.filter(action="command.rotate_deks", outcome="failed").exists()


def test_claim_lost_to_the_unique_constraint_is_busy(hierarchy, monkeypatch):
    """A concurrent insert that wins the one_running_job_per_scope constraint is 'busy', not a traceback."""
    held_by("other:0:0:1:abcdefabcdef", scope="sneaky")

    def racing_list(*args, **kwargs):  # the other node's row is invisible to our check, then commits first
        return []

    monkeypatch.setattr(jobs, "list", racing_list, raising=False)
    with pytest.raises(JobBusy, match="at the same time"):
        job_claim(RotationJob.Kind.ROTATE_DEKS, "sneaky")
    assert RotationJob.objects.using("kek").get(scope="sneaky").lease_owner.startswith("other:")


def test_rotation_jobs_lists_and_releases_a_stuck_job_audited(hierarchy, capsys):
    job = held_by("gone:0123456789ab:4026531836:1:abcdefabcdef")
    RotationLease.objects.create(job_id=job.id, owner=job.lease_owner)
    call_command("rotation_jobs")
    assert str(job.id) in capsys.readouterr().out
    with pytest.raises(CommandError) as caught:
        call_command("rotation_jobs", "--release", str(job.id))
    assert caught.value.returncode == EXIT_BUSY  # alive: refused without --force
    call_command("rotation_jobs", "--release", str(job.id), "--force")
    fresh = RotationJob.objects.using("kek").get(id=job.id)
    assert fresh.lease_owner == "" and fresh.state == RotationJob.State.RUNNING
    assert RotationLease.objects.get(job_id=job.id).owner == ""  # a frozen owner is fenced off
    event = AuditEvent.objects.filter(action="command.rotation_jobs", outcome="allowed").get()
    assert event.detail["job"] == str(job.id) and event.detail["forced"] is True
    assert job_claim(RotationJob.Kind.ROTATE_DEKS, "all")[1] is True  # resumed at once


def test_a_dek_rotation_whose_lease_was_taken_over_stops_before_moving_anything(make_secret, monkeypatch):
    secret = make_secret(b"one", b"two", b"three")
    before = dict(SecretVersion.objects.values_list("id", "dek_id"))
    from secrets_app.services import dek_rotation

    real_take = dek_rotation.job_fence_take

    def take_then_lose(job):
        real_take(job)
        RotationLease.objects.filter(job_id=job.id).update(owner="newer:0:0:1:abcdefabcdef")

    monkeypatch.setattr(dek_rotation, "job_fence_take", take_then_lose)
    with pytest.raises(LeaseLost):
        deks_rotate(secret_id=secret.id, batch_size=2)
    assert dict(SecretVersion.objects.values_list("id", "dek_id")) == before
    assert Dek.objects.using("dek").count() == 3  # no DEK deleted, none left behind
    for version in SecretVersion.objects.select_related("secret__key"):
        assert secret_version_payload(version)


def test_verify_fails_on_unreferenced_deks_and_repair_destroys_them(make_secret, capsys):
    secret = make_secret(b"one", b"two")
    version = SecretVersion.objects.filter(secret=secret).first()
    key = Key.objects.get(id=secret.key_id)
    # A destroyed version's DEK that survived (its owner exists): destroyed at once by --repair.
    survivor, _ = dek_create(key=key, owner_id=version.id)
    # A DEK whose owner version is not written yet (a creation in flight): kept within the grace period.
    in_flight, _ = dek_create(key=key, owner_id=uuid.uuid4())
    Dek.objects.using("dek").filter(id__in=[survivor.id, in_flight.id]).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    report = hierarchy_verify()
    assert not report["ok"] and report["unreferenced_deks"] == 2
    with pytest.raises(SystemExit) as exited:
        call_command("verify_hierarchy")
    assert exited.value.code == 1
    assert "unreferenced DEKs: 2" in capsys.readouterr().out
    repaired = hierarchy_repair()
    assert repaired["deks_destroyed"] == 1
    assert not Dek.objects.using("dek").filter(id=survivor.id).exists()
    assert Dek.objects.using("dek").filter(id=in_flight.id).exists()
    call_command("verify_hierarchy", "--repair", "--grace-seconds", "60")
    assert not Dek.objects.using("dek").filter(id=in_flight.id).exists()
    event = AuditEvent.objects.filter(action="command.verify_hierarchy").get()
    assert event.detail["deks_destroyed"] == 1
    assert hierarchy_verify()["ok"]
    for v in SecretVersion.objects.select_related("secret__key"):
        assert secret_version_payload(v) in (b"one", b"two")


def test_repair_waits_for_a_running_dek_rotation(hierarchy):
    held_by("elsewhere:0123456789ab:4026531836:1:abcdefabcdef")
    with pytest.raises(JobBusy):
        hierarchy_repair()
