"""Signed local URLs: a signature binds one key to one expiry under one secret."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from mediahub.storage.signing import sign, verify

SECRET = b"s3cret"
KEY = "users/avatars/7/2024-05/avatar-20240501120000-abc123.jpg"
NOW = 1_700_000_000
EXPIRES = NOW + 600

keys = st.text(min_size=1, max_size=200)
expiries = st.integers(min_value=NOW, max_value=2**40)


def test_round_trip() -> None:
    assert verify(KEY, EXPIRES, sign(KEY, EXPIRES, SECRET), SECRET, now=NOW)


def test_signature_is_url_safe_without_padding() -> None:
    signature = sign(KEY, EXPIRES, SECRET)

    assert "=" not in signature and "+" not in signature and "/" not in signature
    assert len(signature) == 43  # 32 bytes of HMAC-SHA256


def test_valid_until_the_expiry_second_and_not_after() -> None:
    signature = sign(KEY, EXPIRES, SECRET)

    assert verify(KEY, EXPIRES, signature, SECRET, now=EXPIRES)
    assert not verify(KEY, EXPIRES, signature, SECRET, now=EXPIRES + 1)


def test_uses_the_clock_when_now_is_omitted() -> None:
    assert not verify(KEY, NOW, sign(KEY, NOW, SECRET), SECRET)  # NOW lies in the past


def test_tampered_key_or_expiry_fails() -> None:
    signature = sign(KEY, EXPIRES, SECRET)

    assert not verify(KEY.replace("7", "8"), EXPIRES, signature, SECRET, now=NOW)
    assert not verify(KEY, EXPIRES + 3600, signature, SECRET, now=NOW)


def test_wrong_secret_fails() -> None:
    assert not verify(KEY, EXPIRES, sign(KEY, EXPIRES, SECRET), b"other", now=NOW)


def test_garbage_signature_fails_without_raising() -> None:
    assert not verify(KEY, EXPIRES, "not base64 \udc80 ü", SECRET, now=NOW)


@given(key=keys, expires=expiries, altered=st.text(max_size=60))
def test_any_other_signature_fails(key: str, expires: int, altered: str) -> None:
    assume(altered != sign(key, expires, SECRET))

    assert not verify(key, expires, altered, SECRET, now=NOW)


@given(key=keys, other=keys, expires=expiries)
def test_a_signature_never_fits_another_key(key: str, other: str, expires: int) -> None:
    assume(key != other)

    assert not verify(other, expires, sign(key, expires, SECRET), SECRET, now=NOW)


@given(key=keys, expires=expiries, position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=63))
def test_any_single_character_change_fails(key: str, expires: int, position: int, flip: int) -> None:
    """Each character of the signature carries 6 bits; changing any one must break it."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    signature = sign(key, expires, SECRET)
    index = position % len(signature)
    changed = alphabet[(alphabet.index(signature[index]) + flip) % 64]
    altered = signature[:index] + changed + signature[index + 1 :]

    assert not verify(key, expires, altered, SECRET, now=NOW)
