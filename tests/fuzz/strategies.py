"""Hypothesis strategies for slash-command text: garbage, huge, hostile, and valid commands."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from bot.errors import BadInput
from bot.git import validate_ref
from commands.grammar import ACTIONS

COMMANDS = ("queue", "worker", "ops")
SHELL = [";", "|", "&", "&&", "||", "$(", ")", "`", ">", "<", ">>", "$", "\\", "*", "~", "#"]
QUOTES = ['"', "'", "\"'", "'\"", '\\"']
ODD_CHARS = [
    "\x00",  # NUL
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",  # byte order mark
    "\u202e",  # right-to-left override
    "\u2067",  # right-to-left isolate
    "\u00a0",  # no-break space
    "\u2003",  # em space
    "\u3000",  # ideographic space
    "\u0661",  # Arabic-Indic digit one
    "\u05d0",  # Hebrew alef
    "\U0001f600",  # emoji (outside the BMP)
    "\r",
    "\n",
    "\t",
    "\x0b",
    "\x1b[31m",  # a terminal escape
]
FLAGS = [
    "--env",
    "--timeout-s",
    "--ref",
    "--to",
    "--all",
    "--overdue",
    "--limit",
    "--lines",
    "--in-window",
    "--bogus",
    "--",
    "-",
    "-h",
    "--help",
    "-e",
]
SEPARATORS = [" ", "  ", "\t", "\n", " \n "]

# Anything Slack can carry: every code point but the surrogates (not UTF-8 encodable).
any_char = st.characters(exclude_categories=("Cs",))

safe_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True)
job_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,15}", fullmatch=True)
op_ids = st.from_regex(r"op-[0-9a-f]{10}", fullmatch=True)


def _valid_ref(ref: str) -> bool:
    try:
        validate_ref(ref)
    except BadInput:
        return False
    return True


# Refs git accepts (the grammar checks them as the deploy would: `0/`, `a..b` are refused).
refs = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_./@+-]{0,20}", fullmatch=True).filter(_valid_ref)


def _env_value_forms(value: str) -> list[list[str]]:
    return [["--env", value], [f"--env={value}"]]


@st.composite
def hostile_tokens(draw: st.DrawFn) -> str:
    """One word of a hostile command line."""
    return draw(
        st.one_of(
            st.sampled_from(FLAGS),
            st.sampled_from(SHELL),
            st.sampled_from(QUOTES),
            st.sampled_from(ODD_CHARS),
            st.sampled_from([name for actions in ACTIONS.values() for name in actions]),
            st.sampled_from(["sla", "other", "all", "test", "help", "op-0123456789", "300"]),
            safe_names,
            st.builds(
                lambda f, v: f"{f}={v}", st.sampled_from(FLAGS), st.text(any_char, max_size=8)
            ),
            st.builds(lambda v: f"$({v})", st.sampled_from(["touch /tmp/x", "id", "rm -rf ~"])),
            st.text(any_char, max_size=12),
        )
    )


@st.composite
def hostile_text(draw: st.DrawFn) -> str:
    """Words from `hostile_tokens` between odd separators: reaches every branch of the parser."""
    words = draw(st.lists(hostile_tokens(), max_size=10))
    out = ""
    for word in words:
        out += draw(st.sampled_from(SEPARATORS)) + word
    return out


def huge_text(min_size: int = 1900, max_size: int = 10_000) -> st.SearchStrategy[str]:
    """A repeated chunk, around and beyond the parser's 2000-character limit."""
    return st.builds(
        lambda chunk, size: (chunk * (size // len(chunk) + 1))[:size],
        st.one_of(
            st.text(any_char, min_size=1, max_size=20),
            st.sampled_from(["drain sla ", "retry sla j1 ", '"', "\x00", "\u202e", "a\t"]),
        ),
        st.integers(min_size, max_size),
    )


@dataclass
class Command:
    """A valid command and what it must parse to."""

    command: str
    action: str
    words: list[str]  # positional words, in order (action first)
    flags: list[list[str]] = field(default_factory=list)  # each group stays together
    expect: dict[str, Any] = field(default_factory=dict)


@st.composite
def valid_commands(
    draw: st.DrawFn,
    envs: st.SearchStrategy[str] = safe_names,
    names: st.SearchStrategy[str] = safe_names,
) -> Command:
    """A valid command: `envs` for --env values, `names` for queues and workers."""
    command = draw(st.sampled_from(COMMANDS))
    action = draw(st.sampled_from(sorted(ACTIONS[command])))
    spec = ACTIONS[command][action]
    cmd = Command(command, action, [action])
    if action == "help":  # `help` ignores whatever follows it
        cmd.expect.update(target=None, env=None)
        return cmd
    if spec.target == "op":
        cmd.words.append(draw(op_ids))
        cmd.expect["target"] = cmd.words[-1]
    elif spec.target is not None and not (spec.target_optional and draw(st.booleans())):
        cmd.words.append(draw(names))
        cmd.expect["target"] = cmd.words[-1]
    else:
        cmd.expect["target"] = None
    if action in ("retry", "promote"):
        if draw(st.booleans()):
            ids = draw(st.lists(job_ids, min_size=1, max_size=4))
            cmd.words += ids
            cmd.expect["job_ids"] = tuple(ids)
            cmd.expect["all_jobs"] = False
        else:
            cmd.flags.append(["--all" if action == "retry" else "--overdue"])
            cmd.expect["job_ids"] = ()
            cmd.expect["all_jobs"] = True
    if draw(st.booleans()):
        env = draw(envs)
        cmd.flags.append(draw(st.sampled_from(_env_value_forms(env))))
        cmd.expect["env"] = env
    else:
        cmd.expect["env"] = None
    if "--timeout-s" in spec.flags and draw(st.booleans()):
        seconds = draw(
            st.one_of(
                st.integers(1, 24 * 3600).map(float),
                st.floats(1, 24 * 3600, allow_nan=False, allow_infinity=False),
            )
        )
        shown = draw(st.sampled_from([repr(seconds), f"{seconds:g}", str(seconds)]))
        cmd.flags.append(draw(st.sampled_from([["--timeout-s", shown], [f"--timeout-s={shown}"]])))
        cmd.expect["timeout_s"] = float(shown)
    for flag, key, high in (("--limit", "limit", 1000), ("--lines", "lines", 5000)):
        if flag in spec.flags and draw(st.booleans()):
            n = draw(st.integers(1, high))
            cmd.flags.append(draw(st.sampled_from([[flag, str(n)], [f"{flag}={n}"]])))
            cmd.expect[key] = n
    for flag in ("--ref", "--to"):
        if flag in spec.flags and draw(st.booleans()):
            ref = draw(refs)
            cmd.flags.append([flag, ref])
            cmd.expect["ref"] = ref
    return cmd


@st.composite
def rendered(draw: st.DrawFn, cmd: Command) -> str:
    """`cmd` as text: flags in any position, words quoted or not, odd whitespace between."""
    groups = draw(st.permutations(cmd.flags)) if cmd.flags else []
    slots: list[list[str]] = [[] for _ in range(len(cmd.words))]
    for group in groups:
        # Anywhere after the action: flags before, between or after the positional words.
        slots[draw(st.integers(0, len(cmd.words) - 1))].append(" ".join(group))
    tokens: list[str] = []
    for i, word in enumerate(cmd.words):
        tokens.append(_quoted(draw, word))
        for group in slots[i]:
            tokens += [_quoted(draw, part) for part in group.split(" ")]
    sep = draw(st.sampled_from(SEPARATORS))
    return draw(st.sampled_from(["", " ", "\t"])) + sep.join(tokens)


def _quoted(draw: st.DrawFn, word: str) -> str:
    form = draw(st.sampled_from(["plain", "shlex", "double", "single"]))
    if form == "shlex":
        return shlex.quote(word)
    if form == "double":
        return f'"{word}"'
    if form == "single":
        return f"'{word}'"
    return word


@st.composite
def valid_command_texts(
    draw: st.DrawFn,
    envs: st.SearchStrategy[str] = safe_names,
    names: st.SearchStrategy[str] = safe_names,
) -> tuple[Command, str]:
    cmd = draw(valid_commands(envs, names))
    return cmd, draw(rendered(cmd))


@st.composite
def mutated_valid_text(draw: st.DrawFn) -> str:
    """A valid command with one token replaced or one hostile token inserted."""
    _, text = draw(valid_command_texts())
    words = text.split(" ")
    i = draw(st.integers(0, len(words)))
    token = draw(hostile_tokens())
    if i < len(words) and draw(st.booleans()):
        words[i] = token
    else:
        words.insert(i, token)
    return " ".join(words)


def command_texts(max_garbage: int = 300) -> st.SearchStrategy[str]:
    """Everything above, for `/queue`, `/worker` and `/ops` alike."""
    return st.one_of(
        st.text(any_char, max_size=max_garbage),
        hostile_text(),
        valid_command_texts().map(lambda pair: pair[1]),
        mutated_valid_text(),
    )
