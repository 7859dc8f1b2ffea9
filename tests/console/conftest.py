"""Console fixtures: one project with a user per role, a second project, and a secret in each.

Users (password ``pw-<name>-123!``): ``admin`` (superuser), ``reader``, ``writer``,
``sadmin`` (secret_admin), ``keyuser``, ``keyadmin``, ``auditor`` and ``padmin``
(project_admin) on project *acme*; ``other`` (secret_reader on *globex* only);
``stranger`` (no role at all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from keys_app.services.projects import project_default_key

ROLE_USERS = {
    "reader": "secret_reader",
    "writer": "secret_writer",
    "sadmin": "secret_admin",
    "keyuser": "key_user",
    "keyadmin": "key_admin",
    "auditor": "auditor",
    "padmin": "project_admin",
}
USERS = ("admin", *ROLE_USERS, "other", "stranger")


def password_of(name: str) -> str:
    return f"pw-{name}-123!"


@dataclass
class World:
    project: Any
    other_project: Any
    secret: Any
    other_secret: Any
    key: Any
    other_key: Any
    users: dict[str, Any] = field(default_factory=dict)
    #: The access key of an API key owned by ``reader``.
    reader_api_key: str = ""


@pytest.fixture(autouse=True)
def _console_settings(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "console-tests"},
        "login": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "console-login-tests"},
    }
    settings.HKMS_CONSOLE_JOB_RUNNER = "inline"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # django-otp's back-off would reject a right code right after a wrong one
    from django.core.cache import caches

    for alias in ("default", "login"):
        caches[alias].clear()


@pytest.fixture
def world(project, other_project, make_secret) -> World:
    from django.contrib.auth import get_user_model

    from hkms_core.access.principal import Principal
    from hkms_core.access.services import role_grant

    users = get_user_model().objects
    operator = Principal.for_command()
    made = {"admin": users.create_superuser("admin", "", password_of("admin"))}
    for name, role in ROLE_USERS.items():
        made[name] = users.create_user(name, password=password_of(name))
        role_grant(principal=operator, user=made[name], role=role, obj=project)
    made["other"] = users.create_user("other", password=password_of("other"))
    role_grant(principal=operator, user=made["other"], role="secret_reader", obj=other_project)
    made["stranger"] = users.create_user("stranger", password=password_of("stranger"))
    secret = make_secret(b"s3cr3t-payload-acme", name="db-password", path="/prod/db", tags=["prod", "db"])
    other_secret = make_secret(b"s3cr3t-payload-globex", name="globex-token", target_project=other_project)
    from hkms_core.access.apikeys import api_key_create

    issued = api_key_create(principal=operator, user=made["reader"], project=project)
    return World(
        reader_api_key=issued.api_key.access_key,
        project=project,
        other_project=other_project,
        secret=secret,
        other_secret=other_secret,
        key=project_default_key(project),
        other_key=project_default_key(other_project),
        users=made,
    )


@pytest.fixture
def as_user(client, world):
    """``as_user("reader")`` logs the (one, shared) test client in as that user and returns it."""

    def login(name: str):
        client.force_login(world.users[name])
        return client

    return login


CONFIRM_TOKEN = re.compile(r'name="confirm_token" value="([^"]+)"')


def confirm_token_of(response) -> str | None:
    """The confirmation token on a confirmation page, or None when the page is not one."""
    found = CONFIRM_TOKEN.search(response.content.decode()) if response.status_code == 200 else None
    return found.group(1) if found else None


def confirm_post(client, url: str, data: dict[str, Any] | None = None):
    """What a person does: open the action's confirmation page (GET), then press its button (POST with
    the token).  Without a confirmation page (not allowed to see it) the POST goes without a token."""
    data = dict(data or {})
    token = confirm_token_of(client.get(url, data))
    return client.post(url, {**data, "confirm_token": token} if token else data)
