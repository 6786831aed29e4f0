"""Incidents: every rollback and every failed restart is written to the store, and told to the
configured incident channel (through the outbox) and webhook (a JSON POST).

A rollback is an incident whatever its outcome: something bad enough happened to go back. A
restart is one only when it failed. What is recorded: what, who, when, from and to which
release, the outcome, the validation results, and the operation (`chatops ops show ID`).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from bot.engine.plan import Plan
from bot.engine.runner import Actor, Outcome
from bot.redact import redact
from bot.runtime import Runtime
from bot.slack.outbox import Outbox
from bot.store.records import IncidentRecord

logger = logging.getLogger(__name__)


def incident_kind(plan: Plan, outcome: Outcome) -> str | None:
    if plan.kind == "rollback":
        return "rollback"
    if plan.kind == "restart" and not outcome.ok:
        return f"restart {outcome.state}"
    return None


async def record_incident(
    rt: Runtime, plan: Plan, outcome: Outcome, actor: Actor
) -> IncidentRecord | None:
    kind = incident_kind(plan, outcome)
    if kind is None:
        return None
    from_release, to_release = _releases(outcome.validation)
    if plan.kind == "restart":
        current = await rt.store.current_release(plan.env, plan.target)
        from_release = to_release = current.commit[:12] if current else None
    record = await rt.store.record_incident(
        kind=kind,
        env=plan.env,
        worker=plan.target,
        actor=f"{actor.name} ({actor.source})",
        outcome=outcome.state,
        summary=outcome.summary,
        validation=dict(outcome.validation),
        from_release=from_release,
        to_release=to_release,
        operation_id=outcome.op_id,
        now=rt.clock.now(),
    )
    await _tell(rt, record)
    return record


def describe(record: IncidentRecord) -> str:
    releases = ""
    if record.from_release or record.to_release:
        releases = f", release {record.from_release or '?'} -> {record.to_release or '?'}"
    return (
        f"🚑 incident #{record.id}: {record.kind} of {record.worker} in {record.env} by "
        f"{record.actor}, {record.outcome}{releases}. {record.summary} "
        f"(details: chatops ops show {record.operation_id})"
    )


def _releases(validation: dict[str, object]) -> tuple[str | None, str | None]:
    before, after = validation.get("previous_release"), validation.get("release")
    return (before if isinstance(before, str) else None, after if isinstance(after, str) else None)


async def _tell(rt: Runtime, record: IncidentRecord) -> None:
    settings = rt.config.incidents
    text = redact(describe(record), secrets=rt.secrets)
    if settings.channel:
        await Outbox(rt.store, rt.clock).post(
            f"incident:{record.id}",
            channel=settings.channel,
            text=text,
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}],
        )
    if settings.webhook_url:
        await _post_webhook(
            settings.webhook_url, _payload(record, text), settings.webhook_timeout_s
        )


def _payload(record: IncidentRecord, text: str) -> dict[str, Any]:
    incident = {
        "id": record.id,
        "created_at": record.created_at.isoformat(),
        "kind": record.kind,
        "env": record.env,
        "worker": record.worker,
        "actor": record.actor,
        "outcome": record.outcome,
        "from_release": record.from_release,
        "to_release": record.to_release,
        "summary": record.summary,
        "validation": record.validation,
        "operation_id": record.operation_id,
    }
    # `text` first: chat webhooks (Slack's, Mattermost's) show it; incident tools read the rest.
    # The record's summary and validation were redacted when the store wrote them.
    return {"text": text, "incident": incident}


async def _post_webhook(url: str, payload: dict[str, Any], timeout_s: float) -> None:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.post(url, json=payload) as response,
        ):
            if response.status >= 400:
                logger.error("incident webhook answered HTTP %d", response.status)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        # The URL is a credential: never logged. The incident is in the store regardless.
        logger.error("incident webhook unreachable: %s", type(exc).__name__)
