"""Root key providers, looked up by name.

``HKMS_ROOT_KEY_PROVIDER`` names the provider that holds the *current* REK;
older REK versions may live in another provider during a migration, which is
why providers are looked up per REK version (see ``keys_app.services.root``).
"""

from __future__ import annotations

import threading
from typing import Any

from keys_app.providers.base import RootKeyProvider, RootKeyUnavailable, Sealed

__all__ = ["RootKeyProvider", "RootKeyUnavailable", "Sealed", "get_provider", "reset_providers"]

_lock = threading.Lock()
_instances: dict[str, RootKeyProvider] = {}


def _provider_class(name: str) -> type[RootKeyProvider]:
    if name == "file":
        from keys_app.providers.file import FileRootKeyProvider

        return FileRootKeyProvider
    raise RootKeyUnavailable(f"unknown root key provider {name!r}")


def get_provider(name: str | None = None) -> RootKeyProvider:
    """The process-wide instance of provider ``name`` (default: the configured one)."""
    from django.conf import settings

    name = name or settings.HKMS_ROOT_KEY_PROVIDER
    with _lock:
        if name not in _instances:
            options: dict[str, Any] = dict(settings.HKMS_ROOT_KEY_OPTIONS.get(name, {}))
            _instances[name] = _provider_class(name)(options)
        return _instances[name]


def reset_providers() -> None:
    """Forget provider instances (tests that change settings; after a fork)."""
    with _lock:
        _instances.clear()
