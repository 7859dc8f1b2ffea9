"""Errors of the key hierarchy, each with a message an operator can act on.

Messages name the object (key id, version, DEK id) and never contain key
material or plaintext.  ``code`` is a stable machine-readable word.  Every class
derives from :class:`hkms_core.errors.HkmsError` (a sibling of ``ServiceError``:
catching one does not catch the other) and carries its Scaleway answer, which the
one exception handler renders:

* :class:`KeyDisabled` 412 ``precondition_failed``; :class:`KeyMaterialUnavailable`
  410 ``resource_expired``;
* :class:`RootKeyError` and :class:`NotInitialised` 503 ``sealed`` (retryable):
  the client gets the state in words (:func:`public_root_key_message`), the
  provider's own text (a key file, a PKCS#11 module) goes to the server log;
* :class:`IntegrityCheckFailed` (tampered or moved data) and any other
  ``HierarchyError`` 500 ``integrity_error``, logged as an error: the operator must look.
"""

from __future__ import annotations

import logging
from typing import Any

from hkms_core.errors import HkmsError


class HierarchyError(HkmsError):
    code = "hierarchy_error"
    status = 500
    type = "integrity_error"
    server_log: tuple[int, str] | None = (logging.ERROR, "hierarchy integrity failure: %s")


class NotInitialised(HierarchyError):
    code = "not_initialised"
    status = 503
    type = "sealed"
    retryable = True
    server_log = (logging.WARNING, "root key unavailable: %s")

    def __init__(self) -> None:
        super().__init__("the key hierarchy is not initialised: run `manage.py init_hierarchy`")

    def as_scaleway(self) -> dict[str, Any]:
        return {"type": self.type, "message": public_root_key_message(self)}


class RootKeyError(HierarchyError):
    """The REK is missing, sealed or does not match its stored check value."""

    code = "root_key_unavailable"
    status = 503
    type = "sealed"
    retryable = True
    server_log = (logging.WARNING, "root key unavailable: %s")

    def as_scaleway(self) -> dict[str, Any]:
        return {"type": self.type, "message": public_root_key_message(self)}


class KeyDisabled(HierarchyError):
    code = "key_disabled"
    status = 412
    type = "precondition_failed"
    server_log = None

    def __init__(self, key_id: object, state: str) -> None:
        message = f"key {key_id} is {state}: its material cannot be used"
        super().__init__(message, precondition="resource_not_usable", help_message=message)


class KeyMaterialUnavailable(HierarchyError):
    """A KEK version or DEK row is missing or destroyed."""

    code = "key_material_unavailable"
    status = 410
    type = "resource_expired"
    server_log = None


class IntegrityCheckFailed(HierarchyError):
    """A ciphertext or wrapped key failed authentication (tampered or moved).

    (Named so that it does not shadow Django's ``django.db.IntegrityError``.)
    """

    code = "integrity_error"


def public_root_key_message(exc: Exception) -> str:
    """What an API client is told about an unusable root key: the state, never a path or a module.

    The full message (which may name a key file or a PKCS#11 module) is for the server log."""
    text = str(exc)
    if "seal keeper is not running" in text:
        return "the seal keeper is not running on this node: start `manage.py seal_keeper`, then unseal"
    if "seal keeper" in text:
        return "the seal keeper on this node cannot be reached; the server log says why"
    if "sealed" in text:
        return "the service is sealed: custodians must unseal it"
    if "not initialised" in text:
        return "the key hierarchy is not initialised"
    return "the root key is not available on this node; the server log says why"
