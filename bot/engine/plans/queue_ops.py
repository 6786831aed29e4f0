"""One-step queue operations: pause, resume, retry failed jobs, promote delayed jobs."""

from __future__ import annotations

from collections.abc import Sequence

from bot.config import EnvironmentConfig
from bot.engine.context import StepContext
from bot.engine.plan import Plan, Step
from bot.queues import pause_queue, promote_jobs, read_states, resume_queue, retry_failed

_TIMEOUT_S = 60.0


def pause_plan(env_name: str, env: EnvironmentConfig, queue: str) -> Plan:
    async def pause(ctx: StepContext) -> str:
        (state,) = await read_states(ctx.redis, prefix=env.prefix, queues=[queue])
        if state.paused:
            return f"{queue} was already paused"
        await pause_queue(ctx.redis, prefix=env.prefix, queue=queue)
        ctx.results["summary"] = f"{queue} paused: jobs stay queued, active ones finish"
        return f"{queue} paused ({state.counts.waiting} waiting stay queued)"

    return _one_step("pause", env_name, queue, f"pause {queue}", pause)


def resume_plan(env_name: str, env: EnvironmentConfig, queue: str) -> Plan:
    async def resume(ctx: StepContext) -> str:
        (state,) = await read_states(ctx.redis, prefix=env.prefix, queues=[queue])
        if not state.paused:
            return f"{queue} was not paused"
        await resume_queue(ctx.redis, prefix=env.prefix, queue=queue)
        ctx.results["summary"] = f"{queue} resumed ({state.counts.waiting} waiting)"
        return f"{queue} resumed"

    return _one_step("resume", env_name, queue, f"resume {queue}", resume)


def retry_plan(
    env_name: str, env: EnvironmentConfig, queue: str, ids: Sequence[str] | None
) -> Plan:
    what = "all failed jobs" if ids is None else f"failed job(s) {', '.join(ids)}"

    async def retry(ctx: StepContext) -> str:
        result = await retry_failed(ctx.redis, prefix=env.prefix, queue=queue, ids=ids)
        for job_id, why in result.skipped:
            await ctx.emit(f"not retried: {job_id}: {why}")
        ctx.validation["retried"] = len(result.retried)
        ctx.validation["skipped"] = len(result.skipped)
        summary = f"{len(result.retried)} job(s) of {queue} moved back to waiting"
        if result.skipped:
            summary += f", {len(result.skipped)} not retried"
        ctx.results["summary"] = summary
        return summary

    return _one_step("retry", env_name, queue, f"retry {what} of {queue}", retry)


def promote_plan(
    env_name: str, env: EnvironmentConfig, queue: str, ids: Sequence[str] | None
) -> Plan:
    what = "overdue delayed jobs" if ids is None else f"delayed job(s) {', '.join(ids)}"

    async def promote(ctx: StepContext) -> str:
        result = await promote_jobs(
            ctx.redis, prefix=env.prefix, queue=queue, ids=ids, now=ctx.clock.now()
        )
        for job_id, why in result.skipped:
            await ctx.emit(f"not promoted: {job_id}: {why}")
        ctx.validation["promoted"] = len(result.promoted)
        summary = f"{len(result.promoted)} delayed job(s) of {queue} moved to waiting"
        if result.skipped:
            summary += f", {len(result.skipped)} not promoted"
        ctx.results["summary"] = summary
        return summary

    return _one_step("promote", env_name, queue, f"promote {what} of {queue}", promote)


def _one_step(kind: str, env_name: str, queue: str, name: str, action) -> Plan:  # type: ignore[no-untyped-def]
    return Plan(
        kind=kind,
        env=env_name,
        target=queue,
        steps=(Step(name, action, _TIMEOUT_S),),
        locks=(f"queue:{queue}",),
        params={"queue": queue},
    )
