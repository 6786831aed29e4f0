"""Fault tests: the scenarios' `scenario` fixture (the CLI against real Redis, Node workers, pm2),
imported so that pytest finds it here too; modules that put something between the bot and a
service build theirs with `tests.scenarios.conftest.scenario_on`."""

from __future__ import annotations

from tests.scenarios.conftest import scenario  # noqa: F401
