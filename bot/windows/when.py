"""What a user types for a window's start and length, read in their time zone.

WHEN: an ISO 8601 date-time (`2026-12-01T22:00`, with or without an offset; without one, the
user's zone), `HH:MM` (the next such time: today, or tomorrow when it has passed), `HH:MM today`,
`HH:MM tomorrow`, or `in 2h` / `in 90m` / `in 1h30m`. DURATION: `30m`, `2h`, `1h30m`. Anything
else is `BadInput` naming the accepted forms; a start in the past or a length outside 1 minute to
7 days too.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import BadInput

MIN_LENGTH = timedelta(minutes=1)
MAX_LENGTH = timedelta(days=7)
MAX_AHEAD = timedelta(days=366)
_SPAN = re.compile(r"^(?:(?P<h>\d{1,3})h)?(?:(?P<m>\d{1,4})m)?$")
_CLOCK = re.compile(r"^(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?:\s+(?P<day>today|tomorrow))?$")
_FORMS = "an ISO date-time (2026-12-01T22:00), HH:MM [today|tomorrow], or in 2h / in 90m"


def zone(name: str | None) -> tzinfo:
    """A time zone by its IANA name (Slack's users.info `tz`); BadInput when unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"unknown time zone {name!r}") from None


def parse_span(text: str) -> timedelta:
    """`30m`, `2h`, `1h30m` as a timedelta; BadInput otherwise."""
    found = _SPAN.fullmatch(text.strip().lower())
    if found is None or not (found["h"] or found["m"]):
        raise BadInput(f"not a duration: {text!r} (use 30m, 2h or 1h30m)")
    return timedelta(hours=int(found["h"] or 0), minutes=int(found["m"] or 0))


def parse_when(text: str, *, now: datetime, tz: tzinfo) -> datetime:
    """The moment `text` names, as an aware datetime in UTC; never in the past."""
    text = " ".join(text.strip().split())
    lowered = text.lower()
    if lowered.startswith("in "):
        start = now + parse_span(lowered[3:].replace(" ", ""))
    elif (clock := _CLOCK.fullmatch(lowered)) is not None:
        start = _next_clock(clock, now=now, tz=tz)
    else:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise BadInput(f"not a time: {text!r} (use {_FORMS})") from None
        start = parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    try:
        start = start.astimezone(now.tzinfo)
    except OverflowError:  # year 1 or 9999 with an offset
        raise BadInput(f"{text!r} is not a time a window can have") from None
    if start < now - timedelta(minutes=1):
        raise BadInput(f"{text!r} is in the past ({shown(start, tz)})")
    if start > now + MAX_AHEAD:
        raise BadInput(f"{text!r} is more than a year ahead")
    return start


def check_length(length: timedelta) -> timedelta:
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise BadInput("a window lasts between 1 minute and 7 days")
    return length


def _next_clock(clock: re.Match[str], *, now: datetime, tz: tzinfo) -> datetime:
    local_now = now.astimezone(tz)
    at = time(int(clock["h"]), int(clock["m"]))
    start = datetime.combine(local_now.date(), at, tzinfo=tz)
    if clock["day"] == "tomorrow" or (clock["day"] is None and start < local_now):
        start = datetime.combine(local_now.date() + timedelta(days=1), at, tzinfo=tz)
    return start


def shown(moment: datetime, tz: tzinfo) -> str:
    """A moment as users read it: local date, time and zone."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
