"""The outbox sender idle: woken by a writer of its own process, or asleep until the next entry
is due; never polling the store in a tight loop. Real store (SQLite and PostgreSQL), the fake
Slack over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.clock import SystemClock
from bot.slack.outbox import Outbox, OutboxSender, UpdateBudget
from bot.store import Store
from tests.slack.fake_slack import FakeSlack

IDLE_S = 60.0  # longer than any test: only a wake-up or a due entry can get a message out


@dataclass
class Running:
    outbox: Outbox
    sender: OutboxSender
    slack: FakeSlack
    claims: list[int]


@pytest.fixture
async def running(store: Store, fake_slack: FakeSlack) -> AsyncIterator[Running]:
    fake_slack.add_channel("C1", members=["UBOT"])
    clock = SystemClock()
    client = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    sender = OutboxSender(store=store, client=client, clock=clock, claimer="test")
    outbox = Outbox(store, clock)
    outbox.wake = sender.wake
    claims: list[int] = []
    claim = store.claim_slack

    async def counted(**kwargs):  # type: ignore[no-untyped-def]
        claims.append(1)
        return await claim(**kwargs)

    store.claim_slack = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop, idle_s=IDLE_S))
    try:
        yield Running(outbox, sender, fake_slack, claims)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_new_message_goes_out_at_once_and_the_idle_sender_stays_asleep(running: Running):
    await asyncio.sleep(0.5)
    assert len(running.claims) == 1  # one look at start, then asleep
    await running.outbox.post("k1", channel="C1", text="hello", blocks=[])
    (call,) = await running.slack.wait_for_calls("chat.postMessage", timeout_s=5)
    assert call.args["text"] == "hello"
    await asyncio.sleep(0.5)
    assert len(running.claims) <= 3


async def test_a_delayed_update_goes_out_when_due(running: Running):
    await running.outbox.post("k2", channel="C1", text="v1", blocks=[])
    await running.slack.wait_for_calls("chat.postMessage", timeout_s=5)
    # Coalesced, due 1 s from now: the wake-up finds nothing due, so the sender sleeps until
    # the entry is (not for IDLE_S).
    await running.outbox.update("k2", text="v2", blocks=[], delay_s=1.0)
    (update,) = await running.slack.wait_for_calls("chat.update", timeout_s=10)
    assert update.args["text"] == "v2"


async def _as_if_its_sender_died(store: Store, message_key: str) -> None:
    """What a sender SIGKILLed in the middle of a post leaves: the entry claimed, unsettled, its
    lease over (the same rows a crash leaves; see `claim_slack`)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from bot.store.models import SlackOutbox

    async with store._transaction() as session:
        await session.execute(
            update(SlackOutbox)
            .where(SlackOutbox.message_key == message_key)
            .values(
                sent_at=None,
                result=None,
                claimed_by="dead-host:1:gone",
                claimed_until=datetime.now(UTC) - timedelta(seconds=1),
            )
        )


@pytest.mark.parametrize("reached_slack", [True, False])
async def test_a_post_whose_sender_died_is_sent_once(
    store: Store, fake_slack: FakeSlack, reached_slack: bool
):
    fake_slack.add_channel("C1", name="ops", members=["UBOT"])
    clock = SystemClock()
    client = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    outbox = Outbox(store, clock)
    await outbox.post("window:w-1:remind:15", channel="#ops", text="reminder", blocks=[])
    first = OutboxSender(store=store, client=client, clock=clock, claimer="first")
    if reached_slack:
        assert await first.run_once() == 1
        assert len(fake_slack.messages("C1")) == 1
    await _as_if_its_sender_died(store, "window:w-1:remind:15")
    assert await store.slack_message("window:w-1:remind:15") is not None or not reached_slack

    second = OutboxSender(store=store, client=client, clock=clock, claimer="second")
    assert await second.run_once() == 1
    (message,) = fake_slack.messages("C1")
    assert message["text"] == "reminder"
    assert message["metadata"]["event_type"] == "chatops_outbox"
    # The second sender looked first, by the channel's ID (the configuration names it).
    (history,) = fake_slack.calls_to("conversations.history")
    assert history.args["channel"] == "C1"
    record = await store.slack_message("window:w-1:remind:15")
    assert record is not None and record.ts == message["ts"]
    # Settled: nothing is left to send.
    assert await second.run_once() == 0
    await first.aclose()
    await second.aclose()


async def test_an_uncertain_post_is_looked_for_even_when_the_channel_pace_holds_it(
    store: Store, fake_slack: FakeSlack
):
    """A post found uncertain while the channel's pace makes it wait is looked for first: the
    wait must not forget that it may already be in the channel."""
    fake_slack.add_channel("C1", name="ops", members=["UBOT"])
    clock = SystemClock()
    client = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    outbox = Outbox(store, clock)
    first = OutboxSender(store=store, client=client, clock=clock, claimer="first")
    second = OutboxSender(store=store, client=client, clock=clock, claimer="second")
    await outbox.post("x", channel="C1", text="the reminder", blocks=[])
    assert await first.run_once() == 1
    await outbox.post("z", channel="C1", text="something else", blocks=[])
    assert await second.run_once() == 1  # z: the channel's next slot is a second away
    await _as_if_its_sender_died(store, "x")
    for _ in range(4):
        await second.run_once()
        await asyncio.sleep(0.6)
    assert [m["text"] for m in fake_slack.messages("C1")] == ["the reminder", "something else"]
    await first.aclose()
    await second.aclose()


async def test_replicas_share_one_update_budget(
    store: Store, second_store: Store, fake_slack: FakeSlack
):
    """chat.update is tier 3 for the whole workspace. Three replicas (on two connections to
    the store), each with a token bucket of its own that would let one update go now, and a
    budget of two a minute: two go out, the third waits for the minute to move on."""
    fake_slack.add_channel("C1", name="ops", members=["UBOT"])
    clock = SystemClock()
    client = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    outbox = Outbox(store, clock)
    senders = [
        OutboxSender(
            store=replica_store,
            client=client,
            clock=clock,
            claimer=f"replica-{i}",
            budget=UpdateBudget(clock, per_minute=2),
        )
        for i, replica_store in enumerate((store, second_store, store))
    ]
    keys = ("a", "b", "c")
    for key in keys:
        await outbox.post(key, channel="C1", text=f"{key} posted", blocks=[])
    async with asyncio.timeout(20):  # the channel's pace: about one post a second
        while len(fake_slack.calls_to("chat.postMessage")) < len(keys):
            await senders[0].run_once()
            await asyncio.sleep(0.2)
    for key in keys:
        await outbox.update(key, text=f"{key} updated", blocks=[])
    for sender in senders:  # one entry each, as three replicas would claim them
        assert await sender.run_once(limit=1) == 1
    updated = sorted(call.args["text"] for call in fake_slack.calls_to("chat.update"))
    assert len(updated) == 2, updated
    (owed,) = await store.pending_slack(limit=10)
    assert owed.method == "chat.update" and owed.last_error == "update budget (all replicas)"
    for sender in senders:
        await sender.aclose()
