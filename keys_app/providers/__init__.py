"""Root key providers, looked up by name.

``HKMS_ROOT_KEY_PROVIDER`` names the provider that holds the *current* REK;
older REK versions may live in another provider during a migration, which is
why providers are looked up per REK version (see ``keys_app.services.root``).

* ``file`` — a 0600 keyring file (development only);
* ``pkcs11`` — non-extractable AES keys in an HSM (:mod:`.pkcs11`);
* ``shamir`` — a REK held in memory, unsealed by k-of-n shares (:mod:`.shamir`).
  With ``keeper_socket`` set (the default for servers) the process talks to
  the seal keeper (:mod:`.shamir_keeper`); without, it holds the keys itself.

Providers that can be sealed get a listener that runs every callback registered
with :func:`on_seal` (the services register theirs when imported: ``material``
drops this process's cached KEKs and DEKs, ``root`` its record of verified REK
versions).  The providers import no service: the services build on them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings

from keys_app.providers.base import RootKeyProvider, RootKeyUnavailable, Sealed

__all__ = ["RootKeyProvider", "RootKeyUnavailable", "Sealed", "get_provider", "on_seal", "reset_providers"]

PROVIDER_NAMES = ("file", "shamir", "pkcs11")

_lock = threading.Lock()
_instances: dict[str, RootKeyProvider] = {}
_seal_callbacks: list[Callable[[], None]] = []


def _create(name: str, options: dict[str, Any]) -> RootKeyProvider:
    # Local imports on purpose: only the configured provider's module is loaded (importing
    # them all would load python-pkcs11 and shamir-mnemonic on every installation).
    if name == "file":
        from keys_app.providers.file import FileRootKeyProvider

        return FileRootKeyProvider(options)
    if name == "pkcs11":
        from keys_app.providers.pkcs11 import Pkcs11RootKeyProvider

        return Pkcs11RootKeyProvider(options)
    if name == "shamir":
        if options.get("keeper_socket"):
            from keys_app.providers.shamir_keeper import ShamirKeeperClient

            return ShamirKeeperClient(options)
        from keys_app.providers.shamir import ShamirRootKeyProvider

        return ShamirRootKeyProvider(options)
    raise RootKeyUnavailable(f"unknown root key provider {name!r}")


def on_seal(callback: Callable[[], None]) -> None:
    """Run ``callback`` whenever a provider of this process seals (registered once per callback)."""
    if callback not in _seal_callbacks:
        _seal_callbacks.append(callback)


def drop_unwrapped_keys() -> None:
    """Forget every unwrapped key of this process (called on seal): run the :func:`on_seal` callbacks."""
    for callback in list(_seal_callbacks):
        callback()


def get_provider(name: str | None = None) -> RootKeyProvider:
    """The process-wide instance of provider ``name`` (default: the configured one)."""
    name = name or settings.HKMS_ROOT_KEY_PROVIDER
    with _lock:
        if name not in _instances:
            options: dict[str, Any] = dict(settings.HKMS_ROOT_KEY_OPTIONS.get(name, {}))
            provider = _create(name, options)
            add_listener = getattr(provider, "add_seal_listener", None)
            if add_listener is not None:
                add_listener(drop_unwrapped_keys)
            _instances[name] = provider
        return _instances[name]


def reset_providers() -> None:
    """Forget provider instances (tests that change settings; after a fork)."""
    with _lock:
        for provider in _instances.values():
            close = getattr(provider, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        _instances.clear()
