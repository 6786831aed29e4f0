"""/window: schedule, list, cancel maintenance windows."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack.door import SlackDoor


def register(app: AsyncApp, door: SlackDoor) -> None:
    async def handle_window(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        await door.slash(ack, command, respond)

    app.command("/window")(handle_window)
