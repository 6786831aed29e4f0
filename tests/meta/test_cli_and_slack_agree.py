"""The slash commands and the CLI are two parsers of one set of commands: every flag a slash
command takes, the CLI command of the same name takes too, within the same bounds, and both
refuse the same job ids with the same words."""

from __future__ import annotations

from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from bot.errors import BadInput
from commands import cli
from commands.grammar import ACTIONS, LIMIT, LINES, TIMEOUT_S, parse

# Planned for a maintenance window: it needs the approvals only Slack collects.
SLACK_ONLY = {"--in-window"}
BOUNDS = {"--timeout-s": TIMEOUT_S, "--limit": LIMIT, "--lines": LINES}
CLI_PATH = {("queue", "redis-check"): ("redis", "check")}
PAIRS = [(c, a) for c, actions in ACTIONS.items() for a in actions if a != "help"]


def _cli_command(command: str, action: str) -> Any:
    """The click command typer builds (typer vendors click: its classes are not imported)."""
    node: Any = get_command(cli.app)
    for name in CLI_PATH.get((command, action), (command, action)):
        assert hasattr(node, "commands"), f"chatops {command} is not a group"
        found = node.commands.get(name)
        assert found is not None, f"no CLI command for /{command} {action}"
        node = found
    return node


@pytest.mark.parametrize(("command", "action"), PAIRS, ids=[f"{c}-{a}" for c, a in PAIRS])
def test_every_slash_flag_is_a_cli_option_with_the_same_bounds(command: str, action: str):
    options = {
        name: param
        for param in _cli_command(command, action).params
        if param.param_type_name == "option"
        for name in param.opts
    }
    for flag in ACTIONS[command][action].flags - SLACK_ONLY:
        assert flag in options, f"/{command} {action} takes {flag}; the CLI does not"
        if flag in BOUNDS:
            bounds = (options[flag].min, options[flag].max)
            assert bounds == BOUNDS[flag], f"{flag} of chatops {command} {action}: {bounds}"


@pytest.mark.parametrize("job_id", ["bad!id", "a" * 129, "x/y", "_x"])
def test_both_refuse_the_same_job_ids(job_id: str):
    with pytest.raises(BadInput) as slack:
        parse("/queue", f"retry sla {job_id}")
    result = CliRunner().invoke(cli.app, ["queue", "retry", "sla", job_id, "--env", "test"])
    assert result.exit_code == 2, result.output
    assert " ".join(str(slack.value).split()) in " ".join(result.output.split())


def test_both_take_a_job_id_bullmq_makes():
    assert parse("/queue", "retry sla 42 repeat:abc:1700000000000").job_ids == (
        "42",
        "repeat:abc:1700000000000",
    )
