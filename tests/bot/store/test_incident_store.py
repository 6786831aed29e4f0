"""The incident log, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.store import Store

T0 = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


async def test_incidents_are_listed_newest_first_and_by_environment(store: Store) -> None:
    op = await store.create_operation(
        kind="rollback",
        env="prod",
        target="api",
        actor="U1",
        source="slack",
        command="/worker rollback api",
        reason=None,
        params={},
        plan=["switch back"],
        owner="host:1",
        now=T0,
    )
    first = await store.record_incident(
        kind="rollback",
        env="prod",
        worker="api",
        actor="U1 (slack)",
        outcome="succeeded",
        summary="back to abc123",
        validation={"release": "abc123", "ready": True},
        from_release="def456",
        to_release="abc123",
        operation_id=op.id,
        now=T0,
    )
    second = await store.record_incident(
        kind="restart failed",
        env="staging",
        worker="api",
        actor="ops@host (cli)",
        outcome="failed",
        summary="not ready within 30 s",
        validation={},
        now=T0 + timedelta(minutes=5),
    )
    assert [i.id for i in await store.incidents()] == [second.id, first.id]
    (only,) = await store.incidents(env="prod")
    assert only == first
    assert only.validation == {"release": "abc123", "ready": True}
    assert only.operation_id == op.id and only.created_at == T0
    assert await store.incidents(limit=1) == [second]


async def test_secrets_in_an_incident_are_masked(db_url: str) -> None:
    store = await Store.open(db_url, secrets=["s3cr3t-value-99"])
    try:
        await store.upgrade()
        record = await store.record_incident(
            kind="rollback",
            env="prod",
            worker="api",
            actor="U1",
            outcome="failed",
            summary="redis://:s3cr3t-value-99@redis:6379 refused",
            validation={"error": "token s3cr3t-value-99"},
            now=T0,
        )
        assert "s3cr3t-value-99" not in repr(record)
        assert "s3cr3t-value-99" not in repr(await store.incidents())
    finally:
        await store.close()
