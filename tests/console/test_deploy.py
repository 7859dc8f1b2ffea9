"""Production settings pass ``check --deploy``; ``bootstrap_admin`` makes the first login possible."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_passes_in_production(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HKMS_", "DJANGO_"))}
    env.update(
        HKMS_PRODUCTION="1",
        HKMS_DATA_DIR=str(tmp_path),
        DJANGO_SECRET_KEY="x7!Qp" * 12,
        DJANGO_ALLOWED_HOSTS="hkms.example.com",
        DJANGO_SETTINGS_MODULE="hkms_site.settings",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "security.W" not in output and "security.E" not in output, output


def test_production_settings_are_strict(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HKMS_", "DJANGO_"))}
    env.update(HKMS_PRODUCTION="1", HKMS_DATA_DIR=str(tmp_path), DJANGO_SECRET_KEY="x7!Qp" * 12)
    code = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0, "
        "s.SESSION_COOKIE_HTTPONLY, s.X_FRAME_OPTIONS)"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert out.split() == ["True", "True", "True", "True", "True", "DENY"]


@pytest.mark.django_db(databases=["default"])
def test_bootstrap_admin_is_idempotent_and_writes_the_password_once(settings, tmp_path, capsys):
    settings.HKMS_DATA_DIR = tmp_path
    call_command("bootstrap_admin")
    first = capsys.readouterr().out
    path = tmp_path / "admin_password"
    password = path.read_text().strip()
    assert password in first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and authenticate(username="admin", password=password) == user
    call_command("bootstrap_admin")
    second = capsys.readouterr().out
    assert password not in second and str(path) in second
    assert path.read_text().strip() == password
    assert get_user_model().objects.filter(username="admin").count() == 1
