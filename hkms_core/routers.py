"""Database routing for the three-level hierarchy.

* ``kek``: REK metadata, wrapped KEK versions, rotation jobs, backup records and the wrapped audit key.
* ``dek``: wrapped DEKs.
* ``default``: everything else (projects, secrets and their ciphertexts, key
  metadata, auth, guardian, sessions, audit).

Invariants: each alias migrates only its own tables (so the kek database holds
no secret ciphertext and the dek database no KEK material), and no relation
crosses databases (cross-database references are plain UUID columns).  Models
are named by ``app_label.model_name`` because historical models used by
migrations carry no custom class attributes.
"""

from __future__ import annotations

from typing import Any

KEK_MODELS = frozenset(
    {
        ("keys_app", "rootkeyversion"),
        ("keys_app", "kekversion"),
        ("keys_app", "rotationjob"),
        ("backup", "backuprecord"),  # which REK versions retained backups need
        ("audit", "auditkey"),  # the audit chain's key, wrapped by the REK
    }
)
DEK_MODELS = frozenset({("keys_app", "dek")})


def database_for(app_label: str, model_name: str) -> str:
    key = (app_label, model_name.lower())
    if key in KEK_MODELS:
        return "kek"
    if key in DEK_MODELS:
        return "dek"
    return "default"


class HierarchyRouter:
    """Send key material to its own database; keep everything else on default."""

    def _db(self, model: Any) -> str:
        return database_for(str(model._meta.app_label), str(model._meta.model_name))

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return self._db(model)

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self._db(model)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return self._db(type(obj1)) == self._db(type(obj2))

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        if model_name is None:
            # RunPython/RunSQL without a model: only on default unless told otherwise.
            return bool(hints.get("target_db", "default") == db)
        return database_for(app_label, model_name) == db
