"""Who may run what, and the approval policy, as configured."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import parse_config
from bot.errors import ConfigError
from bot.rbac import GroupCache, Rbac
from commands.grammar import parse


def _rbac(approvals: dict[str, Any]) -> Rbac:
    raw = {
        "environments": {
            "staging": {"redis_url": "redis://x", "queues": ["q"]},
            "prod": {"redis_url": "redis://y", "queues": ["q"], "protected": True},
        },
        "approvals": approvals,
    }
    return Rbac(parse_config(raw, environ={}, source="test.yml"), GroupCache())


@pytest.mark.parametrize(
    ("approvals", "operation", "env", "needed"),
    [
        ({}, "deploy", "prod", 1),  # the default: a second pair of eyes in production
        ({}, "rollback", "prod", 1),
        ({}, "restart", "prod", 0),
        ({}, "deploy", "staging", 0),
        # Naming staging alone must not lift production's default.
        ({"deploy": {"staging": 1}}, "deploy", "prod", 1),
        ({"deploy": {"staging": 1}}, "deploy", "staging", 1),
        ({"deploy": {"prod": 2}}, "deploy", "prod", 2),
        ({"deploy": {"prod": 0}}, "deploy", "prod", 0),  # said outright, it is kept
        ({"deploy": {"*": 0}}, "deploy", "prod", 0),
        ({"drain": {"*": 1}}, "drain", "staging", 1),
        ({"drain": {"*": 1}}, "deploy", "prod", 1),
    ],
)
def test_approvals_needed(approvals: dict[str, Any], operation: str, env: str, needed: int):
    assert _rbac(approvals).approvals_needed(operation, env) == needed


def test_the_approval_expiry_is_bounded():
    raw = {
        "environments": {"s": {"redis_url": "redis://x", "queues": ["q"]}},
        "approval_expiry_min": 0,
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, environ={}, source="test.yml")
    assert any(p.startswith("approval_expiry_min") for p in info.value.problems)


@pytest.mark.parametrize(
    ("granted", "command", "allowed"),
    [
        (["status"], "/queue status q", True),  # an operation: under every command
        (["status"], "/worker status w", True),
        (["queue status"], "/queue status q", True),  # one command's only
        (["queue status"], "/worker status w", False),
        (["queue status"], "/window list", False),
        (["queue *"], "/queue drain q", True),
        (["queue *"], "/worker restart w", False),
        (["ops cancel"], "/ops cancel op-0123456789", True),
        (["window list"], "/window list", True),
        (["window list"], "/window cancel w-0a1b2c", False),
        (["*"], "/worker deploy w --ref v1", True),
    ],
)
def test_permissions_name_operations_or_one_command(
    granted: list[str], command: str, allowed: bool
) -> None:
    raw = {
        "environments": {"s": {"redis_url": "redis://x", "queues": ["q"], "workers": {}}},
        "roles": {"r": {"users": ["U1"]}},
        "permissions": {"r": {"s": granted}},
    }
    rbac = Rbac(parse_config(raw, environ={}, source="test.yml"), GroupCache())
    name, _, text = command[1:].partition(" ")
    parsed = parse(name, text)
    decision = rbac.decide("U1", "s", *parsed.grant_names)
    assert decision.allowed is allowed
    if not allowed:
        refusal = decision.refusal(command)
        assert f"`{parsed.permission} in s` (or `{name} {parsed.action} in s`)" in refusal
