"""Maintenance windows through the CLI, with the clock driven by `window run-due --now`: the
announcement, reminders, opening (maintenance flag set) and closing (flag cleared, summary)
each arrive once, in order, in the environment's channel of the fake Slack."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from tests.scenarios.conftest import Scenario
from tests.slack.fake_slack import FakeSlack

CHANNEL = "#ops"


@pytest.fixture
def windows(scenario: Scenario, fake_slack: FakeSlack) -> Scenario:
    scenario.configure(channel=CHANNEL)
    scenario.extra_env.update(
        SLACK_BOT_TOKEN=fake_slack.bot_token, SLACK_API_URL=fake_slack.api_url
    )
    return scenario


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


async def _schedule(scenario: Scenario, when: str, duration: str = "1h") -> dict:
    done = await scenario.chatops(
        "window", "schedule", "test", when, duration, "deploy", "v2", "--json"
    )
    assert done.code == 0, done.output
    return json.loads(done.stdout)


async def _run_due(scenario: Scenario, at: datetime) -> list[str]:
    done = await scenario.chatops("window", "run-due", "--now", at.isoformat())
    assert done.code == 0, done.output
    return [line for line in done.stdout.splitlines() if line and line != "nothing due"]


def _texts(fake_slack: FakeSlack) -> list[str]:
    return [m["text"] for m in fake_slack.messages(CHANNEL)]


async def test_a_window_is_announced_reminded_opened_and_closed_once_each(
    windows: Scenario, fake_slack: FakeSlack
):
    start = _minute(datetime.now(UTC)) + timedelta(hours=3)
    window = await _schedule(windows, start.strftime("%Y-%m-%dT%H:%M"))
    wid = window["id"]
    assert datetime.fromisoformat(window["starts_at"]) == start
    (announced,) = _texts(fake_slack)
    assert f"Maintenance window {wid} in test" in announced and "deploy v2" in announced

    assert await _run_due(windows, start - timedelta(minutes=59)) == [f"{wid} remind:60: sent"]
    assert await _run_due(windows, start - timedelta(minutes=59)) == []  # never twice
    assert await _run_due(windows, start - timedelta(minutes=14)) == [f"{wid} remind:15: sent"]
    assert await _run_due(windows, start + timedelta(seconds=5)) == [f"{wid} open: sent"]
    flag = json.loads(await windows.redis.get(f"{windows.prefix}:flags:MAINTENANCE"))
    assert flag["window"] == wid
    assert 0 < await windows.redis.ttl(f"{windows.prefix}:flags:MAINTENANCE")
    assert "open now" in fake_slack.messages(CHANNEL)[0]["blocks"][0]["text"]["text"]

    assert await _run_due(windows, start + timedelta(hours=1, seconds=5)) == [f"{wid} close: sent"]
    assert await windows.redis.get(f"{windows.prefix}:flags:MAINTENANCE") is None
    texts = _texts(fake_slack)
    assert len(texts) == 5, texts
    assert "starts in 60 min" in texts[1] and "starts in 15 min" in texts[2]
    assert "is open until" in texts[3]
    assert "closed: SLA alerts back on. no operation ran inside it" in texts[4]
    assert "closed" in fake_slack.messages(CHANNEL)[0]["blocks"][0]["text"]["text"]
    shown = await windows.chatops("window", "show", wid, "--json")
    notices = json.loads(shown.stdout)["notices"]
    assert [(n["kind"], n["outcome"]) for n in notices] == [
        ("announce", "sent"),
        ("remind:60", "sent"),
        ("remind:15", "sent"),
        ("open", "sent"),
        ("close", "sent"),
    ]


async def test_the_closing_summary_lists_the_operations_run_inside(
    windows: Scenario, fake_slack: FakeSlack
):
    now = datetime.now(UTC)
    window = await _schedule(windows, now.strftime("%Y-%m-%dT%H:%M:%S"), "30m")
    # Starting now: opened as it is scheduled.
    assert window["state"] == "scheduled"
    assert await _run_due(windows, now + timedelta(seconds=1)) == []
    assert "is open until" in _texts(fake_slack)[-1]
    for action in ("pause", "resume"):
        done = await windows.chatops("queue", action, "sla", "--env", "test", "--yes")
        assert done.code == 0, done.output
    await _run_due(windows, now + timedelta(minutes=31))
    closed = _texts(fake_slack)[-1]
    assert "2 operation(s) inside it: pause sla succeeded" in closed, closed
    assert "resume sla succeeded" in closed


async def test_cancel_mid_way_clears_the_flag_and_drops_what_is_left(
    windows: Scenario, fake_slack: FakeSlack
):
    now = datetime.now(UTC)
    window = await _schedule(windows, now.strftime("%Y-%m-%dT%H:%M:%S"), "2h")
    wid = window["id"]
    assert await windows.redis.get(f"{windows.prefix}:flags:MAINTENANCE") is not None

    done = await windows.chatops("window", "cancel", wid)
    assert done.code == 0, done.output
    assert await windows.redis.get(f"{windows.prefix}:flags:MAINTENANCE") is None
    assert "cancelled by" in fake_slack.messages(CHANNEL)[0]["blocks"][0]["text"]["text"]
    assert "closed early by" in _texts(fake_slack)[-1]
    assert await _run_due(windows, now + timedelta(hours=3)) == []
    again = await windows.chatops("window", "cancel", wid)
    assert again.code != 0 and "already cancelled" in again.output


async def test_notices_missed_beyond_the_grace_period_are_skipped_not_sent(
    windows: Scenario, fake_slack: FakeSlack
):
    start = _minute(datetime.now(UTC)) + timedelta(hours=2)
    wid = (await _schedule(windows, start.strftime("%Y-%m-%dT%H:%M")))["id"]
    # The scheduler was down for both reminders: too late to remind, not too late to open.
    assert await _run_due(windows, start + timedelta(minutes=1)) == [
        f"{wid} remind:60: skipped",
        f"{wid} remind:15: skipped",
        f"{wid} open: sent",
    ]
    assert len(_texts(fake_slack)) == 2  # the announcement and "open"


@pytest.mark.parametrize(
    ("when", "duration", "says"),
    [
        ("yesterday", "1h", "not a time"),
        ("2001-01-01T10:00", "1h", "is in the past"),
        ("in 2h", "200h", "between 1 minute and 7 days"),
        ("in 2h", "soon", "not a duration"),
        ("25:00", "1h", "not a time"),
    ],
)
async def test_bad_times_are_refused_and_nothing_is_stored(
    windows: Scenario, fake_slack: FakeSlack, when: str, duration: str, says: str
):
    done = await windows.chatops("window", "schedule", "test", when, duration)
    assert done.code != 0
    assert says in " ".join(done.output.split()), done.output
    listed = await windows.chatops("window", "list", "--json")
    assert json.loads(listed.stdout) == []
    assert _texts(fake_slack) == []


async def test_protected_reloads_need_an_open_window_or_an_override(
    windows: Scenario, fake_slack: FakeSlack
):
    windows.configure(
        protected=True,
        workers={"w": {"app": "w", "pm2_home": str(windows.tmp / "pm2"), "queues": ["sla"]}},
    )
    restart = ("worker", "restart", "w", "--env", "test", "--reason", "INC-1", "--dry-run")
    refused = await windows.chatops(*restart)
    assert refused.code != 0
    said = " ".join(refused.output.split())
    assert "test is protected and no maintenance window is open" in said, said
    assert "--outside-window" in said

    override = await windows.chatops(*restart, "--outside-window")
    assert override.code == 0, override.output
    assert "OUTSIDE any maintenance window: --outside-window given" in override.stdout

    now = datetime.now(UTC)
    wid = (await _schedule(windows, now.strftime("%Y-%m-%dT%H:%M:%S"), "30m"))["id"]
    inside = await windows.chatops(*restart)
    assert inside.code == 0, inside.output
    assert f"inside maintenance window {wid}" in inside.stdout


async def test_reschedule_moves_the_reminders_and_updates_the_announcement_in_place(
    windows: Scenario, fake_slack: FakeSlack
):
    start = _minute(datetime.now(UTC)) + timedelta(hours=3)
    wid = (await _schedule(windows, start.strftime("%Y-%m-%dT%H:%M")))["id"]
    (announced,) = fake_slack.messages(CHANNEL)
    later = start + timedelta(hours=2)
    done = await windows.chatops(
        "window", "reschedule", wid, later.strftime("%Y-%m-%dT%H:%M"), "30m", "--json"
    )
    assert done.code == 0, done.output
    moved = json.loads(done.stdout)
    assert datetime.fromisoformat(moved["starts_at"]) == later
    assert datetime.fromisoformat(moved["ends_at"]) == later + timedelta(minutes=30)
    (updated,) = fake_slack.messages(CHANNEL)  # the same message, edited
    assert updated["ts"] == announced["ts"]
    assert later.strftime("%H:%M") in updated["blocks"][0]["text"]["text"]
    (note,) = fake_slack.thread(CHANNEL, announced["ts"])
    assert note["text"].startswith("Rescheduled by")

    # The old times pass with nothing done; the new ones bring the reminders and the opening.
    assert await _run_due(windows, start + timedelta(minutes=1)) == []
    assert await _run_due(windows, later - timedelta(minutes=59)) == [f"{wid} remind:60: sent"]
    assert await _run_due(windows, later + timedelta(seconds=5)) == [
        f"{wid} remind:15: skipped",
        f"{wid} open: sent",
    ]
    refused = await windows.chatops("window", "reschedule", wid, "in 2h")
    assert refused.code != 0 and "only a window not open yet can move" in refused.output
    db = sqlite3.connect(windows.tmp / "chatops.sqlite3")
    try:
        kinds = [row[0] for row in db.execute("select kind from audit_events order by id")]
    finally:
        db.close()
    assert kinds == ["window schedule", "window reschedule"], kinds
