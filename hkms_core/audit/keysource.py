"""Where the audit chain gets its HMAC key: a source registered by the layer that holds keys.

The audit log lives in the foundation, but its key is wrapped by the root key,
which only ``keys_app`` can open.  So the dependency is inverted: this module
defines what the audit log needs (:class:`AuditKeySource`), and ``keys_app``
registers its implementation (``keys_app.services.audit_key``) with
:func:`set_key_source` in its ``AppConfig.ready()``.

Fail closed: with no source registered, a chain whose head names an audit key
version cannot be appended to (:class:`AuditKeyMissing`: the audited operation
fails and rolls back) nor verified (:class:`AuditKeyRefused`).  Only a chain
with no audit key yet (version 0) is written in the legacy unkeyed format.
"""

from __future__ import annotations

from typing import Protocol


class AuditKeyUnavailable(Exception):
    """The root key is sealed or its provider unreachable: new events are written unkeyed meanwhile."""


class AuditKeyRefused(Exception):
    """This audit key cannot verify the chain (unwrap failed, or not the key the chain was written with)."""


class AuditKeyMissing(Exception):
    """No audit key source is registered (``keys_app`` is not installed or not ready): nothing is audited."""


class AuditKeySource(Protocol):
    def key(self, version: int) -> bytes:
        """Audit key ``version`` (raw bytes, kept in memory only as long as the append).

        Raises :class:`AuditKeyUnavailable` while the root key is sealed or
        unreachable; any other failure (kek row altered or removed) propagates.
        """
        ...

    def key_for_verification(self, version: int, recorded: dict[str, str]) -> bytes:
        """Audit key ``version`` if its check value is the one the chain head ``recorded``.

        Raises :class:`AuditKeyRefused` otherwise, naming the version and the reason, never key bytes.
        """
        ...


_source: AuditKeySource | None = None


def set_key_source(source: AuditKeySource | None) -> None:
    """Register (or, with None, remove) the audit key source; called by ``keys_app``'s ``ready()``."""
    global _source
    _source = source


def key_source() -> AuditKeySource:
    """The registered source; :class:`AuditKeyMissing` when there is none."""
    if _source is None:
        raise AuditKeyMissing("no audit key source is registered: the audit log cannot key its events")
    return _source
