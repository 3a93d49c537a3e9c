"""fan_out, the bounded parallelism inside one activity: never more calls in flight than asked,
every result once, and on a failure no new call starts and the calls in flight finish first."""

from __future__ import annotations

import threading
import time

import pytest

from activities.base import fan_out


class Tracker:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.started: list[int] = []
        self.finished: list[int] = []

    def work(self, item: int, fail_on: int | None = None, pause: float = 0.01) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.append(item)
        try:
            time.sleep(pause)
            if item == fail_on:
                raise RuntimeError(f"item {item} failed")
            return item * 10
        finally:
            with self.lock:
                self.running -= 1
                self.finished.append(item)


def test_every_item_once_never_more_than_width_at_once():
    tracker = Tracker()
    results = dict(fan_out(range(40), tracker.work, width=4))
    assert results == {i: i * 10 for i in range(40)}
    assert 2 <= tracker.most <= 4
    assert sorted(tracker.started) == list(range(40))


def test_a_failure_stops_new_calls_and_waits_for_those_in_flight():
    tracker = Tracker()
    with pytest.raises(RuntimeError, match="item 5 failed"):
        for _ in fan_out(range(100), lambda i: tracker.work(i, fail_on=5), width=3):
            pass
    assert tracker.running == 0  # nothing still running once the error is raised
    assert sorted(tracker.started) == sorted(tracker.finished)
    assert len(tracker.started) <= 5 + 1 + 3  # what was in flight when item 5 failed, no more


def test_width_one_is_sequential_and_empty_input_yields_nothing():
    tracker = Tracker()
    assert [item for item, _ in fan_out([3, 1, 2], tracker.work, width=1)] == [3, 1, 2]
    assert tracker.most == 1
    assert list(fan_out([], tracker.work, width=8)) == []
