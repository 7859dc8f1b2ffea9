"""Read-only views of the hierarchy's own levels (REK, KEK, DEK), and the repair of KEK leftovers.

What the DEKs protect (secret versions) is verified one layer up, by
``secrets_app.services.verification``, which builds the full ``hierarchy_status``
and ``hierarchy_verify`` answers from these.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count

from keys_app.errors import HierarchyError
from keys_app.models import Dek, KekVersion, Key, RootKeyVersion, RotationJob
from keys_app.providers import get_provider
from keys_app.services import root
from keys_app.services.material import kek_material


def hierarchy_key_status() -> dict[str, Any]:
    """Counts per level and per key version, and what retired versions still wrap.

    A fixed number of queries: one per database table, grouped.  The counts of what
    the DEKs protect (secret versions) are added by ``secrets_app.services.verification``.
    """

    rek_rows = root.rek_versions()
    kek_rows: list[dict[str, Any]] = [
        dict(row) for row in KekVersion.objects.using("kek").values("key_id", "version", "state", "rek_version")
    ]
    dek_counts: dict[tuple[uuid.UUID, int], int] = {
        (row["key_id"], row["kek_version"]): row["n"]
        for row in Dek.objects.using("dek").values("key_id", "kek_version").annotate(n=Count("id")).order_by()
    }
    versions_by_key: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(kek_rows, key=lambda r: (str(r["key_id"]), r["version"])):
        versions_by_key[row["key_id"]].append(row)
    keys = []
    still_on_retired = 0
    for key in Key.objects.select_related("project").order_by("created_at"):
        versions = []
        for row in versions_by_key.get(key.id, []):
            deks = dek_counts.get((key.id, row["version"]), 0)
            if row["version"] != key.primary_version:
                still_on_retired += deks
            versions.append(
                {
                    "version": row["version"],
                    "state": row["state"],
                    "rek_version": row["rek_version"],
                    "primary": row["version"] == key.primary_version,
                    "deks": deks,
                }
            )
        keys.append(
            {
                "id": str(key.id),
                "name": key.name,
                "project_id": str(key.project_id),
                "state": key.state,
                "usage": key.usage,
                "primary_version": key.primary_version,
                "rotation_count": key.rotation_count,
                "next_rotation_at": key.next_rotation_at.isoformat() if key.next_rotation_at else None,
                "versions": versions,
                "deks_on_older_versions": sum(int(v["deks"]) for v in versions if not v["primary"]),
            }
        )
    current = next((r for r in reversed(rek_rows) if r.state == RootKeyVersion.State.ACTIVE), None)
    try:
        provider = get_provider().describe()
    except HierarchyError as exc:
        provider = {"error": str(exc)}
    return {
        "initialised": current is not None,
        "root": {
            "provider": provider,
            "current_version": current.version if current else None,
            "versions": [
                {
                    "version": r.version,
                    "provider": r.provider,
                    "state": r.state,
                    "kek_versions": sum(
                        1
                        for k in kek_rows
                        if k["rek_version"] == r.version and k["state"] != KekVersion.State.DESTROYED
                    ),
                }
                for r in rek_rows
            ],
        },
        "kek": {"keys": len(keys), "versions": len(kek_rows)},
        "dek": {"total": sum(dek_counts.values()), "wrapped_by_older_kek_versions": still_on_retired},
        "keys": keys,
        "running_jobs": [
            {
                "id": str(j.id),
                "kind": j.kind,
                "scope": j.scope,
                "phase": j.phase,
                "processed": j.processed,
                "total": j.total,
                "lease_owner": j.lease_owner,
            }
            for j in RotationJob.objects.using("kek").filter(state=RotationJob.State.RUNNING)
        ],
    }


def hierarchy_verify_keys() -> tuple[list[str], dict[str, int]]:
    """Check that every active REK version and every KEK version opens.

    Returns ``(failures, checked)``: one line per failure naming the object and the reason
    (never key bytes), and the counts ``rek_versions`` and ``kek_versions`` checked.  A KEK
    version under a retired REK version is a failure (left by an interrupted creation).
    """
    failures: list[str] = []
    checked = {"rek_versions": 0, "kek_versions": 0}
    retired_rek = set()
    for row in root.rek_versions():
        if row.state != RootKeyVersion.State.ACTIVE:
            retired_rek.add(row.version)
            continue
        try:
            root.rek_check(row)
            checked["rek_versions"] += 1
        except HierarchyError as exc:
            failures.append(f"REK version {row.version}: {exc}")
    for kek in KekVersion.objects.using("kek").exclude(state=KekVersion.State.DESTROYED).order_by("key_id", "version"):
        if kek.rek_version in retired_rek:
            failures.append(
                f"KEK version {kek.version} of key {kek.key_id} is wrapped under retired root key version "
                f"{kek.rek_version} (left by an interrupted creation; --repair removes it if nothing uses it)"
            )
            continue
        try:
            kek_material(kek.key_id, kek.version)
            checked["kek_versions"] += 1
        except HierarchyError as exc:
            failures.append(f"KEK version {kek.version} of key {kek.key_id}: {exc}")
    return failures, checked


#: How old an unreferenced DEK or KEK row must be before ``hierarchy_repair`` removes it when
#: its owner may still be in the middle of creating it.
REPAIR_GRACE = timedelta(hours=1)


def repair_kek_leftovers(cutoff: datetime) -> tuple[int, int]:
    """Remove KEK versions under a retired REK version, created before ``cutoff``, that nothing references.

    Referenced means: the key exists and the version is not above its primary one (those
    are left, and counted: nothing can open them).  Returns ``(removed, referenced)``.
    """
    retired = list(
        RootKeyVersion.objects.using("kek").filter(state=RootKeyVersion.State.RETIRED).values_list("version", flat=True)
    )
    rows = list(
        KekVersion.objects.using("kek")
        .filter(rek_version__in=retired, created_at__lt=cutoff)
        .exclude(state=KekVersion.State.DESTROYED)
        .values_list("id", "key_id", "version", "rek_version")
    )
    primaries = dict(Key.objects.filter(id__in={r[1] for r in rows}).values_list("id", "primary_version"))
    removed = referenced = 0
    for row_id, key_id, version, rek_version in rows:
        primary = primaries.get(key_id)
        if primary is not None and version <= primary:
            referenced += 1
            continue
        with transaction.atomic(using="kek"):
            removed += KekVersion.objects.using("kek").filter(id=row_id, rek_version=rek_version).delete()[0]
    return removed, referenced
