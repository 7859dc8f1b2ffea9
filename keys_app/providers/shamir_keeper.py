"""The seal keeper: one process that holds the shamir REK for every server worker.

Why a separate process.  gunicorn runs several workers; shares are submitted
to *one* of them (or to ``manage.py unseal``), yet every worker must be
unsealed, and ``seal`` must reach them all.  Shares and the REK may not be
written anywhere, so they cannot travel through a database or a file.  The
keeper (``manage.py seal_keeper``) is a small long-lived process that owns a
:class:`~keys_app.providers.shamir.ShamirRootKeyProvider` and serves it on a
Unix socket; in every other process ``get_provider("shamir")`` is a
:class:`ShamirKeeperClient` that forwards each provider call to it.  So:

* the REK lives in exactly one process, never in a worker: a worker sends a
  wrapped KEK and gets the unwrapped KEK back (like ssh-agent or an HSM);
* unseal progress is shared by every submitter: custodian A may use the
  console, custodian B ``manage.py unseal``; the K-th share unseals all workers
  at once, because they all ask the same keeper;
* ``seal`` forgets the REK in the keeper, and every worker's *watch*
  connection (a daemon thread per worker) receives the new seal count and
  drops the worker's cached KEKs and DEKs within milliseconds.  A worker
  whose watch connection breaks (keeper stopped or restarted) drops them too;
* workers may be recycled or added at any time: they hold nothing to hand over.

Socket security: the socket is created mode 0600 inside a directory that must
not be writable by group or others; each connection's peer credentials
(``SO_PEERCRED``) must be the keeper's own uid or root.  Anyone who can
connect can *use* the REK (wrap/unwrap) but never read it; the keeper process
disables core dumps and ptrace by other same-uid processes (``PR_SET_DUMPABLE``).

Protocol: one JSON object per line.  A request ``{"op": …, …}`` gets one
response ``{"ok": true, "seal_count": n, …}`` or ``{"ok": false, "error":
"sealed"|"refused"|"unavailable"|"invalid_ciphertext"|"internal", "message": …}``
and the connection closes, except ``{"op": "watch"}``, which streams
``{"seal_count": n, "generation": g}`` on every change and every 15 s.
Binary values travel as base64.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import socketserver
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keys_app import crypto
from keys_app.providers.base import RootKeyProvider, RootKeyUnavailable, Sealed
from keys_app.providers.shamir import (
    SECOND_SEAL_SWEEP,
    SealListener,
    ShamirRootKeyProvider,
    ShareSink,
    StoredCheckValues,
    _describe,
)
from keys_app.providers.slip39 import ShareRefused, resolve_split, validate_split

log = logging.getLogger("hkms.seal_keeper")
MAX_LINE = 4 << 20
WATCH_HEARTBEAT = 15.0
_ucred = struct.Struct("3i")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- server ----------------------------------------------------------------------------------
def harden_process() -> None:
    """No core dumps, no ptrace by other processes of the same user (Linux; best effort)."""
    # local: only the keeper process hardens itself; resource is POSIX-only and ctypes loads libc
    import ctypes
    import resource

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4


def _prepare_socket_path(path: Path) -> None:
    parent = path.parent
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = parent.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o022:
        raise RootKeyUnavailable(
            f"the seal keeper socket directory {parent} must belong to this user and not be writable "
            "by group or others (chmod 700 it)"
        )
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket left by a keeper that died
        else:
            raise RootKeyUnavailable(f"a seal keeper is already listening on {path}")
        finally:
            probe.close()


class _Handler(socketserver.StreamRequestHandler):
    server: KeeperServer

    def handle(self) -> None:
        # Read the request before answering, also to refuse it: closing before the peer has
        # written would make its write fail (broken pipe) instead of showing the refusal.
        line = self.rfile.readline(MAX_LINE + 1)
        if not self.server.peer_allowed(self.request):
            self._send({"ok": False, "error": "unavailable", "message": "this user may not use the seal keeper"})
            return
        if not line or len(line) > MAX_LINE:
            return
        try:
            request = json.loads(line)
            op = str(request["op"])
        except (ValueError, KeyError, TypeError):
            self._send({"ok": False, "error": "internal", "message": "malformed request"})
            return
        if op == "watch":
            self._watch()
            return
        try:
            response = {"ok": True, **self.server.dispatch(op, request)}
        except Sealed as exc:
            response = {"ok": False, "error": "sealed", "message": str(exc)}
        except ShareRefused as exc:
            response = {"ok": False, "error": "refused", "message": str(exc)}
        except RootKeyUnavailable as exc:
            response = {"ok": False, "error": "unavailable", "message": str(exc)}
        except crypto.InvalidCiphertext:
            response = {"ok": False, "error": "invalid_ciphertext", "message": "ciphertext could not be authenticated"}
        except Exception as exc:
            log.error("seal keeper: %s failed: %s", op, type(exc).__name__)
            response = {"ok": False, "error": "internal", "message": f"the seal keeper failed ({type(exc).__name__})"}
        finally:
            self.server.release_thread_resources()
        response["seal_count"] = self.server.provider.seal_count
        self._send(response)

    def _send(self, message: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(message).encode() + b"\n")
        self.wfile.flush()

    def _watch(self) -> None:
        provider = self.server.provider
        generation = -1
        try:
            while not self.server.stopping.is_set():
                with provider.changed:
                    if provider.generation == generation:
                        provider.changed.wait(WATCH_HEARTBEAT)
                    generation = provider.generation
                    event = {"seal_count": provider.seal_count, "generation": generation}
                self._send(event)
        except OSError:
            return


class KeeperServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serves one in-process shamir provider on a Unix socket."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: str | Path, provider: ShamirRootKeyProvider, *, allowed_uids: set[int] | None = None):
        self.path = Path(path)
        self.provider = provider
        self.allowed_uids = allowed_uids if allowed_uids is not None else {os.getuid(), 0}
        self.stopping = threading.Event()
        self.release_thread_resources: Callable[[], None] = lambda: None
        _prepare_socket_path(self.path)
        old_umask = os.umask(0o177)
        try:
            super().__init__(str(self.path), _Handler)
        finally:
            os.umask(old_umask)

    def peer_allowed(self, sock: socket.socket) -> bool:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _ucred.size)
        _pid, uid, _gid = _ucred.unpack(raw)
        return uid in self.allowed_uids

    def dispatch(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        provider = self.provider
        version = int(request.get("version", 0))
        if op == "status":
            return provider.status()
        if op == "submit_share":
            return provider.submit_share(str(request["share"]))
        if op == "reset":
            return provider.reset_unseal()
        if op == "seal":
            return provider.seal()
        if op == "seal_before":
            return {"sealed_now": provider.seal_if_unsealed_before(int(request["epoch"]))}
        if op == "authorize":
            return {"version": provider.authorize([str(s) for s in request["shares"]])}
        if op == "create":
            value, mnemonics, threshold, total = provider.create(
                version,
                [str(s) for s in request.get("authorization") or []] or None,
                split_params=(int(request["total"]), int(request["threshold"])),
            )
            return {"check_value": _b64(value), "shares": mnemonics, "threshold": threshold, "total": total}
        if op == "has_version":
            return {"present": provider.has_version(version)}
        if op == "check_value":
            return {"check_value": _b64(provider.check_value(version))}
        if op == "wrap":
            blob = provider.wrap(version, _unb64(request["data"]), context=_unb64(request["context"]))
            return {"data": _b64(blob)}
        if op == "unwrap":
            plain = provider.unwrap(version, _unb64(request["data"]), context=_unb64(request["context"]))
            return {"data": _b64(plain)}
        if op == "destroy_version":
            provider.destroy_version(version)
            return {}
        if op == "rekey_prepare":
            return provider.rekey_prepare(
                [str(s) for s in request["shares"]], int(request["total"]), int(request["threshold"])
            )
        if op == "rekey_commit":
            return provider.rekey_commit(str(request["token"]))
        raise RootKeyUnavailable(f"unknown seal keeper operation {op!r}")

    def serve(self) -> None:
        try:
            self.serve_forever(poll_interval=0.2)
        finally:
            self.stop()

    def stop(self) -> None:
        """Forget every key and remove the socket (idempotent)."""
        self.stopping.set()
        self.provider.forget()
        with self.provider.changed:
            self.provider.changed.notify_all()
        with contextlib.suppress(OSError):
            self.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# --- client ----------------------------------------------------------------------------------
class ShamirKeeperClient(RootKeyProvider):
    """The ``shamir`` provider in a server worker or command: every call goes to the keeper."""

    name = "shamir"
    mode = "keeper"

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.socket_path = str(options["keeper_socket"])
        self.timeout = float(options.get("keeper_timeout", 30))
        self.default_total = int(options.get("shares", 5))
        self.default_threshold = int(options.get("threshold", 3))
        self.share_sink: ShareSink | None = None
        self._split: tuple[int | None, int | None] | None = None
        self._authorization: list[str] | None = None
        self._listeners: list[SealListener] = []
        self._seen_seal_count: int | None = None
        self._seen_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._watcher_pid = 0
        self._stop = threading.Event()

    # -- transport ------------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise Sealed(
                f"the seal keeper is not running at {self.socket_path}: start `manage.py seal_keeper`, then unseal"
            ) from None
        except PermissionError:
            sock.close()
            raise RootKeyUnavailable(f"this user may not connect to the seal keeper at {self.socket_path}") from None
        except OSError as exc:
            sock.close()
            raise RootKeyUnavailable(f"the seal keeper at {self.socket_path} cannot be reached ({exc})") from None
        return sock

    def _rpc(self, op: str, **args: Any) -> dict[str, Any]:
        self._ensure_watcher()
        sock = self._connect()
        try:
            with sock, sock.makefile("rwb") as stream:
                stream.write(json.dumps({"op": op, **args}).encode() + b"\n")
                stream.flush()
                line = stream.readline(MAX_LINE + 1)
        except OSError as exc:
            raise RootKeyUnavailable(f"the seal keeper at {self.socket_path} failed to answer ({exc})") from None
        try:
            response: dict[str, Any] = json.loads(line)
        except ValueError:
            raise RootKeyUnavailable(f"the seal keeper at {self.socket_path} gave no valid answer") from None
        if "seal_count" in response:
            self._note_seal_count(int(response["seal_count"]))
        if response.get("ok"):
            return response
        kind, message = response.get("error"), str(response.get("message", "seal keeper error"))
        if kind == "sealed":
            raise Sealed(message)
        if kind == "refused":
            raise ShareRefused(message)
        if kind == "invalid_ciphertext":
            raise crypto.InvalidCiphertext()
        raise RootKeyUnavailable(message)

    # -- seal notifications ---------------------------------------------------------------
    def add_seal_listener(self, listener: SealListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def _fire_seal(self) -> None:
        for listener in list(self._listeners):
            listener()
        timer = threading.Timer(SECOND_SEAL_SWEEP, lambda: [listener() for listener in list(self._listeners)])
        timer.daemon = True
        timer.start()

    def _note_seal_count(self, count: int | None) -> None:
        with self._seen_lock:
            changed = self._seen_seal_count is not None and count != self._seen_seal_count
            self._seen_seal_count = count
        if changed:
            self._fire_seal()

    def _ensure_watcher(self) -> None:
        if not self._listeners:
            return
        if self._watcher is not None and self._watcher.is_alive() and self._watcher_pid == os.getpid():
            return
        self._watcher_pid = os.getpid()
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch_loop, name="hkms-seal-watch", daemon=True)
        self._watcher.start()

    def _watch_loop(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set() and os.getpid() == pid:
            try:
                sock = self._connect()
            except RootKeyUnavailable:
                sock = None
            if sock is not None:
                sock.settimeout(WATCH_HEARTBEAT * 2 + 5)
                try:
                    with sock, sock.makefile("rwb") as stream:
                        stream.write(b'{"op": "watch"}\n')
                        stream.flush()
                        while not self._stop.is_set():
                            line = stream.readline(MAX_LINE + 1)
                            if not line:
                                break
                            self._note_seal_count(int(json.loads(line)["seal_count"]))
                except (OSError, ValueError, KeyError):
                    pass
            # No connection to the keeper: whatever it held is gone or unreachable.
            with self._seen_lock:
                had_contact = self._seen_seal_count is not None
                self._seen_seal_count = None
            if had_contact:
                self._fire_seal()
            self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()

    # -- operations of the in-process provider ------------------------------------------
    def configure_split(self, total: int | None, threshold: int | None) -> None:
        """As the in-process provider's: ``None`` keeps the current version's policy."""
        if total and threshold:
            try:
                validate_split(total, threshold)
            except ValueError as exc:
                raise RootKeyUnavailable(str(exc)) from None
        self._split = (total, threshold)

    @property
    def sealed(self) -> bool:
        try:
            return bool(self._rpc("status")["sealed"])
        except (RootKeyUnavailable, ShareRefused):
            return True

    def status(self) -> dict[str, Any]:
        response = self._rpc("status")
        response.pop("ok", None)
        return response

    def submit_share(self, mnemonic: str) -> dict[str, Any]:
        return self._strip(self._rpc("submit_share", share=mnemonic))

    def reset_unseal(self) -> dict[str, Any]:
        return self._strip(self._rpc("reset"))

    def seal(self) -> dict[str, Any]:
        return self._strip(self._rpc("seal"))

    def seal_if_unsealed_before(self, epoch: int) -> bool:
        """Ask the keeper to seal if its keys predate cluster seal ``epoch`` (it reads the epoch itself
        when it starts holding keys)."""
        try:
            return bool(self._rpc("seal_before", epoch=epoch)["sealed_now"])
        except Sealed:  # no keeper running: nothing is held on this node
            return False

    def authorize(self, mnemonics: list[str]) -> int:
        version = int(self._rpc("authorize", shares=mnemonics)["version"])
        self._authorization = list(mnemonics)
        return version

    def rekey_prepare(self, mnemonics: list[str], total: int, threshold: int) -> dict[str, Any]:
        return self._strip(self._rpc("rekey_prepare", shares=mnemonics, total=total, threshold=threshold))

    def rekey_commit(self, token: str) -> dict[str, Any]:
        return self._strip(self._rpc("rekey_commit", token=token))

    @staticmethod
    def _strip(response: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in response.items() if k != "ok"}

    # -- provider interface ---------------------------------------------------------------
    def create_version(self, version: int) -> bytes:
        if self.share_sink is None:
            raise RootKeyUnavailable(
                "a shamir root key version can only be created by a command that shows its shares "
                "(init_hierarchy, rotate_root_key)"
            )
        try:
            total, threshold = resolve_split(
                self._split, StoredCheckValues().active(), version, (self.default_total, self.default_threshold)
            )
        except ValueError as exc:
            raise RootKeyUnavailable(str(exc)) from None
        authorization, self._authorization = self._authorization, None
        response = self._rpc(
            "create", version=version, total=total, threshold=threshold, authorization=authorization or []
        )
        if response["shares"]:
            self.share_sink(version, list(response["shares"]), int(response["threshold"]), int(response["total"]))
        return _unb64(response["check_value"])

    def has_version(self, version: int) -> bool:
        try:
            return bool(self._rpc("has_version", version=version)["present"])
        except Sealed:
            return False

    def check_value(self, version: int) -> bytes:
        return _unb64(self._rpc("check_value", version=version)["check_value"])

    def wrap(self, version: int, plaintext: bytes, *, context: bytes) -> bytes:
        return _unb64(self._rpc("wrap", version=version, data=_b64(plaintext), context=_b64(context))["data"])

    def unwrap(self, version: int, blob: bytes, *, context: bytes) -> bytes:
        return _unb64(self._rpc("unwrap", version=version, data=_b64(bytes(blob)), context=_b64(context))["data"])

    def destroy_version(self, version: int) -> None:
        self._rpc("destroy_version", version=version)

    def describe(self) -> dict[str, Any]:
        try:
            status = self.status()
        except (RootKeyUnavailable, ShareRefused) as exc:
            return {
                "provider": self.name,
                "mode": self.mode,
                "keeper_socket": self.socket_path,
                "sealed": True,
                "error": str(exc),
            }
        return {**_describe(self.name, self.mode, status), "keeper_socket": self.socket_path}
