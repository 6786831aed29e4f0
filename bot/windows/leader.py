"""The windows scheduler inside `chatops serve`: one replica leads, the others stand by.

Leadership is a Redis lock (`chatops:<prefix>:scheduler:leader`, in the coordination Redis of
the first environment by name, or `CHATOPS_REDIS_URL`) with a TTL of three ticks, renewed while
held; a replica that dies loses it when the TTL runs out, and a standby takes it at its next
try. The leader runs `run_due` every tick (windows scheduled by other processes, the flag set
again) and at the next notice's due time, to the second: APScheduler 3 only wakes it then (its
own clock cannot be injected, so the store and `run_due` decide what is due). Claims in the
store keep a notice from going out twice even while two replicas both think they lead. The
leader also starts the operations planned for an open window (`start_planned`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import redis
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.aio import first_of
from bot.engine.runner import owner_id
from bot.errors import BotError, LockHeld
from bot.locks import Lock
from bot.runtime import Runtime
from bot.windows.planned import StartPlanned
from bot.windows.scheduler import run_due

logger = logging.getLogger(__name__)

LEADER_KEY = "chatops:{prefix}:scheduler:leader"
_NEXT_JOB = "windows-next-due"


class WindowScheduler:
    def __init__(self, rt: Runtime, *, start_planned: StartPlanned | None = None) -> None:
        self._rt = rt
        self._start_planned = start_planned
        self._tick_s = rt.settings.CHATOPS_SCHEDULER_TICK_S
        self._woken = asyncio.Event()
        self._next_due: datetime | None = None
        self.leading = False

    def wake(self) -> None:
        """Look now: what APScheduler calls at the next notice's due time."""
        self._woken.set()

    async def run(self, stop: asyncio.Event) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.start()
        try:
            while not stop.is_set():
                try:
                    await self._one_term(scheduler, stop)
                except Exception:  # a bug must not end announcements for the process's life
                    logger.exception("windows scheduler: crashed; trying again in a tick")
                    await first_of(stop, timeout_s=self._tick_s)
        finally:
            scheduler.shutdown(wait=False)

    async def _one_term(self, scheduler: AsyncIOScheduler, stop: asyncio.Event) -> None:
        """Lead until stopped or the lock is lost; or, when another replica leads, wait a tick."""
        lock = await self._try_to_lead()
        if lock is None:
            await first_of(stop, timeout_s=self._tick_s)
            return
        try:
            await self._lead(lock, scheduler, stop)
        finally:
            self.leading = False
            await lock.release()

    async def _try_to_lead(self) -> Lock | None:
        env = sorted(self._rt.config.environments)[0]
        lock = Lock(
            self._rt.coordination(env),
            [LEADER_KEY.format(prefix=self._rt.config.env(env).prefix)],
            holder=owner_id(),
            operation_id="windows scheduler",
            ttl_ms=int(self._tick_s * 3000),
        )
        try:
            await lock.acquire()
        except LockHeld:
            return None
        except (BotError, OSError, redis.RedisError) as exc:
            logger.warning("windows scheduler: cannot reach Redis to lead: %s", exc)
            return None
        logger.info("windows scheduler: leading")
        self.leading = True
        return lock

    async def _lead(self, lock: Lock, scheduler: AsyncIOScheduler, stop: asyncio.Event) -> None:
        while not stop.is_set() and not lock.lost.is_set():
            self._woken.clear()
            try:
                await run_due(
                    self._rt,
                    now=self._rt.clock.now(),
                    claimer=owner_id(),
                    start_planned=self._start_planned,
                )
                due = await self._rt.store.next_notice_due()
            except (BotError, OSError, redis.RedisError) as exc:
                logger.warning("windows scheduler: %s", exc)
                due = None
            if due is not None and due != self._next_due:
                self._next_due = due
                scheduler.add_job(
                    self.wake,
                    "date",
                    run_date=due,
                    id=_NEXT_JOB,
                    replace_existing=True,
                    misfire_grace_time=None,
                )
            await first_of(stop, lock.lost, self._woken, timeout_s=self._tick_s)
        if lock.lost.is_set():
            logger.warning("windows scheduler: leadership lost (%s)", lock.lost_reason)
