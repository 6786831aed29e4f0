"""Hostile input to the running bot, end to end: signed requests over HTTP to `/slack/events`
(the `chat` fixture of tests/scenarios/test_slack.py), the bot calling the fake Slack.

Whatever the slash-command text, modal metadata or button value, every request is acked with
200 in time, nothing is logged at ERROR, no program is started, no operation runs, a modal is
opened only for a command that parses as mutating, and refusals are audited."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.errors import BadInput
from bot.slack import blocks
from commands.grammar import Parsed, parse
from tests.fuzz.processes import Spawns
from tests.fuzz.strategies import (
    any_char,
    command_texts,
    huge_text,
    op_ids,
    safe_names,
    valid_command_texts,
)
from tests.scenarios.test_slack import CHANNEL, GUEST, LEAD, LEAD2, OPS, Chat
from tests.slack import blockkit
from tests.slack.driver import ACK_DEADLINE_S, DriverResponse

slack_fuzz = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
FORGED = "forged modal submission"
BUTTONS = [
    blocks.APPROVE_ACTION,
    blocks.REJECT_ACTION,
    blocks.CANCEL_ACTION,
    blocks.ROLLBACK_ACTION,
]

# ---- watching the bot ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    records: int
    violations: int
    views_opened: int
    spawned: int
    children: frozenset[int]
    audit: int


@dataclass
class Watch:
    """What the bot did since `mark()`: errors logged, Slack misuse, programs, operations."""

    chat: Chat
    caplog: pytest.LogCaptureFixture
    spawns: Spawns

    def mark(self) -> Mark:
        return Mark(
            records=len(self.caplog.records),
            violations=len(self.chat.slack.violations),
            views_opened=len(self.chat.slack.calls_to("views.open")),
            spawned=len(self.spawns.started),
            children=frozenset(Spawns.children()),
            audit=len(self.chat.audit()),
        )

    async def settle(self) -> None:
        """Until the bot's background work for the requests so far has finished."""
        door = self.chat.bot.door
        quiet = 0
        for _ in range(1000):
            await asyncio.sleep(0.01)
            if door.followups.pending():
                quiet = 0
                await door.finish_follow_ups(timeout_s=10)
            else:
                quiet += 1
                if quiet >= 5:
                    return
        raise AssertionError(f"the bot is still busy: {door.followups.pending()} follow-ups")

    async def quiet_since(self, mark: Mark, what: str) -> None:
        await self.settle()
        errors = [
            f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else r.getMessage()
            for r in self.caplog.records[mark.records :]
            if r.levelno >= logging.ERROR
        ]
        assert errors == [], f"{what}: the bot logged errors"
        assert self.chat.slack.violations[mark.violations :] == [], f"{what}: Slack misuse"
        assert self.spawns.started[mark.spawned :] == [], f"{what}: started a program"
        assert Spawns.children() - mark.children == set(), f"{what}: a child process"
        assert await self.chat.bot.rt.store.list_operations(limit=5) == [], f"{what}: ran"

    def views_opened(self, mark: Mark) -> int:
        return len(self.chat.slack.calls_to("views.open")) - mark.views_opened

    def audit_since(self, mark: Mark) -> list[tuple[str, str, str]]:
        return self.chat.audit()[mark.audit :]


@pytest.fixture
async def watch(chat: Chat, caplog: pytest.LogCaptureFixture, spawns: Spawns) -> Watch:
    await chat.bot.door.refresh_groups()  # once: decisions are then never "pending"
    return Watch(chat, caplog, spawns)


def acked(response: DriverResponse, what: str) -> None:
    assert response.status == 200, f"{what}: HTTP {response.status} {response.body!r}"
    assert response.elapsed_s < ACK_DEADLINE_S, f"{what}: acked after {response.elapsed_s:.2f} s"


def parsed_or_none(command: str, text: str) -> Parsed | None:
    try:
        return parse(command, text)
    except BadInput:
        return None


# ---- (a) slash-command text ---------------------------------------------------------------

# (command, text) as a Slack client sends them: valid commands weigh double, in the channel's
# environment `test` and on its queues more often than not; anything else for any of the three
# commands. Texts are short enough that a modal's private_metadata (the text JSON-escaped, up to
# 12 characters a code point) fits Slack's 3000 characters, or over the grammar's 2000 and
# refused: the others are the subject of test_a_long_mutating_command_opens_a_modal_or_answers.
valid_here = valid_command_texts(
    envs=st.just("test") | safe_names, names=st.sampled_from(["sla", "other"]) | safe_names
).map(lambda pair: (f"/{pair[0].command}", pair[1]))
slack_commands = st.one_of(
    valid_here,
    valid_here,
    st.tuples(
        st.sampled_from(["/queue", "/worker", "/ops"]),
        command_texts(max_garbage=200) | huge_text(2001, 4000),
    ),
)


@slack_fuzz
@given(command_text=slack_commands, user=st.sampled_from([OPS, LEAD, GUEST]))
async def test_any_slash_command_text_is_acked_and_starts_nothing(
    watch: Watch, command_text: tuple[str, str], user: str
) -> None:
    command, text = command_text
    mark = watch.mark()
    response = await watch.chat.driver.command(command, text, user=user)
    what = f"{command} {text!r} by {user}"
    acked(response, what)
    await watch.quiet_since(mark, what)
    opened = watch.views_opened(mark)
    parsed = parsed_or_none(command, text)
    if parsed is None:
        event("bad input")
        assert opened == 0, f"{what}: a modal for text that does not parse"
        assert watch.audit_since(mark) == [], what
        return
    in_test = parsed.action != "help" and parsed.env in (None, "test")  # the channel's env
    allowed = watch.chat.bot.door.rbac.decide(user, "test", parsed.permission).allowed
    event(f"parses; {'modal' if opened else 'no modal'}; {'allowed' if allowed else 'refused'}")
    if opened:
        assert opened == 1 and parsed.mutating, what
        assert (parsed.command, parsed.action) != ("ops", "cancel"), what
        assert in_test and allowed, f"{what}: a modal for a command the user may not run"
    if in_test and not allowed:
        refusal = (user, "refused", f"missing {parsed.permission} in test")
        assert watch.audit_since(mark) == [refusal], f"{what}: the refusal is not audited"
    else:
        assert watch.audit_since(mark) == [], what


# ---- (b) forged interactivity -------------------------------------------------------------


def confirm_view(metadata: str, *, with_input: bool) -> dict[str, Any]:
    """A confirmation modal as the bot builds them, carrying `metadata`."""
    view_blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Environment:* `test`"}}
    ]
    if with_input:  # a protected environment's "type the target" input
        view_blocks.append(
            {
                "type": "input",
                "block_id": blocks.CONFIRM_BLOCK,
                "label": {"type": "plain_text", "text": "Type sla to confirm"},
                "element": {"type": "plain_text_input", "action_id": blocks.CONFIRM_ACTION},
            }
        )
    return {
        "type": "modal",
        "callback_id": blocks.CONFIRM_CALLBACK,
        "title": {"type": "plain_text", "text": "queue pause"},
        "submit": {"type": "plain_text", "text": "Run"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": metadata,
        "blocks": view_blocks,
    }


async def submit_forged(chat: Chat, metadata: str, *, user: str = OPS) -> DriverResponse:
    """Submit a modal carrying `metadata`, as a client would that changed it. The modal has the
    protected environments' input block, which the door's `errors` answer names (without it,
    see test_unreadable_metadata_in_an_unprotected_modal_is_answered)."""
    view = chat.slack.push_view(user, confirm_view(metadata, with_input=True))
    try:
        return await chat.driver.view_submission(view, user=user)
    finally:
        chat.slack.close_views(view["id"], all_views=True)


def readable(metadata: str) -> bool:
    """Whether the door can read `metadata` as a request in the configured environment."""
    try:
        data = json.loads(metadata or "{}")
        parse(str(data["command"]), str(data["text"]))
        return str(data["env"]) == "test" and "channel" in data
    except (BadInput, KeyError, ValueError, TypeError):
        return False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
valid_texts = valid_command_texts().map(lambda pair: (pair[0].command, pair[1]))
metadata_fields = {
    "command": st.sampled_from(["queue", "worker", "ops", "/queue", "deploy", ""]) | json_values,
    "text": valid_texts.map(lambda pair: pair[1]) | command_texts(max_garbage=40) | json_values,
    "env": st.sampled_from(["prod", "Test", "test\n", "", "*"]) | safe_names | json_values,
    "user": st.sampled_from([OPS, LEAD, ""]) | json_values,
    "channel": st.just(CHANNEL) | json_values,
    "channel_name": st.just("ops-test") | json_values,
}
unreadable_metadata = st.one_of(
    st.text(any_char, max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries({}, optional=metadata_fields).map(json.dumps),
).filter(lambda m: not readable(m))


@slack_fuzz
@given(metadata=unreadable_metadata)
async def test_unreadable_modal_metadata_is_refused_and_runs_nothing(
    watch: Watch, metadata: str
) -> None:
    mark = watch.mark()
    response = await submit_forged(watch.chat, metadata)
    acked(response, f"metadata {metadata!r}")
    # The modal is replaced by one that says the request cannot be read.
    assert response.json.get("response_action") == "update", metadata
    assert "cannot be read" in json.dumps(response.json["view"]), metadata
    await watch.quiet_since(mark, f"metadata {metadata!r}")
    assert watch.views_opened(mark) == 0


@st.composite
def forged_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Readable metadata the submitter did not ask for: someone else's mutating command, or a
    command of their own that changes nothing."""
    command, text = draw(valid_texts)
    metadata: dict[str, Any] = {"command": command, "text": text, "env": "test"}
    metadata["channel"] = CHANNEL
    metadata["channel_name"] = draw(st.sampled_from(["ops-test", "", "general"]))
    if parse(command, text).mutating:
        other = draw(st.sampled_from([LEAD, GUEST, "U_OTHER", "", None, "u_ops", OPS + " "]))
        if other is not None:
            metadata["user"] = other
    else:
        metadata["user"] = OPS
    return metadata


@slack_fuzz
@given(metadata=forged_requests())
async def test_a_forged_modal_submission_is_refused_audited_and_runs_nothing(
    watch: Watch, metadata: dict[str, Any]
) -> None:
    mark = watch.mark()
    response = await submit_forged(watch.chat, json.dumps(metadata), user=OPS)
    acked(response, f"metadata {metadata!r}")
    assert response.body in ("", None), response.body
    await watch.quiet_since(mark, f"metadata {metadata!r}")
    assert watch.audit_since(mark) == [(OPS, "refused", FORGED)]


# Button values: anything, or what the bot puts there (approval ids, op ids, a rollback's
# {"env", "worker"} with names the grammar reads; other names: see
# test_a_rollback_click_naming_an_unreadable_worker_is_acked).
button_values = st.one_of(
    st.none(),
    st.text(any_char, max_size=100),
    st.from_regex(r"ap-[0-9a-f]{10}", fullmatch=True),
    op_ids,
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"env": st.sampled_from(["test", "prod"]) | safe_names, "worker": safe_names}
    ).map(json.dumps),
)


@slack_fuzz
@given(
    action_id=st.sampled_from(BUTTONS),
    value=button_values,
    user=st.sampled_from([OPS, LEAD, GUEST]),
)
async def test_a_forged_button_click_is_acked_and_runs_nothing(
    watch: Watch, action_id: str, value: str | None, user: str
) -> None:
    action: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "block_id": "forged",
        "text": {"type": "plain_text", "text": "Approve"},
        "action_ts": "1700000000.000001",
    }
    if value is not None:
        action["value"] = value
    what = f"{action_id} {value!r} by {user}"
    mark = watch.mark()
    response = await watch.chat.driver.block_action(action_id, user=user, action=action)
    acked(response, what)
    await watch.quiet_since(mark, what)
    if action_id != blocks.ROLLBACK_ACTION:
        assert watch.views_opened(mark) == 0, what
        assert watch.audit_since(mark) == [], what
    elif _rollback_target(value) is None:  # no such environment, or not a worker name
        assert watch.views_opened(mark) == 0, what
        assert watch.audit_since(mark) == [(user, "refused", "unreadable value")], what
    elif user in (OPS, GUEST):  # neither may roll back: refused in the modal, and audited
        assert watch.views_opened(mark) == 1, what
        assert watch.audit_since(mark) == [(user, "refused", "missing rollback in test")]
    else:  # an approver: the modal says what is wrong (no such worker)
        view = watch.chat.slack.open_views(user)[-1]
        assert "❌" in json.dumps(view["blocks"], ensure_ascii=False), what


def _rollback_target(value: str | None) -> str | None:
    """The environment a rollback button names, if the bot can read the button at all."""
    try:
        data = json.loads(value or "{}")
        env, worker = data["env"], data["worker"]
    except (ValueError, KeyError, TypeError):
        return None
    if env != "test" or not isinstance(worker, str):
        return None
    return env if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", worker) else None


async def test_votes_from_people_who_may_not_vote_are_refused_audited_and_run_nothing(
    watch: Watch,
) -> None:
    chat = watch.chat
    await chat.scenario.redis.hset(f"{chat.scenario.prefix}:sla:meta", "paused", "1")
    await chat.driver.command("/queue", "resume sla", user=LEAD)
    await chat.driver.view_submission(await _plan_view(chat, LEAD))

    def request() -> dict[str, Any] | None:
        found = [m for m in chat.slack.messages(CHANNEL) if "Approval" in m.get("text", "")]
        return found[-1] if found else None

    await chat.wait(lambda: request() is not None)
    message = request()
    assert message is not None
    mark = watch.mark()
    for user, action_id in (
        (GUEST, blocks.APPROVE_ACTION),
        (OPS, blocks.APPROVE_ACTION),
        (OPS, blocks.REJECT_ACTION),
        (LEAD, blocks.APPROVE_ACTION),  # the requester
    ):
        response = await chat.driver.block_action(action_id, user=user, message_ts=message["ts"])
        acked(response, f"{action_id} by {user}")
        await watch.quiet_since(mark, f"{action_id} by {user}")
    assert watch.audit_since(mark) == [
        (GUEST, "refused", "approve without approver role"),
        (OPS, "refused", "approve without approver role"),
        (OPS, "refused", "reject without approver role"),
        (LEAD, "approve", "refused: own_request"),
    ]
    approval_id = next(
        element["value"]
        for _, element in blockkit.iter_elements(message["blocks"])
        if element.get("action_id") == blocks.APPROVE_ACTION
    )
    approval = await chat.bot.rt.store.get_approval(approval_id)
    assert approval is not None and approval.state == "pending"
    assert await chat.scenario.json("ops", "history") == []


# ---- (c) replays --------------------------------------------------------------------------


async def _plan_view(chat: Chat, user: str) -> dict[str, Any]:
    def filled() -> bool:
        views = chat.slack.open_views(user)
        return bool(views) and "preparing" not in json.dumps(views[-1]["blocks"])

    await chat.wait(filled, timeout_s=15)
    return chat.slack.open_views(user)[-1]


async def _history(chat: Chat) -> list[str]:
    return [h["kind"] for h in await chat.scenario.json("ops", "history")]


async def test_replayed_commands_and_confirmations_run_once(watch: Watch) -> None:
    chat = watch.chat
    command = await chat.driver.command("/queue", "pause sla")
    first = await chat.driver.view_submission(await _plan_view(chat, OPS))
    await chat.wait(lambda: chat.final() is not None)
    for request in (first.request, first.request, command.request):
        acked(await chat.driver.replay(request), request.what)
    await asyncio.gather(*(chat.driver.replay(first.request) for _ in range(3)))
    await watch.settle()
    await asyncio.sleep(0.5)
    # The replayed command is known by its trigger_id: refused before any Slack call, audited.
    assert chat.slack.unacknowledged_violations == []
    assert len(chat.slack.calls_to("views.open")) == 1
    assert [a for a in chat.audit() if a[2] == "replayed request"] == [
        (OPS, "refused", "replayed request")
    ]
    assert await _history(chat) == ["pause"]


async def test_a_replayed_approval_runs_once(watch: Watch) -> None:
    chat = watch.chat
    await chat.scenario.redis.hset(f"{chat.scenario.prefix}:sla:meta", "paused", "1")
    await chat.driver.command("/queue", "resume sla", user=LEAD)
    await chat.driver.view_submission(await _plan_view(chat, LEAD))
    await chat.wait(
        lambda: any("Approval" in m.get("text", "") for m in chat.slack.messages(CHANNEL))
    )
    message = [m for m in chat.slack.messages(CHANNEL) if "Approval" in m.get("text", "")][-1]
    approve = await chat.driver.block_action(
        blocks.APPROVE_ACTION, user=LEAD2, message_ts=message["ts"]
    )
    acked(approve, "approve")
    await asyncio.gather(*(chat.driver.replay(approve.request) for _ in range(3)))
    await chat.wait(lambda: chat.final() is not None)
    await watch.settle()
    await asyncio.sleep(0.5)
    assert await _history(chat) == ["resume"]
    assert chat.slack.unacknowledged_violations == []


# ---- bugs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [{"env": "test", "worker": ""}, {"env": "test", "worker": "w'"}, {"env": "", "worker": "w"}],
)
async def test_a_rollback_click_naming_an_unreadable_worker_is_acked(
    watch: Watch, value: dict[str, str]
) -> None:
    action = {
        "type": "button",
        "action_id": blocks.ROLLBACK_ACTION,
        "block_id": "forged",
        "text": {"type": "plain_text", "text": "Roll back"},
        "value": json.dumps(value),
        "action_ts": "1700000000.000001",
    }
    mark = watch.mark()
    try:
        response = await watch.chat.driver.block_action(blocks.ROLLBACK_ACTION, action=action)
        acked(response, f"rollback {value}")
        await watch.quiet_since(mark, f"rollback {value}")
    finally:
        watch.chat.slack.acknowledge_violations()


@pytest.mark.parametrize(
    "text", ["pause" + "\n" * 1440 + " sla", 'drain sla --timeout-s "300' + "\u00a0" * 500 + '"']
)
async def test_a_long_mutating_command_opens_a_modal_or_answers(watch: Watch, text: str) -> None:
    mark = watch.mark()
    response = await watch.chat.driver.command("/queue", text)
    acked(response, "long command")
    await watch.settle()
    answered = watch.chat.slack.responses(response.response_url or "")
    assert watch.views_opened(mark) == 1 or answered, "no modal and no answer"
    await watch.quiet_since(mark, "long command")


async def test_unreadable_metadata_in_an_unprotected_modal_is_answered(watch: Watch) -> None:
    chat = watch.chat
    await chat.driver.command("/queue", "pause sla")
    view = await _plan_view(chat, OPS)
    stale = chat.slack.replace_view(view["id"], {**view, "private_metadata": "{}"})
    mark = watch.mark()
    try:
        acked(await chat.driver.view_submission(stale), "unreadable metadata")
        await watch.quiet_since(mark, "unreadable metadata")
    finally:
        chat.slack.acknowledge_violations()


# ---- the harness ----------------------------------------------------------------------------


async def test_the_harness_sees_a_program_started_and_gone(spawns: Spawns) -> None:
    proc = await asyncio.create_subprocess_exec("sleep", "5")
    try:
        assert proc.pid in Spawns.children()
    finally:
        proc.kill()
        await proc.wait()
    assert proc.pid not in Spawns.children()
    assert len(spawns.started) == 1 and "sleep" in spawns.started[0]
