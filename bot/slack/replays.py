"""Slash commands seen lately, so a replayed signed request runs nothing a second time.

Checked before the ack, so in memory: Bolt refuses any request signed more than 5 minutes ago,
so remembering 10 minutes covers every replay it lets through. Another replica does not see
this memory; there a replayed command can at most answer a read-only query again, since its
modal cannot open twice (a trigger_id is single-use) and confirmations are remembered in the
store.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

REMEMBER_S = 600.0
MAX_REMEMBERED = 100_000


class RecentRequests:
    def __init__(
        self,
        *,
        remember_s: float = REMEMBER_S,
        max_remembered: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._remember_s = remember_s
        self._max = max_remembered
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, key: str) -> bool:
        """True the first time `key` is offered within the window; False for a replay."""
        now = self._clock()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self._remember_s and len(self._seen) < self._max:
                break
            del self._seen[oldest]
        if key in self._seen:
            return False
        self._seen[key] = now
        return True
