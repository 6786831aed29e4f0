"""Modals: trigger_ids, views as Slack stores them, and each user's stack of open views.

Faithful: a trigger_id is single use and expires 3 s after issue (fake clock) ->
``invalid_trigger_id``/``exchanged_trigger_id``/``expired_trigger_id``; views get an ``id``
("V..."), a ``hash`` that changes on every update, Slack's default fields (``state``,
``root_view_id``, ``previous_view_id``, ``app_id``, ...); a stack holds at most 3 views;
``external_id`` is unique. Simplified: App Home (views.publish) is not stored, a trigger is used
up only by a successful call, and ``views.open`` while a modal is open replaces the stack.
"""

from __future__ import annotations

import copy
import itertools
import secrets
from dataclasses import dataclass
from typing import Any

from tests.slack.clock import FakeClock
from tests.slack.errors import SlackError

MAX_STACK = 3


@dataclass
class Trigger:
    id: str
    user: str | None
    issued_at: float
    used: bool = False


class ViewStore:
    def __init__(
        self, clock: FakeClock, *, team_id: str, app_id: str, bot_id: str, trigger_ttl_s: float
    ) -> None:
        self._clock = clock
        self._team_id = team_id
        self._app_id = app_id
        self._bot_id = bot_id
        self.trigger_ttl_s = trigger_ttl_s
        self.views: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, Trigger] = {}
        self._stacks: dict[str | None, list[str]] = {}
        self._users: dict[str, str | None] = {}
        self._closed: set[str] = set()
        self._external_ids: dict[str, str] = {}
        self._ids = itertools.count(1)

    # trigger_ids

    def new_trigger(self, user: str | None) -> str:
        trigger_id = f"{next(self._ids)}.{int(self._clock.now())}.{secrets.token_hex(16)}"
        self._triggers[trigger_id] = Trigger(trigger_id, user, self._clock.now())
        return trigger_id

    def issued_at(self, trigger_id: str) -> float | None:
        trigger = self._triggers.get(trigger_id)
        return None if trigger is None else trigger.issued_at

    def exchange(self, method: str, trigger_id: object) -> Trigger:
        """The trigger, if it may be used now (the caller marks it ``used`` on success)."""
        if not trigger_id:
            raise SlackError(
                "invalid_arguments",
                violation=f"{method}: missing trigger_id",
                messages=["[ERROR] missing required field: trigger_id"],
            )
        trigger = self._triggers.get(str(trigger_id))
        if trigger is None:
            raise SlackError(
                "invalid_trigger_id", violation=f"{method}: unknown trigger_id {trigger_id}"
            )
        if trigger.used:
            raise SlackError(
                "exchanged_trigger_id", violation=f"{method}: trigger_id {trigger_id} reused"
            )
        age = self._clock.now() - trigger.issued_at
        if age > self.trigger_ttl_s:
            raise SlackError(
                "expired_trigger_id",
                violation=f"{method}: trigger_id used {age:.1f} s after issue "
                f"(> {self.trigger_ttl_s:g} s)",
            )
        return trigger

    # views

    def check_external_id(self, method: str, view: dict[str, Any], view_id: str | None) -> None:
        external_id = view.get("external_id")
        owner = self._external_ids.get(external_id) if external_id else None
        if owner is not None and owner != view_id:
            raise SlackError(
                "duplicate_external_id",
                violation=f"{method}: external_id {external_id!r} already used by {owner}",
            )

    def by_external_id(self, external_id: str) -> str | None:
        return self._external_ids.get(external_id)

    def open(self, user: str | None, view: dict[str, Any]) -> dict[str, Any]:
        for old in self._stacks.get(user, []):
            self._closed.add(old)
        self._stacks[user] = []
        return self.push(user, view)

    def push(self, user: str | None, view: dict[str, Any]) -> dict[str, Any]:
        stack = self._stacks.setdefault(user, [])
        view_id = f"V{next(self._ids):08d}"
        root = self.views[stack[0]]["root_view_id"] if stack else view_id
        stored = self._render(view_id, view, previous=stack[-1] if stack else None, root=root)
        stack.append(view_id)
        self._users[view_id] = user
        return stored

    def replace(self, view_id: str, view: dict[str, Any]) -> dict[str, Any]:
        current = self.views[view_id]
        return self._render(
            view_id, view, previous=current["previous_view_id"], root=current["root_view_id"]
        )

    def close(self, view_id: str, *, all_views: bool = False) -> None:
        stack = self._stacks.get(self._users.get(view_id), [])
        if view_id not in stack:
            self._closed.add(view_id)
            return
        keep = [] if all_views else stack[: stack.index(view_id)]
        self._closed.update(stack[len(keep) :])
        stack[:] = keep

    def is_open(self, view_id: str) -> bool:
        return view_id in self.views and view_id not in self._closed

    def user_of(self, view_id: str) -> str | None:
        return self._users.get(view_id)

    def stack(self, user: str | None) -> list[str]:
        return list(self._stacks.get(user, []))

    def _render(
        self, view_id: str, view: dict[str, Any], *, previous: str | None, root: str
    ) -> dict[str, Any]:
        stored = {
            "id": view_id,
            "team_id": self._team_id,
            "type": view["type"],
            "blocks": copy.deepcopy(view.get("blocks", [])),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(self._clock.now())}.{secrets.token_hex(4)}",
            "title": copy.deepcopy(view.get("title")),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": copy.deepcopy(view.get("close")),
            "submit": copy.deepcopy(view.get("submit")),
            "previous_view_id": previous,
            "root_view_id": root,
            "app_id": self._app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self._team_id,
            "bot_id": self._bot_id,
        }
        self.views[view_id] = stored
        if stored["external_id"]:
            self._external_ids[stored["external_id"]] = view_id
        return stored
