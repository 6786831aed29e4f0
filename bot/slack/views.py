"""Answers to read-only commands, as `respond()` arguments (text plus blocks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from bot import service
from bot.runtime import Runtime
from bot.slack.blocks import as_dicts, code_sections, escape, section
from commands.grammar import Parsed


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


async def query_answer(rt: Runtime, parsed: Parsed, env: str) -> dict[str, Any]:
    title, lines = await _lines(rt, parsed, env)
    text = f"{title}\n" + "\n".join(lines)
    if len(text) > 3000:  # the notification's text; the blocks carry the whole answer
        text = text[:2990] + "\n…"
    keep: Literal["head", "tail"] = "tail" if parsed.action == "logs" else "head"
    blocks = [section(f"*{escape(title)}*")]
    blocks += [section(chunk) for chunk in code_sections(lines, keep=keep)]
    return {"response_type": "ephemeral", "text": text, "blocks": as_dicts(blocks)}


async def _lines(rt: Runtime, parsed: Parsed, env: str) -> tuple[str, list[str]]:
    key = (parsed.command, parsed.action)
    target = parsed.target or ""
    if key == ("queue", "status"):
        states = await service.queue_states(rt, env, None if target in ("", "all") else target)
        rows = [
            [
                "queue",
                "paused",
                "waiting",
                "active",
                "delayed",
                "prioritized",
                "failed",
                "completed",
            ]
        ]
        for s in states:
            c = s.counts
            rows.append(
                [
                    s.name,
                    "yes" if s.paused else "no",
                    *map(
                        str, (c.waiting, c.active, c.delayed, c.prioritized, c.failed, c.completed)
                    ),
                ]
            )
        return f"queues in {env}", _table(rows)
    if key == ("queue", "failed"):
        jobs = await service.queue_failed(rt, env, target, parsed.limit or 20)
        return f"failed jobs of {target} in {env}", [
            f"{j.id}  {j.name}  {_when(j.finished_on)}  {j.failed_reason_first_line}" for j in jobs
        ] or ["none"]
    if key == ("queue", "delayed"):
        listing = await service.queue_delayed(rt, env, target, parsed.limit or 50)
        lines = [
            f"{j.id}  {j.name}  due {_when(j.due_at)}{'  OVERDUE' if j.overdue else ''}"
            for j in listing.jobs
        ] or ["no delayed jobs"]
        lines += [f"scheduler {s.key}: next {_when(s.next_at)}" for s in listing.schedulers]
        return f"delayed jobs of {target} in {env}", lines
    if key == ("queue", "redis-check"):
        report = await service.redis_check(rt, env)
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "info": "info"}
        verdict = "fit for BullMQ" if report.ok else "NOT fit for BullMQ"
        return f"Redis of {env}: {verdict}", [
            f"{marks[f.level]}  {f.check}: {f.detail}" for f in report.findings
        ]
    if key == ("worker", "status"):
        status = await service.worker_status(rt, env, target)
        return f"{target} in {env}", [
            f"{status.name}: {status.status}, pid {status.pid}, {status.restarts} restart(s)",
            f"uptime {status.uptime_s} s, memory {status.memory_bytes} bytes, "
            f"kill_timeout {status.kill_timeout_ms} ms",
        ]
    if key == ("worker", "logs"):
        return f"last log lines of {target} in {env}", await service.worker_logs(
            rt, env, target, parsed.lines or 50
        )
    if key == ("worker", "env-check"):
        check = await service.worker_env_check(rt, env, target)
        return f"environment of {target} in {env}", [check.summary()]
    if key == ("worker", "duplicates"):
        duplicates = await service.worker_duplicates(rt, env, target)
        return f"duplicate notifications of {target} in {env}", [duplicates.summary()] + [
            f"{value}  ×{copies}" for value, copies in duplicates.top
        ]
    if key == ("worker", "releases"):
        releases = await service.worker_releases(rt, env, target)
        return f"releases of {target} in {env}", [
            f"{r.commit[:12]}  {r.ref}  deployed {_when(r.deployed_at)}"
            + ("  known-good" if r.known_good else "")
            for r in releases
        ] or ["none recorded"]
    if key == ("ops", "history"):
        ops = await service.history(rt, limit=parsed.limit or 20, env=env)
        return f"operations in {env}", [
            f"{o.id}  {o.kind} {o.target}  {o.state}  by {o.actor}  {_when(o.started_at)}"
            for o in ops
        ] or ["none"]
    if key == ("ops", "incidents"):
        records = await service.incidents(rt, limit=parsed.limit or 20, env=env)
        return f"incidents in {env}", [
            f"#{r.id}  {_when(r.created_at)}  {r.kind} of {r.worker} by {r.actor}: {r.outcome}"
            f"  {r.from_release or '?'} -> {r.to_release or '?'}  {r.operation_id or ''}"
            for r in records
        ] or ["none"]
    if key == ("ops", "show"):
        op, audit = await service.show(rt, target)
        lines = [
            f"{op.kind} {op.target} in {op.env}: {op.state}",
            f"by {op.actor} ({op.source}): {op.command}",
        ]
        lines += [
            f"{s.index + 1}. [{s.state}] {s.name}" + (f": {s.error}" if s.error else "")
            for s in op.steps
        ]
        lines.append(f"outcome: {op.summary or '-'}")
        lines += [f"audit {_when(a.at)} {a.kind} {a.outcome} by {a.actor}" for a in audit]
        return op.id, lines
    raise AssertionError(f"no view for {key}")
