"""Queue operations through the `chatops` CLI against real Redis and the Node BullMQ worker."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from tests.fixtures.pm2 import node_job_counts
from tests.scenarios.conftest import HELD_DRAIN, Scenario

# A drain with no worker that holds on while the test acts on it: the scenario's stall of 6 s
# can pass during two CLI starts on a loaded machine, and the drain then ends on its own.


async def _wait_for(predicate, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.1)


async def test_drain_processes_every_job_once_and_restores_the_flag(scenario: Scenario):
    await scenario.produce("sla", 2000)
    assert (await scenario.counts())["waiting"] == 2000
    async with scenario.node_worker(CONCURRENCY="20", JOB_MS="1"):
        result = await scenario.chatops("queue", "drain", "sla", "--env", "test", "--yes")
    assert result.code == 0, result.output
    assert "sla drained" in result.stdout
    counts = await scenario.counts()
    assert counts["waiting"] == counts["active"] == counts["delayed"] == 0
    assert counts["completed"] == 2000
    runs = await scenario.runs()
    assert len(runs) == 2000 and set(runs.values()) == {1}
    assert await scenario.flag() == "true"
    history = await scenario.json("ops", "history")
    assert history[0]["kind"] == "drain" and history[0]["outcome"] == "succeeded"


async def test_drain_reports_jobs_delayed_beyond_the_deadline(scenario: Scenario):
    await scenario.produce("sla", 5, "--delay-ms", "3600000")
    await scenario.produce("sla", 20)
    async with scenario.node_worker():
        result = await scenario.chatops("queue", "drain", "sla", "--env", "test", "--yes")
    assert result.code == 0, result.output
    assert "5 delayed job(s) due after the deadline, left in place" in result.stdout
    counts = await scenario.counts()
    assert counts["delayed"] == 5 and counts["completed"] == 20


async def test_drain_without_a_worker_fails_as_stalled_and_restores_the_flag(scenario: Scenario):
    await scenario.produce("sla", 10)
    result = await scenario.chatops("queue", "drain", "sla", "--env", "test", "--yes")
    assert result.code == 1, result.output
    assert "stalled: no progress for 6 s" in result.output
    assert "no worker is connected" in result.output
    assert await scenario.flag() == "true"
    assert (await scenario.counts())["waiting"] == 10  # nothing deleted


async def test_drain_names_a_producer_that_ignores_the_flag(scenario: Scenario):
    # 10 s of work: the drain's CLI start and two producers' runs fit in it on a loaded machine.
    await scenario.produce("sla", 100, "--data", json.dumps({"ms": 200}))
    async with scenario.node_worker(CONCURRENCY="2"):
        drain = await scenario.spawn("queue", "drain", "sla", "--env", "test", "--yes")

        async def flag_off() -> bool:
            return await scenario.flag() == "false"

        await _wait_for(flag_off)
        held = await scenario.produce("sla", 3)
        assert "producer:added 0" in held  # an honest producer holds its jobs
        await scenario.produce("sla", 3, "--ignore-flag")
        out, err = await asyncio.wait_for(drain.communicate(), 60)
    text = out.decode() + err.decode()
    assert drain.returncode == 1, text
    assert "a producer ignores the flag: 3 job(s) added to sla" in text
    assert await scenario.flag() == "true"


async def test_a_queue_under_another_prefix_is_an_error_never_zeros(scenario: Scenario):
    other = f"{scenario.prefix}x"
    scenario.configure(prefix=other)
    await scenario.produce("sla", 3)  # written under the scenario's real prefix
    try:
        result = await scenario.chatops("queue", "status", "sla", "--env", "test", "--json")
        assert result.code == 2, result.output
        assert f"no queue 'sla' under prefix '{other}'" in result.stderr
        assert repr(scenario.prefix) in result.stderr
        assert result.stdout == ""
    finally:
        keys = [k async for k in scenario.redis.scan_iter(match=f"{other}:*")]
        if keys:
            await scenario.redis.delete(*keys)


async def test_counts_equal_what_node_bullmq_reports(scenario: Scenario):
    await scenario.produce("sla", 7)
    await scenario.produce("sla", 3, "--delay-ms", "600000")
    await scenario.produce("sla", 2, "--data", json.dumps({"error": "boom"}))
    async with scenario.node_worker(JOB_MS="1"):

        async def settled() -> bool:
            c = await scenario.counts()
            return c["waiting"] == 0 and c["active"] == 0

        await _wait_for(settled)
    await scenario.produce("sla", 4)
    ours = await scenario.counts()
    node = await node_job_counts("sla", prefix=scenario.prefix)
    assert ours["waiting"] == node["waiting"] == 4
    for state in ("active", "delayed", "prioritized", "failed", "completed"):
        assert ours[state] == node[state], state
    assert ours["waiting_children"] == node["waiting-children"]


async def test_pause_and_resume(scenario: Scenario):
    await scenario.produce("sla", 5)
    result = await scenario.chatops("queue", "pause", "sla", "--env", "test", "--yes")
    assert result.code == 0, result.output
    async with scenario.node_worker():
        await asyncio.sleep(1.0)
        status = await scenario.json("queue", "status", "sla", "--env", "test")
        assert status["queues"][0]["paused"] is True
        assert status["queues"][0]["counts"]["waiting"] == 5  # held, not processed
        result = await scenario.chatops("queue", "resume", "sla", "--env", "test", "--yes")
        assert result.code == 0, result.output

        async def done() -> bool:
            return (await scenario.counts())["completed"] == 5

        await _wait_for(done)


async def test_failed_jobs_list_their_first_line_and_retry_by_id(scenario: Scenario):
    await scenario.produce("sla", 3, "--data", json.dumps({"error": "smtp refused\n  at send()"}))
    async with scenario.node_worker():

        async def failed() -> bool:
            return (await scenario.counts())["failed"] == 3

        await _wait_for(failed)
    jobs = await scenario.json("queue", "failed", "sla", "--env", "test")
    assert {j["failed_reason_first_line"] for j in jobs} == {"smtp refused"}
    first = jobs[0]["id"]
    result = await scenario.chatops(
        "queue", "retry", "sla", "--env", "test", first, "nope", "--yes"
    )
    assert result.code == 0, result.output
    assert "not retried: nope: no such job" in result.stdout
    counts = await scenario.counts()
    assert counts["failed"] == 2 and counts["waiting"] == 1
    result = await scenario.chatops("queue", "retry", "sla", "--env", "test", "--all", "--yes")
    assert result.code == 0, result.output
    assert (await scenario.counts())["waiting"] == 3


async def test_promote_moves_only_overdue_delayed_jobs(scenario: Scenario):
    await scenario.produce("sla", 2, "--delay-ms", "300")
    await scenario.produce("sla", 4, "--delay-ms", "3600000")
    await asyncio.sleep(0.6)  # the short ones are now overdue: no worker is there to move them
    listing = await scenario.json("queue", "delayed", "sla", "--env", "test")
    assert sorted(j["overdue"] for j in listing["jobs"]) == [False] * 4 + [True] * 2
    result = await scenario.chatops(
        "queue", "promote", "sla", "--env", "test", "--overdue", "--yes"
    )
    assert result.code == 0, result.output
    counts = await scenario.counts()
    assert counts["waiting"] == 2 and counts["delayed"] == 4


async def test_cancel_mid_drain_restores_the_flag(scenario: Scenario):
    scenario.configure(drain=HELD_DRAIN)
    await scenario.produce("sla", 10)
    drain = await scenario.spawn("queue", "drain", "sla", "--env", "test", "--yes")

    async def flag_off() -> bool:
        return await scenario.flag() == "false"

    await _wait_for(flag_off)
    (op,) = await scenario.json("ops", "history")
    result = await scenario.chatops("ops", "cancel", op["id"])
    assert result.code == 0, result.output
    out, err = await asyncio.wait_for(drain.communicate(), 30)
    assert drain.returncode == 1, out.decode() + err.decode()
    assert await scenario.flag() == "true"
    shown = await scenario.json("ops", "show", op["id"])
    assert shown["state"] == "cancelled"
    assert "cancelled at step 3 of 4" in shown["summary"]


async def test_sigkill_mid_drain_is_recovered_by_the_next_start(scenario: Scenario):
    await scenario.produce("sla", 10)
    drain = await scenario.spawn("queue", "drain", "sla", "--env", "test", "--yes")

    async def flag_off() -> bool:
        return await scenario.flag() == "false"

    await _wait_for(flag_off)
    drain.kill()
    await drain.wait()
    assert await scenario.flag() == "false"
    await asyncio.sleep(3.0)  # five missed heartbeats of 0.5 s
    result = await scenario.chatops("ops", "history", "--json")
    assert result.code == 0, result.output
    assert "recovered: operation" in result.stderr
    assert "producer flag" in result.stderr
    history = json.loads(result.stdout)
    assert history[0]["outcome"] == "interrupted"
    assert await scenario.flag() == "true"
    # The lock went with it: the queue can be drained again at once.
    again = await scenario.chatops("queue", "pause", "sla", "--env", "test", "--yes")
    assert again.code == 0, again.output


async def test_a_second_operation_on_the_same_queue_is_refused_naming_the_holder(
    scenario: Scenario,
):
    scenario.configure(drain=HELD_DRAIN)
    await scenario.produce("sla", 10)
    drain = await scenario.spawn("queue", "drain", "sla", "--env", "test", "--yes")

    async def flag_off() -> bool:
        return await scenario.flag() == "false"

    try:
        await _wait_for(flag_off)
        (op,) = await scenario.json("ops", "history")
        result = await scenario.chatops("queue", "pause", "sla", "--env", "test", "--yes")
        assert result.code == 2, result.output
        assert "is locked by" in result.stderr and op["id"] in result.stderr
    finally:
        drain.send_signal(2)
        await asyncio.wait_for(drain.communicate(), 30)
    assert await scenario.flag() == "true"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("queue", "status", "--env", "nope"), "unknown environment 'nope'; known: test"),
        (
            ("queue", "drain", "slq", "--env", "test", "--yes"),
            "unknown queue 'slq' in test; known: other, sla",
        ),
        (("queue", "retry", "sla", "--env", "test", "--yes"), "give job ids or --all"),
        (("worker", "status", "api", "--env", "test"), "unknown worker 'api' in test; known: none"),
        (("queue", "drain", "sla", "--env", "test"), "refusing to run without --yes"),
    ],
)
async def test_bad_input_is_refused_with_exit_2_and_changes_nothing(
    scenario: Scenario, args, message
):
    result = await scenario.chatops(*args)
    assert result.code == 2, result.output
    assert message in result.stderr
    assert await scenario.flag() is None


async def test_a_redis_password_never_appears_in_output_or_store(
    scenario: Scenario, private_redis_with_password
):
    url, password = private_redis_with_password
    scenario.redis_url = url
    scenario.configure(redis_url=url)
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    await client.hset(f"{scenario.prefix}:sla:meta", mapping={"opts.maxLenEvents": "10000"})
    await client.aclose()
    outputs = [
        await scenario.chatops("queue", "status", "--env", "test"),
        await scenario.chatops("queue", "pause", "sla", "--env", "test", "--yes"),
        await scenario.chatops("queue", "status", "other", "--env", "test"),  # missing: error text
    ]
    history = await scenario.chatops("ops", "history", "--json")
    assert outputs[1].code == 0, outputs[1].output
    assert outputs[2].code == 2
    for result in [*outputs, history]:
        assert password not in result.output
    db = sqlite3.connect(scenario.tmp / "chatops.sqlite3")
    dump = "\n".join(db.iterdump())
    db.close()
    assert password not in dump


async def test_lock_release_frees_a_held_lock_audited_and_the_holder_stops(scenario: Scenario):
    scenario.configure(drain=HELD_DRAIN)
    await scenario.produce("sla", 5)
    drain = await scenario.spawn("queue", "drain", "sla", "--env", "test", "--yes")

    async def flag_off() -> bool:
        return await scenario.flag() == "false"

    await _wait_for(flag_off)
    (op,) = await scenario.json("ops", "history")
    key = f"chatops:{scenario.prefix}:lock:test:queue:sla"
    refused = await scenario.chatops("lock", "release", "chatops:nope", "--reason", "x")
    assert refused.code == 2 and "not a chatops lock key" in refused.stderr
    result = await scenario.chatops("lock", "release", key, "--reason", "holder hung")
    assert result.code == 0, result.output
    assert op["id"] in result.stdout
    out, err = await asyncio.wait_for(drain.communicate(), 60)
    assert drain.returncode == 1, out.decode() + err.decode()
    assert await scenario.flag() == "true"
    shown = await scenario.json("ops", "show", op["id"])
    assert shown["state"] == "cancelled"
    assert shown["summary"].startswith("stopped at step 3 of 4 (wait until sla"), shown["summary"]
    assert ": it lost its lock (released by force, or taken over); put back" in shown["summary"]
    assert any(a["kind"] == "lock_release" and a["reason"] == "holder hung" for a in shown["audit"])


async def test_a_job_scheduler_firing_during_a_drain_is_not_a_rogue_producer(scenario: Scenario):
    import bullmq

    from tests.conftest import REDIS_URL

    queue = bullmq.Queue("sla", {"connection": REDIS_URL, "prefix": scenario.prefix})
    try:
        await queue.upsertJobScheduler("heartbeat", {"every": 400}, "beat", {})
    finally:
        await queue.close()
    await scenario.produce("sla", 100, "--data", json.dumps({"ms": 30}))
    async with scenario.node_worker(CONCURRENCY="5"):
        result = await scenario.chatops("queue", "drain", "sla", "--env", "test", "--yes")
    assert result.code == 0, result.output
    assert "1 job scheduler(s) will keep adding repeat jobs" in result.stdout
