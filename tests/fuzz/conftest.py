"""Fuzz tests: the Slack scenario's fixtures, and a record of the programs this process starts.

`chat` (the real bot over HTTP against the fake Slack, with a signing driver) and `scenario` are
the fixtures of `tests/scenarios`, imported so that pytest finds them here too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.processes import Spawns
from tests.scenarios.conftest import scenario  # noqa: F401
from tests.scenarios.test_slack import chat  # noqa: F401


@pytest.fixture
def spawns() -> Iterator[Spawns]:
    """Every program started from this process until the test ends (`spawns.started`)."""
    with Spawns() as record:
        yield record
