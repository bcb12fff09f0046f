"""Signatures of the ZEGO server API (MD5, version 2.0) and of ZEGO callbacks (SHA-1).

Pure functions shared by the client, the simulated API and the callback endpoint. This module
holds no secret and must never log, print or keep one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


class Secret:
    """A secret string that does not show itself in `repr`, `str`, logs or tracebacks.

    Call `reveal()` at the one place that needs the value (hashing); everywhere else the
    object stands in for it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))


def new_nonce() -> str:
    """A fresh SignatureNonce: 8 random bytes as 16 lowercase hex characters."""
    return secrets.token_hex(8)


def api_signature(app_id: int, nonce: str, server_secret: Secret, timestamp: int) -> str:
    """`lowercase_hex(MD5(AppId + SignatureNonce + ServerSecret + Timestamp))`, no separators."""
    text = f"{app_id}{nonce}{server_secret.reveal()}{timestamp}"
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def callback_signature(callback_secret: Secret, timestamp: str, nonce: str) -> str:
    """SHA-1 (lowercase hex) of callback secret, Timestamp and Nonce sorted and concatenated."""
    parts = sorted([callback_secret.reveal(), timestamp, nonce])
    return hashlib.sha1("".join(parts).encode("utf-8"), usedforsecurity=False).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    """Constant-time comparison of two hex signatures (case-insensitive)."""
    return hmac.compare_digest(expected.lower().encode(), given.lower().encode())
