"""The windows scheduler's leader SIGKILLed between two reminders: the other `chatops serve`
process takes the lead and sends the next reminder, once. Real processes sharing PostgreSQL and
Redis; reminders are whole minutes, so this test waits about a minute for the second one."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import UTC, datetime, timedelta

from tests.fixtures.serve import served
from tests.scenarios.conftest import Scenario
from tests.scenarios.test_slack import configure
from tests.slack.fake_slack import FakeSlack

ENV_CHANNEL = "#ops-test"


def _reminders(fake_slack: FakeSlack) -> list[str]:
    return [m["text"] for m in fake_slack.messages(ENV_CHANNEL) if m["text"].startswith("Remind")]


async def test_the_standby_sends_the_next_reminder_after_the_leader_is_killed(
    scenario: Scenario, fake_slack: FakeSlack, fresh_pg_database: str
):
    environ = {
        **configure(scenario, fake_slack),
        "CHATOPS_DATABASE_URL": fresh_pg_database,
        "CHATOPS_SCHEDULER_TICK_S": "0.5",
    }
    scenario.extra_config["windows"] = {"reminders_min": [2, 1]}
    assert scenario.config_path.exists()  # written again
    scenario.extra_env.update(CHATOPS_DATABASE_URL=fresh_pg_database)
    leader_key = f"chatops:{scenario.prefix}:scheduler:leader"
    async with (
        served(environ, scenario.tmp) as (one, _),
        served(environ, scenario.tmp) as (two, _),
    ):
        start = datetime.now(UTC) + timedelta(minutes=2, seconds=4)
        done = await scenario.chatops(
            "window", "schedule", "test", start.isoformat(), "30m", "failover", "--json"
        )
        assert done.code == 0, done.output
        wid = json.loads(done.stdout)["id"]
        await fake_slack.wait_until(lambda: len(_reminders(fake_slack)) == 1, timeout_s=30)
        assert "starts in 2 min" in _reminders(fake_slack)[0]

        holder = json.loads(await scenario.redis.get(leader_key))["holder"]
        pid = int(holder.split(":")[1])
        assert pid in (one.pid, two.pid)
        leader, standby = (one, two) if pid == one.pid else (two, one)
        leader.send_signal(signal.SIGKILL)
        await leader.wait()

        await fake_slack.wait_until(lambda: len(_reminders(fake_slack)) == 2, timeout_s=120)
        assert "starts in 1 min" in _reminders(fake_slack)[1]
        taken = json.loads(await scenario.redis.get(leader_key))["holder"]
        assert int(taken.split(":")[1]) == standby.pid
        await asyncio.sleep(1.5)  # a few more ticks: nothing is sent again
        assert len(_reminders(fake_slack)) == 2
        shown = await scenario.json("window", "show", wid)
        assert [(n["kind"], n["outcome"]) for n in shown["notices"]][:3] == [
            ("announce", "sent"),
            ("remind:2", "sent"),
            ("remind:1", "sent"),
        ]
        cancelled = await scenario.chatops("window", "cancel", wid)
        assert cancelled.code == 0, cancelled.output
        standby.send_signal(signal.SIGTERM)
        await asyncio.wait_for(standby.communicate(), 45)
        assert standby.returncode == 0
