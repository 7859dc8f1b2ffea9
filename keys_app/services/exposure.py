"""What a key protects beyond the hierarchy, asked of the layers above through hooks.

keys_app knows KEK versions and DEKs, not what the DEKs protect.  The app that
stores data under keys (``secrets_app``) registers, in its ``AppConfig.ready()``:

* a **usage reporter** ``(key) -> {"secrets": [...], "secret_versions": n}``:
  what a compromise or a shredding of the key reaches (exposure reports, the
  ``key.delete_key_material`` and ``key.purge`` audit events);
* a **reference check** ``(key_id) -> bool``: whether something still names the
  key, so that a purged key keeps its (invisible) row.

With nothing registered a key protects nothing and nothing names it.  The hooks
only read; they must not write nor take locks (``keys_purge_deleted`` calls the
reference check while it holds the key's row lock).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.db.models import Count

from keys_app.models import Dek, KekVersion, Key

UsageReporter = Callable[[Key], dict[str, Any]]
ReferenceCheck = Callable[[uuid.UUID], bool]

_reporters: list[UsageReporter] = []
_reference_checks: list[ReferenceCheck] = []


def register_key_usage(reporter: UsageReporter, *, references: ReferenceCheck | None = None) -> None:
    """Add a usage reporter (and optionally a reference check); registering one twice is a no-op."""
    if reporter not in _reporters:
        _reporters.append(reporter)
    if references is not None and references not in _reference_checks:
        _reference_checks.append(references)


def key_usage(key: Key) -> dict[str, Any]:
    """``{"secrets": [...], "secret_versions": n}`` summed over the registered reporters."""
    secrets: list[dict[str, Any]] = []
    versions = 0
    for reporter in list(_reporters):
        usage = reporter(key)
        secrets.extend(usage.get("secrets", []))
        versions += int(usage.get("secret_versions", 0))
    return {"secrets": secrets, "secret_versions": versions}


def key_is_referenced(key_id: uuid.UUID) -> bool:
    """Whether a registered reference check says something still names ``key_id``."""
    return any(check(key_id) for check in list(_reference_checks))


def key_exposure_report(key: Key) -> dict[str, Any]:
    """What a compromise of ``key``'s current material reached: projects, secrets, versions."""
    dek_counts = dict(
        Dek.objects.using("dek").filter(key_id=key.id).values_list("kek_version").annotate(n=Count("id")).order_by()
    )
    usage = key_usage(key)
    return {
        "key_id": str(key.id),
        "key_name": key.name,
        "project_id": str(key.project_id),
        "kek_versions": sorted(
            KekVersion.objects.using("kek")
            .filter(key_id=key.id)
            .exclude(state=KekVersion.State.DESTROYED)
            .values_list("version", flat=True)
        ),
        "deks_per_kek_version": {str(v): n for v, n in sorted(dek_counts.items())},
        "secrets": usage["secrets"],
        "secret_versions": usage["secret_versions"],
    }
