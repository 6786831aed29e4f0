"""FollowUps: work after an ack waits while requests are being answered and until the door has
been quiet a moment, never past its latest start, and starts in order of latest start, one per
turn of the event loop. Tests of the turn-by-turn order use `quiet_s=0`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from bot.slack.followups import BUSY_RUNNING, FollowUps


def recorder(
    log: list[str], name: str, done: asyncio.Event | None = None
) -> Coroutine[Any, Any, None]:
    """A follow-up that writes its name in `log` (and sets `done`, for a test to wait on)."""

    async def follow_up() -> None:
        log.append(name)
        if done is not None:
            done.set()

    return follow_up()


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_starts_at_once_when_no_request_is_being_answered() -> None:
    followups = FollowUps()
    log: list[str] = []
    followups.spawn(recorder(log, "a"), what="a", within_s=60)
    await followups.finish(timeout_s=0)  # releases nothing new: it only waits
    await turns(10)
    assert log == ["a"]
    assert followups.pending() == 0
    await followups.aclose()


async def test_waits_while_a_request_is_answered_and_starts_when_it_is_done() -> None:
    followups = FollowUps(quiet_s=0)
    log: list[str] = []
    with followups.serving():
        followups.spawn(recorder(log, "a"), what="a", within_s=60)
        await turns(50)
        assert log == []
        assert followups.waiting() == 1
    await turns(10)
    assert log == ["a"]
    await followups.aclose()


async def test_waits_until_the_door_has_been_quiet_for_quiet_s() -> None:
    followups = FollowUps(quiet_s=0.5)
    log: list[str] = []
    started = asyncio.Event()
    with followups.serving():
        followups.spawn(recorder(log, "answer", started), what="answer", within_s=60)
    await turns(20)
    assert log == []  # answered just now: a burst's next request may be on its way
    with followups.serving():
        await turns(5)
    await turns(20)
    assert log == []  # another request: the quiet moment starts again
    await asyncio.wait_for(started.wait(), timeout=30)
    assert log == ["answer"]
    await followups.aclose()


async def test_starts_at_its_latest_start_even_while_requests_keep_coming() -> None:
    followups = FollowUps()
    log: list[str] = []
    done = asyncio.Event()
    with followups.serving():
        followups.spawn(recorder(log, "late", done), what="late", within_s=0.05)
        await asyncio.wait_for(done.wait(), timeout=30)
        assert log == ["late"]
    await followups.aclose()


async def test_earliest_latest_start_goes_first_and_one_per_turn() -> None:
    followups = FollowUps(quiet_s=0)
    log: list[str] = []
    with followups.serving():
        followups.spawn(recorder(log, "answer"), what="answer", within_s=60)
        followups.spawn(recorder(log, "modal"), what="modal", within_s=30)
        followups.spawn(recorder(log, "vote"), what="vote", within_s=45)
        await turns(20)
        assert log == []
    # The request is answered: the backlog starts, the earliest latest-start first, and not
    # all in the turn the door went quiet.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(log) < 3
    await turns(20)
    assert log == ["modal", "vote", "answer"]
    await followups.aclose()


async def test_a_request_arriving_mid_backlog_holds_the_rest_back() -> None:
    followups = FollowUps(quiet_s=0)
    log: list[str] = []
    with followups.serving():
        for i in range(50):
            followups.spawn(recorder(log, str(i)), what="x", within_s=60)
    await turns(4)
    started = len(log)
    assert 0 < started < 50
    with followups.serving():
        await turns(20)
        held = len(log)
        assert held < 50
        await turns(20)
        assert len(log) == held  # nothing more starts while the new request is answered
    await turns(200)
    assert log == [str(i) for i in range(50)]
    await followups.aclose()


async def test_finish_starts_whatever_waits_and_a_crash_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    followups = FollowUps()
    log: list[str] = []

    async def crash() -> None:
        raise RuntimeError("boom")

    with followups.serving():
        followups.spawn(crash(), what="crashing answer", within_s=60)
        followups.spawn(recorder(log, "b"), what="b", within_s=60)
        await followups.finish(timeout_s=10)
    assert log == ["b"]
    assert followups.pending() == 0
    assert "crashing answer crashed" in caplog.text
    await followups.aclose()


async def test_closing_drops_what_never_started_without_leaving_it_unawaited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    followups = FollowUps()
    log: list[str] = []
    with followups.serving():
        followups.spawn(recorder(log, "a"), what="late answer", within_s=60)
        await turns(2)
        await followups.aclose()
    await turns(5)
    assert log == []  # filterwarnings=error turns "never awaited" into a failure
    assert followups.pending() == 0
    assert "late answer dropped at shutdown" in caplog.text


async def test_overdue_work_trickles_while_requests_keep_coming() -> None:
    followups = FollowUps(quiet_s=0)
    running: list[int] = []
    gates = [asyncio.Event() for _ in range(5)]

    def blocking(i: int) -> Coroutine[Any, Any, None]:
        async def follow_up() -> None:
            running.append(i)
            await gates[i].wait()

        return follow_up()

    with followups.serving():
        for i in range(5):
            followups.spawn(blocking(i), what=str(i), within_s=0.001)
        await asyncio.sleep(0.01)
        await turns(20)
        assert running == list(range(BUSY_RUNNING))
        gates[0].set()
        await turns(20)
        assert running == list(range(BUSY_RUNNING + 1))
    await turns(20)
    assert running == list(range(5))  # quiet again: the rest starts
    for gate in gates:
        gate.set()
    await followups.finish(timeout_s=10)
    await followups.aclose()


async def test_operations_running_for_long_do_not_hold_back_what_is_due() -> None:
    """Two confirmed operations run for minutes inside follow-ups; an answer due meanwhile,
    while requests keep coming, still starts at its latest start."""
    followups = FollowUps()
    log: list[str] = []
    end = asyncio.Event()
    answered = asyncio.Event()

    def operation(name: str) -> Coroutine[Any, Any, None]:
        async def follow_up() -> None:
            followups.long_running()
            log.append(name)
            await end.wait()

        return follow_up()

    with followups.serving():
        for i in range(BUSY_RUNNING):  # as a confirmation starts one: due within a moment
            followups.spawn(operation(f"op{i}"), what="start", within_s=0.001)
        await asyncio.sleep(0.01)
        await turns(20)
        assert sorted(log) == [f"op{i}" for i in range(BUSY_RUNNING)]
        followups.spawn(recorder(log, "answer", answered), what="answer", within_s=0.01)
        await asyncio.wait_for(answered.wait(), timeout=30)
        assert log[-1] == "answer"
    end.set()
    await followups.finish(timeout_s=10)
    await followups.aclose()


async def test_a_modal_starts_at_once_even_while_requests_keep_coming_and_slots_are_taken() -> None:
    """within_s=0 (a views.open: its trigger_id expires 3 s after the user typed) does not wait
    for a quiet door or a free slot, nor behind answers already overdue."""
    followups = FollowUps()
    log: list[str] = []
    end = asyncio.Event()

    def blocking(name: str) -> Coroutine[Any, Any, None]:
        async def follow_up() -> None:
            log.append(name)
            await end.wait()

        return follow_up()

    with followups.serving():
        for i in range(BUSY_RUNNING):
            followups.spawn(blocking(f"busy{i}"), what="busy", within_s=0.001)
        followups.spawn(recorder(log, "overdue answer"), what="answer", within_s=0.001)
        await asyncio.sleep(0.01)
        await turns(20)
        assert sorted(log) == [f"busy{i}" for i in range(BUSY_RUNNING)]  # the slots are taken
        followups.spawn(recorder(log, "modal"), what="modal", within_s=0)
        await turns(5)
        assert log[-1] == "modal"
        assert "overdue answer" not in log
    end.set()
    await followups.finish(timeout_s=10)
    assert "overdue answer" in log
    await followups.aclose()
