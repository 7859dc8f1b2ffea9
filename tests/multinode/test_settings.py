"""Every database and cache setting is reachable from the environment (settings read in a fresh
interpreter per case, as a server reads them at start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_DUMP = (
    "import json, hkms_site.settings as s; "
    "print(json.dumps({'db': s.DATABASES, 'caches': s.CACHES, 'shared': s.HKMS_SHARED_CACHE}, default=str))"
)


def settings_with(tmp_path: Path, **env: str) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("DATABASE_URL") and not k.startswith(("HKMS_DB_", "HKMS_CACHE", "HKMS_TEST_POSTGRES"))
    }
    clean.update({"HKMS_DATA_DIR": str(tmp_path)}, **env)
    result = subprocess.run(
        [sys.executable, "-c", _DUMP], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )
    if result.returncode:
        return {"error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_database_urls_get_health_checks_options_and_multi_host_lists(tmp_path):
    got = settings_with(
        tmp_path,
        DATABASE_URL="postgres://hkms:pw@db1:5432,db2:5433/hkms?target_session_attrs=read-write",
        KEK_DATABASE_URL="postgres://hkms@db1/hkms_kek?connect_timeout=2",
        HKMS_DB_OPTIONS="target_session_attrs=read-write sslmode=prefer",
        HKMS_DB_CONN_MAX_AGE="30",
    )["db"]
    default, kek, dek = got["default"], got["kek"], got["dek"]
    assert (default["HOST"], default["PORT"], default["NAME"]) == ("db1,db2", "5432,5433", "hkms")
    assert default["OPTIONS"] == {"connect_timeout": "5", "target_session_attrs": "read-write", "sslmode": "prefer"}
    assert default["CONN_HEALTH_CHECKS"] is True and default["CONN_MAX_AGE"] == 30
    assert kek["CONN_HEALTH_CHECKS"] is True and kek["OPTIONS"]["connect_timeout"] == 2  # the URL's own wins
    assert dek["ENGINE"].endswith("sqlite3") and dek["CONN_MAX_AGE"] == 30
    assert dek.get("CONN_HEALTH_CHECKS", False) is False


def test_health_checks_can_be_turned_off_and_bad_values_are_refused(tmp_path):
    got = settings_with(tmp_path, DATABASE_URL="postgres://hkms@db1/hkms", HKMS_DB_CONN_HEALTH_CHECKS="0")
    assert got["db"]["default"]["CONN_HEALTH_CHECKS"] is False
    assert "key=value" in settings_with(tmp_path, HKMS_DB_OPTIONS="sslmode")["error"]
    assert "not a database URL" in settings_with(tmp_path, DATABASE_URL="nosuch://x")["error"]


@pytest.mark.parametrize(
    ("url", "backend", "location", "shared"),
    [
        ("", "locmem.LocMemCache", "hkms", False),
        ("redis://127.0.0.1:6379/3", "redis.RedisCache", "redis://127.0.0.1:6379/3", True),
        ("db://", "db.DatabaseCache", "hkms_cache", True),
    ],
)
def test_the_cache_is_chosen_by_url(tmp_path, url, backend, location, shared):
    got = settings_with(tmp_path, HKMS_CACHE_URL=url, HKMS_CACHE_KEY_PREFIX="hkms")
    default = got["caches"]["default"]
    assert default["BACKEND"] == f"django.core.cache.backends.{backend}" and default["LOCATION"] == location
    assert got["shared"] is shared
    login = got["caches"]["login"]
    assert login["BACKEND"] == (default["BACKEND"] if shared else "django.core.cache.backends.filebased.FileBasedCache")
    assert "must be redis" in settings_with(tmp_path, HKMS_CACHE_URL="memcached://x")["error"]
