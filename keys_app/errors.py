"""Errors of the key hierarchy, each with a message an operator can act on.

Messages name the object (key id, version, DEK id) and never contain key
material or plaintext.  ``code`` is a stable machine-readable word that the
REST layer maps to the Scaleway error shape.
"""

from __future__ import annotations


class HierarchyError(Exception):
    code = "hierarchy_error"


class NotInitialised(HierarchyError):
    code = "not_initialised"

    def __init__(self) -> None:
        super().__init__("the key hierarchy is not initialised: run `manage.py init_hierarchy`")


class RootKeyError(HierarchyError):
    """The REK is missing, sealed or does not match its stored check value."""

    code = "root_key_unavailable"


class KeyDisabled(HierarchyError):
    code = "key_disabled"

    def __init__(self, key_id: object, state: str) -> None:
        super().__init__(f"key {key_id} is {state}: its material cannot be used")


class KeyMaterialUnavailable(HierarchyError):
    """A KEK version or DEK row is missing or destroyed."""

    code = "key_material_unavailable"


class IntegrityError(HierarchyError):
    """A ciphertext or wrapped key failed authentication (tampered or moved)."""

    code = "integrity_error"
