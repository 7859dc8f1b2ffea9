"""No plaintext payload and no unwrapped key ever reaches a database, a log or a command's output.

A real installation is seeded with distinctive payloads, then every rotation
and a revocation run through the commands.  Afterwards:

* on SQLite, the raw bytes of the three database files and their ``-wal`` /
  ``-shm`` companions (free pages and old WAL frames included) are searched;
* on both engines, every value of every table of the three databases is
  searched through SQL;
* every command's stdout and stderr are searched;

for each payload and each KEK and DEK material ever unwrapped, raw, in hex and
in base64.  A control value written in clear proves that each scan can find
what it looks for.
"""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from tests.keys_app.instance import instance, needle_forms

CONTROL = b"SCANNER-CONTROL-" + secrets.token_hex(8).encode()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root_dir = tmp_path_factory.mktemp("scan")
    with instance(root_dir / "data") as inst:
        expected_file = root_dir / "expected.json"
        seeded = inst.script("seed", str(expected_file), "2", "40", "3", "2", "PLAINTEXT-CANARY", timeout=120)
        payloads = [bytes.fromhex(v) for v in json.loads(expected_file.read_text()).values()]
        material = inst.script("key-material")
        outputs = []

        def manage(*args):
            result = inst.manage(*args)
            outputs.extend([result.stdout, result.stderr])
            return result

        inst.script("rotate-keks")
        manage("rewrap_deks")
        material_mid = inst.script("key-material")
        manage("rotate_deks", "--all")
        manage("rotate_root_key")
        manage("revoke_key", seeded["keys"][0], "--reason", "scan test", "--yes")
        manage("verify_hierarchy")
        manage("hierarchy_status")
        manage("verify_hierarchy", "--json")
        material_end = inst.script("key-material")
        keys = {bytes.fromhex(k) for m in (material, material_mid, material_end) for k in m["keks"] + m["deks"]}
        keyring = json.loads((inst.data_dir / "root_keyring.json").read_text())
        reks = {base64.b64decode(v) for v in keyring["versions"].values()}
        yield {"inst": inst, "payloads": payloads, "keys": keys, "reks": reks, "outputs": outputs, "root_dir": root_dir}


def file_hits(inst, needles: list[bytes]) -> list[str]:
    hits = []
    for path in inst.sqlite_files():
        data = path.read_bytes()
        for needle in needles:
            if any(form in data for form in needle_forms(needle)):
                hits.append(path.name)
                break
    return hits


def sql_hits(inst, root_dir, needles: list[bytes]) -> dict:
    needle_file = root_dir / f"needles-{secrets.token_hex(4)}.json"
    needle_file.write_text(json.dumps([n.hex() for n in needles]))
    return inst.script("scan-sql", str(needle_file), timeout=120)


def test_scan_covers_everything_written(scanned):
    assert len(scanned["payloads"]) == 120
    assert all(p.startswith(b"PLAINTEXT-CANARY-") for p in scanned["payloads"])
    # First DEKs, re-wrapped DEKs, rotated DEKs, and every KEK version ever unwrapped.
    assert len(scanned["keys"]) > 2 * 120
    if not scanned["inst"].postgres:
        names = {p.name for p in scanned["inst"].sqlite_files()}
        assert {"default.sqlite3", "kek.sqlite3", "dek.sqlite3"} <= names


def test_database_files_hold_no_plaintext_payload(scanned):
    inst = scanned["inst"]
    if inst.postgres:
        pytest.skip("no database files on PostgreSQL; the SQL scan covers it")
    assert file_hits(inst, scanned["payloads"]) == []
    assert file_hits(inst, [b"PLAINTEXT-CANARY"]) == []


def test_database_files_hold_no_unwrapped_key(scanned):
    inst = scanned["inst"]
    if inst.postgres:
        pytest.skip("no database files on PostgreSQL; the SQL scan covers it")
    assert file_hits(inst, sorted(scanned["keys"] | scanned["reks"])) == []


def test_no_table_holds_a_payload_or_a_key(scanned):
    needles = [*scanned["payloads"], b"PLAINTEXT-CANARY", *sorted(scanned["keys"] | scanned["reks"])]
    result = sql_hits(scanned["inst"], scanned["root_dir"], needles)
    assert result["rows"] >= 2 * 120  # at least every secret version and its DEK
    assert result["hits"] == []


def test_command_output_holds_no_payload_or_key(scanned):
    text = "\n".join(scanned["outputs"]).encode()
    assert b"hierarchy OK" in text  # the outputs were captured
    for needle in [*scanned["payloads"], b"PLAINTEXT-CANARY", *scanned["keys"], *scanned["reks"]]:
        assert not any(form in text for form in needle_forms(needle))


def test_the_scans_find_a_value_written_in_clear(scanned):
    """Control: a secret description (metadata, stored in clear) is found by both scans."""
    inst = scanned["inst"]
    inst.run(
        "-c",
        "import django; django.setup(); from secrets_app.models import Secret; "
        f"Secret.objects.filter(name='secret-0').update(description={CONTROL.decode()!r})",
    )
    assert "default.secrets_app_secret" in sql_hits(inst, scanned["root_dir"], [CONTROL])["hits"]
    if not inst.postgres:
        assert file_hits(inst, [CONTROL]) != []
