"""Work that follows an ack (answers, modals, audit rows), started when the door is quiet.

Slack's 3-second ack is the one deadline the bot cannot miss, and on one event loop every
follow-up competes with the acks still to come. So a follow-up waits while requests are being
answered, and starts once the door has been quiet (no request answered for `quiet_s`, a few
milliseconds: the gaps inside a burst of commands are shorter), or at its latest start,
whichever comes first. Latest starts come from what the follow-up answers to: a modal's
trigger_id lasts 3 s, a response_url 30 min.
Follow-ups start one per turn of the event loop, so a quiet moment never releases a backlog
in one block that the next request would have to wait behind, and while requests keep coming
only a few run at a time. Under a sustained overload acks stay fast and answers come late.
Modals are the exception: they all start at the next turn whatever else waits or runs, since a
trigger_id that expires behind a backlog of answers is a command lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from bot.aio import cancel_and_wait

logger = logging.getLogger(__name__)

MODAL_START_S = 0.0  # views.open: its trigger_id expires 3 s after the user typed: at once
REPLY_START_S = 1.0  # a vote, a confirmation, a cancel: the operator is waiting on it
ANSWER_START_S = 2.0  # an answer through response_url, an audit row
# While requests keep coming, follow-ups past their latest start run this many at a time: a
# backlog trickles out behind the acks instead of landing on them all at once.
BUSY_RUNNING = 2
# How long no request must have been answered before the door counts as quiet: longer than the
# gaps inside a burst, shorter than those between commands even at 50 a second.
QUIET_S = 0.005


@dataclass(order=True)
class _Waiting:
    start_by: float
    seq: int
    coro: Coroutine[Any, Any, None] = field(compare=False)
    what: str = field(compare=False)


class FollowUps:
    def __init__(self, *, quiet_s: float = QUIET_S) -> None:
        self._quiet_s = quiet_s
        self._in_flight = 0
        self._last_answered = float("-inf")  # loop time the latest request was answered
        self._heap: list[_Waiting] = []
        # within_s=0: all started at the next turn, past BUSY_RUNNING (a trigger_id expires)
        self._at_once: collections.deque[_Waiting] = collections.deque()
        self._seq = itertools.count()
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # started and counted against BUSY_RUNNING

    def pending(self) -> int:
        """Follow-ups not yet finished (waiting to start or running)."""
        return self.waiting() + len(self._tasks)

    def waiting(self) -> int:
        """Follow-ups not yet started."""
        return len(self._heap) + len(self._at_once)

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Mark one incoming request as being answered, for as long as the block runs."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._last_answered = asyncio.get_running_loop().time()
            if not self._in_flight and self._heap and self._wake is not None:
                self._wake.set()

    def spawn(self, coro: Coroutine[Any, Any, None], *, what: str, within_s: float) -> None:
        """Run `coro` once the door is quiet, or `within_s` from now at the latest; with
        `within_s=0`, at the next turn of the event loop whatever else is running: a modal
        that waited behind a backlog of answers would find its trigger_id expired."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(loop.time() + within_s, next(self._seq), coro, what)
        if within_s <= 0:
            self._at_once.append(waiting)
        else:
            heapq.heappush(self._heap, waiting)
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())
        elif within_s <= 0 or self._heap[0] is waiting or not self._in_flight:
            self._wake.set()  # to start at once, a new earliest start, or nothing holds it back

    def long_running(self) -> None:
        """Called by a follow-up that goes on to run for minutes (an operation): it stops
        counting against BUSY_RUNNING, or two of them would hold back every answer due while
        requests keep coming, until they end."""
        task = asyncio.current_task()
        if task in self._busy:
            self._busy.discard(task)
            if self._heap and self._wake is not None:
                self._wake.set()

    async def finish(self, timeout_s: float) -> None:
        """Start everything still waiting, then wait (bounded) for all of it to finish."""
        while self._at_once:
            self._start(self._at_once.popleft(), busy=False)
        while self._heap:
            self._start(heapq.heappop(self._heap))
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def aclose(self) -> None:
        """Stop dispatching; what never started is dropped (call `finish` first to run it)."""
        if self._dispatcher is not None:
            await cancel_and_wait(self._dispatcher)
            self._dispatcher = None
        for waiting in [*self._at_once, *self._heap]:
            waiting.coro.close()
            logger.warning("slack: %s dropped at shutdown", waiting.what)
        self._at_once.clear()
        self._heap.clear()

    def _start(self, waiting: _Waiting, *, busy: bool = True) -> None:
        async def follow_up() -> None:
            try:
                await waiting.coro
            except Exception:
                logger.exception("slack: %s crashed", waiting.what)

        task = asyncio.create_task(follow_up())
        self._tasks.add(task)
        if busy:
            self._busy.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._busy.discard(task)
        if self._heap and self._wake is not None:
            self._wake.set()

    async def _dispatch(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            timeout: float | None = None
            # All at once: under a burst a turn of the loop can take milliseconds, and one modal
            # a turn would fall ever further behind the commands asking for them.
            while self._at_once:
                self._start(self._at_once.popleft(), busy=False)
            if self._heap:
                now = loop.time()
                left = self._heap[0].start_by - now
                due = left <= 0 and len(self._busy) < BUSY_RUNNING
                quiet_in = None if self._in_flight else self._last_answered + self._quiet_s - now
                if due or (quiet_in is not None and quiet_in <= 0):
                    self._start(heapq.heappop(self._heap))
                    await asyncio.sleep(0)  # one per turn: the selector is polled in between
                    continue
                # Wake at the latest start, or once quiet; else when a follow-up finishes.
                timeout = min(
                    (t for t in (left if left > 0 else None, quiet_in) if t is not None),
                    default=None,
                )
            # Not wait_for: on 3.11 it swallows a cancel that lands as the event is set.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
