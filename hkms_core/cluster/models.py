"""One row of cluster state on the default database."""

from __future__ import annotations

from django.db import models


class SealEpoch(models.Model):
    """``epoch`` grows by one on every ``seal`` (any node, any route: command, API, console).

    Every node compares it with the epoch at which its own shamir keys were unsealed and
    seals itself when they are older (:mod:`keys_app.cluster_seal`), so one ``seal`` seals
    the whole cluster within ``HKMS_SEAL_CHECK_SECONDS``.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    epoch = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"seal epoch {self.epoch}"
