"""The Slack app manifest: `manifest.yml` (Socket Mode, for development) and its HTTP-mode twin
with the request URLs filled in. The Web API methods the bot calls are listed here so a test can
check the manifest grants each one's scopes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from bot.errors import BadInput

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"
EVENTS_PATH = "/slack/events"

# Every Web API method the bot calls (the tests check this list against the code and the scopes).
METHODS_CALLED = (
    "auth.test",
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "conversations.history",
    "conversations.replies",
    "conversations.list",
    "views.open",
    "views.update",
    "usergroups.users.list",
    "users.info",
)


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def http_manifest(base_url: str, *, path: Path = MANIFEST) -> dict[str, Any]:
    if not base_url.startswith(("https://", "http://")):
        raise BadInput(f"--http-url must start with https:// (got {base_url[:60]!r})")
    url = base_url.rstrip("/") + EVENTS_PATH
    data = copy.deepcopy(load_manifest(path))
    for command in data["features"]["slash_commands"]:
        command["url"] = url
    data["settings"]["interactivity"]["request_url"] = url
    data["settings"]["socket_mode_enabled"] = False
    return data


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=200)
