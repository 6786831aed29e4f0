"""Slack's Web API rate limits, on the fake's clock.

Faithful: limits are per method per workspace, by the tier in the method reference, over a
sliding 60 s window; ``chat.postMessage`` is limited per channel to about one message a second
with a short burst allowed; an exceeded limit answers HTTP 429 with ``Retry-After`` seconds.

Simplified: Slack publishes tiers as "N+ per minute" and tolerates short bursts above them; the
fake enforces N exactly (the bot should stay below, never near, the limit). Tier ``t5`` (Slack's
"special" tier, e.g. ``auth.test``) and untiered methods are unlimited, and so is Slack's
workspace-wide cap of several hundred messages a minute. Rejected calls do not use up the window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from tests.slack.methods import MethodSpec

WINDOW_S = 60.0
TIER_PER_MINUTE: dict[str, int] = {"t1": 1, "t2": 20, "t3": 50, "t4": 100}


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """Decides whether a call is allowed now; ``check`` returns None or the Retry-After seconds."""

    per_minute: dict[str, int] = field(default_factory=lambda: dict(TIER_PER_MINUTE))
    post_message_per_s: float = 1.0
    post_message_burst: int = 4
    enabled: bool = True
    _windows: dict[str, deque[float]] = field(default_factory=dict)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def check(self, spec: MethodSpec, channel: str | None, now: float) -> int | None:
        if not self.enabled:
            return None
        if spec.name == "chat.postMessage" and channel:
            return self._take_token(channel, now)
        limit = self.per_minute.get(spec.rate_tier or "")
        if limit is None:
            return None
        window = self._windows.setdefault(spec.name, deque())
        while window and window[0] <= now - WINDOW_S:
            window.popleft()
        if len(window) >= limit:
            return max(1, math.ceil(window[0] + WINDOW_S - now))
        window.append(now)
        return None

    def _take_token(self, channel: str, now: float) -> int | None:
        bucket = self._buckets.get(channel)
        if bucket is None:
            bucket = self._buckets[channel] = _Bucket(float(self.post_message_burst), now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(
            float(self.post_message_burst), bucket.tokens + elapsed * self.post_message_per_s
        )
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / self.post_message_per_s))

    def reset(self) -> None:
        self._windows.clear()
        self._buckets.clear()
