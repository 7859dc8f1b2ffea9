"""Key revocation: rotate the key, re-encrypt every secret under it, destroy the compromised material.

The domain action behind ``revoke_key``.  keys_app owns the key's versions
(``kek_rotate``, ``kek_versions_destroy``); the re-encryption is DEK rotation of
the secret versions under the key (``dek_rotation.deks_rotate``): re-wrapping is
not enough, the attacker may hold the dek database.  Each phase is resumable
(the revoke job remembers the compromised versions and the exposure report) and
crash-safe by the rules of :mod:`keys_app.services.rotation`.

Also the human summary of a revocation (counts per project and secret type),
from its exposure report; it reads ``default`` only.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hkms_core.tenancy.models import Project
from keys_app.models import Key, RotationJob
from keys_app.services.exposure import key_exposure_report
from keys_app.services.jobs import Progress, job_advance, job_claim, job_finish, job_heartbeat
from keys_app.services.material import key_cache
from keys_app.services.rotation.kek import kek_rotate, kek_versions_destroy
from secrets_app.models import Secret
from secrets_app.services.dek_rotation import deks_rotate


def key_revoke(*, key: Key, reason: str, batch_size: int = 500, progress: Progress | None = None) -> dict[str, Any]:
    """Revoke a compromised key: rotate, re-encrypt everything under it, destroy old material.

    Phases (each resumable; the revoke job remembers the compromised versions):
    ``rotate`` makes a fresh version primary, so the compromised versions wrap
    nothing new; ``reencrypt`` rotates the DEKs of every secret version under
    the key (re-wrapping is not enough: the attacker may hold the dek
    database); ``destroy`` shreds each compromised version once no DEK
    references it.  Key Manager ciphertexts made by those versions become
    undecryptable, which is the point of revocation.
    """
    job, resumed = job_claim(RotationJob.Kind.REVOKE_KEY, f"key:{key.id}")
    with job_heartbeat(job):
        key.refresh_from_db()  # the caller's copy may predate a rotation
        if "compromised" not in job.params:
            report = key_exposure_report(key)
            compromised = [v for v in report["kek_versions"] if v <= key.primary_version]
            job_advance(job, params={"compromised": compromised, "reason": reason, "report": report}, phase="rotate")
        compromised = list(job.params["compromised"])
        key.refresh_from_db()
        if key.primary_version in compromised:
            key = kek_rotate(key=key)
        job_advance(job, phase="reencrypt")
        deks_rotate(key=key, batch_size=batch_size, progress=progress)
        job_advance(job, phase="destroy")
        destroyed = kek_versions_destroy(key=key, versions=compromised, batch_size=batch_size)
    key_cache().drop_owner(str(key.id))
    job_finish(job)
    report = dict(job.params["report"])
    report.update(
        {
            "reason": job.params["reason"],
            "destroyed_kek_versions": destroyed,
            "new_primary_version": key.primary_version,
            "job": str(job.id),
            "resumed": resumed,
        }
    )
    return report


def revocation_summary(*, report: dict[str, Any]) -> dict[str, Any]:
    """Counts per project and per secret type, versions re-encrypted, KEK versions destroyed.

    ``report`` is ``key_revoke``'s result or, for a dry run, ``key_exposure_report``'s.
    """
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
