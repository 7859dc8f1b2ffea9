"""Validation of Key Manager arguments: names, descriptions, tags, rotation policies, usages, sizes.

Every refusal is an ``InvalidArgument`` naming the field; nothing here reads the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from hkms_core.errors import InvalidArgument
from keys_app import asymmetric
from keys_app.models import KeyOrigin, KeyUsage
from keys_app.services.keys.limits import (
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_ROTATION_PERIOD,
    MAX_TAG,
    MAX_TAGS,
    MIN_ROTATION_PERIOD,
)


@dataclass(frozen=True)
class RotationPolicy:
    """``period`` None clears the policy; ``next_rotation_at`` defaults to now + period."""

    period: timedelta | None
    next_rotation_at: datetime | None = None


def aware(value: datetime) -> datetime:
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def bytes_arg(value: bytes | None, name: str, *, low: int, high: int) -> bytes:
    data = value or b""
    if not low <= len(data) <= high:
        raise InvalidArgument(name, f"must be {low} to {high} bytes")
    return data


def clean_text(value: str, name: str) -> str:
    """Refuse NUL characters (PostgreSQL text cannot hold them; nothing legitimate needs them)."""
    if "\x00" in value:
        raise InvalidArgument(name, "must not contain NUL characters")
    return value


def clean_name(name: str | None) -> str:
    if name is None or not str(name).strip():
        return f"key-{uuid.uuid4().hex[:8]}"
    name = clean_text(str(name).strip(), "name")
    if len(name) > MAX_NAME:
        raise InvalidArgument("name", f"must be at most {MAX_NAME} characters")
    return name


def clean_description(description: str | None) -> str:
    description = clean_text(description or "", "description")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidArgument("description", f"must be at most {MAX_DESCRIPTION} characters")
    return description


def clean_tags(tags: list[str] | None) -> list[str]:
    tags = list(tags or [])
    if len(tags) > MAX_TAGS:
        raise InvalidArgument("tags", f"at most {MAX_TAGS} tags")
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG or "\x00" in tag:
            raise InvalidArgument("tags", f"each tag must be a non-empty string of at most {MAX_TAG} characters")
    return list(dict.fromkeys(tag.strip() for tag in tags))


def clean_policy(
    policy: RotationPolicy | None, *, usage: str, origin: str, now: datetime
) -> tuple[timedelta | None, datetime | None]:
    if policy is None or (policy.period is None and policy.next_rotation_at is None):
        return None, None
    if usage != KeyUsage.SYMMETRIC_ENCRYPTION or origin != KeyOrigin.SCALEWAY_KMS:
        raise InvalidArgument(
            "rotation_policy", "only symmetric keys whose material Key Manager generated can have a rotation policy"
        )
    if policy.period is None:
        raise InvalidArgument("rotation_policy.rotation_period", "is required with next_rotation_at")
    if not MIN_ROTATION_PERIOD <= policy.period <= MAX_ROTATION_PERIOD:
        raise InvalidArgument("rotation_policy.rotation_period", "must be between 24 hours and 100 years")
    next_at = aware(policy.next_rotation_at) if policy.next_rotation_at else now + policy.period
    return policy.period, next_at


def clean_usage(usage: str | None, algorithm: str | None) -> asymmetric.Algorithm:
    usage = usage or KeyUsage.SYMMETRIC_ENCRYPTION
    algorithm = algorithm or ("aes_256_gcm" if usage == KeyUsage.SYMMETRIC_ENCRYPTION else "")
    if usage not in asymmetric.USAGES:
        raise InvalidArgument("usage", f"must be one of {', '.join(asymmetric.USAGES)}")
    if algorithm.startswith("unknown_") or not algorithm:
        raise InvalidArgument(
            f"usage.{usage}",
            "an algorithm is required (with the Python SDK, set the other KeyUsage fields to None)",
        )
    try:
        entry = asymmetric.algorithm(algorithm)
    except asymmetric.UnsupportedAlgorithm as exc:
        raise InvalidArgument(f"usage.{usage}", str(exc)) from None
    if entry.usage != usage:
        raise InvalidArgument(f"usage.{usage}", f"{algorithm} is an algorithm for {entry.usage}")
    return entry


__all__ = [
    "RotationPolicy",
    "aware",
    "bytes_arg",
    "clean_description",
    "clean_name",
    "clean_policy",
    "clean_tags",
    "clean_text",
    "clean_usage",
]
