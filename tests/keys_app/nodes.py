"""A "node": run one management command at an agreed instant, as another machine or container would.

``python -m tests.keys_app.nodes AT_EPOCH_SECONDS command [args...]`` sets Django
up first, then sleeps until ``AT_EPOCH_SECONDS`` and runs the command, so two
nodes started together call it within about a millisecond of each other
(Django's start-up time no longer separates them).

``HKMS_TEST_FAKE_PID=N`` makes ``os.getpid()`` answer N, as a command running
as pid N in its own container would see it; with ``HKMS_JOB_OWNER_PREFIX`` the
test chooses the machine and pid namespace that node claims to be in.

``HKMS_TEST_HOLD_AFTER_CLAIM=S`` makes a node that won a job claim wait S
seconds before working (a wrapper installed here, not in the product), so the
other node's claim, made at the same instant, always meets a live job however
loaded the machine is.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def main(argv: list[str]) -> None:
    fake_pid = os.environ.get("HKMS_TEST_FAKE_PID")
    if fake_pid:
        os.getpid = lambda: int(fake_pid)  # type: ignore[assignment]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hkms_site.settings")
    import django

    django.setup()
    from django.core.management import execute_from_command_line, get_commands, load_command_class
    from django.db import connections

    load_command_class(get_commands()[argv[1]], argv[1])  # import the command before the start line
    hold = float(os.environ.get("HKMS_TEST_HOLD_AFTER_CLAIM", "0") or 0)
    if hold:
        from keys_app.services import inspection, rotation

        real_claim = rotation.job_claim

        def claim_then_hold(*args: Any, **kwargs: Any) -> Any:
            claimed = real_claim(*args, **kwargs)
            time.sleep(hold)
            return claimed

        rotation.job_claim = claim_then_hold  # type: ignore[assignment]
        inspection.job_claim = claim_then_hold  # type: ignore[assignment]
    for alias in ("default", "kek", "dek"):
        connections[alias].ensure_connection()

    at = float(argv[0])
    delay = at - time.time()
    if delay > 0:
        time.sleep(delay)
    execute_from_command_line(["manage.py", *argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
