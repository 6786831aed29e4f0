"""The suite-wide checks (tests/leaks.py, tests/slack/plugin.py) fail a run whose every test
passed, in one process and under pytest-xdist, where each worker sees only its own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LEAKING_TEST = """
import logging

from tests.canary import SIGNING_SECRET


def test_logs_a_secret():
    logging.getLogger("leaky").warning("signing with %s", SIGNING_SECRET)


def test_clean():
    pass
"""

MISUSING_TEST = """
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.slack.fake_slack import FakeSlack


async def test_posts_without_a_channel():
    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        with pytest.raises(SlackApiError):
            await client.chat_postMessage(channel="", text="hi")


def test_clean():
    pass
"""


def run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str, *args: str
) -> pytest.RunResult:
    pytester.makepyfile(test_inner=source)
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    return pytester.runpytest_subprocess("-p", "tests.leaks", "-p", "tests.slack.plugin", *args)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_leaked_canary_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    result = run(pytester, monkeypatch, LEAKING_TEST, *workers)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*canary secrets leaked*", "*leaky: 'signing-canary-*"])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_slack_misuse_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    result = run(pytester, monkeypatch, MISUSING_TEST, *workers)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*unacknowledged fake Slack violations*", "*chat.postMessage: missing required channel*"]
    )


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_clean_run_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    result = run(pytester, monkeypatch, "def test_clean():\n    pass\n", *workers)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
