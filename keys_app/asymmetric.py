"""The Key Manager's algorithm catalogue and its asymmetric primitives.

Like :mod:`keys_app.crypto`, this module has no Django imports and can be
reviewed and tested on its own.  It knows, per algorithm name (the names of
Scaleway's Key Manager v1alpha1), the key usage, whether it is recommended, and
how to generate, sign, verify, encrypt, decrypt, wrap and unwrap.

Key material formats (what the kek database stores, sealed by the REK):

* ``aes_256_gcm``: 32 random bytes (see :mod:`keys_app.crypto`).
* every asymmetric algorithm: the private key as unencrypted PKCS#8 DER (the
  seed form for ML-DSA and ML-KEM); the public key as SubjectPublicKeyInfo DER,
  returned to callers as PEM.

Operations:

* ``rsa_oaep_*_sha256``: RSA-OAEP with SHA-256 and MGF1-SHA-256, no label.
  Ciphertexts are the raw RSA output, so anyone holding the public key can
  encrypt outside the service.
* ``ec_p256_sha256`` / ``ec_p384_sha384``: ECDSA over a caller-supplied
  digest (32 / 48 bytes); signatures are DER ``ECDSA-Sig-Value``.
* ``rsa_pss_*_sha256``: RSASSA-PSS over a SHA-256 digest, MGF1-SHA-256, salt
  length 32 (verification accepts any salt length).
* ``rsa_pkcs1_*_sha256``: RSASSA-PKCS1-v1_5 over a SHA-256 digest.
* ``ml_dsa_44/65/87``: pure ML-DSA (FIPS 204, empty context) over the bytes
  given as ``digest`` (1 to 4,096 bytes: a message or a hash of one, the caller
  chooses; verify with the same bytes).
* ``ml_kem_768/1024`` (wrap/unwrap only). Byte format of a wrapped key::

      ML-KEM ciphertext (1,088 / 1,568 bytes)
      || crypto.seal(K, plaintext, context, key_version)   (see keys_app.crypto)

  where ``K = HKDF-SHA256(shared_secret, salt=None, info=b"hkms ml-kem wrap v1")``
  and ``shared_secret`` comes from encapsulating to the public key.  Each wrap
  encapsulates afresh, so ``K`` is never reused.

Every failure to decrypt or unwrap raises :class:`keys_app.crypto.InvalidCiphertext`;
no message ever contains key or plaintext bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as _CryptoUnsupported
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, mlkem, padding, rsa, utils
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keys_app import crypto

SYMMETRIC_ENCRYPTION = "symmetric_encryption"
ASYMMETRIC_ENCRYPTION = "asymmetric_encryption"
ASYMMETRIC_SIGNING = "asymmetric_signing"
USAGES = (SYMMETRIC_ENCRYPTION, ASYMMETRIC_ENCRYPTION, ASYMMETRIC_SIGNING)

#: Largest ``digest`` accepted by ML-DSA keys (the bytes are signed as they are).
ML_DSA_MAX_MESSAGE = 4096
#: Scaleway's limits for wrap_key / unwrap_key.
WRAP_MAX_PLAINTEXT = 2048
WRAP_MAX_CIPHERTEXT = 4096
_WRAP_INFO = b"hkms ml-kem wrap v1"


class UnsupportedAlgorithm(Exception):
    """The algorithm is unknown, or the installed OpenSSL cannot perform it."""

    def __init__(self, name: str, reason: str = "") -> None:
        super().__init__(f"unsupported algorithm {name!r}" + (f": {reason}" if reason else ""))
        self.name = name


@dataclass(frozen=True)
class Algorithm:
    name: str
    usage: str
    family: str  # aes | rsa_oaep | ecdsa | rsa_pss | rsa_pkcs1 | ml_dsa | ml_kem
    recommended: bool = False
    bits: int = 0  # RSA modulus size
    level: int = 0  # ML-DSA / ML-KEM parameter set

    @property
    def is_symmetric(self) -> bool:
        return self.usage == SYMMETRIC_ENCRYPTION

    @property
    def digest_size(self) -> int | None:
        """Bytes a ``digest`` must have for :func:`sign` (None: any 1..4096 bytes)."""
        if self.family == "ml_dsa":
            return None
        return 48 if self.name == "ec_p384_sha384" else 32


def _table() -> dict[str, Algorithm]:
    rows = [Algorithm("aes_256_gcm", SYMMETRIC_ENCRYPTION, "aes", recommended=True)]
    for bits in (2048, 3072, 4096):
        rows.append(Algorithm(f"rsa_oaep_{bits}_sha256", ASYMMETRIC_ENCRYPTION, "rsa_oaep", bits == 3072, bits=bits))
    rows += [
        Algorithm("ml_kem_768", ASYMMETRIC_ENCRYPTION, "ml_kem", level=768),
        Algorithm("ml_kem_1024", ASYMMETRIC_ENCRYPTION, "ml_kem", level=1024),
        Algorithm("ec_p256_sha256", ASYMMETRIC_SIGNING, "ecdsa", recommended=True),
        Algorithm("ec_p384_sha384", ASYMMETRIC_SIGNING, "ecdsa"),
    ]
    for bits in (2048, 3072, 4096):
        rows.append(Algorithm(f"rsa_pss_{bits}_sha256", ASYMMETRIC_SIGNING, "rsa_pss", bits=bits))
    for bits in (2048, 3072, 4096):
        rows.append(Algorithm(f"rsa_pkcs1_{bits}_sha256", ASYMMETRIC_SIGNING, "rsa_pkcs1", bits=bits))
    for level in (44, 65, 87):
        rows.append(Algorithm(f"ml_dsa_{level}", ASYMMETRIC_SIGNING, "ml_dsa", level=level))
    return {row.name: row for row in rows}


ALGORITHMS: dict[str, Algorithm] = _table()


def _backend_supports(family: str) -> bool:
    # local: the OpenSSL backend is probed only when an ML-KEM/ML-DSA algorithm is asked for
    from cryptography.hazmat.backends.openssl.backend import backend

    if family == "ml_kem":
        return bool(backend.mlkem_supported())
    if family == "ml_dsa":
        return bool(backend.mldsa_supported())
    return True


def algorithm(name: str) -> Algorithm:
    """The catalogue entry of ``name``; :class:`UnsupportedAlgorithm` if unknown or unavailable."""
    entry = ALGORITHMS.get(name)
    if entry is None:
        raise UnsupportedAlgorithm(name, "not a Key Manager algorithm")
    if not _backend_supports(entry.family):
        raise UnsupportedAlgorithm(name, "the installed OpenSSL/cryptography build does not provide it")
    return entry


def available_algorithms() -> list[Algorithm]:
    """Every algorithm this installation can actually use, in catalogue order."""
    return [entry for entry in ALGORITHMS.values() if _backend_supports(entry.family)]


# --- keys ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyPair:
    private: crypto.SecretBytes  # PKCS#8 DER
    public_der: bytes  # SubjectPublicKeyInfo DER

    def __repr__(self) -> str:
        return f"<KeyPair public={len(self.public_der)} bytes>"


def _generate_private(entry: Algorithm) -> Any:
    if entry.family in ("rsa_oaep", "rsa_pss", "rsa_pkcs1"):
        return rsa.generate_private_key(public_exponent=65537, key_size=entry.bits)
    if entry.family == "ecdsa":
        return ec.generate_private_key(ec.SECP384R1() if entry.name == "ec_p384_sha384" else ec.SECP256R1())
    if entry.name == "ml_dsa_44":
        return mldsa.MLDSA44PrivateKey.generate()
    if entry.name == "ml_dsa_65":
        return mldsa.MLDSA65PrivateKey.generate()
    if entry.name == "ml_dsa_87":
        return mldsa.MLDSA87PrivateKey.generate()
    if entry.name == "ml_kem_768":
        return mlkem.MLKEM768PrivateKey.generate()
    if entry.name == "ml_kem_1024":
        return mlkem.MLKEM1024PrivateKey.generate()
    raise UnsupportedAlgorithm(entry.name, "not an asymmetric algorithm")


def generate(name: str) -> KeyPair:
    """A fresh key pair for asymmetric algorithm ``name``."""
    entry = algorithm(name)
    private = _generate_private(entry)
    private_der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private=crypto.SecretBytes(private_der), public_der=public_der)


def _private(private: crypto.SecretBytes) -> Any:
    return serialization.load_der_private_key(private.reveal(), password=None, unsafe_skip_rsa_key_validation=True)


def _public(public_der: bytes) -> Any:
    return serialization.load_der_public_key(public_der)


def public_pem(public_der: bytes) -> str:
    """The SubjectPublicKeyInfo as PEM text."""
    return str(
        _public(public_der)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# --- signatures --------------------------------------------------------------------------------
def _check_digest(entry: Algorithm, digest: bytes) -> None:
    size = entry.digest_size
    if size is None:
        if not 1 <= len(digest) <= ML_DSA_MAX_MESSAGE:
            raise ValueError(f"must be 1 to {ML_DSA_MAX_MESSAGE} bytes for {entry.name}")
    elif len(digest) != size:
        raise ValueError(f"must be a {size}-byte digest for {entry.name}")


def _hash(entry: Algorithm) -> hashes.HashAlgorithm:
    return hashes.SHA384() if entry.name == "ec_p384_sha384" else hashes.SHA256()


def sign(name: str, private: crypto.SecretBytes, digest: bytes) -> bytes:
    """Sign ``digest``; ``ValueError`` (with a message safe to show) if it has the wrong size."""
    entry = algorithm(name)
    _check_digest(entry, digest)
    key = _private(private)
    if entry.family == "ecdsa":
        return bytes(key.sign(digest, ec.ECDSA(utils.Prehashed(_hash(entry)))))
    if entry.family == "rsa_pss":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        return bytes(key.sign(digest, pss, utils.Prehashed(hashes.SHA256())))
    if entry.family == "rsa_pkcs1":
        return bytes(key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())))
    if entry.family == "ml_dsa":
        return bytes(key.sign(digest))
    raise UnsupportedAlgorithm(name, "not a signing algorithm")


def verify(name: str, public_der: bytes, digest: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is valid for ``digest``; a malformed signature is simply invalid."""
    entry = algorithm(name)
    _check_digest(entry, digest)
    key = _public(public_der)
    try:
        if entry.family == "ecdsa":
            key.verify(signature, digest, ec.ECDSA(utils.Prehashed(_hash(entry))))
        elif entry.family == "rsa_pss":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            key.verify(signature, digest, pss, utils.Prehashed(hashes.SHA256()))
        elif entry.family == "rsa_pkcs1":
            key.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        elif entry.family == "ml_dsa":
            key.verify(signature, digest)
        else:
            raise UnsupportedAlgorithm(name, "not a signing algorithm")
    except (InvalidSignature, ValueError, _CryptoUnsupported):
        return False
    return True


# --- RSA-OAEP --------------------------------------------------------------------------------
def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def max_plaintext(name: str) -> int:
    """Largest plaintext RSA-OAEP-SHA256 can encrypt with this key size."""
    entry = algorithm(name)
    if entry.family != "rsa_oaep":
        raise UnsupportedAlgorithm(name, "not an RSA-OAEP algorithm")
    return entry.bits // 8 - 2 * 32 - 2


def encrypt(name: str, public_der: bytes, plaintext: bytes) -> bytes:
    if len(plaintext) > max_plaintext(name):
        raise ValueError(f"must be at most {max_plaintext(name)} bytes for {name}")
    return bytes(_public(public_der).encrypt(plaintext, _oaep()))


def decrypt(name: str, private: crypto.SecretBytes, ciphertext: bytes) -> bytes:
    entry = algorithm(name)
    if entry.family != "rsa_oaep" or len(ciphertext) != entry.bits // 8:
        raise crypto.InvalidCiphertext()
    try:
        return bytes(_private(private).decrypt(ciphertext, _oaep()))
    except ValueError:
        raise crypto.InvalidCiphertext() from None


# --- ML-KEM wrap / unwrap -------------------------------------------------------------------
_KEM_CIPHERTEXT = {768: 1088, 1024: 1568}


def _wrap_key(shared_secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=crypto.KEY_BYTES, salt=None, info=_WRAP_INFO).derive(shared_secret)


def wrap(name: str, public_der: bytes, plaintext: bytes, *, context: bytes, key_version: int) -> bytes:
    """Wrap ``plaintext`` (1..2,048 bytes) to an ML-KEM public key (format in the module docstring)."""
    entry = algorithm(name)
    if entry.family != "ml_kem":
        raise UnsupportedAlgorithm(name, "wrap_key needs an ML-KEM key")
    if not 1 <= len(plaintext) <= WRAP_MAX_PLAINTEXT:
        raise ValueError(f"must be 1 to {WRAP_MAX_PLAINTEXT} bytes")
    shared_secret, kem_ciphertext = _public(public_der).encapsulate()
    sealed = crypto.seal(_wrap_key(shared_secret), plaintext, context=context, key_version=key_version)
    return bytes(kem_ciphertext) + sealed


def unwrap(name: str, private: crypto.SecretBytes, blob: bytes, *, context: bytes) -> bytes:
    entry = algorithm(name)
    if entry.family != "ml_kem":
        raise UnsupportedAlgorithm(name, "unwrap_key needs an ML-KEM key")
    kem_size = _KEM_CIPHERTEXT[entry.level]
    if not kem_size + crypto.OVERHEAD <= len(blob) <= WRAP_MAX_CIPHERTEXT:
        raise crypto.InvalidCiphertext()
    try:
        shared_secret = _private(private).decapsulate(blob[:kem_size])
    except ValueError:
        raise crypto.InvalidCiphertext() from None
    return crypto.open_(_wrap_key(shared_secret), blob[kem_size:], context=context, max_bytes=WRAP_MAX_CIPHERTEXT)


# --- imported symmetric material ----------------------------------------------------------------
IMPORT_MATERIAL_BYTES = 32


def derive_imported_key(material: bytes, salt: bytes | None) -> crypto.SecretBytes:
    """The AES-256 key used for imported ``material``: HKDF-SHA256(material, salt, info="").

    Imported bytes are never used directly (Scaleway's BYOK rule); without a
    salt HKDF uses its all-zero default salt.
    """
    if len(material) != IMPORT_MATERIAL_BYTES:
        raise ValueError(f"must be exactly {IMPORT_MATERIAL_BYTES} bytes")
    derived = HKDF(algorithm=hashes.SHA256(), length=crypto.KEY_BYTES, salt=salt or None, info=b"").derive(material)
    return crypto.SecretBytes(derived)
