"""One seal state for the cluster: `seal` on one node seals the others (through the seal epoch in the
database), a node unsealed after the seal stays unsealed; /health tells whether this node can use
the current root key; a REK rotation keeps the share policy; API errors never carry a file path."""

from __future__ import annotations

import base64
import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from hkms_core.cluster.epoch import seal_epoch_bump, seal_epoch_current
from keys_app.cluster_seal import cluster_seal_check, forget_seen_epoch
from keys_app.providers import get_provider, reset_providers
from keys_app.providers.shamir import ShamirRootKeyProvider
from keys_app.services import material, root
from keys_app.services.seal import seal

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default", "kek", "dek"])]
BASE = "/secret-manager/v1beta1/regions/fr-par"


@pytest.fixture
def shamir(settings):
    """The shamir provider in this process (node A), initialised 2-of-3; returns the shares."""
    settings.HKMS_ROOT_KEY_PROVIDER = "shamir"
    settings.HKMS_ROOT_KEY_OPTIONS = {
        **settings.HKMS_ROOT_KEY_OPTIONS,
        "shamir": {"keeper_socket": "", "shares": 5, "threshold": 3},
    }
    settings.HKMS_SEAL_CHECK_SECONDS = 0
    reset_providers()
    forget_seen_epoch()
    out = StringIO()
    call_command("init_hierarchy", "--provider", "shamir", "--shares", "3", "--threshold", "2", "--json", stdout=out)
    issued = json.loads(out.getvalue().splitlines()[0])
    yield list(issued["shares"])
    forget_seen_epoch()


def other_node(shares: list[str]) -> ShamirRootKeyProvider:
    """Node B's provider: its own memory, the same databases; unsealed by two custodians."""
    node = ShamirRootKeyProvider({"shares": 5, "threshold": 3})
    for share in shares[:2]:
        node.submit_share(share)
    assert not node.sealed
    return node


def api_for(project) -> APIClient:
    user = get_user_model().objects.create_user("reader")
    role_grant(principal=Principal.for_command(), user=user, role="project_admin", obj=project)
    client = APIClient()
    client.credentials(
        HTTP_X_AUTH_TOKEN=api_key_create(principal=Principal.for_command(), user=user, project=project).secret_key
    )
    return client


def test_seal_on_one_node_seals_the_others_and_a_later_unseal_sticks(shamir):
    node_b = other_node(shamir)
    before = seal_epoch_current()
    result = seal()  # on node A
    assert result["sealed"] and result["cluster_epoch"] == before + 1
    assert get_provider("shamir").sealed
    assert not node_b.sealed  # B has not looked yet
    assert node_b.seal_if_unsealed_before(seal_epoch_current()) is True  # what B's next request does
    assert node_b.sealed
    for share in shamir[1:]:  # custodians unseal B again, after the seal
        node_b.submit_share(share)
    assert node_b.seal_if_unsealed_before(seal_epoch_current()) is False  # not older than the seal: stays
    assert not node_b.sealed


def test_a_seal_elsewhere_reaches_this_node_on_its_next_request(shamir, project):
    api = api_for(project)
    created = api.post(
        f"{BASE}/secrets",
        data=json.dumps({"name": "s", "project_id": str(project.id)}),
        content_type="application/json",
    ).json()
    api.post(
        f"{BASE}/secrets/{created['id']}/versions",
        data=json.dumps({"data": base64.b64encode(b"v").decode()}),
        content_type="application/json",
    )
    assert api.get(f"{BASE}/secrets/{created['id']}/versions/1/access").status_code == 200
    assert APIClient().get("/health").status_code == 200
    seal_epoch_bump()  # `seal` ran on another node
    refused = api.get(f"{BASE}/secrets/{created['id']}/versions/1/access")
    assert refused.status_code == 503 and refused.json()["type"] == "sealed"
    assert len(material.key_cache()) == 0
    health = APIClient().get("/health")
    assert health.status_code == 503 and health.json()["status"] == "sealed"
    assert health.json()["root_key"] == {"version": 1, "available": False}


def test_the_check_reads_the_epoch_at_most_once_per_interval(shamir, settings, django_assert_num_queries):
    settings.HKMS_SEAL_CHECK_SECONDS = 5
    cluster_seal_check(now=1000.0)
    with django_assert_num_queries(0):
        cluster_seal_check(now=1004.0)
    with django_assert_num_queries(1):
        cluster_seal_check(now=1005.0)


def test_rotation_keeps_the_share_policy_unless_told_otherwise(shamir):
    out = StringIO()
    call_command(
        "rotate_root_key",
        "--to-provider",
        "shamir",
        "--json",
        stdin=StringIO("\n".join(shamir[:2])),
        stdout=out,
        stderr=StringIO(),
    )
    issued = json.loads(out.getvalue().splitlines()[0])
    assert (issued["threshold"], issued["total"]) == (2, 3)  # as init_hierarchy made it, not the 3-of-5 default
    out = StringIO()
    call_command(
        "rotate_root_key",
        "--to-provider",
        "shamir",
        "--shares",
        "4",
        "--json",
        stdin=StringIO("\n".join(issued["shares"][:2])),
        stdout=out,
        stderr=StringIO(),
    )
    issued = json.loads(out.getvalue().splitlines()[0])
    assert (issued["threshold"], issued["total"]) == (2, 4)  # only what was asked changes


def test_a_node_without_the_current_root_key_is_unhealthy_and_says_no_path(project, settings, tmp_path):
    api = api_for(project)
    created = api.post(
        f"{BASE}/secrets",
        data=json.dumps({"name": "s", "project_id": str(project.id)}),
        content_type="application/json",
    ).json()
    api.post(
        f"{BASE}/secrets/{created['id']}/versions",
        data=json.dumps({"data": base64.b64encode(b"v").decode()}),
        content_type="application/json",
    )
    path = tmp_path / "root_keyring.json"  # the conftest's keyring for this test
    document = json.loads(path.read_text())
    document["versions"] = {"7": document["versions"]["1"]}  # an old copy: not the current version
    path.write_text(json.dumps(document))
    reset_providers()
    material.key_cache().clear()
    root.forget_verified_root_keys()
    refused = api.get(f"{BASE}/secrets/{created['id']}/versions/1/access")
    assert refused.status_code == 503
    assert "/" not in refused.json()["message"] and "root_keyring" not in refused.content.decode()
    health = APIClient().get("/health")
    assert health.status_code == 503 and health.json()["root_key"] == {"version": 1, "available": False}
    assert "/" not in health.content.decode().replace("/health", "")


@pytest.fixture
def keeper_node(settings):
    """This process as a worker of a node whose REK is held by a seal keeper (a thread here)."""
    import shutil
    import tempfile
    from pathlib import Path

    from tests.providers.test_keeper import start_keeper, stop_keeper

    directory = Path(tempfile.mkdtemp(prefix="hkms-k", dir="/tmp"))
    server = start_keeper(directory / "keeper.sock")
    settings.HKMS_ROOT_KEY_PROVIDER = "shamir"
    settings.HKMS_ROOT_KEY_OPTIONS = {
        **settings.HKMS_ROOT_KEY_OPTIONS,
        "shamir": {"keeper_socket": str(directory / "keeper.sock"), "shares": 5, "threshold": 3},
    }
    settings.HKMS_SEAL_CHECK_SECONDS = 0
    reset_providers()
    forget_seen_epoch()
    yield server
    reset_providers()
    forget_seen_epoch()
    stop_keeper(server)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.django_db(transaction=True, databases=["default", "kek", "dek"])
def test_through_the_seal_keeper_a_seal_elsewhere_seals_the_node_and_a_later_unseal_sticks(keeper_node):
    from keys_app.errors import RootKeyError
    from keys_app.services.seal import unseal_submit
    from tests.providers.test_keeper import init_through_keeper, read_all, seed, wait_until

    shares = init_through_keeper()
    seed()
    assert read_all() == [b"s3cr3t"]
    cluster_seal_check()
    assert not keeper_node.provider.sealed  # the epoch it was unsealed at is current
    seal_epoch_bump()  # `seal` on another node
    cluster_seal_check()
    assert keeper_node.provider.sealed
    assert wait_until(lambda: len(material.key_cache()) == 0), "the worker kept its cached keys"
    with pytest.raises(RootKeyError, match="sealed"):
        read_all()
    for share in shares[:3]:
        unseal_submit(share)
    forget_seen_epoch()  # another worker of the node, which has not seen the new epoch yet
    cluster_seal_check()
    assert not keeper_node.provider.sealed and read_all() == [b"s3cr3t"]
