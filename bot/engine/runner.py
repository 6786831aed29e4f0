"""Run a plan: lock its targets, persist it, run its steps, put back what it changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import redis.asyncio as redis

from bot.aio import cancel_and_wait
from bot.clock import Clock
from bot.config import EnvironmentConfig
from bot.engine.context import StepContext
from bot.engine.events import (
    Event,
    EventSink,
    OperationFinished,
    OperationStarted,
    StepFinished,
    StepOutput,
    StepStarted,
)
from bot.engine.plan import Plan, StepAction
from bot.engine.restore import put_back_patiently, running_in
from bot.errors import BotError, OutcomeNotRecorded, StoreUnavailable, redis_unreachable
from bot.locks import hold_locks
from bot.logs import operation_logged
from bot.metrics import OPERATIONS, STEP_SECONDS
from bot.redact import redact
from bot.store import Store

logger = logging.getLogger(__name__)

_CLEANUP_TIMEOUT_S = 30.0
_STORE_RETRY_S = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class Actor:
    name: str  # "alice@host" on the CLI, a Slack user id from Slack
    source: str  # cli, slack, scheduler


@dataclass(frozen=True)
class Outcome:
    op_id: str
    state: str  # succeeded, failed, cancelled
    summary: str
    validation: dict[str, object]

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"


def new_operation_id() -> str:
    return f"op-{uuid.uuid4().hex[:10]}"


_PROCESS: dict[int, str] = {}


def process_id() -> str:
    """This process, as every owner and claimer id it hands out begins."""
    pid = os.getpid()
    if pid not in _PROCESS:
        _PROCESS[pid] = f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}"
    return _PROCESS[pid]


def owner_id() -> str:
    """A new id for one owner (an operation's run, an outbox sender) within this process."""
    return f"{process_id()}:{uuid.uuid4().hex[:8]}"


def process_of(owner: str) -> str:
    """The process part of an id from `owner_id`."""
    return owner.rsplit(":", 1)[0]


def lock_key(env_name: str, env: EnvironmentConfig, resource: str) -> str:
    return f"chatops:{env.prefix}:lock:{env_name}:{resource}"


class _Cancelled(Exception):
    pass


class _StoreGone(Exception):
    """The store stayed unavailable for longer than the engine's patience."""

    def __init__(self, cause: StoreUnavailable, *, what: str) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.what = what


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        coordination: Callable[[str], redis.Redis],
        heartbeat_s: float = 2.0,
        store_patience_s: float = 60.0,
        lock_ttl_ms: int = 30_000,
        secrets: tuple[str, ...] = (),
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._stopping = stopping or asyncio.Event()
        self._store = store
        self._clock = clock
        self._coordination = coordination
        self._heartbeat_s = heartbeat_s
        self._store_patience_s = store_patience_s
        self._lock_ttl_ms = lock_ttl_ms
        self._secrets = secrets

    async def run(
        self,
        plan: Plan,
        *,
        env: EnvironmentConfig,
        env_redis: redis.Redis,
        actor: Actor,
        command: str,
        reason: str | None,
        sink: EventSink,
        break_glass: bool = False,
    ) -> Outcome:
        op_id = new_operation_id()
        sink = _Tolerant(sink, self._clock)
        with operation_logged(op_id):
            keys = [lock_key(plan.env, env, r) for r in plan.locks]
            owner = owner_id()
            async with hold_locks(
                self._coordination(plan.env),
                keys,
                holder=f"{actor.name} ({actor.source})",
                operation_id=op_id,
                ttl_ms=self._lock_ttl_ms,
            ) as lock:
                await self._store.create_operation(
                    op_id=op_id,
                    kind=plan.kind,
                    env=plan.env,
                    target=plan.target,
                    actor=actor.name,
                    source=actor.source,
                    command=redact(command, secrets=self._secrets),
                    reason=reason,
                    params={**plan.params, "locks": keys},
                    plan=[s.name for s in plan.steps],
                    owner=owner,
                    now=self._clock.now(),
                )
                # Written before the first side effect, so even a killed process leaves its trace.
                await self._store.audit(
                    actor=actor.name,
                    source=actor.source,
                    kind="break_glass" if break_glass else "operation",
                    command=redact(command, secrets=self._secrets),
                    outcome="started",
                    env=plan.env,
                    reason=reason,
                    operation_id=op_id,
                    now=self._clock.now(),
                )
                ctx = StepContext(
                    op_id=op_id,
                    env_name=plan.env,
                    env=env,
                    redis=env_redis,
                    store=self._store,
                    clock=self._clock,
                    actor=actor.name,
                    sink=sink,
                    secrets=self._secrets,
                    kind=plan.kind,
                )
                logger.info(
                    "operation %s %s %s in %s started", op_id, plan.kind, plan.target, plan.env
                )
                await sink(
                    OperationStarted(
                        op_id, plan.kind, plan.env, plan.target, tuple(s.name for s in plan.steps)
                    )
                )
                started = time.monotonic()

                async def record(state: str, summary: str, *, patience_s: float) -> None:
                    duration_ms = int((time.monotonic() - started) * 1000)
                    logger.info("operation %s finished %s in %d ms", op_id, state, duration_ms)
                    await self._patiently(
                        ctx,
                        "its outcome",
                        patience_s,
                        lambda: self._store.audit(
                            actor=actor.name,
                            source=actor.source,
                            kind="operation",
                            command=redact(command, secrets=self._secrets),
                            outcome=state,
                            env=plan.env,
                            reason=reason,
                            duration_ms=duration_ms,
                            operation_id=op_id,
                            details={"summary": summary},
                            now=self._clock.now(),
                        ),
                    )

                try:
                    outcome = await self._run_steps(plan, ctx, owner, lock.lost)
                except asyncio.CancelledError:
                    # Stopped from outside (Ctrl-C, SIGTERM): the audit row is still written.
                    with contextlib.suppress(_StoreGone):
                        await asyncio.shield(
                            record("cancelled", "cancelled: the bot was stopped", patience_s=0)
                        )
                    raise
                except _StoreGone as exc:
                    raise await self._not_recorded(plan, ctx, exc) from None
                try:
                    await record(outcome.state, outcome.summary, patience_s=self._store_patience_s)
                except _StoreGone as exc:  # the operation's own row holds the outcome
                    logger.error("operation %s: audit of its outcome not recorded: %s", op_id, exc)
                OPERATIONS.labels(plan.kind, plan.env, outcome.state).inc()
                await sink(
                    OperationFinished(op_id, outcome.state, outcome.summary, outcome.validation)
                )
                return outcome

    async def _run_steps(
        self, plan: Plan, ctx: StepContext, owner: str, lock_lost: asyncio.Event
    ) -> Outcome:
        total = len(plan.steps)
        state, summary = "succeeded", ""
        cancel = asyncio.Event()
        why: list[str] = []  # set with `cancel` when the bot itself stops the operation
        watcher = asyncio.create_task(self._heartbeat(ctx.op_id, owner, cancel, why, lock_lost))
        failed_at: int | None = None
        try:
            for index, step in enumerate(plan.steps):
                if cancel.is_set():
                    state, failed_at = "cancelled", index
                    summary = _stopped("before", index, total, step.name, why)
                    break
                ctx.step_index = index
                ctx.step_started_s = self._clock.monotonic()
                await self._patiently(
                    ctx,
                    f"the start of step {index + 1}",
                    self._store_patience_s,
                    partial(self._store.start_step, ctx.op_id, index, now=self._clock.now()),
                )
                await ctx.sink(StepStarted(ctx.op_id, index, step.name))
                try:
                    detail = await self._run_step(
                        step.action, ctx, step.timeout_s, step.cancellable, cancel
                    )
                except _Cancelled:
                    state, failed_at = "cancelled", index
                    summary = _stopped("at", index, total, step.name, why)
                    await self._finish_step(ctx, index, step.name, "cancelled", "cancelled")
                    break
                except TimeoutError:
                    state, failed_at = "failed", index
                    error = f"timed out after {step.timeout_s:g} s"
                    summary = f"failed at step {index + 1} of {total} ({step.name}): {error}"
                    await self._finish_step(ctx, index, step.name, "failed", error)
                    break
                except BotError as exc:
                    state, failed_at = "failed", index
                    error = redact(str(exc), secrets=ctx.secrets)
                    summary = f"failed at step {index + 1} of {total} ({step.name}): {error}"
                    await self._finish_step(ctx, index, step.name, "failed", error)
                    break
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    # Not a bug of the step: Redis went away (restart, failover, network).
                    logger.warning(
                        "operation %s step %d: Redis unreachable: %s", ctx.op_id, index + 1, exc
                    )
                    state, failed_at = "failed", index
                    error = redact(redis_unreachable(exc), secrets=ctx.secrets)
                    summary = f"failed at step {index + 1} of {total} ({step.name}): {error}"
                    await self._finish_step(ctx, index, step.name, "failed", error)
                    break
                except Exception as exc:
                    logger.exception("operation %s step %d crashed", ctx.op_id, index + 1)
                    state, failed_at = "failed", index
                    error = redact(
                        f"internal error: {type(exc).__name__}: {exc}", secrets=ctx.secrets
                    )
                    summary = f"failed at step {index + 1} of {total} ({step.name}): {error}"
                    await self._finish_step(ctx, index, step.name, "failed", error)
                    break
                await self._finish_step(ctx, index, step.name, "succeeded", detail)
            if state == "failed" and plan.on_failure is not None:
                try:
                    async with asyncio.timeout(_CLEANUP_TIMEOUT_S * 4):
                        await plan.on_failure(ctx)
                except (BotError, TimeoutError) as exc:
                    summary += (
                        f"; recovery failed: {redact(str(exc) or 'timed out', secrets=ctx.secrets)}"
                    )
        except asyncio.CancelledError:
            # The process is being stopped (Ctrl-C, SIGTERM): put things back, record, re-raise.
            try:
                await asyncio.shield(
                    self._wind_up(ctx, "cancelled", "cancelled: the bot was stopped", patience_s=0)
                )
            except _StoreGone as exc:
                leftovers = await asyncio.shield(_put_back_known(ctx))
                logger.error(
                    "operation %s stopped; not recorded (%s); put back: %s; left: %s",
                    ctx.op_id,
                    exc,
                    ", ".join(leftovers.done) or "nothing",
                    ", ".join(leftovers.failed) or "nothing",
                )
            raise
        finally:
            await cancel_and_wait(watcher)
        if failed_at is not None:
            for index in range(failed_at + 1, total):
                await self._patiently(
                    ctx,
                    f"step {index + 1} as skipped",
                    self._store_patience_s,
                    partial(
                        self._store.finish_step,
                        ctx.op_id,
                        index,
                        state="skipped",
                        output=None,
                        error=None,
                        now=self._clock.now(),
                    ),
                )
        return await self._wind_up(
            ctx,
            state,
            summary or self._success_summary(plan, ctx),
            patience_s=self._store_patience_s,
        )

    async def _run_step(
        self,
        action: StepAction,
        ctx: StepContext,
        timeout_s: float,
        cancellable: bool,
        cancel: asyncio.Event,
    ) -> str | None:
        task = asyncio.create_task(action(ctx))
        waiter = asyncio.create_task(cancel.wait())
        try:
            async with asyncio.timeout(timeout_s):
                if not cancellable:
                    return await task
                done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    return task.result()
                await cancel_and_wait(task)
                raise _Cancelled
        finally:
            await cancel_and_wait(waiter, task)

    async def _finish_step(
        self, ctx: StepContext, index: int, name: str, state: str, detail: str | None
    ) -> None:
        output = ctx.take_output()
        STEP_SECONDS.labels(ctx.kind, str(index + 1), state).observe(
            max(0.0, self._clock.monotonic() - ctx.step_started_s)
        )
        ctx.steps_ended[index] = state
        await self._patiently(
            ctx,
            f"the end of step {index + 1}",
            self._store_patience_s,
            partial(
                self._store.finish_step,
                ctx.op_id,
                index,
                state=state,
                output=output or None,
                error=detail if state in ("failed", "cancelled") else None,
                now=self._clock.now(),
            ),
        )
        await ctx.sink(StepFinished(ctx.op_id, index, name, state, detail))

    async def _wind_up(
        self, ctx: StepContext, state: str, summary: str, *, patience_s: float
    ) -> Outcome:
        await ctx.resources.aclose()
        leftovers = await self._patiently(
            ctx, "what it put back", patience_s, lambda: restore_pending(ctx)
        )
        if leftovers.done:
            summary += "; put back: " + ", ".join(leftovers.done)
        if leftovers.failed:
            summary += "; STILL TO DO BY HAND: " + ", ".join(leftovers.failed)
        summary = redact(summary, secrets=ctx.secrets)
        await self._patiently(
            ctx,
            "its outcome",
            patience_s,
            partial(
                self._store.finish_operation,
                ctx.op_id,
                state=state,
                summary=summary,
                validation=ctx.validation,
                now=self._clock.now(),
            ),
        )
        return Outcome(ctx.op_id, state, summary, dict(ctx.validation))

    async def _patiently(
        self, ctx: StepContext, what: str, patience_s: float, call: Callable[[], Awaitable[T]]
    ) -> T:
        """`call` (a write of the operation's own record), tried again while the store is
        unavailable, for up to `patience_s`; then `_StoreGone`. What the operation already did
        stands: it is recorded once the store answers again."""
        give_up_at = self._clock.monotonic() + patience_s
        since: float | None = None
        while True:
            try:
                result = await call()
            except StoreUnavailable as exc:
                now = self._clock.monotonic()
                if since is None:
                    since = now
                    logger.warning("operation %s: cannot record %s: %s", ctx.op_id, what, exc)
                    if patience_s > 0:
                        await self._tell(
                            ctx,
                            f"the bot's database is unavailable; waiting up to "
                            f"{patience_s:g} s to record {what}",
                        )
                if now + _STORE_RETRY_S > give_up_at:
                    raise _StoreGone(exc, what=what) from exc
                await self._clock.sleep(_STORE_RETRY_S)
                continue
            if since is not None:
                waited_s = self._clock.monotonic() - since
                logger.warning("operation %s: %s recorded after %.1f s", ctx.op_id, what, waited_s)
                await self._tell(ctx, f"the bot's database is back; recorded {what}")
            return result

    @staticmethod
    async def _tell(ctx: StepContext, line: str) -> None:
        """A progress line for the user only (the store is what cannot take it)."""
        await ctx.sink(StepOutput(ctx.op_id, ctx.step_index, redact(line, secrets=ctx.secrets)))

    async def _not_recorded(
        self, plan: Plan, ctx: StepContext, exc: _StoreGone
    ) -> OutcomeNotRecorded:
        """The store stayed away: put back from memory what the run changed, and say where it
        stopped and what Redis was left with."""
        await ctx.resources.aclose()
        leftovers = await _put_back_known(ctx)
        ended = sorted(ctx.steps_ended.items())
        if ended:
            index, state = ended[-1]
            reached = f"step {index + 1} of {len(plan.steps)} ({plan.steps[index].name}) {state}"
        else:
            reached = "no step ran"
        redis_state = []
        if leftovers.done:
            redis_state.append("put back: " + ", ".join(leftovers.done))
        if leftovers.failed:
            redis_state.append("STILL TO DO BY HAND: " + ", ".join(leftovers.failed))
        left = "; ".join(redis_state) or "nothing to put back"
        logger.error("operation %s: outcome not recorded: %s", ctx.op_id, exc)
        return OutcomeNotRecorded(
            redact(
                f"operation {ctx.op_id} ({plan.kind} {plan.target} in {plan.env}): {exc}; "
                f"waited {self._store_patience_s:g} s to record {exc.what}, so its outcome is "
                f"not recorded. It stopped after {reached}; Redis: {left}. The database shows "
                "it running until the first chatops command after it is back marks it "
                "interrupted.",
                secrets=ctx.secrets,
            )
        )

    @staticmethod
    def _success_summary(plan: Plan, ctx: StepContext) -> str:
        done = ctx.results.get("summary")
        return str(done) if done else f"{plan.kind} {plan.target} in {plan.env} done"

    async def _heartbeat(
        self,
        op_id: str,
        owner: str,
        cancel: asyncio.Event,
        why: list[str],
        lock_lost: asyncio.Event,
    ) -> None:
        while True:
            await self._clock.sleep(self._heartbeat_s)
            claimed = False
            try:
                claimed = not await self._store.heartbeat(op_id, owner=owner, now=self._clock.now())
                if not claimed and await self._store.cancel_requested(op_id):
                    cancel.set()
            except BotError:
                logger.warning("operation %s: heartbeat not recorded (store unreachable)", op_id)
            if why:
                continue
            if claimed:
                # Taken for dead (the store was out of reach longer than the lapse) and claimed:
                # what it changed was put back; going on would undo that.
                logger.warning("operation %s was claimed by another process; stopping", op_id)
                why.append(
                    "another process took it for dead while the store was out of reach, "
                    "recorded it as interrupted and put back what it had changed"
                )
                cancel.set()
            elif lock_lost.is_set():
                # Another process took the target (a forced `lock release`): stop at a safe point.
                logger.warning("operation %s lost its lock; stopping", op_id)
                why.append("it lost its lock (released by force, or taken over)")
                cancel.set()
            elif self._stopping.is_set():
                logger.warning("operation %s: the bot is shutting down; stopping", op_id)
                why.append("the bot was shut down while it ran (run it again)")
                cancel.set()


class _Tolerant:
    """An event sink that cannot stop the operation: Slack progress goes through the outbox,
    in the store, and a store out of reach must not fail a drain that Redis lets finish. After
    a failure, progress is dropped for a while rather than wait out the store's timeout at every
    line; the final event is always tried (and recovery closes the message if it is lost)."""

    QUIET_S = 5.0

    def __init__(self, sink: EventSink, clock: Clock) -> None:
        self._sink = sink
        self._clock = clock
        self._quiet_until = float("-inf")

    async def __call__(self, event: Event) -> None:
        final = isinstance(event, OperationFinished)
        if not final and self._clock.monotonic() < self._quiet_until:
            return
        try:
            await self._sink(event)
        except StoreUnavailable as exc:
            self._quiet_until = self._clock.monotonic() + self.QUIET_S
            logger.warning("operation %s: progress not told: %s", event.op_id, exc)


def _stopped(where: str, index: int, total: int, name: str, why: list[str]) -> str:
    """The summary of an operation cancelled by a user, or stopped by the bot itself (`why`)."""
    if why:
        return f"stopped {where} step {index + 1} of {total} ({name}): {why[0]}"
    return f"cancelled {where} step {index + 1} of {total} ({name})"


@dataclass(frozen=True)
class Leftovers:
    done: list[str]
    failed: list[str]


async def restore_pending(ctx: StepContext) -> Leftovers:
    done: list[str] = []
    failed: list[str] = []
    # A Redis restarting under the operation is waited for, once: after a failure the other
    # items are tried once each, and what fails is left to do by hand.
    patience_s = _CLEANUP_TIMEOUT_S / 2
    for item in await ctx.store.pending_restores(ctx.op_id):
        try:
            async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
                done.append(
                    await put_back_patiently(
                        item.kind,
                        item.key,
                        env=ctx.env,
                        redis=ctx.redis,
                        clock=ctx.clock,
                        patience_s=patience_s,
                        operation_id=ctx.op_id,
                        running=running_in(ctx.store),
                    )
                )
            ctx.unrestored.pop(item.id, None)
            await ctx.store.mark_restored(item.id, now=ctx.clock.now())
        except (BotError, TimeoutError, OSError, redis.RedisError) as exc:
            patience_s = 0.0
            failed.append(f"{item.kind} {item.key} ({type(exc).__name__})")
    return Leftovers(done, failed)


async def _put_back_known(ctx: StepContext) -> Leftovers:
    """Put back what this run noted and has not put back, from memory (the store is away).
    Each put-back is idempotent: recovery may do it again once the store is back."""
    done: list[str] = []
    failed: list[str] = []
    for restore_id, (kind, key) in list(ctx.unrestored.items()):
        try:
            async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
                done.append(
                    await put_back_patiently(
                        kind,
                        key,
                        env=ctx.env,
                        redis=ctx.redis,
                        clock=ctx.clock,
                        patience_s=_CLEANUP_TIMEOUT_S / 2,
                        operation_id=ctx.op_id,  # the store is away: holders are not pruned
                    )
                )
            ctx.unrestored.pop(restore_id, None)
        except (BotError, TimeoutError, OSError, redis.RedisError) as exc:
            failed.append(f"{kind} {key} ({type(exc).__name__})")
    return Leftovers(done, failed)
