"""Block Kit for the bot's messages and modals, built with slack-sdk's models (which check
Slack's limits) and cut to size where the content comes from the world (log lines, counts)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any, Literal

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.store.records import ApprovalRecord

SECTION_MAX = 2900  # Slack allows 3000 characters in a section's text
METADATA_MAX = 2900  # and 3000 in a view's private_metadata
MAX_MESSAGE_BLOCKS = 50
CONFIRM_CALLBACK = "chatops_confirm"
CONFIRM_BLOCK = "confirm_target"
CONFIRM_ACTION = "typed_target"
APPROVE_ACTION = "chatops_approve"
REJECT_ACTION = "chatops_reject"
CANCEL_ACTION = "chatops_cancel"
ROLLBACK_ACTION = "chatops_rollback"

_ICONS = {
    "pending": "◻️",
    "running": "⏳",
    "succeeded": "✅",
    "failed": "❌",
    "cancelled": "⏹️",
    "skipped": "➖",
    "interrupted": "⚠️",
}


def cut(text: str, limit: int = SECTION_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str) -> str:
    """Slack mrkdwn control characters, so user and log text cannot ping or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=cut(text)))


def as_dicts(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    return [b.to_dict() for b in blocks[:MAX_MESSAGE_BLOCKS]]


def code_sections(
    lines: Sequence[str], *, keep: Literal["head", "tail"] = "head", sections: int = 6
) -> list[str]:
    """`lines` as code blocks of at most one section each, whole lines only (a long table stays
    a table), at most `sections` of them; past that, the first (or last, for logs) lines are
    kept and a last line says how many were left out."""
    limit = SECTION_MAX - 10
    escaped = [escape(line)[: limit - 2] for line in lines] or [" "]
    ordered = escaped if keep == "head" else escaped[::-1]
    chunks: list[list[str]] = [[]]
    size = 0
    shown = 0
    for line in ordered:
        if size + len(line) + 1 > limit:
            if len(chunks) == sections:
                break
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line) + 1
        shown += 1
    if keep == "tail":
        chunks = [chunk[::-1] for chunk in chunks[::-1]]
    blocks = [f"```{chr(10).join(chunk)}```" for chunk in chunks]
    if shown < len(escaped):
        which = "first" if keep == "head" else "last"
        blocks.append(f"_showing the {which} {shown} of {len(escaped)} lines_")
    return blocks


def code(lines: Sequence[str], limit: int = SECTION_MAX - 10) -> str:
    text = "\n".join(escape(line) for line in lines) or " "
    if len(text) > limit:
        text = "…" + text[-(limit - 1) :]
    return f"```{text}```"


def loading_view(title: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The modal a mutating command opens at once, as Slack's JSON: it is opened within the
    burst of commands that asks for it, so it is built (and validated) once per title."""
    return {**_loading_view(title), "private_metadata": json.dumps(metadata)}


@functools.lru_cache(maxsize=64)
def _loading_view(title: str) -> dict[str, Any]:
    view = View(
        type="modal",
        callback_id=CONFIRM_CALLBACK,
        title=PlainTextObject(text=cut(title, 24)),
        close=PlainTextObject(text="Cancel"),
        blocks=[section("⏳ preparing the plan…")],
    )
    return view.to_dict()


def plan_view(
    title: str,
    plan_lines: Sequence[str],
    *,
    env: str,
    protected: bool,
    target: str,
    metadata: dict[str, Any],
    approvals: int,
) -> View:
    blocks: list[Block] = [
        section(f"*Environment:* `{escape(env)}`" + ("  (protected)" if protected else "")),
        section(code(plan_lines)),
    ]
    if approvals:
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f"Needs {approvals} approval(s) from an approver other than you: "
                        "submitting posts an approval request."
                    )
                ]
            )
        )
    if protected:
        blocks.append(
            InputBlock(
                block_id=CONFIRM_BLOCK,
                label=PlainTextObject(text=cut(f"Type {target} to confirm", 2000)),
                element=PlainTextInputElement(action_id=CONFIRM_ACTION, placeholder=target[:150]),
            )
        )
    return View(
        type="modal",
        callback_id=CONFIRM_CALLBACK,
        title=PlainTextObject(text=cut(title, 24)),
        submit=PlainTextObject(text="Request" if approvals else "Run"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(metadata),
        blocks=blocks,
    )


def error_view(title: str, message: str) -> View:
    return View(
        type="modal",
        callback_id=CONFIRM_CALLBACK,
        title=PlainTextObject(text=cut(title, 24)),
        close=PlainTextObject(text="Close"),
        blocks=[section(f"❌ {escape(message)}")],
    )


def progress_blocks(
    *,
    title: str,
    actor: str,
    steps: Sequence[tuple[str, str, str | None]],
    state: str,
    summary: str | None,
    op_id: str,
    validation: dict[str, object] | None = None,
    rollback_value: str | None = None,
) -> list[dict[str, Any]]:
    """One operation's message: header, step list, outcome, and its buttons."""
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=cut(title, 150))),
        ContextBlock(elements=[MarkdownTextObject(text=f"`{op_id}` by <@{actor}> · {state}")]),
    ]
    lines = []
    for i, (name, step_state, detail) in enumerate(steps, 1):
        suffix = f" — {escape(detail)}" if detail else ""
        lines.append(f"{_ICONS.get(step_state, '·')} {i}. {escape(name)}{suffix}")
    blocks.append(section("\n".join(lines) or "no steps"))
    if summary:
        blocks.append(section(f"*{_ICONS.get(state, '')} {state}:* {escape(summary)}"))
    if validation:
        shown = "; ".join(f"{k}: {_plain(v)}" for k, v in validation.items())
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=cut(escape(shown), 2900))]))
    buttons = []
    if state == "running":
        buttons.append(
            ButtonElement(text="Cancel", action_id=CANCEL_ACTION, value=op_id, style="danger")
        )
    if rollback_value is not None:
        buttons.append(
            ButtonElement(text="Roll back", action_id=ROLLBACK_ACTION, value=rollback_value)
        )
    if buttons:
        blocks.append(ActionsBlock(elements=buttons))
    return as_dicts(blocks)


def approval_blocks(
    approval: ApprovalRecord, *, planned_for: str | None = None
) -> list[dict[str, Any]]:
    """The request message of an approval; `planned_for` describes the window it waits for."""
    expires = approval.expires_at.strftime("%H:%M UTC")
    if approval.needed:
        needs = (
            f"{approval.needed} approval(s) needed from an approver other than the requester; "
            f"{'valid until the window closes' if planned_for else 'expires'} {expires}."
        )
    else:
        needs = "No approval needed here."
    head = "Planned" if planned_for else "Approval requested"
    text = (
        f"*{head}* by <@{approval.requester}> in `{escape(approval.env)}`: "
        f"`{escape(approval.command)}`\n{needs}"
    )
    if planned_for:
        text += f"\n{planned_for}"
    blocks: list[Block] = [
        section(text),
        section(code(list(approval.request.get("plan", [])))),
    ]
    if approval.votes:
        said = ", ".join(f"<@{v.voter}> {v.decision}d" for v in approval.votes)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=cut(said, 2900))]))
    if approval.state == "pending":
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text="Approve", action_id=APPROVE_ACTION, value=approval.id, style="primary"
                    ),
                    ButtonElement(
                        text="Reject", action_id=REJECT_ACTION, value=approval.id, style="danger"
                    ),
                ]
            )
        )
    elif approval.state == "approved" and planned_for:
        blocks.append(section("*approved*: starts when the window opens"))
    elif approval.state == "done" and approval.operation_id:
        blocks.append(section(f"*done*: ran as `{approval.operation_id}`"))
    else:
        blocks.append(section(f"*{approval.state}*"))
    return as_dicts(blocks)


def _plain(value: object) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k} {v}" for k, v in value.items())
    return str(value)
