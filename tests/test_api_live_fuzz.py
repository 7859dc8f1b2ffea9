"""Both APIs against a live server: a schema-driven fuzz, and Scaleway's TypeScript SDK on bad input.

* ``test_fuzz_both_apis``: schemathesis generates requests for every operation of
  the Secret Manager and Key Manager APIs from the project's own OpenAPI schema
  (drf-spectacular, ``/api/schema/``) and sends them, authenticated with an API key
  that is ``project_admin`` on a project, to a real gunicorn server.  Every answer
  must be below 500, conform to the schema (status, content type, body), and
  every 4xx must be in Scaleway's error shape.  Path parameters point at a real
  secret and key half of the time, so the fuzz reaches past the 404s.
* ``test_typescript_sdk_raises_invalid_arguments``: the seven request-format
  cases of issue 12 through ``@scaleway/sdk-secret`` / ``@scaleway/sdk-key-manager``
  (``tests/sdk_ts``, installed with ``npm ci`` on first use).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: Examples per operation: about 50 operations, each example one request (fits ~30 s per database).
MAX_EXAMPLES = int(os.environ.get("HKMS_FUZZ_EXAMPLES", "6"))
SDK_TS = Path(__file__).parent / "sdk_ts"


@pytest.fixture(scope="module")
def credentials(hkms_server) -> dict[str, Any]:
    return hkms_server.create_api_key(
        "--user", "fuzzer", "--create-user", "--create-project", "fuzz", "--role", "project_admin"
    )


@pytest.fixture(scope="module")
def session(credentials) -> requests.Session:
    session = requests.Session()
    session.headers["X-Auth-Token"] = credentials["secret_key"]
    return session


@pytest.fixture(scope="module")
def objects(hkms_server, credentials, session) -> dict[str, str]:
    """A real secret (one version) and a real key in the fuzzer's project."""
    sm = f"{hkms_server.url}/secret-manager/v1beta1/regions/fr-par"
    km = f"{hkms_server.url}/key-manager/v1alpha1/regions/fr-par"
    secret = session.post(f"{sm}/secrets", json={"name": "fuzzed", "project_id": credentials["project_id"]})
    assert secret.status_code == 200, secret.text
    version = session.post(
        f"{sm}/secrets/{secret.json()['id']}/versions", json={"data": base64.b64encode(b"x").decode()}
    )
    assert version.status_code == 200, version.text
    key = session.post(f"{km}/keys", json={"name": "fuzzed", "project_id": credentials["project_id"]})
    assert key.status_code == 200, key.text
    return {"secret_id": secret.json()["id"], "key_id": key.json()["id"], "project_id": credentials["project_id"]}


@pytest.fixture(scope="module")
def api_schema(hkms_server):
    document = requests.get(f"{hkms_server.url}/api/schema/", params={"format": "json"}, timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.base_url = hkms_server.url
    return schema.include(path_regex=r"^/(secret-manager|key-manager)/")


@schemathesis.check
def scaleway_error_shape(ctx, response, case) -> bool | None:
    """Every 4xx: a JSON object with string ``type`` and ``message``; ``invalid_arguments`` with details."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("type"), str) and isinstance(body.get("message"), str), body
    assert "ErrorDetail" not in response.text and "Traceback" not in response.text, body
    if body["type"] == "invalid_arguments":
        details = body.get("details")
        assert isinstance(details, list) and details, body
        for detail in details:
            assert isinstance(detail.get("argument_name"), str) and isinstance(detail.get("help_message"), str), body
            assert detail.get("reason") in ("required", "format", "constraint", "unknown"), body
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    scaleway_error_shape,
]


def test_fuzz_both_apis(api_schema, session, objects) -> None:
    """Each operation in turn (schemathesis's pytest plugin does not run under pytest 9: hypothesis directly)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 40, [op.label for op in operations]
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:
            params = case.path_parameters or {}
            if "region" in params:
                params["region"] = "fr-par"
            for name in ("secret_id", "key_id"):  # half of the generated ids (by checksum) become real ones
                if name in params and zlib.crc32(str(params[name]).encode()) % 2:
                    params[name] = objects[name]
            response = case.call_and_validate(session=session, checks=CHECKS)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    print(
        f"\nfuzz: {len(operations)} operations, {sum(statuses.values())} requests, statuses {sorted(statuses.items())}"
    )
    assert not failures, "\n\n".join(failures)
    assert statuses.get(200, 0) >= len(operations) // 4, statuses  # the fuzz reaches past validation


# --- the TypeScript SDK ----------------------------------------------------------------------------
def _node_modules() -> Path | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    with (SDK_TS / ".install.lock").open("w") as lock:  # the SQLite and PostgreSQL runs share the directory
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (SDK_TS / "node_modules" / "@scaleway" / "sdk-client").exists():
            result = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(SDK_TS)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if result.returncode != 0:
                return None
    return SDK_TS / "node_modules"


def test_typescript_sdk_raises_invalid_arguments(hkms_server, credentials, objects) -> None:
    if _node_modules() is None:
        pytest.skip("node/npm missing or `npm ci --prefix tests/sdk_ts` failed (no registry access)")
    args = {"url": hkms_server.url, **credentials, **objects}
    result = subprocess.run(
        ["node", str(SDK_TS / "errors.mjs"), json.dumps(args)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = {row["case"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert len(outcomes) == 7, result.stdout
    for name, row in outcomes.items():
        assert row.get("invalid_arguments") is True, (name, row)
