"""/worker: status, logs, restart, deploy, rollback, releases."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack.door import SlackDoor


def register(app: AsyncApp, door: SlackDoor) -> None:
    async def handle_worker(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        await door.slash(ack, command, respond)

    app.command("/worker")(handle_worker)
