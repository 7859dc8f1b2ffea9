"""The Key Manager's limits (sizes, rotation periods, the deletion delay) and list orderings.

Scaleway's limits where it documents them; ``ORDERINGS`` break ties by id.
"""

from __future__ import annotations

from datetime import timedelta

#: A deleted key can be restored for this long; after that it is gone (and purged).
DELETION_DELAY = timedelta(days=7)


MIN_ROTATION_PERIOD = timedelta(hours=24)


MAX_ROTATION_PERIOD = timedelta(hours=876_000)  # 100 years


MAX_ENCRYPT_PLAINTEXT = 65_535


MAX_DECRYPT_CIPHERTEXT = 131_071


MAX_ASSOCIATED_DATA = 65_535


MAX_NAME = 255


MAX_DESCRIPTION = 4096


MAX_TAGS = 64


MAX_TAG = 128


ORDERINGS = {
    "name_asc": ("name", "id"),
    "name_desc": ("-name", "-id"),
    "created_at_asc": ("created_at", "id"),
    "created_at_desc": ("-created_at", "-id"),
    "updated_at_asc": ("updated_at", "id"),
    "updated_at_desc": ("-updated_at", "-id"),
}


__all__ = [
    "DELETION_DELAY",
    "MAX_ASSOCIATED_DATA",
    "MAX_DECRYPT_CIPHERTEXT",
    "MAX_DESCRIPTION",
    "MAX_ENCRYPT_PLAINTEXT",
    "MAX_NAME",
    "MAX_ROTATION_PERIOD",
    "MAX_TAG",
    "MAX_TAGS",
    "MIN_ROTATION_PERIOD",
    "ORDERINGS",
]
