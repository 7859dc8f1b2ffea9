"""The ``file`` root key provider: a versioned REK keyring in a 0600 file.

For development and the embedded ``make run`` only: anyone who can read the
file and the kek database can unwrap every KEK.  The file lives in the data
directory (``HKMS_ROOT_KEY_FILE`` overrides), never in a database.

File format (JSON)::

    {"format": 1, "versions": {"1": "<base64 32 bytes>", "2": "..."}}

Writes are atomic (a 0600 temporary file, fsync, rename, fsync of the
directory), so a crash leaves either the old or the new keyring, never half.
A process killed between creating its temporary file and the rename leaves
that file behind, with key material in it (perhaps a version about to be
retired); every write first deletes the temporary files of processes that no
longer exist (their names carry the writer's pid), so destroying a REK version
also destroys such leftovers.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from keys_app import crypto
from keys_app.processes import pid_alive
from keys_app.providers.base import RootKeyProvider, RootKeyUnavailable

TEMP_PREFIX = ".root_keyring."


class FileRootKeyProvider(RootKeyProvider):
    name = "file"

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.path = Path(options["path"])

    # -- keyring file -----------------------------------------------------------------
    def _load(self) -> dict[int, crypto.SecretBytes]:
        if not self.path.exists():
            return {}
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise RootKeyUnavailable(
                f"root key file {self.path} is readable by others (mode {mode:o}); run: chmod 600 on it"
            )
        try:
            document = json.loads(self.path.read_text())
            versions = document["versions"]
            keyring = {
                int(number): crypto.SecretBytes(base64.b64decode(value, validate=True))
                for number, value in versions.items()
            }
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise RootKeyUnavailable(f"root key file {self.path} is not a valid keyring") from None
        if any(len(key) != crypto.KEY_BYTES for key in keyring.values()):
            raise RootKeyUnavailable(f"root key file {self.path} holds a key of the wrong size")
        return keyring

    def _store(self, keyring: dict[int, crypto.SecretBytes]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "format": 1,
            "versions": {
                str(number): base64.b64encode(key.reveal()).decode() for number, key in sorted(keyring.items())
            },
        }
        self._remove_leftovers()
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f"{TEMP_PREFIX}{os.getpid()}.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _remove_leftovers(self) -> None:
        """Delete temporary keyring files whose writer process is gone (killed mid-write)."""
        for leftover in self.path.parent.glob(f"{TEMP_PREFIX}*"):
            pid_text = leftover.name[len(TEMP_PREFIX) :].split(".", 1)[0]
            if pid_text.isdigit() and pid_alive(int(pid_text)):
                continue
            leftover.unlink(missing_ok=True)

    def _key(self, version: int) -> crypto.SecretBytes:
        keyring = self._load()
        if not keyring and not self.path.exists():
            raise RootKeyUnavailable(f"root key file {self.path} is missing")
        try:
            return keyring[version]
        except KeyError:
            raise RootKeyUnavailable(f"root key version {version} is not in the root key file {self.path}") from None

    # -- provider interface -------------------------------------------------------------
    def create_version(self, version: int) -> bytes:
        keyring = self._load()
        if version not in keyring:
            keyring[version] = crypto.generate_key()
            self._store(keyring)
        return crypto.key_check_value(keyring[version])

    def has_version(self, version: int) -> bool:
        return version in self._load()

    def check_value(self, version: int) -> bytes:
        return crypto.key_check_value(self._key(version))

    def wrap(self, version: int, plaintext: bytes, *, context: bytes) -> bytes:
        return crypto.seal(self._key(version), plaintext, context=context, key_version=version)

    def unwrap(self, version: int, blob: bytes, *, context: bytes) -> bytes:
        return crypto.open_(self._key(version), blob, context=context)

    def destroy_version(self, version: int) -> None:
        keyring = self._load()
        if keyring.pop(version, None) is not None:
            self._store(keyring)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path), "development_only": True}
