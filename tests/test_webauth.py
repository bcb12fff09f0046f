"""Logins that cannot be stalled: the mechanism, driven by a hash checker that blocks until the
test releases it (no wall clock: the timings are bench/logins.py's job)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.credentials import basic_auth
from zego_exporter.webconfig.auth import DUMMY_HASH, BasicAuth, LoginResults

WAIT = 10.0  # seconds: only ever reached when the mechanism is broken (a deadlock)
DAVE_HASH = b"$2y$10$" + b"d" * 53
ALICE_HASH = b"$2y$16$" + b"a" * 53  # the slow user of the file



class GatedChecker:
    """A hash checker whose checks of `gated` hashes block until the test opens the gate.
    Other hashes answer at once: the password is right when it is "right"."""

    def __init__(self, *gated: bytes) -> None:
        self.gated = set(gated)
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls: list[bytes] = []
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.calls.append(hashed)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if hashed in self.gated:
                self.entered.release()
                assert self.gate.wait(WAIT), "the test never opened the gate"
            return password == b"right"
        finally:
            with self._lock:
                self.in_flight -= 1

    def wait_until_stuck(self, count: int) -> None:
        for _ in range(count):
            assert self.entered.acquire(timeout=WAIT), "a check never reached the checker"


@contextmanager
def logins(auth: BasicAuth, *headers: str) -> Iterator[list[bool]]:
    """Run one login per header on its own thread; the list holds their outcomes at the end."""
    outcomes: list[bool] = []
    threads = [threading.Thread(target=lambda h=header: outcomes.append(auth.check(h)))
               for header in headers]
    for thread in threads:
        thread.start()
    try:
        yield outcomes
    finally:
        for thread in threads:
            thread.join(WAIT)
            assert not thread.is_alive()


def test_the_dummy_hash_is_a_real_cost_10_bcrypt_hash() -> None:
    """A dummy bcrypt refused at once (ValueError, answered False) would make unknown users
    quick to refuse, and so tell them apart from known ones by timing."""
    import bcrypt

    assert DUMMY_HASH[:7] in (b"$2a$10$", b"$2b$10$", b"$2y$10$") and len(DUMMY_HASH) == 60
    assert bcrypt.checkpw(b"anything", DUMMY_HASH) is False  # raises on a broken hash


def test_a_valid_login_passes_while_unknown_users_are_stuck_in_their_checks() -> None:
    checker = GatedChecker(DUMMY_HASH)
    auth = BasicAuth({"dave": DAVE_HASH, "alice": ALICE_HASH}, checker=checker, slots=4)

    unknown = [basic_auth(f"mallory{n}", "guess") for n in range(3)]
    with logins(auth, *unknown) as refused:
        checker.wait_until_stuck(3)  # three checks hold three slots and do not come back

        assert auth.check(basic_auth("dave", "right"))  # no single lock: the fourth slot is free
        assert checker.in_flight == 3

        checker.gate.set()
    assert refused == [False, False, False]
    assert checker.calls.count(DUMMY_HASH) == 3  # unknown users: the fixed dummy, not alice's
    assert ALICE_HASH not in checker.calls


class Pools:
    """The semaphores BasicAuth makes (one per bcrypt cost), for the test to look at."""

    def __init__(self) -> None:
        self.made: list[threading.Semaphore] = []

    def __call__(self, slots: int) -> threading.Semaphore:
        self.made.append(threading.BoundedSemaphore(slots))
        return self.made[-1]

    def full(self) -> list[bool]:
        """For each semaphore: are all its slots taken?"""
        full = []
        for semaphore in self.made:
            taken = not semaphore.acquire(blocking=False)
            if not taken:
                semaphore.release()
            full.append(taken)
        return full


def test_a_remembered_login_needs_no_slot_at_all() -> None:
    checker = GatedChecker(DUMMY_HASH)
    pools = Pools()
    auth = BasicAuth({"dave": DAVE_HASH}, checker=checker, slots=2, semaphore=pools)
    assert auth.check(basic_auth("dave", "right"))  # checked once, remembered

    with logins(auth, basic_auth("eve", "1"), basic_auth("eve", "2")) as refused:
        checker.wait_until_stuck(2)
        assert pools.full() == [True]  # cost 10 (dave's and the dummy's): both slots held

        assert auth.check(basic_auth("dave", "right"))  # a scraper's next scrape: not held up
        checker.gate.set()
    assert refused == [False, False]
    assert checker.most_in_flight == 2


def test_checks_beyond_the_slots_wait_for_one_to_free() -> None:
    checker = GatedChecker(DUMMY_HASH)
    pools = Pools()
    auth = BasicAuth({"dave": DAVE_HASH}, checker=checker, slots=2, semaphore=pools)

    headers = [basic_auth(f"unknown{n}", "x") for n in range(5)]
    with logins(auth, *headers) as refused:
        checker.wait_until_stuck(2)
        assert pools.full() == [True]
        checker.gate.set()
    assert refused == [False] * 5
    assert checker.most_in_flight <= 2
    assert checker.calls == [DUMMY_HASH] * 5


def test_wrong_passwords_for_a_slow_user_do_not_hold_up_a_usual_login() -> None:
    checker = GatedChecker(ALICE_HASH)
    pools = Pools()
    auth = BasicAuth({"dave": DAVE_HASH, "alice": ALICE_HASH}, checker=checker, slots=2,
                     semaphore=pools)
    assert len(pools.made) == 2  # cost 10 (dave, the dummy) and cost 16 (alice)

    with logins(auth, basic_auth("alice", "guess1"), basic_auth("alice", "guess2"),
                basic_auth("alice", "guess3")) as refused:
        checker.wait_until_stuck(2)
        assert sorted(pools.full()) == [False, True]  # alice's cost: full; the other: free

        assert auth.check(basic_auth("dave", "right"))
        assert not auth.check(basic_auth("nobody", "x"))
        checker.gate.set()
    assert refused == [False] * 3
    assert checker.most_in_flight <= 3  # two of alice's, and one usual check at a time here


def test_a_remembered_failure_is_not_checked_again_and_never_becomes_a_success() -> None:
    checker = GatedChecker()
    auth = BasicAuth({"dave": DAVE_HASH}, checker=checker)

    assert not auth.check(basic_auth("dave", "stale"))
    assert not auth.check(basic_auth("dave", "stale"))
    assert not auth.check(basic_auth("nobody", "right"))  # right for the dummy checker: still no
    assert not auth.check(basic_auth("nobody", "right"))
    assert checker.calls == [DAVE_HASH, DUMMY_HASH]
    assert auth.check(basic_auth("dave", "right"))


def test_failures_cannot_push_out_the_successes() -> None:
    results = LoginResults(size=3)
    good = results.key("dave", DAVE_HASH, b"right")
    results.put(good, True)
    for n in range(100):
        results.put(results.key("mallory", DUMMY_HASH, str(n).encode()), False)

    assert results.get(good) is True
    assert results.get(results.key("mallory", DUMMY_HASH, b"0")) is None  # pushed out
    assert results.get(results.key("mallory", DUMMY_HASH, b"99")) is False


def test_result_keys_bind_user_hash_and_password_and_hold_no_password() -> None:
    results = LoginResults()
    key = results.key("dave", DAVE_HASH, b"right")

    assert b"right" not in key and len(key) == 32
    assert key != results.key("dave", ALICE_HASH, b"right")
    assert key != results.key("dave", DAVE_HASH, b"right ")
    assert key != results.key("davé", DAVE_HASH, b"right")
    # Length-prefixed: moving a byte from the user to the password is another key.
    assert results.key("ab", b"c", b"d") != results.key("a", b"bc", b"d")
    assert key != LoginResults().key("dave", DAVE_HASH, b"right")  # a secret per process
