"""Background DEK re-wraps started from the console.

The console calls the very action the ``rewrap_deks --key`` command calls
(:func:`keys_app.services.keys.scheduling.key_rewrap_deks`: ``KEY_ADMIN``, audited as
``key.rewrap_deks``; the job is resumable, recorded in a ``RotationJob`` row on the kek
database); the key page shows that row's progress.  By default the work runs as a
detached ``manage.py rewrap_deks --key …`` process, so it outlives the request and the
gunicorn worker; if it dies, the job's lease expires and starting it again (console or
command) resumes it.  ``HKMS_CONSOLE_JOB_RUNNER=inline`` runs it within the request (tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from django.conf import settings

from hkms_core.access.principal import Principal
from keys_app.models import Key
from keys_app.services.keys.scheduling import key_rewrap_deks


def rewrap_start(*, principal: Principal, key: Key) -> str:
    """Start re-wrapping ``key``'s DEKs under its primary version; key admins only, audited.

    Returns how it was started (``"process"`` or ``"inline"``).
    """
    runner = str(settings.HKMS_CONSOLE_JOB_RUNNER)
    start = None if runner == "inline" else _spawn
    key_rewrap_deks(principal=principal, key=key, runner=runner, start=start, refuse_if_running=True)
    return runner


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
