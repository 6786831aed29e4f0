"""RecentRequests: a key is new once within the window; old and surplus keys are forgotten."""

from __future__ import annotations

from bot.slack.replays import RecentRequests


def test_a_key_is_new_once_then_again_after_the_window() -> None:
    now = [0.0]
    recent = RecentRequests(remember_s=600, clock=lambda: now[0])
    assert recent.first_time("slash:T1")
    now[0] = 599.0
    assert not recent.first_time("slash:T1")
    now[0] = 1200.0
    assert recent.first_time("slash:T1")


def test_memory_is_capped_oldest_first() -> None:
    recent = RecentRequests(max_remembered=3, clock=lambda: 0.0)
    for key in ("a", "b", "c", "d"):
        assert recent.first_time(key)
    assert recent.first_time("a")  # forgotten to make room
    assert not recent.first_time("d")
