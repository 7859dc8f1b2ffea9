"""A "node": run one management command together with other nodes, as other machines or containers would.

``python -m tests.keys_app.nodes BARRIER_DIR NODES command [args...]`` sets Django
up, imports the command and runs the system checks first, then writes ``BARRIER_DIR/ready-<n>`` and
waits until ``NODES`` such files exist before it runs the command; so nodes
started together call it within about a millisecond of each other, whatever
their start-up times (a 60 s timeout guards against a node that died).

``HKMS_TEST_FAKE_PID=N`` makes ``os.getpid()`` answer N, as a command running
as pid N in its own container would see it; with ``HKMS_JOB_OWNER_PREFIX`` the
test chooses the machine and pid namespace that node claims to be in.

``HKMS_TEST_HOLD_AFTER_CLAIM=S`` makes a node that won a job claim wait S
seconds before working (a wrapper installed here, not in the product), so the
other node's claim, made at the same instant, always meets a live job however
loaded the machine is.
"""

from __future__ import annotations

import io
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any


def barrier(directory: Path, nodes: int) -> None:
    (directory / f"ready-{uuid.uuid4().hex}").touch()
    deadline = time.monotonic() + 60
    while len(list(directory.glob("ready-*"))) < nodes:
        if time.monotonic() > deadline:
            raise SystemExit("the other nodes never became ready")
        time.sleep(0.0005)


def main(argv: list[str]) -> None:
    fake_pid = os.environ.get("HKMS_TEST_FAKE_PID")
    if fake_pid:
        os.getpid = lambda: int(fake_pid)  # type: ignore[assignment]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hkms_site.settings")
    import django

    django.setup()
    from django.core.management import call_command, execute_from_command_line, get_commands, load_command_class
    from django.db import connections

    directory, nodes, command = Path(argv[0]), int(argv[1]), argv[2:]
    load_command_class(get_commands()[command[0]], command[0])  # import the command before the barrier
    hold = float(os.environ.get("HKMS_TEST_HOLD_AFTER_CLAIM", "0") or 0)
    if hold:
        from keys_app.services.rotation import kek, rek
        from secrets_app.services import dek_rotation, revocation, verification

        modules = (rek, kek, dek_rotation, revocation, verification)
        real_claim = rek.job_claim

        def claim_then_hold(*args: Any, **kwargs: Any) -> Any:
            claimed = real_claim(*args, **kwargs)
            time.sleep(hold)
            return claimed

        for module in modules:
            module.job_claim = claim_then_hold  # type: ignore[attr-defined]
    for alias in ("default", "kek", "dek"):
        connections[alias].ensure_connection()
    # The system checks take seconds on a loaded machine: run them before the barrier, not after.
    call_command("check", stdout=io.StringIO())
    barrier(directory, nodes)
    execute_from_command_line(["manage.py", *command, "--skip-checks"])


if __name__ == "__main__":
    main(sys.argv[1:])
