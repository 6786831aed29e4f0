"""The bot's own PostgreSQL unreachable, end to end: the `chatops` CLI as a subprocess, its store
behind a TCP fault proxy (tests/faults/proxy.py) in front of a private database, and the Node
BullMQ worker fixture processing real jobs.

Unreachable at start, a command refuses naming the database (never its password) and changes
nothing in Redis. Gone in the middle of a drain, the drain finishes its work, records its outcome
once the database answers again, and turns producers back on; if the database stays away, the
CLI says the outcome could not be recorded and in which state it left Redis.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import make_url

from tests.canary import DATABASE_PASSWORD
from tests.conftest import free_port
from tests.faults.proxy import FaultProxy, fault_proxy
from tests.fixtures.serve import served
from tests.scenarios.conftest import Result, Scenario
from tests.scenarios.test_slack import CHANNEL, OPS, SECRET, configure
from tests.slack.driver import SlackDriver
from tests.slack.fake_slack import FakeSlack

PASSWORD = DATABASE_PASSWORD  # a canary (tests/canary.py): trust auth ignores it
DRAIN = ("queue", "drain", "sla", "--env", "test", "--yes")
JOBS = 80


def use_database(scenario: Scenario, url: str, *, port: int) -> str:
    """Point the CLI at `url` on 127.0.0.1:`port`, with a password in it; the URL used."""
    database = make_url(url).set(host="127.0.0.1", port=port, password=PASSWORD)
    rendered = database.render_as_string(hide_password=False)
    scenario.extra_env["CHATOPS_DATABASE_URL"] = rendered
    scenario.extra_env["CHATOPS_DATABASE_TIMEOUT_S"] = "1"
    return rendered


@pytest.fixture
async def proxy(scenario: Scenario, fresh_pg_database: str) -> AsyncIterator[FaultProxy]:
    """The scenario's store: its private database behind a fault proxy (mode `pass`)."""
    database = make_url(fresh_pg_database)
    async with fault_proxy(database.host or "127.0.0.1", database.port or 5432) as fault:
        use_database(scenario, fresh_pg_database, port=fault.port)
        yield fault


# ---- what a fault must leave behind -------------------------------------------------------


def assert_said(result: Result, *fragments: str) -> None:
    """The CLI failed with these words (joined across rich's line wraps), no traceback, and no
    password."""
    assert result.code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert PASSWORD not in result.output, result.output
    said = " ".join(result.output.split())
    for fragment in fragments:
        assert fragment in said, result.output


async def assert_redis_untouched(scenario: Scenario) -> None:
    """No flag written, no queue paused, no lock left, no job added."""
    assert await scenario.flag() is None
    for queue in ("sla", "other"):
        assert await scenario.redis.hget(f"{scenario.prefix}:{queue}:meta", "paused") is None
        assert await scenario.redis.llen(f"{scenario.prefix}:{queue}:wait") == 0
    locks = [k async for k in scenario.redis.scan_iter(match=f"chatops:{scenario.prefix}:lock:*")]
    assert locks == []


async def drained(scenario: Scenario) -> bool:
    wait = await scenario.redis.llen(f"{scenario.prefix}:sla:wait")
    active = await scenario.redis.llen(f"{scenario.prefix}:sla:active")
    return wait + active == 0


async def wait_drained(scenario: Scenario) -> None:
    async with asyncio.timeout(60):
        while not await drained(scenario):
            await asyncio.sleep(0.1)


async def finish(proc: asyncio.subprocess.Process, *, timeout_s: float = 90) -> Result:
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"chatops hung:\n{out.decode()}\n{err.decode()}") from None
    return Result(proc.returncode or 0, out.decode(), err.decode())


async def assert_each_job_ran_once(scenario: Scenario) -> None:
    runs = await scenario.runs()
    assert len(runs) == JOBS, runs
    assert set(runs.values()) == {1}, {k: v for k, v in runs.items() if v != 1}
    assert await scenario.redis.zcard(f"{scenario.prefix}:sla:completed") == JOBS


# ---- unreachable at start -----------------------------------------------------------------


@pytest.mark.parametrize("fault", ["reset", "closed port"])
async def test_start_refuses_naming_the_database_and_changes_nothing(
    scenario: Scenario, fresh_pg_database: str, fault: str
):
    database = make_url(fresh_pg_database)
    async with fault_proxy(database.host or "127.0.0.1", database.port or 5432) as proxy:
        if fault == "reset":
            proxy.set_mode("reset")
            port = proxy.port
        else:
            port = free_port()  # nothing listens there
        use_database(scenario, fresh_pg_database, port=port)
        named = f"127.0.0.1:{port}/{database.database}"
        drain = await scenario.chatops(*DRAIN, timeout_s=60)
        assert_said(drain, "database", named, "unavailable")
        history = await scenario.chatops("ops", "history", timeout_s=60)
        assert_said(history, "database", named, "unavailable")
        serve = await scenario.chatops(
            "serve", "--port", str(free_port()), "--host", "127.0.0.1", timeout_s=60
        )
        assert_said(serve, "database", named, "unavailable")
    await assert_redis_untouched(scenario)


# ---- gone in the middle of a drain --------------------------------------------------------


async def start_drain(scenario: Scenario) -> asyncio.subprocess.Process:
    """Jobs queued and a worker on them; a drain spawned, returned once it has turned producers
    off (it then watches the queue empty)."""
    # About 6 s of work for the worker: it outlasts the drain's CLI start on a loaded machine.
    await scenario.produce("sla", JOBS, "--data", json.dumps({"ms": 400}))
    proc = await scenario.spawn(*DRAIN)
    async with asyncio.timeout(60):
        while await scenario.flag() != "false":
            if proc.returncode is not None:
                raise AssertionError(f"the drain ended early:\n{(await finish(proc)).output}")
            await asyncio.sleep(0.05)
    return proc


@pytest.mark.parametrize("fault", ["blackhole", "reset"])
async def test_a_drain_outlives_a_database_outage_and_records_once_it_is_back(
    scenario: Scenario, proxy: FaultProxy, fault: Any
):
    assert (await scenario.chatops("ops", "history")).code == 0  # migrated, through the proxy
    async with scenario.node_worker("sla"):
        proc = await start_drain(scenario)
        proxy.set_mode(fault)
        await wait_drained(scenario)
        await asyncio.sleep(2)  # the watch sees it empty while the database is away
        assert proc.returncode is None, (await finish(proc)).output
        proxy.set_mode("pass")
        result = await finish(proc)
    assert result.code == 0, result.output
    assert "Traceback" not in result.output and PASSWORD not in result.output, result.output
    assert await scenario.flag() == "true"
    await assert_each_job_ran_once(scenario)
    (last,) = await scenario.json("ops", "history")
    shown = await scenario.json("ops", "show", last["id"])
    assert shown["state"] == "succeeded", shown
    assert [s["state"] for s in shown["steps"]] == ["succeeded"] * 4, shown


async def test_a_drain_whose_database_stays_away_says_what_it_could_not_record(
    scenario: Scenario, proxy: FaultProxy
):
    scenario.extra_env["CHATOPS_STORE_PATIENCE_S"] = "4"
    assert (await scenario.chatops("ops", "history")).code == 0
    async with scenario.node_worker("sla"):
        proc = await start_drain(scenario)
        proxy.set_mode("blackhole")
        result = await finish(proc)
        # The drain gave up on its store before the queue emptied: the worker finishes the rest.
        await wait_drained(scenario)
    op_id = result.output.split("drain sla in test (", 1)[1].split(")", 1)[0]
    assert_said(
        result,
        f"operation {op_id} (drain sla in test)",
        "database",
        "is unavailable",
        "its outcome is not recorded",
        f"put back: producer flag {scenario.prefix}:flags:WORKER_ACCEPT_JOBS back on",
    )
    # The outage begins once producers are off: whether the start of step 3 was recorded
    # before it is a race; either way the message names the last step that ended.
    said = " ".join(result.output.split())
    assert (
        "It stopped after step 2 of 4 (turn producers off" in said
        or "It stopped after step 3 of 4 (wait until sla" in said
    ), result.output
    assert await scenario.flag() == "true"  # producers back on although nothing was recorded
    await assert_each_job_ran_once(scenario)
    locks = [k async for k in scenario.redis.scan_iter(match=f"chatops:{scenario.prefix}:lock:*")]
    assert locks == []

    # Back: the next command marks the operation interrupted, as the message said.
    proxy.set_mode("pass")
    history = await scenario.chatops("ops", "history", "--json")
    assert history.code == 0, history.output
    assert f"recovered: operation {op_id}" in " ".join(history.stderr.split()), history.output
    shown = await scenario.json("ops", "show", op_id)
    assert shown["state"] == "interrupted", shown
    first, second = shown["steps"][:2]
    assert first["state"] == "succeeded", shown
    # The end of step 2 races the outage as well: if its record was lost, the store saw step 2
    # running and recovery closed it as interrupted; it never shows a step as done that was not.
    assert second["state"] == "succeeded" or (
        second["state"] == "failed" and second["error"].startswith("interrupted:")
    ), shown
    assert await scenario.flag() == "true"


async def test_a_drain_taken_for_dead_during_an_outage_stops_and_leaves_the_takeover_alone(
    scenario: Scenario, proxy: FaultProxy, fresh_pg_database: str
):
    """Its store out of reach longer than the lapse, while another process reaches it: that
    process claims the drain and puts producers back on; the drain, once it hears, stops."""
    assert (await scenario.chatops("ops", "history")).code == 0
    async with scenario.node_worker("sla", CONCURRENCY="1"):  # a drain of about 30 s
        await scenario.produce("sla", JOBS, "--data", json.dumps({"ms": 400}))
        proc = await scenario.spawn(*DRAIN)
        async with asyncio.timeout(60):
            while await scenario.flag() != "false":
                await asyncio.sleep(0.05)
        proxy.set_mode("blackhole")
        await asyncio.sleep(3.5)  # five missed heartbeats of 0.5 s, and some
        direct = dict(scenario.extra_env)
        use_database(scenario, fresh_pg_database, port=make_url(fresh_pg_database).port or 5432)
        history = await scenario.chatops("ops", "history")
        scenario.extra_env.clear()
        scenario.extra_env.update(direct)
        assert "recovered: operation" in history.stderr, history.output
        assert await scenario.flag() == "true"  # put back by the claimer
        proxy.set_mode("pass")
        result = await finish(proc, timeout_s=30)
    said = " ".join(result.output.split())
    assert "sla drained in" not in said, "the drain ran on to the end"
    # Stopped by the bot, for a reason it names: its lock freed by the claimer, or the claim.
    # Producers are off before the end of step 2 is recorded: if the outage catches that record,
    # the drain hears of the claim before step 3 starts, and says so.
    assert (
        "stopped at step 3 of 4 (wait until sla" in said
        or "stopped before step 3 of 4 (wait until sla" in said
    ), result.output
    assert "lost its lock" in said or "took it for dead" in said, result.output
    assert "Traceback" not in result.output and PASSWORD not in result.output, result.output
    assert await scenario.flag() == "true"  # the stopped drain did not turn producers off again
    (last,) = await scenario.json("ops", "history")
    shown = await scenario.json("ops", "show", last["id"])
    assert shown["state"] == "interrupted", shown  # the claimer's record stands
    locks = [k async for k in scenario.redis.scan_iter(match=f"chatops:{scenario.prefix}:lock:*")]
    assert locks == []


async def test_a_drain_from_slack_whose_database_stays_away_is_told_there_and_later_closed(
    scenario: Scenario, proxy: FaultProxy, fake_slack: FakeSlack
):
    """From Slack: the drain ends and puts producers back on; the operator hears at once that
    its outcome is not recorded (straight from Slack's API: the outbox lives in the store).
    Once the database is back, the operation is closed as interrupted, in its thread and in
    its progress message."""
    scenario.extra_env["CHATOPS_STORE_PATIENCE_S"] = "4"
    environ = configure(scenario, fake_slack)
    await scenario.produce("sla", JOBS, "--data", json.dumps({"ms": 120}))

    def told() -> list[str]:
        found = [e["text"] for e in fake_slack.ephemerals(CHANNEL, OPS)]
        return [text for text in found if "not recorded" in text]

    def progress() -> dict[str, Any] | None:
        found = [m for m in fake_slack.messages(CHANNEL) if "drain sla in test" in m["text"]]
        return found[0] if found else None

    # The worker starts once the bot serves: its 10 s of jobs are not spent on the bot's start.
    async with served(environ, scenario.tmp) as (proc, port):
        async with scenario.node_worker("sla", CONCURRENCY="1"):  # a drain of about 10 s
            driver = SlackDriver(
                f"http://127.0.0.1:{port}/slack/events", SECRET, fake_slack, channel=CHANNEL
            )
            await driver.command_confirmed("/queue", "drain sla", user=OPS)
            async with asyncio.timeout(30):
                while await scenario.flag() != "false":
                    await asyncio.sleep(0.05)
            await fake_slack.wait_until(lambda: progress() is not None, timeout_s=20)
            proxy.set_mode("blackhole")
            await fake_slack.wait_until(lambda: bool(told()), timeout_s=60)
            assert await scenario.flag() == "true"  # put back, though nothing was recorded
            proxy.set_mode("pass")

            def closed() -> bool:
                message = progress()
                return message is not None and ": interrupted" in message["text"]

            await fake_slack.wait_until(closed, timeout_s=30)  # this replica's takeover
            # The drain gave up on its store before the queue emptied: the worker finishes it.
            await wait_drained(scenario)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 45)
    (text,) = told()
    said = " ".join(text.split())
    assert "its outcome is not recorded" in said and "database" in said, said
    assert f"put back: producer flag {scenario.prefix}:flags:WORKER_ACCEPT_JOBS back on" in said
    assert PASSWORD not in json.dumps([c.args for c in fake_slack.calls])
    await assert_each_job_ran_once(scenario)
    (last,) = await scenario.json("ops", "history")
    assert last["outcome"] == "interrupted", last
    message = progress()
    assert message is not None
    replies = [r["text"] for r in fake_slack.thread(CHANNEL, str(message["ts"]))]
    assert any(f"operation {last['id']} (drain sla in test)" in r for r in replies), replies


# ---- chatops serve ------------------------------------------------------------------------


async def test_serve_stays_ready_while_its_database_is_away(
    scenario: Scenario, proxy: FaultProxy, fake_slack: FakeSlack
):
    """Readiness means "can answer Slack": a store outage is told in answers, not by dropping
    the replica out of the load balancer."""
    environ = configure(scenario, fake_slack)
    async with served(environ, scenario.tmp) as (proc, port), aiohttp.ClientSession() as http:

        async def status(path: str) -> int:
            async with asyncio.timeout(10), http.get(f"http://127.0.0.1:{port}{path}") as answer:
                return answer.status

        async with asyncio.timeout(30):
            while await status("/readyz") != 200:
                await asyncio.sleep(0.2)
        for fault in ("blackhole", "reset"):
            proxy.set_mode(fault)
            for _ in range(10):  # across the background loops' store calls
                assert await status("/readyz") == 200
                assert await status("/healthz") == 200
                await asyncio.sleep(0.3)
        proxy.set_mode("pass")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    output = out.decode() + err.decode()
    assert proc.returncode == 0, output
    assert "Traceback" not in output and PASSWORD not in output, output
