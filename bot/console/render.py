"""Block Kit as a terminal shows it: Slack mrkdwn to rich Text, a message or modal as a list of
lines, and buttons as numbered choices (`!1`, `!2`) whose numbers stay the same while they show.

Everything the bot sends is data here, never rich markup: text is appended to `Text` objects, so
a log line holding `[bold]` or a job name holding `*` prints as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text

_FENCE = re.compile(r"```(.*?)```", re.S)
_INLINE = re.compile(r"`[^`\n]+`|\*[^*\n]+\*|<[^<>\n]+>")
_BUTTON_STYLES = {"danger": "bold red", "primary": "bold green"}


def unescape(text: str) -> str:
    """Slack's three escaped characters back to themselves (`&amp;` last)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def mrkdwn(text: str) -> list[Text]:
    """Slack mrkdwn as lines: *bold*, `code`, ```preformatted```, <@user>, <url|label>."""
    out = Text()
    pos = 0
    for match in _FENCE.finditer(text):
        _inline(out, text[pos : match.start()])
        if out.plain and not out.plain.endswith("\n"):
            out.append("\n")
        out.append(unescape(match.group(1)).strip("\n"))
        pos = match.end()
        if pos < len(text) and text[pos] != "\n":
            out.append("\n")
    _inline(out, text[pos:])
    return list(out.split("\n", allow_blank=True))


def _inline(out: Text, text: str) -> None:
    pos = 0
    for match in _INLINE.finditer(text):
        out.append(unescape(text[pos : match.start()]))
        token = match.group(0)
        if token.startswith("`"):
            out.append(unescape(token[1:-1]), style="cyan")
        elif token.startswith("*"):
            out.append(unescape(token[1:-1]), style="bold")
        else:
            shown, style = _link(token[1:-1])
            out.append(unescape(shown), style=style)
        pos = match.end()
    out.append(unescape(text[pos:]))


def _link(inner: str) -> tuple[str, str]:
    target, _, label = inner.partition("|")
    if target.startswith(("@", "#")):
        return target[0] + (label or target[1:]), "bold"
    if target.startswith("!"):  # <!here>, <!subteam^S123|@oncall>
        return label or "@" + target[1:].split("^")[0], "bold"
    return label or target, "underline"


def plain(obj: Any) -> str:
    """The text of a plain_text or mrkdwn object ("" for anything else)."""
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def text_lines(obj: Any) -> list[Text]:
    if not isinstance(obj, dict):
        return []
    raw = str(obj.get("text", ""))
    if obj.get("type") == "mrkdwn":
        return mrkdwn(raw)
    return [Text(line) for line in raw.split("\n")]


@dataclass(frozen=True)
class Choice:
    """A button as the user can pick it: `!number`."""

    number: int
    where: str  # "message:<channel>:<ts>" or "view:<id>"
    block_id: str
    action_id: str
    value: str | None
    label: str


class Choices:
    """Numbers for buttons, one per (place, action_id, value), kept for the whole session."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str | None], Choice] = {}
        self._by_number: dict[int, Choice] = {}

    def choice(self, where: str, block_id: str, element: dict[str, Any]) -> Choice:
        value = element.get("value")
        key = (where, str(element.get("action_id", "")), None if value is None else str(value))
        found = self._by_key.get(key)
        if found is None:
            found = Choice(
                number=len(self._by_number) + 1,
                where=where,
                block_id=block_id,
                action_id=key[1],
                value=key[2],
                label=plain(element.get("text")) or key[1],
            )
            self._by_key[key] = found
            self._by_number[found.number] = found
        return found

    def get(self, number: int) -> Choice | None:
        return self._by_number.get(number)


def block_lines(blocks: Iterable[Any], *, where: str, choices: Choices) -> list[Text]:
    """The lines a terminal shows for `blocks`; buttons are numbered in `choices`."""
    lines: list[Text] = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        block_id = str(block.get("block_id") or f"b{i}")
        if kind == "header":
            lines += [
                Text(line.plain, style="bold underline") for line in text_lines(block["text"])
            ]
        elif kind == "section":
            lines += text_lines(block.get("text"))
            for field in block.get("fields") or []:
                lines += text_lines(field)
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and accessory.get("type") == "button":
                lines.append(_buttons([accessory], where, block_id, choices))
        elif kind == "context":
            for element in block.get("elements") or []:
                shown = text_lines(element) or [Text(f"[{plain(element) or 'image'}]")]
                for line in shown:
                    line.stylize("dim")
                    lines.append(line)
        elif kind == "divider":
            lines.append(Text("─" * 40, style="dim"))
        elif kind == "actions":
            elements = [e for e in block.get("elements") or [] if isinstance(e, dict)]
            buttons = [e for e in elements if e.get("type") == "button"]
            if buttons:
                lines.append(_buttons(buttons, where, block_id, choices))
            for other in elements:
                if other.get("type") != "button":
                    lines.append(Text(f"[{other.get('type')}: not available here]", style="dim"))
        elif kind == "input":
            label = plain(block.get("label"))
            lines.append(Text.assemble(("✎ ", "bold"), label, (" (asked below)", "dim")))
        elif kind == "image":
            lines.append(Text(f"[image: {block.get('alt_text', '')}]", style="dim"))
        else:
            lines.append(Text(f"[{kind} block]", style="dim"))
    return lines


def _buttons(elements: list[dict[str, Any]], where: str, block_id: str, choices: Choices) -> Text:
    out = Text()
    for element in elements:
        choice = choices.choice(where, block_id, element)
        if out.plain:
            out.append("  ")
        out.append(
            f"[!{choice.number} {choice.label}]",
            style=_BUTTON_STYLES.get(str(element.get("style")), "bold"),
        )
    return out


def message_lines(
    text: str, blocks: list[Any] | None, *, where: str, choices: Choices
) -> list[Text]:
    """A message as Slack shows it: its blocks, or its text when it has none."""
    if blocks:
        return block_lines(blocks, where=where, choices=choices)
    return mrkdwn(text)


def input_blocks(view: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(block_id, action_id, element type, label) of each input block of a modal."""
    found = []
    for i, block in enumerate(view.get("blocks") or []):
        if isinstance(block, dict) and block.get("type") == "input":
            element = block.get("element") or {}
            found.append(
                (
                    str(block.get("block_id") or f"b{i}"),
                    str(element.get("action_id") or f"a{i}"),
                    str(element.get("type") or "plain_text_input"),
                    plain(block.get("label")) or "value",
                )
            )
    return found
