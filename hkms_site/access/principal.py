"""Who is acting: a user (console), an API key's user (REST) or an operator (command).

A ``Principal`` is built once per request or command and passed to every
service; it caches the principal's object grants so that a request costs one
permission query however many objects it checks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hkms_site.access.models import ApiKey

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
    _grants: Grants | None = field(default=None, repr=False)

    @classmethod
    def for_command(cls, user: Any | None = None) -> Principal:
        """The operator running a management command (full rights, audited as such)."""
        return cls(user=user, via="command", system=user is None or bool(getattr(user, "is_superuser", False)))

    @property
    def is_superuser(self) -> bool:
        return self.system or bool(self.user is not None and self.user.is_active and self.user.is_superuser)

    @property
    def username(self) -> str:
        if self.user is not None:
            return str(self.user.get_username())
        return "system" if self.system else "anonymous"

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None

    def __repr__(self) -> str:
        key = self.api_key.access_key if self.api_key is not None else None
        return f"<Principal {self.username} via={self.via} api_key={key}>"
