"""One 4-worker live server for the race-test package (SQLite, or fresh PostgreSQL databases
with ``HKMS_TEST_POSTGRES=1``) and an API key holding ``project_admin`` on a new project."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.live import LiveServer
from tests.race.harness import Api

WORKERS = 4


@dataclass(frozen=True)
class RaceSite:
    server: LiveServer
    credentials: dict[str, Any]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return str(self.credentials["secret_key"])

    @property
    def project_id(self) -> str:
        return str(self.credentials["project_id"])

    def api(self) -> Api:
        return Api(self.url, self.token)


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = LiveServer(tmp_path_factory.mktemp("race"), workers=WORKERS).start()
    try:
        credentials = server.create_api_key(
            "--user", "racer", "--create-user", "--create-project", "race", "--role", "project_admin"
        )
        yield RaceSite(server, credentials)
    finally:
        server.stop()
