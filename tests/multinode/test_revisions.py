"""After a failover that lost acknowledged versions, their revision numbers are not handed out again."""

from __future__ import annotations

import logging

import pytest

from secrets_app.models import Secret, SecretVersion
from secrets_app.storage import secret_version_create

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default", "kek", "dek"])]


def lose_versions_after(secret: Secret, revision: int) -> None:
    """What the default database looks like after promoting a replica that missed the last commits."""
    SecretVersion.objects.filter(secret=secret, revision__gt=revision).delete()
    Secret.objects.filter(id=secret.id).update(version_count=revision)


def test_revisions_lost_in_a_failover_are_not_reused(make_secret, caplog):
    secret = make_secret(b"one", b"two", b"three")
    assert secret.version_count == 3
    lose_versions_after(secret, 1)
    secret.refresh_from_db()
    with caplog.at_level(logging.ERROR, logger="hkms.revisions"):
        version = secret_version_create(secret=secret, data=b"four")
    assert version.revision == 4  # not 2: revisions 2 and 3 were acknowledged to someone
    assert "revisions 2 to 3" in caplog.text and "four" not in caplog.text
    assert secret_version_create(secret=secret, data=b"five").revision == 5
    assert sorted(SecretVersion.objects.filter(secret=secret).values_list("revision", flat=True)) == [1, 4, 5]
