"""What a dead process was running, told in its Slack thread by whoever recovered it: a running
replica's takeover, a `chatops serve` starting, or any `chatops` command (through the outbox,
which the next `chatops serve` sends if this process cannot)."""

from __future__ import annotations

from bot.engine.runner import owner_id
from bot.slack.outbox import Outbox
from bot.store import Store
from bot.store.records import OperationRecord


async def tell_in_thread(store: Store, outbox: Outbox, op: OperationRecord, line: str) -> None:
    progress = f"{op.id}:progress"
    if await store.slack_message(progress) is None:
        return  # not started from Slack: the audit row is the report
    await outbox.reply(progress, f"{op.id}:takeover", text=f"taken over by {owner_id()}: {line}")
