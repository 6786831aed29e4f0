"""Buttons and modal submissions: Approve / Reject, Cancel, Roll back, and the confirmation."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.slack import blocks
from bot.slack.door import SlackDoor


def register(app: AsyncApp, door: SlackDoor) -> None:
    async def handle_approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await door.vote(ack, body, "approve")

    async def handle_reject(ack: AsyncAck, body: dict[str, Any]) -> None:
        await door.vote(ack, body, "reject")

    async def handle_cancel(ack: AsyncAck, body: dict[str, Any]) -> None:
        await door.cancel_button(ack, body)

    async def handle_rollback(ack: AsyncAck, body: dict[str, Any]) -> None:
        await door.rollback_button(ack, body)

    async def handle_confirm(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await door.submit(ack, body, view)

    app.action(blocks.APPROVE_ACTION)(handle_approve)
    app.action(blocks.REJECT_ACTION)(handle_reject)
    app.action(blocks.CANCEL_ACTION)(handle_cancel)
    app.action(blocks.ROLLBACK_ACTION)(handle_rollback)
    app.view(blocks.CONFIRM_CALLBACK)(handle_confirm)
