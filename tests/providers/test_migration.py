"""Provider migration as a REK rotation: kill -9 during ``rotate_root_key --to-provider pkcs11``, then resume.

A real installation (three SQLite files or three fresh PostgreSQL databases)
on the test SoftHSM2 token: 600 keys with one secret each, so the rotation
re-wraps 600 KEK versions in committed batches of one.  The command is SIGKILLed at
random moments after its start-up (measured first); after every kill every payload must read back; re-running
resumes the job; at the end every KEK version is wrapped by the HSM, the file
REK is destroyed, ``verify_hierarchy`` passes, and the migration back to the
file provider works too.  ``HKMS_CRASH_SEED`` replays a run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest

from tests.providers.site import PYTHON, REPO, Site

SEED = int(os.environ.get("HKMS_CRASH_SEED", random.randrange(2**32)))
pytestmark = pytest.mark.slow


def pg_dump_all(names: list[str]) -> bytes:
    """Every row of every table of the given PostgreSQL databases, in COPY text format."""
    import psycopg

    out = bytearray()
    for name in names:
        with psycopg.connect(
            host=os.environ.get("PGHOST", "127.0.0.1"),
            port=os.environ.get("PGPORT", "5432"),
            user=os.environ.get("PGUSER", "postgres"),
            password=os.environ.get("PGPASSWORD", ""),
            dbname=name,
            autocommit=True,
        ) as conn:
            tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for table in tables:
                with conn.cursor().copy(f'COPY "{table}" TO STDOUT') as copy:
                    for chunk in copy:
                        out += bytes(chunk)
    return bytes(out)


def test_kill_9_during_migration_to_pkcs11_and_back_loses_nothing(softhsm):
    rng = random.Random(SEED)
    options = softhsm.options()
    site = Site(softhsm.env(options))
    try:
        site.migrate()
        site.manage("init_hierarchy")  # file provider
        expected = str(site.data_dir / "expected.json")
        assert site.script("seed", expected, "600")["versions"] == 600
        started = time.monotonic()
        site.manage("check")
        startup = time.monotonic() - started

        kills = mid_job = 0
        for attempt in range(12):
            process = subprocess.Popen(
                [PYTHON, "manage.py", "rotate_root_key", "--to-provider", "pkcs11", "--batch-size", "1"],
                cwd=REPO,
                env=site.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            time.sleep(startup + rng.uniform(0.0, 0.4))
            if process.poll() is not None:
                process.communicate()
                assert process.returncode == 0, f"the rotation failed on its own (seed {SEED})"
                break
            os.kill(process.pid, signal.SIGKILL)
            process.communicate(timeout=30)
            kills += 1
            state = site.script("rek")
            if state["job_processed"]:
                mid_job += 1
            check = site.script("check", expected)
            assert check["errors"] == [] and check["mismatches"] == 0, f"after kill {attempt} (seed {SEED}): {check}"
            if kills >= 4 and mid_job >= 2:
                break
        assert kills >= 1, f"the rotation always finished before the kill (seed {SEED})"
        result = json.loads(site.manage("rotate_root_key", "--to-provider", "pkcs11", "--json").stdout)
        assert result["provider"] == "pkcs11"
        state = site.script("rek")
        current = [v for v in state["versions"] if v[2] == "active"]
        assert len(current) == 1 and current[0][1] == "pkcs11"
        assert state["kek_rek_versions"] == [current[0][0]]
        assert json.loads((site.data_dir / "root_keyring.json").read_text())["versions"] == {}
        check = site.script("check", expected)
        assert check == {"checked": 600, "expected": 600, "mismatches": 0, "errors": []}
        env_pkcs11 = {**site.env, "HKMS_ROOT_KEY_PROVIDER": "pkcs11"}
        verify = subprocess.run(
            [PYTHON, "manage.py", "verify_hierarchy"],
            cwd=REPO,
            env=env_pkcs11,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr

        # And back to the development provider, uninterrupted.
        result = json.loads(site.manage("rotate_root_key", "--to-provider", "file", "--json").stdout)
        assert result["provider"] == "file" and result["retired_rek_versions"]
        assert site.script("check", expected)["mismatches"] == 0
        assert site.script("check", expected)["errors"] == []
        print(f"seed {SEED}: {kills} kills, {mid_job} in the middle of the job")
    finally:
        site.close()
