"""What the doors ask of the bot: typed requests in, plans, outcomes and read-only views out.

The CLI and Slack call these and render the results; neither touches Redis, pm2 or SQL itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.abc import WorkerStatus
from bot.config import EnvironmentConfig, WorkerConfig
from bot.duplicates import DuplicateReport, find_duplicates
from bot.engine.events import EventSink
from bot.engine.plan import Plan
from bot.engine.plans.drain import DrainParams, drain_plan
from bot.engine.plans.kube_worker import kube_worker_plan
from bot.engine.plans.queue_ops import pause_plan, promote_plan, resume_plan, retry_plan
from bot.engine.plans.worker import WorkerRequest, build_plan, worker_plan
from bot.engine.runner import Actor, Outcome, owner_id
from bot.envcheck import EnvCheck, check_env, check_env_at_ref
from bot.errors import BadInput, BotError, Refused, UnknownOperation
from bot.git import validate_ref
from bot.incidents import record_incident
from bot.locks import LockInfo, force_release, lock_info
from bot.queues import (
    DelayedListing,
    FailedJob,
    QueueState,
    WorkerConnections,
    connected_workers,
    delayed_jobs,
    failed_jobs,
    read_states,
    states_now,
)
from bot.queues.health import RedisReport, check_redis
from bot.redact import redact
from bot.releases import current_commit
from bot.runtime import Runtime
from bot.slack.outbox import Outbox, OutboxSender
from bot.store.records import AuditRecord, IncidentRecord, OperationRecord, ReleaseRecord
from bot.targets.kube import KubeTarget
from bot.targets.kube_objects import image_for, image_key, image_tag
from bot.windows.planned import planned_note, window_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperationRequest:
    """A mutating command, as any door parsed it."""

    kind: str  # drain, pause, resume, retry, promote, restart, deploy, rollback, build
    env: str
    target: str
    job_ids: tuple[str, ...] = ()
    all_jobs: bool = False  # retry --all / promote --overdue
    timeout_s: float | None = None
    ref: str | None = None  # deploy --ref, rollback --to
    skip_env_check: bool = False  # restart/deploy/rollback --skip-env-check
    outside_window: bool = False  # restart/deploy/rollback in a protected env, no window open
    in_window: str | None = None  # planned for this maintenance window (Slack)


# ---- read-only views -------------------------------------------------------------------------


async def queue_states(rt: Runtime, env_name: str, queue: str | None) -> list[QueueState]:
    env = rt.config.env(env_name)
    queues = [env.queue(queue, env=env_name)] if queue else list(env.queues)
    return await read_states(rt.redis_for(env_name), prefix=env.prefix, queues=queues)


async def redis_check(rt: Runtime, env_name: str) -> RedisReport:
    env = rt.config.env(env_name)
    return await check_redis(rt.redis_for(env_name), prefix=env.prefix)


async def queue_workers(rt: Runtime, env_name: str, queue: str) -> WorkerConnections:
    env = rt.config.env(env_name)
    return await connected_workers(
        rt.redis_for(env_name), prefix=env.prefix, queue=env.queue(queue, env=env_name)
    )


async def queue_failed(rt: Runtime, env_name: str, queue: str, limit: int) -> list[FailedJob]:
    env = rt.config.env(env_name)
    redis = rt.redis_for(env_name)
    await read_states(redis, prefix=env.prefix, queues=[env.queue(queue, env=env_name)])
    return await failed_jobs(redis, prefix=env.prefix, queue=queue, limit=limit)


async def queue_delayed(rt: Runtime, env_name: str, queue: str, limit: int) -> DelayedListing:
    env = rt.config.env(env_name)
    redis = rt.redis_for(env_name)
    await read_states(redis, prefix=env.prefix, queues=[env.queue(queue, env=env_name)])
    return await delayed_jobs(
        redis, prefix=env.prefix, queue=queue, limit=limit, now=rt.clock.now()
    )


async def worker_status(rt: Runtime, env_name: str, worker: str) -> WorkerStatus:
    cfg = rt.config.env(env_name).worker(worker, env=env_name)
    return await rt.target_for(worker, cfg).status()


async def worker_logs(rt: Runtime, env_name: str, worker: str, lines: int) -> list[str]:
    cfg = rt.config.env(env_name).worker(worker, env=env_name)
    return await rt.target_for(worker, cfg).logs(lines=lines)


async def worker_env_check(rt: Runtime, env_name: str, worker: str) -> EnvCheck:
    cfg = rt.config.env(env_name).worker(worker, env=env_name)
    target = rt.target_for(worker, cfg)
    if isinstance(target, KubeTarget):
        if cfg.source_repo is None:
            raise Refused(f"{worker} has no source_repo to read .env.example from")
        image = await target.current_image()
        tag = image_tag(image)
        if tag is None:
            raise Refused(f"{image} has no tag to find its .env.example by")
        return await check_env_at_ref(target, repo=cfg.source_repo, ref=tag, env=rt.tool_env(cfg))
    status = await target.status()
    if status.status == "missing" or status.cwd is None:
        raise Refused(f"{cfg.manager} has no {target.name!r} for {worker}: nothing to compare")
    return await check_env(target, status.cwd)


async def worker_duplicates(
    rt: Runtime, env_name: str, worker: str, *, hours: float | None = None
) -> DuplicateReport:
    cfg = rt.config.env(env_name).worker(worker, env=env_name)
    settings = (
        cfg.duplicates if hours is None else cfg.duplicates.model_copy(update={"hours": hours})
    )
    url = settings.database_url or await rt.target_for(worker, cfg).env_value("DATABASE_URL")
    if not url:
        raise Refused(
            f"no database to check for {worker}: set workers.{worker}.duplicates.database_url, "
            "or DATABASE_URL in the worker's environment"
        )
    return await find_duplicates(url, settings)


async def worker_releases(rt: Runtime, env_name: str, worker: str) -> list[ReleaseRecord]:
    rt.config.env(env_name).worker(worker, env=env_name)
    return await rt.store.releases(env_name, worker)


async def incidents(rt: Runtime, *, limit: int, env: str | None = None) -> list[IncidentRecord]:
    return await rt.store.incidents(limit=limit, env=env)


async def history(rt: Runtime, *, limit: int, env: str | None = None) -> list[OperationRecord]:
    return await rt.store.list_operations(limit=limit, env=env)


async def show(rt: Runtime, op_id: str) -> tuple[OperationRecord, list[AuditRecord]]:
    op = await rt.store.get_operation(op_id)
    if op is None:
        raise UnknownOperation(op_id)
    return op, await rt.store.audit_events(limit=50, operation_id=op_id)


# ---- plans and operations --------------------------------------------------------------------


async def plan_for(rt: Runtime, req: OperationRequest) -> Plan:
    plan = await _plan_for(rt, req)
    if req.in_window is None:
        return plan
    now = rt.clock.now()
    window = await window_for(rt, env=req.env, window_id=req.in_window, now=now)
    return dataclasses.replace(
        plan,
        details=(*plan.details, planned_note(window, now=now)),
        params={**plan.params, "window": window.id},
    )


async def _plan_for(rt: Runtime, req: OperationRequest) -> Plan:
    env = rt.config.env(req.env)
    if req.kind in ("drain", "pause", "resume", "retry", "promote"):
        every = req.kind == "drain" and req.target == "all"  # every queue, as one operation
        queues = tuple(env.queues) if every else (env.queue(req.target, env=req.env),)
        # The queues must exist under the configured prefix before any plan is shown, and the
        # plan shows what they hold now.
        states = await read_states(rt.redis_for(req.env), prefix=env.prefix, queues=list(queues))
        return _with_details(_queue_plan(req, env, queues, every=every), states_now(states))
    if req.kind == "build":
        cfg = env.worker(req.target, env=req.env)
        if req.ref is not None:
            validate_ref(req.ref)
        return build_plan(
            req.env, env, req.target, req.ref, rt.tool_env(cfg), host=rt.host_for(cfg)
        )
    if req.kind in WINDOW_KINDS:
        plan = await _worker_plan(rt, req)
        if req.in_window is not None:
            return plan  # the window it is planned for is the rule
        window_note = await _window_rule(rt, req)
        return dataclasses.replace(
            plan,
            details=(*plan.details, window_note),
            params={**plan.params, "outside_window": req.outside_window},
        )
    raise BadInput(f"unknown operation {req.kind!r}")


def _queue_plan(
    req: OperationRequest, env: EnvironmentConfig, queues: tuple[str, ...], *, every: bool
) -> Plan:
    if req.kind == "drain":
        timeout_s = req.timeout_s or env.drain.timeout_s
        if timeout_s <= 0:
            raise BadInput("--timeout-s must be positive")
        params = DrainParams(
            queues,
            timeout_s,
            env.drain.stall_s,
            env.drain.poll_interval_s,
            env.drain.producer_grace_s,
            every=every,
        )
        return drain_plan(req.env, env, params)
    (queue,) = queues
    ids = None if req.all_jobs else req.job_ids
    if req.kind == "pause":
        return pause_plan(req.env, env, queue)
    if req.kind == "resume":
        return resume_plan(req.env, env, queue)
    if not req.all_jobs and not req.job_ids:
        flag = "--all" if req.kind == "retry" else "--overdue"
        raise BadInput(f"{req.kind} needs job ids or {flag}")
    if req.kind == "retry":
        return retry_plan(req.env, env, queue, ids)
    return promote_plan(req.env, env, queue, ids)


def _with_details(plan: Plan, lines: Sequence[str]) -> Plan:
    return dataclasses.replace(plan, details=(*plan.details, *lines))


WINDOW_KINDS = ("restart", "deploy", "rollback")


async def _window_rule(rt: Runtime, req: OperationRequest) -> str:
    """In a protected environment a worker is reloaded inside an open maintenance window, or
    with an explicit override (kept in the operation's command and parameters)."""
    now = rt.clock.now()
    inside = [
        w
        for w in await rt.store.windows(env=req.env, since=now)
        if w.state in ("scheduled", "open") and w.starts_at <= now < w.ends_at
    ]
    if inside:
        return f"inside maintenance window {inside[0].id}"
    if not rt.config.env(req.env).protected:
        return "no maintenance window open (not required here)"
    if req.outside_window:
        return "OUTSIDE any maintenance window: --outside-window given"
    raise Refused(
        f"{req.env} is protected and no maintenance window is open: schedule one "
        f"(chatops window schedule {req.env} WHEN DURATION, or /window schedule) or add "
        "--outside-window (recorded with the operation)"
    )


async def _worker_plan(rt: Runtime, req: OperationRequest) -> Plan:
    env = rt.config.env(req.env)
    cfg = env.worker(req.target, env=req.env)
    if cfg.manager == "kubernetes":
        return await _kube_plan(rt, req, cfg)
    if req.ref is not None:
        validate_ref(req.ref)
    commit = None
    if req.kind == "rollback":  # it must know what runs, to go back from it
        running: str | None = await _running_commit(rt, req.env, req.target)
        unknown = None
        commit = await _rollback_commit(rt, req, running)
    else:
        running, unknown = await _shown_running(_running_commit(rt, req.env, req.target))
    if running is None and unknown is None and not _has_releases(cfg):
        unknown = "no release recorded by the bot"
    wreq = WorkerRequest(
        req.target,
        req.kind,
        commit=commit,
        ref=req.ref,
        skip_env_check=req.skip_env_check,
        running=running,
        running_unknown=unknown,
    )
    return worker_plan(
        req.env,
        env,
        wreq,
        target_for=rt.target_for,
        build_env=rt.tool_env(cfg),
        host=rt.host_for(cfg),
    )


async def _kube_plan(rt: Runtime, req: OperationRequest, cfg: WorkerConfig) -> Plan:
    target = rt.target_for(req.target, cfg)
    assert isinstance(target, KubeTarget)
    image = None
    if req.kind == "deploy" and not req.ref:
        raise BadInput(
            f"deploy of {req.target} needs --ref: an image tag, digest or reference "
            f"in {cfg.image_repository or 'its image_repository'}"
        )
    if req.kind == "rollback":  # it must know what runs, to go back from it
        image_now = await target.current_image()
        running: str | None = image_now
        unknown = None
        image = await _rollback_image(rt, req, cfg, image_now)
    else:
        running, unknown = await _shown_running(target.current_image())
    wreq = WorkerRequest(
        req.target,
        req.kind,
        ref=req.ref,
        skip_env_check=req.skip_env_check,
        image=image,
        running=running,
        running_unknown=unknown,
    )
    env = rt.config.env(req.env)
    return kube_worker_plan(req.env, env, wreq, target=target, build_env=rt.tool_env(cfg))


async def _rollback_image(
    rt: Runtime, req: OperationRequest, cfg: WorkerConfig, running: str
) -> str:
    if req.ref:
        wanted = image_for(req.ref, cfg.image_repository)
        release = await rt.store.find_release(req.env, req.target, wanted)
        if release is None:
            raise BadInput(
                f"{wanted} was never deployed to {req.target} in {req.env} by the bot; "
                f"see chatops worker releases {req.target} --env {req.env}"
            )
        if release.path == running:
            raise Refused(f"{wanted} is the image running now")
        return release.path
    good = await rt.store.last_known_good(req.env, req.target, exclude_commit=image_key(running))
    if good is None:
        raise Refused(
            f"no known-good image of {req.target} in {req.env} other than the running one "
            f"({running}); mark one with: chatops worker mark-good {req.target} --env {req.env} REF"
        )
    return good.path


def _has_releases(cfg: WorkerConfig) -> bool:
    return bool(cfg.deploy and cfg.deploy.strategy == "releases" and cfg.deploy.deploy_path)


async def _running_commit(rt: Runtime, env_name: str, worker: str) -> str | None:
    cfg = rt.config.env(env_name).worker(worker, env=env_name)
    if _has_releases(cfg):
        assert cfg.deploy is not None and cfg.deploy.deploy_path is not None
        return await current_commit(cfg.deploy.deploy_path, host=rt.host_for(cfg))
    current = await rt.store.current_release(env_name, worker)
    return current.commit if current else None


async def _shown_running(read: Awaitable[str | None]) -> tuple[str | None, str | None]:
    """What runs now, for a plan that only shows it: (running, None), or (None, why it could not
    be read). A restart or deploy does not need it to run, and its own steps report the cause."""
    try:
        return await read, None
    except (BotError, OSError) as exc:
        return None, redact(str(exc))[:200]


async def _rollback_commit(rt: Runtime, req: OperationRequest, running: str | None) -> str:
    if req.ref:
        release = await rt.store.find_release(req.env, req.target, req.ref)
        if release is None:
            raise BadInput(
                f"no recorded release of {req.target} in {req.env} matches {req.ref!r}; "
                f"see chatops worker releases {req.target} --env {req.env}, or deploy it "
                "with chatops worker deploy --ref"
            )
        if release.commit == running:
            raise Refused(f"{req.ref} ({release.commit[:12]}) is the release running now")
        return release.commit
    good = await rt.store.last_known_good(req.env, req.target, exclude_commit=running)
    if good is None:
        raise Refused(
            f"no known-good release of {req.target} in {req.env} other than the running one; "
            f"mark one with: chatops worker mark-good {req.target} --env {req.env} REF"
        )
    return good.commit


async def run(
    rt: Runtime,
    plan: Plan,
    *,
    actor: Actor,
    command: str,
    reason: str | None,
    sink: EventSink,
) -> Outcome:
    env = rt.config.env(plan.env)
    # From a terminal, the reason is what stands in for Slack's typed confirmation and approvals.
    if env.protected and plan.mutating and not reason and actor.source == "cli":
        raise BadInput(f"{plan.env} is protected: say why with --reason")
    break_glass = env.protected and actor.source == "cli"
    if break_glass and env.channel and rt.settings.SLACK_BOT_TOKEN:
        await announce(
            rt,
            channel=env.channel,
            text=f"🚨 break-glass from a terminal: {actor.name} runs `{command}` in {plan.env}"
            f" (reason: {reason})",
        )
    outcome = await rt.engine.run(
        plan,
        env=env,
        env_redis=rt.redis_for(plan.env),
        actor=actor,
        command=command,
        reason=reason,
        sink=sink,
        # From a terminal, a protected environment is reached around Slack's approvals.
        break_glass=break_glass,
    )
    try:
        await record_incident(rt, plan, outcome, actor)
    except BotError as exc:  # the operation's own record stands; say what is missing
        logger.error("incident for %s not recorded: %s", outcome.op_id, exc)
    return outcome


async def announce(rt: Runtime, *, channel: str, text: str) -> None:
    """A message for the environment's channel, through the outbox: a running `chatops serve`
    delivers it, or `deliver_slack` does from here (Slack may be what is down)."""
    await Outbox(rt.store, rt.clock).post(
        f"announce:{uuid.uuid4().hex}",
        channel=channel,
        text=redact(text, secrets=rt.secrets),
        blocks=[
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": redact(text, secrets=rt.secrets)[:2900]},
            }
        ],
    )


_PACED_WAIT_S = 2.0


async def deliver_slack(rt: Runtime, *, timeout_s: float = 5.0) -> None:
    """Send what this process left in the outbox, briefly; the rest waits for `chatops serve`."""
    if not rt.settings.SLACK_BOT_TOKEN:
        return
    from bot.slack.app import slack_client

    sender = OutboxSender(
        store=rt.store, client=slack_client(rt), clock=rt.clock, claimer=owner_id()
    )
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                if await sender.run_once():
                    continue
                # Posts paced at one a second per channel wait their turn; a retry backing off
                # from a Slack outage does not hold the terminal: `chatops serve` sends it.
                due = await rt.store.next_slack_due(scope=sender.scope)
                wait_s = None if due is None else (due - rt.clock.now()).total_seconds()
                if wait_s is None or wait_s > _PACED_WAIT_S:
                    break
                await asyncio.sleep(max(0.0, wait_s) + 0.01)
    except TimeoutError:
        pass
    finally:
        await sender.aclose()


async def mark_good(
    rt: Runtime, env_name: str, worker: str, ref: str, *, actor: Actor
) -> ReleaseRecord:
    cfg = rt.config.env(env_name).worker(worker, env=env_name)
    if cfg.manager == "kubernetes":
        ref = await _kube_release(rt, env_name, worker, cfg, ref)
    release = await rt.store.find_release(env_name, worker, ref)
    if release is None:
        known = [r.commit[:12] for r in await rt.store.releases(env_name, worker)]
        raise BadInput(
            f"no recorded release of {worker} in {env_name} matches {ref!r}; "
            f"known: {', '.join(known) or 'none (deploy once first)'}"
        )
    await rt.store.mark_known_good(
        env_name, worker, release.commit, by=actor.name, now=rt.clock.now()
    )
    await rt.store.audit(
        actor=actor.name,
        source=actor.source,
        kind="mark_good",
        command=f"worker mark-good {worker} {ref}",
        outcome="done",
        env=env_name,
        details={"commit": release.commit},
        now=rt.clock.now(),
    )
    found = await rt.store.find_release(env_name, worker, release.commit)
    assert found is not None
    return found


async def _kube_release(
    rt: Runtime, env_name: str, worker: str, cfg: WorkerConfig, ref: str
) -> str:
    """The image `ref` names; the one running now is recorded as a release if the bot never
    deployed it (a worker's first known-good image is usually deployed by other means)."""
    image = image_for(ref, cfg.image_repository)
    if await rt.store.find_release(env_name, worker, image) is None:
        target = rt.target_for(worker, cfg)
        assert isinstance(target, KubeTarget)
        if await target.current_image() == image:
            now = rt.clock.now()
            key = image_key(image)
            await rt.store.record_release(
                env=env_name, worker=worker, ref=image, commit=key, path=image, now=now
            )
            await rt.store.mark_deployed(env_name, worker, key, now=now)
    return image


async def cancel(rt: Runtime, op_id: str, *, actor: Actor) -> OperationRecord:
    op = await rt.store.get_operation(op_id)
    if op is None:
        raise UnknownOperation(op_id)
    if op.state != "running":
        raise BadInput(f"operation {op_id} is {op.state}, not running")
    op = await rt.store.request_cancel(op_id)
    await rt.store.audit(
        actor=actor.name,
        source=actor.source,
        kind="cancel",
        command=f"ops cancel {op_id}",
        outcome="requested",
        env=op.env,
        operation_id=op_id,
        now=rt.clock.now(),
    )
    return op


async def release_lock(rt: Runtime, key: str, *, reason: str, actor: Actor) -> LockInfo:
    if not key.startswith("chatops:") or ":lock:" not in key:
        raise BadInput(f"{key!r} is not a chatops lock key (chatops:<prefix>:lock:<env>:...)")
    env_name = key.split(":lock:", 1)[1].split(":", 1)[0]
    rt.config.env(env_name)
    coordination = rt.coordination(env_name)
    info = await lock_info(coordination, key)
    if info is None:
        raise BadInput(f"no lock {key!r} is held")
    await force_release(coordination, key)
    await rt.store.audit(
        actor=actor.name,
        source=actor.source,
        kind="lock_release",
        command=f"lock release {key}",
        outcome="released",
        env=env_name,
        reason=reason,
        operation_id=info.operation_id,
        details={"holder": info.holder},
        now=rt.clock.now(),
    )
    return info


def as_json_counts(state: QueueState) -> dict[str, Any]:
    return {"name": state.name, "paused": state.paused, "counts": state.counts.as_dict()}
