"""Scheduling and cancelling windows, for every door (CLI, console, Slack): parse what the user
typed in their zone, store the window and its notices, audit it, and run what is due at once
(the announcement)."""

from __future__ import annotations

from datetime import datetime

from bot.engine.runner import Actor, owner_id
from bot.errors import BadInput
from bot.runtime import Runtime
from bot.store.records import WindowRecord
from bot.windows import scheduler
from bot.windows.when import check_length, parse_span, parse_when, zone

_MAX_REASON = 500


async def schedule_window(
    rt: Runtime,
    *,
    env: str,
    when: str,
    duration: str,
    reason: str,
    actor: Actor,
    timezone: str | None = None,
) -> WindowRecord:
    env_config = rt.config.env(env)
    tz_name = timezone or rt.config.windows.timezone
    tz = zone(tz_name)
    now = rt.clock.now()
    starts_at = parse_when(when, now=now, tz=tz)
    ends_at = starts_at + check_length(parse_span(duration))
    reason = " ".join(reason.split()) or "maintenance"
    if len(reason) > _MAX_REASON:
        raise BadInput(f"the reason is longer than {_MAX_REASON} characters")
    overlapping = [
        w
        for w in await rt.store.windows(env=env, since=starts_at)
        if w.state in ("scheduled", "open") and w.starts_at < ends_at
    ]
    if overlapping:
        raise BadInput(
            f"{env} already has window {overlapping[0].id} then; cancel it first "
            f"(chatops window cancel {overlapping[0].id})"
        )
    window = await rt.store.create_window(
        env=env,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        timezone=tz_name,
        channel=env_config.channel,
        created_by=actor.name,
        reminders_min=rt.config.windows.reminders_min,
        now=now,
    )
    await rt.store.audit(
        actor=actor.name,
        source=actor.source,
        kind="window schedule",
        command=f"window schedule {env} {when} {duration}",
        outcome="scheduled",
        env=env,
        reason=reason,
        details={"window": window.id, "starts_at": starts_at.isoformat()},
        now=now,
    )
    await scheduler.run_due(rt, now=now, claimer=owner_id())
    return window


async def cancel_window(rt: Runtime, window_id: str, *, actor: Actor) -> WindowRecord:
    now = rt.clock.now()
    window = await scheduler.cancel(rt, window_id, by=actor.name, now=now)
    await rt.store.audit(
        actor=actor.name,
        source=actor.source,
        kind="window cancel",
        command=f"window cancel {window_id}",
        outcome="cancelled",
        env=window.env,
        details={"window": window_id},
        now=now,
    )
    return window


async def upcoming(rt: Runtime, *, env: str | None, now: datetime) -> list[WindowRecord]:
    if env is not None:
        rt.config.env(env)
    return await rt.store.windows(env=env, since=now)
