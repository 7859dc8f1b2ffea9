from __future__ import annotations

from typing import Any

from keys_app.management.base import HierarchyCommand
from secrets_app.services.verification import hierarchy_status


class Command(HierarchyCommand):
    audited = False
    help = "Counts per level and per key version, and what older KEK versions still wrap."

    def run(self, **options: Any) -> dict[str, Any]:
        return hierarchy_status()

    def render(self, result: dict[str, Any]) -> str:
        root = result["root"]
        lines = [
            f"root key: provider {root['provider'].get('provider', '?')}, current version "
            f"{root['current_version']}, sealed: {root['provider'].get('sealed', '?')}",
        ]
        lines += self._provider_lines(root["provider"])
        for row in root["versions"]:
            lines.append(
                f"  REK v{row['version']} [{row['provider']}] {row['state']}: wraps {row['kek_versions']} KEK versions"
            )
        lines.append(f"keys: {result['kek']['keys']}, KEK versions: {result['kek']['versions']}")
        lines.append(
            f"DEKs: {result['dek']['total']}, still wrapped by older KEK versions: "
            f"{result['dek']['wrapped_by_older_kek_versions']}"
        )
        for key in result["keys"]:
            lines.append(f"  key {key['id']} {key['name']} [{key['state']}] primary v{key['primary_version']}")
            for v in key["versions"]:
                mark = "*" if v["primary"] else " "
                lines.append(f"    {mark} v{v['version']} {v['state']} (REK v{v['rek_version']}): {v['deks']} DEKs")
        counts = ", ".join(f"{k} {n}" for k, n in sorted(result["secret_versions"].items())) or "none"
        lines.append(f"secret versions: {counts}")
        for job in result["running_jobs"]:
            lines.append(
                f"unfinished job {job['kind']} [{job['scope']}] {job['processed']}/{job['total']} "
                "(re-run the command to continue)"
            )
        return "\n".join(lines)

    @staticmethod
    def _provider_lines(facts: dict[str, Any]) -> list[str]:
        """Provider specifics: shamir threshold and share count, unseal progress; the HSM token."""
        lines = []
        if facts.get("provider") == "shamir":
            if facts.get("threshold"):
                lines.append(f"  shamir: {facts['threshold']} of {facts['shares']} custodian shares unseal it")
            if facts.get("sealed") and facts.get("unseal_threshold"):
                lines.append(f"  unseal progress: {facts.get('unseal_progress', 0)} of {facts['unseal_threshold']}")
            if facts.get("keeper_socket"):
                lines.append(f"  seal keeper: {facts['keeper_socket']}")
        elif facts.get("provider") == "pkcs11":
            lines.append(
                f"  pkcs11: token {facts.get('token_label')!r}, key label {facts.get('key_label')!r}, "
                f"module {facts.get('module')}, reachable: {facts.get('reachable')}"
            )
        if facts.get("error"):
            lines.append(f"  provider error: {facts['error']}")
        return lines
