"""The store's Slack side (revision 0002): approvals, the outbox, seen requests, the user-group
cache; on SQLite and on PostgreSQL alike (see conftest.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.pool import NullPool

from bot.store import ApprovalRecord, Store, UnknownApproval, migrate
from bot.store.engine import create_engine
from bot.store.models import Base

T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
LATER = T0 + timedelta(minutes=15)
URL_WITH_PASSWORD = "redis://:hunter2@redis.internal:6379/0"
TOKEN_ASSIGNMENT = "SLACK_BOT_TOKEN=xoxb-1-2"
SLACK_TABLES = {
    "approvals",
    "approval_votes",
    "slack_outbox",
    "slack_messages",
    "seen_requests",
    "group_members",
    "group_refreshes",
}


async def with_connection(
    url: str, fn: Callable[[Connection], Any], *, commit: bool = False
) -> Any:
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            result = await connection.run_sync(fn)
            if commit:
                await connection.commit()
            return result
    finally:
        await engine.dispose()


def model_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def new_approval(store: Store, *, at: datetime = T0, **overrides: Any) -> ApprovalRecord:
    values: dict[str, Any] = {
        "kind": "drain",
        "env": "prod",
        "target": "sla",
        "request": {"op": "drain", "queue": "sla", "timeout_s": 300},
        "command": "/queue drain sla --env prod",
        "requester": "UREQ",
        "needed": 1,
        "channel": "C1",
        "now": at,
        "expires_at": at + timedelta(minutes=15),
    }
    values.update(overrides)
    return await store.create_approval(**values)


# -- migrations ----------------------------------------------------------------------------


async def test_upgrading_from_0001_keeps_the_data(db_url: str) -> None:
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        await migrate.upgrade(engine, "0001")
    finally:
        await engine.dispose()
    store = await Store.open(db_url)
    try:
        assert await store.revision() == "0001"
        op = await store.create_operation(
            kind="drain",
            env="staging",
            target="sla",
            actor="U1",
            source="slack",
            command="/queue drain sla",
            reason="slow",
            params={"timeout_s": 300},
            plan=["producers off", "watch"],
            owner="host:1:a",
            now=T0,
        )
        await store.start_step(op.id, 0, now=T0)
        await store.append_step_output(op.id, 0, "paused\n")
        restore = await store.add_restore(op.id, kind="flag_off", env="staging", key="k", now=T0)
        release = await store.record_release(
            env="staging", worker="api", ref="main", commit="a" * 40, path="/r/a", now=T0
        )
        await store.audit(
            actor="U1", source="slack", kind="drain", command="/queue", outcome="ok", now=T0
        )
        before = await store.get_operation(op.id)
        events = await store.audit_events(limit=10)

        # At 0001 the models are ahead by exactly the later tables (and their indexes).
        diff = await with_connection(db_url, model_diff)
        assert {d[0] for d in diff} <= {"add_table", "add_index"}
        assert {d[1].name for d in diff if d[0] == "add_table"} == SLACK_TABLES | {
            "incidents",
            "windows",
            "window_notices",
        }

        await store.upgrade()
        assert await store.revision() == migrate.head_revision() == "0007"
        assert await store.get_operation(op.id) == before
        assert await store.audit_events(limit=10) == events
        assert [r.id for r in await store.pending_restores(op.id)] == [restore]
        assert await store.releases("staging", "api") == [release]
        assert await with_connection(db_url, model_diff) == []

        # The new tables work next to the old rows.
        approval = await new_approval(store)
        assert (await store.vote(approval.id, voter="U2", decision="approve", now=T0)).decided
        assert await store.remember_request("k1", now=T0)
    finally:
        await store.close()


async def test_downgrading_to_0001_drops_only_the_slack_tables(store: Store, db_url: str) -> None:
    await new_approval(store)
    await store.enqueue_slack(message_key="k", method="chat.postMessage", args={}, now=T0)
    await store.audit(actor="U1", source="slack", kind="x", command="/x", outcome="ok", now=T0)

    def downgrade(connection: Connection) -> None:
        migrate.lock_for_migrations(connection)
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")

    await with_connection(db_url, downgrade, commit=True)
    assert await store.revision() == "0001"
    tables = await with_connection(db_url, lambda c: set(inspect(c).get_table_names()))
    assert not tables & SLACK_TABLES
    assert len(await store.audit_events(limit=10)) == 1
    await store.upgrade()
    assert await store.revision() == "0007"
    assert await store.pending_slack(limit=10) == []


async def test_the_slack_models_match_the_migration(store: Store, db_url: str) -> None:
    assert await store.revision() == "0007"
    tables = await with_connection(db_url, lambda c: set(inspect(c).get_table_names()))
    assert tables >= SLACK_TABLES
    assert await with_connection(db_url, model_diff) == []


# -- approvals -----------------------------------------------------------------------------


async def test_create_and_get_an_approval(store: Store) -> None:
    approval = await new_approval(store, needed=2)
    assert re.fullmatch(r"ap-[0-9a-f]{10}", approval.id)
    assert approval.state == "pending" and approval.votes == () and approval.needed == 2
    assert approval.message_ts is None and approval.decided_at is None
    assert approval.operation_id is None

    await store.set_approval_message(approval.id, channel="C2", ts="1712345678.000100")
    stored = await store.get_approval(approval.id)
    assert stored is not None
    assert stored.channel == "C2" and stored.message_ts == "1712345678.000100"
    assert stored.request == {"op": "drain", "queue": "sla", "timeout_s": 300}
    assert stored.command == "/queue drain sla --env prod"
    assert stored.created_at == T0 and stored.expires_at == LATER
    assert stored.expires_at.tzinfo == UTC

    assert await store.get_approval("ap-0000000000") is None
    with pytest.raises(UnknownApproval):
        await store.set_approval_message("ap-0000000000", channel="C", ts="1.2")


async def test_an_approval_is_refused_when_it_could_never_be_granted(store: Store) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await new_approval(store, needed=0)
    with pytest.raises(ValueError, match="expire after"):
        await new_approval(store, expires_at=T0)
    with pytest.raises(ValueError, match="naive"):
        await new_approval(store, now=datetime(2025, 1, 1), expires_at=datetime(2025, 1, 2))


async def test_voting_rules(store: Store) -> None:
    approval = await new_approval(store, needed=2)
    at = T0 + timedelta(minutes=1)

    own = await store.vote(approval.id, voter="UREQ", decision="approve", now=at)
    assert not own.accepted and own.reason == "own_request" and not own.decided

    first = await store.vote(approval.id, voter="U1", decision="approve", now=at)
    assert first.accepted and first.reason is None and not first.decided
    assert first.approval.state == "pending" and first.approval.approvers == ("U1",)

    again = await store.vote(approval.id, voter="U1", decision="approve", now=at)
    assert not again.accepted and again.reason == "already_voted"
    changed_mind = await store.vote(approval.id, voter="U1", decision="reject", now=at)
    assert changed_mind.reason == "already_voted"

    second = await store.vote(approval.id, voter="U2", decision="approve", now=at)
    assert second.accepted and second.decided
    assert second.approval.state == "approved" and second.approval.decided_at == at
    assert second.approval.approvers == ("U1", "U2")
    assert [(v.voter, v.decision, v.at) for v in second.approval.votes] == [
        ("U1", "approve", at),
        ("U2", "approve", at),
    ]

    late = await store.vote(approval.id, voter="U3", decision="reject", now=at)
    assert not late.accepted and late.reason == "not_pending"
    assert late.approval.state == "approved" and len(late.approval.votes) == 2


async def test_one_reject_rejects(store: Store) -> None:
    approval = await new_approval(store, needed=3)
    await store.vote(approval.id, voter="U1", decision="approve", now=T0)
    outcome = await store.vote(approval.id, voter="U2", decision="reject", now=T0)
    assert outcome.accepted and outcome.decided
    assert outcome.approval.state == "rejected" and outcome.approval.decided_at == T0
    assert not await store.claim_execution(approval.id, now=T0)


async def test_a_vote_at_or_after_expiry_expires_the_approval(store: Store) -> None:
    approval = await new_approval(store)
    outcome = await store.vote(approval.id, voter="U1", decision="approve", now=LATER)
    assert not outcome.accepted and outcome.reason == "expired"
    assert outcome.approval.state == "expired" and outcome.approval.decided_at == LATER
    assert outcome.approval.votes == ()
    again = await store.vote(approval.id, voter="U2", decision="approve", now=LATER)
    assert again.reason == "expired"
    assert await store.expire_due(now=LATER + timedelta(hours=1)) == []


async def test_bad_votes(store: Store) -> None:
    approval = await new_approval(store)
    with pytest.raises(UnknownApproval) as caught:
        await store.vote("ap-0000000000", voter="U1", decision="approve", now=T0)
    assert caught.value.exit_code == 2
    with pytest.raises(ValueError, match="unknown vote"):
        await store.vote(approval.id, voter="U1", decision="maybe", now=T0)
    with pytest.raises(ValueError, match="naive"):
        await store.vote(approval.id, voter="U1", decision="approve", now=datetime(2025, 3, 4))


async def test_execution_is_claimed_once_then_finished(store: Store) -> None:
    approval = await new_approval(store)
    assert not await store.claim_execution(approval.id, now=T0)  # still pending
    await store.vote(approval.id, voter="U1", decision="approve", now=T0)
    assert await store.claim_execution(approval.id, now=T0)
    assert not await store.claim_execution(approval.id, now=T0)
    executing = await store.get_approval(approval.id)
    assert executing is not None and executing.state == "executing"

    with pytest.raises(ValueError, match="cannot finish"):
        await store.finish_approval(approval.id, operation_id=None, state="approved")
    assert await store.finish_approval(approval.id, operation_id="op-0123456789")
    assert not await store.finish_approval(approval.id, operation_id="op-other")
    done = await store.get_approval(approval.id)
    assert done is not None
    assert done.state == "done" and done.operation_id == "op-0123456789"
    assert not await store.claim_execution("ap-0000000000", now=T0)


async def test_an_executing_approval_can_finish_cancelled(store: Store) -> None:
    approval = await new_approval(store)
    await store.vote(approval.id, voter="U1", decision="approve", now=T0)
    assert await store.claim_execution(approval.id, now=T0)
    assert await store.finish_approval(approval.id, operation_id=None, state="cancelled")
    finished = await store.get_approval(approval.id)
    assert finished is not None and finished.state == "cancelled"


async def test_expire_due_returns_each_expired_approval_once(store: Store) -> None:
    early = await new_approval(store, expires_at=T0 + timedelta(minutes=5))
    later = await new_approval(store, expires_at=T0 + timedelta(minutes=10))
    approved = await new_approval(store, expires_at=T0 + timedelta(minutes=5))
    await store.vote(approved.id, voter="U1", decision="approve", now=T0)
    await new_approval(store, expires_at=T0 + timedelta(hours=1))

    assert await store.expire_due(now=T0 + timedelta(minutes=4)) == []
    expired = await store.expire_due(now=T0 + timedelta(minutes=10))
    assert [a.id for a in expired] == [early.id, later.id]
    assert all(a.state == "expired" and a.decided_at is not None for a in expired)
    assert await store.expire_due(now=T0 + timedelta(minutes=10)) == []
    still = await store.get_approval(approved.id)
    assert still is not None and still.state == "approved"


async def test_cancel_only_a_pending_approval(store: Store) -> None:
    approval = await new_approval(store)
    assert await store.cancel_approval(approval.id, by="UREQ", now=T0)
    assert not await store.cancel_approval(approval.id, by="UREQ", now=T0)
    cancelled = await store.get_approval(approval.id)
    assert cancelled is not None and cancelled.state == "cancelled" and cancelled.decided_at == T0
    refused = await store.vote(approval.id, voter="U1", decision="approve", now=T0)
    assert refused.reason == "not_pending" and refused.approval.state == "cancelled"

    approved = await new_approval(store)
    await store.vote(approved.id, voter="U1", decision="approve", now=T0)
    assert not await store.cancel_approval(approved.id, by="UREQ", now=T0)
    assert not await store.cancel_approval("ap-0000000000", by="UREQ", now=T0)


# -- approvals: races between two processes ------------------------------------------------


async def test_two_concurrent_approvals_decide_once(store: Store, second_store: Store) -> None:
    for _ in range(8):
        approval = await new_approval(store, needed=1)
        one, two = await asyncio.gather(
            store.vote(approval.id, voter="U1", decision="approve", now=T0),
            second_store.vote(approval.id, voter="U2", decision="approve", now=T0),
        )
        assert [one.decided, two.decided].count(True) == 1
        loser = two if one.decided else one
        assert loser.reason == "not_pending" or (loser.accepted and not loser.decided)
        final = await store.get_approval(approval.id)
        assert final is not None and final.state == "approved"
        assert final.decided_at == T0


async def test_concurrent_votes_reaching_needed_together_approve(
    store: Store, second_store: Store
) -> None:
    # Each vote alone is not enough: counted one at a time, the second one decides.
    for _ in range(8):
        approval = await new_approval(store, needed=2)
        one, two = await asyncio.gather(
            store.vote(approval.id, voter="U1", decision="approve", now=T0),
            second_store.vote(approval.id, voter="U2", decision="approve", now=T0),
        )
        assert one.accepted and two.accepted
        assert [one.decided, two.decided].count(True) == 1
        final = await store.get_approval(approval.id)
        assert final is not None and final.state == "approved"
        assert set(final.approvers) == {"U1", "U2"}


async def test_approve_and_reject_at_once_decide_once(store: Store, second_store: Store) -> None:
    for _ in range(8):
        approval = await new_approval(store, needed=1)
        approve, reject = await asyncio.gather(
            store.vote(approval.id, voter="U1", decision="approve", now=T0),
            second_store.vote(approval.id, voter="U2", decision="reject", now=T0),
        )
        assert [approve.decided, reject.decided].count(True) == 1
        final = await store.get_approval(approval.id)
        assert final is not None
        assert final.state == ("approved" if approve.decided else "rejected")


async def test_a_double_click_counts_once(store: Store, second_store: Store) -> None:
    approval = await new_approval(store, needed=2)
    one, two = await asyncio.gather(
        store.vote(approval.id, voter="U1", decision="approve", now=T0),
        second_store.vote(approval.id, voter="U1", decision="approve", now=T0),
    )
    assert sorted([one.reason or "", two.reason or ""]) == ["", "already_voted"]
    final = await store.get_approval(approval.id)
    assert final is not None and final.approvers == ("U1",) and final.state == "pending"


async def test_execution_is_claimed_by_one_process(store: Store, second_store: Store) -> None:
    approval = await new_approval(store)
    await store.vote(approval.id, voter="U1", decision="approve", now=T0)
    claims = await asyncio.gather(
        store.claim_execution(approval.id, now=T0),
        second_store.claim_execution(approval.id, now=T0),
    )
    assert sorted(claims) == [False, True]


async def test_two_expirers_never_expire_the_same_approval(
    store: Store, second_store: Store
) -> None:
    approvals = [await new_approval(store) for _ in range(10)]
    one, two = await asyncio.gather(store.expire_due(now=LATER), second_store.expire_due(now=LATER))
    ids_one, ids_two = {a.id for a in one}, {a.id for a in two}
    assert ids_one.isdisjoint(ids_two)
    assert ids_one | ids_two == {a.id for a in approvals}


# -- outbox --------------------------------------------------------------------------------


async def enqueue(store: Store, key: str, method: str = "chat.update", **args: Any) -> int:
    return await store.enqueue_slack(message_key=key, method=method, args=args, now=T0)


async def test_a_sender_claims_only_the_entries_of_its_scope(store: Store) -> None:
    console = "console:host:123"
    served = await enqueue(store, "op-a:progress", "chat.postMessage", text="for Slack")
    shown = await store.enqueue_slack(
        message_key="op-b:progress", method="chat.postMessage", args={}, now=T0, scope=console
    )
    other = await store.enqueue_slack(
        message_key="op-c:progress", method="chat.postMessage", args={}, now=T0, scope="console:x"
    )
    slack = await store.claim_slack(now=T0, limit=10, claimer="serve", lease_s=60)
    assert [e.id for e in slack] == [served]
    mine = await store.claim_slack(now=T0, limit=10, claimer="tty", lease_s=60, scope=console)
    assert [e.id for e in mine] == [shown]
    assert other not in {e.id for e in slack + mine}


async def test_claim_takes_the_oldest_due_entry_of_each_message(store: Store) -> None:
    a1 = await enqueue(store, "op-a:progress", "chat.postMessage", text="a1")
    b1 = await enqueue(store, "op-b:progress", "chat.postMessage", text="b1")
    a2 = await enqueue(store, "op-a:progress", text="a2")
    c1 = await enqueue(store, "op-c:progress", text="c1")

    claimed = await store.claim_slack(now=T0, limit=10, claimer="one", lease_s=60)
    assert [e.id for e in claimed] == [a1, b1, c1]
    first = claimed[0]
    assert first.message_key == "op-a:progress" and first.method == "chat.postMessage"
    assert first.args == {"text": "a1"} and first.attempts == 0
    assert first.claimed_by == "one" and first.claimed_until == T0 + timedelta(seconds=60)
    assert first.created_at == first.not_before == T0 and first.sent_at is None

    # Claimed entries are leased: nothing more until one is settled.
    assert await store.claim_slack(now=T0, limit=10, claimer="two", lease_s=60) == []
    assert await store.slack_sent(a1, result={"ts": "1.1", "channel": "C1"}, now=T0)
    (next_a,) = await store.claim_slack(now=T0, limit=10, claimer="two", lease_s=60)
    assert next_a.id == a2 and next_a.args == {"text": "a2"}

    # A lease that ran out is claimed again (the sender died mid-send).
    at = T0 + timedelta(seconds=61)
    again = await store.claim_slack(now=at, limit=10, claimer="three", lease_s=60)
    assert [e.id for e in again] == [b1, a2, c1]
    assert {e.claimed_by for e in again} == {"three"}


async def test_claim_respects_the_limit_and_not_before(store: Store) -> None:
    ids = [await enqueue(store, f"k{i}") for i in range(5)]
    assert (
        await store.claim_slack(now=T0 - timedelta(seconds=1), limit=10, claimer="x", lease_s=5)
        == []
    )
    # Three senders: one sender's own unsettled entries would come back to it.
    first = await store.claim_slack(now=T0, limit=2, claimer="x", lease_s=5)
    second = await store.claim_slack(now=T0, limit=2, claimer="y", lease_s=5)
    third = await store.claim_slack(now=T0, limit=2, claimer="z", lease_s=5)
    assert [e.id for e in first + second + third] == ids


async def test_a_retried_entry_waits_and_keeps_its_messages_later_entries_behind_it(
    store: Store,
) -> None:
    post = await enqueue(store, "op-a:progress", "chat.postMessage", text="posted")
    update = await enqueue(store, "op-a:progress", text="later")
    (entry,) = await store.claim_slack(now=T0, limit=10, claimer="x", lease_s=60)
    retry_at = T0 + timedelta(seconds=30)
    assert await store.slack_retry(
        entry.id, not_before=retry_at, error=f"ratelimited {URL_WITH_PASSWORD}", now=T0
    )
    # Not due yet, and its message's later entry may not overtake it.
    assert (
        await store.claim_slack(now=T0 + timedelta(seconds=29), limit=10, claimer="x", lease_s=60)
        == []
    )
    (again,) = await store.claim_slack(now=retry_at, limit=10, claimer="y", lease_s=60)
    assert again.id == post and again.attempts == 1 and again.not_before == retry_at
    assert again.last_error == "ratelimited redis://:***@redis.internal:6379/0"
    assert again.claimed_by == "y"
    assert await store.slack_sent(post, result={"ts": "1.1"}, now=retry_at)
    (last,) = await store.claim_slack(now=retry_at, limit=10, claimer="y", lease_s=60)
    assert last.id == update


async def test_settling_twice_keeps_the_first_result(store: Store) -> None:
    entry_id = await enqueue(store, "k", "chat.postEphemeral", text="hi")
    assert await store.slack_sent(entry_id, result={"ok": True}, now=T0)
    assert not await store.slack_sent(entry_id, result={"ok": False}, now=LATER)
    assert not await store.slack_retry(entry_id, not_before=LATER, error="late", now=LATER)
    assert await store.pending_slack(limit=10) == []
    assert await store.claim_slack(now=LATER, limit=10, claimer="x", lease_s=60) == []


async def test_coalesce_replaces_the_unsent_update_in_place(store: Store) -> None:
    key = "op-a:progress"
    post = await enqueue(store, key, "chat.postMessage", text="start")
    first = await store.enqueue_slack(
        message_key=key, method="chat.update", args={"text": "1/3"}, now=T0, coalesce=True
    )
    other = await enqueue(store, "op-b:progress", text="b")
    second = await store.enqueue_slack(
        message_key=key,
        method="chat.update",
        args={"text": "2/3"},
        now=T0 + timedelta(seconds=1),
        coalesce=True,
    )
    assert second == first and first != post
    pending = await store.pending_slack(limit=10)
    assert [(e.id, e.args) for e in pending] == [
        (post, {"text": "start"}),
        (first, {"text": "2/3"}),
        (other, {"text": "b"}),
    ]
    assert pending[1].created_at == pending[1].not_before == T0  # kept its place

    # Another method is never merged into, and neither is an entry that is not the newest.
    ephemeral = await store.enqueue_slack(
        message_key=key, method="chat.postEphemeral", args={"text": "e"}, now=T0, coalesce=True
    )
    assert ephemeral not in (post, first)
    third = await store.enqueue_slack(
        message_key=key, method="chat.update", args={"text": "3/3"}, now=T0, coalesce=True
    )
    assert third not in (post, first, ephemeral)
    assert [e.id for e in await store.pending_slack(limit=10)] == [
        post,
        first,
        other,
        ephemeral,
        third,
    ]


async def test_coalesce_never_changes_a_claimed_entry(store: Store) -> None:
    key = "op-a:progress"
    claimed_id = await store.enqueue_slack(
        message_key=key, method="chat.update", args={"text": "1/3"}, now=T0, coalesce=True
    )
    (claimed,) = await store.claim_slack(now=T0, limit=10, claimer="x", lease_s=60)
    newer = await store.enqueue_slack(
        message_key=key, method="chat.update", args={"text": "2/3"}, now=T0, coalesce=True
    )
    assert newer != claimed_id
    entries = await store.pending_slack(limit=10)
    assert [(e.id, e.args) for e in entries] == [
        (claimed_id, {"text": "1/3"}),
        (newer, {"text": "2/3"}),
    ]
    # Released by a retry, it is unclaimed again, but no longer the newest: left alone.
    await store.slack_retry(claimed.id, not_before=LATER, error="throttled", now=T0)
    newest = await store.enqueue_slack(
        message_key=key, method="chat.update", args={"text": "3/3"}, now=T0, coalesce=True
    )
    assert newest == newer
    args = {e.id: e.args for e in await store.pending_slack(limit=10)}
    assert args == {claimed_id: {"text": "1/3"}, newer: {"text": "3/3"}}


async def test_coalesce_into_a_retried_entry_keeps_its_backoff(store: Store) -> None:
    key = "op-a:progress"
    entry_id = await store.enqueue_slack(
        message_key=key, method="chat.update", args={"text": "1/3"}, now=T0, coalesce=True
    )
    await store.claim_slack(now=T0, limit=10, claimer="x", lease_s=60)
    await store.slack_retry(entry_id, not_before=LATER, error="ratelimited", now=T0)
    same = await store.enqueue_slack(
        message_key=key, method="chat.update", args={"text": "2/3"}, now=T0, coalesce=True
    )
    assert same == entry_id
    (entry,) = await store.pending_slack(limit=10)
    assert entry.args == {"text": "2/3"} and entry.not_before == LATER and entry.attempts == 1
    assert await store.claim_slack(now=T0, limit=10, claimer="x", lease_s=60) == []


async def test_a_sender_takes_back_what_its_own_cut_short_round_left_leased(store: Store) -> None:
    """The store went away between a Slack call and `slack_sent`: the same sender claims the
    entry again at once (uncertain: the call may have gone out); another waits out the lease."""
    entry_id = await enqueue(store, "op-a:progress", text="start")
    (first,) = await store.claim_slack(now=T0, limit=10, claimer="one", lease_s=60)
    assert not first.uncertain
    assert await store.claim_slack(now=T0, limit=10, claimer="two", lease_s=60) == []
    (again,) = await store.claim_slack(now=T0, limit=10, claimer="one", lease_s=60)
    assert again.id == entry_id and again.uncertain


async def test_a_takeover_ends_the_leases_of_a_dead_process_s_senders(store: Store) -> None:
    dead = await enqueue(store, "op-a:progress", text="a")
    alive = await enqueue(store, "op-b:progress", text="b")
    await store.claim_slack(now=T0, limit=1, claimer="host:7:0a0a:s1", lease_s=60)
    await store.claim_slack(now=T0, limit=1, claimer="host:7:0a0ab:s1", lease_s=60)
    assert await store.end_slack_leases("host:7:0a0a", now=T0) == 1
    (taken,) = await store.claim_slack(now=T0, limit=10, claimer="other", lease_s=60)
    assert taken.id == dead and taken.uncertain  # its call may have gone out
    assert alive not in {
        e.id for e in await store.claim_slack(now=T0, limit=10, claimer="x", lease_s=60)
    }


async def test_two_senders_never_claim_the_same_entry(store: Store, second_store: Store) -> None:
    heads = [await enqueue(store, f"op-{i}:progress", text=f"{i}") for i in range(12)]
    for i in range(12):
        await enqueue(store, f"op-{i}:progress", text=f"{i} again")
    one, two = await asyncio.gather(
        store.claim_slack(now=T0, limit=50, claimer="one", lease_s=60),
        second_store.claim_slack(now=T0, limit=50, claimer="two", lease_s=60),
    )
    ids_one, ids_two = {e.id for e in one}, {e.id for e in two}
    assert ids_one.isdisjoint(ids_two)
    assert ids_one | ids_two == set(heads)
    assert {e.claimed_by for e in one} <= {"one"} and {e.claimed_by for e in two} <= {"two"}


async def test_slack_messages(store: Store) -> None:
    assert await store.slack_message("op-a:progress") is None
    await store.set_slack_message("op-a:progress", channel="C1", ts=None)
    pending = await store.slack_message("op-a:progress")
    assert pending is not None and pending.channel == "C1" and pending.ts is None
    await store.set_slack_message("op-a:progress", channel="C1", ts="1.2", thread_ts="1.0")
    posted = await store.slack_message("op-a:progress")
    assert posted is not None
    assert (posted.message_key, posted.channel, posted.ts, posted.thread_ts) == (
        "op-a:progress",
        "C1",
        "1.2",
        "1.0",
    )


async def test_forget_settled_entries(store: Store) -> None:
    old = await enqueue(store, "a")
    await enqueue(store, "b")
    await store.slack_sent(old, result=None, now=T0)
    assert await store.forget_slack_sent_before(before=T0) == 0
    assert await store.forget_slack_sent_before(before=T0 + timedelta(seconds=1)) == 1
    assert len(await store.pending_slack(limit=10)) == 1


# -- seen requests -------------------------------------------------------------------------


async def test_remember_request_is_true_once(store: Store) -> None:
    assert await store.remember_request("sha256:abc", now=T0)
    assert not await store.remember_request("sha256:abc", now=LATER)
    assert await store.remember_request("sha256:def", now=LATER)
    assert await store.forget_requests_before(before=LATER) == 1
    assert await store.remember_request("sha256:abc", now=LATER)
    assert not await store.remember_request("sha256:def", now=LATER)


async def test_a_replay_arriving_at_once_runs_once(store: Store, second_store: Store) -> None:
    for i in range(8):
        firsts = await asyncio.gather(
            store.remember_request(f"req-{i}", now=T0),
            second_store.remember_request(f"req-{i}", now=T0),
        )
        assert sorted(firsts) == [False, True]


# -- user-group cache ----------------------------------------------------------------------


async def test_group_members_are_replaced_atomically(store: Store) -> None:
    assert await store.groups_of("U1") == set()
    assert await store.groups_refreshed_at("S1") is None

    assert await store.replace_group_members("S1", ["U1", "U2", "U1"], now=T0)
    assert await store.replace_group_members("S2", ["U1"], now=T0)
    assert await store.groups_of("U1") == {"S1", "S2"}
    assert await store.groups_of("U2") == {"S1"}
    assert await store.group_members("S1") == {"U1", "U2"}
    assert await store.groups_refreshed_at("S1") == T0

    refreshed = T0 + timedelta(minutes=5)
    assert await store.replace_group_members("S1", ["U3"], now=refreshed)
    assert await store.groups_of("U1") == {"S2"}
    assert await store.groups_of("U3") == {"S1"}
    assert await store.groups_refreshed_at("S1") == refreshed

    # Refreshed empty: loaded, with nobody in it.
    assert await store.replace_group_members("S2", [], now=refreshed)
    assert await store.group_members("S2") == frozenset()
    assert await store.groups_refreshed_at("S2") == refreshed

    # A refresh older than the stored one (a slow replica) changes nothing.
    assert not await store.replace_group_members("S1", ["U9"], now=T0)
    assert await store.group_members("S1") == {"U3"}
    assert await store.groups_refreshed_at("S1") == refreshed


async def test_two_refreshes_of_a_group_at_once(store: Store, second_store: Store) -> None:
    await store.replace_group_members("S1", ["U0"], now=T0)
    for i in range(1, 6):
        at = T0 + timedelta(minutes=i)
        results = await asyncio.gather(
            store.replace_group_members("S1", ["U1", "U2"], now=at),
            second_store.replace_group_members("S1", ["U2", "U3"], now=at),
        )
        assert list(results) == [True, True]
        assert await store.group_members("S1") in ({"U1", "U2"}, {"U2", "U3"})
        assert await store.groups_refreshed_at("S1") == at


# -- secrets and time ----------------------------------------------------------------------


async def test_secrets_never_reach_a_slack_row(store: Store, db_url: str) -> None:
    secret_text = f"connect {URL_WITH_PASSWORD} with {TOKEN_ASSIGNMENT}"
    approval = await new_approval(
        store,
        command=f"/worker deploy api {TOKEN_ASSIGNMENT}",
        request={"op": "deploy", "env": {"REDIS_URL": URL_WITH_PASSWORD}},
    )
    assert approval.command == "/worker deploy api SLACK_BOT_TOKEN=***"
    assert approval.request == {
        "op": "deploy",
        "env": {"REDIS_URL": "redis://:***@redis.internal:6379/0"},
    }
    entry_id = await store.enqueue_slack(
        message_key="k",
        method="response_url",
        args={"token": "xoxb-123-456", "payload": {"text": secret_text}, "list": [secret_text]},
        now=T0,
    )
    await store.slack_retry(entry_id, not_before=T0, error=secret_text, now=T0)
    await store.slack_sent(entry_id, result={"echo": secret_text}, now=T0)

    def dump(connection: Connection) -> str:
        rows = []
        for table in ("approvals", "slack_outbox"):
            rows += [repr(tuple(r)) for r in connection.execute(text(f"SELECT * FROM {table}"))]
        return "\n".join(rows)

    everything = await with_connection(db_url, dump)
    assert "hunter2" not in everything
    assert "xoxb-" not in everything
    assert "redis://:***@redis.internal" in everything
    assert "SLACK_BOT_TOKEN=***" in everything


async def test_slack_datetimes_come_back_aware_in_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2025, 6, 1, 14, 0, 0, tzinfo=plus_two)
    approval = await new_approval(store, at=local)
    stored = await store.get_approval(approval.id)
    assert stored is not None
    assert stored.created_at == local and stored.created_at.tzinfo == UTC
    # 12:15 UTC is its expiry, whatever zone the caller speaks.
    expired = await store.expire_due(now=datetime(2025, 6, 1, 12, 15, tzinfo=UTC))
    assert [a.id for a in expired] == [approval.id]

    entry_id = await store.enqueue_slack(message_key="k", method="chat.update", args={}, now=local)
    (entry,) = await store.claim_slack(
        now=datetime(2025, 6, 1, 12, 0, tzinfo=UTC), limit=1, claimer="x", lease_s=1
    )
    assert entry.id == entry_id and entry.not_before.tzinfo == UTC
    assert entry.claimed_until == datetime(2025, 6, 1, 12, 0, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        await store.remember_request("x", now=datetime(2025, 1, 1))


async def test_a_message_can_live_behind_a_response_url(store: Store) -> None:
    url = "https://hooks.slack.com/commands/T1/" + "x" * 120
    await store.set_slack_message("op-1:progress", channel="C1", ts=None, response_url=url)
    found = await store.slack_message("op-1:progress")
    assert found is not None and found.response_url == url and found.ts is None
