"""`chatops serve --socket`: the bot as its own process, reaching the fake Slack over Socket
Mode (`apps.connections.open` with the app-level token, then a WebSocket), answering the same
commands and modals as over HTTP, with the real Redis and store behind it."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from tests.scenarios.conftest import Scenario
from tests.scenarios.test_slack import CHANNEL, OPS, SECRET, configure
from tests.slack.driver import SlackDriver
from tests.slack.fake_slack import FakeSlack


async def _until(predicate: Any, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_socket_mode_answers_a_command_and_runs_a_confirmed_pause(
    scenario: Scenario, fake_slack: FakeSlack
):
    slack = {k: v for k, v in configure(scenario, fake_slack).items() if k.startswith("SLACK_")}
    scenario.extra_env.update(slack, SLACK_APP_TOKEN=fake_slack.app_token)
    await scenario.produce("sla", 3)
    proc = await scenario.spawn("serve", "--socket")
    try:
        await fake_slack.socket_mode.wait_connected(timeout_s=30)
        (opened,) = fake_slack.calls_to("apps.connections.open")
        assert opened.ok, opened  # with the app-level token: the bot token is refused there
        driver = SlackDriver("", SECRET, fake_slack, user=OPS, channel=CHANNEL, socket_mode=True)

        status = await driver.command("/queue", "status sla")
        assert status.response_url is not None
        await _until(lambda: bool(fake_slack.responses(status.response_url)))
        answer = fake_slack.responses(status.response_url)[0]["text"]
        assert "sla" in answer and " 3 " in answer, answer

        await driver.command("/queue", "pause sla")

        def plan() -> dict[str, Any] | None:
            views = fake_slack.open_views(OPS)
            filled = views and "preparing" not in json.dumps(views[-1]["blocks"])
            return views[-1] if filled else None

        await _until(lambda: plan() is not None)
        view = plan()
        assert view is not None and "now sla: 3 waiting" in json.dumps(view["blocks"])
        await driver.view_submission(view)
        await _until(
            lambda: any(": succeeded" in m.get("text", "") for m in fake_slack.messages(CHANNEL))
        )
        state = await scenario.json("queue", "status", "sla", "--env", "test")
        assert state["queues"][0]["paused"] is True
        assert [e["type"] for e in fake_slack.socket_mode.sent] == [
            "slash_commands",
            "slash_commands",
            "interactive",
        ]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert fake_slack.socket_mode.connections == 0
