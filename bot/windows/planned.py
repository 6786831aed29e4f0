"""Operations planned for a maintenance window (`--in-window W` in Slack).

Such an operation is an approval that belongs to the window: its approvals are collected before
the window (they stay valid until it closes, not the usual 30 minutes), it starts as soon as the
window is open and it is approved, and what has not started when the window closes or is
cancelled ends there, its request message saying so. Who starts it: the replica that leads the
windows scheduler, at each pass, or the replica that counts the approval completing it while the
window is open; claiming the approval (`approved` → `executing`) makes either the only one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.errors import Refused
from bot.runtime import Runtime
from bot.store.records import ApprovalRecord, ApprovalState, WindowRecord
from bot.windows.messages import span

logger = logging.getLogger(__name__)

StartPlanned = Callable[[ApprovalRecord], Awaitable[None]]
EndedPlanned = Callable[[ApprovalRecord], Awaitable[None]]


async def window_for(rt: Runtime, *, env: str, window_id: str, now: datetime) -> WindowRecord:
    """The window an operation is planned for; Refused when it cannot carry one."""
    window = await rt.store.window(window_id)
    if window is None:
        raise Refused(f"no window {window_id}; see /window list")
    if window.env != env:
        raise Refused(f"window {window_id} is for {window.env}, not {env}")
    if window.state not in ("scheduled", "open") or window.ends_at <= now:
        raise Refused(f"window {window_id} is {window.state}: plan into a window still ahead")
    return window


def planned_note(window: WindowRecord, *, now: datetime) -> str:
    if window.starts_at <= now:
        return f"planned for maintenance window {window.id}, open now ({span(window)})"
    return (
        f"planned for maintenance window {window.id}: starts when it opens, once approved; "
        f"approvals valid until it closes ({span(window)})"
    )


def waiting_line(window: WindowRecord) -> str:
    """What a planned operation's request message says about its window."""
    return (
        f"For maintenance window `{window.id}` ({span(window)}): it starts when the window is "
        "open and it is approved; if it has not started when the window closes, it is dropped."
    )


def is_open(window: WindowRecord | None, now: datetime) -> bool:
    return window is not None and window.state == "open" and now < window.ends_at


async def start_ready(rt: Runtime, window: WindowRecord, start: StartPlanned) -> int:
    """Start every approved operation planned for an open window; how many this caller claimed."""
    started = 0
    for planned in await rt.store.planned_for(window.id):
        if planned.state == "approved" and await rt.store.claim_execution(
            planned.id, now=rt.clock.now()
        ):
            logger.info("window %s: starting planned %s (%s)", window.id, planned.id, planned.kind)
            started += 1
            await start(planned)
    return started


async def end_unstarted(
    rt: Runtime, window: WindowRecord, *, state: ApprovalState, now: datetime, tell: EndedPlanned
) -> list[ApprovalRecord]:
    """The window is over: what never started ends as `state` (expired or cancelled)."""
    ended = await rt.store.end_planned(window.id, state=state, now=now)
    for planned in ended:
        await rt.store.audit(
            actor="chatops",
            source="scheduler",
            kind=state,
            command=planned.command,
            outcome=f"{state}: window {window.id} is over and it never started",
            env=planned.env,
            details={"approval": planned.id, "window": window.id},
            now=now,
        )
        await tell(planned)
    return ended
