"""Basic auth against `basic_auth_users`: parse the Authorization header, check it with bcrypt.

Successful checks are remembered for a while, because bcrypt is slow by design and Prometheus
sends the same credentials on every scrape. It must never log, keep in clear or put into a
message a password or a password hash, and it knows nothing of HTTP beyond the header's format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Mapping
from typing import Final

# bcrypt reads only the first 72 bytes; Go and htpasswd truncate, the Python package refuses.
_BCRYPT_MAX_PASSWORD: Final = 72
_CACHE_SIZE: Final = 256


class BasicAuth:
    """The users of one web config file and the checks made against them."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        # An unknown user is checked against a real hash of the highest cost, so that it takes
        # as long as a known one (the result is discarded).
        self._dummy_hash = max(self._users.values(), key=lambda h: h[4:6], default=b"")
        self._verified: dict[tuple[str, bytes], None] = {}
        self._verified_lock = threading.Lock()
        # bcrypt is CPU-bound by design: one at a time, as exporter-toolkit does, so a burst of
        # bad passwords costs one core, not all of them.
        self._bcrypt_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._users)

    def check(self, authorization_header: str | None) -> bool:
        """True when the request may pass: no users configured, or valid Basic credentials."""
        if not self._users:
            return True
        credentials = parse_basic_authorization(authorization_header)
        if credentials is None:
            return False
        user, password = credentials
        password = password[:_BCRYPT_MAX_PASSWORD]
        cache_key = (user, hashlib.sha256(password).digest())
        with self._verified_lock:
            if cache_key in self._verified:
                return True
        known_hash = self._users.get(user)
        import bcrypt  # noqa: PLC0415  (optional extra; schema.read_settings checked it is there)

        with self._bcrypt_lock:
            try:
                matches = bcrypt.checkpw(password, known_hash or self._dummy_hash)
            except ValueError:  # a hash that passed the pattern but not bcrypt itself
                matches = False
        if known_hash is None or not matches:
            return False
        with self._verified_lock:
            if len(self._verified) >= _CACHE_SIZE:
                del self._verified[next(iter(self._verified))]
            self._verified[cache_key] = None
        return True


def parse_basic_authorization(header: str | None) -> tuple[str, bytes] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None if it is not one."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        user, colon, password = decoded.partition(b":")
        if not colon:
            return None
        return user.decode("utf-8"), password
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
