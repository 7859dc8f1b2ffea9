"""Who an audit event says acted: the few attributes the audit log reads of a principal.

``hkms_core.access.principal.Principal`` has them; the audit log only names this
protocol, so it does not depend on the access package (which records its own
grants and revocations in the audit log: access sits above audit).
"""

from __future__ import annotations

from typing import Any, Protocol


class AuditedApiKey(Protocol):
    @property
    def access_key(self) -> str: ...


class Actor(Protocol):
    @property
    def username(self) -> str: ...
    @property
    def user_id(self) -> int | None: ...
    @property
    def api_key(self) -> AuditedApiKey | None: ...
    @property
    def via(self) -> str: ...
    @property
    def source_ip(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def audit_context(self) -> dict[str, Any]: ...
