"""The image and the Kubernetes manifests, without Docker or a cluster (neither runs here):
hadolint on the Dockerfile, kubernetes-validate (strict, 1.30 schemas) on every manifest, the
invariants they promise, and the image's entry command run as it is, outside a container:
healthy, then SIGTERM ends it cleanly."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
import yaml

from bot.config import load_config_file
from tests.fixtures.serve import served
from tests.scenarios.conftest import Scenario, scenario
from tests.slack.fake_slack import FakeSlack

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
HADOLINT = Path(sys.executable).parent / "hadolint"
__all__ = ["scenario"]  # the scenarios' fixture: a key prefix, a config file, a SQLite store


def _documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def _final_stage() -> list[str]:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


def _json_array(instruction: str) -> list[str]:
    (line,) = [line for line in _final_stage() if line.startswith(f"{instruction} ")]
    value: list[str] = json.loads(line.removeprefix(f"{instruction} "))
    return value


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [str(HADOLINT), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_as_a_user_under_tini_with_a_healthcheck() -> None:
    stage = _final_stage()
    (user,) = [line for line in stage if line.startswith("USER ")]
    assert re.fullmatch(r"USER [1-9]\d*:[1-9]\d*", user)
    assert _json_array("ENTRYPOINT") == ["tini", "--", "chatops"]
    health = [line for line in stage if line.startswith(("HEALTHCHECK", "    CMD"))]
    assert any("/healthz" in line for line in health)
    assert "COPY pyproject.toml uv.lock ./" in (ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_strictly(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_the_deployment_is_two_ready_replicas_with_secrets_by_reference() -> None:
    (deployment,) = [d for d in _documents() if d["kind"] == "Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"] == _json_array("CMD")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for entry in container["env"]:
        if entry["name"].startswith("SLACK_") or entry["name"].endswith("_URL"):
            assert "secretKeyRef" in entry.get("valueFrom", {}), entry
    assert {d["kind"] for d in _documents()} >= {
        "ConfigMap",
        "Service",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    }


def test_the_configmap_holds_a_valid_configuration(tmp_path: Path) -> None:
    (configmap,) = [d for d in _documents() if d["kind"] == "ConfigMap"]
    path = tmp_path / "chatops.yml"
    path.write_text(configmap["data"]["chatops.yml"])
    config = load_config_file(path, environ={"PROD_REDIS_URL": "redis://redis:6379/0"})
    assert config.environments["prod"].protected


async def test_the_entry_command_serves_and_stops_cleanly_on_sigterm(
    scenario: Scenario, fake_slack: FakeSlack
) -> None:
    environ = {
        **scenario.environ(),
        "SLACK_BOT_TOKEN": fake_slack.bot_token,
        "SLACK_SIGNING_SECRET": "signing-secret",
        "SLACK_API_URL": fake_slack.api_url,
        "CHATOPS_LOG_FORMAT": "json",
    }
    async with served(environ, scenario.tmp, _json_array("CMD")[:-1]) as (proc, port):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    records = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert any("listening" in r["message"] for r in records), records


async def test_sigterm_during_a_drain_ends_it_recorded_with_the_flag_back_and_no_lock(
    scenario: Scenario, fake_slack: FakeSlack
) -> None:
    from tests.scenarios.test_slack import CHANNEL, OPS, SECRET, configure
    from tests.slack.driver import SlackDriver

    environ = {**configure(scenario, fake_slack), "CHATOPS_LOG_FORMAT": "json"}
    await scenario.produce("sla", 5)  # and no worker: the drain waits
    async with served(environ, scenario.tmp, _json_array("CMD")[:-1]) as (proc, port):
        driver = SlackDriver(
            f"http://127.0.0.1:{port}/slack/events", SECRET, fake_slack, user=OPS, channel=CHANNEL
        )
        await driver.command_confirmed("/queue", "drain sla")
        async with asyncio.timeout(20):
            while await scenario.flag() != "false":
                await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert await scenario.flag() == "true"
    assert await scenario.redis.keys(f"chatops:{scenario.prefix}:lock:*") == []
    (op,) = await scenario.json("ops", "history")
    shown = await scenario.json("ops", "show", op["id"])
    assert shown["kind"] == "drain" and shown["state"] == "cancelled", shown
    # Producers are off a moment before step 3 starts; a SIGTERM in that moment stops it before.
    assert shown["summary"].startswith(
        ("stopped at step 3 of 4 (wait until sla", "stopped before step 3 of 4 (wait until sla")
    ), shown
    assert "the bot was shut down while it ran (run it again)" in shown["summary"], shown
    final = fake_slack.messages(CHANNEL)[0]  # the progress message tells the channel too
    assert "the bot was shut down while it ran" in final["text"], final
