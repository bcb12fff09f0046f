"""The tracker's bookkeeping, scheduling and state rules, driven by a hand-held clock."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.support.clock import FakeClock
from tests.support.tracking import T0, drain, make, status
from zego_exporter.responses import TaskStatus
from zego_exporter.states import state_of
from zego_exporter.tracker import RefreshPolicy, Tracker


def test_new_tasks_are_due_at_once_and_claimed_once() -> None:
    tracker, _ = make()
    tracker.set_configured("static", ["a", "b"])
    assert drain(tracker) == ["a", "b"]
    assert tracker.claim_due() is None  # in flight: not handed out twice


def test_refresh_targets_follow_the_state() -> None:
    tracker, clock = make(RefreshPolicy(interval=30, fast_interval=5))
    tracker.set_configured("static", ["init", "stream", "stopping", "failed", "stopped", "gone"])
    drain(tracker)
    tracker.record_lookup(status("init", 1))
    tracker.record_lookup(status("stream", 3))
    tracker.record_lookup(status("stopping", 4))
    tracker.record_lookup(status("failed", 2, reason="boom"))
    tracker.record_lookup(status("stopped", 5))
    tracker.record_not_found("gone")
    clock.now += 5
    assert sorted(drain(tracker)) == ["init", "stopping"]
    tracker.record_lookup(status("init", 1))
    tracker.record_lookup(status("stopping", 4))
    clock.now += 4
    assert drain(tracker) == []
    clock.now += 21  # 30 s after the first answers: streaming is due, and fast ones again
    assert drain(tracker) == ["stream", "init", "stopping"]  # stalest first


def test_terminal_tasks_are_not_polled_again() -> None:
    tracker, clock = make()
    tracker.set_configured("static", ["failed", "stopped", "gone"])
    drain(tracker)
    tracker.record_lookup(status("failed", 2))
    tracker.record_lookup(status("stopped", 5))
    tracker.record_not_found("gone")
    clock.now += 1e6
    assert drain(tracker) == []
    assert tracker.snapshot().backlog == 0


def test_backlog_counts_running_tasks_whose_data_is_older_than_their_refresh_target() -> None:
    """The contract's refresh_backlog: tracked tasks whose data is older than their refresh
    target (5 s initializing or stopping, 30 s streaming here); never the terminal ones."""
    tracker, clock = make(RefreshPolicy(interval=30, fast_interval=5))
    tracker.set_configured("static", ["init", "stream", "failed", "gone"])
    assert tracker.snapshot().backlog == 4  # no data yet: every one is overdue
    drain(tracker)
    tracker.record_lookup(status("init", 1))
    tracker.record_lookup(status("stream", 3))
    tracker.record_lookup(status("failed", 2, reason="boom"))
    tracker.record_not_found("gone")
    assert tracker.snapshot().backlog == 0
    clock.now += 4.9
    assert tracker.snapshot().backlog == 0
    clock.now += 0.1
    assert tracker.snapshot().backlog == 1  # initializing, 5 s old
    clock.now += 25
    assert tracker.snapshot().backlog == 2  # and streaming, 30 s old
    assert sorted(drain(tracker)) == ["init", "stream"]
    tracker.record_lookup(status("init", 3))
    assert tracker.snapshot().backlog == 1  # the other one is still in flight: not fresh yet
    tracker.record_lookup(status("stream", 3))
    assert tracker.snapshot().backlog == 0


def test_lookup_success_follows_lookups_and_the_running_list_but_not_callbacks() -> None:
    tracker, clock = make()
    tracker.set_configured("static", ["t"])
    drain(tracker)
    tracker.record_lookup_failure("t")
    assert (view := tracker.view("t")) is not None and view.lookup_ok is False
    tracker.record_callback(status("t", 3))
    assert (view := tracker.view("t")) is not None and view.lookup_ok is False
    tracker.record_discovery([status("t", 3)])  # the list answered for it
    assert (view := tracker.view("t")) is not None and view.lookup_ok is True
    clock.now += 1e3
    drain(tracker)
    tracker.record_lookup_failure("t")
    assert (view := tracker.view("t")) is not None and view.lookup_ok is False
    tracker.record_not_found("t")  # an answer: ended
    assert (view := tracker.view("t")) is not None and view.lookup_ok is True


def test_stalest_due_task_goes_first() -> None:
    tracker, clock = make(RefreshPolicy(interval=30))
    tracker.set_configured("static", ["a", "b", "c"])
    drain(tracker)
    tracker.record_lookup(status("b", 3))
    clock.now += 1
    tracker.record_lookup(status("c", 3))
    clock.now += 1
    tracker.record_lookup(status("a", 3))
    clock.now += 100
    assert drain(tracker) == ["b", "c", "a"]


def test_never_fetched_tasks_go_before_merely_due_ones() -> None:
    tracker, clock = make(RefreshPolicy(interval=30))
    tracker.set_configured("static", ["old"])
    drain(tracker)
    tracker.record_lookup(status("old", 3))
    clock.now += 100
    tracker.set_configured("file", ["new"])
    assert drain(tracker) == ["new", "old"]


def test_failed_lookups_back_off_and_keep_the_last_good_data() -> None:
    tracker, clock = make(RefreshPolicy(fast_interval=5, failure_backoff_cap=20))
    tracker.set_configured("static", ["a"])
    drain(tracker)
    tracker.record_lookup(status("a", 3, "room", "stream"))
    good = tracker.view("a")
    waits = []
    for _ in range(5):
        clock.now += 1000
        assert drain(tracker) == ["a"]
        tracker.record_lookup_failure("a")
        due_in = tracker.next_due_in()
        assert due_in is not None
        waits.append(due_in)
    assert waits == [5, 10, 20, 20, 20]
    view = tracker.view("a")
    assert view is not None and good is not None
    assert (view.state, view.room_id, view.last_success) == ("streaming", "room", good.last_success)
    assert view.lookup_ok is False


def test_room_and_stream_are_remembered_when_an_answer_leaves_them_out() -> None:
    tracker, _ = make()
    tracker.set_configured("static", ["a"])
    drain(tracker)
    tracker.record_lookup(status("a", 3, "room", "stream"))
    tracker.record_lookup(TaskStatus("a", 5, "", "", 0))
    view = tracker.view("a")
    assert view is not None
    assert (view.room_id, view.stream_id, view.state, view.create_time) == (
        "room", "stream", "stopped", int(T0) - 60)


def test_init_failures_are_counted_once_with_zeros_for_known_pairs() -> None:
    tracker, _ = make()
    tracker.set_configured("static", ["a", "b", "c"])
    drain(tracker)
    tracker.record_lookup(status("a", 1, "r1", "s1"))
    tracker.record_lookup(status("b", 2, "r1", "s2", "first seen already failed"))
    tracker.record_lookup(status("c", 3, "r2", "s3"))
    assert tracker.snapshot().failures == {("r1", "s1"): 0, ("r1", "s2"): 1, ("r2", "s3"): 0}
    tracker.record_lookup(status("a", 2, "r1", "s1", "model load timeout"))
    tracker.record_lookup(status("a", 2, "r1", "s1", "model load timeout"))
    tracker.record_callback(status("a", 2, "r1", "s1", "model load timeout"))
    assert tracker.snapshot().failures[("r1", "s1")] == 1
    view = tracker.view("a")
    assert view is not None and view.fail_reason == "model load timeout"


def test_fail_reason_is_cleaned_and_capped() -> None:
    tracker, _ = make()
    tracker.set_configured("static", ["a"])
    drain(tracker)
    tracker.record_lookup(status("a", 2, reason="bad\x00\x1b[31m\nthing " + "x" * 400))
    view = tracker.view("a")
    assert view is not None
    assert view.fail_reason.startswith("bad[31mthing x")
    assert len(view.fail_reason) == 256


def test_discovery_refreshes_running_tasks_without_lookups() -> None:
    policy = RefreshPolicy(discovery_interval=15, fast_interval=5, interval=30)
    tracker, clock = make(policy)
    running = [status(f"t{i}", 1 if i % 2 else 3, f"r{i}", f"s{i}") for i in range(100)]
    for _ in range(20):
        assert tracker.record_discovery(running) == []
        assert drain(tracker) == []
        clock.now += 15
    snap = tracker.snapshot()
    assert snap.sources["discovered"] == 100
    assert snap.backlog == 0
    assert len(tracker._schedule) <= 2 * len(tracker) + 1024  # stale heap items stay bounded


def test_tasks_moved_later_keep_one_heap_item_and_fall_due_at_the_new_time() -> None:
    tracker, clock = make(RefreshPolicy(discovery_interval=15, fast_interval=5, interval=30))
    running = [status(f"t{i}", 3, f"r{i}", f"s{i}") for i in range(100)]
    for _ in range(10):
        tracker.record_discovery(running)
        clock.now += 15
        assert drain(tracker) == []
    assert len(tracker._schedule) == 100  # one item per task, however often it moved
    clock.now += 19  # 34 s after the last list; the grace is 2 * 15 + 5 = 35 s
    assert drain(tracker) == []
    clock.now += 1
    assert sorted(drain(tracker)) == sorted(t.task_id for t in running)


def test_repeated_answers_keep_one_copy_of_their_strings() -> None:
    tracker, _ = make()
    tracker.set_configured("static", ["a"])
    drain(tracker)
    tracker.record_lookup(status("a", 3, "".join(["room", "1"]), "".join(["s", "1"])))
    first = tracker.view("a")
    tracker.record_lookup(status("a", 3, "".join(["room", "1"]), "".join(["s", "1"])))
    again = tracker.view("a")
    assert first is not None and again is not None and again is not first
    assert again.room_id is first.room_id and again.stream_id is first.stream_id


def test_tasks_that_leave_the_running_list_get_one_urgent_lookup() -> None:
    tracker, clock = make()
    tracker.set_configured("static", ["old"])
    drain(tracker)
    tracker.record_lookup(status("old", 3))
    clock.now += 100  # "old" is overdue, but leavers go first
    tracker.record_discovery([status("a", 3), status("b", 1)])
    assert tracker.record_discovery([status("a", 3)]) == ["b"]
    assert drain(tracker) == ["b", "old"]
    tracker.record_lookup(status("b", 2, reason="init timeout"))
    clock.now += 1e5
    assert "b" not in drain(tracker)


def test_retention_drops_ended_discovered_tasks_but_keeps_configured_ones() -> None:
    tracker, clock = make(RefreshPolicy(retention=3600))
    tracker.set_configured("static", ["mine"])
    tracker.record_discovery([status("found", 3, "r", "s1"), status("mine", 3, "r", "s2")])
    tracker.record_discovery([])
    drain(tracker)
    tracker.record_not_found("found")
    tracker.record_lookup(status("mine", 5, "r", "s2"))
    clock.now += 3599
    assert tracker.expire() == 0
    clock.now += 2
    assert tracker.expire() == 1
    assert tracker.task_ids() == ["mine"]
    assert ("r", "s1") not in tracker.snapshot().failures


def test_unconfiguring_a_task_forgets_it_unless_another_source_names_it() -> None:
    tracker, _ = make()
    tracker.set_configured("static", ["a", "b"])
    tracker.set_configured("file", ["b"])
    tracker.set_configured("static", [])
    assert tracker.task_ids() == ["b"]
    snap = tracker.snapshot()
    assert (snap.sources["static"], snap.sources["file"]) == (0, 1)


def test_callback_endings_are_confirmed_by_one_lookup() -> None:
    tracker, clock = make(RefreshPolicy(fast_interval=5, callback_reconcile=300))
    tracker.record_callback(status("cb", 3))
    drain(tracker)  # first lookup of a task first seen by callback
    tracker.record_lookup(status("cb", 3))
    tracker.record_callback(status("cb", 5))
    view = tracker.view("cb")
    assert view is not None and view.state == "stopped"
    clock.now += 5
    assert drain(tracker) == ["cb"]
    tracker.record_lookup(status("cb", 5))
    clock.now += 1e5
    assert drain(tracker) == []


def test_callback_does_not_claim_a_lookup_succeeded() -> None:
    tracker, _ = make()
    tracker.record_callback(status("cb", 3))
    view = tracker.view("cb")
    assert view is not None and view.lookup_ok is None and view.last_success == T0


def test_first_round_is_done_when_every_configured_task_was_asked() -> None:
    tracker, _ = make()
    tracker.set_configured("static", ["a", "b"])
    assert not tracker.first_round_done()
    drain(tracker)
    tracker.record_lookup(status("a", 3))
    assert not tracker.first_round_done()
    tracker.record_lookup_failure("b")
    assert tracker.first_round_done()


def test_a_callback_cannot_reopen_a_task_whose_ending_a_lookup_confirmed() -> None:
    tracker, _ = make()
    tracker.set_configured("static", ["a"])
    drain(tracker)
    tracker.record_lookup(status("a", 5))
    assert not tracker.record_callback(status("a", 3))
    view = tracker.view("a")
    assert view is not None and view.state == "stopped"


def test_a_configured_task_listed_by_discovery_counts_as_asked() -> None:
    """Discovery keeps a running task's lookup away: readiness must not wait for it."""
    tracker, clock = make(RefreshPolicy(discovery_interval=1, fast_interval=1))
    tracker.set_configured("static", ["running"])
    tracker.record_discovery([status("running", 3)])
    for _ in range(10):  # discovery every second keeps pushing the lookup back
        clock.now += 1
        tracker.record_discovery([status("running", 3)])
        assert tracker.claim_due() is None
    assert tracker.first_round_done()


# -- the contract's state rules for ended tasks ------------------------------------------------

def test_not_found_means_not_found_only_for_a_task_never_seen() -> None:
    """ZEGO's current docs describe GetStatus for running tasks only: "task not found" is an
    ending for a task this exporter has seen, and a typo only for one it never saw."""
    tracker, clock = make()
    tracker.set_configured("static", ["never", "init", "stream", "stopping", "odd", "stopped"])
    drain(tracker)
    tracker.record_lookup(status("init", 1, "r1", "s1"))
    tracker.record_discovery([status("stream", 3, "r2", "s2")])
    tracker.record_lookup(status("stopping", 4, "r3", "s3"))
    tracker.record_lookup(status("odd", 7, "r4", "s4"))
    tracker.record_callback(status("failed", 2, "r5", "s5", "no render node available"))
    tracker.record_lookup(status("stopped", 5, "r6", "s6"))
    clock.now += 5
    drain(tracker)  # the callback's confirming lookup among them
    for task_id in tracker.task_ids():
        tracker.record_not_found(task_id)
    views = {task_id: tracker.view(task_id) for task_id in tracker.task_ids()}
    shown = {task_id: (v.state, v.status, v.fail_reason, v.room_id)
             for task_id, v in views.items() if v is not None}
    assert shown == {
        "never": ("not_found", None, "", ""),
        "init": ("stopped", 5, "", "r1"),
        "stream": ("stopped", 5, "", "r2"),
        "stopping": ("stopped", 5, "", "r3"),
        "odd": ("stopped", 5, "", "r4"),
        "failed": ("init_failed", 2, "no render node available", "r5"),
        "stopped": ("stopped", 5, "", "r6"),
    }
    assert all(v is not None and v.lookup_ok and v.last_success == T0 + 5
               for v in views.values())
    assert tracker.snapshot().failures[("r5", "s5")] == 1
    assert drain(tracker) == []  # every one of them is settled: never polled again


def test_a_failure_from_a_callback_survives_the_confirming_lookup_that_finds_nothing() -> None:
    """Observed: a callback's init_failed ("no render node available") became not_found with
    an empty fail_reason when the confirming lookup answered 400000005."""
    tracker, clock = make(RefreshPolicy(fast_interval=5))
    tracker.record_callback(status("t", 2, "room_1", "stream_1", "no render node available"))
    clock.now += 5
    assert drain(tracker) == ["t"]  # the confirming lookup
    tracker.record_not_found("t")
    view = tracker.view("t")
    assert view is not None
    assert (view.state, view.status, view.fail_reason) == (
        "init_failed", 2, "no render node available")
    assert tracker.snapshot().failures == {("room_1", "stream_1"): 1}


def test_an_answer_to_a_request_sent_before_a_callback_does_not_undo_it() -> None:
    """A lookup or a list in flight when a callback arrives may answer the older status; the
    callback stands until a lookup sent after it confirms (found by the stand-in: a stale
    "initializing" undid init_failed, and the next lookup, finding nothing, made it stopped)."""
    tracker, clock = make(RefreshPolicy(fast_interval=5))
    tracker.set_configured("static", ["t"])
    drain(tracker)
    tracker.record_lookup(status("t", 1))
    clock.now += 5
    assert drain(tracker) == ["t"]  # a lookup is sent ...
    asked = clock.now
    clock.now += 0.1
    tracker.record_callback(status("t", 2, reason="no render node available"))  # ... then
    tracker.record_lookup(status("t", 1))  # the lookup's answer, older than the callback
    tracker.record_discovery([status("t", 1)], asked_at=asked)  # and a list asked before it
    view = tracker.view("t")
    assert view is not None and (view.state, view.fail_reason) == (
        "init_failed", "no render node available")
    clock.now += 5
    assert drain(tracker) == ["t"]  # the confirming lookup, sent after the callback
    tracker.record_not_found("t")
    view = tracker.view("t")
    assert view is not None and view.state == "init_failed"
    assert tracker.snapshot().failures == {("r", "s"): 1}


def test_a_running_list_cannot_reopen_a_task_whose_ending_a_lookup_confirmed() -> None:
    """A list asked before the lookup that found init_failed (or a stale one) still shows the
    task initializing: it must not undo the known ending, whose FailReason would otherwise be
    lost when the next lookup finds nothing (the contract: a known init_failed stays)."""
    tracker, clock = make(RefreshPolicy(fast_interval=5))
    tracker.set_configured("static", ["t"])
    asked = clock.now
    tracker.record_discovery([status("t", 1)], asked_at=asked)
    clock.now += 20
    assert drain(tracker) == ["t"]
    tracker.record_lookup(status("t", 2, reason="model load timeout"))
    tracker.record_discovery([status("t", 1)], asked_at=asked)  # asked before the lookup
    tracker.record_discovery([status("t", 1)])  # or ZEGO's list lagging behind
    tracker.record_discovery([])
    clock.now += 20
    drain(tracker)
    tracker.record_not_found("t")
    view = tracker.view("t")
    assert view is not None and (view.state, view.fail_reason) == (
        "init_failed", "model load timeout")
    assert tracker.snapshot().failures == {("r", "s"): 1}


def test_a_callback_ending_is_still_confirmed_when_a_stale_lookup_outlives_its_due_time() -> (
        None):
    """A lookup in flight when an ending arrives by callback answers late (after the
    confirming lookup fell due) with the older status: the confirmation must still happen."""
    tracker, clock = make(RefreshPolicy(fast_interval=5))
    tracker.set_configured("static", ["t"])
    drain(tracker)
    tracker.record_lookup(status("t", 3))
    clock.now += 30
    assert drain(tracker) == ["t"]  # a lookup is sent ...
    clock.now += 0.1
    tracker.record_callback(status("t", 5))  # ... the task ends meanwhile ...
    clock.now += 6
    assert drain(tracker) == []  # ... the confirmation is due, but the lookup is in flight
    tracker.record_lookup(status("t", 3))  # the lookup's late, older answer
    clock.now += 0.1
    assert drain(tracker) == ["t"]  # the confirming lookup
    tracker.record_not_found("t")
    view = tracker.view("t")
    assert view is not None and view.state == "stopped"
    assert tracker.urgent_or_in_flight() == set()  # no scrape waits for it any more


def test_a_task_never_seen_can_still_show_up_later() -> None:
    tracker, _ = make()
    tracker.set_configured("static", ["early"])
    drain(tracker)
    tracker.record_not_found("early")
    assert tracker.record_callback(status("early", 1))  # not an ending: nothing to reopen
    tracker.record_discovery([status("early", 3)])
    view = tracker.view("early")
    assert view is not None and view.state == "streaming"


TASKS = ("a", "b", "c")
"""a and b are configured; c comes only from the list or a callback."""
PAIRS = {task: (f"room_{task}", f"stream_{task}") for task in TASKS}
REASONS = ("", "no render node available", "model load timeout")
KNOWN_ENDINGS = ("init_failed", "stopped")


class StateRules(RuleBasedStateMachine):
    """Any order of callbacks, lists, lookup answers and failed lookups, against a model of
    the contract's state rules (and of two ordering rules: an answer to a request sent before
    a callback was applied does not override the callback, and nothing reopens a task whose
    ending a lookup confirmed)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(T0)
        self.tracker = Tracker(RefreshPolicy(), clock=self.clock)
        self.tracker.set_configured("static", TASKS[:2])
        self.tracked = set(TASKS[:2])
        self.state: dict[str, str] = {}  # what the model expects, once a task has an answer
        self.reason: dict[str, str] = {}
        self.failed: set[str] = set()
        self.asked: dict[str, float] = {}  # when the lookup in flight was sent
        self.callback_at: dict[str, float] = {}  # when the latest callback was applied
        self.confirmed: set[str] = set()  # a lookup settled its ending (or not_found)

    def stale(self, task_id: str, asked_at: float | None) -> bool:
        """An answer to a request sent before the latest callback: the callback stands."""
        applied = self.callback_at.get(task_id)
        return asked_at is not None and applied is not None and applied >= asked_at

    def reopens(self, task_id: str, code: int) -> bool:
        """News of a running task whose ending a lookup confirmed: tasks never come back."""
        return (task_id in self.confirmed and self.state.get(task_id) in KNOWN_ENDINGS
                and state_of(code) not in KNOWN_ENDINGS)

    def answered(self, task_id: str, code: int, reason: str) -> None:
        self.tracked.add(task_id)
        if state_of(code) not in KNOWN_ENDINGS:
            self.confirmed.discard(task_id)
        self.state[task_id] = state_of(code)
        self.reason[task_id] = reason if code == 2 else ""
        if code == 2:
            self.failed.add(task_id)

    def answer(self, task_id: str, code: int, reason: str) -> TaskStatus:
        room, stream = PAIRS[task_id]
        return TaskStatus(task_id, code, room, stream, int(T0) - 60, reason)

    @rule(task_id=st.sampled_from(TASKS), code=st.sampled_from([1, 2, 3, 4, 5, 7]),
          reason=st.sampled_from(REASONS), event_time=st.none() | st.integers(0, 20))
    def callback(self, task_id: str, code: int, reason: str, event_time: int | None) -> None:
        reopens = self.reopens(task_id, code)
        if self.tracker.record_callback(self.answer(task_id, code, reason),
                                        None if event_time is None else float(event_time)):
            assert not reopens, (task_id, code)
            self.answered(task_id, code, reason)
            self.callback_at[task_id] = self.clock.now

    @rule(listed=st.lists(st.tuples(st.sampled_from(TASKS), st.sampled_from([1, 3])),
                          unique_by=lambda pair: pair[0], max_size=3),
          asked_ago=st.none() | st.sampled_from([0.0, 30.0]))
    def running_list(self, listed: list[tuple[str, int]], asked_ago: float | None) -> None:
        asked_at = None if asked_ago is None else self.clock.now - asked_ago
        self.tracker.record_discovery([self.answer(t, code, "") for t, code in listed],
                                      asked_at=asked_at)
        for task_id, code in listed:
            if not (task_id in self.tracked and (self.stale(task_id, asked_at)
                                                 or self.reopens(task_id, code))):
                self.answered(task_id, code, "")

    def lookup_answered(self, task_id: str) -> bool:
        """Whether a lookup answer now counts (and the lookup is no longer in flight)."""
        return task_id in self.tracked and not self.stale(task_id, self.asked.pop(task_id, None))

    @rule(task_id=st.sampled_from(TASKS), code=st.sampled_from([1, 2, 3, 4, 5, 7]),
          reason=st.sampled_from(REASONS))
    def lookup(self, task_id: str, code: int, reason: str) -> None:
        self.tracker.record_lookup(self.answer(task_id, code, reason))
        if self.lookup_answered(task_id):
            self.answered(task_id, code, reason)
            if state_of(code) in KNOWN_ENDINGS:
                self.confirmed.add(task_id)

    @rule(task_id=st.sampled_from(TASKS))
    def lookup_not_found(self, task_id: str) -> None:
        self.tracker.record_not_found(task_id)
        if not self.lookup_answered(task_id):
            return
        self.confirmed.add(task_id)
        before = self.state.get(task_id)
        if before is None or before == "not_found":
            self.state[task_id] = "not_found"
        elif before not in ("init_failed", "stopped"):
            self.state[task_id] = "stopped"

    @rule(task_id=st.sampled_from(TASKS))
    def lookup_failed(self, task_id: str) -> None:
        self.tracker.record_lookup_failure(task_id)
        self.asked.pop(task_id, None)

    @rule(seconds=st.floats(0, 100))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds
        for task_id in drain(self.tracker):  # lookups sent now; their answers come later
            self.asked[task_id] = self.clock.now

    @invariant()
    def the_rules_hold(self) -> None:
        failures = self.tracker.snapshot().failures
        for task_id in TASKS:
            view = self.tracker.view(task_id)
            assert (view is not None) == (task_id in self.tracked)
            if view is None:
                continue
            expected = self.state.get(task_id, "unknown")
            assert view.state == expected, (task_id, view)
            if task_id in self.state and self.state[task_id] != "not_found":
                assert view.status is not None  # seen in any state: never not_found
            assert view.fail_reason == (self.reason[task_id] if expected == "init_failed"
                                        else "")
            # Each task's failure is counted once, whichever source reported it first.
            assert failures.get(PAIRS[task_id], 0) == (1 if task_id in self.failed else 0)


StateRules.TestCase.settings = settings(max_examples=300, stateful_step_count=30,
                                        deadline=None)
test_state_rules_hold_in_any_order = StateRules.TestCase
