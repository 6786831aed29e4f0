"""Window times as users type them, in their zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import BadInput
from bot.windows.when import check_length, parse_span, parse_when, zone

NOW = datetime(2026, 11, 28, 21, 30, tzinfo=UTC)  # 22:30 in Paris
PARIS = zone("Europe/Paris")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T22:00", datetime(2026, 12, 1, 21, 0, tzinfo=UTC)),  # Paris time
        ("2026-12-01T22:00+00:00", datetime(2026, 12, 1, 22, 0, tzinfo=UTC)),
        ("23:15", datetime(2026, 11, 28, 22, 15, tzinfo=UTC)),  # later today
        ("22:00", datetime(2026, 11, 29, 21, 0, tzinfo=UTC)),  # passed: tomorrow
        ("23:15 tomorrow", datetime(2026, 11, 29, 22, 15, tzinfo=UTC)),
        ("in 2h", NOW + timedelta(hours=2)),
        ("in 1h30m", NOW + timedelta(minutes=90)),
        ("In  90m", NOW + timedelta(minutes=90)),
    ],
)
def test_times_in_the_users_zone(text: str, expected: datetime) -> None:
    assert parse_when(text, now=NOW, tz=PARIS) == expected


def test_summer_time_is_the_zones_own() -> None:
    july = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    assert parse_when("2026-07-02T22:00", now=july, tz=PARIS) == datetime(
        2026, 7, 2, 20, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("22:00 today", "in the past"),
        ("2026-11-28T10:00", "in the past"),
        ("2028-01-01T10:00", "more than a year ahead"),
        ("tomorrow", "not a time"),
        ("24:00", "not a time"),
        ("in 2 days", "not a duration"),
        ("0001-01-01T00:00", "not a time a window can have"),
        ("9999-12-31T23:59-14:00", "not a time a window can have"),
    ],
)
def test_what_is_refused(text: str, says: str) -> None:
    with pytest.raises(BadInput, match=says):
        parse_when(text, now=NOW, tz=PARIS)


def test_spans_and_lengths() -> None:
    assert parse_span("1h30m") == timedelta(minutes=90)
    assert parse_span("45m") == timedelta(minutes=45)
    with pytest.raises(BadInput, match="not a duration"):
        parse_span("h")
    with pytest.raises(BadInput, match="between 1 minute and 7 days"):
        check_length(timedelta(0))
    with pytest.raises(BadInput, match="unknown time zone"):
        zone("Mars/Olympus")


@given(st.text(max_size=40))
def test_any_text_is_a_time_or_a_clear_refusal(text: str) -> None:
    try:
        start = parse_when(text, now=NOW, tz=PARIS)
    except BadInput as exc:
        assert str(exc)
    else:
        assert start.tzinfo is not None and start >= NOW - timedelta(minutes=1)
