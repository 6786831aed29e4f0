"""`chatops`: the runbook's operations from a terminal, for when Slack is down (or not wanted).

Exit codes: 0 done, 1 the operation failed, 2 bad input, configuration or a held lock.
"""

from __future__ import annotations

import asyncio
import gc
import getpass
import json
import logging
import os
import shlex
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot import service
from bot.config import BotSettings, load_config, load_config_file
from bot.engine.recovery import recover_interrupted
from bot.engine.runner import Actor, owner_id
from bot.errors import BadInput, BotError, ConfigError, redis_unreachable
from bot.logs import configure_logging
from bot.runtime import Runtime, open_runtime
from bot.slack.outbox import Outbox
from bot.slack.takeover import tell_in_thread
from bot.store import Store
from bot.windows.messages import span
from bot.windows.schedule import cancel_window, reschedule_window, schedule_window, upcoming
from bot.windows.scheduler import run_due
from commands.console import ConsoleProgress
from commands.grammar import LIMIT, LINES, TIMEOUT_S, check_job_ids

T = TypeVar("T")

app = typer.Typer(
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
queue_app = typer.Typer(help="Queues: status, drain, pause/resume, failed/retry, delayed/promote.")
worker_app = typer.Typer(
    help="Workers under pm2 or systemd: status, logs, restart, deploy, rollback, releases, "
    "env-check, duplicates."
)
ops_app = typer.Typer(help="Operations: history, details, cancel, incidents.")
lock_app = typer.Typer(help="Operation locks.")
config_app = typer.Typer(help="Configuration.")
db_app = typer.Typer(help="The bot's own database.")
redis_app = typer.Typer(help="The Redis of an environment.")
window_app = typer.Typer(
    help="Maintenance windows: schedule, reschedule, list, show, cancel; run-due does what is due."
)
for sub, name in (
    (queue_app, "queue"),
    (worker_app, "worker"),
    (ops_app, "ops"),
    (lock_app, "lock"),
    (config_app, "config"),
    (db_app, "db"),
    (redis_app, "redis"),
    (window_app, "window"),
):
    sub.info.no_args_is_help = True
    app.add_typer(sub, name=name)

# No emoji codes: ":flags:" in a Redis key must stay text.
# Piped output (scripts, CI logs) gets room for its tables instead of rich's 80 columns.
out = Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, emoji=False)

Env = Annotated[str, typer.Option("--env", "-e", help="Environment name from the configuration.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Reason = Annotated[
    str | None, typer.Option("--reason", help="Why; required in protected environments.")
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan and touch nothing.")]
OutsideWindow = Annotated[
    bool,
    typer.Option(
        "--outside-window",
        help="In a protected environment, run although no maintenance window is open "
        "(recorded with the operation).",
    ),
]
SkipEnvCheck = Annotated[
    bool,
    typer.Option(
        "--skip-env-check",
        help="Run even if the worker's environment lacks keys named in .env.example.",
    ),
]
Ref = Annotated[
    str | None,
    typer.Option(
        "--ref",
        help="Branch, tag or commit (default from config); for a Kubernetes worker, "
        "an image tag, digest or reference in its image_repository.",
    ),
]


def _actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return Actor(f"{user}@{socket.gethostname()}", "cli")


def _command_text() -> str:
    return "chatops " + shlex.join(sys.argv[1:])


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def _execute(body: Callable[[Runtime], Awaitable[T]]) -> T:
    """Open the runtime (recovering interrupted operations first), run `body`, map errors."""
    environ = dict(os.environ)

    async def main() -> T:
        async with open_runtime(environ) as rt:
            # A Slack-started operation's thread hears of it (sent by this process's
            # `deliver_slack`, if the command has one, or by the next `chatops serve`).
            told = partial(tell_in_thread, rt.store, Outbox(rt.store, rt.clock))
            for line in await recover_interrupted(rt, on_recovered=told):
                err.print(f"[yellow]recovered:[/yellow] {escape(line)}")
            return await body(rt)

    try:
        configure_logging(BotSettings.from_environ(environ))
        return asyncio.run(main())
    except BotError as exc:
        _fail(str(exc), exc.exit_code)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        # Down or restarting: say so, as Slack does, rather than a traceback.
        _fail(f"{redis_unreachable(exc)}; try again once it is back", 1)
    except KeyboardInterrupt:
        _fail("interrupted; what the operation changed was put back (see chatops ops history)", 1)


def _confirm(rt: Runtime, lines: list[str], yes: bool) -> None:
    out.print("\n".join(escape(line) for line in lines))
    if yes:
        return
    if not sys.stdin.isatty():
        _fail("refusing to run without --yes: no terminal to ask for confirmation", 2)
    if not typer.confirm("Run it?", default=False):
        _fail("not run", 2)


def _operate(
    req: service.OperationRequest, *, yes: bool, reason: str | None, dry_run: bool = False
) -> None:
    command = _command_text()

    async def body(rt: Runtime) -> int:
        plan = await service.plan_for(rt, req)
        env = rt.config.env(req.env)
        lines = plan.describe()
        if env.protected:
            lines.append(f"  {req.env} is protected: this is a break-glass action, audited")
        if dry_run:
            out.print("\n".join(escape(line) for line in ["(dry run) " + lines[0], *lines[1:]]))
            return 0
        if env.protected and not reason:
            _fail(f"{req.env} is protected: say why with --reason", 2)
        _confirm(rt, lines, yes)
        async with ConsoleProgress(out) as progress:
            outcome = await service.run(
                rt, plan, actor=_actor(), command=command, reason=reason, sink=progress
            )
        if outcome.validation:
            out.print("validation: " + escape(_validation_text(outcome.validation)))
        await service.deliver_slack(rt)
        return 0 if outcome.ok else 1

    code = _execute(body)
    if code:
        raise typer.Exit(code)


def _validation_text(validation: dict[str, object]) -> str:
    parts = []
    for key, value in validation.items():
        if isinstance(value, dict):
            value = " ".join(f"{k} {v}" for k, v in value.items())
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


# ---- queue ------------------------------------------------------------------------------------


@queue_app.command("status")
def queue_status(
    env: Env,
    queue: Annotated[
        str | None, typer.Argument(help="One queue; all configured when omitted.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Counts of one queue or all configured queues, and whether they are paused."""

    async def body(rt: Runtime) -> None:
        states = await service.queue_states(rt, env, None if queue == "all" else queue)
        if as_json:
            _print_json({"env": env, "queues": [service.as_json_counts(s) for s in states]})
            return
        table = Table(title=f"queues in {env}")
        for col in (
            "queue",
            "paused",
            "waiting",
            "active",
            "delayed",
            "prioritized",
            "children",
            "failed",
            "completed",
        ):
            table.add_column(col, justify="left" if col == "queue" else "right")
        for s in states:
            c = s.counts
            table.add_row(
                s.name,
                "yes" if s.paused else "no",
                *map(
                    str,
                    (
                        c.waiting,
                        c.active,
                        c.delayed,
                        c.prioritized,
                        c.waiting_children,
                        c.failed,
                        c.completed,
                    ),
                ),
            )
        out.print(table)

    _execute(body)


@queue_app.command("drain")
def queue_drain(
    queue: str,
    env: Env,
    timeout_s: Annotated[
        float | None,
        typer.Option(
            "--timeout-s",
            min=TIMEOUT_S[0],
            max=TIMEOUT_S[1],
            help="Give up after this long (default from config, 300).",
        ),
    ] = None,
    yes: Yes = False,
    reason: Reason = None,
) -> None:
    """Producers off, let the workers empty QUEUE (or `all`: every queue of ENV, as one
    operation), producers back on. Deletes no job."""
    _operate(
        service.OperationRequest("drain", env, queue, timeout_s=timeout_s), yes=yes, reason=reason
    )


@queue_app.command("pause")
def queue_pause(queue: str, env: Env, yes: Yes = False, reason: Reason = None) -> None:
    """Stop workers taking new jobs from QUEUE; jobs stay queued, active ones finish."""
    _operate(service.OperationRequest("pause", env, queue), yes=yes, reason=reason)


@queue_app.command("resume")
def queue_resume(queue: str, env: Env, yes: Yes = False, reason: Reason = None) -> None:
    """Let workers take jobs from QUEUE again."""
    _operate(service.OperationRequest("resume", env, queue), yes=yes, reason=reason)


@queue_app.command("failed")
def queue_failed(
    queue: str,
    env: Env,
    limit: Annotated[int, typer.Option("--limit", min=LIMIT[0], max=LIMIT[1])] = 20,
    as_json: Json = False,
) -> None:
    """Failed jobs of QUEUE, newest first, with the first line of their error."""

    async def body(rt: Runtime) -> None:
        jobs = await service.queue_failed(rt, env, queue, limit)
        if as_json:
            _print_json(
                [job.__dict__ if hasattr(job, "__dict__") else _asdict(job) for job in jobs]
            )
            return
        table = Table(title=f"failed jobs of {queue} in {env}")
        for col in ("id", "name", "attempts", "failed at", "reason"):
            table.add_column(col)
        for job in jobs:
            table.add_row(
                job.id,
                job.name,
                str(job.attempts_made),
                _when(job.finished_on),
                job.failed_reason_first_line,
            )
        out.print(table if jobs else f"no failed jobs in {queue}")

    _execute(body)


@queue_app.command("retry")
def queue_retry(
    queue: str,
    env: Env,
    job_ids: Annotated[list[str] | None, typer.Argument(help="Failed job ids.")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every failed job.")] = False,
    yes: Yes = False,
    reason: Reason = None,
) -> None:
    """Move failed jobs of QUEUE (the given ids, or --all) back to waiting."""
    ids = _ids_or_flag(job_ids, all_jobs, "--all")
    _operate(
        service.OperationRequest("retry", env, queue, job_ids=ids, all_jobs=all_jobs),
        yes=yes,
        reason=reason,
    )


@queue_app.command("delayed")
def queue_delayed(
    queue: str,
    env: Env,
    limit: Annotated[int, typer.Option("--limit", min=LIMIT[0], max=LIMIT[1])] = 50,
    as_json: Json = False,
) -> None:
    """Delayed jobs of QUEUE with their due times; job schedulers (repeatable jobs) apart."""

    async def body(rt: Runtime) -> None:
        listing = await service.queue_delayed(rt, env, queue, limit)
        if as_json:
            _print_json(_asdict(listing))
            return
        table = Table(title=f"delayed jobs of {queue} in {env}")
        for col in ("id", "name", "due", "overdue"):
            table.add_column(col)
        for job in listing.jobs:
            table.add_row(job.id, job.name, _when(job.due_at), "yes" if job.overdue else "")
        out.print(table if listing.jobs else f"no delayed jobs in {queue}")
        if listing.schedulers:
            sched = Table(title="job schedulers (repeatable jobs)")
            for col in ("key", "next run"):
                sched.add_column(col)
            for entry in listing.schedulers:
                sched.add_row(entry.key, _when(entry.next_at))
            out.print(sched)

    _execute(body)


@queue_app.command("promote")
def queue_promote(
    queue: str,
    env: Env,
    job_ids: Annotated[list[str] | None, typer.Argument(help="Delayed job ids.")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only jobs already due.")] = False,
    yes: Yes = False,
    reason: Reason = None,
) -> None:
    """Move delayed jobs of QUEUE (the given ids, or --overdue ones) to waiting now."""
    ids = _ids_or_flag(job_ids, overdue, "--overdue")
    _operate(
        service.OperationRequest("promote", env, queue, job_ids=ids, all_jobs=overdue),
        yes=yes,
        reason=reason,
    )


def _ids_or_flag(ids: list[str] | None, flag: bool, name: str) -> tuple[str, ...]:
    if bool(ids) == flag:
        _fail(f"give job ids or {name}, not both and not neither", 2)
    try:
        return check_job_ids(ids or [])
    except BotError as exc:
        _fail(str(exc), exc.exit_code)


def _asdict(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _asdict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_asdict(v) for v in obj]
    return obj


# ---- worker -----------------------------------------------------------------------------------


@redis_app.command("check")
def redis_check(env: Env, as_json: Json = False) -> None:
    """Whether Redis suits BullMQ and the bot: latency, user, permissions, eviction, memory."""

    async def body(rt: Runtime) -> bool:
        report = await service.redis_check(rt, env)
        if as_json:
            _print_json({"env": env, **report.as_json()})
            return report.ok
        styles = {"ok": "green", "warn": "yellow", "fail": "red", "info": "cyan"}
        for finding in report.findings:
            style = styles[finding.level]
            out.print(
                f"[{style}]{finding.level:>4}[/{style}]  {finding.check}: {escape(finding.detail)}"
            )
        return report.ok

    if not _execute(body):
        raise typer.Exit(1)


@worker_app.command("status")
def worker_status(worker: str, env: Env, as_json: Json = False) -> None:
    """The worker's process under pm2 or systemd: state, pid, restarts, uptime, memory."""

    async def body(rt: Runtime) -> None:
        status = await service.worker_status(rt, env, worker)
        if as_json:
            _print_json(_asdict(status))
            return
        for key, value in _asdict(status).items():
            out.print(f"{key:18} {value}")

    _execute(body)


@worker_app.command("logs")
def worker_logs(
    worker: str,
    env: Env,
    lines: Annotated[int, typer.Option("--lines", min=LINES[0], max=LINES[1])] = 50,
) -> None:
    """The last lines of the worker's output, secrets redacted."""

    async def body(rt: Runtime) -> None:
        for line in await service.worker_logs(rt, env, worker, lines):
            out.print(escape(line))

    _execute(body)


@worker_app.command("restart")
def worker_restart(
    worker: str,
    env: Env,
    skip_env_check: SkipEnvCheck = False,
    outside_window: OutsideWindow = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    reason: Reason = None,
) -> None:
    """Reload the running release: quiesce, reload, wait for readiness, resume, validate."""
    _operate(
        service.OperationRequest(
            "restart",
            env,
            worker,
            skip_env_check=skip_env_check,
            outside_window=outside_window,
        ),
        yes=yes,
        reason=reason,
        dry_run=dry_run,
    )


@worker_app.command("deploy")
def worker_deploy(
    worker: str,
    env: Env,
    ref: Ref = None,
    skip_env_check: SkipEnvCheck = False,
    outside_window: OutsideWindow = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    reason: Reason = None,
) -> None:
    """Build REF in its own release (Kubernetes: set the image), restart onto it, record it
    known-good."""
    _operate(
        service.OperationRequest(
            "deploy",
            env,
            worker,
            ref=ref,
            skip_env_check=skip_env_check,
            outside_window=outside_window,
        ),
        yes=yes,
        reason=reason,
        dry_run=dry_run,
    )


@worker_app.command("build")
def worker_build(
    worker: str,
    env: Env,
    ref: Ref = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    reason: Reason = None,
) -> None:
    """Build REF in its own release without touching what runs (first install: make it current)."""
    _operate(
        service.OperationRequest("build", env, worker, ref=ref),
        yes=yes,
        reason=reason,
        dry_run=dry_run,
    )


@worker_app.command("rollback")
def worker_rollback(
    worker: str,
    env: Env,
    to: Annotated[
        str | None, typer.Option("--to", help="A recorded release (default: last known-good).")
    ] = None,
    skip_env_check: SkipEnvCheck = False,
    outside_window: OutsideWindow = False,
    dry_run: DryRun = False,
    yes: Yes = False,
    reason: Reason = None,
) -> None:
    """Go back to the last known-good release (or --to), then restart and validate."""
    _operate(
        service.OperationRequest(
            "rollback",
            env,
            worker,
            ref=to,
            skip_env_check=skip_env_check,
            outside_window=outside_window,
        ),
        yes=yes,
        reason=reason,
        dry_run=dry_run,
    )


@worker_app.command("env-check")
def worker_env_check(worker: str, env: Env, as_json: Json = False) -> None:
    """Keys of the worker's live environment against its .env.example (names only, no values)."""

    async def body(rt: Runtime) -> bool:
        check = await service.worker_env_check(rt, env, worker)
        if as_json:
            _print_json(
                {
                    "env": env,
                    "worker": worker,
                    "example": check.example,
                    "found": check.found,
                    "missing": list(check.missing),
                    "extra": list(check.extra),
                }
            )
        else:
            out.print(escape(check.summary()))
        return not check.missing

    if not _execute(body):
        raise typer.Exit(1)


@worker_app.command("duplicates")
def worker_duplicates(
    worker: str,
    env: Env,
    hours: Annotated[
        float | None, typer.Option("--hours", min=0.01, help="Look back this far (default 24).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Notification tokens seen more than once lately, read-only, in the worker's database."""

    async def body(rt: Runtime) -> None:
        report = await service.worker_duplicates(rt, env, worker, hours=hours)
        if as_json:
            _print_json({"env": env, "worker": worker, **_asdict(report)})
            return
        out.print(escape(report.summary()))
        for value, copies in report.top:
            out.print(f"  {escape(value)}  ×{copies}")

    _execute(body)


@worker_app.command("releases")
def worker_releases(worker: str, env: Env, as_json: Json = False) -> None:
    """Releases built for the worker, newest first, with the known-good ones marked."""

    async def body(rt: Runtime) -> None:
        releases = await service.worker_releases(rt, env, worker)
        if as_json:
            _print_json(_asdict(releases))
            return
        table = Table(title=f"releases of {worker} in {env}")
        for col in ("commit", "ref", "built", "deployed", "known-good"):
            table.add_column(col)
        for r in releases:
            table.add_row(
                r.commit[:12],
                r.ref,
                _when(r.built_at),
                _when(r.deployed_at),
                "yes" if r.known_good else "",
            )
        out.print(table if releases else f"no releases recorded for {worker} in {env}")

    _execute(body)


@worker_app.command("mark-good")
def worker_mark_good(worker: str, ref: str, env: Env) -> None:
    """Record a release (ref or commit prefix; for Kubernetes, an image) as known-good."""

    async def body(rt: Runtime) -> None:
        release = await service.mark_good(rt, env, worker, ref, actor=_actor())
        out.print(
            f"{release.commit[:12]} ({escape(release.ref)}) is known-good for {worker} in {env}"
        )

    _execute(body)


# ---- ops, lock, config, db --------------------------------------------------------------------


@ops_app.command("history")
def ops_history(
    limit: Annotated[int, typer.Option("--limit", min=LIMIT[0], max=LIMIT[1])] = 20,
    env: Annotated[str | None, typer.Option("--env", "-e")] = None,
    as_json: Json = False,
) -> None:
    """Recent operations, newest first."""

    async def body(rt: Runtime) -> None:
        ops = await service.history(rt, limit=limit, env=env)
        if as_json:
            _print_json(
                [
                    {
                        "id": op.id,
                        "kind": op.kind,
                        "env": op.env,
                        "target": op.target,
                        "actor": op.actor,
                        "source": op.source,
                        "outcome": op.state,
                        "summary": op.summary,
                        "started_at": op.started_at.isoformat(),
                        "finished_at": op.finished_at.isoformat() if op.finished_at else None,
                    }
                    for op in ops
                ]
            )
            return
        table = Table(title="operations")
        for col in ("id", "kind", "env", "target", "actor", "outcome", "started", "summary"):
            table.add_column(col)
        for op in ops:
            table.add_row(
                op.id,
                op.kind,
                op.env,
                op.target,
                op.actor,
                op.state,
                _when(op.started_at),
                op.summary or "",
            )
        out.print(table if ops else "no operations recorded")

    _execute(body)


@ops_app.command("incidents")
def ops_incidents(
    limit: Annotated[int, typer.Option("--limit", min=LIMIT[0], max=LIMIT[1])] = 20,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    as_json: Json = False,
) -> None:
    """Rollbacks and failed restarts, newest first: who, when, from and to which release."""

    async def body(rt: Runtime) -> None:
        records = await service.incidents(rt, limit=limit, env=env)
        if as_json:
            _print_json([_asdict(r) for r in records])
            return
        table = Table(title="incidents")
        for col in ("#", "when", "what", "worker", "env", "by", "outcome", "releases", "operation"):
            table.add_column(col)
        for r in records:
            table.add_row(
                str(r.id),
                _when(r.created_at),
                r.kind,
                r.worker,
                r.env,
                r.actor,
                r.outcome,
                f"{r.from_release or '?'} -> {r.to_release or '?'}",
                r.operation_id or "-",
            )
        out.print(table)

    _execute(body)


@ops_app.command("show")
def ops_show(op_id: str, as_json: Json = False) -> None:
    """One operation: its plan, each step's state and output, and its audit trail."""

    async def body(rt: Runtime) -> None:
        op, audit = await service.show(rt, op_id)
        if as_json:
            _print_json({**_asdict(op), "audit": _asdict(audit)})
            return
        out.print(f"[bold]{op.id}[/bold] {op.kind} {escape(op.target)} in {op.env}: {op.state}")
        out.print(
            f"by {escape(op.actor)} ({op.source}) at {_when(op.started_at)}: {escape(op.command)}"
        )
        if op.reason:
            out.print(f"reason: {escape(op.reason)}")
        for step in op.steps:
            out.print(f"  {step.index + 1}. [{step.state}] {escape(step.name)}")
            if step.error:
                out.print(f"     error: {escape(step.error)}")
            for line in (step.output or "").splitlines()[-10:]:
                out.print(f"     {escape(line)}", style="dim")
        out.print(f"outcome: {escape(op.summary or '-')}")
        for event in audit:
            out.print(
                f"audit {_when(event.at)} {event.kind} {event.outcome} by {escape(event.actor)}"
            )

    _execute(body)


@ops_app.command("cancel")
def ops_cancel(op_id: str) -> None:
    """Ask a running operation to stop at its next safe point and put back what it changed."""

    async def body(rt: Runtime) -> None:
        op = await service.cancel(rt, op_id, actor=_actor())
        out.print(f"cancel requested for {op.id} ({op.kind} {escape(op.target)} in {op.env})")

    _execute(body)


@lock_app.command("release")
def lock_release(
    key: str, reason: Annotated[str, typer.Option("--reason", help="Why the holder is gone.")]
) -> None:
    """Free a lock whose holder is gone (audited)."""

    async def body(rt: Runtime) -> None:
        info = await service.release_lock(rt, key, reason=reason, actor=_actor())
        holder = escape(info.holder)
        out.print(f"released {escape(key)} (was held by {holder}, operation {info.operation_id})")

    _execute(body)


@config_app.command("check")
def config_check(
    file: Annotated[
        Path | None, typer.Argument(help="YAML file (default: $CHATOPS_CONFIG).")
    ] = None,
) -> None:
    """Validate a configuration file and name every bad key and why."""
    environ = dict(os.environ)
    try:
        settings = BotSettings.from_environ(environ)
        config = load_config_file(file, environ=environ) if file else load_config(settings, environ)
    except ConfigError as exc:
        _fail(str(exc), 2)
    for name, env in config.environments.items():
        workers = ", ".join(env.workers) or "no workers"
        out.print(f"{name}: prefix {env.prefix}, queues {', '.join(env.queues)}; {workers}")
    out.print("configuration is valid")


@app.command("serve")
def serve(
    port: Annotated[int, typer.Option("--port", help="HTTP port for Slack's requests.")] = 3000,
    host: Annotated[str, typer.Option("--host")] = "0.0.0.0",
    socket_mode: Annotated[
        bool, typer.Option("--socket", help="Socket Mode (SLACK_APP_TOKEN) instead of HTTP.")
    ] = False,
) -> None:
    """Run the Slack bot: HTTP on /slack/events (plus /healthz, /readyz), or Socket Mode."""
    from bot.slack.app import build_bot, serve_http, serve_socket

    environ = dict(os.environ)

    async def main() -> None:
        async with open_runtime(environ) as rt:
            bot = build_bot(rt)
            # What a killed replica left is told in its Slack thread, as a running replica's
            # takeover does (once the outbox sender runs), not only here on stderr.
            for line in await recover_interrupted(rt, on_recovered=bot.tell_takeover):
                err.print(f"[yellow]recovered:[/yellow] {escape(line)}")
            # What start-up allocated lives as long as the process: keep the collector off it,
            # so full collections stay short on the ack path.
            gc.freeze()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, bot.stop.set)
            if socket_mode:
                await serve_socket(bot)
            else:
                await serve_http(bot, host=host, port=port)

    try:
        configure_logging(BotSettings.from_environ(environ), level=logging.INFO)
        asyncio.run(main())
    except BotError as exc:
        _fail(str(exc), exc.exit_code)


@app.command("console")
def console_command(
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Environment (default: the only one configured)."),
    ] = None,
    no_live: Annotated[
        bool, typer.Option("--no-live", help="Plain lines, no live regions (for pipes and logs).")
    ] = False,
) -> None:
    """Type slash commands in a terminal: the Slack door's answers, modals and progress here."""
    from bot.console.repl import run_console

    environ = dict(os.environ)
    try:
        configure_logging(BotSettings.from_environ(environ))
        code = asyncio.run(run_console(environ, env=env, console=out, live=not no_live))
    except BotError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; a running operation puts back what it changed (chatops ops history)", 1)
    if code:
        raise typer.Exit(code)


@app.command("manifest")
def manifest(
    http_url: Annotated[
        str | None,
        typer.Option("--http-url", help="Public base URL: prints the HTTP-mode manifest."),
    ] = None,
) -> None:
    """Print the Slack app manifest (Socket Mode, or HTTP mode with --http-url)."""
    from bot.slack.manifest import dump, http_manifest, load_manifest

    try:
        data = http_manifest(http_url) if http_url else load_manifest()
    except BotError as exc:
        _fail(str(exc), exc.exit_code)
    sys.stdout.write(dump(data))


@window_app.command("schedule")
def window_schedule(
    env: Annotated[str, typer.Argument(help="The environment.")],
    when: Annotated[
        str,
        typer.Argument(
            help="ISO date-time, HH:MM [today|tomorrow] or 'in 2h' (quote what has spaces)."
        ),
    ],
    duration: Annotated[str, typer.Argument(help="30m, 2h, 1h30m.")],
    reason: Annotated[list[str] | None, typer.Argument(help="Why (shown to everyone).")] = None,
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Time zone of WHEN (default: windows.timezone, else UTC)."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Schedule a maintenance window: announced now, reminders before, flag set while open."""

    async def body(rt: Runtime) -> None:
        window = await schedule_window(
            rt,
            env=env,
            when=when,
            duration=duration,
            reason=" ".join(reason or ()),
            actor=_actor(),
            timezone=tz,
        )
        await service.deliver_slack(rt)
        if as_json:
            _print_json(_asdict(window))
            return
        out.print(f"window {window.id} in {env}: {escape(span(window))}")

    _execute(body)


@window_app.command("reschedule")
def window_reschedule(
    window_id: Annotated[str, typer.Argument(help="The window (see window list).")],
    when: Annotated[
        str,
        typer.Argument(
            help="New start: ISO date-time, HH:MM [today|tomorrow] or 'in 2h' (quoted)."
        ),
    ],
    duration: Annotated[
        str | None, typer.Argument(help="New length (30m, 2h); default: unchanged.")
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Time zone of WHEN (default: the window's own)."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Move a window not open yet: its announcement is updated in place, reminders follow."""

    async def body(rt: Runtime) -> None:
        window = await reschedule_window(
            rt, window_id, when=when, duration=duration, actor=_actor(), timezone=tz
        )
        await service.deliver_slack(rt)
        if as_json:
            _print_json(_asdict(window))
            return
        out.print(f"window {window.id} in {window.env}: {escape(span(window))}")

    _execute(body)


@window_app.command("list")
def window_list(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    as_json: Json = False,
) -> None:
    """Windows not over yet, soonest first."""

    async def body(rt: Runtime) -> None:
        windows = await upcoming(rt, env=env, now=rt.clock.now())
        if as_json:
            _print_json([_asdict(w) for w in windows])
            return
        table = Table(title="maintenance windows")
        for col in ("id", "env", "when", "state", "reason", "by"):
            table.add_column(col)
        for w in windows:
            table.add_row(w.id, w.env, span(w), w.state, w.reason, w.created_by)
        out.print(table if windows else "no window ahead")

    _execute(body)


@window_app.command("show")
def window_show(window_id: str, as_json: Json = False) -> None:
    """One window and what the scheduler did for it."""

    async def body(rt: Runtime) -> None:
        window = await rt.store.window(window_id)
        if window is None:
            raise BadInput(f"no window {window_id!r}; see chatops window list")
        notices = await rt.store.notices_of(window_id)
        planned = [
            {
                "approval": p.id,
                "command": p.command,
                "requester": p.requester,
                "state": p.state,
                "approvals": f"{len(p.approvers)}/{p.needed}",
                "operation": p.operation_id,
            }
            for p in await rt.store.planned_for(window_id)
        ]
        if as_json:
            notices_json = [{"kind": k, "outcome": o} for k, o in notices]
            _print_json({**_asdict(window), "notices": notices_json, "planned": planned})
            return
        out.print(f"{window.id} in {window.env}: {escape(span(window))} ({window.state})")
        for kind, outcome in notices:
            out.print(f"  {kind}: {outcome or 'pending'}")
        for p in planned:
            ran = f", ran as {p['operation']}" if p["operation"] else ""
            out.print(
                f"  planned {p['approval']}: {escape(str(p['command']))} by {p['requester']}"
                f" ({p['state']}, {p['approvals']} approvals{ran})"
            )

    _execute(body)


@window_app.command("cancel")
def window_cancel(window_id: str) -> None:
    """Cancel a window: its announcement says so; an open one closes now (flag cleared)."""

    async def body(rt: Runtime) -> None:
        window = await cancel_window(rt, window_id, actor=_actor())
        await service.deliver_slack(rt)
        out.print(f"window {window.id} in {window.env} cancelled")

    _execute(body)


@window_app.command("run-due")
def window_run_due(
    now: Annotated[
        datetime | None,
        typer.Option("--now", hidden=True, help="Pretend it is this time (tests)."),
    ] = None,
) -> None:
    """Do what is due for windows now (announcements, reminders, open, close), once: what
    `chatops serve` does at each due time, for when it is not running."""

    async def body(rt: Runtime) -> None:
        at = (now if now.tzinfo else now.replace(tzinfo=UTC)) if now else rt.clock.now()
        done = await run_due(rt, now=at, claimer=owner_id())
        await service.deliver_slack(rt)
        for item in done:
            out.print(f"{item.window} {item.kind}: {item.outcome}")
        if not done:
            out.print("nothing due")

    _execute(body)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the bot's database to the latest schema."""
    environ = dict(os.environ)

    async def main() -> None:
        settings = BotSettings.from_environ(environ)
        url = settings.database_url(environ)
        if url.startswith("sqlite") and not settings.CHATOPS_DATABASE_URL:
            settings.state_dir(environ).mkdir(parents=True, exist_ok=True)
        store = await Store.open(url)
        try:
            await store.upgrade()
        finally:
            await store.close()

    try:
        asyncio.run(main())
    except BotError as exc:
        _fail(str(exc), exc.exit_code)
    out.print("database is at the latest schema")


def main(argv: Sequence[str] | None = None) -> None:
    app(args=list(argv) if argv is not None else None, prog_name="chatops")
