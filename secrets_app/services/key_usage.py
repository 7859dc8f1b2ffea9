"""What secrets a key protects, reported to keys_app through its hooks (:mod:`keys_app.services.exposure`).

Registered in ``SecretsAppConfig.ready()``.  Read-only, default database only, no
locks taken: ``keys_purge_deleted`` calls :func:`key_named_by_secrets` while it
holds the key's row lock.
"""

from __future__ import annotations

import uuid
from typing import Any

from keys_app.models import Key
from secrets_app.models import Secret, SecretVersion


def secrets_under_key(key: Key) -> dict[str, Any]:
    """The secrets protected by ``key`` (id, path, name) and how many of their versions hold a payload."""
    secrets = Secret.objects.filter(key_id=key.id)
    versions = SecretVersion.objects.filter(secret__key_id=key.id, dek_id__isnull=False)
    return {
        "secrets": [{"id": str(s.id), "path": s.path, "name": s.name} for s in secrets.order_by("path", "name")],
        "secret_versions": versions.count(),
    }


def key_named_by_secrets(key_id: uuid.UUID) -> bool:
    """Whether a secret still names the key (a purged key then keeps its invisible row)."""
    return Secret.objects.filter(key_id=key_id).exists()
