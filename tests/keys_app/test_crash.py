"""Crash safety: ``kill -9`` at random moments of every long rotation loses nothing.

On a real installation (three SQLite files, or three fresh PostgreSQL databases
when ``HKMS_TEST_POSTGRES=1``) seeded with 3000 secret versions under 105 keys,
``rewrap_deks`` (after a KEK rotation of every key), ``rotate_deks --all`` and
``rotate_root_key`` run as subprocesses and are SIGKILLed after a random delay
between the end of a command's start-up (Python, Django and the apps, measured) and
the command's measured duration, at least 7 times each.
After every kill every payload must still read back byte-identical; then each
command is re-run to completion, ``verify_hierarchy`` must exit 0 and every
payload must match what the test seeded.

``HKMS_CRASH_SEED`` replays a run (the seed is printed on failure).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from keys_app.models import RootKeyVersion
from keys_app.providers.file import FileRootKeyProvider
from keys_app.services.rotation.rek import rek_rotate
from tests.keys_app.instance import instance, kill

SEED = int(os.environ.get("HKMS_CRASH_SEED", random.randrange(2**32)))
KILLS_PER_COMMAND = 7
MAX_ATTEMPTS = 30


class Crash(BaseException):
    """Stands for the process dying at this point (not an ``Exception``: nothing catches it)."""


def crash_loop(inst, dump, args, kind, expected, rng, make_work=None):
    """Kill ``manage.py *args`` at random moments until it died mid-job enough times; finish it."""
    started = time.monotonic()
    inst.manage("version")  # what every command spends before its job: Python, Django, the apps
    start_up = time.monotonic() - started
    started = time.monotonic()
    inst.manage(*args)  # an uninterrupted run: the command's typical duration
    typical = time.monotonic() - started
    # Kills land anywhere from the start-up's last tenth to the end (a kill during start-up only
    # proves little), so that short jobs such as a root key rotation are hit mid-job too.
    earliest = min(max(0.05, start_up * 0.9), typical * 0.8)
    if make_work:
        make_work()
    kills = mid_job = attempts = 0
    last_job = None
    while (kills < KILLS_PER_COMMAND or mid_job < 2) and attempts < MAX_ATTEMPTS:
        attempts += 1
        process = inst.popen_manage(*args)
        delay = rng.uniform(earliest, typical)
        time.sleep(delay)
        if not kill(process):
            assert process.returncode == 0, f"{args} failed on its own (seed {SEED})"
            # It finished within ``delay``: the machine got faster than when ``typical`` was
            # measured (a loaded CI box swings by 2-3x). Aim the next kills inside what it took.
            typical = delay * 0.8
            earliest = min(earliest, typical * 0.8)
            last_job = None
            if make_work:
                make_work()
            continue
        kills += 1
        state = dump("--bulk")
        assert state["errors"] == [], f"unreadable after a kill of {args} (seed {SEED}): {state['errors']}"
        assert state["payloads"] == expected, f"payloads changed after a kill of {args} (seed {SEED})"
        job = next((j for j in state["running_jobs"] if j["kind"] == kind), None)
        if job is None:
            # Killed before its job existed (still starting up: start-up time swings with the
            # load, under xdist beside the other engine's suite): aim the next kills later.
            earliest = max(earliest, min(delay, typical * 0.9))
        if job and (last_job is None or job["id"] != last_job["id"] or job["processed"] > last_job["processed"]):
            mid_job += 1  # the killed process had committed part of its job
        last_job = job
    finished = inst.manage(*args, "--json")
    result = json.loads(finished.stdout)
    return {
        "kills": kills,
        "mid_job": mid_job,
        "attempts": attempts,
        "typical": round(typical, 2),
        "start_up": round(start_up, 2),
        "resumed_at_end": result.get("resumed"),
    }


@pytest.mark.slow
def test_kill_9_during_rotations_loses_nothing(tmp_path):
    rng = random.Random(SEED)
    with instance(tmp_path / "data") as inst:
        expected_file = tmp_path / "expected.json"
        seeded = inst.script("seed", str(expected_file), "5", "600", "5", "100", "crash", timeout=300)
        expected = json.loads(expected_file.read_text())
        assert seeded["versions"] == len(expected) == 3000

        def rotate_keks():
            assert inst.script("rotate-keks")["rotated"] == 105

        rotate_keks()
        with inst.dumper() as dump:
            stats = {
                "rewrap_deks": crash_loop(
                    inst,
                    dump,
                    ["rewrap_deks", "--batch-size", "20"],
                    "rewrap_deks",
                    expected,
                    rng,
                    make_work=rotate_keks,
                ),
                "rotate_deks": crash_loop(
                    inst, dump, ["rotate_deks", "--all", "--batch-size", "100"], "rotate_deks", expected, rng
                ),
                "rotate_root_key": crash_loop(
                    inst, dump, ["rotate_root_key", "--batch-size", "10"], "rotate_root_key", expected, rng
                ),
            }
        print(f"crash test seed {SEED}: {stats}")
        for command, stat in stats.items():
            assert stat["kills"] >= KILLS_PER_COMMAND, (command, stat, SEED)
            assert stat["mid_job"] >= 1, (command, stat, SEED)
        assert sum(s["kills"] for s in stats.values()) >= 20

        verify = inst.manage("verify_hierarchy", "--json", check=False)
        assert verify.returncode == 0, verify.stdout[-3000:]
        report = json.loads(verify.stdout)
        assert report["ok"] and report["failures"] == []
        assert report["checked"]["secret_versions"] == report["checked"]["deks"] == 3000
        assert report["unreferenced_deks"] == 0  # interrupted batches left no orphan DEK behind

        final = inst.script("dump", timeout=120)  # one payload at a time, as the API reads
        assert final["errors"] == [] and final["running_jobs"] == []
        assert final["payloads"] == expected

        status = json.loads(inst.manage("hierarchy_status", "--json").stdout)
        assert status["dek"]["wrapped_by_older_kek_versions"] == 0
        active = [v["version"] for v in status["root"]["versions"] if v["state"] == "active"]
        assert active == [status["root"]["current_version"]]
        keyring = json.loads((inst.data_dir / "root_keyring.json").read_text())
        # Retired root key versions are destroyed, even when a kill interrupted their retirement.
        assert sorted(int(v) for v in keyring["versions"]) == active


# --- deterministic crash points ----------------------------------------------------------------
@pytest.mark.django_db(databases=["default", "kek", "dek"])
def test_crash_between_retiring_and_destroying_a_root_key_version(make_secret, monkeypatch):
    """The row says retired but the material is still in the keyring: the re-run destroys it."""
    make_secret(b"retire-me")
    real_destroy = FileRootKeyProvider.destroy_version

    def crash(self, version):
        raise Crash()

    monkeypatch.setattr(FileRootKeyProvider, "destroy_version", crash)
    with pytest.raises(Crash):
        rek_rotate()
    assert RootKeyVersion.objects.using("kek").get(version=1).state == "retired"
    monkeypatch.setattr(FileRootKeyProvider, "destroy_version", real_destroy)
    result = rek_rotate()
    assert result["resumed"] is True and result["rek_version"] == 2
    path = Path(django_settings.HKMS_ROOT_KEY_OPTIONS["file"]["path"])
    assert set(json.loads(path.read_text())["versions"]) == {"2"}
