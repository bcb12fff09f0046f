"""The tracker's bookkeeping and scheduling, driven by a hand-held clock."""

from __future__ import annotations

from zego_exporter.responses import TaskStatus
from zego_exporter.tracker import RefreshPolicy, Tracker

T0 = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make(policy: RefreshPolicy | None = None) -> tuple[Tracker, Clock]:
    clock = Clock()
    return Tracker(policy or RefreshPolicy(), clock=clock), clock


def status(task_id: str, code: int, room: str = "r", stream: str = "s", reason: str = "") -> (
    TaskStatus
):
    return TaskStatus(task_id, code, room, stream, int(T0) - 60, reason)


def drain(tracker: Tracker) -> list[str]:
    claimed = []
    while (task_id := tracker.claim_due()) is not None:
        claimed.append(task_id)
    return claimed


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
        tracker.record_lookup_failure("a", "timeout")
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
    tracker.record_lookup_failure("b", "timeout")
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
