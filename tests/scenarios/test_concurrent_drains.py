"""Drains of different queues at once share the environment's producer flag: it goes back on
only when the last of them ends, and a flag someone else turned off is left alone. Through the
`chatops` CLI, with the Node BullMQ worker running every job."""

from __future__ import annotations

import asyncio
import re

from tests.scenarios.conftest import HELD_DRAIN, Result, Scenario


def drain(queue: str) -> tuple[str, ...]:
    return ("queue", "drain", queue, "--env", "test", "--yes")


async def finish(proc: asyncio.subprocess.Process) -> Result:
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    return Result(proc.returncode or 0, out.decode(), err.decode())


def said(result: Result) -> str:
    return " ".join(result.output.split())


def holders(scenario: Scenario) -> str:
    flag = f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS"
    return f"chatops:{scenario.prefix}:holders:{flag}"


async def test_the_flag_comes_back_on_only_when_the_last_drain_ends(scenario: Scenario):
    """The drain that turned producers off ends first, while a later one still drains. Each
    queue's worker starts only when the test says, so neither drain ends before its turn."""
    scenario.configure(drain=HELD_DRAIN)
    await scenario.produce("other", 6)
    await scenario.produce("sla", 30)
    flag = f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS"
    first = await scenario.spawn(*drain("other"))
    async with asyncio.timeout(60):
        while await scenario.flag() != "false":
            await asyncio.sleep(0.05)
    later = await scenario.spawn(*drain("sla"))
    async with asyncio.timeout(60):  # both hold producers off
        while await scenario.redis.scard(holders(scenario)) < 2:
            await asyncio.sleep(0.05)
    async with scenario.node_worker("other", CONCURRENCY="1"):
        ended = await finish(first)
    assert ended.code == 0, ended.output
    assert later.returncode is None, "the later drain ended first: nothing was shown"
    assert await scenario.flag() == "false"  # the later drain still needs producers off
    assert f"turn producers off ({flag} = false): {flag} = false" in said(ended)
    assert f"{flag} left false: 1 other drain(s) still hold producers off (op-" in said(ended), (
        ended.output
    )
    async with scenario.node_worker("sla", CONCURRENCY="5"):
        last = await finish(later)
    assert last.code == 0, last.output
    assert "held by another drain: this one holds it too" in said(last), last.output
    assert f"turn producers back on ({flag} = true): producer flag {flag} back on" in said(last), (
        last.output
    )
    assert await scenario.flag() == "true"
    assert await scenario.redis.exists(holders(scenario)) == 0
    for queue, count in (("other", 6), ("sla", 30)):
        runs = await scenario.runs(queue)
        assert len(runs) == count and set(runs.values()) == {1}, runs
    ops = await scenario.json("ops", "history")
    assert [op["outcome"] for op in ops] == ["succeeded", "succeeded"], ops


async def test_a_flag_turned_off_by_hand_is_left_off(scenario: Scenario):
    flag = f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS"
    await scenario.redis.set(flag, "false")
    await scenario.produce("sla", 5)
    async with scenario.node_worker("sla"):
        result = await scenario.chatops(*drain("sla"))
    assert result.code == 0, result.output
    assert f"{flag} was already false (not set by a drain): left as it is" in said(result)
    assert f"{flag} left false, as it was before the drain" in said(result)
    assert await scenario.flag() == "false"
    assert await scenario.redis.exists(holders(scenario)) == 0


async def test_a_holder_whose_operation_has_ended_does_not_keep_producers_off(scenario: Scenario):
    """A drain whose put-back failed left its id among the holders; the next drain to end
    drops it (the store says it is not running) and turns producers back on."""
    await scenario.redis.sadd(holders(scenario), "op-0123456789")
    await scenario.redis.set(f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS", "false")
    await scenario.produce("sla", 5)
    async with scenario.node_worker("sla"):
        result = await scenario.chatops(*drain("sla"))
    assert result.code == 0, result.output
    assert "held by another drain: this one holds it too" in said(result), result.output
    assert await scenario.flag() == "true"
    assert await scenario.redis.exists(holders(scenario)) == 0


async def test_drain_all_empties_every_queue_as_one_operation(scenario: Scenario):
    """`drain all`: one operation holding every queue's lock, one flag, one watch. The worker
    starts once a second drain has been refused, so `drain all` cannot end before that."""
    scenario.configure(drain=HELD_DRAIN)
    await scenario.produce("sla,other", 16)
    flag = f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS"
    proc = await scenario.spawn(*drain("all"))
    async with asyncio.timeout(60):
        while await scenario.flag() != "false":
            await asyncio.sleep(0.05)
    locks = sorted(
        [k async for k in scenario.redis.scan_iter(match=f"chatops:{scenario.prefix}:lock:*")]
    )
    assert locks == [
        f"chatops:{scenario.prefix}:lock:test:queue:other",
        f"chatops:{scenario.prefix}:lock:test:queue:sla",
    ]
    refused = await scenario.chatops(*drain("sla"))  # its queue is being drained
    assert proc.returncode is None, "drain all ended before the second drain started"
    assert refused.code != 0, refused.output
    assert f"chatops:{scenario.prefix}:lock:test:queue:sla is locked by" in said(refused)
    async with scenario.node_worker("sla,other", CONCURRENCY="4"):
        result = await finish(proc)
    assert result.code == 0, result.output
    text = said(result)
    assert "drain all in test" in text
    (op_id,) = set(re.findall(r"op-[0-9a-f]{10}", text))
    assert f"(operation {op_id})" in said(refused), refused.output
    assert "check all 2 queues (sla, other) under prefix" in text, result.output
    for queue in ("sla", "other"):  # the plan says what each queue held before the drain
        assert re.search(rf"now {queue}: \d+ waiting, \d+ active, 0 delayed", text), text
    assert "2 queues: waiting" in text and "not yet empty: sla (" in text, result.output
    assert "succeeded: all 2 queues (sla, other) drained in" in text, result.output
    assert f"producer flag {flag} back on" in text
    assert await scenario.flag() == "true"
    for queue in ("sla", "other"):
        runs = await scenario.runs(queue)
        assert len(runs) == 16 and set(runs.values()) == {1}, runs
    (op,) = await scenario.json("ops", "history")
    shown = await scenario.json("ops", "show", op["id"])
    assert shown["target"] == "all" and shown["state"] == "succeeded", shown
    assert shown["validation"]["counts"]["completed"] == 32, shown
