"""Operations whose process died become interrupted; what they changed is put back.

Every `chatops` command does it at start; `chatops serve` also does it every few heartbeats, so
a surviving replica takes over what a dead one left (each operation is claimed by exactly one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis

from bot.engine.restore import put_back, running_in
from bot.engine.runner import owner_id, process_of
from bot.errors import BotError
from bot.locks import force_release, lock_info
from bot.runtime import Runtime
from bot.store.records import OperationRecord

logger = logging.getLogger(__name__)

_MISSED_BEATS = 5


Recovered = Callable[[OperationRecord, str], Awaitable[None]]


async def recover_interrupted(
    runtime: Runtime, *, on_recovered: Recovered | None = None
) -> list[str]:
    """Claim lapsed operations, restore queues and flags, free their locks; one line each
    (also handed to `on_recovered` with the operation, to tell its Slack thread)."""
    store, clock = runtime.store, runtime.clock
    claimed = await store.claim_lapsed(
        now=clock.now(), lapse_s=runtime.heartbeat_s * _MISSED_BEATS, claimer=owner_id()
    )
    reports = []
    for op in claimed:
        # Its process is gone (or cut off): what its outbox sender held goes out now.
        await store.end_slack_leases(process_of(op.owner), now=clock.now())
        done: list[str] = []
        left: list[str] = []
        env = runtime.config.environments.get(op.env)
        for item in await store.pending_restores(op.id):
            if env is None:
                left.append(f"{item.kind} {item.key} (environment {op.env} no longer configured)")
                continue
            try:
                async with asyncio.timeout(30):
                    done.append(
                        await put_back(
                            item.kind,
                            item.key,
                            env=env,
                            redis=runtime.redis_for(op.env),
                            operation_id=op.id,
                            running=running_in(store),
                        )
                    )
                await store.mark_restored(item.id, now=clock.now())
            except (BotError, TimeoutError, OSError, redis.RedisError) as exc:
                left.append(f"{item.kind} {item.key} ({type(exc).__name__})")
        if env is not None:
            for key in op.params.get("locks", []):
                info = await lock_info(runtime.coordination(op.env), key)
                if info is not None and info.operation_id == op.id:
                    await force_release(runtime.coordination(op.env), key)
        line = f"operation {op.id} ({op.kind} {op.target} in {op.env}) {op.summary}"
        if done:
            line += "; put back: " + ", ".join(done)
        if left:
            line += "; STILL TO DO BY HAND: " + ", ".join(left)
        await store.audit(
            actor=owner_id(),
            source="recovery",
            kind="recovery",
            command=f"recover {op.id}",
            outcome="restored" if not left else "incomplete",
            env=op.env,
            operation_id=op.id,
            details={"restored": done, "left": left},
            now=clock.now(),
        )
        logger.warning("%s", line)
        reports.append(line)
        if on_recovered is not None:
            await on_recovered(op, line)
    return reports
