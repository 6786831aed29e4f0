"""The Slack door end to end: signed requests over HTTP to the bot's `/slack/events`, the bot
calling the fake Slack Web API over HTTP, and the real Redis and Node BullMQ worker behind it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import make_url

from bot.clock import Clock, SystemClock
from bot.runtime import open_runtime
from bot.slack import blocks
from bot.slack.app import SlackBot, build_bot
from tests.canary import SIGNING_SECRET
from tests.faults.proxy import fault_proxy
from tests.scenarios.conftest import HELD_DRAIN, Scenario
from tests.slack.driver import SlackDriver
from tests.slack.fake_slack import FakeSlack

SECRET = SIGNING_SECRET  # a canary (tests/canary.py)
OPS, LEAD, LEAD2, GUEST = "U_OPS", "U_LEAD", "U_LEAD2", "U_GUEST"
VIEWER = "U_VIEWER"  # may see the queues, and nothing else: `queue status`
CHANNEL = "C_OPS"


@dataclass
class Chat:
    slack: FakeSlack
    driver: SlackDriver
    bot: SlackBot
    scenario: Scenario

    def final(self, state: str = "succeeded") -> dict[str, Any] | None:
        for message in self.slack.messages(CHANNEL):
            if f": {state}" in message.get("text", ""):
                return message
        return None

    async def wait(self, predicate, timeout_s: float = 30.0) -> None:
        """Poll: some conditions (audit rows, Redis state) change without any Slack call, which
        is all `FakeSlack.wait_until` wakes up on."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.05)

    def audit(self) -> list[tuple[str, str, str]]:
        db = sqlite3.connect(self.scenario.tmp / "chatops.sqlite3")
        try:
            return list(db.execute("select actor, kind, outcome from audit_events order by id"))
        finally:
            db.close()


def configure(scenario: Scenario, fake_slack: FakeSlack) -> dict[str, str]:
    """The scenario's environment behind Slack roles; the bot's environment variables."""
    fake_slack.usergroups = {"S_ONCALL": [OPS], "S_LEADS": [LEAD, LEAD2]}
    if CHANNEL not in fake_slack.channels:
        fake_slack.add_channel(CHANNEL, name="ops-test")
    scenario.configure(channel="#ops-test")
    scenario.extra_config = {
        "roles": {
            "operator": {"groups": ["S_ONCALL"]},
            "approver": {"groups": ["S_LEADS"]},
            "viewer": {"users": [VIEWER]},
        },
        "permissions": {
            "operator": {"test": ["status", "drain", "pause", "resume", "history", "cancel"]},
            "approver": {"*": ["*"]},
            "viewer": {"test": ["queue status"]},
        },
        "approvals": {"resume": {"test": 1}},
    }
    return {
        **scenario.environ(),
        "SLACK_BOT_TOKEN": fake_slack.bot_token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake_slack.api_url,
    }


@contextlib.asynccontextmanager
async def running_bot(
    scenario: Scenario, fake_slack: FakeSlack, environ: dict[str, str], clock: Clock | None = None
) -> AsyncIterator[Chat]:
    async with open_runtime(environ, clock=clock) as rt:
        bot = build_bot(rt)
        runner, port = await bot.start_http("127.0.0.1", 0)
        try:
            async with bot.running():
                url = f"http://127.0.0.1:{port}/slack/events"
                driver = SlackDriver(url, SECRET, fake_slack, user=OPS, channel=CHANNEL)
                yield Chat(fake_slack, driver, bot, scenario)
        finally:
            await runner.cleanup()


@pytest.fixture
async def chat(
    request: pytest.FixtureRequest, scenario: Scenario, fake_slack: FakeSlack
) -> AsyncIterator[Chat]:
    if request.node.get_closest_marker("protected"):
        scenario.configure(protected=True)
    environ = configure(scenario, fake_slack)
    async with running_bot(scenario, fake_slack, environ) as chat:
        yield chat


async def _plan_view(chat: Chat, user: str) -> dict[str, Any]:
    def filled() -> bool:
        views = chat.slack.open_views(user)
        return bool(views) and "preparing" not in json.dumps(views[-1]["blocks"])

    await chat.wait(filled, timeout_s=15)
    return chat.slack.open_views(user)[-1]


async def test_drain_from_slack_with_modal_progress_and_final_message(chat: Chat):
    scenario = chat.scenario
    await scenario.produce("sla", 300)
    async with scenario.node_worker(CONCURRENCY="20", JOB_MS="2"):
        response = await chat.driver.command("/queue", "drain sla")
        assert response.status == 200
        view = await _plan_view(chat, OPS)
        plan_text = json.dumps(view["blocks"])
        assert "turn producers off" in plan_text and "`test`" in plan_text
        assert re.search(r"now sla: [\d,]+ waiting, \d+ active, 0 delayed", plan_text)
        submitted = await chat.driver.view_submission(view)
        assert submitted.status == 200
        await chat.wait(lambda: chat.final() is not None, timeout_s=60)
    counts = await scenario.counts()
    assert counts["waiting"] == counts["active"] == 0 and counts["completed"] == 300
    runs = await scenario.runs()
    assert len(runs) == 300 and set(runs.values()) == {1}
    final = chat.final()
    assert final is not None and "sla drained" in json.dumps(final["blocks"])
    # Step output goes to the thread, at Slack's pace of about a post a second.
    await chat.wait(lambda: bool(chat.slack.thread(CHANNEL, final["ts"])))
    assert chat.slack.rate_limited == 0
    assert len(chat.slack.messages(CHANNEL)) == 1  # one message, updated in place


async def test_a_user_without_the_permission_is_refused_and_audited(chat: Chat):
    await chat.bot.door.refresh_groups()
    response = await chat.driver.command("/queue", "drain sla", user=GUEST)
    assert response.status == 200
    refusal = chat.slack.ephemerals(user=GUEST)
    assert refusal and "needs the permission `drain in test`" in refusal[-1]["text"]
    assert chat.slack.calls_to("views.open") == []
    await chat.wait(lambda: any(kind == "refused" for _, kind, _ in chat.audit()))
    assert await chat.scenario.flag() is None


async def test_roles_slack_will_not_give_refuse_saying_why_then_recover(
    scenario: Scenario, fake_slack: FakeSlack
):
    """A cold cache whose refresh fails: each user is told why, nothing runs, the refusals are
    audited; once Slack answers again the same command runs."""
    environ = configure(scenario, fake_slack)
    fake_slack.fail("usergroups.users.list", error="missing_scope", times=1000)
    async with running_bot(scenario, fake_slack, environ) as chat:
        await scenario.produce("sla", 3)
        status = await chat.driver.command("/queue", "status sla")
        assert status.status == 200 and "checking permissions" in status.json["text"]
        await chat.wait(lambda: bool(fake_slack.responses(status.response_url)))
        told = fake_slack.responses(status.response_url)[0]["text"]
        why = "roles could not be read from Slack (usergroups.users.list: missing_scope)"
        assert why in told, told

        await chat.driver.command("/queue", "pause sla")

        def refused_in_the_modal() -> bool:
            views = fake_slack.open_views(OPS)
            return bool(views) and "missing_scope" in json.dumps(views[-1]["blocks"])

        await chat.wait(refused_in_the_modal)
        await chat.wait(lambda: sum(kind == "refused" for _, kind, _ in chat.audit()) == 2)
        assert all("roles not readable" in outcome for _, _, outcome in chat.audit())
        state = await scenario.json("queue", "status", "sla", "--env", "test")
        assert state["queues"][0]["paused"] is False

        fake_slack.recover()
        again = await chat.driver.command("/queue", "status sla")
        await chat.wait(lambda: bool(fake_slack.responses(again.response_url)))
        answer = fake_slack.responses(again.response_url)[0]["text"]
        assert "sla" in answer and " 3 " in answer, answer


async def test_a_burst_on_a_cold_cache_reads_the_groups_once(
    scenario: Scenario, fake_slack: FakeSlack
):
    environ = configure(scenario, fake_slack)
    await scenario.produce("sla", 2)
    fake_slack.fail("usergroups.users.list", latency_s=5.0)  # the first call is slow
    async with running_bot(scenario, fake_slack, environ) as chat:
        sent = await asyncio.gather(
            *(chat.driver.command("/queue", "status sla") for _ in range(5))
        )
        # Each came while the cache was cold, so each waited for the groups.
        assert all("checking permissions" in r.json["text"] for r in sent)
        for response in sent:
            url = response.response_url
            assert url is not None
            await chat.wait(lambda url=url: bool(fake_slack.responses(url)))
            assert " 2 " in fake_slack.responses(url)[0]["text"]
        # One round for the two groups, shared by the start-up refresh and the five commands.
        assert len(fake_slack.calls_to("usergroups.users.list")) == 2


async def test_read_only_commands_answer_through_response_url(chat: Chat):
    await chat.scenario.produce("sla", 4)
    response = await chat.driver.command("/queue", "status sla")
    assert response.status == 200
    await chat.wait(lambda: bool(chat.slack.responses(response.response_url)))
    answer = chat.slack.responses(response.response_url)[0]
    assert "sla" in answer["text"] and " 4 " in answer["text"]


async def test_status_of_fifty_queues_shows_every_row_within_block_kit_limits(
    scenario: Scenario, fake_slack: FakeSlack
):
    """A table longer than one section is split on whole lines, never cut."""
    queues = [f"q{i:02d}" for i in range(50)]
    scenario.configure(queues=queues)
    await scenario.produce(",".join(queues), 1)
    await scenario.produce("q00", 2)
    await scenario.produce("q49", 6)
    async with running_bot(scenario, fake_slack, configure(scenario, fake_slack)) as chat:
        response = await chat.driver.command("/queue", "status all")
        await chat.wait(lambda: bool(chat.slack.responses(response.response_url)))
    (answer,) = chat.slack.responses(response.response_url)  # the fake checked its blocks
    shown = "".join(b["text"]["text"] for b in answer["blocks"] if b["type"] == "section")
    assert shown.count("```") >= 4, "one code block: the table was not split"
    assert "queue  paused  waiting" in shown
    rows = [line.split() for line in shown.replace("```", "\n").splitlines() if line.strip()]
    counts = {row[0]: row[2] for row in rows if row[0] in queues}
    assert set(counts) == set(queues)
    assert counts["q00"] == "3" and counts["q49"] == "7"
    assert "showing the" not in shown  # nothing was left out


async def test_help_lists_only_what_the_caller_may_run(chat: Chat):
    await chat.bot.door.refresh_groups()
    response = await chat.driver.command("/ops", "help")
    await chat.wait(lambda: bool(chat.slack.responses(response.response_url)))
    text = chat.slack.responses(response.response_url)[0]["text"]
    assert "/queue drain" in text and "/worker deploy" not in text and "/queue retry" not in text
    # Each line is the whole first paragraph of the CLI command's docstring.
    assert "every queue of ENV, as one operation), producers back on. Deletes no job." in text
    # A bare command is its help, for that command alone.
    bare = await chat.driver.command("/queue", "")
    await chat.wait(lambda: bool(chat.slack.responses(bare.response_url)))
    lines = chat.slack.responses(bare.response_url)[0]["text"].splitlines()
    assert lines[0] == "What you may run:", lines
    assert lines[1:] and all(line.startswith("/queue ") for line in lines[1:]), lines


async def test_a_permission_can_name_one_command_alone(chat: Chat):
    """`queue status` grants /queue status, not /worker status, which `status` would grant too."""
    await chat.bot.door.refresh_groups()
    queues = await chat.driver.command("/queue", "status sla", user=VIEWER)
    await chat.wait(lambda: bool(chat.slack.responses(queues.response_url)))
    assert "sla" in chat.slack.responses(queues.response_url)[0]["text"]

    workers = await chat.driver.command("/worker", "status notification", user=VIEWER)
    said = workers.json["text"]
    assert "needs the permission `status in test` (or `worker status in test`)" in said, said
    await chat.wait(lambda: (VIEWER, "refused", "missing status in test") in chat.audit())

    helped = await chat.driver.command("/ops", "help", user=VIEWER)
    await chat.wait(lambda: bool(chat.slack.responses(helped.response_url)))
    lines = chat.slack.responses(helped.response_url)[0]["text"].splitlines()
    assert [line.split(":")[0] for line in lines[1:]] == ["/queue status [queue|all]", "/ops help"]


async def test_a_channel_no_environment_is_mapped_to_asks_which(chat: Chat):
    await chat.bot.door.refresh_groups()
    chat.slack.add_channel("C_ELSEWHERE", name="random")
    response = await chat.driver.command("/queue", "pause sla", channel="C_ELSEWHERE")
    assert response.json["response_type"] == "ephemeral"
    said = response.json["text"]
    assert "which environment? add --env ENV (known: test)" in said, said
    assert "map this channel to one with `channel:`" in said, said
    assert chat.slack.calls_to("views.open") == []
    with_env = await chat.driver.command("/queue", "status sla --env test", channel="C_ELSEWHERE")
    await chat.wait(lambda: bool(chat.slack.responses(with_env.response_url)))
    assert "sla" in chat.slack.responses(with_env.response_url)[0]["text"]


async def test_bolt_reads_no_slack_variable_of_its_own(
    scenario: Scenario, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
):
    """Set, these would switch Bolt to an OAuth flow keeping installations in files."""
    leftovers = {
        "SLACK_CLIENT_ID": "111.222",
        "SLACK_CLIENT_SECRET": "not-the-bots-secret",
        "SLACK_VERIFICATION_TOKEN": "not-the-bots-token",
    }
    for name, value in leftovers.items():
        monkeypatch.setenv(name, value)
    environ = configure(scenario, fake_slack)
    async with running_bot(scenario, fake_slack, environ) as chat:
        assert chat.bot.app.oauth_flow is None and chat.bot.app.installation_store is None
        await chat.bot.door.refresh_groups()
        await chat.scenario.produce("sla", 2)
        response = await chat.driver.command("/queue", "status sla")
        assert response.status == 200
        await chat.wait(lambda: bool(chat.slack.responses(response.response_url)))
    assert {name: os.environ.get(name) for name in leftovers} == leftovers


async def test_bad_and_stale_signatures_get_401_and_run_nothing(chat: Chat):
    bad = await chat.driver.command("/queue", "pause sla", signature="bad")
    stale = await chat.driver.command("/queue", "pause sla", stale=True)
    assert bad.status == 401 and stale.status == 401
    assert chat.slack.calls_to("views.open") == []


async def test_bad_text_gets_a_clear_answer(chat: Chat):
    response = await chat.driver.command("/queue", "drain $(touch /tmp/x) --bogus")
    assert response.status == 200
    said = chat.slack.ephemerals(user=OPS)[-1]["text"]
    assert "not a queue name" in said or "does not take --bogus" in said
    assert not os.path.exists("/tmp/x")


async def test_approval_flow_own_click_refused_then_another_approver_runs_it(chat: Chat):
    await chat.bot.door.refresh_groups()
    await chat.scenario.redis.hset(f"{chat.scenario.prefix}:sla:meta", "paused", "1")
    requester = LEAD
    await chat.driver.command("/queue", "resume sla", user=requester)
    view = await _plan_view(chat, requester)
    assert "Needs 1 approval" in json.dumps(view["blocks"])
    await chat.driver.view_submission(view)

    def request_message() -> dict[str, Any] | None:
        found = [m for m in chat.slack.messages(CHANNEL) if "Approval" in m.get("text", "")]
        return found[-1] if found else None

    await chat.wait(lambda: request_message() is not None)
    message = request_message()
    assert message is not None
    await chat.driver.block_action(blocks.APPROVE_ACTION, user=requester, message_ts=message["ts"])
    await chat.wait(
        lambda: any("own request" in e["text"] for e in chat.slack.ephemerals(user=requester))
    )
    assert (await chat.scenario.json("queue", "status", "sla", "--env", "test"))["queues"][0][
        "paused"
    ]

    # Two approvers click at once: one execution.
    await asyncio.gather(
        chat.driver.block_action(blocks.APPROVE_ACTION, user=LEAD2, message_ts=message["ts"]),
        chat.driver.block_action(blocks.APPROVE_ACTION, user=LEAD2, message_ts=message["ts"]),
    )
    await chat.wait(lambda: chat.final() is not None)
    status = await chat.scenario.json("queue", "status", "sla", "--env", "test")
    assert status["queues"][0]["paused"] is False
    history = await chat.scenario.json("ops", "history")
    assert [h["kind"] for h in history] == ["resume"]


async def test_two_approvers_clicking_at_once_run_it_once(chat: Chat):
    await chat.bot.door.refresh_groups()
    await chat.scenario.redis.hset(f"{chat.scenario.prefix}:sla:meta", "paused", "1")
    await chat.driver.command("/queue", "resume sla", user=OPS)
    await chat.driver.view_submission(await _plan_view(chat, OPS))
    await chat.wait(lambda: bool(_approval_requests(chat)))
    message = _approval_requests(chat)[-1]
    await asyncio.gather(
        chat.driver.block_action(blocks.APPROVE_ACTION, user=LEAD, message_ts=message["ts"]),
        chat.driver.block_action(blocks.APPROVE_ACTION, user=LEAD2, message_ts=message["ts"]),
    )
    await chat.wait(lambda: chat.final() is not None)
    history = await chat.scenario.json("ops", "history")
    assert [h["kind"] for h in history] == ["resume"]
    votes = [(actor, outcome) for actor, kind, outcome in chat.audit() if kind == "approve"]
    assert sorted(actor for actor, _ in votes) == [LEAD, LEAD2]
    assert sum(outcome == "counted" for _, outcome in votes) == 1, votes
    late = next(actor for actor, outcome in votes if outcome != "counted")
    # The later click is told the request is already answered (approved, or done by now).
    await chat.wait(
        lambda: any("this request is" in e["text"] for e in chat.slack.ephemerals(user=late))
    )


async def test_reject_cancels_the_request(chat: Chat):
    await chat.bot.door.refresh_groups()
    await chat.scenario.redis.hset(f"{chat.scenario.prefix}:sla:meta", "paused", "1")
    await chat.driver.command("/queue", "resume sla", user=LEAD)
    view = await _plan_view(chat, LEAD)
    await chat.driver.view_submission(view)
    await chat.wait(
        lambda: any("Approval" in m.get("text", "") for m in chat.slack.messages(CHANNEL))
    )
    message = [m for m in chat.slack.messages(CHANNEL) if "Approval" in m.get("text", "")][-1]
    await chat.driver.block_action(blocks.REJECT_ACTION, user=LEAD2, message_ts=message["ts"])
    await chat.wait(lambda: "rejected" in json.dumps(chat.slack.message(CHANNEL, message["ts"])))
    assert (await chat.scenario.json("ops", "history")) == []


async def test_a_replayed_confirmation_runs_once(chat: Chat):
    await chat.bot.door.refresh_groups()
    await chat.driver.command("/queue", "pause sla")
    view = await _plan_view(chat, OPS)
    first = await chat.driver.view_submission(view)
    await chat.driver.replay(first.request)
    await chat.wait(lambda: chat.final() is not None)
    await asyncio.sleep(1.0)
    history = await chat.scenario.json("ops", "history")
    assert [h["kind"] for h in history] == ["pause"]


async def test_redis_check_answers_in_slack_and_needs_its_permission(chat: Chat):
    await chat.bot.door.refresh_groups()
    check = await chat.driver.command("/queue", "redis-check --env test", user=LEAD)
    await chat.wait(lambda: bool(chat.slack.responses(check.response_url)))
    answer = chat.slack.responses(check.response_url)[0]["text"]
    assert "Redis of test: fit for BullMQ" in answer
    assert "maxmemory-policy: noeviction" in answer
    refused = await chat.driver.command("/queue", "redis-check --env test", user=OPS)
    assert "it needs the permission `redis-check in test`" in refused.json["text"]


async def test_a_replayed_slash_command_is_refused_and_audited(chat: Chat):
    await chat.bot.door.refresh_groups()
    status = await chat.driver.command("/queue", "status sla")
    await chat.wait(lambda: bool(chat.slack.responses(status.response_url)))
    replayed = await chat.driver.replay(status.request)
    assert replayed.status == 200
    pause = await chat.driver.command("/queue", "pause sla")
    await _plan_view(chat, OPS)
    again = await chat.driver.replay(pause.request)
    assert again.status == 200
    await chat.wait(lambda: len([a for a in chat.audit() if a[2] == "replayed request"]) == 2)
    await chat.bot.door.finish_follow_ups(timeout_s=10)
    assert len(chat.slack.responses(status.response_url)) == 1  # answered once
    assert len(chat.slack.calls_to("views.open")) == 1  # one modal, no "could not open" answer
    assert chat.slack.responses(pause.response_url) == []


@pytest.mark.protected
async def test_protected_environment_needs_the_target_typed(chat: Chat):
    await chat.bot.door.refresh_groups()
    await chat.scenario.produce("sla", 4)
    await chat.driver.command("/queue", "pause sla")
    view = await _plan_view(chat, OPS)
    assert any(b.get("block_id") == blocks.CONFIRM_BLOCK for b in view["blocks"])
    # The plan shows what the queue holds before anything is touched.
    assert "now sla: 4 waiting, 0 active, 0 delayed" in json.dumps(view["blocks"])
    typed = {
        blocks.CONFIRM_BLOCK: {
            blocks.CONFIRM_ACTION: {"type": "plain_text_input", "value": "other"}
        }
    }
    wrong = await chat.driver.view_submission(view, values=typed)
    assert wrong.json["response_action"] == "errors"
    assert "type sla exactly" in wrong.json["errors"][blocks.CONFIRM_BLOCK]
    typed[blocks.CONFIRM_BLOCK][blocks.CONFIRM_ACTION]["value"] = "sla"
    right = await chat.driver.view_submission(view, values=typed)
    assert right.status == 200
    await chat.wait(lambda: chat.final() is not None)
    status = await chat.scenario.json("queue", "status", "sla", "--env", "test")
    assert status["queues"][0]["paused"] is True


async def test_no_secret_reaches_slack(chat: Chat):
    await chat.bot.door.refresh_groups()
    await chat.driver.command("/queue", "pause sla")
    view = await _plan_view(chat, OPS)
    await chat.driver.view_submission(view)
    await chat.wait(lambda: chat.final() is not None)
    everything = json.dumps([c.args for c in chat.slack.calls])
    assert SECRET not in everything
    assert chat.slack.bot_token not in everything


async def _progress_messages(chat: Chat) -> list[dict[str, Any]]:
    return [m for m in chat.slack.messages(CHANNEL) if "Approval" not in m.get("text", "")]


async def test_cancel_button_stops_a_drain_and_restores_the_flag(
    scenario: Scenario, fake_slack: FakeSlack
):
    scenario.configure(drain=HELD_DRAIN)  # no worker: the drain waits until cancelled
    environ = configure(scenario, fake_slack)
    async with running_bot(scenario, fake_slack, environ) as chat:
        await chat.bot.door.refresh_groups()
        await scenario.produce("sla", 5)
        await chat.driver.command("/queue", "drain sla")
        await chat.driver.view_submission(await _plan_view(chat, OPS))

        def running_with_cancel() -> bool:
            return any(
                blocks.CANCEL_ACTION in json.dumps(m["blocks"])
                for m in chat.slack.messages(CHANNEL)
            )

        await chat.wait(running_with_cancel)
        await chat.wait(lambda: chat.slack.messages(CHANNEL)[0]["text"].endswith("running"))
        message = chat.slack.messages(CHANNEL)[0]
        async with asyncio.timeout(30):
            while await scenario.flag() != "false":
                await asyncio.sleep(0.1)
        await chat.driver.block_action(blocks.CANCEL_ACTION, user=OPS, message_ts=message["ts"])
        await chat.wait(lambda: chat.final("cancelled") is not None)
        assert await scenario.flag() == "true"
        assert (await scenario.counts())["waiting"] == 5


async def test_redis_unreachable_is_answered_not_hung(scenario: Scenario, fake_slack: FakeSlack):
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    environ = configure(scenario, fake_slack)
    scenario.configure(redis_url=f"redis://127.0.0.1:{port}/0")
    environ = {**scenario.environ(), **{k: environ[k] for k in environ if k.startswith("SLACK")}}
    environ["CHATOPS_REDIS_TIMEOUT_S"] = "1"
    try:
        async with running_bot(scenario, fake_slack, environ) as chat:
            await chat.bot.door.refresh_groups()
            status = await chat.driver.command("/queue", "status sla")
            assert status.status == 200 and status.elapsed_s < 3
            await chat.wait(lambda: bool(chat.slack.responses(status.response_url)), timeout_s=15)
            assert (
                "Redis unreachable for test" in chat.slack.responses(status.response_url)[0]["text"]
            )
            drain = await chat.driver.command("/queue", "drain sla")
            assert drain.status == 200 and drain.elapsed_s < 3
            await chat.wait(
                lambda: "Redis unreachable" in json.dumps(chat.slack.open_views(OPS)), timeout_s=15
            )
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_database_that_stops_answering_is_answered_not_hung(
    scenario: Scenario, fake_slack: FakeSlack, fresh_pg_database: str
):
    """The bot's PostgreSQL behind a proxy that turns into a black hole mid-run: commands are
    still acked, a read-only answer still comes (it needs Redis only), a confirmed operation is
    refused with the database named and nothing changes; once it answers again, it runs."""
    database = make_url(fresh_pg_database)
    async with fault_proxy(database.host or "127.0.0.1", database.port or 5432) as proxy:
        environ = configure(scenario, fake_slack)
        password = "canary-pw-4f1d"  # trust auth ignores it; it must never be shown
        environ["CHATOPS_DATABASE_URL"] = database.set(
            host="127.0.0.1", port=proxy.port, password=password
        ).render_as_string(hide_password=False)
        environ["CHATOPS_DATABASE_TIMEOUT_S"] = "1"
        async with running_bot(scenario, fake_slack, environ) as chat:
            await chat.bot.door.refresh_groups()
            await chat.driver.command("/queue", "pause sla")
            view = await _plan_view(chat, OPS)

            proxy.set_mode("blackhole")
            status = await chat.driver.command("/queue", "status sla")
            assert status.status == 200 and status.elapsed_s < 3
            await chat.wait(lambda: bool(chat.slack.responses(status.response_url)), timeout_s=15)
            assert "sla" in json.dumps(chat.slack.responses(status.response_url)[0])

            submitted = await chat.driver.view_submission(view)
            assert submitted.status == 200 and submitted.elapsed_s < 3

            def told() -> list[str]:
                texts = [m["text"] for m in chat.slack.ephemerals(CHANNEL, OPS)]
                return [text for text in texts if "database" in text]

            await chat.wait(lambda: bool(told()), timeout_s=30)
            assert "is unavailable" in told()[0] and "did not run" in told()[0]

            # In a DM the bot is not in, the same note comes through the command's response_url.
            dm = "D_OPS"
            chat.slack.add_channel(dm, name="directmessage", is_member=False, is_im=True)
            proxy.set_mode("pass")
            in_dm = await chat.driver.command("/queue", "pause sla --env test", channel=dm)
            dm_view = await _plan_view(chat, OPS)
            proxy.set_mode("blackhole")
            await chat.driver.view_submission(dm_view)

            def told_in_dm() -> list[str]:
                return [p["text"] for p in chat.slack.responses(str(in_dm.response_url))]

            await chat.wait(lambda: bool(told_in_dm()), timeout_s=30)
            assert "is unavailable" in told_in_dm()[0] and "did not run" in told_in_dm()[0]
            refused = chat.slack.calls_to("chat.postEphemeral")[-1]
            assert refused.args["channel"] == dm and refused.error == "channel_not_found"
            assert password not in json.dumps([c.args for c in chat.slack.calls])
            paused = await chat.scenario.redis.hget(f"{chat.scenario.prefix}:sla:meta", "paused")
            assert paused is None

            proxy.set_mode("pass")
            await chat.driver.command("/queue", "pause sla")
            again = await _plan_view(chat, OPS)
            await chat.driver.view_submission(again)
            await chat.wait(lambda: chat.final() is not None, timeout_s=60)
            status_after = await chat.scenario.json("queue", "status", "sla", "--env", "test")
            assert status_after["queues"][0]["paused"] is True


async def test_the_final_message_survives_a_slack_outage_and_a_restart(
    scenario: Scenario, fake_slack: FakeSlack
):
    environ = configure(scenario, fake_slack)
    async with running_bot(scenario, fake_slack, environ) as chat:
        await chat.bot.door.refresh_groups()
        await chat.driver.command("/queue", "pause sla")
        view = await _plan_view(chat, OPS)
        fake_slack.fail_all(status=500, for_s=3600)
        await chat.driver.view_submission(view)
        history: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            while not history or history[0]["outcome"] == "running":
                history = await scenario.json("ops", "history")
                await asyncio.sleep(0.2)
        assert history[0]["outcome"] == "succeeded"
    # The bot is gone; its messages wait in the outbox. Slack comes back; a new bot starts.
    assert chat.final() is None
    fake_slack.recover()
    async with running_bot(scenario, fake_slack, environ) as chat:
        await chat.wait(lambda: chat.final() is not None, timeout_s=30)
        await asyncio.sleep(1.0)
    progress = [m for m in fake_slack.messages(CHANNEL) if "pause sla" in m.get("text", "")]
    assert len(progress) == 1  # posted once, then updated in place
    assert fake_slack.rate_limited == 0


class OffsetClock(SystemClock):
    """Real time, moved forward on demand: approvals expire without waiting 30 minutes."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return super().now() + self.offset


async def test_an_unanswered_approval_expires(scenario: Scenario, fake_slack: FakeSlack):
    environ = configure(scenario, fake_slack)
    scenario.extra_config["approval_expiry_min"] = 10
    assert scenario.config_path.exists()  # written again, with the expiry
    clock = OffsetClock()
    async with running_bot(scenario, fake_slack, environ, clock=clock) as chat:
        await chat.bot.door.refresh_groups()
        await chat.driver.command("/queue", "resume sla", user=LEAD)
        await chat.driver.view_submission(await _plan_view(chat, LEAD))
        await chat.wait(
            lambda: any("Approval" in m.get("text", "") for m in fake_slack.messages(CHANNEL))
        )
        message = [m for m in fake_slack.messages(CHANNEL) if "Approval" in m.get("text", "")][-1]
        clock.offset = timedelta(minutes=9)
        await chat.bot.door.expire_approvals()
        assert "expired" not in json.dumps(fake_slack.message(CHANNEL, message["ts"]))
        clock.offset = timedelta(minutes=11)
        await chat.bot.door.expire_approvals()
        await chat.wait(lambda: "expired" in json.dumps(fake_slack.message(CHANNEL, message["ts"])))
        assert any(kind == "expired" for _, kind, _ in chat.audit())
    assert await scenario.json("ops", "history") == []


@contextlib.asynccontextmanager
async def _bot_over_two_releases(
    scenario: Scenario, fake_slack: FakeSlack
) -> AsyncIterator[tuple[Any, Chat]]:
    """v1 then v2 deployed from the CLI (both known-good), then the bot in a protected
    environment with no maintenance window open."""
    from tests.scenarios.test_worker_cli import _fleet

    async for fleet in _fleet(scenario, "releases"):
        for ref in ("v1", "v2"):
            done = await fleet.chatops(
                "worker", "deploy", "notification", "--env", "test", "--ref", ref, "--yes"
            )
            assert done.code == 0, done.output
        scenario.configure(protected=True)
        environ = configure(scenario, fake_slack)  # writes the configuration file
        async with running_bot(scenario, fake_slack, environ) as chat:
            await chat.bot.door.refresh_groups()
            yield fleet, chat


async def _confirm(chat: Chat, requester: str, target: str) -> dict[str, Any]:
    """Type the target in the requester's open modal and submit; the approval request."""
    view = await _plan_view(chat, requester)
    before = len(_approval_requests(chat))
    typed = {
        blocks.CONFIRM_BLOCK: {blocks.CONFIRM_ACTION: {"type": "plain_text_input", "value": target}}
    }
    await chat.driver.view_submission(view, values=typed)
    await chat.wait(lambda: len(_approval_requests(chat)) > before)
    return _approval_requests(chat)[-1]


def _approval_requests(chat: Chat) -> list[dict[str, Any]]:
    return [m for m in chat.slack.messages(CHANNEL) if "Approval" in m.get("text", "")]


async def test_rollback_in_a_protected_environment_needs_another_approver(
    scenario: Scenario, fake_slack: FakeSlack
):
    async with _bot_over_two_releases(scenario, fake_slack) as (fleet, chat):
        await chat.driver.command("/worker", "rollback notification --outside-window", user=LEAD)
        view = await _plan_view(chat, LEAD)
        v1, v2 = fleet.commits["v1"][:12], fleet.commits["v2"][:12]
        assert f"release {v2} → {v1}" in json.dumps(view["blocks"], ensure_ascii=False)
        request = await _confirm(chat, LEAD, "notification")
        await chat.driver.block_action(blocks.APPROVE_ACTION, user=LEAD, message_ts=request["ts"])
        await chat.wait(
            lambda: any("own request" in e["text"] for e in fake_slack.ephemerals(user=LEAD))
        )
        assert await fleet.running_release() == "v2"
        await chat.driver.block_action(blocks.APPROVE_ACTION, user=LEAD2, message_ts=request["ts"])
        await chat.wait(lambda: chat.final() is not None, timeout_s=90)
        assert await fleet.running_release() == "v1"
        history = await scenario.json("ops", "history")
        assert history[0]["kind"] == "rollback" and history[0]["outcome"] == "succeeded"
        assert history[0]["actor"] == LEAD


async def test_after_a_failed_deploy_the_rollback_button_enters_the_approval_flow(
    scenario: Scenario, fake_slack: FakeSlack
):
    async with _bot_over_two_releases(scenario, fake_slack) as (fleet, chat):
        await chat.driver.command(
            "/worker", "deploy notification --ref bad --outside-window", user=LEAD
        )
        request = await _confirm(chat, LEAD, "notification")
        await chat.driver.block_action(blocks.APPROVE_ACTION, user=LEAD2, message_ts=request["ts"])
        await chat.wait(lambda: chat.final("failed") is not None, timeout_s=90)
        failed = chat.final("failed")
        assert failed is not None and blocks.ROLLBACK_ACTION in json.dumps(failed["blocks"])
        assert await fleet.running_release() == "v2"  # the failed deploy put it back

        await chat.driver.block_action(blocks.ROLLBACK_ACTION, user=LEAD, message_ts=failed["ts"])
        view = await _plan_view(chat, LEAD)
        plan = json.dumps(view["blocks"], ensure_ascii=False)
        v1, v2 = fleet.commits["v1"][:12], fleet.commits["v2"][:12]
        assert f"release {v2} → {v1}" in plan and "OUTSIDE any maintenance window" in plan
        request = await _confirm(chat, LEAD, "notification")
        await chat.driver.block_action(blocks.APPROVE_ACTION, user=LEAD2, message_ts=request["ts"])
        await chat.wait(lambda: chat.final() is not None, timeout_s=90)
        assert await fleet.running_release() == "v1"
        history = await scenario.json("ops", "history")
        assert [(h["kind"], h["outcome"]) for h in history[:2]] == [
            ("rollback", "succeeded"),
            ("deploy", "failed"),
        ]
        shown = await scenario.json("ops", "show", history[0]["id"])
        assert shown["command"].endswith("--outside-window"), shown["command"]


async def test_where_the_bot_is_no_member_progress_comes_through_the_response_url(chat: Chat):
    await chat.bot.door.refresh_groups()
    response = await chat.driver.command("/queue", "pause sla")
    view = await _plan_view(chat, OPS)
    chat.slack.fail("chat.postMessage", error="not_in_channel", times=1)
    await chat.driver.view_submission(view)

    def answered() -> bool:
        return any(
            "succeeded" in json.dumps(p) for p in chat.slack.responses(response.response_url)
        )

    await chat.wait(answered)
    posts = chat.slack.responses(response.response_url)
    assert len(posts) <= 2  # the first state and the final one: within the URL's 5 uses
    assert not [c for c in chat.slack.calls_to("chat.postMessage") if c.ok]


async def test_in_a_dm_without_the_bot_approvals_refusals_and_progress_use_response_urls(
    chat: Chat,
):
    """A DM the bot is not in: Slack refuses its posts there (channel_not_found), so the
    approval request, a refusal of a click and the operation's progress come through the
    response_urls of the command and of the clicks."""
    dm = "D_LEAD"
    chat.slack.add_channel(dm, name="directmessage", is_member=False, is_im=True, is_private=True)
    await chat.bot.door.refresh_groups()
    await chat.scenario.produce("sla", 2)
    await chat.scenario.chatops("queue", "pause", "sla", "--env", "test", "--yes")
    command = await chat.driver.command("/queue", "resume sla --env test", user=LEAD, channel=dm)
    assert command.response_url is not None
    await chat.driver.view_submission(await _plan_view(chat, LEAD))

    def requests() -> list[dict[str, Any]]:
        return [m for m in chat.slack.messages(dm) if "Approval" in m.get("text", "")]

    await chat.wait(lambda: bool(requests()))
    request = requests()[-1]
    own = await chat.driver.block_action(
        blocks.APPROVE_ACTION, user=LEAD, channel=dm, message_ts=request["ts"]
    )
    assert own.response_url is not None
    await chat.wait(lambda: bool(chat.slack.responses(own.response_url)))
    assert "own request" in chat.slack.responses(own.response_url)[0]["text"]

    await chat.driver.block_action(
        blocks.APPROVE_ACTION, user=LEAD2, channel=dm, message_ts=request["ts"]
    )

    def resumed() -> bool:
        posts = chat.slack.responses(command.response_url)
        return any("succeeded" in json.dumps(p) for p in posts)

    await chat.wait(resumed)
    status = await chat.scenario.json("queue", "status", "sla", "--env", "test")
    assert status["queues"][0]["paused"] is False
    assert len(chat.slack.responses(command.response_url)) <= 5  # the URL's uses
    refused = [c for c in chat.slack.calls if c.args.get("channel") == dm and not c.ok]
    assert {c.error for c in refused} == {"channel_not_found"}
    assert not [c for c in chat.slack.calls if c.args.get("channel") == dm and c.ok]


async def test_progress_gets_through_a_run_of_429s_once_and_in_order(chat: Chat):
    await chat.bot.door.refresh_groups()
    await chat.scenario.produce("sla", 60, "--data", json.dumps({"ms": 20}))
    chat.slack.fail("chat.postMessage", status=429, retry_after_s=1, times=4)
    chat.slack.fail("chat.update", status=429, retry_after_s=1, times=8)
    async with chat.scenario.node_worker(CONCURRENCY="2"):
        await chat.driver.command("/queue", "drain sla")
        await chat.driver.view_submission(await _plan_view(chat, OPS))
        await chat.wait(lambda: chat.final() is not None, timeout_s=60)
    progress = [m for m in chat.slack.messages(CHANNEL) if "drain sla" in m.get("text", "")]
    assert len(progress) == 1  # one message, whatever was retried
    assert any(c.status == 429 for c in chat.slack.calls_to("chat.update"))
    assert chat.slack.rate_limited == 0  # the injected 429s aside, no limit was hit


async def test_metrics_count_operations_steps_queues_and_slack_errors(chat: Chat):
    await chat.bot.door.refresh_groups()
    chat.slack.fail("chat.postMessage", status=500)  # the progress message's first try
    await chat.driver.command("/queue", "pause sla")
    view = await _plan_view(chat, OPS)
    await chat.driver.view_submission(view)
    await chat.wait(lambda: chat.final() is not None)
    base = chat.driver.url.removesuffix("/slack/events")
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    prefix = chat.scenario.prefix
    assert re.search(
        r'^chatops_operations_total\{env="test",kind="pause",outcome="succeeded"\} [1-9]',
        text,
        re.M,
    ), text
    assert re.search(
        r'^chatops_step_duration_seconds_count\{kind="pause",outcome="succeeded",step="1"\} [1-9]',
        text,
        re.M,
    )
    assert f'chatops_queue_jobs{{prefix="{prefix}",queue="sla",state="waiting"}} 0.0' in text
    errors = r'^chatops_slack_api_errors_total\{error="http_500",method="chat.postMessage"\} [1-9]'
    assert re.search(errors, text, re.M), text
