"""Restart, deploy and roll back a worker: quiesce, reload, prove it ready, resume, validate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.abc import Target, WorkerStatus
from bot.config import CanaryConfig, EnvironmentConfig, WorkerConfig
from bot.engine.context import StepContext
from bot.engine.plan import Plan, Step
from bot.engine.restore import QUEUE_PAUSED
from bot.envcheck import EnvCheck, check_env, require_complete
from bot.errors import OperationFailed, Refused
from bot.hosts import LOCAL_HOST, Host
from bot.queues import (
    completions,
    longest_recent_job_ms,
    pause_queue,
    read_states,
    resume_queue,
    run_canary,
)
from bot.queues.health import require_fit_redis
from bot.releases import (
    Release,
    current_commit,
    prepare_release,
    resolve_ref,
    switch_current,
)

TargetFactory = Callable[[str, WorkerConfig], Target]

_SETTLE_S = 3.0
_WORKER_CHECK_S = 1.0  # how often a wait for active jobs checks the worker is still there
PM2_DEFAULT_KILL_TIMEOUT_MS = 1600
_RELOAD_TIMEOUT_S = 90.0
# The resolve step outlasts its `git fetch`, so a hanging remote is named by the fetch's timeout.
_RESOLVE_MARGIN_S = 30.0


@dataclass(frozen=True)
class WorkerRequest:
    worker: str
    kind: str  # restart, deploy, rollback
    commit: str | None = None  # rollback: the release to go back to (resolved beforehand)
    ref: str | None = None  # deploy: the ref asked for
    skip_env_check: bool = False  # run even if the environment lacks keys of .env.example
    image: str | None = None  # kubernetes deploy and rollback: the image to run
    # What runs now, as read when the plan was made (a commit, or an image on Kubernetes), or
    # why it could not be read: the plan shows the change as from -> to.
    running: str | None = None
    running_unknown: str | None = None


def worker_plan(
    env_name: str,
    env: EnvironmentConfig,
    request: WorkerRequest,
    *,
    target_for: TargetFactory,
    build_env: dict[str, str],
    host: Host = LOCAL_HOST,
) -> Plan:
    """`host` is where the worker's releases live (its `deploy_path`): they are fetched,
    built and switched there."""
    name = request.worker
    cfg = env.worker(name, env=env_name)
    target = target_for(name, cfg)
    steps: list[Step] = [
        Step(
            f"check {target.name} under {cfg.manager}",
            lambda ctx: check_target(ctx, target, cfg),
            30,
        )
    ]
    deploy = cfg.deploy
    if request.kind in ("deploy", "rollback"):
        if deploy is None:
            raise Refused(f"worker {name} in {env_name} has no 'deploy' configuration")
        if deploy.strategy == "in_place" and cfg.host != "local":
            raise Refused(
                f"{request.kind} of {name} on {cfg.host}: the in_place strategy works on the "
                "bot's host only; use strategy releases for a worker on another host"
            )
        if request.kind == "deploy":
            steps.append(_resolve_step(cfg, request.ref or deploy.default_ref, build_env, host))
        steps.append(_build_step(cfg, request, build_env, host))
    steps.append(
        Step(
            "compare the environment with .env.example"
            + (" (a mismatch is reported, not refused)" if request.skip_env_check else ""),
            lambda ctx: _env_check(ctx, target, name, skip=request.skip_env_check),
            30,
        )
    )
    steps += quiesce_steps(cfg, target)
    if request.kind in ("deploy", "rollback") and deploy and deploy.strategy == "releases":
        steps.append(
            Step("switch current to the new release", lambda ctx: _switch(ctx, cfg, host), 15)
        )
    steps += [
        Step(
            f"reload {cfg.app} with its own environment",
            lambda ctx: _reload(ctx, target),
            _RELOAD_TIMEOUT_S,
            cancellable=False,
        ),
        Step(
            f"wait for /{cfg.ready_pattern}/ from the new process "
            f"(up to {cfg.ready_timeout_s:g} s)",
            lambda ctx: await_ready(ctx, cfg, target),
            cfg.ready_timeout_s + 10,
        ),
        Step(
            f"check {cfg.app} is online and not restart-looping",
            lambda ctx: check_online(ctx, target),
            30,
        ),
    ]
    steps += resume_steps(cfg)
    if request.kind in ("deploy", "rollback"):
        steps.append(
            Step("record the release as known-good", lambda ctx: _known_good(ctx, name), 15)
        )

    async def revert(ctx: StepContext) -> None:
        await _revert(ctx, cfg, target, host)

    return Plan(
        kind=request.kind,
        env=env_name,
        target=name,
        steps=tuple(steps),
        locks=(f"worker:{name}", *(f"queue:{q}" for q in cfg.queues)),
        details=_details(cfg, request),
        on_failure=revert if request.kind in ("deploy", "rollback") else None,
        params={"worker": name, "ref": request.ref, "commit": request.commit},
    )


def build_plan(
    env_name: str,
    env: EnvironmentConfig,
    worker: str,
    ref: str | None,
    build_env: dict[str, str],
    host: Host = LOCAL_HOST,
) -> Plan:
    """Build a release ahead of time without touching what runs; on a first install (nothing
    deployed yet) also point `current` at it, so pm2 can be started from there once."""
    cfg = env.worker(worker, env=env_name)
    deploy = cfg.deploy
    if deploy is None or deploy.strategy != "releases":
        raise Refused(f"worker {worker} in {env_name} does not deploy with strategy 'releases'")
    ref = ref or deploy.default_ref
    request = WorkerRequest(worker, "build", ref=ref)
    steps = (
        _resolve_step(cfg, ref, build_env, host),
        _build_step(cfg, request, build_env, host),
        Step(
            "point current at it if nothing is deployed yet",
            lambda ctx: _first_install(ctx, cfg, host),
            15,
        ),
    )
    return Plan(
        kind="build",
        env=env_name,
        target=worker,
        steps=steps,
        locks=(f"worker:{worker}",),
        details=(f"builds {ref}; what runs is not touched",),
        params={"worker": worker, "ref": ref},
    )


def _resolve_step(cfg: WorkerConfig, ref: str, build_env: dict[str, str], host: Host) -> Step:
    assert cfg.deploy is not None
    return Step(
        f"resolve {ref} to a commit",
        lambda ctx: _resolve(ctx, cfg, ref, build_env, host),
        cfg.deploy.fetch_timeout_s + _RESOLVE_MARGIN_S,
    )


def _build_step(
    cfg: WorkerConfig, request: WorkerRequest, build_env: dict[str, str], host: Host
) -> Step:
    assert cfg.deploy is not None
    where = " in its own directory" if cfg.deploy.strategy == "releases" else " in place"
    return Step(
        "fetch and build the release" + where,
        lambda ctx: _build(ctx, request.worker, cfg, request, build_env, host),
        cfg.deploy.build_timeout_s * max(1, len(cfg.build)) + 120,
    )


async def _first_install(ctx: StepContext, cfg: WorkerConfig, host: Host) -> str:
    deploy = cfg.deploy
    assert deploy is not None and deploy.deploy_path is not None
    commit: str = ctx.results["commit"]
    current = await current_commit(deploy.deploy_path, host=host)
    if current is not None:
        ctx.results["summary"] = f"{commit[:12]} built; {current[:12]} still runs"
        return f"current stays at {current[:12]}: deploy to switch"
    await switch_current(deploy_path=deploy.deploy_path, commit=commit, host=host)
    ctx.results["summary"] = (
        f"{commit[:12]} built and made current (first install): start the pm2 app from "
        f"{deploy.deploy_path}/current once"
    )
    return f"current -> {commit[:12]} (first install)"


def _details(cfg: WorkerConfig, request: WorkerRequest) -> tuple[str, ...]:
    managed = f"pm2 app {cfg.app}" if cfg.manager == "pm2" else f"systemd unit {cfg.unit_name}"
    lines = [f"{managed}; queues {', '.join(cfg.queues) or 'none configured'}"]
    if cfg.quiesce == "pause":
        lines.append(
            f"quiesce: pause the queues and wait up to {cfg.active_wait_s:g} s for active jobs"
        )
    else:
        lines.append("quiesce: graceful (the worker's close() on SIGINT within pm2's kill_timeout)")
    default_ref = cfg.deploy.default_ref if cfg.deploy else None
    lines.append(release_change(request, to=request.commit, ref=request.ref or default_ref))
    return tuple(lines)


def release_change(
    request: WorkerRequest, *, to: str | None, ref: str | None = None, what: str = "release"
) -> str:
    """The plan's line "release A → B" ("image A → B" on Kubernetes): what runs now and what
    will run after it. A deploy's ref is resolved to a commit only when it runs."""

    def short(name: str) -> str:
        return name if what == "image" else name[:12]

    if request.running:
        now = short(request.running)
    elif request.running_unknown:
        now = f"unknown ({request.running_unknown})"
    else:
        now = "none yet"
    if request.kind == "restart":
        return f"{what} {now}, unchanged: the same code is reloaded"
    if to is None:
        return f"{what} {now} → {ref} (resolved to a commit when it runs)"
    return f"{what} {now} → {short(to)}"


def resume_steps(cfg: WorkerConfig) -> list[Step]:
    """After the new process is proven ready: resume what quiescing paused, then show jobs
    completing."""
    steps = []
    if cfg.quiesce == "pause" and cfg.queues:
        steps.append(
            Step(f"resume {', '.join(cfg.queues)}", lambda ctx: resume_paused(ctx, cfg), 30)
        )
    steps.append(
        Step(
            "check jobs are completing",
            lambda ctx: check_completing(ctx, cfg),
            cfg.completing_wait_s + 15,
        )
    )
    return steps


def quiesce_steps(cfg: WorkerConfig, target: Target) -> list[Step]:
    if cfg.quiesce == "graceful":
        return [
            Step(
                "check pm2's kill_timeout covers the longest recent job",
                lambda ctx: _kill_timeout(ctx, cfg),
                30,
            )
        ]
    if not cfg.queues:
        return []
    return [
        Step(f"pause {', '.join(cfg.queues)}", lambda ctx: _pause(ctx, cfg), 30),
        Step(
            f"wait for active jobs to finish (up to {cfg.active_wait_s:g} s)",
            lambda ctx: _wait_idle(ctx, cfg, target),
            cfg.active_wait_s + 15,
        ),
    ]


def _status_line(status: WorkerStatus) -> str:
    process = f"pid {status.pid}" if status.pid is not None else status.exec_mode or "no process"
    return (
        f"{status.name}: {status.status}, {process}, {status.restarts} restart(s), "
        f"kill_timeout {status.kill_timeout_ms or PM2_DEFAULT_KILL_TIMEOUT_MS} ms"
    )


async def check_target(ctx: StepContext, target: Target, cfg: WorkerConfig) -> str:
    if cfg.queues:
        await require_fit_redis(
            ctx.redis, prefix=ctx.env.prefix, doing=f"a restart of {target.name}"
        )
    status = await target.status()
    if status.status == "missing":
        raise Refused(
            f"{cfg.manager} has no {target.name!r}: start it once under {cfg.manager} first"
        )
    ctx.results["before"] = status
    return _status_line(status)


async def _env_check(ctx: StepContext, target: Target, worker: str, *, skip: bool) -> str:
    release = ctx.results.get("release")
    before: WorkerStatus = ctx.results["before"]
    code_dir = release.path if release is not None else before.cwd
    if code_dir is None:
        return "the app's directory is unknown: nothing to compare"
    return await settle_env_check(ctx, await check_env(target, code_dir), worker, skip=skip)


async def settle_env_check(ctx: StepContext, check: EnvCheck, worker: str, *, skip: bool) -> str:
    """Missing keys stop the plan, or with --skip-env-check are only reported."""
    ctx.validation["env_missing"] = list(check.missing)
    if check.missing and skip:
        await ctx.emit(f"warning: {check.summary()}")
    elif check.missing:
        require_complete(check, worker=worker, env=ctx.env_name)
    return check.summary()


async def _resolve(
    ctx: StepContext, cfg: WorkerConfig, ref: str, build_env: dict[str, str], host: Host
) -> str:
    deploy = cfg.deploy
    assert deploy is not None
    commit = await resolve_ref(
        repo=deploy.repo or deploy.repo_path or "",
        cache_dir=_cache_dir(cfg),
        ref=ref,
        env=build_env,
        timeout_s=deploy.fetch_timeout_s,
        host=host,
    )
    ctx.results["commit"] = commit
    ctx.results["ref"] = ref
    return f"{ref} is {commit[:12]}"


def _cache_dir(cfg: WorkerConfig) -> str:
    deploy = cfg.deploy
    assert deploy is not None
    if deploy.strategy == "releases":
        assert deploy.deploy_path is not None
        return deploy.deploy_path
    assert deploy.repo_path is not None
    return deploy.repo_path


async def _build(
    ctx: StepContext,
    name: str,
    cfg: WorkerConfig,
    request: WorkerRequest,
    build_env: dict[str, str],
    host: Host,
) -> str:
    deploy = cfg.deploy
    assert deploy is not None
    commit = request.commit or ctx.results["commit"]
    ctx.results["commit"] = commit
    if deploy.strategy == "releases":
        assert deploy.deploy_path is not None
        ctx.results["previous_commit"] = await current_commit(deploy.deploy_path, host=host)
    else:
        current = await ctx.store.current_release(ctx.env_name, name)
        ctx.results["previous_commit"] = current.commit if current else None
    release: Release = await prepare_release(
        strategy=deploy.strategy,
        repo=deploy.repo or "",
        deploy_path=deploy.deploy_path,
        repo_path=deploy.repo_path,
        commit=commit,
        build=cfg.build,
        env=build_env,
        timeout_s=deploy.build_timeout_s,
        on_line=ctx.emit,
        host=host,
    )
    await ctx.store.record_release(
        env=ctx.env_name,
        worker=name,
        ref=request.ref or ctx.results.get("ref") or commit,
        commit=commit,
        path=str(release.path),
        now=ctx.clock.now(),
        operation_id=ctx.op_id,
    )
    ctx.results["release"] = release
    ctx.validation["release"] = commit[:12]
    previous = ctx.results["previous_commit"]
    ctx.validation["previous_release"] = previous[:12] if previous else None
    how = "reused" if release.reused else "built"
    return f"{commit[:12]} {how} at {release.path}"


async def _switch(ctx: StepContext, cfg: WorkerConfig, host: Host) -> str:
    deploy = cfg.deploy
    assert deploy is not None and deploy.deploy_path is not None
    commit = ctx.results["commit"]
    previous = await switch_current(deploy_path=deploy.deploy_path, commit=commit, host=host)
    ctx.results["switched_from"] = previous or "none"
    return f"current: {previous[:12] if previous else 'none'} -> {commit[:12]}"


async def _pause(ctx: StepContext, cfg: WorkerConfig) -> str:
    states = await read_states(ctx.redis, prefix=ctx.env.prefix, queues=cfg.queues)
    paused: list[str] = []
    restores: dict[str, int] = {}
    for state in states:
        if state.paused:
            continue  # paused by someone else: not ours to resume
        restores[state.name] = await ctx.record_restore(QUEUE_PAUSED, state.name)
        await pause_queue(ctx.redis, prefix=ctx.env.prefix, queue=state.name)
        paused.append(state.name)
    ctx.results["paused"] = restores
    left = [s.name for s in states if s.paused]
    return f"paused {', '.join(paused) or 'nothing'}" + (
        f"; already paused, left as is: {', '.join(left)}" if left else ""
    )


async def _wait_idle(ctx: StepContext, cfg: WorkerConfig, target: Target) -> str:
    start = next_check = ctx.clock.monotonic()
    last = -1
    while True:
        states = await read_states(ctx.redis, prefix=ctx.env.prefix, queues=cfg.queues)
        active = sum(s.counts.active for s in states)
        if active != last:
            await ctx.emit(f"active jobs: {active}")
            last = active
        if active == 0:
            return f"no active job after {ctx.clock.monotonic() - start:.1f} s"
        if ctx.clock.monotonic() >= next_check:
            # A worker that died (or whose pm2 daemon did) leaves its jobs active until another
            # worker finds them stalled: say so now rather than time out blaming the jobs.
            await _require_running(target, active)
            next_check = ctx.clock.monotonic() + _WORKER_CHECK_S
        if ctx.clock.monotonic() - start >= cfg.active_wait_s:
            raise OperationFailed(
                f"{active} job(s) still active after {cfg.active_wait_s:g} s; a reload now would "
                "kill them mid-run and they would run twice, so nothing was reloaded"
            )
        await ctx.clock.sleep(0.2)


async def _require_running(target: Target, active: int) -> None:
    status = await target.status()  # raises when the process manager itself is gone
    if status.status in ("missing", "stopped", "errored"):
        raise OperationFailed(
            f"{target.name} is {status.status} while {active} job(s) are active: they will "
            "not finish, and come back as stalled once a worker runs; nothing was reloaded"
        )


async def _kill_timeout(ctx: StepContext, cfg: WorkerConfig) -> str:
    before: WorkerStatus = ctx.results["before"]
    longest = 0
    for queue in cfg.queues:
        longest = max(
            longest, await longest_recent_job_ms(ctx.redis, prefix=ctx.env.prefix, queue=queue) or 0
        )
    kill_timeout = before.kill_timeout_ms or PM2_DEFAULT_KILL_TIMEOUT_MS
    if longest and kill_timeout < longest * 1.5:
        raise Refused(
            f"pm2 kill_timeout is {kill_timeout} ms but recent jobs took up to {longest} ms: "
            "a reload would kill jobs mid-run (they would run twice). Raise kill_timeout "
            "or configure quiesce: pause"
        )
    return f"kill_timeout {kill_timeout} ms; longest recent job {longest} ms"


async def _reload(ctx: StepContext, target: Target) -> str:
    ctx.results["cursor"] = await target.log_cursor()
    await target.reload(on_line=ctx.emit)
    return "reload sent"


async def await_ready(ctx: StepContext, cfg: WorkerConfig, target: Target) -> str:
    line = await target.wait_ready(
        cfg.ready_regex,
        since=ctx.results["cursor"],
        timeout_s=cfg.ready_timeout_s,
        on_line=ctx.emit,
    )
    ctx.validation["ready"] = line
    return f"ready: {line}"


async def check_online(ctx: StepContext, target: Target) -> str:
    before: WorkerStatus = ctx.results["before"]
    first = await target.status()
    await ctx.clock.sleep(_SETTLE_S)
    status = await target.status()
    if status.status != "online":
        raise OperationFailed(f"{target.name} is {status.status} after the reload")
    if before.pid is not None and status.pid == before.pid:
        raise OperationFailed(f"{target.name} still runs the old process (pid {status.pid})")
    if status.restarts > first.restarts:
        raise OperationFailed(
            f"{target.name} restarted {status.restarts - first.restarts} time(s) within "
            f"{_SETTLE_S:g} s of becoming ready: it is restart-looping"
        )
    if status.pid is not None:
        ctx.validation["pid"] = status.pid
    return _status_line(status)


async def resume_paused(ctx: StepContext, cfg: WorkerConfig) -> str:
    restores: dict[str, int] = ctx.results.get("paused", {})
    for queue, restore_id in restores.items():
        await resume_queue(ctx.redis, prefix=ctx.env.prefix, queue=queue)
        await ctx.restored(restore_id)
    return f"resumed {', '.join(restores) or 'nothing (none was paused by this operation)'}"


async def check_completing(ctx: StepContext, cfg: WorkerConfig) -> str:
    if not cfg.queues:
        ctx.validation["jobs"] = "no queues configured"
        return "no queues configured for this worker"
    states = await read_states(ctx.redis, prefix=ctx.env.prefix, queues=cfg.queues)
    pending = sum(s.counts.waiting + s.counts.prioritized + s.counts.active for s in states)
    if pending == 0 and cfg.canary is not None:
        return await _canary(ctx, cfg.canary)
    if pending == 0:
        ctx.validation["jobs"] = "no traffic"
        return "no traffic: nothing waiting, so completion cannot be shown (not a failure)"
    before = await _completed_marker(ctx, cfg)
    start = ctx.clock.monotonic()
    while ctx.clock.monotonic() - start < cfg.completing_wait_s:
        await ctx.clock.sleep(0.5)
        done = await _completed_marker(ctx, cfg) - before
        if done > 0:
            ctx.validation["jobs"] = f"completing (+{done})"
            return f"jobs completing: +{done} since the reload"
    raise OperationFailed(
        f"{pending} job(s) waiting but none completed within {cfg.completing_wait_s:g} s"
    )


async def _canary(ctx: StepContext, canary: CanaryConfig) -> str:
    result = await run_canary(
        ctx.redis,
        prefix=ctx.env.prefix,
        queue=canary.queue,
        name=canary.name,
        data=canary.data,
        timeout_s=canary.timeout_s,
    )
    ctx.validation["jobs"] = f"canary {result.job_id} {result.state}"
    if result.state != "completed":
        raise OperationFailed(
            f"canary job {result.job_id} on {canary.queue}: {result.state}: {result.detail}"
        )
    return f"canary job {result.job_id} completed on {canary.queue}"


async def _completed_marker(ctx: StepContext, cfg: WorkerConfig) -> int:
    """Completions so far: the metrics total where workers keep metrics, else the completed set."""
    states = await read_states(ctx.redis, prefix=ctx.env.prefix, queues=cfg.queues)
    return await completions(ctx.redis, prefix=ctx.env.prefix, states=states)


async def _known_good(ctx: StepContext, name: str) -> str:
    commit: str = ctx.results["commit"]
    await ctx.store.mark_deployed(ctx.env_name, name, commit, now=ctx.clock.now())
    await ctx.store.mark_known_good(ctx.env_name, name, commit, by=ctx.actor, now=ctx.clock.now())
    ctx.results["summary"] = f"{name} runs {commit[:12]}, validated and recorded as known-good"
    return f"{commit[:12]} is known-good"


async def _revert(ctx: StepContext, cfg: WorkerConfig, target: Target, host: Host) -> None:
    """After a failed deploy under `releases`, put the previous release back in service."""
    deploy = cfg.deploy
    previous = ctx.results.get("switched_from")
    if deploy is None or deploy.strategy != "releases" or not previous or previous == "none":
        return
    assert deploy.deploy_path is not None
    await ctx.emit(f"switching back to {previous[:12]} and reloading")
    await switch_current(deploy_path=deploy.deploy_path, commit=previous, host=host)
    if "cursor" in ctx.results:
        cursor = await target.log_cursor()
        await target.reload(on_line=ctx.emit)
        await target.wait_ready(cfg.ready_regex, since=cursor, timeout_s=cfg.ready_timeout_s)
    ctx.validation["running"] = previous[:12]
    ctx.validation["reverted"] = True
