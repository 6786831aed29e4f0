"""Waiting on several asyncio events at once."""

from __future__ import annotations

import asyncio
import contextlib


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
