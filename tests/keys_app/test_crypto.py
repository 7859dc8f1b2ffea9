"""The crypto module on its own: round trips, every tamper case, bounds. No database."""

from __future__ import annotations

import pytest

from keys_app import crypto

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
CTX = crypto.aad("secret", "s-1", 3, "d-1")


def fixed_nonce(n: int) -> bytes:
    return b"\x07" * n


def test_round_trip_and_format():
    blob = crypto.seal(KEY, b"payload", context=CTX, key_version=9, nonce_source=fixed_nonce)
    assert blob[0] == crypto.FORMAT_VERSION
    assert int.from_bytes(blob[1:5], "big") == 9
    assert blob[5:17] == b"\x07" * 12
    assert len(blob) == crypto.OVERHEAD + len(b"payload")
    assert crypto.key_version_of(blob) == 9
    assert crypto.open_(KEY, blob, context=CTX) == b"payload"


def test_fixed_vector_is_stable():
    blob = crypto.seal(KEY, b"hkms", context=b"ctx", key_version=1, nonce_source=fixed_nonce)
    assert blob.hex() == crypto.seal(KEY, b"hkms", context=b"ctx", key_version=1, nonce_source=fixed_nonce).hex()
    assert crypto.open_(KEY, blob, context=b"ctx") == b"hkms"


def test_empty_plaintext_round_trips():
    assert crypto.open_(KEY, crypto.seal(KEY, b"", context=CTX, key_version=1), context=CTX) == b""


def test_nonces_are_random():
    a = crypto.seal(KEY, b"x", context=CTX, key_version=1)
    b = crypto.seal(KEY, b"x", context=CTX, key_version=1)
    assert a[5:17] != b[5:17]


@pytest.mark.parametrize("position", [0, 1, 4, 5, 16, 17, -1])
def test_every_flipped_byte_fails(position):
    blob = bytearray(crypto.seal(KEY, b"payload bytes", context=CTX, key_version=1))
    blob[position] ^= 0x01
    with pytest.raises(crypto.InvalidCiphertext):
        crypto.open_(KEY, bytes(blob), context=CTX)


def test_wrong_key_fails():
    blob = crypto.seal(KEY, b"payload", context=CTX, key_version=1)
    with pytest.raises(crypto.InvalidCiphertext):
        crypto.open_(OTHER, blob, context=CTX)


@pytest.mark.parametrize("context", [b"", crypto.aad("secret", "s-2", 3, "d-1"), crypto.aad("secret", "s-1", 4, "d-1")])
def test_context_mismatch_fails(context):
    blob = crypto.seal(KEY, b"payload", context=CTX, key_version=1)
    with pytest.raises(crypto.InvalidCiphertext):
        crypto.open_(KEY, blob, context=context)


def test_aad_encoding_is_injective():
    assert crypto.aad("ab", "c") != crypto.aad("a", "bc")
    assert crypto.aad("a", 1) == crypto.aad("a", "1")


@pytest.mark.parametrize("length", [0, 1, 5, 17, crypto.OVERHEAD - 1])
def test_truncated_blobs_fail(length):
    blob = crypto.seal(KEY, b"payload", context=CTX, key_version=1)
    with pytest.raises(crypto.InvalidCiphertext):
        crypto.open_(KEY, blob[:length], context=CTX)


def test_oversized_blob_is_refused_before_decrypting():
    blob = crypto.seal(KEY, b"x" * 2048, context=CTX, key_version=1)
    with pytest.raises(crypto.InvalidCiphertext):
        crypto.open_(KEY, blob, context=CTX, max_bytes=1024)


def test_wrong_version_byte_fails():
    blob = bytearray(crypto.seal(KEY, b"payload", context=CTX, key_version=1))
    blob[0] = 2
    with pytest.raises(crypto.InvalidCiphertext):
        crypto.open_(KEY, bytes(blob), context=CTX)
    with pytest.raises(crypto.InvalidCiphertext):
        crypto.key_version_of(bytes(blob))


def test_error_message_is_opaque():
    blob = crypto.seal(KEY, b"very secret", context=CTX, key_version=1)
    with pytest.raises(crypto.InvalidCiphertext) as info:
        crypto.open_(OTHER, blob, context=CTX)
    assert str(info.value) == "ciphertext could not be authenticated"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_secret_bytes_hide_themselves():
    key = crypto.generate_key()
    assert key.reveal().hex() not in repr(key)
    assert key.reveal().hex() not in str(key)
    assert len(key) == 32
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)


def test_key_check_value_identifies_key():
    assert crypto.key_check_value(KEY) == crypto.key_check_value(KEY)
    assert crypto.key_check_value(KEY) != crypto.key_check_value(OTHER)
    assert len(crypto.key_check_value(KEY)) == 16


def test_bad_key_and_version_arguments():
    with pytest.raises(ValueError):
        crypto.seal(b"short", b"x", context=CTX, key_version=1)
    with pytest.raises(ValueError):
        crypto.seal(KEY, b"x", context=CTX, key_version=-1)
    with pytest.raises(crypto.InvalidCiphertext):
        crypto.open_(b"short", crypto.seal(KEY, b"x", context=CTX, key_version=1), context=CTX)
