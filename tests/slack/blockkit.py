"""Block Kit validation for messages and views, in the words Slack answers with.

Each problem is one string shaped like Slack's ``response_metadata.messages`` entries:
``"[ERROR] must be at most 3000 characters [json-pointer:/blocks/0/text/text]"``.

Two layers:

* explicit checks of the documented limits a ChatOps bot is most likely to hit: 50 blocks per
  message, 100 per view, section text 3000 (fields: 10 of 2000), header 150, button text 75 and
  value 2000, option text 75 and value 150, ``action_id``/``block_id`` 255 and unique, 25
  elements per actions block, 10 per context block, text objects well formed and non-empty,
  confirm dialogs, and for views: title/submit/close 24, ``private_metadata`` 3000,
  ``callback_id``/``external_id`` 255, a ``submit`` when input blocks are present;
* slack_sdk's own models (``Block.parse(...)``, ``.validate_json()``, ``.to_dict()``, which
  recurses into elements), for the long tail of block types and limits.

Simplified: Slack's exact wording differs per rule and is not reproduced; a few rules Slack
enforces (URL formats, emoji names, mrkdwn syntax, rich_text structure) are not checked.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

from slack_sdk.models.blocks import Block

MESSAGE_MAX_BLOCKS = 50
VIEW_MAX_BLOCKS = 100
VIEW_MAX_BYTES = 250_000
MESSAGE_TEXT_MAX = 40_000
TEXT_TYPES = ("plain_text", "mrkdwn")
OPTION_LIMITS = {"overflow": 5, "radio_buttons": 10, "checkboxes": 10}
SELECTS = ("static_select", "multi_static_select", "overflow", "radio_buttons", "checkboxes")


def problem(message: str, pointer: str) -> str:
    return f"[ERROR] {message} [json-pointer:{pointer}]"


def validate_message_blocks(blocks: object, *, pointer: str = "/blocks") -> list[str]:
    """Problems with a message's ``blocks`` (chat.post*/update, response_url, acks)."""
    return _validate_blocks(blocks, pointer=pointer, max_blocks=MESSAGE_MAX_BLOCKS)


def validate_view(view: object, *, pointer: str = "/view", kind: str = "modal") -> list[str]:
    """Problems with a view (views.open/update/push: ``kind="modal"``; views.publish: home)."""
    if not isinstance(view, dict):
        return [problem("must be an object", pointer)]
    problems: list[str] = []
    view_type = view.get("type")
    allowed = ("modal",) if kind == "modal" else ("home",)
    if view_type not in allowed:
        problems.append(problem(f"must be one of {list(allowed)}", f"{pointer}/type"))
    if kind == "modal":
        if "title" not in view:
            problems.append(problem("missing required field: title", pointer))
        for name in ("title", "submit", "close"):
            if name in view:
                problems += _text_object(
                    view[name], f"{pointer}/{name}", max_len=24, plain_only=True
                )
    for name, limit in (("private_metadata", 3000), ("callback_id", 255), ("external_id", 255)):
        value = view.get(name)
        if value is not None:
            if not isinstance(value, str):
                problems.append(problem("must be a string", f"{pointer}/{name}"))
            elif len(value) > limit:
                problems.append(problem(f"must be at most {limit} characters", f"{pointer}/{name}"))
    blocks = view.get("blocks")
    if blocks is None:
        problems.append(problem("missing required field: blocks", pointer))
    else:
        problems += _validate_blocks(
            blocks, pointer=f"{pointer}/blocks", max_blocks=VIEW_MAX_BLOCKS
        )
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if kind == "modal" and has_input and "submit" not in view:
            problems.append(
                problem("must provide a submit property when using input blocks", pointer)
            )
    if len(json.dumps(view)) > VIEW_MAX_BYTES:
        problems.append(problem(f"view is larger than {VIEW_MAX_BYTES} bytes", pointer))
    return problems


def input_block_ids(view: dict[str, Any]) -> dict[str, str | None]:
    """``block_id -> action_id`` of every input block in a view (what ``state.values`` keys)."""
    found: dict[str, str | None] = {}
    for block in view.get("blocks") or []:
        if isinstance(block, dict) and block.get("type") == "input" and block.get("block_id"):
            element = block.get("element") or {}
            found[str(block["block_id"])] = element.get("action_id")
    return found


def iter_elements(blocks: object) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(block, element)`` for every interactive element a user can act on in ``blocks``."""
    if not isinstance(blocks, list):
        return
    for block in blocks:
        if not isinstance(block, dict):
            continue
        candidates: list[Any] = []
        if block.get("type") in ("actions", "context_actions"):
            candidates = list(block.get("elements") or [])
        elif block.get("type") == "section" and block.get("accessory"):
            candidates = [block["accessory"]]
        elif block.get("type") == "input" and block.get("element"):
            candidates = [block["element"]]
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id"):
                yield block, element


# -- blocks -------------------------------------------------------------------------------------


def _validate_blocks(blocks: object, *, pointer: str, max_blocks: int) -> list[str]:
    if not isinstance(blocks, list):
        return [problem("must be an array", pointer)]
    problems: list[str] = []
    if len(blocks) > max_blocks:
        problems.append(problem(f"must be less than {max_blocks + 1} items", pointer))
    seen_block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"{pointer}/{i}"
        if not isinstance(block, dict):
            problems.append(problem("must be an object", where))
            continue
        if not isinstance(block.get("type"), str):
            problems.append(problem("missing required field: type", where))
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            problems += _id(block_id, f"{where}/block_id", "block_id")
            if isinstance(block_id, str):
                if block_id in seen_block_ids:
                    problems.append(
                        problem(f"duplicate block_id '{block_id}'", f"{where}/block_id")
                    )
                seen_block_ids.add(block_id)
        # slack_sdk's checks only where ours found nothing, so one mistake is reported once.
        problems += _block(block, where) or _sdk_block(block, where)
    return problems


def _block(block: dict[str, Any], where: str) -> list[str]:
    kind = block["type"]
    problems: list[str] = []
    if kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(problem("must provide either text or fields", where))
        if "text" in block:
            problems += _text_object(block["text"], f"{where}/text", max_len=3000)
        if "fields" in block:
            fields = block["fields"]
            if not isinstance(fields, list) or not fields:
                problems.append(problem("must be a non-empty array", f"{where}/fields"))
            else:
                if len(fields) > 10:
                    problems.append(problem("must be less than 11 items", f"{where}/fields"))
                for j, text in enumerate(fields):
                    problems += _text_object(text, f"{where}/fields/{j}", max_len=2000)
        if "accessory" in block:
            problems += _element(block["accessory"], f"{where}/accessory")
    elif kind == "header":
        problems += _text_object(block.get("text"), f"{where}/text", max_len=150, plain_only=True)
    elif kind in ("actions", "context_actions"):
        problems += _elements(block.get("elements"), f"{where}/elements", max_items=25)
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            problems.append(problem("must be a non-empty array", f"{where}/elements"))
        elif len(elements) > 10:
            problems.append(problem("must be less than 11 items", f"{where}/elements"))
        else:
            for j, element in enumerate(elements):
                if isinstance(element, dict) and element.get("type") in TEXT_TYPES:
                    problems += _text_object(element, f"{where}/elements/{j}", max_len=3000)
    elif kind == "input":
        problems += _text_object(
            block.get("label"), f"{where}/label", max_len=2000, plain_only=True
        )
        if "hint" in block:
            problems += _text_object(block["hint"], f"{where}/hint", max_len=2000, plain_only=True)
        if "element" not in block:
            problems.append(problem("missing required field: element", where))
        else:
            problems += _element(block["element"], f"{where}/element")
    return problems


def _elements(elements: object, where: str, *, max_items: int) -> list[str]:
    if not isinstance(elements, list) or not elements:
        return [problem("must be a non-empty array", where)]
    problems: list[str] = []
    if len(elements) > max_items:
        problems.append(problem(f"must be less than {max_items + 1} items", where))
    seen: set[str] = set()
    for j, element in enumerate(elements):
        problems += _element(element, f"{where}/{j}")
        action_id = element.get("action_id") if isinstance(element, dict) else None
        if isinstance(action_id, str):
            if action_id in seen:
                problems.append(
                    problem(f"duplicate action_id '{action_id}'", f"{where}/{j}/action_id")
                )
            seen.add(action_id)
    return problems


def _element(element: object, where: str) -> list[str]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        return [problem("must be an object with a type", where)]
    problems: list[str] = []
    kind = element["type"]
    if "action_id" in element:
        problems += _id(element["action_id"], f"{where}/action_id", "action_id")
    if "placeholder" in element:
        problems += _text_object(
            element["placeholder"], f"{where}/placeholder", max_len=150, plain_only=True
        )
    if "confirm" in element:
        problems += _confirm(element["confirm"], f"{where}/confirm")
    if kind == "button":
        problems += _text_object(element.get("text"), f"{where}/text", max_len=75, plain_only=True)
        problems += _string(element, "value", where, max_len=2000)
        problems += _string(element, "url", where, max_len=3000)
        style = element.get("style")
        if style is not None and style not in ("primary", "danger"):
            problems.append(problem("must be one of ['primary', 'danger']", f"{where}/style"))
    elif kind in SELECTS:
        options = element.get("options")
        if options is None and kind in ("static_select", "multi_static_select"):
            if "option_groups" not in element:
                problems.append(problem("must provide either options or option_groups", where))
        elif not isinstance(options, list) or not options:
            problems.append(problem("must be a non-empty array", f"{where}/options"))
        else:
            limit = OPTION_LIMITS.get(kind, 100)
            if len(options) > limit:
                problems.append(problem(f"must be less than {limit + 1} items", f"{where}/options"))
            for k, option in enumerate(options):
                problems += _option(option, f"{where}/options/{k}")
    elif kind == "plain_text_input":
        problems += _string(element, "initial_value", where, max_len=3000)
    return problems


def _option(option: object, where: str) -> list[str]:
    if not isinstance(option, dict):
        return [problem("must be an object", where)]
    problems = _text_object(option.get("text"), f"{where}/text", max_len=75)
    value = option.get("value")
    if not isinstance(value, str) or not value:
        problems.append(problem("must be a non-empty string", f"{where}/value"))
    elif len(value) > 150:
        problems.append(problem("must be at most 150 characters", f"{where}/value"))
    return problems


def _confirm(confirm: object, where: str) -> list[str]:
    if not isinstance(confirm, dict):
        return [problem("must be an object", where)]
    problems: list[str] = []
    for name, limit, required in (("title", 100, True), ("text", 300, True)):
        if name in confirm or required:
            problems += _text_object(confirm.get(name), f"{where}/{name}", max_len=limit)
    for name in ("confirm", "deny"):
        if name in confirm:
            problems += _text_object(confirm[name], f"{where}/{name}", max_len=30, plain_only=True)
    return problems


def _text_object(text: object, where: str, *, max_len: int, plain_only: bool = False) -> list[str]:
    if not isinstance(text, dict):
        return [problem("must be a text object ({type, text})", where)]
    types = ("plain_text",) if plain_only else TEXT_TYPES
    problems: list[str] = []
    if text.get("type") not in types:
        problems.append(problem(f"must be one of {list(types)}", f"{where}/type"))
    body = text.get("text")
    if not isinstance(body, str) or not body:
        problems.append(problem("must be more than 0 characters", f"{where}/text"))
    elif len(body) > max_len:
        problems.append(problem(f"must be at most {max_len} characters", f"{where}/text"))
    return problems


def _id(value: object, where: str, name: str) -> list[str]:
    if not isinstance(value, str) or not value:
        return [problem(f"{name} must be a non-empty string", where)]
    if len(value) > 255:
        return [problem("must be at most 255 characters", where)]
    return []


def _string(obj: dict[str, Any], name: str, where: str, *, max_len: int) -> list[str]:
    if name not in obj:
        return []
    value = obj[name]
    if not isinstance(value, str):
        return [problem("must be a string", f"{where}/{name}")]
    if len(value) > max_len:
        return [problem(f"must be at most {max_len} characters", f"{where}/{name}")]
    return []


def _sdk_block(block: dict[str, Any], where: str) -> list[str]:
    """slack_sdk's model checks; its warnings (e.g. deprecated ``subtype``) count as problems."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parsed = Block.parse(dict(block))
            if parsed is None:
                return [problem(f"unsupported block type '{block['type']}'", f"{where}/type")]
            parsed.validate_json()
            parsed.to_dict()
        except Exception as e:  # slack_sdk raises SlackObjectFormationError, TypeError, ...
            return [problem(f"slack_sdk: {type(e).__name__}: {e}", where)]
    return [problem(f"slack_sdk warning: {w.message}", where) for w in caught]
