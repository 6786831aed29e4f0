"""What a dead process was running, told in Slack by whoever recovered it: a running replica's
takeover, a `chatops serve` starting, or any `chatops` command (through the outbox, which the
next `chatops serve` sends if this process cannot)."""

from __future__ import annotations

from bot.engine.runner import owner_id
from bot.slack.blocks import progress_blocks
from bot.slack.outbox import Outbox
from bot.slack.progress import progress_text, progress_title
from bot.store import Store
from bot.store.records import OperationRecord


async def tell_in_thread(store: Store, outbox: Outbox, op: OperationRecord, line: str) -> None:
    """A reply in the operation's thread, and its progress message brought to its end state:
    the dead process last showed it running, with a Cancel button that no longer applies."""
    progress = f"{op.id}:progress"
    if await store.slack_message(progress) is None:
        return  # not started from Slack: the audit row is the report
    await outbox.reply(progress, f"{op.id}:takeover", text=f"taken over by {owner_id()}: {line}")
    title = progress_title(op.kind, op.target, op.env)
    await outbox.update(
        progress,
        text=progress_text(title, op.state, op.summary),
        blocks=progress_blocks(
            title=title,
            actor=op.actor,
            steps=[(step.name, step.state, step.error) for step in op.steps],
            state=op.state,
            summary=op.summary,
            op_id=op.id,
        ),
        final=True,
    )
