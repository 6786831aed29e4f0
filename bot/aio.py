"""Waiting on several asyncio events at once, and cancelling tasks so that they end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

logger = logging.getLogger(__name__)

# How long a cancelled task has to end before it is cancelled again (see `cancel_and_wait`).
RECANCEL_AFTER_S = 2.0


async def first_of(*events: asyncio.Event, timeout_s: float) -> None:
    """Return when any of `events` is set, or after `timeout_s`; leaves no task behind."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waits, return_exceptions=True)


async def cancel_and_wait(
    *tasks: asyncio.Future[Any], recancel_after_s: float = RECANCEL_AFTER_S
) -> None:
    """Cancel `tasks` and return once every one has ended; what they raised is not re-raised.

    On Python 3.11 one cancel can be lost: `asyncio.wait_for`, which redis-py uses to send each
    command on a connection with a socket timeout, returns the result instead of raising
    CancelledError when the command completes in the turn the cancel lands in (fixed in 3.12).
    The task then runs on, and whoever awaits it waits as long as it runs: a drain watched its
    queue on after Ctrl-C. So a task still running `recancel_after_s` after its cancel is
    cancelled again; cleanup that may take longer belongs under `asyncio.shield`.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=recancel_after_s)
        if pending:
            logger.warning(
                "%d task(s) still running after a cancel: cancelling again", len(pending)
            )
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: the caller asked for the task to end, not for its result
