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
    await _refuse_overlap(rt, env, starts_at, ends_at)
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


async def reschedule_window(
    rt: Runtime,
    window_id: str,
    *,
    when: str,
    duration: str | None,
    actor: Actor,
    timezone: str | None = None,
) -> WindowRecord:
    """Move a window not open yet (its length kept unless `duration` is given); its
    announcement is updated in place and its reminders follow the new start."""
    window = await rt.store.window(window_id)
    if window is None:
        raise BadInput(f"no window {window_id!r}; see chatops window list")
    tz_name = timezone or window.timezone
    now = rt.clock.now()
    starts_at = parse_when(when, now=now, tz=zone(tz_name))
    length = check_length(parse_span(duration)) if duration else window.ends_at - window.starts_at
    ends_at = starts_at + length
    await _refuse_overlap(rt, window.env, starts_at, ends_at, besides=window_id)
    moved = await rt.store.reschedule_window(
        window_id,
        starts_at=starts_at,
        ends_at=ends_at,
        reminders_min=rt.config.windows.reminders_min,
        now=now,
    )
    await rt.store.audit(
        actor=actor.name,
        source=actor.source,
        kind="window reschedule",
        command=f"window reschedule {window_id} {when}" + (f" {duration}" if duration else ""),
        outcome="rescheduled",
        env=moved.env,
        details={
            "window": window_id,
            "from": window.starts_at.isoformat(),
            "starts_at": starts_at.isoformat(),
        },
        now=now,
    )
    await scheduler.moved(rt, moved, by=actor.name)
    await scheduler.run_due(rt, now=now, claimer=owner_id())
    return moved


async def _refuse_overlap(
    rt: Runtime, env: str, starts_at: datetime, ends_at: datetime, *, besides: str | None = None
) -> None:
    overlapping = [
        w
        for w in await rt.store.windows(env=env, since=starts_at)
        if w.state in ("scheduled", "open") and w.starts_at < ends_at and w.id != besides
    ]
    if overlapping:
        raise BadInput(
            f"{env} already has window {overlapping[0].id} then; cancel it first "
            f"(chatops window cancel {overlapping[0].id})"
        )


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
