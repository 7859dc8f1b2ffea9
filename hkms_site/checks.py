"""System checks for misconfiguration (``manage.py check``), with stable ids.

* ``hkms.E001`` unknown root key provider
* ``hkms.E002`` two database aliases point at the same database
* ``hkms.E003`` the root key file is readable by group or others
* ``hkms.W001`` the development-only ``file`` provider in production
* ``hkms.E004`` ``pkcs11``: no PKCS#11 module configured, or the module file is missing
* ``hkms.E005`` ``pkcs11``: no PIN configured, or the PIN file cannot be read
* ``hkms.E006`` ``shamir``: the seal keeper socket path is too long for a Unix socket
* ``hkms.E007`` ``shamir``: the share count or threshold is out of range
* ``hkms.W002`` ``shamir`` held in-process in production (an unseal would not reach server workers)
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
    problems += _pkcs11_problems(settings.HKMS_ROOT_KEY_OPTIONS.get("pkcs11", {})) if provider == "pkcs11" else []
    problems += _shamir_problems(settings.HKMS_ROOT_KEY_OPTIONS.get("shamir", {})) if provider == "shamir" else []
    return problems


def _pkcs11_problems(options: dict[str, Any]) -> list[Any]:
    problems: list[Any] = []
    module = str(options.get("module") or "")
    if not module or not Path(module).is_file():
        problems.append(
            Error(
                f"the PKCS#11 module {module or '(none)'} does not exist" if module else "no PKCS#11 module configured",
                hint="set HKMS_PKCS11_MODULE to the HSM vendor's library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)",
                id="hkms.E004",
            )
        )
    pin_file = str(options.get("pin_file") or "")
    if not options.get("pin") and not pin_file:
        problems.append(
            Error(
                "no PIN configured for the PKCS#11 token",
                hint="set HKMS_PKCS11_PIN_FILE (or HKMS_PKCS11_PIN)",
                id="hkms.E005",
            )
        )
    elif pin_file and not options.get("pin"):
        try:
            Path(pin_file).read_text()
        except OSError as exc:
            problems.append(Error(f"the PKCS#11 PIN file {pin_file} cannot be read ({exc.strerror})", id="hkms.E005"))
    return problems


def _shamir_problems(options: dict[str, Any]) -> list[Any]:
    problems: list[Any] = []
    socket_path = str(options.get("keeper_socket") or "")
    if socket_path and len(socket_path.encode()) > 107:
        problems.append(
            Error(
                f"the seal keeper socket path is {len(socket_path.encode())} bytes; Unix sockets allow 107",
                hint="set HKMS_SHAMIR_KEEPER_SOCKET to a shorter path, e.g. /run/hkms/seal-keeper.sock",
                id="hkms.E006",
            )
        )
    total, threshold = int(options.get("shares", 5)), int(options.get("threshold", 3))
    if not 2 <= threshold <= total <= 16:
        problems.append(
            Error(
                f"a shamir share set of {threshold} of {total} is not possible",
                hint="HKMS_SHAMIR_THRESHOLD must be at least 2 and at most HKMS_SHAMIR_SHARES, which is at most 16",
                id="hkms.E007",
            )
        )
    if not socket_path and settings.HKMS_PRODUCTION:
        problems.append(
            Warning(
                "the shamir root key is held in-process: an unseal reaches only the process that received it",
                hint="run `manage.py seal_keeper` and set HKMS_SHAMIR_KEEPER_SOCKET for gunicorn workers",
                id="hkms.W002",
            )
        )
    return problems
