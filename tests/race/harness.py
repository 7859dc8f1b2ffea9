"""A small harness for race tests against a live multi-worker server.

``fire(server, calls)`` runs each :class:`Call` in its own thread.  Every thread
opens its TCP connection and builds its request first, then all wait on one
``threading.Barrier`` and send together; a call with ``repeat > 1`` sends again
on a fresh connection as soon as its answer is in (to keep hitting a window).
Each answer is recorded with the monotonic instants just before it was sent
and just after it was read, so a test can state "a request sent after that
acknowledgment" precisely: ``later.sent > ack.done``.

Bounds: every socket has a timeout, the barrier has one, and :func:`rounds`
stops a test's loop at a round count or a wall-clock budget, whichever first.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

SM = "/secret-manager/v1beta1/regions/fr-par"
KM = "/key-manager/v1alpha1/regions/fr-par"
TIMEOUT = 30.0


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    path: str
    token: str
    body: Any = None
    repeat: int = 1


@dataclass
class Answer:
    name: str
    status: int
    body: bytes
    sent: float
    done: float

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Api:
    """Plain sequential requests (set-up and checks between the races)."""

    url: str
    token: str
    calls: int = field(default=0)

    def send(self, method: str, path: str, body: Any = None) -> Answer:
        return _send(_connect(self.url), Call("api", method, path, self.token, body))

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.send(method, path, body)
        assert answer.status < 300, f"{method} {path}: {answer.status} {answer.body[:300]!r}"
        return answer.json()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=TIMEOUT)
    conn.connect()
    return conn


def _prepare(call: Call) -> tuple[bytes | None, dict[str, str]]:
    headers = {"X-Auth-Token": call.token, "Connection": "close"}
    payload = None
    if call.body is not None:
        payload = json.dumps(call.body).encode()
        headers["Content-Type"] = "application/json"
    return payload, headers


def _send(conn: http.client.HTTPConnection, call: Call) -> Answer:
    payload, headers = _prepare(call)
    try:
        sent = time.monotonic()
        conn.request(call.method, call.path, body=payload, headers=headers)
        response = conn.getresponse()
        body = response.read()
        return Answer(call.name, response.status, body, sent, time.monotonic())
    finally:
        conn.close()


def fire(url: str, calls: list[Call]) -> list[Answer]:
    """Send ``calls`` together (behind one barrier); every answer, in no particular order."""
    barrier = threading.Barrier(len(calls), timeout=TIMEOUT)
    answers: list[Answer] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(call: Call) -> None:
        try:
            conn = _connect(url)
            barrier.wait()
            mine = [_send(conn, call)]
            for _ in range(call.repeat - 1):
                mine.append(_send(_connect(url), call))
            with lock:
                answers.extend(mine)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * (1 + max(c.repeat for c in calls)))
    if errors:
        raise errors[0]
    return answers


def rounds(max_rounds: int, seconds: float) -> Iterator[int]:
    """0, 1, 2, … up to ``max_rounds`` rounds or ``seconds`` of wall time, whichever ends first."""
    deadline = time.monotonic() + seconds
    for n in range(max_rounds):
        if n and time.monotonic() > deadline:
            return
        yield n


def named(answers: list[Answer], name: str) -> list[Answer]:
    return [a for a in answers if a.name == name]


def single(answers: list[Answer], name: str) -> Answer:
    found = named(answers, name)
    assert len(found) == 1, f"{len(found)} answers named {name}"
    return found[0]
