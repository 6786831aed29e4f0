"""The fake Slack against the real clients: slack_sdk's AsyncWebClient and a Bolt AsyncApp.

If these pass, the bot's tests exercise the same wire formats the bot will meet in production:
the requests slack_sdk sends are accepted, and the driver's signed requests pass Bolt's own
verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient

from tests.slack.clock import FakeClock
from tests.slack.driver import SlackDriver
from tests.slack.fake_slack import FakeSlack
from tests.slack.plugin import unacknowledged_report

TOKEN = "xoxb-test"
SECRET = "test-signing-secret"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(action_id: str, value: str, text: str = "Go") -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "value": value,
        "text": {"type": "plain_text", "text": text},
    }


def modal(**extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "drain",
        "title": {"type": "plain_text", "text": "Drain queue"},
        "submit": {"type": "plain_text", "text": "Drain"},
        "blocks": [
            {
                "type": "input",
                "block_id": "queue",
                "label": {"type": "plain_text", "text": "Queue"},
                "element": {"type": "plain_text_input", "action_id": "name"},
            }
        ],
        **extra,
    }


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def client(fake_slack: FakeSlack, session: aiohttp.ClientSession) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=fake_slack.api_url, session=session)


@pytest.fixture
async def frozen() -> AsyncIterator[FakeSlack]:
    """A FakeSlack whose clock moves only when the test advances it."""
    async with FakeSlack(clock=FakeClock(speed=0)) as slack:
        yield slack


# -- Web API: behaviour ----------------------------------------------------------------------------


async def test_post_update_and_thread_round_trip(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="C1", text="draining sla", blocks=[section("1")])
    ts = posted["ts"]
    assert posted["channel"] == "C1" and posted["message"]["bot_id"] == "BBOT"
    reply = await client.chat_postMessage(channel="C1", text="step 1 done", thread_ts=ts)
    await client.chat_update(channel="C1", ts=ts, text="drained sla", blocks=[section("done")])

    [message] = fake_slack.messages("C1")
    assert message["text"] == "drained sla"
    assert message["blocks"] == [section("done")]
    assert message["reply_count"] == 1 and "edited" in message
    assert [r["ts"] for r in fake_slack.thread("C1", ts)] == [reply["ts"]]
    assert float(reply["ts"]) > float(ts)
    assert [c.method for c in fake_slack.calls] == [
        "chat.postMessage",
        "chat.postMessage",
        "chat.update",
    ]
    assert fake_slack.calls_to("chat.update")[0].args["ts"] == ts
    permalink = await client.chat_getPermalink(channel="C1", message_ts=ts)
    assert permalink["permalink"].endswith(f"/archives/C1/p{ts.replace('.', '')}")
    assert fake_slack.violations == []


async def test_update_of_unknown_message_is_refused(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as e:
        await client.chat_update(channel="C1", ts="1.000001", text="x")
    assert e.value.response["error"] == "message_not_found"
    fake_slack.expect_violations("chat.update: no message 1.000001")


async def test_ephemeral_and_directory_methods(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    fake_slack.users["U1"] = {"name": "ana", "tz": "Europe/Lisbon"}
    fake_slack.usergroups["S1"] = ["U1", "U2"]
    fake_slack.add_channel("C1", name="ops", members=["U1", "U2", "U3"])

    await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert [e["text"] for e in fake_slack.ephemerals("C1", "U1")] == ["only you"]
    assert (await client.users_info(user="U1"))["user"]["tz"] == "Europe/Lisbon"
    assert (await client.usergroups_users_list(usergroup="S1"))["users"] == ["U1", "U2"]
    assert (await client.conversations_info(channel="C1"))["channel"]["name"] == "ops"
    page = await client.conversations_members(channel="C1", limit=2)
    assert page["members"] == ["U1", "U2"]
    rest = await client.conversations_members(
        channel="C1", cursor=page["response_metadata"]["next_cursor"]
    )
    assert rest["members"] == ["U3"]
    with pytest.raises(SlackApiError, match="user_not_found"):
        await client.users_info(user="U404")
    # A method without behaviour here still answers ok after validation.
    assert (await client.reactions_add(channel="C1", timestamp="1.2", name="eyes"))["ok"]
    assert fake_slack.violations == []  # GET methods sent as GET with query args are fine


async def test_where_the_bot_is_no_member_slack_refuses_its_posts(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    fake_slack.add_channel("C2", name="elsewhere", is_member=False)
    fake_slack.add_channel("D1", name="directmessage", is_member=False, is_im=True)
    for channel, error in (("C2", "not_in_channel"), ("D1", "channel_not_found")):
        with pytest.raises(SlackApiError) as post:
            await client.chat_postMessage(channel=channel, text="hello")
        assert post.value.response["error"] == error
        with pytest.raises(SlackApiError) as ephemeral:
            await client.chat_postEphemeral(channel=channel, user="U1", text="only you")
        assert ephemeral.value.response["error"] == error
    assert fake_slack.messages("C2") == [] and fake_slack.violations == []


# -- Web API: validation ---------------------------------------------------------------------------


async def test_missing_argument_bad_token_and_unknown_method(
    fake_slack: FakeSlack, client: AsyncWebClient, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(SlackApiError) as e:
        await client.api_call("chat.update", json={"channel": "C1", "text": "x"})
    assert e.value.response["error"] == "invalid_arguments"
    assert e.value.response["response_metadata"]["messages"] == [
        "[ERROR] missing required field: ts"
    ]
    intruder = AsyncWebClient(token="xoxb-wrong", base_url=fake_slack.api_url, session=session)
    with pytest.raises(SlackApiError, match="invalid_auth"):
        await intruder.auth_test()
    with pytest.raises(SlackApiError, match="unknown_method"):
        await client.api_call("chat.postMessages", json={"channel": "C1", "text": "x"})
    fake_slack.expect_violations(
        "chat.update: missing required ts", "auth.test: wrong token", "chat.postMessages"
    )
    assert fake_slack.unacknowledged_violations == []


async def test_json_body_only_where_supported(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    # users.info does not take JSON: Slack ignores the body, so `user` is missing.
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client.api_call("users.info", json={"user": "U1"})
    fake_slack.expect_violations("users.info: JSON body sent", "users.info: missing required user")


async def test_block_kit_limits(fake_slack: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as e:
        await client.chat_postMessage(channel="C1", text="t", blocks=[section("x")] * 51)
    assert e.value.response["error"] == "invalid_blocks"
    assert (
        "[ERROR] must be less than 51 items [json-pointer:/blocks]"
        in (e.value.response["response_metadata"]["messages"])
    )
    too_long = [
        section("x" * 3001),
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
        {"type": "actions", "elements": [button("a", "v", text="b" * 76)]},
        {"type": "actions", "elements": [button(f"a{i}", "v") for i in range(26)]},
    ]
    with pytest.raises(SlackApiError) as e:
        await client.chat_postMessage(channel="C1", text="t", blocks=too_long)
    messages = e.value.response["response_metadata"]["messages"]
    assert any("/blocks/0/text/text" in m for m in messages)
    assert any("/blocks/1/text/text" in m for m in messages)
    assert any("/blocks/2/elements/0/text/text" in m for m in messages)
    assert any("must be less than 26 items" in m for m in messages)
    assert fake_slack.messages("C1") == []
    fake_slack.expect_violations("must be less than 51 items", "must be at most 3000 characters")
    fake_slack.acknowledge_violations()


async def test_view_limits(fake_slack: FakeSlack, client: AsyncWebClient) -> None:
    view = modal(
        title={"type": "plain_text", "text": "t" * 25},
        private_metadata="m" * 3001,
    )
    with pytest.raises(SlackApiError) as e:
        await client.views_open(trigger_id=fake_slack.new_trigger_id(), view=view)
    assert e.value.response["error"] == "invalid_arguments"
    messages = e.value.response["response_metadata"]["messages"]
    assert any("/view/title/text" in m for m in messages)
    assert any("/view/private_metadata" in m for m in messages)
    fake_slack.expect_violations("views.open: invalid view")


# -- Web API: views and trigger_ids ----------------------------------------------------------------


async def test_trigger_id_single_use_and_expiry(frozen: FakeSlack) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=frozen.api_url)
    trigger = frozen.new_trigger_id(user="U1")
    opened = await client.views_open(trigger_id=trigger, view=modal())
    view = opened["view"]
    assert view["id"].startswith("V") and view["hash"] and view["callback_id"] == "drain"
    assert frozen.open_views("U1")[0]["id"] == view["id"]

    with pytest.raises(SlackApiError, match="exchanged_trigger_id"):
        await client.views_open(trigger_id=trigger, view=modal())
    late = frozen.new_trigger_id(user="U1")
    frozen.clock.advance(3.5)
    with pytest.raises(SlackApiError, match="expired_trigger_id"):
        await client.views_open(trigger_id=late, view=modal())
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        await client.views_open(trigger_id="123.456.abc", view=modal())
    frozen.expect_violations("reused", "3.5 s after issue", "unknown trigger_id")

    updated = await client.views_update(view_id=view["id"], hash=view["hash"], view=modal())
    assert updated["view"]["id"] == view["id"] and updated["view"]["hash"] != view["hash"]
    with pytest.raises(SlackApiError, match="hash_conflict"):
        await client.views_update(view_id=view["id"], hash=view["hash"], view=modal())
    pushed = await client.views_push(trigger_id=frozen.new_trigger_id(user="U1"), view=modal())
    assert [v["id"] for v in frozen.open_views("U1")] == [view["id"], pushed["view"]["id"]]
    assert frozen.unacknowledged_violations == []  # hash_conflict is a race, not a misuse


# -- rate limits -----------------------------------------------------------------------------------


async def test_tier_rate_limit_sliding_window(frozen: FakeSlack) -> None:
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=TOKEN, base_url=frozen.api_url, session=session)
        ts = (await client.chat_postMessage(channel="C1", text="0"))["ts"]
        for i in range(50):  # chat.update is tier 3: 50 per minute
            frozen.clock.advance(0.5)
            await client.chat_update(channel="C1", ts=ts, text=str(i))
        with pytest.raises(SlackApiError) as e:
            await client.chat_update(channel="C1", ts=ts, text="51st")
        assert e.value.response.status_code == 429
        assert e.value.response["error"] == "ratelimited"
        assert e.value.response.headers["Retry-After"] == "36"  # first call at +0.5 s, now +25 s
        assert frozen.rate_limited == 1
        frozen.clock.advance(36)
        await client.chat_update(channel="C1", ts=ts, text="after the window moved")
    assert frozen.messages("C1")[0]["text"] == "after the window moved"
    frozen.expect_violations("chat.update: rate limited (tier t3)")


async def test_post_message_is_limited_per_channel_with_a_burst(frozen: FakeSlack) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=frozen.api_url)
    for i in range(frozen.limiter.post_message_burst):
        await client.chat_postMessage(channel="C1", text=str(i))
    with pytest.raises(SlackApiError) as e:
        await client.chat_postMessage(channel="C1", text="one too many")
    assert e.value.response.status_code == 429 and e.value.response.headers["Retry-After"] == "1"
    await client.chat_postMessage(channel="C2", text="another channel has its own budget")
    frozen.clock.advance(1)
    await client.chat_postMessage(channel="C1", text="a second later")
    assert frozen.rate_limited == 1
    frozen.expect_violations("chat.postMessage: rate limited")


# -- fault injection -------------------------------------------------------------------------------


async def test_injected_500_then_ok_with_server_error_retry(fake_slack: FakeSlack) -> None:
    retry = AsyncServerErrorRetryHandler(
        max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.01)
    )
    client = AsyncWebClient(token=TOKEN, base_url=fake_slack.api_url, retry_handlers=[retry])
    fake_slack.fail("chat.postMessage", status=500)
    posted = await client.chat_postMessage(channel="C1", text="eventually")
    assert posted["ok"]
    assert [(c.status, c.injected) for c in fake_slack.calls] == [(500, True), (200, False)]

    fake_slack.fail("chat.postMessage", error="channel_not_found", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError, match="channel_not_found"):
            await client.chat_postMessage(channel="C1", text="x")
    fake_slack.fail("views.open", status=429, retry_after_s=7)
    with pytest.raises(SlackApiError) as e:
        await client.views_open(trigger_id=fake_slack.new_trigger_id(), view=modal())
    assert e.value.response.headers["Retry-After"] == "7"
    assert fake_slack.rate_limited == 0 and fake_slack.violations == []  # injected, not earned


async def test_outage_window_on_the_fake_clock(frozen: FakeSlack) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=frozen.api_url)
    frozen.fail_all(status=503, for_s=30)
    with pytest.raises(SlackApiError) as e:
        await client.auth_test()
    assert e.value.response.status_code == 503
    frozen.clock.advance(31)
    assert (await client.auth_test())["user_id"] == "UBOT"


async def test_latency_is_real_time(fake_slack: FakeSlack, client: AsyncWebClient) -> None:
    fake_slack.fail("auth.test", latency_s=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await client.auth_test())["ok"]
    assert loop.time() - started >= 0.2


# -- response_url ----------------------------------------------------------------------------------


async def test_response_url_five_uses_then_refused(
    fake_slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    url = fake_slack.new_response_url(channel="C1", user="U1")
    for i in range(5):
        async with session.post(url, json={"text": f"step {i}"}) as resp:
            assert resp.status == 200 and (await resp.json())["ok"]
    async with session.post(url, json={"text": "sixth"}) as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "used_url"
    assert [e["text"] for e in fake_slack.ephemerals("C1", "U1")] == [f"step {i}" for i in range(5)]
    assert len(fake_slack.responses(url)) == 6
    fake_slack.expect_violations("used more than 5 times")


async def test_response_url_expiry_and_effects(
    frozen: FakeSlack, session: aiohttp.ClientSession
) -> None:
    ts = frozen.add_message("C1", "original", user="UBOT")
    url = frozen.new_response_url(channel="C1", user="U1", message_ts=ts)
    async with session.post(url, json={"text": "replaced", "replace_original": True}) as resp:
        assert resp.status == 200
    async with session.post(url, json={"text": "for all", "response_type": "in_channel"}):
        pass
    assert [m["text"] for m in frozen.messages("C1")] == ["replaced", "for all"]
    frozen.clock.advance(31 * 60)
    async with session.post(url, json={"text": "too late"}) as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "expired_url"
    frozen.expect_violations("min after issue")


# -- the driver against a real Bolt app ------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(app: AsyncApp) -> AsyncIterator[str]:
    runner = web.AppRunner(app.web_app(path="/slack/events"), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    finally:
        await runner.cleanup()


def bolt_app(slack: FakeSlack) -> AsyncApp:
    app = AsyncApp(
        client=AsyncWebClient(token=TOKEN, base_url=slack.api_url), signing_secret=SECRET
    )

    @app.command("/queue")
    async def handle_queue(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient) -> None:
        if command["text"] == "form":
            await ack()
            await client.views_open(trigger_id=command["trigger_id"], view=modal())
            return
        await ack(f"working on {command['text']}")
        await client.chat_postMessage(
            channel=command["channel_id"],
            text=f"{command['text']}?",
            blocks=[
                section(f"{command['text']}?"),
                {"type": "actions", "block_id": "confirm", "elements": [button("yes", "sla")]},
            ],
        )

    @app.action("yes")
    async def handle_yes(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await respond(text=f"drained {body['actions'][0]['value']}", replace_original=True)

    @app.view("drain")
    async def handle_drain(ack: AsyncAck, view: dict[str, Any]) -> None:
        name = view["state"]["values"]["queue"]["name"]["value"]
        if name != "sla":
            await ack(response_action="errors", errors={"queue": f"no queue {name}"})
        else:
            await ack()

    return app


async def test_driver_command_button_and_modal_through_bolt(fake_slack: FakeSlack) -> None:
    async with serve(bolt_app(fake_slack)) as url:
        driver = SlackDriver(url, SECRET, fake_slack)
        response = await driver.command("/queue", "drain sla", user="U1", channel="C1")
        assert response.status == 200 and response.elapsed_s < 3
        assert response.body == "working on drain sla"  # Bolt acks a bare text as text/plain
        assert response.trigger_id and response.response_url
        assert [e["text"] for e in fake_slack.ephemerals("C1", "U1")] == ["working on drain sla"]
        [call] = await fake_slack.wait_for_calls("chat.postMessage")
        ts = call.response["ts"] if call.response else ""

        clicked = await driver.block_action("yes", user="U1", channel="C1", message_ts=ts)
        assert clicked.status == 200 and clicked.body == ""
        await fake_slack.wait_until(lambda: fake_slack.messages("C1")[0]["text"] == "drained sla")
        assert "blocks" not in fake_slack.messages("C1")[0]

        opened = await driver.command("/queue form", user="U1")
        assert opened.body == ""
        [open_call] = await fake_slack.wait_for_calls("views.open")
        assert open_call.ok
        [view] = fake_slack.open_views("U1")
        wrong = {"queue": {"name": {"type": "plain_text_input", "value": "slq"}}}
        refused = await driver.view_submission(view, values=wrong)
        assert refused.json == {"response_action": "errors", "errors": {"queue": "no queue slq"}}
        assert fake_slack.is_view_open(view["id"])
        right = {"queue": {"name": {"type": "plain_text_input", "value": "sla"}}}
        accepted = await driver.view_submission(view, values=right)
        assert accepted.status == 200 and not fake_slack.is_view_open(view["id"])
        assert await driver.view_closed(view) is None  # notify_on_close is off: Slack sends nothing
    assert fake_slack.violations == []


async def test_bolt_refuses_bad_stale_and_unsigned_requests(fake_slack: FakeSlack) -> None:
    async with serve(bolt_app(fake_slack)) as url:
        driver = SlackDriver(url, SECRET, fake_slack)
        for options in ({"signature": "bad"}, {"signature": "missing"}, {"stale": True}):
            response = await driver.command("/queue", "drain sla", **options)
            assert response.status == 401, options
        genuine = await driver.command("/queue", "drain sla")
        assert genuine.status == 200
        # Bolt has no replay protection inside the 5 minute timestamp window.
        replayed = await driver.replay(genuine.request)
        assert replayed.status == 200 and replayed.request == genuine.request
        await fake_slack.wait_for_calls("chat.postMessage", count=2)
    assert fake_slack.violations == []


async def test_driver_refuses_to_click_what_the_bot_did_not_post(fake_slack: FakeSlack) -> None:
    ts = fake_slack.add_message("C1", "no buttons here", user="UBOT")
    driver = SlackDriver("http://127.0.0.1:9/unused", SECRET, fake_slack)
    with pytest.raises(AssertionError, match="no element 'yes'"):
        await driver.block_action("yes", channel="C1", message_ts=ts)


async def test_slow_or_failing_ack_is_a_violation(fake_slack: FakeSlack) -> None:
    app = web.Application()

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    app.router.add_post("/slack/events", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
        response = await SlackDriver(url, SECRET, fake_slack).command("/queue", "drain sla")
    finally:
        await runner.cleanup()
    assert response.status == 500
    fake_slack.expect_violations("/queue drain sla: the bot answered HTTP 500")


@contextlib.asynccontextmanager
async def canned_bot(*bodies: Any) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in bot endpoint answering each request with the next body (a dict as JSON);
    yields its URL and the interaction payloads it received."""
    received: list[dict[str, Any]] = []
    answers = list(bodies)

    async def endpoint(request: web.Request) -> web.Response:
        form = parse_qs(await request.text())
        received.append(json.loads(form["payload"][0]))
        body = answers.pop(0)
        return web.json_response(body) if isinstance(body, dict) else web.Response(text=body)

    app = web.Application()
    app.router.add_post("/slack/events", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events", received
    finally:
        await runner.cleanup()


async def test_view_submission_response_actions(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    renamed = modal(title={"type": "plain_text", "text": "Renamed"})
    answers = [
        {"response_action": "update", "view": renamed},
        {"response_action": "push", "view": modal()},
        {"response_action": "errors", "errors": {"nope": "no such field"}},
        {"response_action": "clear"},
    ]
    opened = await client.views_open(trigger_id=fake_slack.new_trigger_id(user="U1"), view=modal())
    root = opened["view"]
    async with canned_bot(*answers) as (url, received):
        driver = SlackDriver(url, SECRET, fake_slack)
        await driver.view_submission(root)
        [updated] = fake_slack.open_views("U1")
        assert updated["id"] == root["id"] and updated["title"]["text"] == "Renamed"
        assert updated["hash"] != root["hash"]
        await driver.view_submission(root)
        pushed = fake_slack.open_views("U1")[1]
        assert pushed["previous_view_id"] == root["id"] and pushed["root_view_id"] == root["id"]
        await driver.view_submission(pushed)
        assert len(fake_slack.open_views("U1")) == 2  # errors keep the view open
        await driver.view_submission(pushed)
        assert fake_slack.open_views("U1") == []
    assert [p["type"] for p in received] == ["view_submission"] * 4
    assert received[0]["view"]["id"] == root["id"] and received[0]["user"]["id"] == "U1"
    fake_slack.expect_violations("errors for ['nope'], which are not input block_ids")


async def test_block_action_in_a_modal_picks_the_option(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    select = {
        "type": "static_select",
        "action_id": "pick",
        "options": [
            {"text": {"type": "plain_text", "text": name}, "value": name} for name in ("a", "b")
        ],
    }
    view = modal(blocks=[{"type": "actions", "block_id": "choose", "elements": [select]}])
    view.pop("submit")
    opened = await client.views_open(trigger_id=fake_slack.new_trigger_id(user="U1"), view=view)
    async with canned_bot("") as (url, received):
        response = await SlackDriver(url, SECRET, fake_slack).block_action(
            "pick", "b", view=opened["view"]
        )
    assert response.status == 200 and response.response_url is None
    [payload] = received
    assert payload["container"] == {"type": "view", "view_id": opened["view"]["id"]}
    [action] = payload["actions"]
    assert action["block_id"] == "choose" and action["selected_option"]["value"] == "b"
    assert payload["trigger_id"] == response.trigger_id


async def test_scopes_are_checked_when_given() -> None:
    async with FakeSlack(scopes={"chat:write"}) as slack:
        client = AsyncWebClient(token=TOKEN, base_url=slack.api_url)
        await client.chat_postMessage(channel="C1", text="allowed")
        with pytest.raises(SlackApiError) as e:
            await client.users_info(user="U1")
        assert e.value.response["error"] == "missing_scope"
        assert e.value.response["needed"] == "users:read"
        assert e.value.response.headers["x-oauth-scopes"] == "chat:write"
        slack.expect_violations("users.info: needs one of the scopes")


# -- the session check -----------------------------------------------------------------------------


async def test_session_check_reports_unacknowledged_violations() -> None:
    slack = FakeSlack()  # never started: violations can be recorded by hand
    slack.violate("chat.postMessage: invalid blocks")
    report = unacknowledged_report([slack])
    assert len(report) == 1 and report[0].endswith("chat.postMessage: invalid blocks")
    assert "test_session_check_reports_unacknowledged_violations" in report[0]
    with pytest.raises(AssertionError, match="no unacknowledged violation"):
        slack.expect_violations("views.open")
    slack.expect_violations("invalid blocks")
    assert unacknowledged_report([slack]) == []


def test_clock_advances_and_speeds_up() -> None:
    clock = FakeClock(start=100.0, speed=0)
    clock.advance(5)
    assert clock.now() == 105.0
    clock.speed = 1000
    assert clock.now() >= 105.0
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_methods_reference_is_loaded(fake_slack: FakeSlack) -> None:
    assert fake_slack.methods["chat.update"].rate_tier == "t3"
    assert fake_slack.methods["users.info"].http_method == "GET"
    assert not fake_slack.methods["users.info"].json_input_supported
    assert "methods" not in fake_slack.methods  # the index file is not a method
    with pytest.raises(ValueError, match="not a Slack method"):
        fake_slack.fail("chat.postMesage", status=500)
    assert fake_slack.methods["views.open"].required == {"view"}
