"""What happens when someone types a slash command or clicks a button.

Every handler acks first (Slack wants an answer within 3 seconds, whatever Redis, the database
or a host is doing) and does the rest in a background task: answer through `response_url`,
fill the confirmation modal with `views.update`, run the operation with live progress.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as redis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import service
from bot.engine.plan import Plan
from bot.engine.runner import Actor
from bot.errors import BadInput, BotError, StoreUnavailable
from bot.rbac import Decision, GroupCache, Rbac, grants
from bot.redact import redact
from bot.runtime import Runtime
from bot.slack import blocks
from bot.slack.followups import ANSWER_START_S, MODAL_START_S, REPLY_START_S, FollowUps
from bot.slack.outbox import NOT_A_MEMBER, Outbox
from bot.slack.progress import SlackProgress, progress_title
from bot.slack.replays import RecentRequests
from bot.slack.views import query_answer
from bot.slack.window_door import window_command
from bot.store.records import ApprovalRecord
from bot.store.slack import SLACK_SCOPE
from bot.windows import planned
from commands.grammar import Parsed, grant_names, help_lines, parse

logger = logging.getLogger(__name__)
_WINDOW_ACKS = {
    "schedule": "scheduling the window…",
    "cancel": "cancelling the window…",
    "reschedule": "moving the window…",
    "list": "looking…",
}

Ack = Callable[..., Awaitable[Any]]
Respond = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Origin:
    """Who asked, where, and how to answer them."""

    user: str
    channel: str
    channel_name: str
    response_url: str | None


class SlackDoor:
    def __init__(
        self,
        rt: Runtime,
        client: AsyncWebClient,
        groups: GroupCache,
        *,
        source: str = "slack",
        session: aiohttp.ClientSession | None = None,
        scope: str = SLACK_SCOPE,
    ) -> None:
        self.rt = rt
        self.session = session  # kept-alive connections for response_url answers
        self.source = source  # "console" when the terminal console drives this door
        self.client = client
        self.groups = groups
        self.rbac = Rbac(rt.config, groups)
        self.outbox = Outbox(rt.store, rt.clock, scope=scope)
        self.followups = FollowUps()
        self.recent = RecentRequests()
        self._refreshing: asyncio.Future[None] | None = None

    # ---- plumbing -----------------------------------------------------------------------------

    def spawn(
        self, coro: Coroutine[Any, Any, None], *, what: str, within_s: float = ANSWER_START_S
    ) -> None:
        self.followups.spawn(coro, what=what, within_s=within_s)

    async def finish_follow_ups(self, timeout_s: float) -> None:
        await self.followups.finish(timeout_s)

    def secrets(self) -> tuple[str, ...]:
        return self.rt.secrets

    def _is_slack_url(self, url: object) -> bool:
        """Only Slack's own response_urls (or those of the Slack at SLACK_API_URL) are posted
        to: private_metadata comes back from outside, so it must not choose where we POST."""
        if not isinstance(url, str):
            return False
        prefixes = ["https://hooks.slack.com/"]
        if self.rt.settings.SLACK_API_URL:
            parts = urlsplit(self.rt.settings.SLACK_API_URL)
            prefixes.append(f"{parts.scheme}://{parts.netloc}/")
        return url.startswith(tuple(prefixes))

    def env_for(self, parsed_env: str | None, origin: Origin) -> str:
        if parsed_env is not None:
            self.rt.config.env(parsed_env)
            return parsed_env
        for name, env in self.rt.config.environments.items():
            if env.channel and env.channel.lstrip("#") in (origin.channel, origin.channel_name):
                return name
        known = ", ".join(sorted(self.rt.config.environments))
        raise BadInput(
            f"which environment? add --env ENV (known: {known}), or map this channel to one "
            "with `channel:` in the configuration"
        )

    async def refresh_groups(self) -> None:
        """Reload every watched user group from Slack. Callers that come while a refresh runs
        share it: a burst of commands on a cold cache makes one round of (tier 2) calls."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._fetch_groups())
        await asyncio.shield(self._refreshing)

    async def _fetch_groups(self) -> None:
        for group in sorted(self.rbac.groups_to_watch()):
            response = await self.client.usergroups_users_list(usergroup=group)
            users = frozenset(str(user) for user in response.get("users") or [])
            self.groups.replace(group, users, self.rt.clock.now())

    async def load_groups(self) -> str | None:
        """Refresh a cold cache: None once loaded, or why Slack did not give the groups."""
        try:
            await self.refresh_groups()
        except SlackApiError as exc:
            return f"usergroups.users.list: {exc.response.get('error')}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"usergroups.users.list: no answer ({type(exc).__name__})"
        return None

    async def decide(self, user: str, env: str, permission: str, *narrower: str) -> Decision:
        decision = self.rbac.decide(user, env, permission, *narrower)
        if decision.pending:
            failed = await self.load_groups()
            decision = self.rbac.decide(user, env, permission, *narrower)
            if decision.pending:
                return Decision(False, unchecked=failed or "user groups not loaded")
        return decision

    async def audit_refusal(self, origin: Origin, env: str | None, command: str, why: str) -> None:
        await self.rt.store.audit(
            actor=origin.user,
            source=self.source,
            kind="refused",
            command=command,
            outcome=why,
            env=env,
            now=self.rt.clock.now(),
        )

    # ---- slash commands -----------------------------------------------------------------------

    async def slash(self, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        origin = Origin(
            user=str(command.get("user_id", "")),
            channel=str(command.get("channel_id", "")),
            channel_name=str(command.get("channel_name", "")),
            response_url=command.get("response_url"),
        )
        if self.session is not None and origin.response_url:
            respond = self._webhook(origin.response_url)
        name = str(command.get("command", ""))
        text = str(command.get("text", ""))
        shown = redact(f"{name} {text}".strip(), secrets=self.secrets())
        trigger_id = str(command.get("trigger_id", ""))
        if trigger_id and not self.recent.first_time(f"slash:{trigger_id}"):
            await ack()
            self.spawn(self.audit_refusal(origin, None, shown, "replayed request"), what="audit")
            return
        try:
            parsed = parse(name, text)
            if parsed.command == "window":  # its environment is its own argument, or none
                await ack(response_type="ephemeral", text=_WINDOW_ACKS[parsed.action])
                self.spawn(
                    window_command(self, parsed, origin, shown, respond),
                    what="window",
                    within_s=REPLY_START_S,
                )
                return
            env = (
                None
                if parsed.action == "help" and parsed.env is None
                else self.env_for(parsed.env, origin)
            )
        except BotError as exc:
            await ack(response_type="ephemeral", text=f"❌ {exc}")
            return
        if parsed.action == "help":
            await ack()
            self.spawn(self._help(parsed, env, origin, respond), what="help")
            return
        assert env is not None
        decision = self.rbac.decide(origin.user, env, *parsed.grant_names)
        if not decision.allowed and not decision.pending:
            await ack(response_type="ephemeral", text=decision.refusal(shown))
            self.spawn(self.audit_refusal(origin, env, shown, decision.why), what="audit")
            return
        if (parsed.command, parsed.action) == ("ops", "cancel"):
            await ack(response_type="ephemeral", text=f"cancelling {parsed.target}…")
            self.spawn(
                self._cancel(
                    origin.user,
                    parsed.target or "",
                    {"channel": {"id": origin.channel}, "response_url": origin.response_url},
                ),
                what="cancel",
                within_s=REPLY_START_S,
            )
            return
        if parsed.mutating:
            await ack()
            self.spawn(
                self._prepare(parsed, env, origin, shown, trigger_id, respond),
                what="prepare",
                within_s=MODAL_START_S,
            )
            return
        if decision.pending:
            await ack(response_type="ephemeral", text="checking permissions…")
        else:
            await ack()
        self.spawn(self._answer(parsed, env, origin, shown, respond), what="query")

    async def _help(
        self, parsed: Parsed, env: str | None, origin: Origin, respond: Respond
    ) -> None:
        granted: set[str] = set()
        for name in [env] if env is not None else self.rt.config.environments:
            granted |= self.rbac.permissions(origin.user, name)[0]

        def may(command: str, action: str) -> bool:
            return grants(granted, *grant_names(command, action))

        lines = [blocks.escape(line) for line in help_lines(parsed.target, may)]
        where = f" in {env}" if env else ""
        await respond(
            response_type="ephemeral", text=f"What you may run{where}:\n" + "\n".join(lines)
        )

    async def _answer(
        self, parsed: Parsed, env: str, origin: Origin, shown: str, respond: Respond
    ) -> None:
        decision = await self.decide(origin.user, env, *parsed.grant_names)
        if not decision.allowed:
            await respond(response_type="ephemeral", text=decision.refusal(shown))
            await self.audit_refusal(origin, env, shown, decision.why)
            return
        try:
            answer = await query_answer(self.rt, parsed, env)
        except BotError as exc:
            await respond(response_type="ephemeral", text=f"❌ {exc}")
            return
        except (redis.RedisError, OSError) as exc:
            await respond(response_type="ephemeral", text=_unreachable(env, exc))
            return
        await respond(**answer)

    # ---- the confirmation modal ---------------------------------------------------------------

    async def _prepare(
        self,
        parsed: Parsed,
        env: str,
        origin: Origin,
        shown: str,
        trigger_id: str,
        respond: Respond,
    ) -> None:
        title = f"{parsed.command} {parsed.action}"
        metadata = {
            "command": parsed.command,
            "text": shown.split(" ", 1)[1] if " " in shown else "",
            "env": env,
            "user": origin.user,
            "channel": origin.channel,
            "channel_name": origin.channel_name,
            "response_url": origin.response_url,
        }
        if len(json.dumps(metadata)) > blocks.METADATA_MAX:
            await respond(response_type="ephemeral", text="❌ the command is too long to confirm")
            return
        try:
            opened = await self.client.views_open(
                trigger_id=trigger_id, view=blocks.loading_view(title, metadata)
            )
        except SlackApiError as exc:
            await respond(
                response_type="ephemeral",
                text=f"❌ could not open the confirmation ({exc.response.get('error')}); try again",
            )
            return
        view_id = str(opened["view"]["id"])
        # The modal shows "preparing the plan"; reading the plan can wait for a quiet moment.
        self.spawn(
            self._fill_plan(parsed, env, origin, shown, view_id, metadata),
            what="plan",
            within_s=ANSWER_START_S,
        )

    async def _fill_plan(
        self,
        parsed: Parsed,
        env: str,
        origin: Origin,
        shown: str,
        view_id: str,
        metadata: dict[str, Any],
    ) -> None:
        title = f"{parsed.command} {parsed.action}"
        decision = await self.decide(origin.user, env, *parsed.grant_names)
        if not decision.allowed:
            await self.client.views_update(
                view_id=view_id, view=blocks.error_view(title, decision.refusal(shown))
            )
            await self.audit_refusal(origin, env, shown, decision.why)
            return
        try:
            plan = await service.plan_for(self.rt, _request(parsed, env))
        except BotError as exc:
            await self.client.views_update(view_id=view_id, view=blocks.error_view(title, str(exc)))
            return
        except (redis.RedisError, OSError) as exc:
            await self.client.views_update(
                view_id=view_id, view=blocks.error_view(title, _unreachable(env, exc))
            )
            return
        env_cfg = self.rt.config.env(env)
        await self.client.views_update(
            view_id=view_id,
            view=blocks.plan_view(
                title,
                plan.describe(),
                env=env,
                protected=env_cfg.protected,
                target=plan.target,
                metadata=metadata,
                approvals=self.rbac.approvals_needed(plan.kind, env),
            ),
        )

    async def submit(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = str(body.get("user", {}).get("id", ""))
        try:
            metadata = json.loads(view.get("private_metadata") or "{}")
            parsed = parse(str(metadata["command"]), str(metadata["text"]))
            env = str(metadata["env"])
            self.rt.config.env(env)
            channel = str(metadata["channel"])
        except (BotError, KeyError, ValueError, TypeError):
            message = "this request cannot be read; run the command again"
            await ack(response_action="update", view=blocks.error_view("chatops", message))
            return
        response_url = metadata.get("response_url")
        origin = Origin(
            user,
            channel,
            str(metadata.get("channel_name", "")),
            response_url if self._is_slack_url(response_url) else None,
        )
        shown = f"/{parsed.command} {metadata['text']}".strip()
        if metadata.get("user") != user or not parsed.mutating:
            # A forged or replayed modal: someone else's request, or nothing to run.
            await ack()
            self.spawn(
                self.audit_refusal(origin, env, shown, "forged modal submission"), what="audit"
            )
            return
        if self.rt.config.env(env).protected:
            typed = _typed_target(view)
            if typed != parsed.target:
                await ack(
                    response_action="errors",
                    errors={blocks.CONFIRM_BLOCK: f"type {parsed.target} exactly to confirm"},
                )
                return
        await ack()
        view_key = f"view:{view.get('id', '')}:{view.get('hash', '')}"
        self.spawn(
            self._start(parsed, env, origin, shown, view_key), what="start", within_s=REPLY_START_S
        )

    async def _start(
        self, parsed: Parsed, env: str, origin: Origin, shown: str, once_key: str
    ) -> None:
        try:
            await self._start_confirmed(parsed, env, origin, shown, once_key)
        except StoreUnavailable as exc:
            await self._store_down(origin, exc, f"`{shown}` did not run; try again when it is back")

    async def _start_confirmed(
        self, parsed: Parsed, env: str, origin: Origin, shown: str, once_key: str
    ) -> None:
        if not await self.rt.store.remember_request(once_key, now=self.rt.clock.now()):
            logger.warning("slack: a replayed confirmation was ignored")
            return
        decision = await self.decide(origin.user, env, *parsed.grant_names)
        if not decision.allowed:
            await self._tell(origin, decision.refusal(shown))
            await self.audit_refusal(origin, env, shown, decision.why)
            return
        request = _request(parsed, env)
        try:
            plan = await service.plan_for(self.rt, request)
        except BotError as exc:
            await self._tell(origin, f"❌ {exc}")
            return
        except (redis.RedisError, OSError) as exc:
            await self._tell(origin, _unreachable(env, exc))
            return
        needed = self.rbac.approvals_needed(plan.kind, env)
        if needed or parsed.in_window:
            await self._request_approval(parsed, env, origin, shown, plan, needed)
            return
        await self.run_operation(plan, origin=origin, command=shown, reason=None)

    async def _tell(self, origin: Origin, text: str) -> None:
        key = f"note:{origin.user}:{self.rt.clock.now().timestamp()}"
        try:
            await self.outbox.ephemeral(
                key,
                channel=origin.channel,
                user=origin.user,
                text=text,
                fallback_url=origin.response_url,
            )
        except StoreUnavailable:
            # The outbox lives in the store: say it straight away, once, or log it.
            await self._tell_directly(origin, text)

    async def _tell_directly(self, origin: Origin, text: str) -> None:
        """An ephemeral note without the outbox; through the response_url, as the outbox would,
        where the bot is not in the channel."""
        try:
            await self.client.chat_postEphemeral(
                channel=origin.channel, user=origin.user, text=text
            )
            return
        except SlackApiError as exc:
            if origin.response_url is None or exc.response.get("error") not in NOT_A_MEMBER:
                logger.error("slack: could not tell %s (%s): %s", origin.user, exc, text)
                return
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.error("slack: could not tell %s (%s): %s", origin.user, exc, text)
            return
        try:
            sent = await self._webhook(origin.response_url)(text=text, response_type="ephemeral")
            failed = f"HTTP {sent.status_code}" if sent.status_code >= 400 else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            failed = type(exc).__name__
        if failed:
            logger.error("slack: could not tell %s (via URL: %s): %s", origin.user, failed, text)

    async def _store_down(self, origin: Origin, exc: StoreUnavailable, what: str) -> None:
        await self._tell(origin, f"❌ {exc}; {what}")

    # ---- running ------------------------------------------------------------------------------

    async def run_operation(
        self, plan: Plan, *, origin: Origin, command: str, reason: str | None
    ) -> str | None:
        """Run `plan` with its progress in the channel; the operation id, if it started."""
        self.followups.long_running()
        rollback = None
        if plan.kind == "deploy":
            rollback = json.dumps({"env": plan.env, "worker": plan.target})
        progress = SlackProgress(
            outbox=self.outbox,
            clock=self.rt.clock,
            channel=origin.channel,
            actor=origin.user,
            title=progress_title(plan.kind, plan.target, plan.env),
            rollback_value=rollback,
            fallback_url=origin.response_url,
        )
        try:
            outcome = await service.run(
                self.rt,
                plan,
                actor=Actor(origin.user, self.source),
                command=command,
                reason=reason,
                sink=progress,
            )
        except BotError as exc:
            await self._tell(origin, f"❌ {exc}")
            return None
        except (redis.RedisError, OSError) as exc:
            await self._tell(origin, _unreachable(plan.env, exc))
            return None
        return outcome.op_id

    # ---- approvals ----------------------------------------------------------------------------

    async def _request_approval(
        self, parsed: Parsed, env: str, origin: Origin, shown: str, plan: Plan, needed: int
    ) -> None:
        """Ask for approvals; an operation planned for a window waits there, its approvals valid
        until the window closes (and it may need none)."""
        now = self.rt.clock.now()
        window = None
        if parsed.in_window:
            window = await planned.window_for(self.rt, env=env, window_id=parsed.in_window, now=now)
        approval = await self.rt.store.create_approval(
            kind=plan.kind,
            env=env,
            target=plan.target,
            request={
                "command": parsed.command,
                "text": shown.split(" ", 1)[1] if " " in shown else "",
                "plan": plan.describe(),
                "channel_name": origin.channel_name,
                # Where the bot is not in the channel, the operation's progress goes there.
                "response_url": origin.response_url,
            },
            command=shown,
            requester=origin.user,
            needed=needed,
            channel=origin.channel,
            now=now,
            expires_at=(
                window.ends_at
                if window
                else now + timedelta(minutes=self.rt.config.approval_expiry_min)
            ),
            window_id=window.id if window else None,
        )
        await self.rt.store.audit(
            actor=origin.user,
            source=self.source,
            kind="plan" if window else "request",
            command=shown,
            outcome=f"planned for window {window.id}" if window else "approval requested",
            env=env,
            details={"approval": approval.id, "needed": needed},
            now=now,
        )
        head = "Planned" if window else "Approval requested"
        await self.outbox.post(
            f"{approval.id}:request",
            channel=origin.channel,
            text=f"{head}: {shown}",
            blocks=await self._approval_blocks(approval),
            fallback_url=origin.response_url,
        )
        if window and approval.state == "approved":
            await self._start_if_window_open(approval)

    async def _approval_blocks(self, approval: ApprovalRecord) -> list[dict[str, Any]]:
        window = await self.rt.store.window(approval.window_id) if approval.window_id else None
        line = planned.waiting_line(window) if window else None
        return blocks.approval_blocks(approval, planned_for=line)

    async def _start_if_window_open(self, approval: ApprovalRecord) -> None:
        """Approved and planned for a window: start it now if the window is open, else the
        windows scheduler does when it opens."""
        assert approval.window_id is not None
        window = await self.rt.store.window(approval.window_id)
        if planned.is_open(window, self.rt.clock.now()) and await self.rt.store.claim_execution(
            approval.id, now=self.rt.clock.now()
        ):
            await self._execute_approved(approval)

    async def start_planned(self, approval: ApprovalRecord) -> None:
        """The windows scheduler claimed a planned operation: run it in the background."""
        self.spawn(self._execute_approved(approval), what="planned operation")

    async def vote(self, ack: Ack, body: dict[str, Any], decision: str) -> None:
        await ack()
        user = str(body.get("user", {}).get("id", ""))
        actions = body.get("actions") or [{}]
        approval_id = str(actions[0].get("value", ""))
        self.spawn(
            self._vote(user, approval_id, decision, body), what="vote", within_s=REPLY_START_S
        )

    async def _vote(self, user: str, approval_id: str, decision: str, body: dict[str, Any]) -> None:
        try:
            await self._count_vote(user, approval_id, decision, body)
        except StoreUnavailable as exc:
            origin = self._click_origin(user, body)
            await self._store_down(origin, exc, "your answer was not counted; click again later")

    async def _count_vote(
        self, user: str, approval_id: str, decision: str, body: dict[str, Any]
    ) -> None:
        channel = str(body.get("channel", {}).get("id", ""))
        approval = await self.rt.store.get_approval(approval_id)
        if approval is None:
            return
        origin = self._click_origin(user, body, channel=channel or approval.channel)
        if not self.rbac.is_approver(user):
            failed = None if self.groups_loaded() else await self.load_groups()
            if failed:
                await self._tell(
                    origin,
                    f"❌ your answer was not counted: your roles could not be read from Slack "
                    f"({failed}); click again in a minute",
                )
                unread = Decision(False, unchecked=failed)
                await self.audit_refusal(origin, approval.env, approval.command, unread.why)
                return
            if not self.rbac.is_approver(user):
                await self._tell(
                    origin, f"❌ only holders of the approver role may {decision} requests"
                )
                await self.audit_refusal(
                    origin, approval.env, approval.command, f"{decision} without approver role"
                )
                return
        outcome = await self.rt.store.vote(
            approval_id, voter=user, decision=decision, now=self.rt.clock.now()
        )
        await self.rt.store.audit(
            actor=user,
            source=self.source,
            kind=decision,
            command=approval.command,
            outcome="counted" if outcome.accepted else f"refused: {outcome.reason}",
            env=approval.env,
            details={"approval": approval_id},
            now=self.rt.clock.now(),
        )
        if not outcome.accepted:
            why = {
                "own_request": "you cannot approve your own request",
                "already_voted": "you have already answered this request",
                "expired": "this request has expired",
            }.get(str(outcome.reason), f"this request is {outcome.approval.state}")
            await self._tell(origin, f"❌ {why}")
            return
        approval = outcome.approval
        await self.outbox.update(
            f"{approval.id}:request",
            text=f"Approval: {approval.state}",
            blocks=await self._approval_blocks(approval),
            final=approval.state != "pending",
        )
        if approval.state != "approved":
            return
        if approval.window_id:
            await self._start_if_window_open(approval)
        elif await self.rt.store.claim_execution(approval.id, now=self.rt.clock.now()):
            await self._execute_approved(approval)

    def groups_loaded(self) -> bool:
        return all(self.groups.loaded(g) for g in self.rbac.groups_to_watch())

    async def _execute_approved(self, approval: ApprovalRecord) -> None:
        request = approval.request
        parsed = parse(str(request["command"]), str(request["text"]))
        response_url = request.get("response_url")
        origin = Origin(
            approval.requester,
            approval.channel,
            str(request.get("channel_name", "")),
            response_url if self._is_slack_url(response_url) else None,
        )
        try:
            plan = await service.plan_for(self.rt, _request(parsed, approval.env))
        except BotError as exc:
            await self._tell(origin, f"❌ approved, but the plan cannot be made now: {exc}")
            await self.rt.store.finish_approval(approval.id, operation_id=None, state="done")
            return
        approvers = ", ".join(v.voter for v in approval.votes if v.decision == "approve")
        reason = f"approved by {approvers}" if approvers else None
        if approval.window_id:
            reason = f"planned for window {approval.window_id}" + (f", {reason}" if reason else "")
        op_id = None
        try:
            op_id = await self.run_operation(
                plan, origin=origin, command=approval.command, reason=reason
            )
        finally:
            await self.rt.store.finish_approval(approval.id, operation_id=op_id, state="done")
            if approval.window_id:
                done = await self.rt.store.get_approval(approval.id)
                assert done is not None
                await self.outbox.update(
                    f"{approval.id}:request",
                    text=f"Planned operation: {done.state}",
                    blocks=await self._approval_blocks(done),
                    final=True,
                )

    async def expire_approvals(self) -> None:
        for approval in await self.rt.store.expire_due(now=self.rt.clock.now()):
            await self.outbox.update(
                f"{approval.id}:request",
                text="Approval expired",
                blocks=await self._approval_blocks(approval),
                final=True,
            )
            await self.rt.store.audit(
                actor="chatops",
                source=self.source,
                kind="expired",
                command=approval.command,
                outcome="expired",
                env=approval.env,
                details={"approval": approval.id},
                now=self.rt.clock.now(),
            )

    # ---- buttons on progress messages ---------------------------------------------------------

    async def cancel_button(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        user = str(body.get("user", {}).get("id", ""))
        op_id = str((body.get("actions") or [{}])[0].get("value", ""))
        self.spawn(self._cancel(user, op_id, body), what="cancel", within_s=REPLY_START_S)

    async def _cancel(self, user: str, op_id: str, body: dict[str, Any]) -> None:
        origin = self._click_origin(user, body)
        try:
            await self._cancel_operation(origin, op_id)
        except StoreUnavailable as exc:
            await self._store_down(origin, exc, f"{op_id} was not cancelled; try again")

    async def _cancel_operation(self, origin: Origin, op_id: str) -> None:
        user = origin.user
        op = await self.rt.store.get_operation(op_id)
        if op is None:
            return
        decision = await self.decide(user, op.env, *grant_names("ops", "cancel"))
        if not decision.allowed:
            await self._tell(origin, decision.refusal(f"cancel {op_id}"))
            await self.audit_refusal(origin, op.env, f"cancel {op_id}", decision.why)
            return
        try:
            await service.cancel(self.rt, op_id, actor=Actor(user, self.source))
        except BotError as exc:
            await self._tell(origin, f"❌ {exc}")

    async def rollback_button(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        user = str(body.get("user", {}).get("id", ""))
        origin = self._click_origin(user, body)
        try:
            value = json.loads((body.get("actions") or [{}])[0].get("value", "{}"))
            env, worker = str(value["env"]), str(value["worker"])
            words = ["rollback", worker, "--env", env]
            if self.rt.config.env(env).protected:
                # Undoing a failed deploy must not wait for a maintenance window; the modal
                # says so, the approval policy still applies, and the audit keeps the flag.
                words.append("--outside-window")
            parsed = parse("worker", shlex.join(words))
        except (BotError, ValueError, KeyError, TypeError, AttributeError):
            self.spawn(
                self.audit_refusal(origin, None, "rollback button", "unreadable value"),
                what="audit",
            )
            return
        shown = f"/worker {shlex.join(words)}"
        trigger_id = str(body.get("trigger_id", ""))
        self.spawn(
            self._prepare(parsed, env, origin, shown, trigger_id, self._respond_to(origin)),
            what="rollback",
            within_s=MODAL_START_S,
        )

    def _click_origin(self, user: str, body: dict[str, Any], *, channel: str = "") -> Origin:
        """Who clicked, where; answers go to the click's own response_url where the bot is not
        in the channel."""
        url = body.get("response_url")
        return Origin(
            user,
            channel or str(body.get("channel", {}).get("id", "")),
            "",
            url if self._is_slack_url(url) else None,
        )

    def _webhook(self, url: str) -> Respond:
        """Answers to a response_url over the shared session: Bolt's `respond` opens a new
        session, and a new connection, for every answer."""

        async def respond(**message: Any) -> WebhookResponse:
            # Built when an answer is sent, not on the ack path.
            webhook = AsyncWebhookClient(url=url, session=self.session, timeout=10)
            return await webhook.send_dict({k: v for k, v in message.items() if v is not None})

        return respond

    def _respond_to(self, origin: Origin) -> Respond:
        async def respond(**kwargs: Any) -> None:
            await self._tell(origin, str(kwargs.get("text", "")))

        return respond


def _request(parsed: Parsed, env: str) -> service.OperationRequest:
    return service.OperationRequest(
        kind=parsed.action,
        env=env,
        target=parsed.target or "",
        job_ids=parsed.job_ids,
        all_jobs=parsed.all_jobs,
        timeout_s=parsed.timeout_s,
        ref=parsed.ref,
        skip_env_check=parsed.skip_env_check,
        outside_window=parsed.outside_window,
        in_window=parsed.in_window,
    )


def _typed_target(view: dict[str, Any]) -> str | None:
    values = view.get("state", {}).get("values", {})
    entry = values.get(blocks.CONFIRM_BLOCK, {}).get(blocks.CONFIRM_ACTION, {})
    value = entry.get("value")
    return str(value).strip() if value is not None else None


def _unreachable(env: str, exc: BaseException) -> str:
    return f"❌ Redis unreachable for {env} ({type(exc).__name__}); nothing was changed"
