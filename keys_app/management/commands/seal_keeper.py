from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from keys_app.providers.base import RootKeyUnavailable
from keys_app.providers.shamir import ShamirRootKeyProvider
from keys_app.providers.shamir_keeper import KeeperServer, harden_process


class Command(BaseCommand):
    help = (
        "Run the seal keeper: the one process that holds the shamir root key in memory and serves wrap/unwrap, "
        "unseal and seal to every server worker over a Unix socket. Starts sealed; stops sealed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--socket", help="socket path (default: HKMS_ROOT_KEY_OPTIONS['shamir']['keeper_socket'])")

    def handle(self, *args: Any, **options: Any) -> None:
        config = dict(settings.HKMS_ROOT_KEY_OPTIONS.get("shamir", {}))
        path = options.get("socket") or config.get("keeper_socket")
        if not path:
            raise CommandError("no socket path: set HKMS_SHAMIR_KEEPER_SOCKET or pass --socket")
        harden_process()
        provider = ShamirRootKeyProvider({k: v for k, v in config.items() if k != "keeper_socket"})
        try:
            server = KeeperServer(path, provider)
        except (RootKeyUnavailable, OSError) as exc:
            raise CommandError(f"the seal keeper cannot listen on {path}: {exc}") from None
        server.release_thread_resources = connections.close_all

        def stop(signum: int, frame: object) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stderr.write(f"seal keeper listening on {path} (sealed until custodians unseal)")
        self.stderr.flush()
        server.serve()
        self.stderr.write("seal keeper stopped: the root key is forgotten")
