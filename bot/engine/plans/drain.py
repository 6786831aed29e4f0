"""Drain: producers off, let the workers empty the queue, producers back on. Deletes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import timedelta

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.config import EnvironmentConfig
from bot.engine.context import StepContext
from bot.engine.plan import Plan, Step
from bot.engine.restore import FLAG_OFF, flag_released, running_in
from bot.errors import OperationFailed, Refused, redis_unreachable
from bot.flags import get_flag, hold_off, holders_key, release
from bot.queues import (
    EventTail,
    QueueCounts,
    QueueEvent,
    QueueState,
    completions,
    connected_workers_of,
    delayed_due_counts,
    job_id_counters,
    read_states,
    scheduler_count,
)
from bot.queues.health import require_fit_redis

Tails = dict[str, EventTail]
_COUNT_FIELDS = tuple(f.name for f in fields(QueueCounts))


@dataclass(frozen=True)
class DrainParams:
    queues: tuple[str, ...]  # one queue, or every queue of the environment (`drain all`)
    timeout_s: float
    stall_s: float
    poll_interval_s: float
    producer_grace_s: float = 0.0
    every: bool = False  # asked for as `all`

    @property
    def target(self) -> str:
        return "all" if self.every else self.queues[0]

    @property
    def named(self) -> str:
        """How steps and messages name what is drained."""
        if not self.every:
            return self.queues[0]
        return f"all {len(self.queues)} queues ({_listed(self.queues)})"


def _listed(names: Sequence[str], most: int = 5) -> str:
    more = f", and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def drain_plan(env_name: str, env: EnvironmentConfig, params: DrainParams) -> Plan:
    flag = env.flag_key
    what = f"queue {params.named}" if not params.every else params.named
    steps = (
        Step(f"check {what} under prefix {env.prefix}", lambda ctx: _check(ctx, params), 15),
        Step(f"turn producers off ({flag} = false)", lambda ctx: _flag_off(ctx, params), 15),
        Step(
            f"wait until {params.named} has nothing waiting, active or due "
            f"(up to {params.timeout_s:g} s)",
            lambda ctx: _watch(ctx, params),
            params.timeout_s + 30,
        ),
        Step(f"turn producers back on ({flag} = true)", _flag_on, 15),
    )
    return Plan(
        kind="drain",
        env=env_name,
        target=params.target,
        steps=steps,
        locks=tuple(f"queue:{q}" for q in params.queues),
        details=(
            "producers are asked to stop through the WORKER_ACCEPT_JOBS flag; "
            "no job is deleted, workers finish what is queued",
        ),
        params={
            "queue": params.target,
            "queues": list(params.queues),
            "timeout_s": params.timeout_s,
        },
    )


async def _check_producers(ctx: StepContext, params: DrainParams, tails: Tails) -> None:
    """Fail when jobs were added while producers should hold them.

    BullMQ increments `<prefix>:<queue>:id` on every add, so one GET a poll notices any add,
    however busy the queue (its events stream is trimmed near 10k entries: reading it every poll
    would both cost CPU and lose entries). Only when the counter moved are the events read, to
    tell a job scheduler's next iteration (ids `repeat:...`) from a producer ignoring the flag.
    """
    if "flag_off_at" not in ctx.results:
        return  # the flag was already off: we do not know since when
    ids_before: dict[str, int] = ctx.results["ids_before"]
    counters = await job_id_counters(ctx.redis, prefix=ctx.env.prefix, queues=params.queues)
    for q, counter in zip(params.queues, counters, strict=True):
        moved = counter - ids_before[q]
        if not moved:
            continue
        added = [e.job_id for e in await _read_all(tails.get(q)) if e.event == "added" and e.job_id]
        ids_before[q] = counter  # after the read: a failed read is read again next poll
        if ctx.clock.monotonic() - ctx.results["flag_off_at"] < params.producer_grace_s:
            continue  # still within the producers' cache time
        scheduled = sum(1 for job_id in added if job_id.startswith("repeat:"))
        rogue = [job_id for job_id in added if not job_id.startswith("repeat:")]
        unexplained = max(len(rogue), moved - scheduled)
        if unexplained > 0:
            first = f" (first: {', '.join(rogue[:5])})" if rogue else ""
            raise OperationFailed(
                f"a producer ignores the flag: {unexplained} job(s) added to {q} while "
                f"{ctx.env.flag_key} was false{first}"
            )


async def _read_all(tail: EventTail | None, *, max_reads: int = 20) -> list[QueueEvent]:
    events: list[QueueEvent] = []
    if tail is None:
        return events
    for _ in range(max_reads):
        batch = await tail.read(block_ms=0)
        events += batch
        if len(batch) < tail.count:
            break
    return events


def _remaining(state: QueueState, due: int) -> int:
    c = state.counts
    return c.waiting + c.prioritized + c.active + due


def _describe(state: QueueState, due: int) -> str:
    c = state.counts
    return (
        f"waiting {c.waiting} · prioritized {c.prioritized} · active {c.active} · "
        f"delayed due {due} (of {c.delayed}) · completed {c.completed}"
    )


def _total(states: Sequence[QueueState]) -> QueueState:
    """Every queue's counts added up, as one state (named `all`)."""
    sums = {field: sum(getattr(s.counts, field) for s in states) for field in _COUNT_FIELDS}
    return QueueState("all", any(s.paused for s in states), "", QueueCounts(**sums))


def _describe_all(states: Sequence[QueueState], dues: Sequence[int]) -> str:
    """One line for one queue; for several, their sum and the queues not yet empty."""
    if len(states) == 1:
        return _describe(states[0], dues[0])
    left = [(s.name, _remaining(s, due)) for s, due in zip(states, dues, strict=True)]
    busy = [f"{name} ({n})" for name, n in left if n]
    line = f"{len(states)} queues: {_describe(_total(states), sum(dues))}"
    return line + (f"; not yet empty: {_listed(busy)}" if busy else "")


async def _check(ctx: StepContext, params: DrainParams) -> str:
    await require_fit_redis(ctx.redis, prefix=ctx.env.prefix, doing=f"a drain of {params.named}")
    states = await read_states(ctx.redis, prefix=ctx.env.prefix, queues=list(params.queues))
    paused = [s.name for s in states if s.paused]
    if paused:
        raise Refused(
            f"queue {_listed(paused)} {'is' if len(paused) == 1 else 'are'} paused, so "
            f"{'it' if len(paused) == 1 else 'they'} would never drain; resume "
            f"{'it' if len(paused) == 1 else 'them'} first "
            f"(chatops queue resume {paused[0]} --env {ctx.env_name})"
        )
    workers = await connected_workers_of(
        ctx.redis, prefix=ctx.env.prefix, queues=list(params.queues)
    )
    known = all(w.known for w in workers.values())
    unserved = [q for q, w in workers.items() if w.known and w.count == 0]
    for q in unserved:
        await ctx.emit(f"warning: no worker is connected to {q}; the drain will stall")
    ctx.results["start_counts"] = _total(states).counts
    if not known:
        who = "workers unknown (CLIENT LIST denied)"
    elif len(states) == 1:
        who = f"{workers[states[0].name].count} worker(s)"
    else:
        who = f"{len(states) - len(unserved)} of {len(states)} queues have a worker"
    return f"{_describe_all(states, [0] * len(states))}; {who}"


async def _flag_off(ctx: StepContext, params: DrainParams) -> str:
    key = ctx.env.flag_key
    holders = holders_key(ctx.env.prefix, key)
    before = await get_flag(ctx.redis, key)
    if before is False and not await ctx.redis.scard(holders):
        # Someone else's "off", seen before any restore is recorded: a crash from here on must
        # not turn it back on.
        ctx.results["flag_was_off"] = True
        return f"{key} was already false (not set by a drain): left as it is"
    ctx.results["flag_restore"] = restore_id = await ctx.record_restore(FLAG_OFF, key)
    tails: Tails = {}
    for q in params.queues:
        tails[q] = tail = await EventTail.open(ctx.redis, prefix=ctx.env.prefix, queue=q)
        ctx.resources.push_async_callback(tail.close)
    counters = await job_id_counters(ctx.redis, prefix=ctx.env.prefix, queues=params.queues)
    ids_before = dict(zip(params.queues, counters, strict=True))
    ctx.results["tails"] = tails
    ctx.results["ids_before"] = ids_before
    held = await hold_off(ctx.redis, key, holders, ctx.op_id)
    if held == "manual":  # turned off by someone else in between: not ours to turn back on
        await ctx.restored(restore_id)
        ctx.results["flag_was_off"] = True
        del ctx.results["flag_restore"]
        return f"{key} was already false (not set by a drain): left as it is"
    ctx.results["flag_off_at"] = ctx.clock.monotonic()
    if held == "joined":
        return f"{key} was already false, held by another drain: this one holds it too"
    return f"{key} = false"


async def _flag_on(ctx: StepContext) -> str:
    key = ctx.env.flag_key
    if ctx.results.get("flag_was_off"):
        return f"{key} left false, as it was before the drain"
    others = await release(
        ctx.redis,
        key,
        holders_key(ctx.env.prefix, key),
        ctx.op_id,
        running=running_in(ctx.store),
    )
    restore_id = ctx.results.get("flag_restore")
    if isinstance(restore_id, int):
        await ctx.restored(restore_id)
    return flag_released(key, others)


async def _watch(ctx: StepContext, params: DrainParams) -> str:
    prefix, queues = ctx.env.prefix, list(params.queues)
    start = ctx.clock.monotonic()
    deadline_at = ctx.clock.now() + timedelta(seconds=params.timeout_s)
    tails: Tails = ctx.results.get("tails", {})
    last_progress = start
    last_seen: tuple[int, int] | None = None
    last_line = ""
    unreachable_since: float | None = None
    while True:
        try:
            states = await read_states(ctx.redis, prefix=prefix, queues=queues)
            dues = await delayed_due_counts(
                ctx.redis, prefix=prefix, queues=queues, before=deadline_at
            )
            completed = await completions(ctx.redis, prefix=prefix, states=states)
            if unreachable_since is not None:
                back_at = ctx.clock.monotonic()
                await ctx.emit(f"Redis reachable again after {back_at - unreachable_since:.1f} s")
                unreachable_since = None
                last_progress = back_at  # workers reconnect too: a stall counts from here
            remaining = sum(_remaining(st, due) for st, due in zip(states, dues, strict=True))
            line = _describe_all(states, dues)
            if line != last_line:
                await ctx.emit(line)
                last_line = line
            counts = _total(states).counts
            ctx.validation["counts"] = counts.as_dict()
            await _check_producers(ctx, params, tails)
            if remaining == 0:
                break
            overdue = sum(
                await delayed_due_counts(
                    ctx.redis, prefix=prefix, queues=queues, before=ctx.clock.now()
                )
            )
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Redis restarting or failing over. Every call above only reads, so poll again until
            # it is back, for as long as a stall would be tolerated (no worker runs without it).
            now = ctx.clock.monotonic()
            if unreachable_since is None:
                unreachable_since = now
                await ctx.emit(f"Redis unreachable ({type(exc).__name__}); retrying")
            if now - unreachable_since >= params.stall_s or now - start >= params.timeout_s:
                raise OperationFailed(
                    f"{redis_unreachable(exc)}: gave up after {now - unreachable_since:.0f} s; "
                    f"last seen: {last_line or 'nothing yet'}"
                ) from exc
            await ctx.clock.sleep(params.poll_interval_s)
            continue
        seen = (remaining, completed)
        now = ctx.clock.monotonic()
        # Only delayed jobs not yet due are left: that is waiting for the clock, not a stall.
        idle_by_design = counts.waiting + counts.prioritized + counts.active + overdue == 0
        if (
            last_seen is None
            or idle_by_design
            or remaining < last_seen[0]
            or completed != last_seen[1]
        ):
            last_progress = now
        last_seen = seen
        if now - last_progress >= params.stall_s:
            raise OperationFailed(
                f"stalled: no progress for {params.stall_s:g} s ({line}); "
                "is a worker running and not paused?"
            )
        if now - start >= params.timeout_s:
            raise OperationFailed(f"timed out after {params.timeout_s:g} s ({line})")
        await ctx.clock.sleep(params.poll_interval_s)
    later = sum(st.counts.delayed - due for st, due in zip(states, dues, strict=True))
    schedulers = 0
    for q in queues:
        schedulers += await scheduler_count(ctx.redis, prefix=prefix, queue=q)
    notes = []
    if later:
        notes.append(f"{later} delayed job(s) due after the deadline, left in place")
    if schedulers:
        notes.append(f"{schedulers} job scheduler(s) will keep adding repeat jobs")
    ctx.validation["delayed_later"] = later
    ctx.validation["schedulers"] = schedulers
    elapsed = ctx.clock.monotonic() - start
    done = f"{params.named} drained in {elapsed:.1f} s"
    ctx.results["summary"] = "; ".join([done, *notes])
    return "; ".join([done, *notes])
