"""An operation's progress message when the store was out of reach as the operation started:
the message is posted at the next event instead, and its final state still arrives, once. The
outage is real: another connection holds the outbox table (SQLite and PostgreSQL) while the
bot's store, with a 1 s timeout, tries to write; Slack is the fake over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator

import asyncpg
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.clock import SystemClock
from bot.engine.events import OperationFinished, OperationStarted, StepFinished, StepStarted
from bot.errors import StoreUnavailable
from bot.slack.outbox import Outbox, OutboxSender
from bot.slack.progress import SlackProgress
from bot.store import Store
from tests.conftest import asyncpg_dsn
from tests.slack.fake_slack import FakeSlack

OP = "op-0123456789"


@contextlib.asynccontextmanager
async def outbox_held(db_url: str) -> AsyncIterator[None]:
    """Another connection holds the outbox: the bot's reads and writes of it time out."""
    if db_url.startswith("sqlite"):
        holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    connection = await asyncpg.connect(asyncpg_dsn(db_url), timeout=10)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("LOCK TABLE slack_outbox IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            await transaction.rollback()
    finally:
        await connection.close()


@pytest.fixture
async def impatient(store: Store, db_url: str) -> AsyncIterator[Store]:
    """The migrated database, opened as the bot would with a 1 s timeout."""
    opened = await Store.open(db_url, command_timeout_s=1)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_first_post_lost_to_an_outage_is_posted_at_the_next_event_and_ends_final(
    impatient: Store, db_url: str, fake_slack: FakeSlack
):
    fake_slack.add_channel("C1", name="ops", members=["UBOT"])
    clock = SystemClock()
    progress = SlackProgress(
        Outbox(impatient, clock), clock, channel="C1", actor="U1", title="drain sla in test"
    )
    async with outbox_held(db_url):
        with pytest.raises(StoreUnavailable):
            await progress(OperationStarted(OP, "drain", "test", "sla", ("check", "wait")))
    await progress(StepStarted(OP, 0, "check"))
    await progress(StepFinished(OP, 0, "check", "succeeded", "waiting 3"))
    await progress(OperationFinished(OP, "succeeded", "sla drained in 2 s", {}))

    client = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    sender = OutboxSender(store=impatient, client=client, clock=clock, claimer="test")
    final = "drain sla in test: succeeded — sla drained in 2 s"
    try:
        async with asyncio.timeout(30):  # updates wait 1 s for their message, then go
            while [m["text"] for m in fake_slack.messages("C1")] != [final]:
                await sender.run_once()
                await asyncio.sleep(0.2)
    finally:
        await sender.aclose()
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


async def test_a_post_tried_again_with_once_is_owed_once(store: Store, fake_slack: FakeSlack):
    """A writer that cannot tell whether its post was stored tries again: one message."""
    fake_slack.add_channel("C1", name="ops", members=["UBOT"])
    clock = SystemClock()
    outbox = Outbox(store, clock)
    for text in ("first try", "second try"):
        await outbox.post(f"{OP}:progress", channel="C1", text=text, blocks=[], once=True)
    client = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    sender = OutboxSender(store=store, client=client, clock=clock, claimer="test")
    try:
        assert await sender.run_once() == 1
        assert await sender.run_once() == 0
    finally:
        await sender.aclose()
    assert [m["text"] for m in fake_slack.messages("C1")] == ["first try"]
