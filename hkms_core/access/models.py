"""API keys and role grants (default database).

An API key's secret key is shown once; only its SHA-256 digest is stored (the
secret is a random UUID, so a fast digest is enough: there is nothing to
brute-force).  Lookup is by the digest's unique index, then
``hmac.compare_digest``; never by scanning.

``RoleGrant`` is the source of truth for "user U holds role R on object O";
the guardian object permissions derived from it are what checks read.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    access_key = models.CharField(max_length=20, unique=True)
    secret_digest = models.CharField(max_length=64, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    default_project = models.ForeignKey(
        "tenancy.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    description = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return self.access_key

    def __repr__(self) -> str:
        return f"<ApiKey {self.access_key} user={self.user_id}>"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class RoleGrant(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="role_grants")
    role = models.CharField(max_length=32)
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_pk = models.CharField(max_length=64)
    project_id = models.UUIDField(db_index=True)
    granted_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "role", "content_type", "object_pk"], name="role_grant_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.role} on {self.content_type.model} {self.object_pk}"


class AccessGeneration(models.Model):
    """One row whose ``value`` grows whenever who-may-do-what changes.

    API-key revocation, role grants and revocations, user changes (deactivation,
    superuser flag) and object-permission changes bump it in the transaction of
    the change; every request reads it (one indexed primary-key read) and drops
    the principals it cached under an older value (``hkms_core.access.cache``),
    so a revocation takes effect on the next request in every process.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"access generation {self.value}"
