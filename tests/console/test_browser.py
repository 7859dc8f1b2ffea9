"""The console in a real Chromium (the distribution's, driven by Playwright) against a live gunicorn.

Scenarios: log in; create a secret and a version; reveal it as a reader and fail
to as an auditor; rotate a key and watch the dashboard change (then re-wrap in
the background and watch the job finish); grant a role and see the grantee's
view change; bad form input shows an inline error and keeps what was typed.
Screenshots of every page go to ``test-artifacts/screenshots/`` (git-ignored);
with ``HKMS_UPDATE_DOC_SCREENSHOTS=1`` the README's are refreshed in ``docs/screenshots/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
DOC_SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "Console-test-pw-1!"
METRICS_TOKEN = "metrics-token-for-the-browser-server"


SETUP = """
import json
import zlib
from django.contrib.auth import get_user_model
from hkms_core.access.principal import Principal
from keys_app.services.projects import project_create, project_default_key
from hkms_core.access.services import role_grant
from secrets_app.storage import secret_create, secret_version_create, secret_version_transition
op = Principal.for_command()
users = get_user_model().objects
acme = project_create(principal=op, name="acme")
users.create_superuser("root", "", PW)
for name, role in [("reader", "secret_reader"), ("writer", "secret_writer"), ("auditor", "auditor"),
                   ("keyadmin", "key_admin")]:
    role_grant(principal=op, user=users.create_user(name, password=PW), role=role, obj=acme)
users.create_user("newcomer", password=PW)
seeded = secret_create(project=acme, name="payments-api", path="/prod/payments", tags=["prod"])
secret_version_create(secret=seeded, data=b"seeded-v1", description="initial token")
old = secret_version_create(secret=seeded, data=b"seeded-v2", description="rotated after the audit")
secret_version_transition(old, from_statuses=("enabled",), status="disabled")
secret_version_create(secret=seeded, data=b"seeded-v3", description="current token",
                      data_crc32=zlib.crc32(b"seeded-v3"))
for i in range(3):
    s = secret_create(project=acme, name=f"service-{i}", path="/prod/services", tags=["prod", "svc"])
    secret_version_create(secret=s, data=b"x" * (i + 1))
# A second project whose key was rotated once: its old DEKs still wait for a re-wrap.
from keys_app.services.rotation.kek import kek_rotate
billing = project_create(principal=op, name="billing")
for i in range(6):
    s = secret_create(project=billing, name=f"invoice-signer-{i}", path="/billing")
    secret_version_create(secret=s, data=b"y")
kek_rotate(key=project_default_key(billing))
for i in range(2):
    secret_version_create(secret=s, data=b"z")
# For the confirmation tests: a spare key with one secret, a secret to destroy, an API key, a grant.
from hkms_core.access.apikeys import api_key_create
from keys_app.services.material import key_create_with_material
spare = key_create_with_material(project=acme, name="spare-key", protected=False)
imported = key_create_with_material(project=acme, name="imported-key", protected=False, origin="external")
under = secret_create(project=acme, name="under-spare", path="/spare", key=spare)
secret_version_create(secret=under, data=b"u1")
doomed = secret_create(project=acme, name="doomed", path="/tmp")
secret_version_create(secret=doomed, data=b"d1")
secret_version_create(secret=doomed, data=b"d2")
temp = users.create_user("temp", password=PW)
role_grant(principal=op, user=temp, role="secret_reader", obj=acme)
issued = api_key_create(principal=op, user=users.get(username="reader"), project=acme, description="ci deploy")
print(json.dumps({"project": str(acme.id), "key": str(acme.default_key_id), "seeded": str(seeded.id),
                  "spare": str(spare.id), "imported": str(imported.id), "doomed": str(doomed.id),
                  "api_key": issued.api_key.access_key}))
"""


@pytest.fixture(scope="module")
def hkms_server(tmp_path_factory):
    """This module's live server (gunicorn, 2 workers) also serves /metrics and writes JSON logs,
    so that test_metrics_sum_both_workers_and_logs_are_json needs no server of its own."""
    from tests.live import LiveServer

    extra = {"HKMS_METRICS_TOKEN": METRICS_TOKEN, "HKMS_LOG_FORMAT": "json"}
    server = LiveServer(tmp_path_factory.mktemp("live"), extra_env=extra).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def console(hkms_server):
    out = hkms_server.manage("shell", "--no-imports", "-c", f"PW = {PASSWORD!r}\n" + SETUP)
    ids = json.loads(out.strip().splitlines()[-1])
    return hkms_server, ids


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("the distribution's chromium is not installed (scripts/system-packages.sh)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Session:
    """One user's browser context, logged in through the real form."""

    def __init__(self, browser, server, username: str) -> None:
        self.server = server
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.username = username
        self.page.goto(f"{server.url}/admin/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("#login-form input[type=submit]")
        self.page.wait_for_url(f"{server.url}/admin/")

    def go(self, path: str) -> None:
        self.page.goto(f"{self.server.url}{path}")

    def submit(self, selector: str) -> None:
        """Click a form's submit button and wait until the answer page has loaded: a locator's
        count() does not wait, so reading the page right after a bare click can see the old one."""
        with self.page.expect_navigation(wait_until="load"):
            self.page.click(selector)

    def shot(self, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        # CSP violations and script errors show up as console errors.
        assert not [e for e in self.errors if "favicon" not in e], self.errors
        self.context.close()


def _doc_copy(path: Path, name: str) -> None:
    if os.environ.get("HKMS_UPDATE_DOC_SCREENSHOTS") == "1":
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOC_SHOTS / name)


def test_log_in_and_see_the_dashboard(console, browser):
    server, ids = console
    anon = browser.new_context().new_page()
    anon.goto(f"{server.url}/admin/")
    anon.fill("#id_username", "root")
    anon.fill("#id_password", "not the password")
    anon.click("#login-form input[type=submit]")
    assert "Please enter a correct username and password" in anon.inner_text("#content")
    anon.screenshot(path=str(SHOTS / "login-error.png"))
    anon.context.close()

    root = Session(browser, server, "root")
    assert root.page.locator("#nav-sidebar").count() == 0  # one navigation: the console's
    assert root.page.inner_text("h1") == "Dashboard"
    assert root.page.locator("#card-root .big").inner_text() == "v1"
    assert root.page.locator("svg.chart g.bar").count() >= 3
    assert root.page.locator("svg.chart g.bar-older").count() == 1
    _doc_copy(root.shot("dashboard"), "dashboard.png")
    root.go(f"/admin/secrets/{ids['seeded']}/")
    assert root.page.locator("[data-action=reveal]").count() == 2  # the enabled versions
    _doc_copy(root.shot("secret-detail-superuser"), "secret.png")
    for path, name in [
        ("/admin/keys/", "keys"),
        ("/admin/roles/", "roles"),
        ("/admin/api-keys/", "api-keys"),
        ("/admin/audit-log/", "audit-log"),
        ("/admin/2fa/?enrol=1", "two-factor"),
        ("/admin/tenancy/project/", "model-admin-projects"),
        ("/admin/projects/", "projects"),
        ("/admin/root-key/", "root-key"),
    ]:
        root.go(path)
        root.shot(name)
    root.go("/admin/api-keys/")
    root.page.fill("#id_description", "deploy pipeline")
    root.page.select_option("#id_expires_in_days", "30")
    root.submit("#api-key-form input[type=submit]")
    secret_key = root.page.inner_text("#secret-key")
    assert re.fullmatch(r"[0-9a-f-]{36}", secret_key)
    root.shot("api-key-created")
    root.go("/admin/api-keys/")
    assert secret_key not in root.page.content()  # shown once
    root.go("/admin/audit-log/")
    root.submit("#verify-chain")
    assert "Audit chain intact" in root.page.inner_text(".messagelist")
    root.shot("audit-log-verified")
    root.close()


def test_create_a_secret_and_a_version(console, browser):
    server, ids = console
    writer = Session(browser, server, "writer")
    writer.go("/admin/secrets/")
    writer.page.click("#new-secret")
    writer.page.select_option("#id_project", ids["project"])
    writer.page.fill("#id_name", "smtp-relay")
    writer.page.fill("#id_path", "/prod/mail")
    writer.page.select_option("#id_type", "basic_credentials")
    writer.page.fill("#id_tags", "prod, mail")
    # The first value in the same form: only the chosen type's fields are shown (console.js).
    assert writer.page.locator("fieldset[data-type=opaque]").is_hidden()
    writer.page.fill("#id_basic_credentials-username", "mailer")
    writer.page.fill("#id_basic_credentials-password", "hunter2-smtp")
    writer.page.fill("#id_basic_credentials-description", "initial credentials")
    writer.shot("secret-create")
    writer.submit("#console-form input[type=submit]")
    assert writer.page.inner_text("#secret-name") == "smtp-relay"
    assert writer.page.locator("#versions tr[data-revision='1']").get_attribute("data-status") == "enabled"
    writer.page.click("#add-version")
    writer.page.fill("#id_username", "mailer")
    writer.page.fill("#id_password", "hunter3-smtp")
    writer.page.fill("#id_description", "rotated credentials")
    writer.shot("secret-version-add")
    writer.submit("#console-form input[type=submit]")
    row = writer.page.locator("#versions tr[data-revision='2']")
    assert row.get_attribute("data-status") == "enabled"
    assert "hunter2-smtp" not in writer.page.content() and "hunter3-smtp" not in writer.page.content()
    assert writer.page.locator("[data-action=reveal]").count() == 0  # a writer is not a reader
    writer.shot("secret-detail-writer")
    writer.go("/admin/secrets/?path=/prod/")
    assert writer.page.locator("#folders [data-folder='/prod/mail/']").count() == 1
    writer.shot("secret-list-folders")
    writer.close()


def test_reveal_as_reader_but_not_as_auditor(console, browser):
    server, ids = console
    reader = Session(browser, server, "reader")
    reader.go(f"/admin/secrets/{ids['seeded']}/")
    reader.shot("secret-detail-reader")
    reader.page.click("#versions tr[data-revision='1'] [data-action=reveal]")
    assert "seeded-v1" not in reader.page.content()  # the confirmation page shows nothing yet
    reader.shot("reveal-confirm")
    with reader.page.expect_response(lambda r: r.request.method == "POST") as info:
        reader.page.click("#reveal-confirm")
    assert "no-store" in info.value.headers["cache-control"]
    assert reader.page.inner_text("#payload") == "seeded-v1"
    reader.context.grant_permissions(["clipboard-read", "clipboard-write"])
    reader.page.click("#copy-payload")  # console.js, served from 'self': no inline script
    copied, deadline = "", time.monotonic() + 10
    while copied != "seeded-v1" and time.monotonic() < deadline:  # the clipboard write is asynchronous
        copied = reader.page.evaluate("navigator.clipboard.readText()")
        time.sleep(0.1)
    assert copied == "seeded-v1"
    reader.shot("reveal")
    reader.close()

    auditor = Session(browser, server, "auditor")
    auditor.go(f"/admin/secrets/{ids['seeded']}/")
    assert auditor.page.locator("[data-action=reveal]").count() == 0
    assert auditor.page.locator("#versions tr").count() >= 2  # metadata is visible
    auditor.shot("secret-detail-auditor")
    reply = auditor.page.goto(f"{server.url}/admin/secrets/{ids['seeded']}/versions/1/reveal/")
    assert reply is not None and reply.status == 403
    auditor.errors.clear()  # the browser logs that (expected) 403
    assert "seeded-v1" not in auditor.page.content()
    auditor.go("/admin/audit-log/?action=secret_version.access")
    auditor.shot("audit-log-auditor")
    auditor.close()


def test_rotate_a_key_and_watch_the_dashboard(console, browser):
    server, ids = console
    admin = Session(browser, server, "keyadmin")
    key_row = f"#dashboard-keys tr[data-key='{ids['key']}']"
    assert admin.page.locator(f"{key_row} .primary-version").inner_text() == "v1"
    admin.go(f"/admin/keys/{ids['key']}/")
    admin.page.click("#rotate")
    assert admin.page.inner_text("#primary-version") == "v2"
    admin.go("/admin/")
    assert admin.page.locator(f"{key_row} .primary-version").inner_text() == "v2"
    older = int(admin.page.locator("[data-deks-on-older]").get_attribute("data-deks-on-older") or 0)
    assert older >= 4  # the seeded secrets' DEKs are still wrapped by v1
    admin.shot("dashboard-after-rotation")
    admin.go(f"/admin/keys/{ids['key']}/")
    admin.page.click("#rewrap")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the page refreshes itself while the job runs
        admin.go(f"/admin/keys/{ids['key']}/")
        if admin.page.locator("#job-state").count() and admin.page.inner_text("#job-state") == "done":
            break
        time.sleep(0.5)
    assert admin.page.inner_text("#job-state") == "done"
    admin.shot("key-detail-rewrapped")
    admin.go("/admin/")
    assert admin.page.locator("[data-deks-on-older]").get_attribute("data-deks-on-older") == "0"
    admin.close()


def test_grant_a_role_and_the_grantee_sees_more(console, browser):
    server, ids = console
    newcomer = Session(browser, server, "newcomer")
    newcomer.go("/admin/secrets/?tags=prod")
    assert newcomer.page.locator("#secrets tr[data-secret]").count() == 0
    assert newcomer.page.locator(".console-nav [data-nav=audit]").count() == 0
    newcomer.shot("secret-list-stranger")

    root = Session(browser, server, "root")
    root.go("/admin/roles/")
    root.page.fill("#id_username", "newcomer")
    root.page.select_option("#id_role", "auditor")
    root.page.select_option("#id_target", f"project:{ids['project']}")
    root.submit("#grant-form input[type=submit]")
    assert root.page.locator("#grants tr[data-user=newcomer][data-role=auditor]").count() == 1
    root.shot("roles-granted")
    root.close()

    newcomer.go("/admin/secrets/?tags=prod")
    assert newcomer.page.locator("#secrets tr[data-secret]").count() >= 4
    assert newcomer.page.locator(".console-nav [data-nav=audit]").count() == 1
    newcomer.shot("secret-list-after-grant")
    newcomer.close()


def test_bad_input_shows_an_inline_error_and_keeps_what_was_typed(console, browser):
    server, ids = console
    writer = Session(browser, server, "writer")
    writer.go("/admin/secrets/new/")
    writer.page.select_option("#id_project", ids["project"])
    writer.page.fill("#id_name", "billing-db")
    writer.page.fill("#id_path", "/prod/bad path!")
    writer.page.select_option("#id_type", "database_credentials")
    writer.page.fill("#id_tags", "prod, billing")
    writer.page.fill("#id_description", "the billing database")
    writer.submit("#console-form input[type=submit]")
    error = writer.page.locator("[data-field=path] .errorlist")
    assert error.count() == 1 and error.inner_text()
    assert writer.page.input_value("#id_name") == "billing-db"
    assert writer.page.input_value("#id_path") == "/prod/bad path!"
    assert writer.page.input_value("#id_type") == "database_credentials"
    assert writer.page.input_value("#id_tags") == "prod, billing"
    assert writer.page.input_value("#id_description") == "the billing database"
    writer.shot("secret-create-error")

    writer.go(f"/admin/secrets/{ids['seeded']}/versions/new/")
    writer.page.fill("#id_description", "rotated by hand")  # but no payload
    writer.submit("#console-form input[type=submit]")
    assert writer.page.locator("[data-field=data] .errorlist").count() == 1
    assert writer.page.input_value("#id_description") == "rotated by hand"
    writer.shot("secret-version-error")
    assert re.search(r"/versions/new/$", writer.page.url)
    writer.close()


def test_metrics_sum_both_workers_and_logs_are_json(console):
    """/metrics under gunicorn with 2 workers counts the requests of both (multiprocess mode), and
    every Django log line is a JSON object carrying the request id, never a token."""
    from tests.observability.test_metrics import http_get, samples, value

    server, _ids = console

    def heads() -> float:
        status, text, _ = http_get(f"{server.url}/metrics", METRICS_TOKEN)
        assert status == 200
        return value(samples(text), "hkms_http_requests_total", route="health", method="HEAD", status="200")

    start = heads()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: http_get(f"{server.url}/health", method="HEAD")[0], range(40)))
    assert answers.count(200) == 40
    deadline = time.monotonic() + 10  # each worker applies its queued counts within a second
    while heads() - start < 40 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert {heads() - start for _ in range(6)} == {40}  # whichever worker answers: both workers' sum
    files = (server.data_dir / "metrics").glob("gunicorn-*/counter_*.db")
    # Both workers wrote their counters (and so may a background job's process, which inherits the directory).
    assert len({p.name for p in files}) >= 2
    bad_token = "00000000-0000-0000-0000-000000000000"
    status, _, headers = _request(
        f"{server.url}/secret-manager/v1beta1/regions/fr-par/secrets",
        {"X-Auth-Token": bad_token, "X-Request-Id": "trace-abc-123"},
    )
    assert status == 401 and headers["X-Request-Id"] == "trace-abc-123"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = samples(http_get(f"{server.url}/metrics", METRICS_TOKEN)[1])
        if value(found, "hkms_denials_total", action="auth.api_key") >= 1:
            break
        time.sleep(0.3)
    assert value(found, "hkms_denials_total", action="auth.api_key") >= 1
    log = server.log_path.read_text()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    traced = [r for r in records if r.get("request_id") == "trace-abc-123"]
    assert any(r["logger"] == "hkms.request" and r.get("status") == 401 for r in traced), traced
    assert bad_token not in log and METRICS_TOKEN not in log


def _request(url: str, headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (the live server on loopback)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
            return reply.status, reply.read().decode(), dict(reply.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_every_destructive_action_needs_its_confirmation(console, browser):
    """Each destructive button leads to a confirmation page naming what stops working; the old
    one-click POST (made here with the session's cookies and CSRF token) changes nothing; Cancel
    changes nothing; only the confirmation's button acts.  One browser session for all of them."""
    server, ids = console
    root = Session(browser, server, "root")
    spare, doomed, access_key = ids["spare"], ids["doomed"], ids["api_key"]
    root.go(f"/admin/roles/?target=project:{ids['project']}")
    grant = root.page.locator("#grants tr[data-user=temp] [data-action=revoke]").get_attribute("href") or ""
    actions = [
        (f"/admin/keys/{spare}/disable/", ""),
        (f"/admin/keys/{spare}/delete/", ""),
        (f"/admin/keys/{ids['imported']}/delete_key_material/", ""),
        (f"/admin/secrets/{doomed}/versions/1/disable/", ""),
        (f"/admin/secrets/{doomed}/versions/2/delete/", ""),
        (f"/admin/secrets/{doomed}/delete/", ""),
        (f"/admin/api-keys/{access_key}/revoke/", ""),
        ("/admin/roles/revoke/", grant.split("grant=")[-1]),
    ]
    csrf = next(c["value"] for c in root.context.cookies() if c["name"] == "csrftoken")
    for path, grant_id in actions:  # the old one-click buttons: a POST without the confirmation token
        form = {"csrfmiddlewaretoken": csrf, **({"grant": grant_id} if grant_id else {})}
        reply = root.context.request.post(f"{server.url}{path}", form=form, headers={"Referer": server.url})
        assert reply.status == 200 and 'id="confirm-required"' in reply.text(), path

    def state_of_key() -> str:
        root.go(f"/admin/keys/{spare}/")
        return root.page.inner_text("#key-state")

    def confirm(expected: list[str], shot: str = "", doc: bool = False) -> None:
        text = root.page.inner_text("#confirm-consequences")
        for words in expected:
            assert words in text, (words, text)
        if shot:
            path = root.shot(shot)
            if doc:
                _doc_copy(path, f"{shot}.png")
        root.submit("#confirm-submit")

    assert state_of_key() == "enabled"  # nothing changed so far
    root.page.click("#disable")
    root.page.click("#confirm-cancel")  # cancel: back, nothing done
    assert state_of_key() == "enabled"
    root.page.click("#disable")
    confirm(["1 secret (1 version, 1 enabled)", "cannot be read"], shot="confirm-key-disable", doc=True)
    assert root.page.inner_text("#key-state") == "disabled"
    root.page.click("#delete")
    confirm(["crypto-shredded"])
    assert state_of_key() == "scheduled_for_deletion"

    root.go(f"/admin/keys/{ids['imported']}/")
    root.page.click("#delete-key-material")
    confirm(["crypto-shredded now"])
    assert root.page.inner_text("#key-state") == "pending_key_material"

    root.go(f"/admin/secrets/{doomed}/")
    root.page.click("#versions tr[data-revision='1'] [data-action=disable]")
    confirm(["revision 1"])
    assert root.page.locator("#versions tr[data-revision='1']").get_attribute("data-status") == "disabled"
    root.page.click("#versions tr[data-revision='2'] [data-action=delete]")
    confirm(["only enabled revision", "destroyed"])
    assert root.page.locator("#versions tr[data-revision='2']").get_attribute("data-status") == (
        "scheduled_for_deletion"
    )
    root.page.click("#delete")
    confirm(["2 versions (0 enabled)"], shot="confirm-secret-delete")
    assert "scheduled for deletion" in root.page.inner_text("#secret-meta")

    root.go("/admin/api-keys/")
    root.page.click(f"tr[data-access-key={access_key}] [data-action=revoke]")
    assert "ci deploy" in root.page.inner_text("#confirm-facts")
    confirm(["401"])
    assert "revoked" in root.page.inner_text(f"tr[data-access-key={access_key}]")

    root.go(f"/admin/roles/?target=project:{ids['project']}")
    root.page.click("#grants tr[data-user=temp] [data-action=revoke]")
    confirm(["temp loses", "secret_reader"])
    assert root.page.locator("#grants tr[data-user=temp]").count() == 0

    root.go("/admin/root-key/")  # the file provider: nothing to seal, and it says why
    assert "development provider" in root.page.inner_text("#custody-about")
    assert root.page.locator("#seal").count() == 0
    root.close()
