"""Shared by grant_role and revoke_role: resolve the target object from the options.

Secrets and keys are models of the apps above the foundation: their models come
from the registry of grantable kinds (:mod:`hkms_core.access.kinds`).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import CommandError, CommandParser

from hkms_core.access.kinds import kind_model
from hkms_core.access.principal import Principal
from hkms_core.access.projects import project_get
from hkms_core.access.roles import ROLE_NAMES


def add_role_arguments(parser: CommandParser) -> None:
    parser.add_argument("--user", required=True)
    parser.add_argument("--role", required=True, choices=ROLE_NAMES)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--project", help="project id or name")
    target.add_argument("--secret", help="secret id")
    target.add_argument("--key", help="key id")


def role_target(options: dict[str, Any]) -> Any:
    if options.get("project"):
        return project_get(principal=Principal.for_command(), project_id=options["project"])
    raw, kind = (options["secret"], "secret") if options.get("secret") else (options["key"], "key")
    model = kind_model(kind)
    try:
        object_id = uuid.UUID(raw)
    except ValueError:
        raise CommandError(f"{raw!r} is not a {kind} id (a UUID)") from None
    obj = model._default_manager.filter(id=object_id).first()
    if obj is None:
        raise CommandError(f"{kind} {object_id} does not exist")
    return obj
