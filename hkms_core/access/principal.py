"""Who is acting: a user (console), an API key's user (REST) or an operator (command).

A ``Principal`` is built once per request or command and passed to every
service; it caches the principal's object grants so that a request costs one
permission query however many objects it checks.
"""

from __future__ import annotations

import os
import pwd
import socket
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hkms_core.access.models import ApiKey

Grants = dict[tuple[int, str], frozenset[str]]


@dataclass(eq=False)
class Principal:
    user: Any | None
    api_key: ApiKey | None = None
    source_ip: str = ""
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    via: str = "api"
    #: Operators on the command line act with full rights (root-key commands included).
    system: bool = False
    #: Who ran a command (OS user, host, pid, redacted command line): added to every event's detail.
    audit_context: dict[str, Any] = field(default_factory=dict)
    _grants: Grants | None = field(default=None, repr=False)

    @classmethod
    def for_command(cls, user: Any | None = None) -> Principal:
        """The operator running a management command (full rights, audited as such).

        Without a console ``user``, the audit actor is ``os_user@host``; every
        event also records the OS user, host, pid and the command line with
        secret values redacted (:func:`command_context`).
        """
        return cls(
            user=user,
            via="command",
            system=user is None or bool(getattr(user, "is_superuser", False)),
            audit_context=command_context(),
        )

    @property
    def is_superuser(self) -> bool:
        return self.system or bool(self.user is not None and self.user.is_active and self.user.is_superuser)

    @property
    def username(self) -> str:
        if self.user is not None:
            return str(self.user.get_username())
        if self.via == "command" and self.audit_context.get("os_user"):
            return f"{self.audit_context['os_user']}@{self.audit_context['host']}"[:150]
        return "system" if self.system else "anonymous"

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None

    def __repr__(self) -> str:
        key = self.api_key.access_key if self.api_key is not None else None
        return f"<Principal {self.username} via={self.via} api_key={key}>"


#: Options whose value is secret: the command line recorded in the audit log shows ``***`` instead.
SECRET_OPTION_WORDS = (
    "payload",
    "share",
    "password",
    "passphrase",
    "pin",
    "token",
    "secret-key",
    "material",
    "data",
    "value",
    "plaintext",
)


def _secret_option(name: str) -> bool:
    name = name.lower()
    return name == "--secret" or any(word in name for word in SECRET_OPTION_WORDS)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def redact_command_line(argv: Sequence[str]) -> str:
    """``argv`` joined by spaces, the value of every secret-bearing option replaced by ``***``.

    ``--payload X`` and ``--payload=X`` both become ``--payload ***``/``--payload=***``;
    ``--secret`` is a secret *id* in some commands, so a UUID value is kept.
    """
    out: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next:
            out.append(arg if _is_uuid(arg) and out[-1] == "--secret" else "***")
            redact_next = False
            continue
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            if _secret_option(name) and not (name == "--secret" and _is_uuid(value)):
                arg = f"{name}=***"
        elif arg.startswith("--") and _secret_option(arg):
            redact_next = True
        out.append(arg)
    return " ".join(out)


def command_context(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Who runs this process: OS user, host name, pid and the redacted command line.

    The user is the process's effective uid's name (not ``$USER``, which the
    caller chooses); under sudo, the invoking user is kept too.
    """
    try:
        os_user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # no passwd entry (some containers)
        os_user = f"uid-{os.geteuid()}"
    context: dict[str, Any] = {
        "os_user": os_user,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command_line": redact_command_line(sys.argv if argv is None else argv)[:500],
    }
    if os.environ.get("SUDO_USER"):
        context["sudo_user"] = os.environ["SUDO_USER"][:64]
    return context
