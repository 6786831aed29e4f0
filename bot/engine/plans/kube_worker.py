"""Restart, deploy and roll back a worker that runs as a Kubernetes Deployment.

The same shape as under pm2 (check, compare the environment, quiesce, change, prove ready,
resume, validate), with a release being an image: a deploy sets it, a rollback puts back the
template of the ReplicaSet that ran the known-good image, and a failed deploy or rollback is
undone the same way to the image that ran before.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.config import EnvironmentConfig, WorkerConfig
from bot.engine.context import StepContext
from bot.engine.plan import Plan, Step
from bot.engine.plans.worker import (
    WorkerRequest,
    await_ready,
    check_online,
    check_target,
    quiesce_steps,
    release_change,
    resume_steps,
    settle_env_check,
)
from bot.envcheck import check_env_at_ref
from bot.errors import BadInput
from bot.targets.kube import KubeTarget
from bot.targets.kube_objects import image_for, image_key, image_tag


def kube_worker_plan(
    env_name: str,
    env: EnvironmentConfig,
    request: WorkerRequest,
    *,
    target: KubeTarget,
    build_env: Mapping[str, str],
) -> Plan:
    name = request.worker
    cfg = env.worker(name, env=env_name)
    image = request.image
    if request.kind == "deploy":
        image = image_for(request.ref or "", cfg.image_repository)
    if request.kind in ("deploy", "rollback") and image is None:
        raise BadInput(f"{request.kind} of {name}: which image?")
    where = f"{target.name} in namespace {cfg.namespace}"
    steps = [
        Step(f"check {where}", lambda ctx: check_target(ctx, target, cfg), 30),
        Step(
            "note the image running now",
            lambda ctx: _running_image(ctx, target),
            30,
        ),
        Step(
            "compare the Deployment's environment with .env.example"
            + (" (a mismatch is reported, not refused)" if request.skip_env_check else ""),
            lambda ctx: _env_check(
                ctx, name, cfg, target, image, build_env, skip=request.skip_env_check
            ),
            60,
        ),
        *quiesce_steps(cfg, target),
        Step(
            _change_name(request.kind, target, image),
            lambda ctx: _change(ctx, name, request.kind, target, image),
            30,
            cancellable=False,
        ),
        Step(
            f"wait for the rollout and /{cfg.ready_pattern}/ in every new pod's log "
            f"(up to {cfg.ready_timeout_s:g} s)",
            lambda ctx: await_ready(ctx, cfg, target),
            cfg.ready_timeout_s + 10,
        ),
        Step(
            f"check the pods of {target.name} are ready and not restart-looping",
            lambda ctx: check_online(ctx, target),
            30,
        ),
    ]
    steps += resume_steps(cfg)
    if request.kind in ("deploy", "rollback"):
        steps.append(Step("record the image as known-good", lambda ctx: _known_good(ctx, name), 15))

    async def undo(ctx: StepContext) -> None:
        await _undo(ctx, cfg, target)

    details = [
        f"Deployment {cfg.app} in namespace {cfg.namespace}; queues "
        f"{', '.join(cfg.queues) or 'none configured'}",
        "quiesce: pause the queues and wait for active jobs"
        if cfg.quiesce == "pause" and cfg.queues
        else "quiesce: none (old pods get SIGTERM and their grace period)",
    ]
    details.append(release_change(request, to=image, what="image"))
    return Plan(
        kind=request.kind,
        env=env_name,
        target=name,
        steps=tuple(steps),
        locks=(f"worker:{name}", *(f"queue:{q}" for q in cfg.queues)),
        details=tuple(details),
        on_failure=undo if request.kind in ("deploy", "rollback") else None,
        params={"worker": name, "ref": request.ref, "image": image},
    )


def _change_name(kind: str, target: KubeTarget, image: str | None) -> str:
    if kind == "deploy":
        return f"set the image of {target.name} to {image}"
    if kind == "rollback":
        return f"undo {target.name} to the revision that ran {image}"
    return f"rollout restart {target.name}"


async def _running_image(ctx: StepContext, target: KubeTarget) -> str:
    running = await target.current_image()
    ctx.results["previous_image"] = running
    ctx.validation["previous_release"] = running
    return f"running {running}"


async def _env_check(
    ctx: StepContext,
    name: str,
    cfg: WorkerConfig,
    target: KubeTarget,
    image: str | None,
    build_env: Mapping[str, str],
    *,
    skip: bool,
) -> str:
    image = image or ctx.results["previous_image"]
    tag = image_tag(image)
    if cfg.source_repo is None:
        return "no source_repo configured for this worker: nothing to compare"
    if tag is None:
        return f"{image} has no tag to find its .env.example by: nothing to compare"
    check = await check_env_at_ref(target, repo=cfg.source_repo, ref=tag, env=build_env)
    return await settle_env_check(ctx, check, name, skip=skip)


async def _change(
    ctx: StepContext, name: str, kind: str, target: KubeTarget, image: str | None
) -> str:
    ctx.results["cursor"] = await target.log_cursor()
    if kind == "restart":
        await target.reload(on_line=ctx.emit)
        return "restartedAt set on the pod template"
    assert image is not None
    ctx.results["image"] = image
    if kind == "deploy":
        await ctx.store.record_release(
            env=ctx.env_name,
            worker=name,
            ref=image,
            commit=image_key(image),
            path=image,
            now=ctx.clock.now(),
            operation_id=ctx.op_id,
        )
        await target.set_image(image)
        ctx.results["changed"] = True
        ctx.validation["release"] = image
        return f"image set to {image}"
    revision = await target.undo_to(image)
    ctx.results["changed"] = True
    ctx.validation["release"] = image
    return f"template of revision {revision} ({image}) put back"


async def _known_good(ctx: StepContext, name: str) -> str:
    image: str = ctx.results["image"]
    key = image_key(image)
    await ctx.store.mark_deployed(ctx.env_name, name, key, now=ctx.clock.now())
    await ctx.store.mark_known_good(ctx.env_name, name, key, by=ctx.actor, now=ctx.clock.now())
    ctx.results["summary"] = f"{name} runs {image}, validated and recorded as known-good"
    return f"{image} is known-good"


async def _undo(ctx: StepContext, cfg: WorkerConfig, target: KubeTarget) -> None:
    """After a failed deploy or rollback, put the image that ran before back in service."""
    previous = ctx.results.get("previous_image")
    if not ctx.results.get("changed") or not previous:
        return
    await ctx.emit(f"undoing {target.name} to {previous}")
    cursor = await target.log_cursor()
    await target.undo_to(previous)
    await target.wait_ready(cfg.ready_regex, since=cursor, timeout_s=cfg.ready_timeout_s)
    ctx.validation["running"] = previous
    ctx.validation["reverted"] = True
