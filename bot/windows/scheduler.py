"""What is due for maintenance windows, done once: the store is the source of truth.

`run_due(rt, now=...)` does every notice whose time has come (announcement, reminders, open,
close), each claimed in the store first, so two schedulers at once never do one twice; it then
sets the maintenance flag again for every open window. A notice more than `grace_s` late is
skipped and logged, except an opening while the window still runs (late is better than never
for the flag) and a closing (the flag must come down). Messages go through the outbox, so a
Slack outage delays them and loses none. `chatops window run-due` is this, once; `chatops
serve` runs it at each next due time, with `start_planned`: operations planned for an open
window start then (see `bot.windows.planned`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bot.runtime import Runtime
from bot.slack.blocks import approval_blocks
from bot.slack.outbox import Outbox
from bot.store.records import ApprovalRecord, NoticeRecord, OperationRecord, WindowRecord
from bot.store.windows import ANNOUNCE, CLOSE, OPEN, REMIND
from bot.windows.flag import assert_flag, clear_flag
from bot.windows.messages import (
    announcement,
    closed_text,
    opened_text,
    reminder_text,
    span,
)
from bot.windows.planned import (
    EndedPlanned,
    StartPlanned,
    end_unstarted,
    is_open,
    start_ready,
    waiting_line,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Done:
    window: str
    kind: str
    outcome: str  # sent, skipped


async def run_due(
    rt: Runtime, *, now: datetime, claimer: str, start_planned: StartPlanned | None = None
) -> list[Done]:
    done: list[Done] = []
    grace_s = rt.config.windows.grace_s
    for notice in await rt.store.due_notices(now=now):
        late_s = (now - notice.due_at).total_seconds()
        skip = late_s > grace_s and notice.kind != CLOSE
        if notice.kind == OPEN and now < notice.window.ends_at:
            skip = False
        outcome = "skipped" if skip else "sent"
        if not await rt.store.claim_notice(notice.id, by=claimer, now=now, outcome=outcome):
            continue  # another scheduler did it
        if skip:
            logger.warning(
                "window %s: %s was due %s, %.0f s ago (grace %.0f s): skipped",
                notice.window.id,
                notice.kind,
                notice.due_at.isoformat(),
                late_s,
                grace_s,
            )
        else:
            await _do(rt, notice, now)
        done.append(Done(notice.window.id, notice.kind, outcome))
    for window in await rt.store.windows(since=now):
        if window.state == "open" and window.env in rt.config.environments:
            env = rt.config.env(window.env)
            await assert_flag(rt.redis_for(window.env), env.maintenance_key, window, now)
            if start_planned is not None and is_open(window, now):
                await start_ready(rt, window, start_planned)
    return done


async def cancel(rt: Runtime, window_id: str, *, by: str, now: datetime) -> WindowRecord:
    """Cancel a window: its announcement says so in place; an open one is closed at once."""
    before = await rt.store.cancel_window(window_id, by=by, now=now)
    env = rt.config.env(before.env)
    if before.state == "open":
        await clear_flag(rt.redis_for(before.env), env.maintenance_key, before)
    cancelled = await rt.store.window(window_id)
    assert cancelled is not None
    if cancelled.channel:
        outbox = Outbox(rt.store, rt.clock)
        text, blocks = announcement(cancelled, env_config=env)
        await outbox.update(_key(cancelled), text=text, blocks=blocks, final=True)
    unstarted = await end_unstarted(
        rt, cancelled, state="cancelled", now=now, tell=_tell_ended(outbox, cancelled)
    )
    if cancelled.channel and before.state == "open":
        ops = await _operations_inside(rt, cancelled, until=now)
        text = closed_text(cancelled, ops, unstarted, early=by)
        await _post(outbox, cancelled, "closed", text)
    return cancelled


async def moved(rt: Runtime, window: WindowRecord, *, by: str) -> None:
    """A window was rescheduled: its announcement shows the new times (in place), and a line in
    its thread says who moved it."""
    if not window.channel:
        return
    env = rt.config.env(window.env)
    outbox = Outbox(rt.store, rt.clock)
    text, blocks = announcement(window, env_config=env)
    await outbox.update(_key(window), text=text, blocks=blocks)
    await outbox.reply(
        _key(window),
        f"{_key(window)}:moved:{rt.clock.now().timestamp()}",
        text=f"Rescheduled by {by}: now {span(window)}.",
    )


async def _do(rt: Runtime, notice: NoticeRecord, now: datetime) -> None:
    window = notice.window
    env = rt.config.env(window.env)
    outbox = Outbox(rt.store, rt.clock)
    if notice.kind == OPEN:
        await assert_flag(rt.redis_for(window.env), env.maintenance_key, window, now)
        await rt.store.set_window_state(window.id, "open")
    elif notice.kind == CLOSE:
        await clear_flag(rt.redis_for(window.env), env.maintenance_key, window)
        await rt.store.set_window_state(window.id, "closed")
    current = await rt.store.window(window.id)
    assert current is not None
    unstarted: list[ApprovalRecord] = []
    if notice.kind == CLOSE:
        tell = _tell_ended(outbox, current)
        unstarted = await end_unstarted(rt, current, state="expired", now=now, tell=tell)
    if not current.channel:
        logger.info("window %s: %s done; no channel to tell", window.id, notice.kind)
        return
    if notice.kind == ANNOUNCE:
        text, blocks = announcement(current, env_config=env)
        await outbox.post(_key(current), channel=current.channel, text=text, blocks=blocks)
    elif notice.kind.startswith(REMIND):
        minutes = int(notice.kind.removeprefix(REMIND))
        await _post(outbox, current, notice.kind, reminder_text(current, minutes))
    elif notice.kind == OPEN:
        text, blocks = announcement(current, env_config=env)
        await outbox.update(_key(current), text=text, blocks=blocks)
        await _post(outbox, current, "open", opened_text(current, env_config=env))
    elif notice.kind == CLOSE:
        text, blocks = announcement(current, env_config=env)
        await outbox.update(_key(current), text=text, blocks=blocks, final=True)
        ops = await _operations_inside(rt, current, until=current.ends_at)
        await _post(outbox, current, "closed", closed_text(current, ops, unstarted))


async def _post(outbox: Outbox, window: WindowRecord, what: str, text: str) -> None:
    assert window.channel is not None
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]
    await outbox.post(f"{_key(window)}:{what}", channel=window.channel, text=text, blocks=blocks)


async def _operations_inside(
    rt: Runtime, window: WindowRecord, *, until: datetime
) -> list[OperationRecord]:
    recent = await rt.store.list_operations(limit=200, env=window.env)
    return [op for op in reversed(recent) if window.starts_at <= op.started_at <= until]


def _tell_ended(outbox: Outbox, window: WindowRecord) -> EndedPlanned:
    async def tell(planned: ApprovalRecord) -> None:
        blocks = approval_blocks(planned, planned_for=waiting_line(window))
        await outbox.update(
            f"{planned.id}:request", text=f"Planned operation: {planned.state}", blocks=blocks
        )

    return tell


def _key(window: WindowRecord) -> str:
    return f"window:{window.id}"
