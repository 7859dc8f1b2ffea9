"""gunicorn with several workers and the seal keeper: unseal and seal reach every worker.

A real installation (subprocesses: ``seal_keeper``, ``init_hierarchy``,
gunicorn with 3 workers, ``unseal``/``seal`` commands).  Requests are sent
from several threads at once so that every worker answers; each answer names
its worker (``X-Probe-Pid``).  At the end every file the run wrote (data
dir, databases, logs) is scanned for the shares and for the REK, rebuilt here
from the shares.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from keys_app.providers import shamir
from tests.providers.site import Site

WORKERS = 3
pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, dict, int]:
    request = urllib.request.Request(url)  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read()), int(response.headers["X-Probe-Pid"])
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), int(exc.headers["X-Probe-Pid"])


def sweep(url: str, pids: set[int], *, rounds: int = 400, seconds: float = 30.0) -> dict[int, set[int]]:
    """GET ``url`` from 8 threads until every worker answered; statuses seen per worker.

    At least ``rounds`` requests, and on until ``seconds`` have passed if a worker has not
    answered yet: a worker gunicorn has just spawned is listed before Django has loaded in it.
    """
    seen: dict[int, set[int]] = {}
    deadline = time.monotonic() + seconds
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while sent < rounds or time.monotonic() < deadline:
            for status, _body, pid in pool.map(lambda _: get(url), range(8)):
                seen.setdefault(pid, set()).add(status)
            sent += 8
            if set(seen) >= pids:
                break
            if sent >= rounds:
                time.sleep(0.05)
    assert set(seen) == pids, f"not every worker answered: {seen} of {pids}"
    return seen


def test_unseal_and_seal_reach_every_gunicorn_worker():
    site = Site({"HKMS_ROOT_KEY_PROVIDER": "shamir"})
    try:
        site.migrate()
        site.start_keeper()
        out = site.manage("init_hierarchy", "--provider", "shamir", "--shares", "3", "--threshold", "2", "--json")
        issued = json.loads(out.stdout.splitlines()[0])
        shares = issued["shares"]
        url = site.start_gunicorn(WORKERS)
        pids = site.worker_pids()
        assert len(pids) == WORKERS

        request = urllib.request.Request(f"{url}/_probe/seed", method="POST", data=b"")  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            version_id = json.loads(response.read())["id"]
        read = f"{url}/_probe/read?id={version_id}"

        # Unsealed (init went through the keeper): every worker serves, and caches the keys.
        assert sweep(read, pids) == {pid: {200} for pid in pids}

        # Seal: within a moment no worker serves, cached keys or not.
        site.manage("seal")
        time.sleep(0.5)
        assert sweep(read, pids) == {pid: {503} for pid in pids}
        assert sweep(f"{url}/health", pids) == {pid: {503} for pid in pids}
        assert sweep(f"{url}/_probe/meta", pids) == {pid: {200} for pid in pids}  # metadata still works
        assert get(f"{url}/health")[1]["status"] == "sealed"

        # One share of two: still sealed everywhere; progress is visible.
        progress = json.loads(site.manage("unseal", "--json", input=shares[2] + "\n").stdout)
        assert progress["sealed"] and progress["progress"] == 1 and progress["threshold"] == 2
        assert sweep(read, pids) == {pid: {503} for pid in pids}
        status = json.loads(site.manage("hierarchy_status", "--json").stdout)["root"]["provider"]
        assert status["unseal_progress"] == 1 and status["threshold"] == 2 and status["shares"] == 3

        # A share from another set is refused and changes nothing.
        foreign, _ = shamir.split(shamir.crypto.generate_key(), 3, 2)
        refused = site.manage("unseal", input=foreign[0] + "\n", check=False)
        assert refused.returncode == 1 and "another share set" in refused.stderr

        # The second custodian's share, from another process: every worker serves again.
        done = json.loads(site.manage("unseal", "--json", input=shares[0] + "\n").stdout)
        assert done["sealed"] is False
        seen = sweep(read, pids)
        assert seen == {pid: {200} for pid in pids}
        assert get(read)[1]["payload"] == "probe payload"

        # A worker restarted by gunicorn is unsealed too (it holds nothing: it asks the keeper).
        victim = sorted(pids)[0]
        import os
        import signal

        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (victim in site.worker_pids() or len(site.worker_pids()) < WORKERS) and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = site.worker_pids()
        assert victim not in pids and len(pids) == WORKERS
        assert sweep(read, pids) == {pid: {200} for pid in pids}

        # Stopping the keeper seals every worker too.
        keeper = site.processes[0]
        site.stop(keeper)
        time.sleep(0.5)
        assert sweep(read, pids) == {pid: {503} for pid in pids}
        site.stop(site.gunicorn)

        # Nothing secret in any file the run wrote: databases, logs, the data dir.
        rek, _ = shamir.combine([shamir.parse_share(s) for s in shares[:2]])
        raw = rek.reveal()
        needles = [raw, raw.hex().encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
        for share in shares:
            words = share.split()
            needles += [share.encode(), " ".join(words[4:10]).encode()]
        files = site.files()
        assert any(p.name == "gunicorn.log" for p in files) and any(p.name == "keeper.log" for p in files)
        for path in files:
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, f"secret material in {path}"
        if site.pg_names:
            from tests.providers.test_migration import pg_dump_all

            dump = pg_dump_all(site.pg_names)
            for needle in needles:
                assert needle not in dump
    finally:
        site.close()
