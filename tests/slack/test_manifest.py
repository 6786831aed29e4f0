"""manifest.yml and `chatops manifest --http-url` against Slack's manifest schema, and the bot
scopes against the methods the code calls."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from bot.slack.manifest import METHODS_CALLED, load_manifest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "slack-api"


def _schema() -> dict:
    return json.loads((SHARED / "manifest-schema" / "manifest.schema.1.0.0.json").read_text())


def _chatops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "commands", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_socket_mode_manifest_is_valid():
    manifest = load_manifest()
    jsonschema.validate(manifest, _schema())
    assert manifest["settings"]["socket_mode_enabled"] is True
    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    assert commands == {"/queue", "/worker", "/ops", "/window"}


def test_http_manifest_fills_every_request_url():
    done = _chatops("manifest", "--http-url", "https://chatops.example.com/")
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load(done.stdout)
    jsonschema.validate(manifest, _schema())
    url = "https://chatops.example.com/slack/events"
    assert {c["url"] for c in manifest["features"]["slash_commands"]} == {url}
    assert manifest["settings"]["interactivity"]["request_url"] == url
    assert manifest["settings"]["socket_mode_enabled"] is False
    bad = _chatops("manifest", "--http-url", "ftp://x")
    assert bad.returncode == 2 and "must start with https://" in bad.stderr


def _called_in_code() -> set[str]:
    """Web API methods the code calls: `client.<method>(` and `api_call(<CONSTANT>` forms."""
    found = set()
    constants = {}
    for path in list((ROOT / "bot").rglob("*.py")) + list((ROOT / "commands").rglob("*.py")):
        text = path.read_text()
        constants.update(dict(re.findall(r'^([A-Z_]+) = "([a-z]+\.[A-Za-z.]+)"$', text, re.M)))
        found.update(m.replace("_", ".") for m in re.findall(r"\bclient\.([a-z]+_[a-z_]+)\(", text))
    # The outbox sends whatever method its entries name: the method constants it defines.
    found.update(constants.values())
    found.add("auth.test")  # Bolt calls it once to learn the bot's identity
    return found


def test_methods_called_are_the_listed_ones():
    listed = set(METHODS_CALLED)
    called = _called_in_code()
    assert called == listed, (called - listed, listed - called)


@pytest.mark.parametrize("method", METHODS_CALLED)
def test_manifest_grants_each_called_methods_bot_scope(method: str):
    spec = json.loads((SHARED / "methods" / f"{method}.json").read_text())
    needed = set(spec.get("scope", {}).get("bot", []))
    granted = set(load_manifest()["oauth_config"]["scopes"]["bot"])
    assert needed <= granted or not needed, f"{method} needs {needed - granted}"
