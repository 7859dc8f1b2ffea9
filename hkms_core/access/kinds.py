"""The kinds of object roles are granted on above the foundation (``secret``, ``key``), registered by their apps.

Access control lives in the foundation, but keys and secrets are models of the
apps above it.  So each app registers the models it owns with
:func:`register_kind` in its ``AppConfig.ready()`` (``keys_app``: ``key``;
``secrets_app``: ``secret``), and the operator commands that take an object by
kind (``grant_role --key ID``) look the model up with :func:`kind_model`.  The
third kind, ``project``, is the foundation's own model (hkms_core.tenancy) and
is imported directly.  A kind nobody
registered is a ``LookupError`` naming it: a configuration error, not a client's.
"""

from __future__ import annotations

from django.db.models import Model

_KINDS: dict[str, type[Model]] = {}


def register_kind(kind: str, model: type[Model]) -> None:
    """Make ``model`` the model of objects of ``kind`` (idempotent; the last registration wins)."""
    _KINDS[kind] = model


def kind_model(kind: str) -> type[Model]:
    """The model registered for ``kind``; ``LookupError`` if no installed app registered it."""
    try:
        return _KINDS[kind]
    except KeyError:
        raise LookupError(f"no installed app registered objects of kind {kind!r}") from None
