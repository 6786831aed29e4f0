"""Which operations are incidents, and how one reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.engine.plan import Plan
from bot.engine.runner import Outcome
from bot.incidents import describe, incident_kind
from bot.store.records import IncidentRecord


def plan(kind: str) -> Plan:
    return Plan(kind=kind, env="prod", target="api", steps=(), locks=())


@pytest.mark.parametrize(
    ("kind", "state", "expected"),
    [
        ("rollback", "succeeded", "rollback"),
        ("rollback", "failed", "rollback"),
        ("restart", "failed", "restart failed"),
        ("restart", "cancelled", "restart cancelled"),
        ("restart", "succeeded", None),
        ("deploy", "failed", None),  # a failed deploy switches back by itself: not an incident
        ("drain", "failed", None),
    ],
)
def test_rollbacks_and_restarts_that_did_not_succeed_are_incidents(
    kind: str, state: str, expected: str | None
) -> None:
    outcome = Outcome(op_id="op-1", state=state, summary="", validation={})
    assert incident_kind(plan(kind), outcome) == expected


def test_an_incident_names_what_who_releases_and_the_operation() -> None:
    record = IncidentRecord(
        id=7,
        created_at=datetime(2026, 11, 28, tzinfo=UTC),
        kind="rollback",
        env="prod",
        worker="api",
        actor="U1 (slack)",
        outcome="succeeded",
        from_release="def456",
        to_release="abc123",
        summary="api back on abc123.",
        validation={},
        operation_id="op-0123456789",
    )
    text = describe(record)
    assert text.startswith("🚑 incident #7: rollback of api in prod by U1 (slack), succeeded")
    assert "release def456 -> abc123" in text
    assert "chatops ops show op-0123456789" in text
