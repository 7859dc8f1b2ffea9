"""Conflicting requests and commands fired together at a 4-worker server: what was acknowledged holds.

Each test repeats a round: set up fresh objects, fire the conflicting calls
behind one barrier (``harness.fire``), then check the round's invariant and
count the rounds that broke it; the test fails if any did.  Rounds are
bounded by a count and a few seconds of wall time.  Invariants:

* a version DELETE or secret DELETE that answered 204 stays in effect: the
  versions end ``scheduled_for_deletion`` whatever enable/disable calls raced it;
* a request sent after a delete's 204 never gets the payload (a 200 access was
  sent before the delete answered);
* of concurrent deletes of one object exactly one answers 204;
* versions destroyed by ``expire_secret_versions`` end ``deleted`` however many
  enable/disable calls raced it;
* no encrypt sent after a key's disable answered succeeds;
* no request sent after ``revoke_api_key`` returned authenticates with that key.
"""

from __future__ import annotations

import json
import threading
import time

from tests.race.harness import KM, SM, Answer, Api, Call, b64, fire, named, rounds, single

PAYLOAD = b"race-payload-4d1f"


def new_secret(api: Api, project_id: str, versions: int = 1, **fields: object) -> str:
    secret = api.ok("POST", f"{SM}/secrets", {"project_id": project_id, "name": f"s-{time.monotonic_ns()}", **fields})
    for _ in range(versions):
        api.ok("POST", f"{SM}/secrets/{secret['id']}/versions", {"data": b64(PAYLOAD)})
    return str(secret["id"])


def version_statuses(api: Api, secret_id: str) -> list[str]:
    listing = api.ok("GET", f"{SM}/secrets/{secret_id}/versions?page_size=100")
    return [v["status"] for v in sorted(listing["versions"], key=lambda v: v["revision"])]


def toggles(site_token: str, path: str, enables: int, disables: int, repeat: int = 2) -> list[Call]:
    return [Call("enable", "POST", f"{path}/enable", site_token, {}, repeat) for _ in range(enables)] + [
        Call("disable", "POST", f"{path}/disable", site_token, {}, repeat) for _ in range(disables)
    ]


def report(name: str, broken: list[str], total: int) -> None:
    print(f"{name}: {len(broken)} of {total} rounds broke the invariant")
    assert not broken, f"{len(broken)} of {total} rounds broke the invariant: {broken[:5]}"


def leaked_after(answers: list[Answer], ack: Answer) -> list[Answer]:
    """Accesses sent after ``ack`` was received that still returned the payload."""
    return [a for a in named(answers, "access") if a.status == 200 and a.sent > ack.done]


# --- deletes against enable / disable ---------------------------------------------------------------
def test_version_delete_vs_enable_disable(site):
    api, broken, total = site.api(), [], 0
    for n in rounds(40, 4):
        total += 1
        sid = new_secret(api, site.project_id)
        path = f"{SM}/secrets/{sid}/versions/1"
        answers = fire(site.url, [Call("delete", "DELETE", path, site.token), *toggles(site.token, path, 3, 3)])
        delete = single(answers, "delete")
        assert delete.status in (204, 412), delete.body
        status = api.ok("GET", path)["status"]
        served = api.send("GET", f"{path}/access").status == 200
        if delete.status == 204 and (status != "scheduled_for_deletion" or served):
            broken.append(f"round {n}: DELETE answered 204, version is {status}, payload served after: {served}")
    report("version delete vs enable/disable", broken, total)


def test_secret_delete_vs_enable_disable(site):
    api, broken, total = site.api(), [], 0
    for n in rounds(40, 4):
        total += 1
        sid = new_secret(api, site.project_id, versions=2)
        calls = [Call("delete", "DELETE", f"{SM}/secrets/{sid}", site.token)]
        for revision in (1, 2):
            calls += toggles(site.token, f"{SM}/secrets/{sid}/versions/{revision}", 2, 1)
        answers = fire(site.url, calls)
        delete = single(answers, "delete")
        assert delete.status in (204, 412), delete.body
        if delete.status != 204:
            continue
        statuses, served = version_statuses(api, sid), []
        for revision in (1, 2, "latest"):
            if api.send("GET", f"{SM}/secrets/{sid}/versions/{revision}/access").status == 200:
                served.append(revision)
        if statuses != ["scheduled_for_deletion"] * 2 or served:
            broken.append(f"round {n}: secret DELETE answered 204, versions are {statuses}, {served} still served")
    report("secret delete vs enable/disable", broken, total)


def test_delete_vs_access(site):
    """A payload is served only to accesses sent before the delete answered."""
    api, broken, total = site.api(), [], 0
    for n in rounds(40, 4):
        total += 1
        sid = new_secret(api, site.project_id)
        path = f"{SM}/secrets/{sid}/versions/1"
        calls = [
            Call("delete", "DELETE", f"{SM}/secrets/{sid}", site.token),
            *toggles(site.token, path, 3, 1),
            *[Call("access", "GET", f"{path}/access", site.token, repeat=4) for _ in range(3)],
        ]
        answers = fire(site.url, calls)
        delete = single(answers, "delete")
        if delete.status != 204:
            continue
        answers.append(api.send("GET", f"{path}/access"))
        answers[-1].name = "access"
        leaked = leaked_after(answers, delete)
        if leaked:
            broken.append(f"round {n}: {len(leaked)} access(es) sent after the DELETE's 204 got the payload")
        for access in named(answers, "access"):
            if access.status == 200:
                assert access.json()["data"] == b64(PAYLOAD)
    report("delete vs access", broken, total)


def test_two_deletes_exactly_one_wins(site):
    api, broken, total = site.api(), [], 0
    for n in rounds(40, 3):
        total += 1
        sid = new_secret(api, site.project_id)
        target = f"{SM}/secrets/{sid}" if n % 2 else f"{SM}/secrets/{sid}/versions/1"
        answers = fire(site.url, [Call("delete", "DELETE", target, site.token) for _ in range(3)])
        codes = sorted(a.status for a in answers)
        if codes != [204, 412, 412]:
            broken.append(f"round {n}: three DELETEs of {target.rsplit('/', 2)[-2]}… answered {codes}")
    report("two deletes", broken, total)


# --- enable against destroy-by-expiry ----------------------------------------------------------------
EXPIRE_NOW = (
    "from datetime import timedelta; from django.core.management import call_command; "
    "from django.utils import timezone; from secrets_app.models import SecretVersion; "
    "SecretVersion.objects.filter(secret_id__in={secrets!r}).update(expires_at=timezone.now() - timedelta(seconds=1)); "
    "call_command('expire_secret_versions', '--yes', '--json')"
)


def test_enable_vs_destroy_by_expiry(site):
    """``expire_secret_versions`` destroys ephemeral versions while enable/disable calls fire at them."""
    api, broken, total = site.api(), [], 0
    policy, count = {"ephemeral_policy": {"time_to_live": "3600s", "action": "delete"}}, 25
    for n in rounds(2, 6):
        total += 1
        secrets = [new_secret(api, site.project_id, versions=count, **policy) for _ in range(2)]
        paths = [f"{SM}/secrets/{sid}/versions/{r}" for sid in secrets for r in range(1, count + 1)]
        stop = threading.Event()

        def toggle(offset: int, stop: threading.Event = stop, paths: list[str] = paths) -> None:
            i = offset
            while not stop.is_set():
                action = "enable" if i % 3 else "disable"
                fire(site.url, [Call(action, "POST", f"{paths[i % len(paths)]}/{action}", site.token, {})])
                i += 5

        threads = [threading.Thread(target=toggle, args=(k,), daemon=True) for k in range(6)]
        for thread in threads:
            thread.start()
        try:
            # Their TTL ends in an hour; a future --now is refused, so the expiry runs with the
            # versions' expires_at moved into the past, in the same process.
            output = site.server.manage("shell", "-c", EXPIRE_NOW.format(secrets=secrets))
        finally:
            time.sleep(0.3)  # let the enables in flight land
            stop.set()
            for thread in threads:
                thread.join(30)
        assert '"versions_destroyed"' in output
        alive = [s for sid in secrets for s in version_statuses(api, sid) if s != "deleted"]
        if alive:
            broken.append(f"round {n}: expiry destroyed every version, {len(alive)} came back: {alive[:3]}")
    report("enable vs destroy-by-expiry", broken, total)


# --- keys and API keys -------------------------------------------------------------------------------
def test_key_disable_vs_encrypt(site):
    api, broken, total = site.api(), [], 0
    key = api.ok(
        "POST",
        f"{KM}/keys",
        {
            "project_id": site.project_id,
            "name": "race",
            "usage": {"symmetric_encryption": "aes_256_gcm"},
            "unprotected": True,
        },
    )
    base = f"{KM}/keys/{key['id']}"
    for n in rounds(30, 3):
        total += 1
        api.ok("POST", f"{base}/enable", {})
        encrypts = [Call("encrypt", "POST", f"{base}/encrypt", site.token, {"plaintext": b64(b"x")}, 4)] * 4
        answers = fire(site.url, [Call("disable", "POST", f"{base}/disable", site.token, {}), *encrypts])
        disable = single(answers, "disable")
        assert disable.status == 200, disable.body
        late = [a for a in named(answers, "encrypt") if a.status == 200 and a.sent > disable.done]
        if late:
            broken.append(f"round {n}: {len(late)} encrypt(s) sent after the disable answered succeeded")
        if api.send("POST", f"{base}/encrypt", {"plaintext": b64(b"x")}).status == 200:
            broken.append(f"round {n}: the key encrypts after its disable answered")
    report("key disable vs encrypt", broken, total)


ISSUE_KEYS = """
import json
from django.contrib.auth import get_user_model
from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.tenancy.models import Project
user = get_user_model().objects.get(username="racer")
project = Project.objects.get(id="{project}")
keys = [api_key_create(principal=Principal.for_command(), user=user, project=project) for _ in range({n})]
print(json.dumps([[k.api_key.access_key, k.secret_key] for k in keys]))
"""


def test_api_key_revoke_vs_use(site):
    broken, total = [], 0
    path = f"{SM}/secrets?project_id={site.project_id}&page_size=1"
    output = site.server.manage("shell", "-c", ISSUE_KEYS.format(project=site.project_id, n=2))
    issued = json.loads(output.splitlines()[-1])
    for n, (access_key, token) in enumerate(issued):
        total += 1
        stop, answers = threading.Event(), []

        def use(stop: threading.Event = stop, answers: list[Answer] = answers, token: str = token) -> None:
            while not stop.is_set():
                answers.extend(fire(site.url, [Call("use", "GET", path, token)]))

        threads = [threading.Thread(target=use, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.2)
            site.server.manage("revoke_api_key", access_key)
            revoked = time.monotonic()
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert any(a.status == 200 for a in answers), "the key never worked"
        late = [a for a in answers if a.sent > revoked and a.status < 400]
        if late or not any(a.sent > revoked for a in answers):
            broken.append(f"round {n}: {len(late)} request(s) sent after the revocation returned were not refused")
    report("API key revoke vs use", broken, total)
