"""The hierarchy commands through ``call_command``, asserting on state, not only on output."""

from __future__ import annotations

import json
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from keys_app.models import Dek, KekVersion, Key, RootKeyVersion, RotationJob
from keys_app.services import material
from keys_app.services.projects import project_default_key
from secrets_app.models import SecretVersion
from secrets_app.storage import secret_version_payload

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def run(*args, **options) -> str:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue()


def run_json(*args, **options):
    return json.loads(run(*args, "--json", **options))


def keyring_versions() -> set[int]:
    document = json.loads(Path(django_settings.HKMS_ROOT_KEY_OPTIONS["file"]["path"]).read_text())
    return {int(v) for v in document["versions"]}


def all_payloads() -> dict[uuid.UUID, bytes]:
    material.key_cache().clear()
    versions = SecretVersion.objects.filter(dek_id__isnull=False).select_related("secret__key")
    return {v.id: secret_version_payload(v) for v in versions}


def dek_ids(**filters) -> set[uuid.UUID]:
    return set(SecretVersion.objects.filter(**filters).values_list("dek_id", flat=True))


@pytest.fixture
def secrets(make_secret, project, other_project):
    """Two secrets under acme's default key, one under globex's."""
    first = make_secret(b"cmd-alpha-1", b"cmd-alpha-2", name="alpha")
    second = make_secret(b"cmd-beta-1", name="beta")
    third = make_secret(b"cmd-gamma-1", name="gamma", target_project=other_project)
    return first, second, third


# --- init_hierarchy ------------------------------------------------------------------------
def test_init_hierarchy_is_idempotent(db):
    first = run_json("init_hierarchy")
    assert first == {"created": True, "provider": "file", "rek_version": 1}
    assert keyring_versions() == {1}
    check_value = bytes(RootKeyVersion.objects.using("kek").get(version=1).check_value)
    second = run("init_hierarchy")
    assert "already initialised" in second and "version 1" in second
    assert RootKeyVersion.objects.using("kek").count() == 1
    assert bytes(RootKeyVersion.objects.using("kek").get(version=1).check_value) == check_value
    assert keyring_versions() == {1}


def test_init_hierarchy_refuses_a_missing_root_key(hierarchy):
    Path(django_settings.HKMS_ROOT_KEY_OPTIONS["file"]["path"]).unlink()
    from keys_app.services import root

    root.forget_verified_root_keys()
    with pytest.raises(CommandError, match="missing") as info:
        run("init_hierarchy")
    assert "\n" not in str(info.value)


# --- rotate_root_key ------------------------------------------------------------------------
def test_rotate_root_key_json_rewraps_every_kek_and_retires_the_old_version(secrets):
    before = all_payloads()
    result = run_json("rotate_root_key")
    assert result["rek_version"] == 2
    assert result["retired_rek_versions"] == [1]
    assert result["kek_versions_rewrapped"] == KekVersion.objects.using("kek").count() == 2
    assert set(KekVersion.objects.using("kek").values_list("rek_version", flat=True)) == {2}
    assert RootKeyVersion.objects.using("kek").get(version=1).state == "retired"
    assert keyring_versions() == {2}  # the old material is destroyed
    assert RotationJob.objects.using("kek").get(id=result["job"]).state == "done"
    assert all_payloads() == before


def test_rotate_root_key_dry_run_changes_nothing(secrets):
    result = run_json("rotate_root_key", "--dry-run")
    assert result == {"current_rek_version": 1, "dry_run": True, "kek_versions_to_rewrap": 2}
    assert RootKeyVersion.objects.using("kek").count() == 1
    assert keyring_versions() == {1}


# --- rotate_kek / rewrap_deks ---------------------------------------------------------------
def test_rotate_kek_then_rewrap_deks(secrets, project):
    key = project_default_key(project)
    before = all_payloads()
    result = run_json("rotate_kek", str(key.id))
    assert result == {"key_id": str(key.id), "previous_version": 1, "primary_version": 2, "rotation_count": 1}
    key.refresh_from_db()
    assert key.primary_version == 2
    assert sorted(KekVersion.objects.using("kek").filter(key_id=key.id).values_list("version", flat=True)) == [1, 2]

    dry = run_json("rewrap_deks", "--dry-run")
    assert dry["deks_to_rewrap"] == 3
    assert dry["per_key"] == {str(key.id): {"1": 3}}
    assert Dek.objects.using("dek").filter(key_id=key.id, kek_version=1).count() == 3

    wrapped_before = dict(Dek.objects.using("dek").filter(key_id=key.id).values_list("id", "wrapped"))
    assert run_json("rewrap_deks", "--batch-size", "2")["deks_rewrapped"] == 3
    assert set(Dek.objects.using("dek").filter(key_id=key.id).values_list("kek_version", flat=True)) == {2}
    for dek_id, wrapped in Dek.objects.using("dek").filter(key_id=key.id).values_list("id", "wrapped"):
        assert bytes(wrapped) != bytes(wrapped_before[dek_id])
    assert KekVersion.objects.using("kek").get(key_id=key.id, version=1).state == "retired"

    assert run_json("rewrap_deks")["deks_rewrapped"] == 0
    assert run_json("rewrap_deks", "--dry-run")["deks_to_rewrap"] == 0
    assert all_payloads() == before


def test_rewrap_deks_of_one_key_only(secrets, project, other_project):
    mine, theirs = project_default_key(project), project_default_key(other_project)
    run("rotate_kek", str(mine.id))
    run("rotate_kek", str(theirs.id))
    assert run_json("rewrap_deks", "--key", str(theirs.id))["deks_rewrapped"] == 1
    assert set(Dek.objects.using("dek").filter(key_id=mine.id).values_list("kek_version", flat=True)) == {1}
    assert set(Dek.objects.using("dek").filter(key_id=theirs.id).values_list("kek_version", flat=True)) == {2}


def test_rotate_kek_dry_run_changes_nothing(secrets, project):
    key = project_default_key(project)
    assert run_json("rotate_kek", str(key.id), "--dry-run")["new_version"] == 2
    key.refresh_from_db()
    assert key.primary_version == 1
    assert KekVersion.objects.using("kek").filter(key_id=key.id).count() == 1


# --- rotate_deks ----------------------------------------------------------------------------
def test_rotate_deks_by_secret_key_and_all(secrets, project, other_project):
    alpha, beta, gamma = secrets
    before = all_payloads()

    old_alpha, old_beta, old_gamma = dek_ids(secret=alpha), dek_ids(secret=beta), dek_ids(secret=gamma)
    assert run_json("rotate_deks", "--secret", str(alpha.id))["versions_rotated"] == 2
    assert dek_ids(secret=alpha).isdisjoint(old_alpha)
    assert dek_ids(secret=beta) == old_beta and dek_ids(secret=gamma) == old_gamma

    old_alpha = dek_ids(secret=alpha)
    assert run_json("rotate_deks", "--key", str(project.default_key_id))["versions_rotated"] == 3
    assert dek_ids(secret=alpha).isdisjoint(old_alpha) and dek_ids(secret=beta).isdisjoint(old_beta)
    assert dek_ids(secret=gamma) == old_gamma

    everything = dek_ids()
    assert run_json("rotate_deks", "--all")["versions_rotated"] == 4
    assert dek_ids().isdisjoint(everything)
    # Old DEKs are deleted: the dek database holds exactly the referenced ones.
    assert set(Dek.objects.using("dek").values_list("id", flat=True)) == dek_ids()
    assert all_payloads() == before


def test_rotate_deks_dry_run_changes_nothing(secrets):
    everything = dek_ids()
    assert run_json("rotate_deks", "--all", "--dry-run") == {"dry_run": True, "versions_to_rotate": 4}
    assert dek_ids() == everything


# --- revoke_key -----------------------------------------------------------------------------
def test_revoke_key_prints_a_summary_keeps_the_report_and_destroys_the_material(secrets, project, tmp_path):
    key = project_default_key(project)
    gamma = secrets[2]
    before = all_payloads()
    old_deks = dek_ids(secret__key_id=key.id)
    report_path = tmp_path / "revocation.json"
    output = run("revoke_key", str(key.id), "--reason", "laptop stolen", "--yes", "--report", str(report_path))
    assert output.startswith(f"Revoked key {key.name} ({key.id}) of project acme ({project.id})")
    assert "secrets under it: 2 (2 opaque)" in output
    assert "secret versions re-encrypted under fresh DEKs: 3" in output
    assert "KEK versions destroyed: v1" in output and "new primary KEK version: v2" in output
    assert "alpha" not in output  # names are in the full report, not the summary
    assert oct(report_path.stat().st_mode & 0o777) == "0o600"
    report = json.loads(report_path.read_text())
    assert report["reason"] == "laptop stolen"
    assert report["secret_versions"] == 3
    assert {s["name"] for s in report["secrets"]} == {"alpha", "beta"}
    assert report["project_id"] == str(project.id)
    assert report["destroyed_kek_versions"] == [1]
    assert report["new_primary_version"] == 2
    assert report["summary"]["secrets_per_type"] == {"opaque": 2}
    old = KekVersion.objects.using("kek").get(key_id=key.id, version=1)
    assert old.state == "destroyed" and old.wrapped_material is None
    assert dek_ids(secret__key_id=key.id).isdisjoint(old_deks)
    assert not Dek.objects.using("dek").filter(key_id=key.id, kek_version=1).exists()
    assert dek_ids(secret=gamma) == {v.dek_id for v in gamma.versions.all()}  # other keys untouched
    assert all_payloads() == before
    for payload in before.values():
        assert payload.decode() not in output and payload.decode() not in report_path.read_text()


def test_revoke_key_json_is_the_full_report(secrets, project):
    result = run_json("revoke_key", str(project.default_key_id), "--reason", "audit", "--yes")
    assert {s["name"] for s in result["secrets"]} == {"alpha", "beta"}
    assert result["destroyed_kek_versions"] == [1] and result["summary"]["secret_versions_reencrypted"] == 3


def test_revoke_key_without_a_terminal_or_yes_refuses_and_changes_nothing(secrets, project):
    key = project_default_key(project)
    before = dek_ids(secret__key_id=key.id)
    message = one_sentence_error("revoke_key", str(key.id), "--reason", "x")
    assert message.startswith("refusing without confirmation: this would revoke key") and "--yes" in message
    assert KekVersion.objects.using("kek").get(key_id=key.id, version=1).state == "enabled"
    assert dek_ids(secret__key_id=key.id) == before
    assert not RotationJob.objects.using("kek").exists()


def test_revoke_key_on_a_terminal_asks_and_a_no_aborts(secrets, project, monkeypatch):
    import sys

    class Tty(StringIO):
        def isatty(self):
            return True

    key = project_default_key(project)
    monkeypatch.setattr(sys, "stdin", Tty("no\n"))
    monkeypatch.setattr(sys, "stderr", Tty())
    assert one_sentence_error("revoke_key", str(key.id), "--reason", "x") == "aborted: nothing was changed"
    assert "This will revoke key" in sys.stderr.getvalue()
    assert KekVersion.objects.using("kek").get(key_id=key.id, version=1).state == "enabled"
    monkeypatch.setattr(sys, "stdin", Tty("yes\n"))
    run("revoke_key", str(key.id), "--reason", "x")
    assert KekVersion.objects.using("kek").get(key_id=key.id, version=1).state == "destroyed"


def test_revoke_key_dry_run_reports_without_changing(secrets, project):
    key = project_default_key(project)
    result = run_json("revoke_key", str(key.id), "--reason", "audit", "--dry-run")
    assert result["dry_run"] is True
    assert result["exposure"]["secret_versions"] == 3
    assert "Revocation plan" in run("revoke_key", str(key.id), "--reason", "audit", "--dry-run")
    assert KekVersion.objects.using("kek").get(key_id=key.id, version=1).state == "enabled"


# --- verify_hierarchy / hierarchy_status ----------------------------------------------------
def test_verify_hierarchy_passes_on_a_healthy_hierarchy(secrets):
    output = run("verify_hierarchy")
    assert "hierarchy OK" in output and "4 secret_versions" in output
    result = run_json("verify_hierarchy")
    assert result["ok"] is True and result["failures"] == []
    assert result["checked"] == {"rek_versions": 1, "kek_versions": 2, "deks": 4, "secret_versions": 4}


def test_verify_hierarchy_exits_1_listing_what_failed(secrets):
    alpha, beta, _gamma = secrets
    tampered = SecretVersion.objects.get(secret=beta, revision=1)
    blob = bytearray(tampered.ciphertext)
    blob[-1] ^= 1
    SecretVersion.objects.filter(id=tampered.id).update(ciphertext=bytes(blob))
    missing = SecretVersion.objects.get(secret=alpha, revision=2)
    Dek.objects.using("dek").filter(id=missing.dek_id).delete()
    material.key_cache().clear()
    out = StringIO()
    with pytest.raises(SystemExit) as info:
        call_command("verify_hierarchy", stdout=out)
    assert info.value.code == 1
    failed = [line for line in out.getvalue().splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2
    assert any(f"secret {beta.id} revision 1" in line for line in failed)
    assert any(f"secret {alpha.id} revision 2" in line and str(missing.dek_id) in line for line in failed)
    assert "2 failure(s)" in out.getvalue()
    assert "cmd-beta-1" not in out.getvalue()
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("verify_hierarchy", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["ok"] is False and len(result["failures"]) == 2


def test_hierarchy_status_json_counts(secrets, project):
    run("rotate_kek", str(project.default_key_id))
    status = run_json("hierarchy_status")
    assert status["initialised"] is True
    assert status["root"]["current_version"] == 1
    assert status["root"]["versions"] == [{"version": 1, "provider": "file", "state": "active", "kek_versions": 3}]
    assert status["kek"] == {"keys": 2, "versions": 3}
    assert status["dek"] == {"total": 4, "wrapped_by_older_kek_versions": 3}
    assert status["secret_versions"] == {"enabled": 4}
    key = next(k for k in status["keys"] if k["id"] == str(project.default_key_id))
    assert [(v["version"], v["primary"], v["deks"]) for v in key["versions"]] == [(1, False, 3), (2, True, 0)]
    text = run("hierarchy_status")
    assert "still wrapped by older KEK versions: 3" in text


def test_hierarchy_status_shows_an_unfinished_job(secrets):
    from keys_app.services.jobs import job_claim

    job_claim(RotationJob.Kind.ROTATE_DEKS, "all")
    status = run_json("hierarchy_status")
    assert [j["kind"] for j in status["running_jobs"]] == ["rotate_deks"]
    assert "unfinished job rotate_deks" in run("hierarchy_status")


# --- bad input ------------------------------------------------------------------------------
def one_sentence_error(*args: str) -> str:
    with pytest.raises(CommandError) as info:
        run(*args)
    message = str(info.value)
    assert message and "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize(
    "command", [["rotate_kek"], ["revoke_key", "--reason", "x"], ["rewrap_deks", "--key"], ["rotate_deks", "--key"]]
)
def test_not_a_uuid_is_refused_in_one_sentence(secrets, command):
    message = one_sentence_error(*command, "not-a-uuid")
    assert message == "'not-a-uuid' is not a key id (a UUID)"


@pytest.mark.parametrize(
    "command", [["rotate_kek"], ["revoke_key", "--reason", "x"], ["rewrap_deks", "--key"], ["rotate_deks", "--key"]]
)
def test_unknown_key_is_refused_in_one_sentence(secrets, command):
    unknown = uuid.uuid4()
    assert one_sentence_error(*command, str(unknown)) == f"key {unknown} does not exist"
    assert not Key.objects.filter(id=unknown).exists()


def test_rotate_deks_bad_secret_ids(secrets):
    assert one_sentence_error("rotate_deks", "--secret", "nope") == "'nope' is not a secret id (a UUID)"
    unknown = uuid.uuid4()
    assert one_sentence_error("rotate_deks", "--secret", str(unknown)) == f"secret {unknown} does not exist"


def test_rotate_deks_needs_exactly_one_scope(secrets, project):
    assert "one of the arguments" in one_sentence_error("rotate_deks")
    message = one_sentence_error("rotate_deks", "--all", "--key", str(project.default_key_id))
    assert "not allowed with" in message


def test_revoke_key_needs_a_reason(secrets, project):
    assert "--reason" in one_sentence_error("revoke_key", str(project.default_key_id))
    assert KekVersion.objects.using("kek").get(key_id=project.default_key_id, version=1).state == "enabled"


def test_batch_size_must_be_positive(secrets):
    assert one_sentence_error("rewrap_deks", "--batch-size", "0") == "--batch-size must be at least 1"


def test_commands_on_an_uninitialised_hierarchy(db):
    message = one_sentence_error("rotate_root_key")
    assert "init_hierarchy" in message


def test_revoke_key_with_an_unwritable_report_path_changes_nothing(secrets, project, tmp_path):
    message = one_sentence_error(
        "revoke_key", str(project.default_key_id), "--reason", "x", "--yes", "--report", str(tmp_path / "no" / "r.json")
    )
    assert message.startswith(f"cannot write the report to {tmp_path / 'no' / 'r.json'}")
    assert KekVersion.objects.using("kek").get(key_id=project.default_key_id, version=1).state == "enabled"
