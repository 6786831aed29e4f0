"""What the bot says about a window, in the zone it was scheduled in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.config import EnvironmentConfig
from bot.store.records import ApprovalRecord, OperationRecord, WindowRecord
from bot.windows.when import shown, zone

_STATE_LINE = {
    "scheduled": "scheduled",
    "open": ":large_orange_circle: open now",
    "closed": ":white_check_mark: closed",
    "cancelled": ":no_entry_sign: cancelled",
}


def span(window: WindowRecord) -> str:
    tz = zone(window.timezone)
    start, end = shown(window.starts_at, tz), shown(window.ends_at, tz)
    minutes = int((window.ends_at - window.starts_at).total_seconds() // 60)
    length = f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
    return f"{start} to {end} ({length})"


def announcement(
    window: WindowRecord, *, env_config: EnvironmentConfig
) -> tuple[str, list[dict[str, Any]]]:
    state = _STATE_LINE.get(window.state, window.state)
    if window.state == "cancelled" and window.cancelled_by:
        state += f" by {window.cancelled_by}"
    workers = ", ".join(env_config.workers) or "none configured"
    text = (
        f"Maintenance window {window.id} in {window.env}: {span(window)}. {window.reason} ({state})"
    )
    lines = [
        f"*Maintenance window `{window.id}` in {window.env}* ({state})",
        f"*When:* {span(window)}",
        f"*Why:* {window.reason}",
        f"*Scheduled by:* {window.created_by}",
        "*Expected impact:* SLA alerts suppressed while it is open (flag "
        f"`{env_config.maintenance_key}`); restarts and rollbacks of {workers} may run.",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}
    ]
    return text, blocks


def reminder_text(window: WindowRecord, minutes: int) -> str:
    return (
        f"Reminder: maintenance window {window.id} in {window.env} starts in {minutes} min "
        f"({span(window)}). {window.reason}"
    )


def opened_text(window: WindowRecord, *, env_config: EnvironmentConfig) -> str:
    until = shown(window.ends_at, zone(window.timezone))
    return (
        f"Maintenance window {window.id} in {window.env} is open until {until}: SLA alerts "
        f"suppressed (`{env_config.maintenance_key}` set). {window.reason}"
    )


def closed_text(
    window: WindowRecord,
    operations: Sequence[OperationRecord],
    unstarted: Sequence[ApprovalRecord] = (),
    *,
    early: str | None = None,
) -> str:
    how = f"closed early by {early}" if early else "closed"
    if operations:
        done = "; ".join(f"{op.kind} {op.target} {op.state} ({op.id})" for op in operations)
        summary = f"{len(operations)} operation(s) inside it: {done}"
    else:
        summary = "no operation ran inside it"
    if unstarted:
        dropped = "; ".join(
            f"`{p.command}` ({len(p.approvers)} of {p.needed} approvals)" for p in unstarted
        )
        summary += f". Planned but never started, now dropped: {dropped}"
    return f"Maintenance window {window.id} in {window.env} {how}: SLA alerts back on. {summary}."
