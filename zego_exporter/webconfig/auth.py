"""Basic auth against `basic_auth_users`: parse the Authorization header, check it with bcrypt.

Logins cost the same whoever asks, and none can stall the others: an unknown user is checked
against a fixed cost-10 hash (as exporter-toolkit does); a few checks of each bcrypt cost run
side by side (bcrypt lets go of the GIL) instead of one at a time behind a lock, so slow hashes
wait only for one another; and recent results are remembered, keyed by user, hash and password,
so that Prometheus' repeated scrapes cost one check and a wrong password can never match a
remembered success. It must never log, keep in clear or put into a message a password or a
password hash, and it knows nothing of HTTP beyond the header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

# bcrypt of a random password nobody kept, at cost 10 like exporter-toolkit's dummy and
# htpasswd's default, so that refusing an unknown user costs what checking a usual user does.
DUMMY_HASH: Final = b"$2b$10$7MCA.Nr6n5fid.G9XXt47egTNqOK6sWDszaFJHLNZg8qt7SnsvVAq"
# bcrypt reads only the first 72 bytes; Go and htpasswd truncate, the Python package refuses.
_BCRYPT_MAX_PASSWORD: Final = 72
# Side-by-side checks of one cost: enough that a handful of unknown users cannot hold up a valid
# login, few enough that a flood of bad passwords cannot take every core for long. Each cost has
# its own slots, so that wrong passwords for a cost-16 user (seconds each) cannot hold up a
# cost-10 login; a file rarely holds more than two or three costs.
DEFAULT_SLOTS: Final = 4
_RESULTS_KEPT: Final = 256

Checker = Callable[[bytes, bytes], bool]
"""(password, bcrypt hash) -> whether they match; may raise ValueError for a bad hash."""


def _bcrypt_checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # noqa: PLC0415  (optional extra; schema.read_settings checked it is there)

    return bool(bcrypt.checkpw(password, hashed))


class LoginResults:
    """Recent check results, kept apart by outcome so that a flood of failures cannot push
    out the successes of the scrapers that know their password.

    Keys are keyed digests of (user, hash, password): no password is kept, and a result only
    applies to the very password it was checked with, against the very hash it was checked
    with (a changed hash in a reloaded file is a new key).
    """

    def __init__(self, size: int = _RESULTS_KEPT) -> None:
        self._size = size
        self._secret = secrets.token_bytes(32)  # digests are useless outside this process
        self._lock = threading.Lock()
        self._passed: OrderedDict[bytes, None] = OrderedDict()
        self._failed: OrderedDict[bytes, None] = OrderedDict()

    def key(self, user: str, hashed: bytes, password: bytes) -> bytes:
        message = b"".join(
            len(part).to_bytes(4, "big") + part for part in (user.encode(), hashed, password)
        )
        return hmac.digest(self._secret, message, hashlib.sha256)

    def get(self, key: bytes) -> bool | None:
        with self._lock:
            for outcome, kept in ((True, self._passed), (False, self._failed)):
                if key in kept:
                    kept.move_to_end(key)
                    return outcome
        return None

    def put(self, key: bytes, passed: bool) -> None:
        kept = self._passed if passed else self._failed
        with self._lock:
            kept[key] = None
            kept.move_to_end(key)
            while len(kept) > self._size:
                kept.popitem(last=False)


class BasicAuth:
    """The users of one web config file and the checks made against them."""

    def __init__(
        self,
        users: Mapping[str, bytes],
        *,
        results: LoginResults | None = None,
        checker: Checker | None = None,
        slots: int = DEFAULT_SLOTS,
        semaphore: Callable[[int], threading.Semaphore] = threading.BoundedSemaphore,
    ) -> None:
        self._users = dict(users)
        self._results = results if results is not None else LoginResults()
        self._checker = checker
        self._slots = {  # bcrypt cost ("10" of "$2y$10$...") -> its slots
            cost: semaphore(slots) for cost in {_cost(h) for h in (*users.values(), DUMMY_HASH)}
        }

    def __len__(self) -> int:
        return len(self._users)

    @property
    def results(self) -> LoginResults:
        """What a reloaded file may carry over: keys hold the hash, so none goes stale."""
        return self._results

    def check(self, authorization_header: str | None) -> bool:
        """True when the request may pass: no users configured, or valid Basic credentials."""
        if not self._users:
            return True
        credentials = parse_basic_authorization(authorization_header)
        if credentials is None:
            return False
        user, password = credentials
        password = password[:_BCRYPT_MAX_PASSWORD]
        known_hash = self._users.get(user)
        hashed = known_hash if known_hash is not None else DUMMY_HASH
        key = self._results.key(user, hashed, password)
        passed = self._results.get(key)
        if passed is None:
            # Looked up (the default bcrypt) at each call, so a test can count the checks.
            checker = self._checker or _bcrypt_checkpw
            with self._slots[_cost(hashed)]:
                try:
                    passed = checker(password, hashed)
                except ValueError:  # a hash that passed the pattern but not bcrypt itself
                    passed = False
            self._results.put(key, passed)
        return passed and known_hash is not None


def _cost(hashed: bytes) -> bytes:
    return hashed[4:6]  # "$2y$10$...": schema.py's pattern checked it is two digits there


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
