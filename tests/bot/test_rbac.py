"""The approval policy as configured: how many approvals an operation needs where."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import parse_config
from bot.errors import ConfigError
from bot.rbac import GroupCache, Rbac


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
