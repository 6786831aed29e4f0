"""`chatops console`: the real Slack app in-process against the terminal Slack, driven by typed
lines, against real Redis (the scenarios' configuration: environment `test`, queues sla/other)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sqlite3
import sys

import pytest
from rich.console import Console

from bot.config import Config, EnvironmentConfig
from bot.console.render import Choices, block_lines, mrkdwn
from bot.console.repl import ScriptedInputs, console_config, console_user, pick_env, run_console
from bot.errors import BadInput
from tests.scenarios.conftest import ROOT, Scenario


class _AtATerminal(ScriptedInputs):
    """Scripted lines, but handled as a person's at a terminal (Ctrl-C stops following)."""

    interactive = True


async def _console(
    scenario: Scenario,
    lines: list[str],
    *,
    env: str | None = "test",
    live: bool = False,
    terminal: bool = False,
    ctrl_c_when: str | None = None,
) -> str:
    """Run the console on `lines`; with `ctrl_c_when`, press Ctrl-C once that text shows."""
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=terminal or None)
    inputs = (_AtATerminal if ctrl_c_when else ScriptedInputs)(lines, console)

    async def press_ctrl_c() -> None:
        while ctrl_c_when not in out.getvalue():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    pressing = asyncio.create_task(press_ctrl_c()) if ctrl_c_when else None
    try:
        code = await run_console(
            scenario.environ(),
            env=env,
            console=console,
            live=live,
            inputs=inputs,
            answer_timeout_s=20,
        )
    finally:
        if pressing is not None:
            pressing.cancel()
    assert code == 0
    return out.getvalue()


async def _paused(scenario: Scenario, queue: str = "sla") -> bool:
    status = await scenario.json("queue", "status", queue, "--env", "test")
    return bool(status["queues"][0]["paused"])


def _operations(scenario: Scenario) -> list[tuple[str, str, str, str]]:
    db = sqlite3.connect(scenario.tmp / "chatops.sqlite3")
    try:
        return list(db.execute("select kind, actor, source, state from operations order by rowid"))
    finally:
        db.close()


async def test_queue_status_renders_the_counts(scenario: Scenario):
    await scenario.produce("sla", 3)
    output = await _console(scenario, ["/queue status"])
    assert "queues in test" in output
    assert re.search(r"sla\s+no\s+3\s+0", output), output
    assert re.search(r"other\s+no\s+0\s+0", output), output


async def test_pause_shows_the_plan_and_yes_runs_it_to_succeeded(scenario: Scenario):
    output = await _console(scenario, ["/queue pause sla", "y"])
    plan = output.index("pause sla in test")
    assert "Environment: test" in output and "1. pause sla" in output[plan:]
    assert "Run? [y/N] y" in output
    progress = output[output.index("Run? [y/N] y") :]
    assert "running" in progress and "[!1 Cancel]" in progress
    assert progress.rstrip().splitlines()[-1].endswith("jobs stay queued, active ones finish")
    assert "succeeded: sla paused" in progress
    assert await _paused(scenario)
    # The same engine and audit as Slack; the source becomes "console" once SlackDoor takes one.
    assert _operations(scenario) == [("pause", console_user(), "console", "succeeded")]


async def test_answering_no_changes_nothing(scenario: Scenario):
    output = await _console(scenario, ["queue pause sla", "n"])
    assert "pause sla in test" in output
    assert "nothing submitted" in output
    assert not await _paused(scenario)
    assert _operations(scenario) == []


async def test_an_unknown_queue_shows_the_bots_error(scenario: Scenario):
    output = await _console(scenario, ["/queue pause nope", "/queue status nope"])
    said = "unknown queue 'nope' in test; known: other, sla"
    assert output.count(said) == 2, output  # in the modal, then in the private answer
    assert "Run?" not in output
    assert _operations(scenario) == []


async def test_ops_help_lists_the_commands(scenario: Scenario):
    output = await _console(scenario, ["/ops help", "help", "bogus", "!7"])
    for command in ("/queue drain", "/queue retry", "/worker deploy", "/ops history"):
        assert command in output
    assert "!N clicks the button numbered N" in output
    assert "unknown command /bogus" in output
    assert "no button !7" in output


async def test_a_protected_environment_asks_for_the_target_until_it_is_typed(
    scenario: Scenario,
):
    scenario.configure(protected=True)
    output = await _console(scenario, ["/queue pause sla", "other", "y", "sla", "y"])
    assert "Type sla to confirm: other" in output
    assert "type sla exactly to confirm" in output
    assert "succeeded: sla paused" in output
    assert await _paused(scenario)


async def test_ctrl_c_stops_following_and_the_cancel_button_cancels(scenario: Scenario):
    await scenario.produce("sla", 5)  # and no worker: the drain waits for one
    output = await _console(scenario, ["/queue drain sla", "y", "!1"], ctrl_c_when="[!1 Cancel]")
    assert "stopped following; the operation goes on" in output
    after = output[output.index("chatops> !1") :]
    assert "▸ Cancel" in after and "cancelled: cancelled at step" in after
    assert await scenario.flag() == "true"  # the drain put the producers back on
    assert (await scenario.counts())["waiting"] == 5
    assert [(kind, state) for kind, _, _, state in _operations(scenario)] == [
        ("drain", "cancelled")
    ]


async def test_live_progress_on_a_terminal(scenario: Scenario):
    output = await _console(scenario, ["/queue pause sla", "y"], live=True, terminal=True)
    plain_output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    assert "succeeded: sla paused" in plain_output
    assert await _paused(scenario)


async def test_several_environments_need_env(scenario: Scenario):
    scenario.environments["prod"] = {**scenario.env, "prefix": f"{scenario.prefix}p"}
    with pytest.raises(BadInput, match="several environments; pick one with --env"):
        await _console(scenario, [], env=None)


def test_the_console_role_grants_everything_only_to_the_console_user():
    env = EnvironmentConfig(redis_url="redis://x", queues=("sla",))
    config = Config(environments={"a": env, "b": env}, roles={"console": {"users": ["U1"]}})
    assert pick_env(config.model_copy(update={"environments": {"a": env}}), None) == "a"
    changed = console_config(config, user="console:ana", env="b")
    assert changed.roles["console"].users == ("U1",)  # an existing role is left alone
    assert changed.roles["console_"].users == ("console:ana",)
    assert changed.permissions["console_"] == {"*": ("*",)}
    assert changed.environments["b"].channel == "#chatops-console"
    assert changed.environments["a"].channel is None
    assert config.environments["b"].channel is None  # the loaded configuration is untouched


def test_mrkdwn_and_buttons_render_as_text_not_markup():
    lines = mrkdwn("*bold* `code` &lt;b&gt; <@U1> <https://x|link> [red]x[/red]\n```a\nb```")
    assert [line.plain for line in lines] == ["bold code <b> @U1 link [red]x[/red]", "a", "b"]
    choices = Choices()
    blocks = [
        {
            "type": "actions",
            "elements": [
                {"type": "button", "action_id": "go", "value": "1", "text": {"text": "Go"}},
                {"type": "button", "action_id": "stop", "text": {"text": "Stop"}},
            ],
        }
    ]
    shown = block_lines(blocks, where="message:C:1", choices=choices)
    assert shown[0].plain == "[!1 Go]  [!2 Stop]"
    again = block_lines(blocks, where="message:C:1", choices=choices)
    assert again[0].plain == "[!1 Go]  [!2 Stop]"  # the same buttons keep their numbers
    choice = choices.get(2)
    assert choice is not None and choice.action_id == "stop"


async def test_the_cli_console_reads_lines_from_stdin(scenario: Scenario):
    await scenario.produce("sla", 2)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "commands",
        "console",
        "--env",
        "test",
        "--no-live",
        env=scenario.environ(),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    lines = "/queue status sla\n/queue pause sla\ny\n/ops help\n"
    out, err = await asyncio.wait_for(proc.communicate(lines.encode()), 90)
    stdout = out.decode()
    assert proc.returncode == 0, stdout + err.decode()
    assert re.search(r"sla\s+no\s+2\s+0", stdout), stdout
    assert "Run? [y/N] y" in stdout and "succeeded: sla paused" in stdout
    assert "/worker deploy" in stdout
    assert await _paused(scenario)
