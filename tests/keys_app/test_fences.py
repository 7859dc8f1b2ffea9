"""The REK and KEK fences: a creator slowed inside its wrap never leaves material under retired keys.

Each test holds a creator thread right after it wrapped new material under the
version it read (an injected hook around the module-level wrap function, no
sleep in production code), runs the rotation or revocation that retires that
version to completion in the main thread, then lets the creator commit.
Afterwards the new material must be usable, ``verify_hierarchy`` must pass and
the next rotation must succeed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections

from keys_app.models import Dek, KekVersion, Key, RootKeyVersion
from keys_app.services import material, root
from keys_app.services.material import kek_material, key_create_with_material
from keys_app.services.projects import project_default_key
from keys_app.services.rotation.kek import kek_rotate
from keys_app.services.rotation.rek import rek_rotate
from secrets_app.models import SecretVersion
from secrets_app.services.revocation import key_revoke
from secrets_app.services.verification import hierarchy_verify
from secrets_app.storage import secret_create, secret_version_create, secret_version_payload

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "kek", "dek"])


class Crash(BaseException):
    """Stands for the creator dying at this point (not an ``Exception``: nothing catches it)."""


class SlowWrap:
    """Replace ``material.<name>`` so that its first call blocks, after wrapping, until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.real: Callable[..., Any] = getattr(material, name)
        self.wrapped = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        monkeypatch.setattr(material, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.real(*args, **kwargs)
        self.calls += 1
        if self.calls == 1:
            self.wrapped.set()
            assert self.release.wait(60), "the test never released the creator"
        return out


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # reported by the test
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def cold_caches() -> None:
    material.key_cache().clear()
    root.forget_verified_root_keys()


def assert_verified() -> None:
    report = hierarchy_verify()
    assert report["ok"], report["failures"]


@pytest.mark.parametrize("creator", ["create_key", "rotate_kek"])
def test_kek_version_created_during_root_rotation_stays_usable(project, monkeypatch, creator):
    key = project_default_key(project)
    secret = secret_create(project=project, name="s", key=key)
    secret_version_create(secret=secret, data=b"before")
    slow = SlowWrap(monkeypatch, "rek_wrap")
    if creator == "create_key":
        thread, result = in_thread(lambda: key_create_with_material(project=project, name="late"))
    else:
        thread, result = in_thread(lambda: kek_rotate(key=Key.objects.get(id=key.id)))
    assert slow.wrapped.wait(30)
    first = rek_rotate()  # runs to completion while the creator holds material wrapped under REK 1
    assert first["retired_rek_versions"] == [1]
    slow.release.set()
    thread.join(60)
    assert "error" not in result, result.get("error")
    new_key = result["value"]
    cold_caches()
    version = new_key.primary_version
    assert KekVersion.objects.using("kek").get(key_id=new_key.id, version=version).rek_version == 2
    kek_material(new_key.id, version)  # usable: 503 "root key version 1 is not in the root key file" before
    if creator == "rotate_kek":
        fresh = secret_version_create(secret=secret, data=b"after")
        cold_caches()
        assert secret_version_payload(SecretVersion.objects.select_related("secret__key").get(id=fresh.id)) == (
            b"after"
        )
    assert_verified()
    second = rek_rotate()
    assert second["retired_rek_versions"] == [2]
    assert_verified()


def test_crashed_creator_leftover_is_not_reused_and_is_repaired(project, monkeypatch):
    """A creator that dies between its commit and its fence leaves a row under a retired REK.

    Nothing references it; a later rotation of the same key must not adopt it
    blindly (the key would be unusable), root rotations must go on, and
    ``--repair`` removes it.
    """
    key = project_default_key(project)
    slow = SlowWrap(monkeypatch, "rek_wrap")

    def crash(row: KekVersion, secret: Any) -> None:
        raise Crash()

    monkeypatch.setattr(material, "kek_version_fence", crash)
    thread, result = in_thread(lambda: kek_rotate(key=Key.objects.get(id=key.id)))
    assert slow.wrapped.wait(30)
    rek_rotate()
    slow.release.set()
    thread.join(60)
    assert isinstance(result.get("error"), Crash)
    monkeypatch.undo()
    cold_caches()
    leftover = KekVersion.objects.using("kek").get(key_id=key.id, version=2)
    assert leftover.rek_version == 1
    assert RootKeyVersion.objects.using("kek").get(version=1).state == RootKeyVersion.State.RETIRED
    report = hierarchy_verify()
    assert not report["ok"] and any("retired root key version 1" in f for f in report["failures"])
    assert rek_rotate()["unrecoverable_leftovers"] == 1  # a root rotation is not blocked by it
    key = kek_rotate(key=Key.objects.get(id=key.id))  # the leftover is replaced, not reused
    assert key.primary_version == 2
    cold_caches()
    kek_material(key.id, 2)
    assert_verified()
    # The same leftover on a key that is never rotated again goes with --repair.
    other = key_create_with_material(project=project, name="other")
    monkeypatch.setattr(material, "kek_version_fence", crash)
    slow = SlowWrap(monkeypatch, "rek_wrap")
    thread, result = in_thread(lambda: kek_rotate(key=Key.objects.get(id=other.id)))
    assert slow.wrapped.wait(30)
    rek_rotate()
    slow.release.set()
    thread.join(60)
    monkeypatch.undo()
    assert not hierarchy_verify()["ok"]
    from secrets_app.services.verification import hierarchy_repair

    repaired = hierarchy_repair(grace=timedelta(0))
    assert repaired["kek_leftovers_removed"] == 1
    assert_verified()


def test_dek_created_during_revocation_stays_readable(project, monkeypatch):
    key = project_default_key(project)
    secret = secret_create(project=project, name="s", key=key)
    for i in range(3):
        secret_version_create(secret=secret, data=b"old-%d" % i)
    slow = SlowWrap(monkeypatch, "dek_wrap")
    thread, result = in_thread(
        lambda: secret_version_create(secret=secret_create(project=project, name="late", key=key), data=b"late")
    )
    assert slow.wrapped.wait(30)  # its DEK is wrapped under version 1, not yet committed
    report = key_revoke(key=Key.objects.get(id=key.id), reason="test: compromised")
    assert report["destroyed_kek_versions"] == [1]
    slow.release.set()
    thread.join(60)
    assert "error" not in result, result.get("error")
    late = result["value"]
    cold_caches()
    assert Dek.objects.using("dek").get(id=late.dek_id).kek_version == 2
    version = SecretVersion.objects.select_related("secret__key").get(id=late.id)
    assert secret_version_payload(version) == b"late"  # "version 1 … was destroyed" before
    assert_verified()
    again = key_revoke(key=Key.objects.get(id=key.id), reason="test: again")
    assert again["destroyed_kek_versions"] == [2]
    cold_caches()
    assert secret_version_payload(SecretVersion.objects.select_related("secret__key").get(id=late.id)) == b"late"
    assert_verified()
