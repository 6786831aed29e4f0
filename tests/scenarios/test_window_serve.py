"""Windows under `chatops serve`: two replicas sharing the store and Redis, one leading the
scheduler; the window opens once, a standby takes over when the leader stops, and a restarted
bot neither repeats a notice nor drops the flag. Real clock, ticks of 0.3 s."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta

from bot.runtime import open_runtime
from bot.store import Store
from bot.store.records import OperationRecord
from tests.faults.redis_process import redis_process
from tests.scenarios.conftest import Scenario
from tests.scenarios.test_slack import GUEST, OPS, configure, running_bot
from tests.slack.fake_slack import FakeSlack

ENV_CHANNEL = "#ops-test"  # the environment's channel in test_slack.configure


async def _wait(predicate, timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.1)


def _texts(fake_slack: FakeSlack) -> list[str]:
    return [m["text"] for m in fake_slack.messages(ENV_CHANNEL)]


async def test_two_replicas_open_a_window_once_and_a_standby_takes_over(
    scenario: Scenario, fake_slack: FakeSlack
):
    environ = {**configure(scenario, fake_slack), "CHATOPS_SCHEDULER_TICK_S": "0.3"}
    scenario.extra_env.update(
        SLACK_BOT_TOKEN=fake_slack.bot_token, SLACK_API_URL=fake_slack.api_url
    )
    flag = f"{scenario.prefix}:flags:MAINTENANCE"
    # 10 s out: `window schedule` opens what is already due, and on a loaded machine a CLI that
    # took longer than the lead would open the window itself, before any replica ran.
    start = datetime.now(UTC) + timedelta(seconds=10)
    done = await scenario.chatops(
        "window", "schedule", "test", start.isoformat(), "1h", "failover", "drill", "--json"
    )
    assert done.code == 0, done.output
    wid = json.loads(done.stdout)["id"]
    await _wait(lambda: len(_texts(fake_slack)) >= 1)  # the announcement, sent by the CLI
    assert len(_texts(fake_slack)) == 1, _texts(fake_slack)

    stacks = [contextlib.AsyncExitStack(), contextlib.AsyncExitStack()]
    try:
        chats = [
            await stack.enter_async_context(running_bot(scenario, fake_slack, environ))
            for stack in stacks
        ]
        schedulers = [chat.bot.windows for chat in chats]
        assert all(schedulers)
        await _wait(lambda: any("is open until" in t for t in _texts(fake_slack)))
        assert await scenario.redis.get(flag) is not None
        await asyncio.sleep(1.0)  # several ticks of both replicas
        assert len([t for t in _texts(fake_slack) if "is open until" in t]) == 1
        leading = [bool(s and s.leading) for s in schedulers]
        assert sorted(leading) == [False, True]
        leader = leading.index(True)
        await stacks[leader].aclose()  # the leader stops: the standby must take over
        survivor = schedulers[1 - leader]
        await _wait(lambda: bool(survivor and survivor.leading))
        cancelled = await scenario.chatops("window", "cancel", wid)
        assert cancelled.code == 0, cancelled.output
    finally:
        for stack in stacks:
            await stack.aclose()

    assert await scenario.redis.get(flag) is None
    texts = _texts(fake_slack)
    assert len([t for t in texts if "is open until" in t]) == 1
    assert "closed early by" in texts[-1]


async def test_a_restarted_bot_keeps_the_flag_and_repeats_nothing(
    scenario: Scenario, fake_slack: FakeSlack
):
    environ = {**configure(scenario, fake_slack), "CHATOPS_SCHEDULER_TICK_S": "0.3"}
    scenario.extra_env.update(
        SLACK_BOT_TOKEN=fake_slack.bot_token, SLACK_API_URL=fake_slack.api_url
    )
    flag = f"{scenario.prefix}:flags:MAINTENANCE"
    start = datetime.now(UTC) + timedelta(seconds=2)
    done = await scenario.chatops("window", "schedule", "test", start.isoformat(), "1h")
    assert done.code == 0, done.output
    async with running_bot(scenario, fake_slack, environ):
        await _wait(lambda: any("is open until" in t for t in _texts(fake_slack)))
    before = _texts(fake_slack)
    assert await scenario.redis.get(flag) is not None  # stopping the bot leaves it set
    async with running_bot(scenario, fake_slack, environ) as chat:
        assert chat.bot.windows is not None
        await _wait(lambda: chat.bot.windows is not None and chat.bot.windows.leading)
        await asyncio.sleep(1.0)
    assert _texts(fake_slack) == before
    assert await scenario.redis.get(flag) is not None


async def test_window_from_slack_in_the_users_zone_with_permissions(
    scenario: Scenario, fake_slack: FakeSlack
):
    environ = configure(scenario, fake_slack)
    scenario.extra_config["permissions"]["operator"]["test"].append("window")
    assert scenario.config_path.exists()  # written again, with the permission
    fake_slack.users[OPS] = {"tz": "Europe/Paris"}
    fake_slack.users[GUEST] = {}
    async with running_bot(scenario, fake_slack, environ) as chat:
        response = await chat.driver.command(
            "/window", "schedule test 23:30 tomorrow 1h db upgrade"
        )
        assert response.status == 200 and "scheduling" in response.json["text"]
        await chat.wait(lambda: bool(fake_slack.responses(response.response_url)))
        (answer,) = fake_slack.responses(response.response_url)
        assert answer["text"].startswith("✅ window `w-"), answer
        wid = answer["text"].split("`")[1]
        # 23:30 tomorrow in Paris, whatever the bot's own zone.
        assert "23:30 CET" in answer["text"] or "23:30 CEST" in answer["text"], answer["text"]
        await chat.wait(lambda: any(wid in t for t in _texts(fake_slack)))

        listed = await chat.driver.command("/window", "list")
        await chat.wait(lambda: bool(fake_slack.responses(listed.response_url)))
        assert wid in fake_slack.responses(listed.response_url)[0]["text"]

        refused = await chat.driver.command("/window", f"cancel {wid}", user=GUEST)
        await chat.wait(lambda: bool(fake_slack.responses(refused.response_url)))
        assert (
            "needs the permission `window in test`"
            in fake_slack.responses(refused.response_url)[0]["text"]
        )

        moved = await chat.driver.command("/window", f"reschedule {wid} 22:00 tomorrow 2h")
        await chat.wait(lambda: bool(fake_slack.responses(moved.response_url)))
        answer = fake_slack.responses(moved.response_url)[0]["text"]
        assert "moved" in answer and ("22:00 CET" in answer or "22:00 CEST" in answer), answer
        await chat.wait(
            lambda: "22:00" in fake_slack.messages(ENV_CHANNEL)[0]["blocks"][0]["text"]["text"]
        )

        cancel = await chat.driver.command("/window", f"cancel {wid}")
        await chat.wait(lambda: bool(fake_slack.responses(cancel.response_url)))
        assert "cancelled" in fake_slack.responses(cancel.response_url)[0]["text"]
        await chat.wait(
            lambda: (
                "cancelled by U_OPS"
                in fake_slack.messages(ENV_CHANNEL)[0]["blocks"][0]["text"]["text"]
            )
        )
    audit = await scenario.json("ops", "history")
    assert audit == []  # windows are not operations


async def test_a_replica_takes_over_an_operation_whose_replica_died(
    scenario: Scenario, fake_slack: FakeSlack
):
    environ = configure(scenario, fake_slack)  # heartbeats of 0.5 s: lapsed after 2.5 s
    flag_key = f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS"
    async with running_bot(scenario, fake_slack, environ) as chat:
        store, now = chat.bot.rt.store, datetime.now(UTC)
        # What a replica SIGKILLed mid-drain leaves: a running operation whose heartbeat
        # stopped, the producer flag it turned off, and its progress message in the channel.
        op = await _left_by_a_dead_replica(store, flag_key, now)
        await scenario.redis.set(flag_key, "false")
        posted = await chat.bot.client.chat_postMessage(channel=ENV_CHANNEL, text="drain: running")
        await store.set_slack_message(
            f"{op.id}:progress", channel=ENV_CHANNEL, ts=str(posted["ts"])
        )

        await chat.wait(lambda: bool(fake_slack.thread(ENV_CHANNEL, str(posted["ts"]))), 20)
        (reply,) = fake_slack.thread(ENV_CHANNEL, str(posted["ts"]))
        assert "taken over by" in reply["text"] and "put back" in reply["text"], reply
    assert await scenario.redis.get(flag_key) in (b"true", "true")
    shown = await scenario.json("ops", "show", op.id)
    assert shown["state"] == "interrupted"
    assert "step 2" in shown["summary"], shown["summary"]


async def test_a_command_line_recovery_is_told_in_the_operations_slack_thread(
    scenario: Scenario, fake_slack: FakeSlack
):
    """A replica died mid-drain and no other ran: the next `chatops` command recovers the
    operation, and its thread hears of it once a `chatops serve` runs again."""
    environ = configure(scenario, fake_slack)
    scenario.extra_env.update(
        SLACK_BOT_TOKEN=fake_slack.bot_token, SLACK_API_URL=fake_slack.api_url
    )
    flag_key = f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS"
    ts = fake_slack.add_message(ENV_CHANNEL, "drain: running", user=fake_slack.bot_user_id)
    async with open_runtime(environ) as rt:
        op = await _left_by_a_dead_replica(rt.store, flag_key, datetime.now(UTC))
        await rt.store.set_slack_message(f"{op.id}:progress", channel=ENV_CHANNEL, ts=ts)
    await scenario.redis.set(flag_key, "false")

    history = await scenario.chatops("ops", "history")
    assert history.code == 0, history.output
    assert f"recovered: operation {op.id}" in " ".join(history.stderr.split())
    assert await scenario.redis.get(flag_key) in (b"true", "true")
    async with running_bot(scenario, fake_slack, environ) as chat:
        await chat.wait(lambda: bool(fake_slack.thread(ENV_CHANNEL, ts)), 20)
    (reply,) = fake_slack.thread(ENV_CHANNEL, ts)
    assert "taken over by" in reply["text"] and "put back" in reply["text"], reply


async def _left_by_a_dead_replica(store: Store, flag_key: str, now: datetime) -> OperationRecord:
    """What a replica SIGKILLed mid-drain leaves in the store: a running operation whose
    heartbeat stopped 30 s ago at step 2, and the producer flag it turned off to put back."""
    op = await store.create_operation(
        kind="drain",
        env="test",
        target="sla",
        actor="U_OPS",
        source="slack",
        command="/queue drain sla",
        reason=None,
        params={"locks": []},
        plan=["check the queue", "turn producers off", "watch the queue drain"],
        owner="dead-host:1:gone",
        now=now - timedelta(seconds=30),
    )
    await store.start_step(op.id, 1, now=now - timedelta(seconds=29))
    await store.add_restore(op.id, kind="flag_off", env="test", key=flag_key, now=now)
    return op


async def test_the_scheduler_leads_once_its_redis_is_back_and_opens_the_window(
    scenario: Scenario, fake_slack: FakeSlack
):
    """Redis for coordination out of reach when the bot starts: the scheduler keeps trying, and
    opens the window (late) once it can lead, instead of giving up for the process's life."""
    async with redis_process(persistent=False) as coordination:
        environ = {
            **configure(scenario, fake_slack),
            "CHATOPS_SCHEDULER_TICK_S": "0.3",
            "CHATOPS_REDIS_URL": coordination.url,
        }
        scenario.extra_env.update(
            SLACK_BOT_TOKEN=fake_slack.bot_token, SLACK_API_URL=fake_slack.api_url
        )
        # Far enough ahead that the CLI, which opens what is due when it schedules, does not:
        # it takes seconds to start on a loaded machine.
        start = datetime.now(UTC) + timedelta(seconds=10)
        done = await scenario.chatops("window", "schedule", "test", start.isoformat(), "1h")
        assert done.code == 0, done.output
        assert not any("is open until" in t for t in _texts(fake_slack))
        await coordination.stop()
        async with running_bot(scenario, fake_slack, environ) as chat:
            scheduler = chat.bot.windows
            assert scheduler is not None
            # The window falls due while Redis is away, and a few ticks more go by.
            await asyncio.sleep((start - datetime.now(UTC)).total_seconds() + 1.5)
            assert not scheduler.leading
            assert not any("is open until" in t for t in _texts(fake_slack))
            await coordination.start()
            await _wait(lambda: any("is open until" in t for t in _texts(fake_slack)), 60)
            assert scheduler.leading
    assert await scenario.redis.get(f"{scenario.prefix}:flags:MAINTENANCE") is not None
