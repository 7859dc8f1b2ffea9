"""The failover drill: two HKMS nodes on a replicated PostgreSQL cluster, the primary killed mid-load.

Run by ``tests/multinode/test_failover_drill.py`` (PostgreSQL runs of ``make test``) and by hand::

    .venv/bin/python -m tests.multinode.drill [--async] [--stall] [--seconds 3]

What it does: a primary and a streaming replica (:class:`~tests.multinode.pgcluster.PgCluster`,
``synchronous_commit=remote_apply`` with ``ANY 1 (replica1)`` unless ``--async``) hold the three
databases; two gunicorn nodes (2 workers each, one shared root keyring) reach them through libpq
multi-host URLs with ``target_session_attrs=read-write``.  Four client threads (two per node)
create secrets, add versions with random payloads and read acknowledged versions back.  Then the
primary is killed (``pg_ctl stop -m immediate``), the load goes on against the outage, the
replica is promoted, and the load goes on until both nodes have served writes again.
``--stall`` cuts the replica off the primary for the last seconds before the kill (asynchronous
replication then loses what was acknowledged meanwhile; synchronous replication blocks commits
instead, which is the point).

The report counts, per phase, the answers by status, and checks: no 5xx other than 503 in any
phase (no 500, no HTML error page), 503s (JSON, Scaleway's shape) during the outage, both nodes
ready again after the promotion, every acknowledged version readable with the identical payload
from both nodes, no revision acknowledged twice for a secret, and ``verify_hierarchy`` and
``verify_audit_log`` passing on the promoted database.  Bounded: about a minute in all.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import secrets as pysecrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.multinode.pgcluster import PgCluster, free_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
BASE = "/secret-manager/v1beta1/regions/fr-par"
DATABASES = {"default": "hkms_default", "kek": "hkms_kek", "dek": "hkms_dek"}
_SETUP = """
import django
django.setup()
from io import StringIO
from django.core.management import call_command
for alias in ("default", "kek", "dek"):
    call_command("migrate", database=alias, interactive=False, verbosity=0)
call_command("init_hierarchy", stdout=StringIO())
out = StringIO()
call_command("create_api_key", "--user", "drill", "--create-user", "--create-project", "drill",
             "--role", "project_admin", "--json", stdout=out)
print(out.getvalue().strip().splitlines()[-1])
"""


@dataclass
class Node:
    name: str
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                GUNICORN,
                "hkms_site.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


def request(
    port: int, method: str, path: str, token: str | None = None, body: Any = None, timeout: float = 20
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Connection": "close", "Content-Type": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@dataclass
class Report:
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    acknowledged: dict[tuple[str, int], bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    outage_bodies: list[bytes] = field(default_factory=list)
    served_after_promotion: Counter[str] = field(default_factory=Counter)
    timings: dict[str, float] = field(default_factory=dict)
    lost: list[tuple[str, int]] = field(default_factory=list)
    mismatched: list[tuple[str, int]] = field(default_factory=list)
    reused: list[tuple[str, int]] = field(default_factory=list)
    verify: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "statuses": {phase: dict(counter) for phase, counter in self.statuses.items()},
            "acknowledged_versions": len(self.acknowledged),
            "lost": len(self.lost),
            "mismatched": len(self.mismatched),
            "revisions_reused": len(self.reused),
            "served_after_promotion": dict(self.served_after_promotion),
            "verify_exit_codes": self.verify,
            "timings": {k: round(v, 1) for k, v in self.timings.items()},
            "problems": self.problems,
        }


class Load:
    """Client threads: create secrets, add versions, read acknowledged ones back; record everything."""

    def __init__(self, nodes: list[Node], token: str, project_id: str, report: Report) -> None:
        self.nodes, self.token, self.project_id, self.report = nodes, token, project_id, report
        self.phase = "before"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(4)]

    def _note(self, node: Node, status: int | str, body: bytes = b"") -> None:
        with self.lock:
            self.report.statuses[self.phase][f"{node.name}:{status}"] += 1
            if status == 503 and self.phase == "outage" and len(self.report.outage_bodies) < 50:
                self.report.outage_bodies.append(body)
            if isinstance(status, int) and status >= 500 and status != 503:
                self.report.problems.append(f"{self.phase}: {node.name} answered {status}: {body[:200]!r}")
            if status == 200 and self.phase == "promoted":
                self.report.served_after_promotion[node.name] += 1

    def _call(self, node: Node, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        try:
            status, _, content = request(node.port, method, path, self.token, body)
        except OSError as exc:
            self._note(node, type(exc).__name__)
            return 0, b""
        self._note(node, status, content)
        return status, content

    def _run(self, index: int) -> None:
        node = self.nodes[index % len(self.nodes)]
        rng = random.Random(index)
        secret_id: str | None = None
        last_revision: dict[str, int] = {}
        while not self.stop.is_set():
            if secret_id is None or rng.random() < 0.1:
                status, content = self._call(
                    node,
                    "POST",
                    f"{BASE}/secrets",
                    {"name": f"drill-{index}-{pysecrets.token_hex(4)}", "project_id": self.project_id},
                )
                if status == 200:
                    secret_id = json.loads(content)["id"]
                if secret_id is None:
                    time.sleep(0.05)
                    continue
            payload = pysecrets.token_bytes(24)
            status, content = self._call(
                node, "POST", f"{BASE}/secrets/{secret_id}/versions", {"data": base64.b64encode(payload).decode()}
            )
            if status == 200:
                revision = int(json.loads(content)["revision"])
                with self.lock:
                    if (secret_id, revision) in self.report.acknowledged:
                        self.report.reused.append((secret_id, revision))
                    self.report.acknowledged[(secret_id, revision)] = payload
                if revision <= last_revision.get(secret_id, 0):
                    with self.lock:
                        self.report.reused.append((secret_id, revision))
                last_revision[secret_id] = revision
            with self.lock:
                known = list(self.report.acknowledged.items())
            if known:
                (sid, rev), expected = rng.choice(known)
                status, content = self._call(node, "GET", f"{BASE}/secrets/{sid}/versions/{rev}/access")
                if status == 200 and base64.b64decode(json.loads(content)["data"]) != expected:
                    with self.lock:
                        self.report.mismatched.append((sid, rev))
            if status != 200:
                time.sleep(0.05)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def _wait_ready(node: Node, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.process is not None and node.process.poll() is not None:
            return False
        try:
            if request(node.port, "GET", "/health/ready", timeout=5)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def run_drill(
    workdir: Path, *, synchronous: bool = True, stall: bool = False, seconds: float = 3.0, log: Any = print
) -> Report:
    report = Report()
    started = time.monotonic()
    cluster = PgCluster(synchronous=synchronous)  # its own directory under /tmp, owned by postgres
    nodes: list[Node] = []
    try:
        cluster.start()
        cluster.create_databases(*DATABASES.values())
        report.timings["cluster"] = time.monotonic() - started
        env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL") and not k.startswith("PG")}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "hkms_site.settings",
                "DJANGO_SECRET_KEY": pysecrets.token_urlsafe(50),
                "HKMS_ROOT_KEY_FILE": str(workdir / "root_keyring.json"),
                "DATABASE_URL": cluster.url(DATABASES["default"]),
                "KEK_DATABASE_URL": cluster.url(DATABASES["kek"]),
                "DEK_DATABASE_URL": cluster.url(DATABASES["dek"]),
                "HKMS_DB_OPTIONS": "connect_timeout=3",
                "HKMS_TEST_POSTGRES": "0",
                "HKMS_THROTTLE_ANON": "100000/minute",
                "HKMS_THROTTLE_USER": "100000/minute",
                "HKMS_AUTH_FAILURES_PER_MINUTE": "100000",
            }
        )
        setup_env = {**env, "HKMS_DATA_DIR": str(workdir / "setup")}
        result = subprocess.run(
            [PYTHON, "-c", _SETUP], cwd=ROOT, env=setup_env, capture_output=True, text=True, timeout=180
        )
        if result.returncode != 0:
            raise RuntimeError(f"setup failed: {result.stderr[-2000:]}")
        credentials = json.loads(result.stdout.strip().splitlines()[-1])
        report.timings["setup"] = time.monotonic() - started
        for name in ("a", "b"):
            node_env = {**env, "HKMS_DATA_DIR": str(workdir / f"node-{name}")}
            Path(node_env["HKMS_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
            nodes.append(Node(name, free_port(), node_env, workdir / f"node-{name}.log"))
        for node in nodes:
            node.start()
        for node in nodes:
            if not _wait_ready(node, 60):
                raise RuntimeError(f"node {node.name} did not become ready: {node.log.read_text()[-2000:]}")
        report.timings["nodes_ready"] = time.monotonic() - started
        log(f"drill: cluster on ports {cluster.primary_port}/{cluster.replica_port}, nodes ready")

        load = Load(nodes, credentials["secret_key"], credentials["project_id"], report)
        load.start()
        time.sleep(seconds)
        if stall:
            # Cut the replica off: the walreceiver stops, the primary goes on alone.
            cluster.sql(cluster.replica_port, "ALTER SYSTEM SET primary_conninfo = ''")
            cluster.sql(cluster.replica_port, "SELECT pg_reload_conf()")
            time.sleep(2)
        load.phase = "outage"
        cluster.kill_primary()
        report.timings["killed"] = time.monotonic() - started
        log("drill: primary killed")
        time.sleep(1.5)
        for node in nodes:
            status, headers, content = request(node.port, "GET", "/health", timeout=20)
            report.statuses["outage-health"][f"{node.name}:{status}"] += 1
            if status != 503 or not headers.get("content-type", "").startswith("application/json"):
                report.problems.append(f"outage: {node.name} /health answered {status} {content[:100]!r}")
        cluster.promote()
        load.phase = "promoted"
        report.timings["promoted"] = time.monotonic() - started
        log("drill: replica promoted")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(report.served_after_promotion[node.name] >= 6 for node in nodes):
                break
            time.sleep(0.2)
        load.finish()
        report.timings["load_done"] = time.monotonic() - started
        for node in nodes:
            if report.served_after_promotion[node.name] < 6:
                report.problems.append(f"promoted: {node.name} served only {report.served_after_promotion[node.name]}")
            if not _wait_ready(node, 20):
                report.problems.append(f"promoted: {node.name} is not ready again")

        # Every acknowledged version, from both nodes, byte for byte.
        for (sid, rev), expected in sorted(report.acknowledged.items()):
            for node in nodes:
                status, _, content = request(
                    node.port, "GET", f"{BASE}/secrets/{sid}/versions/{rev}/access", credentials["secret_key"]
                )
                if status != 200:
                    report.lost.append((sid, rev))
                    break
                if base64.b64decode(json.loads(content)["data"]) != expected:
                    report.mismatched.append((sid, rev))
                    break
        for body in report.outage_bodies:
            try:
                shape = json.loads(body)
            except ValueError:
                report.problems.append(f"outage: a 503 that is not JSON: {body[:100]!r}")
                continue
            if shape.get("type") != "service_unavailable" or "message" not in shape:
                report.problems.append(f"outage: a 503 not in Scaleway's shape: {shape}")
        if not report.outage_bodies:
            report.problems.append("outage: no request was answered 503 while the primary was down")
        promoted_env = {**env, "HKMS_DATA_DIR": str(workdir / "setup")}
        for name in ("default", "kek", "dek"):
            var = {"default": "DATABASE_URL", "kek": "KEK_DATABASE_URL", "dek": "DEK_DATABASE_URL"}[name]
            promoted_env[var] = f"postgres://postgres@127.0.0.1:{cluster.replica_port}/{DATABASES[name]}"
        # The runbook after a failover: a version write cut by the outage committed its DEK (first,
        # by design) but not its version row; those DEKs protect nothing and the load has ended,
        # so `--repair` destroys them at once (audited), then both verifications must pass.
        repair = subprocess.run(
            [PYTHON, "manage.py", "verify_hierarchy", "--repair", "--grace-seconds", "0"],
            cwd=ROOT,
            env=promoted_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        report.verify["verify_hierarchy --repair"] = repair.returncode
        for command in ("verify_hierarchy", "verify_audit_log"):
            check = subprocess.run(
                [PYTHON, "manage.py", command], cwd=ROOT, env=promoted_env, capture_output=True, text=True, timeout=120
            )
            report.verify[command] = check.returncode
            if check.returncode != 0:
                report.problems.append(f"{command} failed: {(check.stdout + check.stderr)[-600:]}")
        report.timings["total"] = time.monotonic() - started
        return report
    finally:
        for node in nodes:
            node.stop()
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--async", dest="asynchronous", action="store_true", help="asynchronous replication")
    parser.add_argument("--stall", action="store_true", help="cut replication for 2 s before the kill")
    parser.add_argument("--seconds", type=float, default=3.0, help="load before the kill (seconds)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hkms-drill-") as tmp:
        workdir = Path(tmp)
        report = run_drill(workdir, synchronous=not args.asynchronous, stall=args.stall, seconds=args.seconds)
    print(json.dumps(report.summary(), indent=2))
    ok = not (report.problems or report.lost or report.mismatched or report.reused)
    print("drill: PASSED" if ok else "drill: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
