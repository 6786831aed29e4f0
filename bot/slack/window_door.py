"""`/window schedule|list|cancel|reschedule` from Slack: the same service as `chatops window`,
with the time read in the user's own zone (Slack's `users.info` `tz`, else `windows.timezone`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError

from bot.engine.runner import Actor
from bot.errors import BadInput, BotError
from bot.store.records import WindowRecord
from bot.windows.messages import span
from bot.windows.schedule import cancel_window, reschedule_window, schedule_window, upcoming
from commands.grammar import Parsed

if TYPE_CHECKING:
    from bot.slack.door import Origin, Respond, SlackDoor

logger = logging.getLogger(__name__)


async def window_command(
    door: SlackDoor, parsed: Parsed, origin: Origin, shown: str, respond: Respond
) -> None:
    try:
        if parsed.action == "schedule":
            text = await _schedule(door, parsed, origin, shown)
        elif parsed.action == "cancel":
            text = await _cancel(door, parsed, origin, shown)
        elif parsed.action == "reschedule":
            text = await _reschedule(door, parsed, origin, shown)
        else:
            text = await _list(door, parsed, origin)
    except BotError as exc:
        text = f"❌ {exc}"
    await respond(response_type="ephemeral", text=text)


async def _allowed(
    door: SlackDoor, parsed: Parsed, origin: Origin, env: str, shown: str
) -> str | None:
    """None when the user may run this window command in `env`; else the refusal to show."""
    decision = await door.decide(origin.user, env, *parsed.grant_names)
    if decision.allowed:
        return None
    await door.audit_refusal(origin, env, shown, decision.why)
    return decision.refusal(shown)


async def _schedule(door: SlackDoor, parsed: Parsed, origin: Origin, shown: str) -> str:
    assert parsed.env is not None and parsed.when is not None and parsed.duration is not None
    door.rt.config.env(parsed.env)  # an unknown environment is refused before anything
    if (refusal := await _allowed(door, parsed, origin, parsed.env, shown)) is not None:
        return refusal
    window = await schedule_window(
        door.rt,
        env=parsed.env,
        when=parsed.when,
        duration=parsed.duration,
        reason=parsed.reason or "maintenance",
        actor=Actor(origin.user, door.source),
        timezone=await _user_zone(door, origin.user),
    )
    where = f", announced in {window.channel}" if window.channel else " (no channel to announce in)"
    return f"✅ window `{window.id}` in {window.env}: {span(window)}{where}"


async def _named_window(door: SlackDoor, parsed: Parsed) -> WindowRecord:
    window = await door.rt.store.window(parsed.target or "")
    if window is None:
        raise BadInput(f"no window {parsed.target!r}; see /window list")
    return window


async def _cancel(door: SlackDoor, parsed: Parsed, origin: Origin, shown: str) -> str:
    window = await _named_window(door, parsed)
    if (refusal := await _allowed(door, parsed, origin, window.env, shown)) is not None:
        return refusal
    await cancel_window(door.rt, window.id, actor=Actor(origin.user, door.source))
    return f"✅ window `{window.id}` in {window.env} cancelled"


async def _reschedule(door: SlackDoor, parsed: Parsed, origin: Origin, shown: str) -> str:
    assert parsed.when is not None
    window = await _named_window(door, parsed)
    if (refusal := await _allowed(door, parsed, origin, window.env, shown)) is not None:
        return refusal
    moved = await reschedule_window(
        door.rt,
        window.id,
        when=parsed.when,
        duration=parsed.duration,
        actor=Actor(origin.user, door.source),
        timezone=await _user_zone(door, origin.user),
    )
    return f"✅ window `{window.id}` in {moved.env} moved: {span(moved)}"


async def _list(door: SlackDoor, parsed: Parsed, origin: Origin) -> str:
    windows = await upcoming(door.rt, env=parsed.env, now=door.rt.clock.now())
    lines = []
    for window in windows:
        if (await door.decide(origin.user, window.env, *parsed.grant_names)).allowed:
            lines.append(
                f"`{window.id}` {window.env}: {span(window)}, {window.state} — {window.reason}"
            )
    return "\n".join(lines) if lines else "no window ahead"


async def _user_zone(door: SlackDoor, user: str) -> str | None:
    try:
        found: dict[str, Any] = (await door.client.users_info(user=user)).data  # type: ignore[assignment]
    except (SlackApiError, OSError) as exc:
        logger.warning("slack: users.info for the time zone failed: %s", type(exc).__name__)
        return None
    zone = (found.get("user") or {}).get("tz")
    return str(zone) if zone else None
