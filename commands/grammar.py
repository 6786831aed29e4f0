"""The text of `/queue`, `/worker`, `/ops` and `/window` (and the console), parsed into typed
commands.

The flags are the CLI's (`--env`, `--timeout-s`, `--ref`, `--to`, `--all`, `--overdue`,
`--limit`, `--lines`), plus Slack's `--in-window W` (an operation planned for a maintenance
window, which needs the approvals only Slack collects). Parsing never touches anything; an
error names what is wrong.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.errors import BadInput
from bot.git import validate_ref
from bot.targets.kube_objects import is_image_reference

_MAX_TEXT = 2000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_OP_ID = re.compile(r"op-[0-9a-f]{10}")
_WINDOW_ID = re.compile(r"w-[0-9a-f]{6}")
# Printable ASCII without quotes or backslashes: text that shlex would split at spaces alone.
_PLAIN = re.compile(r"[ !#-&(-\[\]-~]*")
_WHEN_DAYS = ("today", "tomorrow")
# The bounds of the number flags, here and in the CLI's options (commands/cli.py).
TIMEOUT_S = (1.0, 24 * 3600.0)
LIMIT = (1, 1000)
LINES = (1, 5000)


@dataclass(frozen=True)
class Action:
    """One subcommand: its permission name, what it takes, and whether it changes anything."""

    name: str
    usage: str
    target: str | None  # "queue", "worker", "op", or None
    mutating: bool
    flags: frozenset[str] = frozenset()
    target_optional: bool = False


ACTIONS: dict[str, dict[str, Action]] = {
    "queue": {
        a.name: a
        for a in (
            Action("status", "status [queue|all]", "queue", False, target_optional=True),
            Action(
                "drain",
                "drain <queue|all> [--timeout-s 300] [--in-window W]",
                "queue",
                True,
                frozenset({"--timeout-s", "--in-window"}),
            ),
            Action("pause", "pause <queue>", "queue", True),
            Action("resume", "resume <queue>", "queue", True),
            Action("failed", "failed <queue> [--limit 20]", "queue", False, frozenset({"--limit"})),
            Action(
                "retry", "retry <queue> (<job-id>...|--all)", "queue", True, frozenset({"--all"})
            ),
            Action("delayed", "delayed <queue>", "queue", False, frozenset({"--limit"})),
            Action(
                "promote",
                "promote <queue> (<job-id>...|--overdue)",
                "queue",
                True,
                frozenset({"--overdue"}),
            ),
            Action("redis-check", "redis-check", None, False),
        )
    },
    "worker": {
        a.name: a
        for a in (
            Action("status", "status <worker>", "worker", False),
            Action("logs", "logs <worker> [--lines 50]", "worker", False, frozenset({"--lines"})),
            Action(
                "restart",
                "restart <worker> [--skip-env-check] [--outside-window|--in-window W]",
                "worker",
                True,
                frozenset({"--skip-env-check", "--outside-window", "--in-window"}),
            ),
            Action(
                "deploy",
                "deploy <worker> [--ref REF] [--skip-env-check] [--outside-window|--in-window W]",
                "worker",
                True,
                frozenset({"--ref", "--skip-env-check", "--outside-window", "--in-window"}),
            ),
            Action(
                "rollback",
                "rollback <worker> [--to REF] [--skip-env-check] [--outside-window|--in-window W]",
                "worker",
                True,
                frozenset({"--to", "--skip-env-check", "--outside-window", "--in-window"}),
            ),
            Action("releases", "releases <worker>", "worker", False),
            Action("env-check", "env-check <worker>", "worker", False),
            Action("duplicates", "duplicates <worker>", "worker", False),
        )
    },
    "ops": {
        a.name: a
        for a in (
            Action("history", "history [--limit 20]", None, False, frozenset({"--limit"})),
            Action("show", "show <op-id>", "op", False),
            Action("incidents", "incidents [--limit 20]", None, False, frozenset({"--limit"})),
            Action("cancel", "cancel <op-id>", "op", True),
            Action("help", "help", None, False),
        )
    },
    "window": {
        a.name: a
        for a in (
            Action("schedule", "schedule <env> <when> <duration> [reason]", "schedule", True),
            Action("list", "list [--env E]", None, False),
            Action("cancel", "cancel <window-id>", "window", True),
            Action("reschedule", "reschedule <window-id> <when> [duration]", "reschedule", True),
        )
    },
}

# The permission each action needs (config `permissions` use these names).
PERMISSION = {"show": "history", "incidents": "history", "help": "help"}
WINDOW_PERMISSION = {
    "schedule": "window",
    "cancel": "window",
    "reschedule": "window",
    "list": "status",
}


def permission_of(command: str, action: str) -> str:
    if command == "window":
        return WINDOW_PERMISSION[action]
    return PERMISSION.get(action, action)


def narrower_grants(command: str, action: str) -> tuple[str, str]:
    """The `permissions` entries that allow `/command action` and nothing under another command
    (its permission's name allows it everywhere: `status` is /queue, /worker and /window's)."""
    return f"{command} {action}", f"{command} *"


def grant_names(command: str, action: str) -> tuple[str, str, str]:
    """Every `permissions` entry that allows `/command action`, its permission's name first."""
    return permission_of(command, action), *narrower_grants(command, action)


# What `permissions` may name besides operations: a subcommand, or every one of a command.
COMMAND_GRANTS = frozenset(
    grant
    for name, actions in ACTIONS.items()
    for a in actions
    for grant in narrower_grants(name, a)
)


_VALUE_FLAGS = {"--env", "--timeout-s", "--ref", "--to", "--limit", "--lines", "--in-window"}
_BOOL_FLAGS = {"--all", "--overdue", "--skip-env-check", "--outside-window"}


@dataclass(frozen=True)
class Parsed:
    command: str  # queue, worker, ops
    action: str
    env: str | None = None
    target: str | None = None
    job_ids: tuple[str, ...] = ()
    all_jobs: bool = False
    timeout_s: float | None = None
    ref: str | None = None
    limit: int | None = None
    lines: int | None = None
    skip_env_check: bool = False
    outside_window: bool = False
    in_window: str | None = None  # planned: runs when this window opens, after its approvals
    when: str | None = None  # window schedule
    duration: str | None = None
    reason: str | None = None

    @property
    def spec(self) -> Action:
        return ACTIONS[self.command][self.action]

    @property
    def permission(self) -> str:
        return permission_of(self.command, self.action)

    @property
    def grant_names(self) -> tuple[str, str, str]:
        return grant_names(self.command, self.action)

    @property
    def mutating(self) -> bool:
        return self.spec.mutating


def _shown(text: str, limit: int = 60) -> str:
    """User text quoted in an error: cut short, so an answer stays readable whatever was typed."""
    quoted = repr(text)
    return quoted if len(quoted) <= limit else quoted[:limit] + "…"


def _flag(name: str) -> str:
    return name if len(name) <= 40 and name.isprintable() else _shown(name)


def _words(text: str) -> list[str]:
    """shlex.split, which costs the ack path more than the rest of parsing, only where needed."""
    return text.split() if _PLAIN.fullmatch(text) else shlex.split(text)


def parse(command: str, text: str) -> Parsed:
    """Parse `text` of `/command`; BadInput with a specific message when it is wrong."""
    command = command.lstrip("/")
    if command not in ACTIONS:
        raise BadInput(
            f"unknown command /{_shown(command, 20)[1:-1]}; known: /queue, /worker, /ops, /window"
        )
    if len(text) > _MAX_TEXT:
        raise BadInput(f"the command text is {len(text)} characters long; at most {_MAX_TEXT}")
    try:
        words = _words(text)
    except ValueError as exc:
        raise BadInput(f"cannot read the command: {exc}") from None
    if not words or words[0] in ("help", "-h", "--help"):
        return (
            Parsed(command, "help") if command == "ops" else Parsed("ops", "help", target=command)
        )
    action_name, rest = words[0], words[1:]
    actions = ACTIONS[command]
    if action_name not in actions:
        raise BadInput(f"/{command} has no {_shown(action_name)}; try: {', '.join(actions)}")
    action = actions[action_name]
    values, flags, positional = _split(rest, action)
    if action.target == "schedule":
        return _schedule(command, action, positional)
    if action.target == "reschedule":
        return _reschedule(command, action, positional)
    target, extra = _target(command, action, positional)
    job_ids = tuple(extra)
    if extra and action.name not in ("retry", "promote"):
        unexpected = _shown(" ".join(extra))
        raise BadInput(
            f"/{command} {action.name} takes one {action.target}; unexpected: {unexpected}"
        )
    check_job_ids(job_ids)
    all_jobs = bool(flags & {"--all", "--overdue"})
    if action.name in ("retry", "promote") and bool(job_ids) == all_jobs:
        flag = "--all" if action.name == "retry" else "--overdue"
        raise BadInput(f"/{command} {action.name} needs job ids or {flag} (not both)")
    ref = values.get("--ref") or values.get("--to")
    if ref is not None and not is_image_reference(ref):  # a Kubernetes worker's image
        validate_ref(ref)
    env = values.get("--env")
    if env is not None and not _NAME.fullmatch(env):
        raise BadInput(f"not an environment name: {_shown(env)}")
    in_window = values.get("--in-window")
    if in_window is not None and not _WINDOW_ID.fullmatch(in_window):
        raise BadInput(f"not a window id: {_shown(in_window)} (see /window list)")
    if in_window is not None and "--outside-window" in flags:
        raise BadInput("--in-window and --outside-window cannot go together")
    return Parsed(
        command=command,
        action=action.name,
        env=env,
        target=target,
        job_ids=job_ids,
        all_jobs=all_jobs,
        timeout_s=_number(values, "--timeout-s", *TIMEOUT_S),
        ref=ref,
        limit=_whole(values, "--limit", *LIMIT),
        lines=_whole(values, "--lines", *LINES),
        skip_env_check="--skip-env-check" in flags,
        outside_window="--outside-window" in flags,
        in_window=in_window,
    )


def _split(words: list[str], action: Action) -> tuple[dict[str, str], set[str], list[str]]:
    values: dict[str, str] = {}
    flags: set[str] = set()
    positional: list[str] = []
    allowed = action.flags | {"--env"}
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, inline = word.partition("=")
        if word.startswith("--"):
            if name not in allowed:
                raise BadInput(
                    f"{action.name} does not take {_flag(name)}; "
                    f"it takes: {' '.join(sorted(allowed))}"
                )
            if name in _BOOL_FLAGS:
                if eq:
                    raise BadInput(f"{name} takes no value")
                flags.add(name)
            elif name in _VALUE_FLAGS:
                if eq:
                    values[name] = inline
                elif i + 1 < len(words):
                    i += 1
                    values[name] = words[i]
                else:
                    raise BadInput(f"{name} needs a value")
        elif word.startswith("-") and len(word) > 1:
            raise BadInput(f"unknown option {_shown(word)}")
        else:
            positional.append(word)
        i += 1
    return values, flags, positional


def check_job_ids(job_ids: Sequence[str]) -> tuple[str, ...]:
    """Job ids as BullMQ makes them (numbers, `repeat:...`) or as producers name them; the CLI
    takes the same."""
    for job_id in job_ids:
        if not _JOB_ID.fullmatch(job_id):
            raise BadInput(f"not a job id: {_shown(job_id)}")
    return tuple(job_ids)


def _target(command: str, action: Action, positional: list[str]) -> tuple[str | None, list[str]]:
    if action.target is None:
        if positional:
            unexpected = _shown(" ".join(positional))
            raise BadInput(f"/{command} {action.name} takes no arguments; unexpected: {unexpected}")
        return None, []
    if not positional:
        if action.target_optional:
            return None, []
        raise BadInput(f"usage: /{command} {action.usage}")
    target, *extra = positional
    pattern = {"op": _OP_ID, "window": _WINDOW_ID}.get(action.target, _NAME)
    if not pattern.fullmatch(target):
        raise BadInput(f"not a {action.target} name: {_shown(target)}")
    return target, extra


def _number(values: dict[str, str], flag: str, low: float, high: float) -> float | None:
    if flag not in values:
        return None
    try:
        number = float(values[flag])
    except ValueError:
        raise BadInput(f"{flag} takes a number, not {_shown(values[flag], 40)}") from None
    if not low <= number <= high:
        raise BadInput(f"{flag} must be between {low:g} and {high:g}")
    return number


def _whole(values: dict[str, str], flag: str, low: int, high: int) -> int | None:
    number = _number(values, flag, low, high)
    if number is not None and not number.is_integer():
        raise BadInput(f"{flag} takes a whole number")
    return None if number is None else int(number)


_CLI_NAMES = {("queue", "redis-check"): "redis_check"}  # `chatops redis check`


def action_help(command: str, action: str) -> str:
    """The first paragraph of the docstring of the CLI command that does the same (one help
    text for both), on one line."""
    if (command, action) == ("ops", "help"):
        return "what you may run here"
    from commands import cli  # the CLI imports this module

    name = _CLI_NAMES.get((command, action), f"{command}_{action}".replace("-", "_"))
    handler = getattr(cli, name, None)
    doc = (handler.__doc__ or "").strip() if handler else ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def help_lines(command: str | None, may: Callable[[str, str], bool] | None) -> list[str]:
    """`/cmd usage: help` lines, only for the subcommands `may(command, action)` allows (None:
    all)."""
    lines = []
    for name, actions in ACTIONS.items():
        if command not in (None, "ops") and name != command:
            continue
        for action in actions.values():
            if may is not None and not may(name, action.name):
                continue
            lines.append(f"/{name} {action.usage}: {action_help(name, action.name)}")
    return lines


def _when_words(rest: list[str]) -> int:
    """How many words WHEN takes: `in 2h` and `HH:MM tomorrow` are two, unquoted."""
    return 2 if rest[0].lower() == "in" or (len(rest) > 1 and rest[1] in _WHEN_DAYS) else 1


def _reschedule(command: str, action: Action, words: list[str]) -> Parsed:
    """`<window-id> <when> [duration]`."""
    usage = f"usage: /{command} {action.usage}"
    if len(words) < 2:
        raise BadInput(usage)
    window_id, rest = words[0], words[1:]
    if not _WINDOW_ID.fullmatch(window_id):
        raise BadInput(f"not a window id: {_shown(window_id)}")
    when_words = _when_words(rest)
    if len(rest) < when_words or len(rest) > when_words + 1:
        raise BadInput(usage)
    return Parsed(
        command=command,
        action=action.name,
        target=window_id,
        when=" ".join(rest[:when_words]),
        duration=rest[when_words] if len(rest) > when_words else None,
    )


def _schedule(command: str, action: Action, words: list[str]) -> Parsed:
    """`<env> <when> <duration> [reason]`; WHEN may be `in 2h` or `HH:MM tomorrow` unquoted."""
    usage = f"usage: /{command} {action.usage}"
    if len(words) < 3:
        raise BadInput(usage)
    env, rest = words[0], words[1:]
    if not _NAME.fullmatch(env):
        raise BadInput(f"not an environment name: {_shown(env)}")
    when_words = _when_words(rest)
    if len(rest) < when_words + 1:
        raise BadInput(usage)
    reason = " ".join(rest[when_words + 1 :])
    if not reason.isprintable():
        raise BadInput("the reason must be plain text")
    return Parsed(
        command=command,
        action=action.name,
        env=env,
        when=" ".join(rest[:when_words]),
        duration=rest[when_words],
        reason=reason or None,
    )
