"""The store's contract, on SQLite and on PostgreSQL alike (see conftest.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.pool import NullPool

from bot.errors import BadInput, ConfigError, StoreUnavailable, UnknownOperation
from bot.store import OUTPUT_LIMIT_BYTES, OperationRecord, Store
from bot.store.engine import create_engine, normalise_url
from bot.store.migrate import head_revision
from bot.store.models import Base

T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
TABLES = {
    "operations",
    "steps",
    "restores",
    "releases",
    "audit_events",
    "approvals",
    "approval_votes",
    "slack_outbox",
    "slack_messages",
    "seen_requests",
    "group_members",
    "group_refreshes",
    "alembic_version",
}
URL_WITH_PASSWORD = "redis://:hunter2@redis.internal:6379/0"
TOKEN_ASSIGNMENT = "SLACK_BOT_TOKEN=xoxb-1-2"
OWNER = "host-a:101:aaaa"


def commit(n: int) -> str:
    return f"{n:040x}"


async def new_op(
    store: Store, *, at: datetime = T0, env: str = "staging", **overrides: Any
) -> OperationRecord:
    values: dict[str, Any] = {
        "kind": "drain",
        "env": env,
        "target": "sla",
        "actor": "U123",
        "source": "slack",
        "command": "/queue drain sla",
        "reason": None,
        "params": {"timeout_s": 300},
        "plan": ["producers off", "watch", "producers on"],
        "owner": OWNER,
        "now": at,
    }
    values.update(overrides)
    return await store.create_operation(**values)


async def with_connection(url: str, fn: Callable[[Connection], Any]) -> Any:
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(fn)
    finally:
        await engine.dispose()


# -- migrations ----------------------------------------------------------------------------


async def test_upgrade_creates_the_tables_and_a_second_upgrade_is_a_no_op(db_url: str) -> None:
    store = await Store.open(db_url)
    try:
        assert await store.revision() is None
        await store.upgrade()
        assert await store.revision() == head_revision() == "0007"
        tables = await with_connection(db_url, lambda c: set(inspect(c).get_table_names()))
        assert tables >= TABLES

        await new_op(store)
        await store.upgrade()
        assert await store.revision() == "0007"
        assert len(await store.list_operations(limit=10)) == 1
    finally:
        await store.close()


async def test_concurrent_upgrades_wait_for_each_other(db_url: str) -> None:
    first, second = await Store.open(db_url), await Store.open(db_url)
    try:
        await asyncio.gather(first.upgrade(), second.upgrade())
        assert await first.revision() == await second.revision() == "0007"
    finally:
        await first.close()
        await second.close()


async def test_the_migration_matches_the_models(store: Store, db_url: str) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    assert await with_connection(db_url, diff) == []


# -- operations ----------------------------------------------------------------------------


async def test_operation_lifecycle(store: Store) -> None:
    op = await new_op(store, reason="ticket OPS-1")
    assert op.id.startswith("op-") and len(op.id) == 13
    assert op.state == "running" and op.current_step is None and not op.cancel_requested
    assert op.plan == ("producers off", "watch", "producers on")
    assert [(s.index, s.name, s.state) for s in op.steps] == [
        (0, "producers off", "pending"),
        (1, "watch", "pending"),
        (2, "producers on", "pending"),
    ]
    assert await store.get_operation(op.id) == op

    await store.start_step(op.id, 0, now=T0 + timedelta(seconds=1))
    await store.append_step_output(op.id, 0, "flag WORKER_ACCEPT_JOBS=false\n")
    await store.finish_step(
        op.id, 0, state="succeeded", output=None, error=None, now=T0 + timedelta(seconds=2)
    )
    await store.start_step(op.id, 1, now=T0 + timedelta(seconds=3))
    assert await store.heartbeat(op.id, owner=OWNER, now=T0 + timedelta(seconds=4))
    assert not await store.heartbeat(op.id, owner="someone-else", now=T0)
    await store.finish_step(
        op.id,
        1,
        state="failed",
        output="waiting 3, active 1\n",
        error="stalled for 60 s",
        now=T0 + timedelta(seconds=5),
    )
    await store.finish_step(op.id, 2, state="skipped", output=None, error=None, now=T0)
    assert await store.finish_operation(
        op.id,
        state="failed",
        summary="drain of sla failed at step 2 of 3 (watch)",
        validation={"waiting": 3, "active": 1},
        now=T0 + timedelta(seconds=6),
    )

    done = await store.get_operation(op.id)
    assert done is not None
    assert done.state == "failed" and done.current_step == 1
    assert done.summary == "drain of sla failed at step 2 of 3 (watch)"
    assert done.validation == {"waiting": 3, "active": 1}
    assert done.heartbeat_at == T0 + timedelta(seconds=4)
    assert done.finished_at == T0 + timedelta(seconds=6)
    first, second, third = done.steps
    assert (first.state, first.output, first.error) == (
        "succeeded",
        "flag WORKER_ACCEPT_JOBS=false\n",
        None,
    )
    assert first.started_at == T0 + timedelta(seconds=1)
    assert first.finished_at == T0 + timedelta(seconds=2)
    assert (second.state, second.output, second.error) == (
        "failed",
        "waiting 3, active 1\n",
        "stalled for 60 s",
    )
    assert third.state == "skipped" and third.started_at is None
    # Finished is final: a late heartbeat or second outcome changes nothing.
    assert not await store.heartbeat(op.id, owner=OWNER, now=T0 + timedelta(seconds=9))
    assert not await store.finish_operation(
        op.id, state="succeeded", summary="late", validation=None, now=T0
    )
    assert (await store.get_operation(op.id)) == done


async def test_step_output_keeps_only_the_last_16_kib(store: Store) -> None:
    op = await new_op(store)
    await store.start_step(op.id, 0, now=T0)
    line = "".join(f"line {i:05d} é\n" for i in range(3000))  # multi-byte characters too
    for chunk in (line[:10_000], line[10_000:25_000], line[25_000:]):
        await store.append_step_output(op.id, 0, chunk)
    kept = (await store.get_operation(op.id)).steps[0].output  # type: ignore[union-attr]
    assert len(kept.encode()) <= OUTPUT_LIMIT_BYTES
    assert len(kept.encode()) > OUTPUT_LIMIT_BYTES - 4
    assert line.endswith(kept)

    await store.finish_step(op.id, 0, state="succeeded", output=line * 2, error=None, now=T0)
    kept = (await store.get_operation(op.id)).steps[0].output  # type: ignore[union-attr]
    assert len(kept.encode()) <= OUTPUT_LIMIT_BYTES and line.endswith(kept)


async def test_secrets_never_reach_a_row(store: Store, db_url: str) -> None:
    secret_text = f"connect {URL_WITH_PASSWORD} with {TOKEN_ASSIGNMENT}"
    op = await new_op(
        store,
        command=f"/worker deploy api --env staging {TOKEN_ASSIGNMENT}",
        reason=secret_text,
        params={"redis": URL_WITH_PASSWORD, "nested": [{"env": TOKEN_ASSIGNMENT}]},
    )
    await store.start_step(op.id, 0, now=T0)
    # A secret split across two chunks of output is still caught.
    await store.append_step_output(op.id, 0, "REDIS_URL=redis://:hun")
    await store.append_step_output(op.id, 0, "ter2@redis.internal:6379\n")
    await store.finish_step(op.id, 1, state="failed", output=secret_text, error=secret_text, now=T0)
    await store.finish_operation(
        op.id,
        state="failed",
        summary=secret_text,
        validation={"checks": [secret_text]},
        now=T0,
    )
    await store.audit(
        actor="U123",
        source="slack",
        kind="operation",
        command=secret_text,
        outcome=secret_text,
        reason=secret_text,
        details={"url": URL_WITH_PASSWORD, "argv": ["pm2", TOKEN_ASSIGNMENT]},
        operation_id=op.id,
        now=T0,
    )

    def dump(connection: Connection) -> str:
        rows = []
        for table in ("operations", "steps", "audit_events"):
            rows += [repr(tuple(r)) for r in connection.execute(text(f"SELECT * FROM {table}"))]
        return "\n".join(rows)

    everything = await with_connection(db_url, dump)
    assert "hunter2" not in everything
    assert "xoxb-1-2" not in everything
    assert "redis://:***@redis.internal" in everything
    assert "SLACK_BOT_TOKEN=***" in everything

    stored = await store.get_operation(op.id)
    assert stored is not None
    assert stored.command == "/worker deploy api --env staging SLACK_BOT_TOKEN=***"
    assert stored.params["redis"] == "redis://:***@redis.internal:6379/0"
    assert stored.summary == "connect redis://:***@redis.internal:6379/0 with SLACK_BOT_TOKEN=***"
    (event,) = await store.audit_events(limit=5, operation_id=op.id)
    assert event.details == {
        "url": "redis://:***@redis.internal:6379/0",
        "argv": ["pm2", "SLACK_BOT_TOKEN=***"],
    }


async def test_values_given_as_secrets_are_masked_too(db_url: str) -> None:
    store = await Store.open(db_url, secrets=["s3cr3t-signing-value"])
    try:
        await store.upgrade()
        op = await new_op(store, command="echo s3cr3t-signing-value")
        assert op.command == "echo ***"
    finally:
        await store.close()


async def test_cancel_request(store: Store) -> None:
    op = await new_op(store)
    assert not await store.cancel_requested(op.id)
    requested = await store.request_cancel(op.id)
    assert requested.cancel_requested and requested.state == "running"
    assert await store.cancel_requested(op.id)
    with pytest.raises(UnknownOperation):
        await store.request_cancel("op-0000000000")
    with pytest.raises(UnknownOperation):
        await store.cancel_requested("op-0000000000")


async def test_list_operations_newest_first_and_by_env(store: Store) -> None:
    ids = [
        (await new_op(store, at=T0 + timedelta(minutes=i), env=env)).id
        for i, env in enumerate(["staging", "prod", "staging", "prod"])
    ]
    listed = await store.list_operations(limit=10)
    assert [o.id for o in listed] == ids[::-1]
    assert all(len(o.steps) == 3 for o in listed)
    assert [o.id for o in await store.list_operations(limit=10, env="prod")] == [ids[3], ids[1]]
    assert [o.id for o in await store.list_operations(limit=1)] == [ids[3]]
    assert await store.get_operation("op-ffffffffff") is None


async def test_a_bad_outcome_state_is_refused(store: Store) -> None:
    op = await new_op(store)
    with pytest.raises(ValueError, match="cannot finish"):
        await store.finish_operation(op.id, state="running", summary="x", now=T0)
    with pytest.raises(ValueError, match="cannot finish"):
        await store.finish_step(op.id, 0, state="pending", now=T0)
    with pytest.raises(ValueError, match="no step 7"):
        await store.start_step(op.id, 7, now=T0)


# -- interrupted operations ----------------------------------------------------------------


async def test_claim_lapsed_claims_only_lapsed_running_operations(store: Store) -> None:
    lapsed = await new_op(store, at=T0, owner="host-a:1:dead")
    await store.start_step(lapsed.id, 0, now=T0)
    await store.finish_step(lapsed.id, 0, state="succeeded", now=T0)
    await store.start_step(lapsed.id, 1, now=T0)
    never_started = await new_op(store, at=T0, owner="host-a:2:dead", plan=["announce", "reload"])
    alive = await new_op(store, at=T0, owner="host-b:1:live")
    await store.heartbeat(alive.id, owner="host-b:1:live", now=T0 + timedelta(seconds=55))
    finished = await new_op(store, at=T0)
    await store.finish_operation(
        finished.id, state="succeeded", summary="ok", validation=None, now=T0
    )

    claimed = await store.claim_lapsed(
        now=T0 + timedelta(seconds=60), lapse_s=30, claimer="host-c:9:new"
    )

    by_id = {op.id: op for op in claimed}
    assert set(by_id) == {lapsed.id, never_started.id}
    op = by_id[lapsed.id]
    assert op.state == "interrupted"
    assert op.summary == ("interrupted at step 2 of 3 (watch): its process stopped heartbeating")
    assert op.finished_at == T0 + timedelta(seconds=60)
    assert [s.state for s in op.steps] == ["succeeded", "failed", "pending"]
    assert "host-c:9:new" in (op.steps[1].error or "")
    assert by_id[never_started.id].summary == (
        "interrupted before step 1 of 2 (announce): its process stopped heartbeating"
    )
    assert (await store.get_operation(alive.id)).state == "running"  # type: ignore[union-attr]
    assert (await store.get_operation(finished.id)).state == "succeeded"  # type: ignore[union-attr]

    # The original process, should it wake up, learns that it lost the operation.
    assert not await store.heartbeat(lapsed.id, owner="host-a:1:dead", now=T0)
    assert not await store.finish_operation(
        lapsed.id, state="succeeded", summary="done", validation=None, now=T0
    )
    assert await store.claim_lapsed(now=T0 + timedelta(hours=1), lapse_s=30, claimer="x") != []
    assert await store.claim_lapsed(now=T0 + timedelta(hours=1), lapse_s=30, claimer="x") == []


async def test_two_claimers_never_claim_the_same_operation(
    store: Store, second_store: Store
) -> None:
    ops = [await new_op(store, owner=f"host-a:{i}:dead") for i in range(12)]
    first, second = await asyncio.gather(
        store.claim_lapsed(now=T0 + timedelta(minutes=5), lapse_s=30, claimer="one"),
        second_store.claim_lapsed(now=T0 + timedelta(minutes=5), lapse_s=30, claimer="two"),
    )
    first_ids, second_ids = {o.id for o in first}, {o.id for o in second}
    assert first_ids.isdisjoint(second_ids)
    assert first_ids | second_ids == {o.id for o in ops}
    assert len(first) + len(second) == len(ops)


async def test_restores(store: Store) -> None:
    op = await new_op(store)
    paused = await store.add_restore(op.id, kind="queue_paused", env="staging", key="sla", now=T0)
    flag = await store.add_restore(
        op.id, kind="flag_off", env="staging", key="WORKER_ACCEPT_JOBS", now=T0
    )
    other = await new_op(store)
    await store.add_restore(other.id, kind="queue_paused", env="staging", key="default", now=T0)

    pending = await store.pending_restores(op.id)
    assert [(r.id, r.kind, r.env, r.key) for r in pending] == [
        (paused, "queue_paused", "staging", "sla"),
        (flag, "flag_off", "staging", "WORKER_ACCEPT_JOBS"),
    ]
    assert all(r.restored_at is None and r.created_at == T0 for r in pending)

    assert await store.mark_restored(paused, now=T0 + timedelta(seconds=1))
    assert not await store.mark_restored(paused, now=T0 + timedelta(seconds=2))
    assert [r.id for r in await store.pending_restores(op.id)] == [flag]
    with pytest.raises(ValueError, match="restore kind"):
        await store.add_restore(op.id, kind="queue_deleted", env="staging", key="x", now=T0)


# -- releases ------------------------------------------------------------------------------


async def test_releases_current_and_last_known_good(store: Store) -> None:
    env, worker = "prod", "api"
    for n in (1, 2, 3):
        await store.record_release(
            env=env,
            worker=worker,
            ref=f"v{n}",
            commit=commit(n),
            path=f"/srv/api/releases/{n}",
            now=T0 + timedelta(minutes=n),
        )
    await store.record_release(
        env="staging", worker=worker, ref="v9", commit=commit(9), path="/x", now=T0
    )
    assert await store.current_release(env, worker) is None
    assert await store.last_known_good(env, worker, exclude_commit=None) is None

    await store.mark_deployed(env, worker, commit(1), now=T0 + timedelta(hours=1))
    await store.mark_known_good(env, worker, commit(1), by="U1", now=T0 + timedelta(hours=1))
    await store.mark_deployed(env, worker, commit(2), now=T0 + timedelta(hours=2))
    await store.mark_known_good(env, worker, commit(2), by="U2", now=T0 + timedelta(hours=2))
    deployed = await store.mark_deployed(env, worker, commit(3), now=T0 + timedelta(hours=3))
    assert deployed is not None and deployed.deployed_at == T0 + timedelta(hours=3)

    current = await store.current_release(env, worker)
    assert current is not None and current.commit == commit(3) and not current.known_good
    good = await store.last_known_good(env, worker, exclude_commit=commit(3))
    assert good is not None and good.commit == commit(2) and good.marked_by == "U2"
    assert good.marked_at == T0 + timedelta(hours=2)

    # v3 proves good; a rollback from it goes to v2, not to itself.
    await store.mark_known_good(env, worker, commit(3), by="U3", now=T0 + timedelta(hours=4))
    good = await store.last_known_good(env, worker, exclude_commit=commit(3))
    assert good is not None and good.commit == commit(2)
    # Rolled back to v1: it is now current, and the last good other than it is v3.
    await store.mark_deployed(env, worker, commit(1), now=T0 + timedelta(hours=5))
    assert (await store.current_release(env, worker)).commit == commit(1)  # type: ignore[union-attr]
    good = await store.last_known_good(env, worker, exclude_commit=commit(1))
    assert good is not None and good.commit == commit(3)

    listed = await store.releases(env, worker)
    assert [r.ref for r in listed] == ["v1", "v3", "v2"]
    assert [r.ref for r in await store.releases(env, worker, limit=1)] == ["v1"]
    assert await store.mark_deployed(env, "nope", commit(1), now=T0) is None


async def test_record_release_upserts_on_env_worker_commit(store: Store) -> None:
    op = await new_op(store, kind="deploy")
    first = await store.record_release(
        env="prod", worker="api", ref="main", commit=commit(7).upper(), path="/a", now=T0
    )
    await store.mark_deployed("prod", "api", commit(7), now=T0 + timedelta(minutes=1))
    await store.mark_known_good("prod", "api", commit(7), by="U1", now=T0)
    again = await store.record_release(
        env="prod",
        worker="api",
        ref="v7",
        commit=commit(7),
        path="/b",
        now=T0 + timedelta(hours=1),
        operation_id=op.id,
    )
    assert again.id == first.id and again.commit == commit(7)
    assert (again.ref, again.path, again.built_at) == ("v7", "/b", T0 + timedelta(hours=1))
    assert again.known_good and again.deployed_at == T0 + timedelta(minutes=1)
    assert again.operation_id == op.id
    assert len(await store.releases("prod", "api")) == 1
    with pytest.raises(ValueError, match="40-hex"):
        await store.record_release(
            env="prod", worker="api", ref="x", commit="abc", path="/", now=T0
        )


async def test_find_release(store: Store) -> None:
    a = "abcd0" + "0" * 35
    b = "abcd1" + "1" * 35
    for ref, sha in (("v1", a), ("v2", b)):
        await store.record_release(env="prod", worker="api", ref=ref, commit=sha, path="/", now=T0)

    async def find(wanted: str, env: str = "prod") -> str | None:
        found = await store.find_release(env, "api", wanted)
        return None if found is None else found.ref

    assert await find("v2") == "v2"
    assert await find(a.upper()) == "v1"
    assert await find("abcd0") == "v1"
    assert await find("ABCD1") == "v2"
    assert await find("ffff") is None
    assert await find("abc") is None  # too short for a prefix
    assert await find("v1", env="staging") is None
    with pytest.raises(BadInput, match="several releases") as caught:
        await find("abcd")
    assert "abcd00000000" in str(caught.value) and "abcd11111111" in str(caught.value)


# -- audit ---------------------------------------------------------------------------------


async def test_audit_events_newest_first_and_by_operation(store: Store) -> None:
    op = await new_op(store)
    await store.audit(
        actor="U1",
        source="slack",
        kind="refused",
        command="/worker rollback api --env prod",
        outcome="refused: needs approval",
        env="prod",
        now=T0,
    )
    await store.audit(
        actor="U2",
        source="cli",
        kind="operation",
        command="chatops queue drain sla",
        outcome="succeeded",
        env="staging",
        reason="weekly",
        duration_ms=1234,
        operation_id=op.id,
        details={"steps": 3},
        now=T0 + timedelta(seconds=1),
    )
    events = await store.audit_events(limit=10)
    assert [e.kind for e in events] == ["operation", "refused"]
    newest = events[0]
    assert (newest.actor, newest.source, newest.env, newest.reason) == (
        "U2",
        "cli",
        "staging",
        "weekly",
    )
    assert (newest.duration_ms, newest.operation_id, newest.details) == (1234, op.id, {"steps": 3})
    assert newest.at == T0 + timedelta(seconds=1)
    assert events[1].details == {} and events[1].operation_id is None
    assert [e.actor for e in await store.audit_events(limit=10, operation_id=op.id)] == ["U2"]
    assert len(await store.audit_events(limit=1)) == 1


# -- time ----------------------------------------------------------------------------------


async def test_datetimes_come_back_aware_in_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2025, 6, 1, 14, 0, 0, tzinfo=plus_two)
    op = await new_op(store, at=local)
    stored = await store.get_operation(op.id)
    assert stored is not None
    assert stored.started_at == local
    assert stored.started_at.tzinfo == UTC and stored.started_at.hour == 12
    # Comparisons happen in UTC too: this heartbeat (12:00 UTC) lapsed by 13:00 UTC.
    claimed = await store.claim_lapsed(
        now=datetime(2025, 6, 1, 13, 0, tzinfo=UTC), lapse_s=60, claimer="x"
    )
    assert [o.id for o in claimed] == [op.id]
    assert claimed[0].finished_at is not None and claimed[0].finished_at.tzinfo == UTC
    with pytest.raises(ValueError, match="naive"):
        await new_op(store, at=datetime(2025, 1, 1))


# -- an unreachable database ---------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("case", ["postgresql-closed-port", "sqlite-no-directory", "sqlite-dir"])
async def test_unreachable_database_is_store_unavailable(case: str, tmp_path: Path) -> None:
    if case == "postgresql-closed-port":
        port = closed_port()
        url, names = f"postgresql://chatops:hunter2@127.0.0.1:{port}/chatops", f"127.0.0.1:{port}"
    elif case == "sqlite-no-directory":
        names = str(tmp_path / "missing-dir" / "chatops.db")
        url = f"sqlite:///{names}"
    else:  # the path names a directory, not a file
        url, names = f"sqlite:///{tmp_path}", str(tmp_path)
    with pytest.raises(StoreUnavailable) as caught:
        await Store.open(url, connect_timeout_s=5)
    message = str(caught.value)
    assert names in message and "is unavailable" in message
    assert "hunter2" not in message
    assert caught.value.exit_code == 1


def test_urls_are_normalised_to_async_drivers() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    with pytest.raises(ConfigError) as caught:
        normalise_url("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(caught.value)


def test_the_head_read_from_the_file_names_is_alembics() -> None:
    """`upgrade` skips Alembic when the database is at `known_head()`: it must be the head."""
    from bot.store.migrate import head_revision, known_head

    assert known_head() == head_revision()
