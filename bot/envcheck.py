"""The worker's live environment against its `.env.example`: which keys are missing, which are
extra. Only names are ever read into a result; values never leave the process manager.

The runbook's "Verify .env matches .env.example" step, made exact: the live environment is the
one the process manager will give the worker on reload (pm2's saved `env`), and `.env.example`
is the one of the code that will run (the deployed release, or the new one before a switch).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.abc import Target
from bot.errors import OperationFailed, Refused
from bot.git import git, validate_ref

EXAMPLE_FILE = ".env.example"
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
# Set by the shell, the system or the process manager, never by the worker's configuration.
_SYSTEM = frozenset(
    {
        "HOME",
        "HOSTNAME",
        "LANG",
        "LANGUAGE",
        "LOGNAME",
        "NODE_APP_INSTANCE",
        "OLDPWD",
        "PATH",
        "PWD",
        "SHELL",
        "SHLVL",
        "TERM",
        "TMPDIR",
        "TZ",
        "USER",
    }
)
_SYSTEM_PREFIXES = ("PM2_", "LC_", "XDG_", "SSH_", "npm_")


@dataclass(frozen=True)
class EnvCheck:
    example: str  # where .env.example was read
    found: bool  # False: the code has no .env.example, so nothing was compared
    missing: tuple[str, ...]  # named in .env.example, absent from the live environment
    extra: tuple[str, ...]  # set in the live environment, not named in .env.example

    def summary(self) -> str:
        if not self.found:
            return f"no {EXAMPLE_FILE} in {Path(self.example).parent}: nothing to compare"
        parts = [f"missing: {', '.join(self.missing)}" if self.missing else "nothing missing"]
        if self.extra:
            parts.append(f"extra: {', '.join(self.extra)}")
        return f"{'; '.join(parts)} (against {self.example})"


def example_keys(text: str) -> set[str]:
    """The names a `.env.example` declares (`KEY=`, `export KEY=`; comments skipped)."""
    return {m.group(1) for line in text.splitlines() if (m := _LINE.match(line))}


def is_system(name: str) -> bool:
    return name in _SYSTEM or name.startswith(_SYSTEM_PREFIXES)


def compare(live: set[str] | frozenset[str], example: set[str], *, source: str) -> EnvCheck:
    ours = {k for k in live if not is_system(k)}
    return EnvCheck(
        example=source,
        found=True,
        missing=tuple(sorted(example - set(live))),
        extra=tuple(sorted(ours - example)),
    )


async def check_env(target: Target, code_dir: str | Path) -> EnvCheck:
    """Against the `.env.example` in `code_dir`, read on the app's host."""
    source = str(Path(code_dir) / EXAMPLE_FILE)
    text = await target.read_text(source)
    if text is None:
        return EnvCheck(example=source, found=False, missing=(), extra=())
    return compare(await target.env_keys(), example_keys(text), source=source)


def require_complete(check: EnvCheck, *, worker: str, env: str) -> None:
    if check.missing:
        raise Refused(
            f"{worker}'s environment lacks {', '.join(check.missing)}, named in {check.example}; "
            f"set them in the process manager first, or run again with --skip-env-check "
            f"(chatops worker env-check {worker} --env {env})"
        )


async def check_env_at_ref(
    target: Target, *, repo: str, ref: str, env: Mapping[str, str]
) -> EnvCheck:
    """Against the `.env.example` of git `ref` in the local clone `repo`: for workers whose code
    ships in an image (Kubernetes), read where the image was built from."""
    validate_ref(ref)
    source = f"{repo}@{ref}/{EXAMPLE_FILE}"
    found = await git(
        ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        env=env,
        timeout_s=30,
        what=f"look up {ref} in {repo}",
        cwd=repo,
        check=False,
    )
    if found.returncode != 0:
        raise OperationFailed(
            f"{ref} is not in {repo}: fetch it there first (the env-check reads "
            f"{EXAMPLE_FILE} at the image's tag)"
        )
    shown = await git(
        ["show", f"{ref}:{EXAMPLE_FILE}"],
        env=env,
        timeout_s=30,
        what=f"read {EXAMPLE_FILE} at {ref}",
        cwd=repo,
        check=False,
    )
    if shown.returncode != 0:
        return EnvCheck(example=source, found=False, missing=(), extra=())
    return compare(await target.env_keys(), example_keys(shown.output), source=source)
