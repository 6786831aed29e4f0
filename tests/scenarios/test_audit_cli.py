"""The audit trail and the bot's own database, through the CLI: break-glass in protected
environments, and the same commands against PostgreSQL."""

from __future__ import annotations

import json

import asyncpg

from tests.conftest import asyncpg_dsn
from tests.scenarios.conftest import Scenario


async def test_protected_environments_need_a_reason_and_audit_break_glass(scenario: Scenario):
    scenario.configure(protected=True)
    refused = await scenario.chatops("queue", "pause", "sla", "--env", "test", "--yes")
    assert refused.code == 2
    assert "test is protected: say why with --reason" in refused.stderr
    assert await scenario.json("ops", "history") == []

    done = await scenario.chatops(
        "queue", "pause", "sla", "--env", "test", "--yes", "--reason", "INC-42 stop sla"
    )
    assert done.code == 0, done.output
    assert "break-glass" in done.stdout
    (op,) = await scenario.json("ops", "history")
    shown = await scenario.json("ops", "show", op["id"])
    assert shown["reason"] == "INC-42 stop sla"
    kinds = sorted((a["kind"], a["outcome"]) for a in shown["audit"])
    assert kinds == [("break_glass", "started"), ("operation", "succeeded")]
    assert shown["actor"].count("@") == 1  # OS user @ host


async def test_the_cli_runs_on_postgresql(scenario: Scenario, fresh_pg_database: str):
    pg_database = fresh_pg_database
    scenario.extra_env["CHATOPS_DATABASE_URL"] = pg_database
    upgraded = await scenario.chatops("db", "upgrade")
    assert upgraded.code == 0, upgraded.output
    await scenario.produce("sla", 3)
    paused = await scenario.chatops("queue", "pause", "sla", "--env", "test", "--yes")
    assert paused.code == 0, paused.output
    (op,) = await scenario.json("ops", "history")
    assert op["kind"] == "pause" and op["outcome"] == "succeeded"
    connection = await asyncpg.connect(asyncpg_dsn(pg_database))
    try:
        rows = await connection.fetch(
            "select kind, outcome from audit_events where operation_id = $1", op["id"]
        )
    finally:
        await connection.close()
    assert sorted((r["kind"], r["outcome"]) for r in rows) == [
        ("operation", "started"),
        ("operation", "succeeded"),
    ]


async def test_break_glass_is_announced_in_the_environments_channel(scenario: Scenario, fake_slack):
    scenario.configure(protected=True, channel="#ops")
    scenario.extra_env.update(
        SLACK_BOT_TOKEN=fake_slack.bot_token, SLACK_API_URL=fake_slack.api_url
    )
    done = await scenario.chatops(
        "queue", "pause", "sla", "--env", "test", "--yes", "--reason", "INC-7 Slack is down"
    )
    assert done.code == 0, done.output
    (message,) = fake_slack.messages("#ops")
    assert "break-glass" in message["text"] and "INC-7 Slack is down" in message["text"]
    assert fake_slack.bot_token not in message["text"]


async def test_json_logs_are_one_object_a_line_with_the_operation_id(scenario: Scenario):
    scenario.extra_env.update(CHATOPS_LOG_FORMAT="json", CHATOPS_LOG_LEVEL="info")
    done = await scenario.chatops("queue", "pause", "sla", "--env", "test", "--yes")
    assert done.code == 0, done.output
    records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert records and all({"at", "level", "logger", "message"} <= r.keys() for r in records)
    (op,) = await scenario.json("ops", "history")
    inside = [r for r in records if r.get("operation") == op["id"]]
    assert any("started" in r["message"] for r in inside), records
    assert all(r.get("operation") in (None, op["id"]) for r in records)
