"""Who may do what: roles from configuration, Slack user groups from a cache refreshed in the
background, so a permission check never waits on Slack or a database (the 3-second ack)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from bot.config import Config

logger = logging.getLogger(__name__)

APPROVER_ROLE = "approver"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    pending: bool = False  # the answer depends on a user group not loaded yet
    missing: str | None = None  # "drain in prod": what a refusal names
    instead: str | None = None  # "queue drain": the narrower permission that would do too
    unchecked: str | None = None  # why the user groups could not be read: refused, saying so

    @property
    def why(self) -> str:
        """A refusal's reason, for the audit trail."""
        if self.unchecked:
            return f"roles not readable: {self.unchecked}"
        return f"missing {self.missing}"

    def refusal(self, command: str) -> str:
        """A refusal's text for the user: the missing permission, or why none could be checked."""
        if self.unchecked:
            return (
                f"❌ `{command}` did not run: your roles could not be read from Slack "
                f"({self.unchecked}); try again in a minute"
            )
        or_narrower = f" (or `{self.instead}`)" if self.instead else ""
        return (
            f"❌ you may not run `{command}`: it needs the permission `{self.missing}`{or_narrower}"
        )


@dataclass
class GroupCache:
    """Slack user-group members by group id; `loaded` holds the groups fetched at least once."""

    members: dict[str, frozenset[str]] = field(default_factory=dict)
    refreshed_at: dict[str, datetime] = field(default_factory=dict)

    def replace(self, group: str, users: frozenset[str], now: datetime) -> None:
        self.members[group] = users
        self.refreshed_at[group] = now

    def loaded(self, group: str) -> bool:
        return group in self.refreshed_at


def grants(granted: set[str], permission: str, *narrower: str) -> bool:
    """Whether `permissions` entries allow what needs `permission` (or one of `narrower`)."""
    return permission == "help" or "*" in granted or not granted.isdisjoint((permission, *narrower))


class Rbac:
    def __init__(self, config: Config, groups: GroupCache) -> None:
        self._config = config
        self._groups = groups

    def groups_to_watch(self) -> set[str]:
        return {g for role in self._config.roles.values() for g in role.groups}

    def roles_of(self, user: str) -> tuple[set[str], bool]:
        """The user's roles, and whether a group that could add one is not loaded yet."""
        roles: set[str] = set()
        unknown = False
        for name, role in self._config.roles.items():
            if user in role.users:
                roles.add(name)
                continue
            for group in role.groups:
                if not self._groups.loaded(group):
                    unknown = True
                elif user in self._groups.members.get(group, frozenset()):
                    roles.add(name)
        return roles, unknown

    def permissions(self, user: str, env: str) -> tuple[set[str], bool]:
        roles, unknown = self.roles_of(user)
        granted: set[str] = set()
        for role in roles:
            by_env = self._config.permissions.get(role, {})
            for scope in (env, "*"):
                granted.update(by_env.get(scope, ()))
        return granted, unknown

    def decide(self, user: str, env: str, permission: str, *narrower: str) -> Decision:
        """May `user` do what needs `permission` in `env`? `narrower` names the entries that
        grant it for one command only (`queue status`, `queue *`), as `permissions` may."""
        granted, unknown = self.permissions(user, env)
        if grants(granted, permission, *narrower):
            return Decision(True)
        if unknown:
            return Decision(False, pending=True)
        instead = f"{narrower[0]} in {env}" if narrower else None
        return Decision(False, missing=f"{permission} in {env}", instead=instead)

    def is_approver(self, user: str) -> bool:
        roles, _ = self.roles_of(user)
        return APPROVER_ROLE in roles

    def approvals_needed(self, operation: str, env: str) -> int:
        """From `approvals` in configuration (by environment, or "*"); where it names neither,
        deploy and rollback in protected environments need one (a second pair of eyes on what
        changes code in production)."""
        protected = self._config.env(env).protected
        default = 1 if protected and operation in ("deploy", "rollback") else 0
        # An environment the policy does not name keeps the default: approvals for staging
        # alone must not lift production's.
        by_env = self._config.approvals.get(operation, {})
        return int(by_env.get(env, by_env.get("*", default)))
