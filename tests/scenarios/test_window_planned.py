"""Operations planned for a maintenance window from Slack (`--in-window W`): approved before the
window, they start when it opens; what never started is dropped when the window closes or is
cancelled, and the closing summary says so."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.slack import blocks
from tests.scenarios.conftest import Scenario
from tests.scenarios.test_slack import (
    CHANNEL,
    LEAD,
    LEAD2,
    OPS,
    Chat,
    _plan_view,
    configure,
    running_bot,
)
from tests.slack.fake_slack import FakeSlack

ENV_CHANNEL = "#ops-test"


def _environ(scenario: Scenario, fake_slack: FakeSlack, **approvals: int) -> dict[str, str]:
    environ = {**configure(scenario, fake_slack), "CHATOPS_SCHEDULER_TICK_S": "0.3"}
    scenario.extra_config["approvals"] = {kind: {"test": n} for kind, n in approvals.items()}
    scenario.extra_config["permissions"]["operator"]["test"].append("window")
    assert scenario.config_path.exists()  # written again
    scenario.extra_env.update(
        SLACK_BOT_TOKEN=fake_slack.bot_token, SLACK_API_URL=fake_slack.api_url
    )
    return environ


async def _window(scenario: Scenario, starts_in_s: float, length: str = "1h") -> str:
    start = datetime.now(UTC) + timedelta(seconds=starts_in_s)
    done = await scenario.chatops("window", "schedule", "test", start.isoformat(), length, "--json")
    assert done.code == 0, done.output
    return str(json.loads(done.stdout)["id"])


async def _plan(chat: Chat, user: str, command: str, text: str) -> dict[str, Any]:
    """Type the command, check the plan names the window, confirm; the request message."""
    before = {m["ts"] for m in chat.slack.messages(CHANNEL)}
    await chat.driver.command(command, text, user=user)
    view = await _plan_view(chat, user)
    assert "planned for maintenance window" in json.dumps(view["blocks"]), view["blocks"]
    submitted = await chat.driver.view_submission(view)
    assert submitted.status == 200

    def message() -> dict[str, Any] | None:
        found = [
            m
            for m in chat.slack.messages(CHANNEL)
            if m["text"].startswith("Planned") and m["ts"] not in before
        ]
        return found[-1] if found else None

    await chat.wait(lambda: message() is not None)
    found = message()
    assert found is not None
    return found


def _shown(chat: Chat, message: dict[str, Any]) -> str:
    return json.dumps(chat.slack.message(CHANNEL, message["ts"]))


async def test_an_approved_drain_waits_for_its_window_and_runs_once_when_it_opens(
    scenario: Scenario, fake_slack: FakeSlack
):
    environ = _environ(scenario, fake_slack, drain=1)
    wid = await _window(scenario, starts_in_s=12)
    opens = datetime.fromisoformat((await scenario.json("window", "show", wid))["starts_at"])
    await scenario.produce("sla", 50)
    async with scenario.node_worker(CONCURRENCY="10", JOB_MS="2"):
        async with running_bot(scenario, fake_slack, environ) as chat:
            await chat.bot.door.refresh_groups()
            request = await _plan(chat, LEAD, "/queue", f"drain sla --in-window {wid}")
            text = _shown(chat, request)
            assert wid in text and "valid until the window closes" in text
            await chat.driver.block_action(
                blocks.APPROVE_ACTION, user=LEAD2, message_ts=request["ts"]
            )
            await chat.wait(lambda: "starts when the window opens" in _shown(chat, request))
            history = await scenario.json("ops", "history")
            # Approved, not started; on a loaded machine the window may be open by now (its start
            # time is checked against the operation's below, whichever way this went).
            assert history == [] or datetime.now(UTC) >= opens, history

            await chat.wait(lambda: chat.final() is not None, timeout_s=60)
            await chat.wait(lambda: "ran as" in _shown(chat, request))
    history = await scenario.json("ops", "history")
    assert [(h["kind"], h["outcome"]) for h in history] == [("drain", "succeeded")]
    shown = await scenario.json("ops", "show", history[0]["id"])
    assert shown["reason"] == f"planned for window {wid}, approved by {LEAD2}"
    assert shown["actor"] == LEAD
    opened = [m for m in fake_slack.messages(ENV_CHANNEL) if "is open until" in m["text"]]
    assert len(opened) == 1
    # It started once the window was open, not before.
    started = datetime.fromisoformat(shown["started_at"])
    window = await scenario.json("window", "show", wid)
    assert started >= datetime.fromisoformat(window["starts_at"])
    (planned,) = window["planned"]
    assert (planned["state"], planned["operation"]) == ("done", history[0]["id"])
    assert planned["approvals"] == "1/1"


async def test_what_never_started_is_dropped_at_close_and_at_cancel(
    scenario: Scenario, fake_slack: FakeSlack
):
    environ = _environ(scenario, fake_slack, drain=1)
    closing = await _window(scenario, starts_in_s=3600, length="30m")
    async with running_bot(scenario, fake_slack, environ) as chat:
        await chat.bot.door.refresh_groups()
        unapproved = await _plan(chat, LEAD, "/queue", f"drain sla --in-window {closing}")
        # Planning into a window of another environment or one that is over is refused.
        await chat.driver.command("/queue", "drain sla --in-window w-000000", user=LEAD)
        refused = await _plan_view_text(chat, LEAD)
        assert "no window w-000000" in refused
    # Much later: the window opened and closed while nobody approved.
    end = datetime.fromisoformat((await scenario.json("window", "show", closing))["ends_at"])
    done = await scenario.chatops(
        "window", "run-due", "--now", (end + timedelta(seconds=5)).isoformat()
    )
    assert done.code == 0, done.output
    closed = [m for m in fake_slack.messages(ENV_CHANNEL) if "in test closed" in m["text"]]
    assert len(closed) == 1
    assert "Planned but never started, now dropped" in closed[0]["text"]
    assert f"drain sla --in-window {closing}" in closed[0]["text"]
    assert "*expired*" in _shown(chat, unapproved)
    assert await scenario.json("ops", "history") == []

    cancelled = await _window(scenario, starts_in_s=3600)
    async with running_bot(scenario, fake_slack, environ) as chat:
        await chat.bot.door.refresh_groups()
        approved = await _plan(chat, OPS, "/queue", f"drain sla --in-window {cancelled}")
        await chat.driver.block_action(blocks.APPROVE_ACTION, user=LEAD, message_ts=approved["ts"])
        await chat.wait(lambda: "starts when the window opens" in _shown(chat, approved))
        cancel = await chat.driver.command("/window", f"cancel {cancelled}")
        await chat.wait(lambda: bool(fake_slack.responses(cancel.response_url)))
        await chat.wait(lambda: "*cancelled*" in _shown(chat, approved))
    assert await scenario.json("ops", "history") == []
    audit = [row for row in chat.audit() if row[1] in ("expired", "cancelled")]
    assert [row[1] for row in audit] == ["expired", "cancelled"], audit


async def _plan_view_text(chat: Chat, user: str) -> str:
    view = await _plan_view(chat, user)
    return json.dumps(view["blocks"])
