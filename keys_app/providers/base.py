"""The root key provider interface.

A provider keeps the Root Encrypting Key (REK) out of every database and
performs the one operation the hierarchy needs from it: sealing and opening
KEK material.  Providers are versioned keyrings: version ``n`` is created once,
used to wrap KEK versions, and destroyed when no KEK version references it.

The kek database records, per REK version, only its number, the provider that
holds it and its key check value; :mod:`keys_app.services.root` compares the
provider's check value with the stored one before the first use, so a wrong
REK is refused before it can produce garbage.

Implementations: ``file`` (development), and later ``shamir`` and ``pkcs11``.
Each must raise :class:`RootKeyUnavailable` with a sentence an operator can act
on (never key bytes) when a version cannot be used.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar


class RootKeyUnavailable(Exception):
    """The REK (or one of its versions) cannot be used now; the message says why."""


class Sealed(RootKeyUnavailable):
    """The provider holds no key material in this process until it is unsealed."""


class RootKeyProvider(abc.ABC):
    """A keyring of REK versions that wraps and unwraps KEK material."""

    name: ClassVar[str]

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    @property
    def sealed(self) -> bool:
        """True when no operation needing key material can succeed right now."""
        return False

    @abc.abstractmethod
    def create_version(self, version: int) -> bytes:
        """Create REK ``version`` (idempotent if it exists) and return its check value."""

    @abc.abstractmethod
    def has_version(self, version: int) -> bool:
        """Whether this provider holds material for REK ``version``."""

    @abc.abstractmethod
    def check_value(self, version: int) -> bytes:
        """Key check value of the material held for ``version``."""

    @abc.abstractmethod
    def wrap(self, version: int, plaintext: bytes, *, context: bytes) -> bytes:
        """Seal KEK material under REK ``version`` with associated ``context``."""

    @abc.abstractmethod
    def unwrap(self, version: int, blob: bytes, *, context: bytes) -> bytes:
        """Open a blob made by :meth:`wrap`; raises ``crypto.InvalidCiphertext`` on tamper."""

    @abc.abstractmethod
    def destroy_version(self, version: int) -> None:
        """Forget REK ``version`` for good (idempotent)."""

    def describe(self) -> dict[str, Any]:
        """Non-secret facts for status pages: provider name, sealed, and options of note."""
        return {"provider": self.name, "sealed": self.sealed}
