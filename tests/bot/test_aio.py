"""Cancelling tasks so that they end, on a Python whose `asyncio.wait_for` can lose a cancel."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from bot.aio import cancel_and_wait


async def _commands(sent: list[asyncio.Future[None]]) -> None:
    """Sends command after command, as redis-py does: each through `asyncio.wait_for`."""
    loop = asyncio.get_running_loop()
    while True:
        sent.append(loop.create_future())
        await asyncio.wait_for(sent[-1], 60)


async def _sending(sent: list[asyncio.Future[None]]) -> asyncio.Task[None]:
    task = asyncio.create_task(_commands(sent))
    while not sent:
        await asyncio.sleep(0)
    await asyncio.sleep(0)  # inside wait_for, on the first command
    return task


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="fixed in 3.12")
async def test_a_cancel_landing_as_a_command_completes_is_lost_on_3_11() -> None:
    sent: list[asyncio.Future[None]] = []
    task = await _sending(sent)
    sent[-1].set_result(None)  # the command completes...
    task.cancel()  # ...in the turn the cancel lands in
    while len(sent) < 2:
        await asyncio.sleep(0)
    assert not task.done()  # it went on to the next command
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancel_and_wait_ends_a_task_whose_cancel_was_lost() -> None:
    sent: list[asyncio.Future[None]] = []
    task = await _sending(sent)
    sent[-1].set_result(None)
    started = time.monotonic()
    await cancel_and_wait(task, recancel_after_s=0.2)
    assert task.cancelled()
    assert time.monotonic() - started < 30  # not the 60 s of the next command's wait


async def test_cancel_and_wait_leaves_a_task_its_time_to_clean_up() -> None:
    cleaned = asyncio.Event()

    async def cleans_up() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.1)  # shorter than the grace: not interrupted
            cleaned.set()

    task = asyncio.create_task(cleans_up())
    await asyncio.sleep(0)
    await cancel_and_wait(task, recancel_after_s=1.0)
    assert cleaned.is_set() and task.cancelled()


async def test_what_a_cancelled_task_raised_is_not_raised_again() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), RuntimeError)
