"""A human summary of a key revocation (``revoke_key``), from its exposure report.

The full report (every secret, DEK counts per KEK version) is for machines and
files; an operator first wants the counts: which project, how many secrets of
each type, what was re-encrypted, what was destroyed.  Reads ``default`` only.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hkms_core.tenancy.models import Project


def revocation_summary(*, report: dict[str, Any]) -> dict[str, Any]:
    """Counts per project and per secret type, versions re-encrypted, KEK versions destroyed.

    ``report`` is ``key_revoke``'s result or, for a dry run, ``key_exposure_report``'s.
    """
    from secrets_app.models import Secret

    secret_ids = [s["id"] for s in report.get("secrets", [])]
    rows = Secret.objects.filter(id__in=secret_ids).values_list("project_id", "type")
    per_project: Counter[str] = Counter(str(project) for project, _ in rows)
    per_type: Counter[str] = Counter(kind for _, kind in rows)
    wanted = [*per_project, report["project_id"]]
    names = {str(k): v for k, v in Project.objects.filter(id__in=wanted).values_list("id", "name")}
    return {
        "key_id": report["key_id"],
        "key_name": report["key_name"],
        "project": {"id": report["project_id"], "name": names.get(report["project_id"], "")},
        "secrets_per_project": {f"{names.get(p, '?')} ({p})": n for p, n in sorted(per_project.items())},
        "secrets_per_type": dict(sorted(per_type.items())),
        "secrets": len(secret_ids),
        "secret_versions_reencrypted": report.get("secret_versions", 0),
        "deks_per_kek_version": report.get("deks_per_kek_version", {}),
        "kek_versions_destroyed": report.get("destroyed_kek_versions", []),
        "new_primary_version": report.get("new_primary_version"),
    }


def revocation_summary_text(summary: dict[str, Any], *, dry_run: bool) -> str:
    """The summary as a few lines a human reads (no secret names: those are in the full report)."""
    project = summary["project"]
    verbs = ("would re-encrypt", "would destroy") if dry_run else ("re-encrypted", "destroyed")
    types = ", ".join(f"{n} {t}" for t, n in summary["secrets_per_type"].items())
    lines = [
        f"{'Revocation plan' if dry_run else 'Revoked'} key {summary['key_name']} ({summary['key_id']}) "
        f"of project {project['name']} ({project['id']})",
        f"  secrets under it: {summary['secrets']}" + (f" ({types})" if types else ""),
    ]
    lines += [f"    in project {p}: {n}" for p, n in summary["secrets_per_project"].items()]
    lines.append(f"  secret versions {verbs[0]} under fresh DEKs: {summary['secret_versions_reencrypted']}")
    if dry_run:
        held = ", ".join(f"v{v}: {n} DEK(s)" for v, n in summary["deks_per_kek_version"].items()) or "none"
        lines.append(f"  KEK versions that would be destroyed after re-wrapping: {held}")
    else:
        destroyed = ", ".join(f"v{v}" for v in summary["kek_versions_destroyed"]) or "none"
        lines.append(f"  KEK versions {verbs[1]}: {destroyed} (Key Manager ciphertexts they made are undecryptable)")
        lines.append(f"  new primary KEK version: v{summary['new_primary_version']}")
    return "\n".join(lines)
