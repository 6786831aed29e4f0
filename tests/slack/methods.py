"""Slack's Web API method reference (``shared/slack-api/methods/*.json``), loaded once.

Each file (from slack-ruby/slack-api-ref) gives a method's preferred HTTP method, rate-limit tier,
whether it accepts a JSON body, its required and known arguments, and the bot scopes that allow
it. The fake validates every call against this, so a method or argument name the bot invents is
caught here and not in production.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

#: CI copies ``shared/`` beside the clone; locally it lives at ``/work/shared``.
DEFAULT_METHODS_DIR = Path(__file__).resolve().parents[3] / "shared/slack-api/methods"


def methods_dir() -> Path:
    """``$SLACK_METHODS_DIR`` if set, else the ``shared/`` beside the repository."""
    env = os.environ.get("SLACK_METHODS_DIR")
    return Path(env) if env else DEFAULT_METHODS_DIR


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    http_method: str
    """``POST`` or ``GET``: the method Slack documents (Slack accepts POST for GET methods too)."""
    rate_tier: str | None
    """``t1``..``t4``, ``t5`` (Slack's "special" tier) or None."""
    json_input_supported: bool
    required: frozenset[str]
    """Required arguments, without ``token`` (checked separately)."""
    properties: frozenset[str]
    bot_scopes: frozenset[str]
    """Any one of these scopes allows the call with a bot token (empty: no scope needed)."""
    user_scope_only: bool


def _spec(name: str, raw: dict[str, Any]) -> MethodSpec:
    args = raw.get("args") or {}
    scope = raw.get("scope") or {}
    return MethodSpec(
        name=name,
        http_method=str(raw.get("http_method", "POST")).upper(),
        rate_tier=raw.get("rate_limits") if isinstance(raw.get("rate_limits"), str) else None,
        json_input_supported=raw.get("json_input_supported") is True,
        required=frozenset(args.get("required") or ()) - {"token"},
        properties=frozenset((args.get("properties") or {}).keys()),
        bot_scopes=frozenset(scope.get("bot") or ()) if isinstance(scope, dict) else frozenset(),
        user_scope_only=raw.get("user_scope_only") is True,
    )


@cache
def load_methods(directory: Path) -> dict[str, MethodSpec]:
    """Every ``<method>.json`` in ``directory`` (the ``methods.json`` index is not a method)."""
    if not directory.is_dir():
        raise FileNotFoundError(
            f"Slack method reference not found at {directory}; set SLACK_METHODS_DIR"
        )
    specs: dict[str, MethodSpec] = {}
    for path in sorted(directory.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and "http_method" in raw:
            specs[path.stem] = _spec(path.stem, raw)
    return specs
