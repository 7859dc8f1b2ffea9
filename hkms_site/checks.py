"""System checks for misconfiguration (``manage.py check``), with stable ids.

* ``hkms.E001`` unknown root key provider
* ``hkms.E002`` two database aliases point at the same database
* ``hkms.E003`` the root key file is readable by group or others
* ``hkms.W001`` the development-only ``file`` provider in production
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

KNOWN_PROVIDERS = {"file", "shamir", "pkcs11"}


def _identity(config: dict[str, Any]) -> tuple[str, ...]:
    return (config["ENGINE"], str(config.get("HOST", "")), str(config.get("PORT", "")), str(config["NAME"]))


@register("hkms")
def check_hierarchy_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    provider = settings.HKMS_ROOT_KEY_PROVIDER
    if provider not in KNOWN_PROVIDERS:
        problems.append(
            Error(
                f"HKMS_ROOT_KEY_PROVIDER={provider!r} is not a root key provider",
                hint=f"use one of: {', '.join(sorted(KNOWN_PROVIDERS))}",
                id="hkms.E001",
            )
        )
    seen: dict[tuple[str, ...], str] = {}
    for alias in ("default", "kek", "dek"):
        identity = _identity(settings.DATABASES[alias])
        if identity in seen:
            problems.append(
                Error(
                    f"databases '{seen[identity]}' and '{alias}' are the same database",
                    hint="the kek and dek databases exist to be separate from each other and from default; "
                    "give each its own URL (KEK_DATABASE_URL, DEK_DATABASE_URL)",
                    id="hkms.E002",
                )
            )
        seen[identity] = alias
    if provider == "file":
        path = Path(settings.HKMS_ROOT_KEY_OPTIONS["file"]["path"])
        if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            problems.append(
                Error(f"root key file {path} is readable by group or others", hint=f"chmod 600 {path}", id="hkms.E003")
            )
        if settings.HKMS_PRODUCTION:
            problems.append(
                Warning(
                    "the 'file' root key provider is for development only",
                    hint="use HKMS_ROOT_KEY_PROVIDER=shamir or pkcs11",
                    id="hkms.W001",
                )
            )
    return problems
