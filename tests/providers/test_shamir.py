"""The shamir root key provider held in-process: init, sealed start, unseal, seal, rekey, rotation."""

from __future__ import annotations

import base64
import itertools
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from keys_app import crypto
from keys_app.errors import RootKeyError
from keys_app.models import RootKeyVersion
from keys_app.providers import get_provider
from keys_app.providers import shamir as shamir_module
from keys_app.services import material, root
from keys_app.services.seal import ShareRefused, seal, seal_status, unseal_reset, unseal_submit
from secrets_app.models import Secret, SecretVersion
from secrets_app.services.verification import hierarchy_verify
from secrets_app.storage import secret_version_payload

ALL = ["default", "kek", "dek"]
pytestmark = pytest.mark.django_db(databases=ALL)


def init_shamir(shares=5, threshold=3) -> list[str]:
    out = StringIO()
    call_command(
        "init_hierarchy",
        "--provider",
        "shamir",
        "--shares",
        str(shares),
        "--threshold",
        str(threshold),
        "--json",
        stdout=out,
    )
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    issued, result = lines
    assert result == {"created": True, "rek_version": 1, "provider": "shamir", "sealed": False}
    assert issued["rek_version"] == 1 and issued["threshold"] == threshold and issued["total"] == shares
    return list(issued["shares"])


@pytest.fixture
def shamir_hierarchy(settings, shamir_in_process):
    settings.HKMS_ROOT_KEY_PROVIDER = "shamir"
    return init_shamir()


@pytest.fixture
def shamir_project(shamir_hierarchy):
    from keys_app.services.projects import project_create_with_default_key as project_create

    return project_create(name="vault")


@pytest.fixture
def secret(shamir_project):
    from secrets_app.storage import secret_create, secret_version_create

    s = secret_create(project=shamir_project, name="db-password")
    secret_version_create(secret=s, data=b"hunter2")
    secret_version_create(secret=s, data=b"correct horse")
    return s


def read(secret) -> list[bytes]:
    versions = SecretVersion.objects.filter(secret=secret).select_related("secret__key").order_by("revision")
    return [secret_version_payload(v) for v in versions]


def cold_read(secret) -> list[bytes]:
    material.key_cache().clear()
    root.forget_verified_root_keys()
    return read(secret)


# --- init ----------------------------------------------------------------------------------
def test_init_prints_shares_once_and_stores_only_version_and_check_value(shamir_hierarchy):
    shares = shamir_hierarchy
    assert len(shares) == 5 and all(len(s.split()) == 33 for s in shares) and len(set(shares)) == 5
    row = RootKeyVersion.objects.using("kek").get()
    assert row.provider == "shamir" and row.version == 1
    assert bytes(row.check_value)[:4] == b"S\x01\x03\x05" and len(bytes(row.check_value)) == 20
    # Re-running init is a no-op that prints no share.
    out = StringIO()
    call_command("init_hierarchy", "--provider", "shamir", stdout=out)
    assert "already initialised" in out.getvalue() and shares[0].split()[0] not in out.getvalue()


def test_init_refuses_impossible_share_sets(settings, shamir_in_process):
    settings.HKMS_ROOT_KEY_PROVIDER = "shamir"
    for shares, threshold in ((3, 4), (5, 1), (17, 3)):
        with pytest.raises(CommandError, match="threshold"):
            call_command(
                "init_hierarchy", "--provider", "shamir", "--shares", str(shares), "--threshold", str(threshold)
            )
    assert not RootKeyVersion.objects.using("kek").exists()


def test_a_shamir_version_is_never_created_without_a_sink_to_show_its_shares(shamir_in_process):
    from keys_app.services.root import hierarchy_init

    with pytest.raises(RootKeyError, match="command that shows its shares"):
        hierarchy_init("shamir")
    assert not RootKeyVersion.objects.using("kek").exists()


# --- unseal --------------------------------------------------------------------------------
def test_any_k_of_n_shares_unseal(shamir_hierarchy, secret):
    for combination in itertools.combinations(shamir_hierarchy, 3):
        seal()
        assert seal_status()["sealed"]
        for index, share in enumerate(combination, 1):
            progress = unseal_submit(share)
            assert progress["sealed"] is (index < 3)
        assert progress["unsealed_version"] == 1
        assert cold_read(secret) == [b"hunter2", b"correct horse"]


def test_k_minus_one_shares_do_not_unseal(shamir_hierarchy, secret):
    seal()
    assert unseal_submit(shamir_hierarchy[0])["progress"] == 1
    progress = unseal_submit(shamir_hierarchy[3])
    assert progress["sealed"] and progress["progress"] == 2 and progress["threshold"] == 3
    with pytest.raises(RootKeyError, match="sealed"):
        cold_read(secret)
    # Metadata reads still work while sealed.
    assert Secret.objects.filter(name="db-password").count() == 1
    assert SecretVersion.objects.filter(secret=secret).count() == 2


def test_the_service_starts_sealed_and_health_reports_it(shamir_hierarchy, secret):
    from keys_app.providers import reset_providers

    reset_providers()  # a fresh process: nothing in memory
    assert get_provider("shamir").sealed
    response = Client().get("/health")
    assert response.status_code == 503
    assert response.json() | {"status": "sealed", "initialised": True, "sealed": True} == response.json()
    assert response.json()["root_key"] == {"version": 1, "available": False}
    with pytest.raises(RootKeyError, match="sealed"):
        cold_read(secret)
    for share in shamir_hierarchy[2:]:
        unseal_submit(share)
    response = Client().get("/health")
    assert response.status_code == 200 and response.json()["sealed"] is False
    assert cold_read(secret) == [b"hunter2", b"correct horse"]


def test_seal_drops_cached_keys(shamir_hierarchy, secret):
    assert read(secret) == [b"hunter2", b"correct horse"]
    assert len(material.key_cache()) > 0
    seal()
    assert len(material.key_cache()) == 0
    with pytest.raises(RootKeyError, match="sealed"):
        read(secret)  # no cold-read helper: the seal itself emptied the cache


def test_malformed_shares_are_refused_without_revealing_anything(shamir_hierarchy):
    seal()
    share = shamir_hierarchy[0]
    words = share.split()
    flipped = " ".join([*words[:10], "academic" if words[10] != "academic" else "acid", *words[11:]])
    bad_inputs = [
        "",
        "hello world",
        " ".join(words[:-1]),  # truncated
        flipped,  # checksum fails
        " ".join(reversed(words)),
        "abandon " * 23 + "art",  # a BIP-39 phrase
        share + " extra",
    ]
    messages = set()
    for bad in bad_inputs:
        with pytest.raises(ShareRefused) as info:
            unseal_submit(bad)
        messages.add(str(info.value))
    # One fixed sentence whatever the input: nothing about the words or the key leaks.
    assert messages == {"this is not a valid share: check the words and their order"}
    assert seal_status()["progress"] == 0
    # Upper case and extra blanks are the same share.
    assert unseal_submit("  " + share.upper().replace(" ", "   ") + "\n")["progress"] == 1


def test_duplicate_share_is_refused(shamir_hierarchy):
    seal()
    unseal_submit(shamir_hierarchy[1])
    with pytest.raises(ShareRefused, match="already submitted"):
        unseal_submit(shamir_hierarchy[1])
    assert seal_status()["progress"] == 1


def test_shares_of_another_set_are_refused(shamir_hierarchy, secret):
    seal()
    other_key = crypto.generate_key()
    other_set, _ = shamir_module.split(other_key, 5, 3)
    # Mixed with shares already submitted: refused at once.
    unseal_submit(shamir_hierarchy[0])
    with pytest.raises(ShareRefused, match="another share set"):
        unseal_submit(other_set[0])
    # A complete foreign set: refused when it is complete, nothing unsealed, progress reset.
    unseal_reset()
    unseal_submit(other_set[0])
    unseal_submit(other_set[1])
    with pytest.raises(ShareRefused, match="matches no active root key version"):
        unseal_submit(other_set[2])
    status = seal_status()
    assert status["sealed"] and status["progress"] == 0
    with pytest.raises(RootKeyError):
        cold_read(secret)
    # A share whose threshold matches no version is refused at once.
    two_of_three, _ = shamir_module.split(other_key, 3, 2)
    with pytest.raises(ShareRefused, match="threshold"):
        unseal_submit(two_of_three[0])


def test_a_rebuilt_key_that_differs_from_the_check_value_is_refused(shamir_hierarchy):
    """A REK row whose check value does not match (another installation's kek database)."""
    seal()
    RootKeyVersion.objects.using("kek").filter(version=1).update(check_value=b"S\x01\x03\x05" + bytes(16))
    for share in shamir_hierarchy[:2]:
        unseal_submit(share)
    with pytest.raises(ShareRefused, match="matches no active root key version"):
        unseal_submit(shamir_hierarchy[2])
    assert get_provider("shamir").sealed


def test_unseal_command_reads_shares_from_stdin(shamir_hierarchy, secret):
    seal()
    out = StringIO()
    call_command("unseal", "--json", stdin=StringIO(shamir_hierarchy[4] + "\n"), stdout=out)
    assert json.loads(out.getvalue())["progress"] == 1
    out = StringIO()
    call_command("unseal", stdin=StringIO("\n".join(shamir_hierarchy[1:3]) + "\n"), stdout=out, stderr=StringIO())
    assert out.getvalue().startswith("unsealed")
    assert cold_read(secret) == [b"hunter2", b"correct horse"]
    out = StringIO()
    call_command("seal", stdout=out)
    assert "sealed" in out.getvalue() and get_provider("shamir").sealed
    with pytest.raises(CommandError, match="not a valid share"):
        call_command("unseal", stdin=StringIO("not a share\n"), stdout=StringIO())


def test_unseal_command_never_records_a_share_in_the_audit_log(shamir_hierarchy):
    from hkms_core.audit.models import AuditEvent

    seal()
    call_command("unseal", stdin=StringIO(shamir_hierarchy[0] + "\n"), stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("unseal", stdin=StringIO(shamir_hierarchy[0] + "\n"), stdout=StringIO())
    dump = json.dumps([list(e) for e in AuditEvent.objects.values_list()], default=str)
    assert "command.unseal" in dump
    for share in shamir_hierarchy:
        assert " ".join(share.split()[4:8]) not in dump


# --- rekey ---------------------------------------------------------------------------------
def test_rekey_issues_a_new_set_and_invalidates_the_old_one(shamir_hierarchy, secret):
    old = shamir_hierarchy
    out = StringIO()
    call_command(
        "rekey", "--shares", "4", "--threshold", "3", "--json", stdin=StringIO("\n".join(old[1:4])), stdout=out
    )
    issued, result = (json.loads(line) for line in out.getvalue().splitlines())
    new = issued["shares"]
    assert len(new) == 4 and not set(new) & set(old)
    assert result == {"rek_version": 1, "threshold": 3, "shares": 4}
    assert bytes(RootKeyVersion.objects.using("kek").get(version=1).check_value)[:4] == b"S\x01\x03\x04"
    # Still unsealed, same REK: secrets read on.
    assert cold_read(secret) == [b"hunter2", b"correct horse"]
    seal()
    for share in old[:2]:
        unseal_submit(share)
    with pytest.raises(ShareRefused):
        unseal_submit(old[2])  # the old set rebuilds the REK but no longer unseals
    assert get_provider("shamir").sealed
    unseal_submit(new[3])
    unseal_submit(new[0])
    assert unseal_submit(new[2])["sealed"] is False
    assert cold_read(secret) == [b"hunter2", b"correct horse"]
    # A rekey to another threshold: old shares are refused from the first one on.
    call_command("rekey", "--shares", "3", "--threshold", "2", stdin=StringIO("\n".join(new[:3])), stdout=StringIO())
    seal()
    with pytest.raises(ShareRefused, match="threshold matches none"):
        unseal_submit(new[0])


def test_rekey_needs_k_current_shares(shamir_hierarchy):
    with pytest.raises(CommandError, match="3 shares are needed"):
        call_command(
            "rekey",
            "--shares",
            "3",
            "--threshold",
            "2",
            stdin=StringIO("\n".join(shamir_hierarchy[:2])),
            stdout=StringIO(),
        )
    other, _ = shamir_module.split(crypto.generate_key(), 5, 3)
    with pytest.raises(CommandError, match="matches no active root key version"):
        call_command(
            "rekey", "--shares", "3", "--threshold", "2", stdin=StringIO("\n".join(other[:3])), stdout=StringIO()
        )
    assert bytes(RootKeyVersion.objects.using("kek").get(version=1).check_value)[:4] == b"S\x01\x03\x05"


# --- rotation ------------------------------------------------------------------------------
def test_rotation_under_shamir_needs_k_current_shares(shamir_hierarchy, secret):
    with pytest.raises(CommandError, match="3 shares are needed"):
        call_command(
            "rotate_root_key", "--to-provider", "file", stdin=StringIO(""), stdout=StringIO(), stderr=StringIO()
        )
    assert RootKeyVersion.objects.using("kek").count() == 1
    out = StringIO()
    call_command(
        "rotate_root_key",
        "--to-provider",
        "file",
        "--json",
        stdin=StringIO("\n".join(shamir_hierarchy[:3])),
        stdout=out,
        stderr=StringIO(),
    )
    result = json.loads(out.getvalue())
    assert result["provider"] == "file" and result["retired_rek_versions"] == [1]
    assert not get_provider("shamir").has_version(1)  # forgotten on retirement
    assert cold_read(secret) == [b"hunter2", b"correct horse"]


def test_rotation_file_to_shamir_to_shamir_to_file_keeps_secrets(settings, shamir_in_process, make_secret):
    secrets = [make_secret(b"one", b"two"), make_secret(b"three")]

    out = StringIO()
    call_command(
        "rotate_root_key", "--to-provider", "shamir", "--shares", "3", "--threshold", "2", "--json", stdout=out
    )
    issued, result = (json.loads(line) for line in out.getvalue().splitlines())
    assert result["provider"] == "shamir" and result["rek_version"] == 2
    first_set = issued["shares"]
    assert [cold_read(s) for s in secrets] == [[b"one", b"two"], [b"three"]]

    # shamir -> shamir: a quorum of the current set authorises it, a new set is issued.
    seal()
    out = StringIO()
    call_command(
        "rotate_root_key",
        "--to-provider",
        "shamir",
        "--shares",
        "5",
        "--threshold",
        "3",
        "--json",
        stdin=StringIO("\n".join(first_set[1:])),
        stdout=out,
        stderr=StringIO(),
    )
    issued, result = (json.loads(line) for line in out.getvalue().splitlines())
    assert result["rek_version"] == 3 and result["retired_rek_versions"] == [2]
    second_set = issued["shares"]
    assert [cold_read(s) for s in secrets] == [[b"one", b"two"], [b"three"]]

    seal()
    with pytest.raises(ShareRefused):
        for share in first_set[:2]:
            unseal_submit(share)  # v2 is retired: its shares unseal nothing
    unseal_reset()
    for share in second_set[:3]:
        unseal_submit(share)
    out = StringIO()
    call_command(
        "rotate_root_key",
        "--to-provider",
        "file",
        "--json",
        stdin=StringIO("\n".join(second_set[2:])),
        stdout=out,
        stderr=StringIO(),
    )
    assert json.loads(out.getvalue())["provider"] == "file"
    assert [cold_read(s) for s in secrets] == [[b"one", b"two"], [b"three"]]
    assert hierarchy_verify()["ok"]


def test_hierarchy_status_shows_provider_version_seal_and_share_counts(shamir_hierarchy):
    seal()
    unseal_submit(shamir_hierarchy[0])
    out = StringIO()
    call_command("hierarchy_status", stdout=out)
    text = out.getvalue()
    assert "root key: provider shamir, current version 1, sealed: True" in text
    assert "shamir: 3 of 5 custodian shares unseal it" in text
    assert "unseal progress: 1 of 3" in text
    out = StringIO()
    call_command("hierarchy_status", "--json", stdout=out)
    provider = json.loads(out.getvalue())["root"]["provider"]
    assert provider["threshold"] == 3 and provider["shares"] == 5 and provider["sealed"] is True


def test_no_share_or_root_key_bytes_in_any_database_file(settings, shamir_hierarchy, secret):
    """Scan every file of the (file-backed SQLite) test databases for shares and the REK."""
    from django.db import connections

    provider = get_provider("shamir")
    rek = provider._held[1].key.reveal()
    needles = [rek, rek.hex().encode(), base64.b64encode(rek)]
    for share in shamir_hierarchy:
        words = share.split()
        needles += [share.encode(), " ".join(words[3:9]).encode()]
    call_command(
        "rekey", "--shares", "3", "--threshold", "2", stdin=StringIO("\n".join(shamir_hierarchy[:3])), stdout=StringIO()
    )
    scanned = 0
    for alias in ALL:
        connection = connections[alias]
        if connection.vendor != "sqlite":
            rows = []
            with connection.cursor() as cursor:
                for table in connection.introspection.table_names(cursor):
                    cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (introspected names)
                    rows.append(repr(cursor.fetchall()).encode())
            blobs = rows
        else:
            from pathlib import Path

            name = Path(connection.settings_dict["NAME"])
            blobs = [p.read_bytes() for p in name.parent.glob(name.name + "*")]
        for blob in blobs:
            scanned += 1
            for needle in needles:
                assert needle not in blob, f"secret material found in the {alias} database"
    assert scanned >= 3
