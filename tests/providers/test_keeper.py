"""The seal keeper: server in a thread of this process, the test process as a worker (client)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections

from keys_app.errors import RootKeyError
from keys_app.providers import RootKeyUnavailable, get_provider, reset_providers
from keys_app.providers.shamir import ShamirRootKeyProvider
from keys_app.providers.shamir_keeper import KeeperServer, ShamirKeeperClient
from keys_app.services import material, root
from keys_app.services.seal import ShareRefused, seal, seal_status, unseal_submit
from secrets_app.models import SecretVersion
from secrets_app.storage import secret_version_payload

ALL = ["default", "kek", "dek"]


@pytest.fixture
def socket_dir():
    path = Path(tempfile.mkdtemp(prefix="hkms-k", dir="/tmp"))  # short: Unix socket paths are limited
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_keeper(path: Path, **kwargs) -> KeeperServer:
    server = KeeperServer(path, ShamirRootKeyProvider({"shares": 5, "threshold": 3}), **kwargs)
    server.release_thread_resources = connections.close_all
    server.thread = threading.Thread(target=server.serve, daemon=True)
    server.thread.start()
    return server


def stop_keeper(server: KeeperServer) -> None:
    server.shutdown()
    server.thread.join(10)
    server.stop()


@pytest.fixture
def keeper(settings, socket_dir):
    path = socket_dir / "keeper.sock"
    server = start_keeper(path)
    settings.HKMS_ROOT_KEY_PROVIDER = "shamir"
    settings.HKMS_ROOT_KEY_OPTIONS = {
        **settings.HKMS_ROOT_KEY_OPTIONS,
        "shamir": {"keeper_socket": str(path), "shares": 5, "threshold": 3},
    }
    reset_providers()
    yield server
    reset_providers()
    stop_keeper(server)


def read_all() -> list[bytes]:
    versions = SecretVersion.objects.select_related("secret__key").order_by("secret__name", "revision")
    return [secret_version_payload(v) for v in versions]


def wait_until(predicate, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def init_through_keeper() -> list[str]:
    out = StringIO()
    call_command("init_hierarchy", "--provider", "shamir", "--shares", "5", "--threshold", "3", "--json", stdout=out)
    issued, result = (json.loads(line) for line in out.getvalue().splitlines())
    assert result["sealed"] is False  # the keeper holds the new REK
    return issued["shares"]


def seed() -> None:
    from keys_app.services.projects import project_create_with_default_key as project_create
    from secrets_app.storage import secret_create, secret_version_create

    project = project_create(name="acme")
    secret = secret_create(project=project, name="token")
    secret_version_create(secret=secret, data=b"s3cr3t")


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_a_seal_elsewhere_reaches_this_worker_and_an_unseal_serves_again(keeper):
    shares = init_through_keeper()
    assert isinstance(get_provider("shamir"), ShamirKeeperClient)
    seed()
    assert read_all() == [b"s3cr3t"] and len(material.key_cache()) > 0
    # Another process (the seal command, another worker) seals: this worker's watcher hears it.
    keeper.provider.seal()
    assert wait_until(lambda: len(material.key_cache()) == 0), "the worker kept its cached keys after a seal"
    with pytest.raises(RootKeyError, match="sealed"):
        read_all()
    assert get_provider("shamir").sealed and seal_status()["sealed"]
    # Shares may be submitted anywhere; progress is the keeper's.
    assert unseal_submit(shares[4])["progress"] == 1
    assert keeper.provider.status()["progress"] == 1
    unseal_submit(shares[0])
    assert unseal_submit(shares[2])["sealed"] is False
    assert read_all() == [b"s3cr3t"]
    # The worker holds no REK: only the keeper does.
    assert not hasattr(get_provider("shamir"), "_held")


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_the_keeper_stopping_drops_worker_caches_and_seals(keeper):
    init_through_keeper()
    seed()
    assert read_all() == [b"s3cr3t"]
    stop_keeper(keeper)
    assert wait_until(lambda: len(material.key_cache()) == 0)
    root.forget_verified_root_keys()
    with pytest.raises(RootKeyError, match="seal keeper is not running"):
        read_all()
    facts = get_provider("shamir").describe()
    assert facts["sealed"] is True and "not running" in facts["error"]


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_rekey_and_rotation_through_the_keeper(keeper):
    shares = init_through_keeper()
    seed()
    out = StringIO()
    call_command(
        "rekey", "--shares", "3", "--threshold", "3", "--json", stdin=StringIO("\n".join(shares[:3])), stdout=out
    )
    new = json.loads(out.getvalue().splitlines()[0])["shares"]
    # The keeper took the new set: a fresh worker verifies the REK against the new check value.
    material.key_cache().clear()
    root.forget_verified_root_keys()
    assert read_all() == [b"s3cr3t"]
    seal()
    with pytest.raises(ShareRefused):
        for share in shares[:3]:
            unseal_submit(share)
    for share in new:
        unseal_submit(share)
    out = StringIO()
    call_command(
        "rotate_root_key",
        "--to-provider",
        "shamir",
        "--shares",
        "3",
        "--threshold",
        "2",
        "--json",
        stdin=StringIO("\n".join(new)),
        stdout=out,
        stderr=StringIO(),
    )
    issued, result = (json.loads(line) for line in out.getvalue().splitlines())
    assert result["rek_version"] == 2 and len(issued["shares"]) == 3
    material.key_cache().clear()
    root.forget_verified_root_keys()
    assert read_all() == [b"s3cr3t"]  # the keeper holds version 2 already: no downtime


@pytest.mark.django_db(transaction=True, databases=ALL)
def test_the_keeper_refuses_other_users(settings, socket_dir):
    path = socket_dir / "keeper.sock"
    server = start_keeper(path, allowed_uids={os.getuid() + 4242})
    try:
        client = ShamirKeeperClient({"keeper_socket": str(path)})
        with pytest.raises(RootKeyUnavailable, match="may not use the seal keeper"):
            client.status()
        assert client.sealed
    finally:
        stop_keeper(server)


def test_the_socket_is_private(socket_dir):
    path = socket_dir / "keeper.sock"
    server = start_keeper(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(RootKeyUnavailable, match="already listening"):
            KeeperServer(path, ShamirRootKeyProvider({}))
    finally:
        stop_keeper(server)
    assert not path.exists()
    open_dir = socket_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(RootKeyUnavailable, match="not be writable by group or others"):
        KeeperServer(open_dir / "keeper.sock", ShamirRootKeyProvider({}))


def test_no_keeper_means_sealed_with_a_clear_message(socket_dir):
    client = ShamirKeeperClient({"keeper_socket": str(socket_dir / "absent.sock")})
    assert client.sealed
    with pytest.raises(RootKeyUnavailable, match=r"seal keeper is not running at .*absent\.sock"):
        client.check_value(1)
