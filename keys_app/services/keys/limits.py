"""The Key Manager's limits: sizes of names, tags, payloads and associated data; rotation periods.

Scaleway's limits where it documents them.  The deletion delay and the list orderings
are shared with the Secret Manager: ``hkms_core.lifecycle``.
"""

from __future__ import annotations

from datetime import timedelta

MIN_ROTATION_PERIOD = timedelta(hours=24)
MAX_ROTATION_PERIOD = timedelta(hours=876_000)  # 100 years
MAX_ENCRYPT_PLAINTEXT = 65_535
MAX_DECRYPT_CIPHERTEXT = 131_071
MAX_ASSOCIATED_DATA = 65_535
MAX_NAME = 255
MAX_DESCRIPTION = 4096
MAX_TAGS = 64
MAX_TAG = 128

__all__ = [
    "MAX_ASSOCIATED_DATA",
    "MAX_DECRYPT_CIPHERTEXT",
    "MAX_DESCRIPTION",
    "MAX_ENCRYPT_PLAINTEXT",
    "MAX_NAME",
    "MAX_ROTATION_PERIOD",
    "MAX_TAG",
    "MAX_TAGS",
    "MIN_ROTATION_PERIOD",
]
