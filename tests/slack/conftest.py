"""Fixtures for tests of the fake Slack itself.

``fake_slack`` lives in ``tests/slack/plugin.py`` so that the whole suite can use it once
``tests/conftest.py`` lists the plugin; importing it here makes it available to these tests
either way.
"""

from tests.slack.plugin import fake_slack

__all__ = ["fake_slack"]
