"""The console runs the Slack door against the scenarios' real Redis and configuration."""

from tests.scenarios.conftest import scenario  # noqa: F401
