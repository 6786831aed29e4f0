"""Two `chatops serve` processes sharing PostgreSQL and Redis, as two replicas behind one
request URL: the command and its confirmation go to one, the approval click to the other, and
the operation runs exactly once."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from bot.slack import blocks
from tests.fixtures.serve import served
from tests.scenarios.conftest import Scenario
from tests.scenarios.test_slack import CHANNEL, LEAD, LEAD2, SECRET, configure
from tests.slack.driver import SlackDriver
from tests.slack.fake_slack import FakeSlack


async def test_an_approval_clicked_on_the_other_replica_runs_the_operation_once(
    scenario: Scenario, fake_slack: FakeSlack, fresh_pg_database: str
):
    environ = {**configure(scenario, fake_slack), "CHATOPS_DATABASE_URL": fresh_pg_database}
    scenario.extra_env["CHATOPS_DATABASE_URL"] = fresh_pg_database
    await scenario.redis.hset(f"{scenario.prefix}:sla:meta", "paused", "1")
    async with (
        served(environ, scenario.tmp) as (one, port_one),
        served(environ, scenario.tmp) as (two, port_two),
    ):
        first, second = (
            SlackDriver(
                f"http://127.0.0.1:{port}/slack/events", SECRET, fake_slack, channel=CHANNEL
            )
            for port in (port_one, port_two)
        )
        await first.command("/queue", "resume sla", user=LEAD)

        def plan() -> dict[str, Any] | None:
            views = fake_slack.open_views(LEAD)
            filled = views and "preparing" not in str(views[-1]["blocks"])
            return views[-1] if filled else None

        await fake_slack.wait_until(lambda: plan() is not None, timeout_s=20)
        view = plan()
        assert view is not None and "Needs 1 approval" in str(view["blocks"])
        await first.view_submission(view, user=LEAD)

        def request() -> dict[str, Any] | None:
            found = [m for m in fake_slack.messages(CHANNEL) if "Approval" in m.get("text", "")]
            return found[-1] if found else None

        await fake_slack.wait_until(lambda: request() is not None, timeout_s=20)
        message = request()
        assert message is not None
        await second.block_action(blocks.APPROVE_ACTION, user=LEAD2, message_ts=message["ts"])
        await fake_slack.wait_until(
            lambda: any(": succeeded" in m.get("text", "") for m in fake_slack.messages(CHANNEL)),
            timeout_s=30,
        )
        await asyncio.sleep(1.0)  # both replicas idle a moment: nothing runs twice
        for proc in (one, two):
            proc.send_signal(signal.SIGTERM)
        for proc in (one, two):
            await asyncio.wait_for(proc.communicate(), 45)
            assert proc.returncode == 0
    history = await scenario.json("ops", "history")
    assert [(h["kind"], h["outcome"]) for h in history] == [("resume", "succeeded")]
    status = await scenario.json("queue", "status", "sla", "--env", "test")
    assert status["queues"][0]["paused"] is False
