"""The server of ``make run`` (scripts/serve.sh: granian), live: slow clients do not starve it,
and a change made in one process is seen by the next read in every worker process.

Bounded: one server, 12 slow connections for about 7 s, a few dozen reads.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.live import ROOT, LiveServer

SLOW_CONNECTIONS = 12
HEADER_TIMEOUT_MS = 4000
BASE = "/secret-manager/v1beta1/regions/fr-par"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = LiveServer(
        tmp_path_factory.mktemp("make-run"),
        command=[str(ROOT / "scripts" / "serve.sh")],
        extra_env={"HEADER_TIMEOUT_MS": str(HEADER_TIMEOUT_MS), "ACCESS_LOG": "0",  # make run's workers, threads
                   "BIN": str(Path(sys.executable).parent)},
    )  # fmt: skip
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def reader(server):
    """An API key of a project admin, and a secret with one version."""
    creds = server.create_api_key("--user", "app", "--create-user", "--create-project", "app", "--role",
                                  "project_admin")  # fmt: skip
    headers = {"X-Auth-Token": creds["secret_key"], "Content-Type": "application/json"}
    status, secret = call(server, "POST", f"{BASE}/secrets", headers, {"project_id": creds["project_id"], "name": "db"})
    assert status == 200, secret
    status, _ = call(server, "POST", f"{BASE}/secrets/{secret['id']}/versions", headers,
                     {"data": base64.b64encode(b"s3cret").decode()})  # fmt: skip
    assert status == 200
    return {**creds, "headers": headers, "secret_id": secret["id"]}


def call(server, method, path, headers, body=None, timeout: float = 5.0):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def access(server, reader):
    return call(server, "GET", f"{BASE}/secrets/{reader['secret_id']}/versions/latest_enabled/access",
                reader["headers"])  # fmt: skip


class SlowClient(threading.Thread):
    """Sends a request line, then one header line per second, never the blank line."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.stop = stop
        self.closed_after: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            self.sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for line in range(100):
                if self.stop.wait(1.0):
                    return
                self.sock.sendall(f"X-Slow-{line}: {line}\r\n".encode())
        except OSError:  # the server hung up on us
            self.closed_after = time.monotonic() - started
        finally:
            self.sock.close()


def test_slow_clients_do_not_starve_legitimate_reads(server, reader):
    stop = threading.Event()
    begun = time.monotonic()
    slow = [SlowClient(server.port, stop) for _ in range(SLOW_CONNECTIONS)]
    for client in slow:
        client.start()
    latencies = []
    try:
        time.sleep(1.5)  # every slow connection is open and trickling
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            started = time.monotonic()
            status, body = access(server, reader)  # a 5 s socket timeout: a starved server fails here
            latencies.append(time.monotonic() - started)
            assert status == 200 and base64.b64decode(body["data"]) == b"s3cret"
            time.sleep(0.2)
        # ... and the server hangs up on a client that has not finished its headers in time
        # (seen at the second write after the hang-up: within a second or two).
        while any(c.closed_after is None for c in slow) and time.monotonic() - begun < HEADER_TIMEOUT_MS / 1000 + 4:
            time.sleep(0.2)
    finally:
        stop.set()
        for client in slow:
            client.join(timeout=5)
    assert len(latencies) >= 5 and max(latencies) < 2.0, latencies
    closed = [c.closed_after for c in slow]
    assert all(after is not None and after < HEADER_TIMEOUT_MS / 1000 + 4 for after in closed), closed


def test_a_change_in_one_process_is_seen_by_the_next_read_in_every_worker(server, reader):
    """Both workers have the principal and the DEK cached; a change made elsewhere (a command,
    the other worker) applies to the very next read, whichever worker serves it."""
    for _ in range(12):  # warm both workers: principal, grants and DEK cached
        assert access(server, reader)[0] == 200
    _status, secret = call(server, "GET", f"{BASE}/secrets/{reader['secret_id']}", reader["headers"])
    key_path = f"/key-manager/v1alpha1/regions/fr-par/keys/{secret['key_id']}"
    assert call(server, "POST", f"{key_path}/disable", reader["headers"], {})[0] == 200
    assert {access(server, reader)[0] for _ in range(12)} == {412}
    assert call(server, "POST", f"{key_path}/enable", reader["headers"], {})[0] == 200
    assert {access(server, reader)[0] for _ in range(12)} == {200}

    server.manage("revoke_role", "--user", "app", "--role", "project_admin", "--project", reader["project_id"])
    assert {access(server, reader)[0] for _ in range(12)} == {404}
    server.manage("revoke_api_key", reader["access_key"])
    assert {access(server, reader)[0] for _ in range(12)} == {401}
