"""The cluster's seal epoch, read and bumped on the default database.

``seal`` bumps it (committed) before sealing its own node; every node compares it with
the epoch its keys were unsealed at (:mod:`keys_app.cluster_seal`, which holds the
middleware that asks the root key provider to seal).  Only the row is here: this module
imports no app.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from hkms_core.cluster.models import SealEpoch


def seal_epoch_current() -> int:
    """The cluster's seal epoch (0 before the first seal)."""
    value = SealEpoch.objects.using("default").filter(id=1).values_list("epoch", flat=True).first()
    return int(value or 0)


def seal_epoch_bump() -> int:
    """Add one to the seal epoch, committed, and return it."""
    with transaction.atomic(using="default"):
        SealEpoch.objects.using("default").get_or_create(id=1)
        SealEpoch.objects.using("default").filter(id=1).update(epoch=F("epoch") + 1, changed_at=timezone.now())
        return int(SealEpoch.objects.using("default").values_list("epoch", flat=True).get(id=1))
