"""Signatures against the documented worked examples."""

from __future__ import annotations

import re

from tests.support import standin
from zego_exporter.signing import (
    Secret,
    api_signature,
    callback_signature,
    new_nonce,
    signature_matches,
)


def test_api_signature_matches_the_official_worked_example() -> None:
    secret = Secret("9193cc662a4c0ec135ec71fb57194b38")
    assert api_signature(12345, "4fd24687296dd9f3", secret, 1615186943) == (
        "43e5cfcca828314675f91b001390566a"
    )


def test_api_signature_matches_the_second_example() -> None:
    secret = Secret("0123456789abcdef0123456789abcdef")
    assert api_signature(1234567890, "a1b2c3d4e5f60718", secret, 1750000000) == (
        "fbf50071b1133e6409dfead2b0f2d6dc"
    )


def test_callback_signature_matches_the_documented_example() -> None:
    assert callback_signature(Secret("secret"), "1470820198", "123412") == (
        "5bd59fd62953a8059fb7eaba95720f66d19e4517"
    )


def test_nonce_is_sixteen_lowercase_hex_and_fresh() -> None:
    nonces = {new_nonce() for _ in range(200)}
    assert len(nonces) == 200
    assert all(re.fullmatch(r"[0-9a-f]{16}", n) for n in nonces)


def test_secret_never_shows_itself() -> None:
    secret = Secret("hunter2-very-secret")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert "hunter2" not in text
    assert secret.reveal() == "hunter2-very-secret"


def test_signature_comparison() -> None:
    assert signature_matches("abcdef", "ABCDEF")
    assert not signature_matches("abcdef", "abcdee")
    assert not signature_matches("abcdef", "")


def test_the_standins_own_signing_matches_the_documented_examples() -> None:
    """tests/support/standin.py signs with its own code, so that an error in ours cannot be
    agreed with; it must meet the same documented examples."""
    assert standin.request_signature(12345, "4fd24687296dd9f3",
                                     "9193cc662a4c0ec135ec71fb57194b38", 1615186943) == (
        "43e5cfcca828314675f91b001390566a")
    assert standin.callback_signature("secret", "1470820198", "123412") == (
        "5bd59fd62953a8059fb7eaba95720f66d19e4517")
