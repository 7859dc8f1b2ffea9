"""Audit events, hash-chained (default database).

Each event stores ``seq`` (1, 2, 3, … with no gaps), the hash of its
predecessor and the SHA-256 of ``prev_hash || canonical content``.  The single
``AuditChainHead`` row holds the last ``seq`` and hash; appends lock it, so
concurrent writers form one chain, and it exposes a truncated tail.
"""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    class Outcome(models.TextChoices):
        ALLOWED = "allowed"
        DENIED = "denied"
        FAILED = "failed"

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150)
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    api_key = models.CharField(max_length=20, blank=True, default="")
    via = models.CharField(max_length=16, blank=True, default="")
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=32, blank=True, default="")
    object_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    project_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    source_ip = models.CharField(max_length=64, blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        permissions = [("verify_audit_log", "Verify and export the audit log")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.actor} {self.action} {self.object_type}:{self.object_id} {self.outcome}"


class AuditChainHead(models.Model):
    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit chain head #{self.last_seq}"
