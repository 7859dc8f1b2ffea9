"""Background DEK re-wraps started from the console.

The console starts the very job the ``rewrap_deks`` command runs
(:func:`keys_app.services.rotation.deks_rewrap`, resumable, recorded in a
``RotationJob`` row on the kek database); the key page shows that row's
progress.  By default it runs as a detached ``manage.py rewrap_deks --key …``
process, so it outlives the request and the gunicorn worker; if it dies, the
job's lease expires and starting it again (console or command) resumes it.
``HKMS_CONSOLE_JOB_RUNNER=inline`` runs it within the request (tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hkms_core.access.principal import Principal
from hkms_core.access.roles import Action
from hkms_core.access.services import authorize_audited
from hkms_core.audit.services import audit_record
from hkms_core.errors import Conflict
from keys_app.models import Key
from keys_app.selectors import key_rewrap_in_progress
from keys_app.services.rotation import deks_rewrap

EVENT = "key.rewrap_deks"


def rewrap_start(*, principal: Principal, key: Key) -> str:
    """Start re-wrapping ``key``'s DEKs under its primary version; key admins only, audited.

    Returns how it was started (``"process"`` or ``"inline"``).
    """
    authorize_audited(principal, Action.KEY_ADMIN, key, EVENT)
    running = key_rewrap_in_progress(key, now=timezone.now())
    if running is not None:
        raise Conflict(f"a re-wrap of key {key.name} is already running ({running['processed']}/{running['total']})")
    runner = settings.HKMS_CONSOLE_JOB_RUNNER
    with transaction.atomic():
        audit_record(principal, EVENT, key, runner=runner)
    if runner == "inline":
        deks_rewrap(key=key)
    else:
        _spawn(key)
    return str(runner)


def _spawn(key: Key) -> None:
    log_dir = settings.HKMS_DATA_DIR / "jobs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"rewrap_deks-{key.id}.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "rewrap_deks", "--key", str(key.id), "--json"],
            cwd=settings.BASE_DIR,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with the worker's process group
        )
    # Reap the child when it ends (no zombie in a long-lived worker).
    threading.Thread(target=process.wait, name=f"rewrap-{key.id}", daemon=True).start()
