"""Backups the operator keeps (kek database, beside the REK metadata).

A ``BackupRecord`` is written by ``backup`` and names the REK versions that the
backup's KEK table needs.  While a record is ``retained``, retiring one of those
REK versions (``rotate_root_key``) keeps its material in the provider, so the
backup stays decryptable; ``forget_backup`` releases the record and destroys the
material of retired versions no retained backup needs any more.
"""

from __future__ import annotations

import uuid

from django.db import models


class BackupRecord(models.Model):
    class State(models.TextChoices):
        RETAINED = "retained"
        FORGOTTEN = "forgotten"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField()
    #: REK versions the backup's KEK versions are wrapped by (their material must be kept).
    rek_versions = models.JSONField(default=list)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RETAINED)
    #: Where the archive was written, and its SHA-256 (for the operator's records).
    archive = models.CharField(max_length=1024, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    forgotten_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"backup {self.id} ({self.state})"
