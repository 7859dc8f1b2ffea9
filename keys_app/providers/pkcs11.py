"""The ``pkcs11`` root key provider: the REK is a non-extractable AES-256 key in an HSM.

Each REK version is one secret-key object in the token, labelled
``<key label>-v<version>`` (``CKA_ID`` ``hkms-rek-v<version>``), generated *inside*
the token with ``CKA_TOKEN``, ``CKA_PRIVATE``, ``CKA_SENSITIVE`` true and
``CKA_EXTRACTABLE``, ``CKA_WRAP``, ``CKA_UNWRAP``, ``CKA_DERIVE``,
``CKA_MODIFIABLE`` false: the key value can be neither read nor wrapped out,
and its attributes cannot be relaxed later.  Nothing about it is stored
outside the token except the version number and check value on the kek
database.

Mechanism: **AES-256-GCM (CKM_AES_GCM) computed by the HSM**, with exactly the
byte format and associated data of :mod:`keys_app.crypto` (and so of the
``file`` provider)::

    blob = 0x01 || rek_version (4 bytes, big-endian) || nonce (12) || C_Encrypt output (ciphertext || 16-byte tag)
    GCM AAD = blob[0:5] || context            (context names the KEK: aad("kek", key_id, kek_version, rek_version))

so a wrapped KEK moved to another row, or opened by another REK version, fails
authentication inside the HSM.  The 96-bit nonce is drawn from the OS CSPRNG
on the host and passed in ``CK_GCM_PARAMS`` (SoftHSM2 and most HSMs accept a
caller IV; an HSM that insists on generating the IV itself in FIPS mode would
need PKCS#11 3.0 message-based encryption, which this module does not use).
AES key wrap with padding (CKM_AES_KEY_WRAP_PAD, RFC 5649) was not chosen: it
has no associated data, so binding the context would need a second mechanism,
and SoftHSM2 supports CKM_AES_GCM through python-pkcs11.

Check value: **CKM_AES_CMAC of a fixed label, computed by the HSM**
(``CKA_SIGN`` true on the key).  The standard ``CKA_CHECK_VALUE`` of an AES key
is the first 3 bytes of ``AES_K(0^128)``, which is also GCM's hash subkey H, so
it is not used.  A CMAC tag of a label is a PRF output: it identifies the key
without revealing anything usable about it.

Errors: every PKCS#11 failure becomes :class:`RootKeyUnavailable` with one
sentence (module cannot be loaded, no such token, wrong or locked PIN, missing
key object, HSM error), except a failed GCM tag check, which becomes
``crypto.InvalidCiphertext`` like in every other provider.  Because some
modules (SoftHSM2 among them) report a bad tag as ``CKR_GENERAL_ERROR``, a
decrypt failure is classified by probing the token with a CMAC of the label:
if the HSM answers, the blob was at fault; if not, the HSM is.

Sessions: one read-write session per provider instance, logged in once,
guarded by a lock (PKCS#11 sessions are not thread-safe); a session lost to a
token reset is reopened once.  After a ``fork`` the library is re-initialised
in the child (PKCS#11 forbids using a parent's sessions).  Login state is per
application in PKCS#11: two provider instances with different PINs in one
process share the first login.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from keys_app import crypto
from keys_app.providers.base import RootKeyProvider, RootKeyUnavailable

#: What the HSM signs (CMAC) to produce a key check value.
CHECK_LABEL = b"hkms pkcs11 key check value v1"
_header = struct.Struct(">BI")
T = TypeVar("T")


def _pkcs11() -> Any:
    try:
        import pkcs11  # local: python-pkcs11 (and the HSM's module) load only when this provider is used
    except ImportError:  # pragma: no cover - the dependency is declared
        raise RootKeyUnavailable("python-pkcs11 is not installed: pip install python-pkcs11") from None
    return pkcs11


class Pkcs11RootKeyProvider(RootKeyProvider):
    """REK versions as non-extractable AES-256 keys in a PKCS#11 token."""

    name = "pkcs11"

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.module = str(options.get("module") or "")
        self.token_label = str(options.get("token_label") or "")
        self.key_label = str(options.get("key_label") or "hkms-rek")
        self._pin: str | None = options.get("pin") or None
        self._pin_file = str(options.get("pin_file") or "")
        self._lock = threading.RLock()
        self._session: Any = None
        self._pid = os.getpid()

    # -- configuration and session ------------------------------------------------------
    def _read_pin(self) -> str:
        if self._pin:
            return self._pin
        if self._pin_file:
            try:
                pin = Path(self._pin_file).read_text().strip()
            except OSError as exc:
                raise RootKeyUnavailable(
                    f"the PKCS#11 PIN file {self._pin_file} cannot be read ({exc.strerror})"
                ) from None
            if pin:
                return pin
        raise RootKeyUnavailable(
            "no PIN is configured for the PKCS#11 token: set HKMS_PKCS11_PIN or HKMS_PKCS11_PIN_FILE"
        )

    def _lib(self) -> Any:
        pkcs11 = _pkcs11()
        if not self.module:
            raise RootKeyUnavailable("no PKCS#11 module is configured: set HKMS_PKCS11_MODULE to the library path")
        if not Path(self.module).is_file():
            raise RootKeyUnavailable(f"the PKCS#11 module {self.module} does not exist")
        try:
            lib = pkcs11.lib(self.module)
        except pkcs11.PKCS11Error as exc:
            raise RootKeyUnavailable(
                f"the PKCS#11 module {self.module} cannot be loaded ({type(exc).__name__})"
            ) from None
        if self._pid != os.getpid():
            # A forked child must not use its parent's PKCS#11 state (PKCS#11 v2.40 §6.7.7).
            try:
                lib.reinitialize()
            except pkcs11.PKCS11Error:
                raise RootKeyUnavailable(
                    f"the PKCS#11 module {self.module} could not be re-initialised after a fork"
                ) from None
            self._pid = os.getpid()
        return lib

    def _open(self) -> Any:
        pkcs11 = _pkcs11()
        if self._session is not None and self._pid == os.getpid():
            return self._session
        self._session = None
        lib = self._lib()
        if not self.token_label:
            raise RootKeyUnavailable("no PKCS#11 token is configured: set HKMS_PKCS11_TOKEN_LABEL")
        try:
            token = lib.get_token(token_label=self.token_label)
        except pkcs11.NoSuchToken:
            raise RootKeyUnavailable(
                f"no PKCS#11 token labelled {self.token_label!r} is present in {self.module}"
            ) from None
        except pkcs11.MultipleTokensReturned:
            raise RootKeyUnavailable(f"more than one PKCS#11 token is labelled {self.token_label!r}") from None
        except pkcs11.PKCS11Error as exc:
            raise RootKeyUnavailable(
                f"the PKCS#11 token {self.token_label!r} cannot be reached ({type(exc).__name__})"
            ) from None
        pin = self._read_pin()
        try:
            self._session = token.open(rw=True, user_pin=pin)
        except (pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange):
            raise RootKeyUnavailable(
                f"the PKCS#11 login to token {self.token_label!r} failed: the PIN is wrong"
            ) from None
        except pkcs11.PinLocked:
            raise RootKeyUnavailable(
                f"the user PIN of PKCS#11 token {self.token_label!r} is locked: the security officer must reset it"
            ) from None
        except pkcs11.UserAlreadyLoggedIn:
            # Another session of this process is logged in already (login is per application).
            self._session = token.open(rw=True)
        except pkcs11.PKCS11Error as exc:
            raise RootKeyUnavailable(
                f"the PKCS#11 token {self.token_label!r} refused a session ({type(exc).__name__})"
            ) from None
        return self._session

    def _call(self, action: str, body: Callable[[Any], T]) -> T:
        """Run ``body(session)``; reopen the session once if the token was reset."""
        pkcs11 = _pkcs11()
        retryable = (
            pkcs11.SessionHandleInvalid,
            pkcs11.SessionClosed,
            pkcs11.DeviceRemoved,
            pkcs11.TokenNotPresent,
            pkcs11.UserNotLoggedIn,
        )
        with self._lock:
            for attempt in (1, 2):
                session = self._open()
                try:
                    return body(session)
                except retryable as exc:
                    self._session = None
                    if attempt == 2:
                        raise RootKeyUnavailable(
                            f"the PKCS#11 token {self.token_label!r} went away during {action} ({type(exc).__name__})"
                        ) from None
                except (RootKeyUnavailable, crypto.InvalidCiphertext):
                    raise
                except pkcs11.PKCS11Error as exc:
                    raise RootKeyUnavailable(
                        f"the HSM failed during {action} on token {self.token_label!r} ({type(exc).__name__})"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the session (tests; the process exit closes it anyway)."""
        with self._lock:
            if self._session is not None:
                with contextlib.suppress(Exception):  # a dead session needs no closing
                    self._session.close()
                self._session = None

    # -- key objects ---------------------------------------------------------------------
    def object_label(self, version: int) -> str:
        return f"{self.key_label}-v{version}"

    def _find(self, session: Any, version: int) -> Any | None:
        pkcs11 = _pkcs11()
        try:
            return session.get_key(
                object_class=pkcs11.ObjectClass.SECRET_KEY,
                key_type=pkcs11.KeyType.AES,
                label=self.object_label(version),
            )
        except pkcs11.NoSuchKey:
            return None
        except pkcs11.MultipleObjectsReturned:
            raise RootKeyUnavailable(
                f"token {self.token_label!r} holds more than one key labelled {self.object_label(version)!r}; "
                "remove the duplicate with the HSM's tools"
            ) from None

    def _key(self, session: Any, version: int) -> Any:
        key = self._find(session, version)
        if key is None:
            raise RootKeyUnavailable(
                f"root key version {version} ({self.object_label(version)!r}) is not in PKCS#11 token "
                f"{self.token_label!r}"
            )
        return key

    def _check(self, key: Any) -> bytes:
        pkcs11 = _pkcs11()
        return bytes(key.sign(CHECK_LABEL, mechanism=pkcs11.Mechanism.AES_CMAC))

    # -- provider interface --------------------------------------------------------------
    def create_version(self, version: int) -> bytes:
        pkcs11 = _pkcs11()
        attribute = pkcs11.Attribute

        def body(session: Any) -> bytes:
            key = self._find(session, version)
            if key is None:
                key = session.generate_key(
                    pkcs11.KeyType.AES,
                    256,
                    label=self.object_label(version),
                    id=f"hkms-rek-v{version}".encode(),
                    store=True,
                    template={
                        attribute.TOKEN: True,
                        attribute.PRIVATE: True,
                        attribute.SENSITIVE: True,
                        attribute.EXTRACTABLE: False,
                        attribute.MODIFIABLE: False,
                        attribute.ENCRYPT: True,
                        attribute.DECRYPT: True,
                        attribute.SIGN: True,
                        attribute.VERIFY: False,
                        attribute.WRAP: False,
                        attribute.UNWRAP: False,
                        attribute.DERIVE: False,
                    },
                )
            return self._check(key)

        return self._call(f"creation of root key version {version}", body)

    def has_version(self, version: int) -> bool:
        return self._call(f"lookup of root key version {version}", lambda s: self._find(s, version) is not None)

    def check_value(self, version: int) -> bytes:
        return self._call(f"check of root key version {version}", lambda s: self._check(self._key(s, version)))

    def wrap(self, version: int, plaintext: bytes, *, context: bytes) -> bytes:
        pkcs11 = _pkcs11()
        header = _header.pack(crypto.FORMAT_VERSION, version)
        nonce = os.urandom(crypto.NONCE_BYTES)

        def body(session: Any) -> bytes:
            key = self._key(session, version)
            params = pkcs11.GCMParams(nonce, header + context, crypto.TAG_BYTES * 8)
            return bytes(key.encrypt(plaintext, mechanism=pkcs11.Mechanism.AES_GCM, mechanism_param=params))

        body_bytes = self._call(f"wrap under root key version {version}", body)
        return header + nonce + body_bytes

    def unwrap(self, version: int, blob: bytes, *, context: bytes) -> bytes:
        pkcs11 = _pkcs11()
        blob = bytes(blob)
        if len(blob) < crypto.OVERHEAD or len(blob) > crypto.MAX_BLOB_BYTES or blob[0] != crypto.FORMAT_VERSION:
            raise crypto.InvalidCiphertext()
        if crypto.key_version_of(blob) != version:
            raise crypto.InvalidCiphertext()
        header = blob[: crypto.HEADER_BYTES]
        nonce = blob[crypto.HEADER_BYTES : crypto.HEADER_BYTES + crypto.NONCE_BYTES]
        sealed = blob[crypto.HEADER_BYTES + crypto.NONCE_BYTES :]
        data_errors = (
            pkcs11.EncryptedDataInvalid,
            pkcs11.EncryptedDataLenRange,
            pkcs11.DataInvalid,
            pkcs11.DataLenRange,
            pkcs11.GeneralError,
            pkcs11.FunctionFailed,
        )

        def body(session: Any) -> bytes:
            key = self._key(session, version)
            params = pkcs11.GCMParams(nonce, header + context, crypto.TAG_BYTES * 8)
            try:
                return bytes(key.decrypt(sealed, mechanism=pkcs11.Mechanism.AES_GCM, mechanism_param=params))
            except data_errors:
                # A bad tag, or an HSM fault?  If the HSM still answers, the blob was at fault.
                self._check(key)
                raise crypto.InvalidCiphertext() from None

        return self._call(f"unwrap under root key version {version}", body)

    def destroy_version(self, version: int) -> None:
        def body(session: Any) -> None:
            key = self._find(session, version)
            if key is not None:
                key.destroy()

        self._call(f"destruction of root key version {version}", body)

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            **super().describe(),
            "module": self.module,
            "token_label": self.token_label,
            "key_label": self.key_label,
        }
        try:
            self._call("status", lambda s: None)
            facts["reachable"] = True
        except RootKeyUnavailable as exc:
            facts["reachable"] = False
            facts["error"] = str(exc)
        return facts
