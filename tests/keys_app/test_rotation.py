"""Rotation at each level keeps every payload byte-identical."""

from __future__ import annotations

import pytest
from django.db import connections

from keys_app.models import Dek, KekVersion, RootKeyVersion
from keys_app.services.projects import project_default_key
from keys_app.services.rotation.kek import deks_rewrap, kek_rotate
from keys_app.services.rotation.rek import rek_rotate
from secrets_app.models import SecretVersion
from secrets_app.services.dek_rotation import deks_rotate
from secrets_app.services.revocation import key_revoke
from secrets_app.services.verification import hierarchy_status, hierarchy_verify
from secrets_app.storage import secret_version_payload

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def payloads(secret):
    versions = SecretVersion.objects.filter(secret=secret).select_related("secret__key").order_by("revision")
    return [secret_version_payload(v) for v in versions]


def test_round_trip(make_secret):
    secret = make_secret(b"one", b"two", b"\x00\xff binary")
    assert payloads(secret) == [b"one", b"two", b"\x00\xff binary"]
    assert secret.version_count == 3


def test_rek_rotation_keeps_payloads_and_retires_old_version(make_secret):
    secret = make_secret(b"alpha", b"beta")
    result = rek_rotate(batch_size=1)
    assert result["rek_version"] == 2
    assert result["retired_rek_versions"] == [1]
    assert set(KekVersion.objects.using("kek").values_list("rek_version", flat=True)) == {2}
    assert RootKeyVersion.objects.using("kek").get(version=1).state == "retired"
    from keys_app.services import material

    material.key_cache().clear()
    assert payloads(secret) == [b"alpha", b"beta"]
    assert hierarchy_verify()["ok"]


def test_rek_rotation_touches_neither_dek_nor_default(make_secret, django_assert_num_queries):
    make_secret(b"alpha")
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connections["default"]) as default_q, CaptureQueriesContext(connections["dek"]) as dek_q:
        rek_rotate()
    assert len(default_q) == 0
    assert len(dek_q) == 0


def test_kek_rotation_then_rewrap(make_secret, project):
    secret = make_secret(b"one", b"two")
    key = project_default_key(project)
    kek_rotate(key=key)
    assert key.primary_version == 2 and key.rotation_count == 1
    secret_version_new = make_secret(b"three")
    assert Dek.objects.using("dek").filter(kek_version=1).count() == 2
    assert deks_rewrap(dry_run=True)["deks_to_rewrap"] == 2
    assert deks_rewrap()["deks_rewrapped"] == 2
    assert deks_rewrap()["deks_rewrapped"] == 0  # idempotent
    assert set(Dek.objects.using("dek").values_list("kek_version", flat=True)) == {2}
    assert KekVersion.objects.using("kek").get(key_id=key.id, version=1).state == "retired"
    from keys_app.services import material

    material.key_cache().clear()
    assert payloads(secret) == [b"one", b"two"]
    assert payloads(secret_version_new) == [b"three"]


def test_dek_rotation_replaces_every_dek(make_secret):
    secret = make_secret(b"one", b"two")
    before = set(SecretVersion.objects.values_list("dek_id", flat=True))
    result = deks_rotate(batch_size=1)
    assert result["versions_rotated"] == 2
    after = set(SecretVersion.objects.values_list("dek_id", flat=True))
    assert before.isdisjoint(after)
    assert set(Dek.objects.using("dek").values_list("id", flat=True)) == after
    assert payloads(secret) == [b"one", b"two"]


def test_revoke_destroys_old_material_and_reports_exposure(make_secret, project):
    secret = make_secret(b"one", b"two", name="db-password")
    key = project_default_key(project)
    report = key_revoke(key=key, reason="laptop stolen")
    assert report["secret_versions"] == 2
    assert report["secrets"][0]["name"] == "db-password"
    assert report["destroyed_kek_versions"] == [1]
    old = KekVersion.objects.using("kek").get(key_id=key.id, version=1)
    assert old.state == "destroyed" and old.wrapped_material is None
    from keys_app.services import material

    material.key_cache().clear()
    assert payloads(secret) == [b"one", b"two"]
    assert hierarchy_verify()["ok"]


def test_status_counts(make_secret, project):
    make_secret(b"one")
    kek_rotate(key=project_default_key(project))
    status = hierarchy_status()
    assert status["root"]["current_version"] == 1
    assert status["dek"]["wrapped_by_older_kek_versions"] == 1
    key_row = next(k for k in status["keys"] if k["id"] == str(project.default_key_id))
    assert [v["deks"] for v in key_row["versions"]] == [1, 0]
