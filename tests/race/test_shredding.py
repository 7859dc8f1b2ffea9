"""Crypto-shredding under concurrency: ``expire_secret_versions`` and ``rotate_deks --all`` at once.

About two thousand versions (most scheduled for deletion 8 days ago, two whole
secrets scheduled too) are destroyed by the expiry while a DEK rotation
re-encrypts every version.  Afterwards:

* every version that was due is ``deleted`` with no ciphertext and no DEK;
* no DEK row is left that no live version references, and none is owned by a
  destroyed version;
* a copy of the dek database taken at the end (a file copy on SQLite, the
  rows on PostgreSQL) unwraps no DEK of a destroyed version;
* every surviving version still decrypts.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from tests.live import PYTHON, ROOT, LiveServer, postgres_enabled

SECRETS, VERSIONS, SCHEDULED, DELETED_SECRETS = 20, 100, 75, 2


def shell(server: LiveServer, code: str) -> dict:
    return json.loads(server.manage("shell", "-c", code, timeout=180).strip().splitlines()[-1])


def test_expiry_concurrent_with_dek_rotation_leaves_nothing_of_destroyed_versions(site, tmp_path):
    server = site.server  # shared with test_races (its versions are rotated too; the checks look at ours)
    made = shell(
        server,
        "from tests.race.bulk import populate; "
        f"populate(secrets={SECRETS}, versions={VERSIONS}, scheduled={SCHEDULED}, deleted_secrets={DELETED_SECRETS})",
    )
    doomed = made["doomed"]
    assert made["total"] == (SECRETS + DELETED_SECRETS) * VERSIONS
    assert len(doomed) == SECRETS * SCHEDULED + DELETED_SECRETS * VERSIONS

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=server.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    rotation = start("rotate_deks", "--all", "--batch-size", "200")
    expiry = start("expire_secret_versions", "--yes")
    rotated, rotation_err = rotation.communicate(timeout=300)
    expired, expiry_err = expiry.communicate(timeout=300)
    print(f"rotate_deks: {rotated.strip()[-300:]}\nexpire_secret_versions: {expired.strip()[-300:]}")

    copy = None
    if not postgres_enabled():
        # What a backup of the dek database taken now would hold (the WAL too: committed rows live there).
        for suffix in ("", "-wal", "-shm"):
            source = server.data_dir / f"dek.sqlite3{suffix}"
            if source.exists():
                shutil.copy(source, tmp_path / f"dek.sqlite3{suffix}")
        copy = str(tmp_path / "dek.sqlite3")
    doomed_file = tmp_path / "doomed.json"
    doomed_file.write_text(json.dumps(doomed))
    result = shell(
        server,
        "import json; from tests.race.bulk import check; "
        f"check(doomed=json.load(open({str(doomed_file)!r})), copy={copy!r}, key_id={made['key_id']!r})",
    )
    print(f"shredding under concurrency: {result}")
    assert expiry.returncode == 0, expiry_err[-2000:]
    assert rotation.returncode == 0, rotation_err[-2000:]
    assert result["not_destroyed"] == 0, result
    assert result["deks_owned_by_destroyed"] == 0, result
    assert result["unwrapped_of_destroyed"] == 0, result
    assert result["unreferenced_deks"] == 0, result
    assert result["survivors"] == SECRETS * (VERSIONS - SCHEDULED) and result["unreadable_survivors"] == 0, result
    assert result["dek_rows"] == result["survivors"], result
