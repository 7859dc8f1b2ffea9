#!/usr/bin/env python
"""How rotation cost scales with the number of secret versions S (docs/architecture.md, issue 2).

For each S (1k, 10k, 100k; ``--quick``: 200 and 1000) a fresh installation
on three real SQLite files in a temporary data dir gets 10 keys (10 projects,
one default key each) and S secret versions (5 per secret), then:

* **REK rotation** — ``rek_rotate``: new root key version, re-wrap the 10 KEK
  versions, retire the old one (best of 7; should not depend on S; the
  queries it sends to each database are counted too);
* **KEK re-wrap** — ``kek_rotate`` on each key, then ``deks_rewrap``: S DEKs
  re-wrapped, no secret touched;
* **DEK rotation** — ``deks_rotate`` of everything: S versions re-encrypted;
* **naive** — what a single master key forces: ``MultiFernet.rotate`` over
  the same S payloads (in memory only, so it is flattered: no database I/O).

Seeding is bulk but goes through the real crypto path
(``material.dek_wrap`` and ``storage.payload_seal``), so every row is a valid
ciphertext; after the rotations a sample (every version for S <= 10k, with
``hierarchy_verify``) is read back through ``secret_version_payload`` and must
match, or the run exits 1.

Each S uses two child processes: one migrates and seeds, a fresh one runs
the timed phases, so the seeding's allocations never hide in a phase's
figures.  Memory is the process's peak RSS during each phase (reset before
each phase through ``/proc/self/clear_refs``), of which SQLite's own allocations
(its page caches, bounded by ``cache_size`` per connection) are reported apart and
left out of the "flat in S" target (tracemalloc's peak where RSS is
unavailable): flat in S means the same peak at every S.  ``os.sync()`` runs
before each phase so that one phase's writes are not flushed by the next
phase's fsyncs (the REK rotation fsyncs the keyring file twice).

Usage::

    python bench/rotation_scaling.py            # S = 1k, 10k, 100k
    python bench/rotation_scaling.py --quick    # S = 200, 1000 (< 60 s)
    python bench/rotation_scaling.py --sizes 5000,50000 --strict   # exit 1 if a target is missed
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VERSIONS_PER_SECRET = 5
SEED_BATCH = 5000
#: REK rotation takes milliseconds, mostly the keyring file's fsyncs, whose latency is the
#: machine's: report the best of several runs (and their median).
REK_RUNS = 7
_DB_ENV = (
    "DATABASE_URL",
    "KEK_DATABASE_URL",
    "DEK_DATABASE_URL",
    "HKMS_ROOT_KEY_FILE",
    "HKMS_TEST_POSTGRES",
    "HKMS_KEY_CACHE_SIZE",
    "HKMS_KEY_CACHE_SECONDS",
)

TARGET_REK_RATIO = 1.5
TARGET_REWRAP_PER_S = 20_000
TARGET_DEK_ROTATE_PER_S = 5_000
#: "Flat" memory: a phase's peak at the largest S may exceed the smallest S's by this much at most
#: (16 MiB over 100k items is 168 bytes an item: less than one Python object per item).
MEMORY_SLACK_MIB = 16.0


# --- memory --------------------------------------------------------------------------------
def _vm_hwm_kib() -> int | None:
    try:
        match = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _vm_rss_kib() -> int:
    match = re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _sqlite_highwater() -> Callable[[int], int] | None:
    """``sqlite3_memory_highwater`` of the SQLite library this Python uses (None if unreachable).

    SQLite's page caches (``cache_size``, 64 MiB per connection in the settings) live in
    the process: a rotation over a large database fills them up to that bound, and the
    process's RSS shows it.  Reading SQLite's own high-water mark lets the memory target
    judge what the rotation itself keeps (RSS minus SQLite's allocations).
    """
    try:
        import _sqlite3
        import ctypes

        function = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_highwater
    except (ImportError, OSError, AttributeError):
        return None
    function.restype, function.argtypes = ctypes.c_int64, [ctypes.c_int]
    return function


SQLITE_HIGHWATER = _sqlite_highwater()


def measure(fn: Callable[[], Any], use_rss: bool) -> tuple[Any, float, float, float]:
    """``(result, seconds, peak MiB, SQLite's peak MiB)`` of one call.

    With ``use_rss`` the peak is the process's peak RSS during the call (reset
    just before it): the interpreter and Django (the same at every S), SQLite's
    page caches (bounded by ``cache_size``) and whatever the call needed.
    Otherwise tracemalloc's peak of Python allocations (which slows the call, so
    its seconds are less comparable).  SQLite's peak is its own allocations'
    high-water mark during the call (0 when unavailable).
    """
    os.sync()  # flush what earlier phases wrote, so that each phase pays for its own I/O only
    if SQLITE_HIGHWATER is not None:
        SQLITE_HIGHWATER(1)
    if use_rss:
        _reset_peak()
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        peak = (_vm_hwm_kib() or 0) / 1024
    else:
        tracemalloc.start()
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        _current, peak_bytes = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak = peak_bytes / 2**20
    sqlite_peak = SQLITE_HIGHWATER(0) / 2**20 if SQLITE_HIGHWATER is not None and use_rss else 0.0
    return result, seconds, peak, sqlite_peak


# --- one size, in a child process ----------------------------------------------------------
def payload(i: int) -> bytes:
    """The i-th payload (88 bytes), reproducible so it need not be kept in memory."""
    return b"bench-payload-%08d-" % i + hashlib.sha256(b"%d" % i).digest() * 2


def _setup_django(data_dir: Path, *, migrate: bool) -> None:
    for name in _DB_ENV:
        os.environ.pop(name, None)
    os.environ["HKMS_DATA_DIR"] = str(data_dir)
    os.environ["HKMS_TEST_POSTGRES"] = "0"
    os.environ["DJANGO_SETTINGS_MODULE"] = "hkms_site.settings"
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        for alias in ("default", "kek", "dek"):
            call_command("migrate", database=alias, verbosity=0, interactive=False)


def _seed(size: int, n_keys: int) -> list[Any]:
    """10 projects (one key each) and ``size`` versions, bulk-inserted, DEKs committed first."""
    import uuid

    from django.db import transaction

    from keys_app import crypto
    from keys_app.models import Dek
    from keys_app.services.material import dek_wrap
    from keys_app.services.projects import project_create_with_default_key as project_create
    from keys_app.services.projects import project_default_key
    from keys_app.services.root import hierarchy_init
    from secrets_app.models import Secret, SecretVersion
    from secrets_app.storage import payload_seal

    hierarchy_init()
    projects = [project_create(name=f"bench-{i}") for i in range(n_keys)]
    keys = [project_default_key(p) for p in projects]
    n_secrets = -(-size // VERSIONS_PER_SECRET)
    done = 0
    for first in range(0, n_secrets, SEED_BATCH // VERSIONS_PER_SECRET):
        secrets_batch, deks, versions = [], [], []
        for s in range(first, min(n_secrets, first + SEED_BATCH // VERSIONS_PER_SECRET)):
            project, key = projects[s % n_keys], keys[s % n_keys]
            count = min(VERSIONS_PER_SECRET, size - s * VERSIONS_PER_SECRET)
            secret = Secret(id=uuid.uuid4(), project=project, key=key, name=f"bench-{s}", version_count=count)
            secrets_batch.append(secret)
            for revision in range(1, count + 1):
                dek_id, material = uuid.uuid4(), crypto.generate_key()
                version_id = uuid.uuid4()
                deks.append(
                    Dek(
                        id=dek_id,
                        key_id=key.id,
                        kek_version=key.primary_version,
                        wrapped=dek_wrap(key.id, key.primary_version, dek_id, material),
                        owner_id=version_id,
                    )
                )
                data = payload(s * VERSIONS_PER_SECRET + revision - 1)
                versions.append(
                    SecretVersion(
                        id=version_id,
                        secret=secret,
                        revision=revision,
                        dek_id=dek_id,
                        ciphertext=payload_seal(
                            material=material, data=data, secret_id=secret.id, revision=revision, dek_id=dek_id
                        ),
                    )
                )
        with transaction.atomic(using="dek"):
            Dek.objects.using("dek").bulk_create(deks, batch_size=1000)
        with transaction.atomic():
            Secret.objects.bulk_create(secrets_batch, batch_size=1000)
            SecretVersion.objects.bulk_create(versions, batch_size=1000)
        done += len(versions)
    assert done == size, (done, size)
    return keys


def _check_payloads(size: int, full: bool) -> dict[str, Any]:
    """Read versions back through the service; compare with :func:`payload`."""
    from keys_app.services import material, root
    from secrets_app.models import SecretVersion
    from secrets_app.services.verification import hierarchy_verify
    from secrets_app.storage import secret_version_payload

    material.key_cache().clear()
    root.forget_verified_root_keys()
    qs = SecretVersion.objects.select_related("secret__key")
    if full:
        versions = list(qs)
    else:
        names = {f"bench-{s}" for s in random.Random(size).sample(range(size // VERSIONS_PER_SECRET), 200)}
        versions = list(qs.filter(secret__name__in=names))
    bad = 0
    for version in versions:
        index = int(version.secret.name.split("-")[1]) * VERSIONS_PER_SECRET + version.revision - 1
        if secret_version_payload(version) != payload(index):
            bad += 1
    verified = hierarchy_verify() if full else None
    return {
        "read_back": len(versions),
        "mismatches": bad,
        "verify_ok": None if verified is None else verified["ok"],
        "ok": bad == 0 and len(versions) > 0 and (verified is None or verified["ok"]),
    }


def _naive(size: int) -> float:
    """Seconds for MultiFernet.rotate over ``size`` payloads (the encryptions are not timed)."""
    from cryptography.fernet import Fernet, MultiFernet

    old, new = Fernet(Fernet.generate_key()), Fernet(Fernet.generate_key())
    rotator = MultiFernet([new, old])
    seconds = 0.0
    for first in range(0, size, 10_000):
        tokens = [old.encrypt(payload(i)) for i in range(first, min(size, first + 10_000))]
        started = time.perf_counter()
        for token in tokens:
            rotator.rotate(token)
        seconds += time.perf_counter() - started
    return seconds


def seed_one(size: int, n_keys: int, data_dir: Path) -> dict[str, Any]:
    """Child process 1: migrate and seed ``data_dir``."""
    _setup_django(data_dir, migrate=True)
    started = time.perf_counter()
    _seed(size, n_keys)
    return {"seed_seconds": time.perf_counter() - started}


def _queries(fn: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    captures = {alias: CaptureQueriesContext(connections[alias]) for alias in ("default", "kek", "dek")}
    for capture in captures.values():
        capture.__enter__()
    try:
        result = fn()
    finally:
        for capture in captures.values():
            capture.__exit__(None, None, None)
    return result, {alias: len(capture) for alias, capture in captures.items()}


def rotate_one(size: int, n_keys: int, data_dir: Path) -> dict[str, Any]:
    """Child process 2 (fresh, so seeding's memory is not in its peaks): the timed phases."""
    _setup_django(data_dir, migrate=False)
    from keys_app.models import Key
    from keys_app.services.rotation.kek import deks_rewrap, kek_rotate
    from keys_app.services.rotation.rek import rek_rotate
    from secrets_app.services.dek_rotation import deks_rotate

    use_rss = _reset_peak() and _vm_hwm_kib() is not None
    baseline_mib = _vm_rss_kib() / 1024
    rek_runs = []
    for _ in range(REK_RUNS):
        result, seconds, mib, sqlite_mib = measure(rek_rotate, use_rss)
        assert result["kek_versions_rewrapped"] == n_keys, result
        rek_runs.append((seconds, mib, sqlite_mib))
    _result, rek_queries = _queries(rek_rotate)

    def rewrap() -> dict[str, Any]:
        for key in Key.objects.all():
            kek_rotate(key=key)
        return deks_rewrap()

    result, rewrap_seconds, rewrap_mib, rewrap_sqlite_mib = measure(rewrap, use_rss)
    assert result["deks_rewrapped"] == size, result
    result, rotate_seconds, rotate_mib, rotate_sqlite_mib = measure(deks_rotate, use_rss)
    assert result["versions_rotated"] == size, result
    naive_seconds = _naive(size)
    check = _check_payloads(size, full=size <= 10_000)
    return {
        "size": size,
        "keys": n_keys,
        "memory_probe": "peak RSS" if use_rss else "tracemalloc",
        "baseline_mib": baseline_mib,
        "rek_queries": rek_queries,
        "rek_seconds": min(s for s, _, _ in rek_runs),
        "rek_median_seconds": statistics.median(s for s, _, _ in rek_runs),
        "rek_mib": max(m for _, m, _ in rek_runs),
        "rek_sqlite_mib": max(q for _, _, q in rek_runs),
        "rek_runs_ms": [round(s * 1000, 1) for s, _, _ in rek_runs],
        "rewrap_seconds": rewrap_seconds,
        "rewrap_mib": rewrap_mib,
        "rewrap_sqlite_mib": rewrap_sqlite_mib,
        "rotate_seconds": rotate_seconds,
        "rotate_mib": rotate_mib,
        "rotate_sqlite_mib": rotate_sqlite_mib,
        "naive_seconds": naive_seconds,
        "check": check,
        "db_mib": {p.name: round(p.stat().st_size / 2**20, 1) for p in data_dir.glob("*.sqlite3")},
    }


def run_size(size: int, n_keys: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hkms-bench-") as tmp:
        row: dict[str, Any] = {}
        for step in ("--seed-child", "--rotate-child"):
            child = subprocess.run(
                [sys.executable, __file__, step, str(size), "--keys", str(n_keys), "--data-dir", tmp],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                raise RuntimeError(f"{step} {size} failed:\n{child.stdout[-3000:]}\n{child.stderr[-5000:]}")
            row.update(json.loads(child.stdout.strip().splitlines()[-1]))
        return row


# --- the table -----------------------------------------------------------------------------
def _rate(items: int, seconds: float) -> str:
    return f"{items / seconds:>10,.0f}/s" if seconds > 0 else "         -"


def report(rows: list[dict[str, Any]]) -> list[tuple[str, bool, str]]:
    print()
    print(
        f"{'S':>8} | {'REK rotation':>21} | {'KEK re-wrap (S DEKs)':>24} | {'DEK rotation (S versions)':>25} | "
        f"{'naive MultiFernet':>23} | {'naive/REK':>9} | {'peak RSS MiB rek/rewrap/rot':>27}"
    )
    print("-" * 157)
    for r in rows:
        s = r["size"]
        print(
            f"{s:>8,} | {r['rek_seconds'] * 1000:>8.1f} ms {_rate(r['keys'], r['rek_seconds'])} | "
            f"{r['rewrap_seconds']:>8.3f} s {_rate(s, r['rewrap_seconds'])} | "
            f"{r['rotate_seconds']:>9.3f} s {_rate(s, r['rotate_seconds'])} | "
            f"{r['naive_seconds']:>7.3f} s {_rate(s, r['naive_seconds'])} | "
            f"{r['naive_seconds'] / r['rek_seconds']:>8.1f}x | "
            f"{r['rek_mib']:>8.1f} {r['rewrap_mib']:>8.1f} {r['rotate_mib']:>8.1f}"
        )
    print()
    for r in rows:
        check = r["check"]
        queries = ", ".join(f"{alias} {n}" for alias, n in r["rek_queries"].items())
        print(
            f"S={r['size']:,}: seeded in {r['seed_seconds']:.1f} s (databases {r['db_mib']} MiB); "
            f"REK rotation best {r['rek_seconds'] * 1000:.1f} ms, median {r['rek_median_seconds'] * 1000:.1f} ms, "
            f"queries: {queries}; naive/re-wrap {r['naive_seconds'] / r['rewrap_seconds']:.2f}x, "
            f"naive/DEK rotation {r['naive_seconds'] / r['rotate_seconds']:.2f}x; read back {check['read_back']} "
            f"versions, {check['mismatches']} mismatches"
            + ("" if check["verify_ok"] is None else f", verify_hierarchy ok={check['verify_ok']}")
            + f"; memory probe {r['memory_probe']} (idle {r['baseline_mib']:.1f} MiB; of the peaks, "
            f"SQLite's page caches and allocations rek/rewrap/rot "
            f"{r['rek_sqlite_mib']:.1f}/{r['rewrap_sqlite_mib']:.1f}/{r['rotate_sqlite_mib']:.1f} MiB)"
        )
    small, large = rows[0], rows[-1]
    rek_ratio = large["rek_seconds"] / small["rek_seconds"]
    targets = [
        (
            f"REK rotation at S={large['size']:,} within {TARGET_REK_RATIO}x of S={small['size']:,}",
            rek_ratio <= TARGET_REK_RATIO,
            f"{rek_ratio:.2f}x",
        ),
        (
            "REK rotation touches neither default nor dek, same queries at every S",
            all(
                r["rek_queries"] == small["rek_queries"]
                and r["rek_queries"]["default"] == 0
                and r["rek_queries"]["dek"] == 0
                for r in rows
            ),
            f"{small['rek_queries']} -> {large['rek_queries']}",
        ),
        (
            f"KEK re-wrap >= {TARGET_REWRAP_PER_S:,} DEKs/s at S={large['size']:,}",
            large["size"] / large["rewrap_seconds"] >= TARGET_REWRAP_PER_S,
            f"{large['size'] / large['rewrap_seconds']:,.0f}/s",
        ),
        (
            f"DEK rotation >= {TARGET_DEK_ROTATE_PER_S:,} versions/s at S={large['size']:,}",
            large["size"] / large["rotate_seconds"] >= TARGET_DEK_ROTATE_PER_S,
            f"{large['size'] / large['rotate_seconds']:,.0f}/s",
        ),
    ]
    for phase in ("rek", "rewrap", "rotate"):
        a = small[f"{phase}_mib"] - small[f"{phase}_sqlite_mib"]
        b = large[f"{phase}_mib"] - large[f"{phase}_sqlite_mib"]
        targets.append(
            (
                f"memory flat in S ({phase}): peak RSS less SQLite's bounded page cache at S={large['size']:,} "
                f"<= S={small['size']:,} + {MEMORY_SLACK_MIB:.0f} MiB",
                b <= a + MEMORY_SLACK_MIB,
                f"{a:.1f} -> {b:.1f} MiB (SQLite {small[f'{phase}_sqlite_mib']:.1f} -> "
                f"{large[f'{phase}_sqlite_mib']:.1f} MiB, at most cache_size per connection)",
            )
        )
    print("\ntargets:")
    for name, ok, figure in targets:
        print(f"  [{'PASS' if ok else 'MISS'}] {name}: {figure}")
    return targets


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="S = 200 and 1000 only (under a minute)")
    parser.add_argument("--sizes", help="comma-separated S values (default 1000,10000,100000)")
    parser.add_argument("--keys", type=int, default=10, help="number of keys (default 10)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--seed-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rotate-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.seed_child is not None:
        print(json.dumps(seed_one(args.seed_child, args.keys, Path(args.data_dir))), flush=True)
        return 0
    if args.rotate_child is not None:
        print(json.dumps(rotate_one(args.rotate_child, args.keys, Path(args.data_dir))), flush=True)
        return 0

    sizes = [200, 1000] if args.quick else [int(s) for s in (args.sizes or "1000,10000,100000").split(",")]
    print(
        f"HKMS rotation scaling on SQLite files, {args.keys} keys, {VERSIONS_PER_SECRET} versions per secret; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows = []
    for size in sizes:
        print(f"S={size:,}: seeding and rotating ...", flush=True)
        try:
            rows.append(run_size(size, args.keys))
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
    targets = report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "targets": targets}, indent=2))
    if not all(r["check"]["ok"] for r in rows):
        print("\nFAILED: payloads did not read back identical after the rotations", file=sys.stderr)
        return 1
    if args.strict and not all(ok for _, ok, _ in targets):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
