"""Git for deploys: validate a ref from chat, fetch the configured repository, resolve to a commit.

A ref comes from a Slack user, so it is checked against a strict grammar before any git call,
and even then it only ever reaches git as one argv element after `--end-of-options`. Remote
URLs may carry credentials: every message built here masks them.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bot.abc import LineSink
from bot.errors import BadInput, CommandFailed, Refused
from bot.hosts import LOCAL_HOST, Host
from bot.process import Completed
from bot.redact import MASK, redact

StrPath = str | os.PathLike[str]

_COMMIT = re.compile(r"[0-9a-f]{40}")
_ABBREVIATED_COMMIT = re.compile(r"[0-9a-fA-F]{7,40}")
# Stricter than `git check-ref-format`: shell metacharacters such as `$ ( ) ; | &` are legal in
# a ref name but never in a release tag or branch we deploy, so they are refused outright.
_REF_CHARS = re.compile(r"[A-Za-z0-9._/@+-]+")
_MAX_REF_LEN = 200

CACHE_NAME = "repo.git"  # the bare cache inside a deploy directory

# Fetched branches and tags live apart from a checkout's own, and `--prune` stays in there.
_NAMESPACE = "refs/chatops"
_FETCH_REFSPECS = (f"+refs/heads/*:{_NAMESPACE}/heads/*", f"+refs/tags/*:{_NAMESPACE}/tags/*")

# `-c` flags so that nothing depends on the host's or the user's git configuration.
_CONFIG_FLAGS = (
    ("advice.detachedHead", "false"),
    ("init.defaultBranch", "main"),
    ("core.hooksPath", os.devnull),
    ("protocol.ext.allow", "never"),
    ("gc.autoDetach", "false"),  # no background gc outliving the call and its timeout
)
_PASSED_GIT_VARS = frozenset({"GIT_SSH", "GIT_SSH_COMMAND"})


def validate_ref(ref: str) -> str:
    """Return `ref` if it is a plain branch, tag or commit id; raise `BadInput` naming it if not.

    `HEAD~1`, `main^` and `@{-1}` are refused on purpose: a rollback names a recorded release.
    """
    if _ABBREVIATED_COMMIT.fullmatch(ref):
        return ref
    problem = _ref_problem(ref)
    if problem is not None:
        shown = ref if len(ref) <= 80 else ref[:80] + "..."
        raise BadInput(f"invalid ref {shown!r}: {problem}")
    return ref


def _ref_problem(ref: str) -> str | None:
    if not ref:
        return "it is empty"
    if len(ref) > _MAX_REF_LEN:
        return f"longer than {_MAX_REF_LEN} characters"
    if ref.startswith("-"):
        return "it starts with '-'"
    if not _REF_CHARS.fullmatch(ref):
        return "only letters, digits and . _ / @ + - are allowed"
    if ".." in ref or "@{" in ref or ref == "@":
        return "'..', '@{' and a lone '@' are not allowed"
    if ref.startswith("/") or ref.endswith("/") or "//" in ref:
        return "empty path component"
    if ref.endswith("."):
        return "it ends with '.'"
    if any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/")):
        return "a component starts with '.' or ends with '.lock'"
    return None


def validate_commit(commit: str) -> str:
    """A full commit id, lower-cased; `BadInput` for anything else."""
    normalized = commit.lower()
    if not _COMMIT.fullmatch(normalized):
        raise BadInput(f"invalid commit id {commit[:80]!r}: expected 40 hexadecimal digits")
    return normalized


def git_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` made safe for unattended git: never prompts, no system config, always a HOME.

    The caller's `GIT_*` variables are dropped (a stray GIT_DIR would point every command at
    another repository), except the ssh command. ssh cannot prompt either: `run` gives it no
    terminal and no stdin.
    """
    clean = {k: v for k, v in env.items() if not k.startswith("GIT_") or k in _PASSED_GIT_VARS}
    clean.setdefault("HOME", pwd.getpwuid(os.getuid()).pw_dir)
    clean.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    return clean


def display_url(repo: str) -> str:
    """The repository location fit to show: credentials in a URL masked."""
    parts = urlsplit(repo)
    if not parts.scheme or "@" not in parts.netloc:
        return repo
    userinfo, host = parts.netloc.rsplit("@", 1)
    if parts.password is not None:
        masked = f"{parts.username}:{MASK}"
    elif parts.scheme in ("http", "https"):
        masked = MASK  # a bare user part of an http URL is usually a token
    else:
        masked = userinfo
    return parts._replace(netloc=f"{masked}@{host}").geturl()


def url_secrets(repo: str) -> list[str]:
    parts = urlsplit(repo)
    found = [parts.password] if parts.password else []
    if parts.username and parts.password is None and parts.scheme in ("http", "https"):
        found.append(parts.username)
    return [s for s in found if s]


async def git(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    what: str,
    cwd: StrPath | None = None,
    secrets: Iterable[str] = (),
    on_line: LineSink | None = None,
    check: bool = True,
    host: Host = LOCAL_HOST,
) -> Completed:
    """Run `git <args>` with fixed config flags; a failure becomes `CommandFailed("git", ...)`
    whose message starts with `what` and carries git's last lines, secrets masked."""
    hidden = list(secrets)
    flags = [item for key, value in _CONFIG_FLAGS for item in ("-c", f"{key}={value}")]
    try:
        done = await host.run(
            ["git", *flags, *args],
            env=git_env(env),
            cwd=None if cwd is None else os.fspath(cwd),
            timeout_s=timeout_s,
            on_line=redacting_sink(on_line, hidden),
            check=False,
        )
    except CommandFailed as exc:  # timed out, or no git at all
        detail = str(exc).removeprefix(f"{exc.argv0}: ")
        # `from None`: the original message was not redacted by us.
        raise CommandFailed("git", redact(f"{what}: {detail}", secrets=hidden)) from None
    if check and done.returncode != 0:
        complaint = _complaint(done.lines)
        raise CommandFailed(
            "git", redact(f"{what}: exited {done.returncode}: {complaint}", secrets=hidden)
        )
    return done


def _complaint(lines: Sequence[str]) -> str:
    """Git's `fatal:`/`error:` lines, which come before its hints; else its last lines."""
    said = [line.strip() for line in lines if line.strip()]
    errors = [line for line in said if line.startswith(("fatal:", "error:"))]
    return "; ".join(errors[-3:] or said[-3:]) or "no output"


def redacting_sink(on_line: LineSink | None, secrets: Iterable[str] = ()) -> LineSink | None:
    """`on_line` behind `redact`, so no output line reaches chat with a secret in it."""
    if on_line is None:
        return None
    sink = on_line
    hidden = list(secrets)

    async def forward(line: str) -> None:
        await sink(redact(line, secrets=hidden))

    return forward


@dataclass(frozen=True)
class Fetched:
    """Where `fetch_into_cache` fetched to (git's options addressing it) and from (fit to show)."""

    at: tuple[str, ...]
    source: str


async def bare_cache_path(cache_dir: StrPath, *, host: Host = LOCAL_HOST) -> Path:
    """The bare repository `fetch_into_cache` uses for a `cache_dir` that is not a checkout."""
    place = Path(cache_dir)
    is_bare = place.suffix == ".git" or await _is_bare_repository(place, host)
    return place if is_bare else place / CACHE_NAME


async def fetch_into_cache(
    *,
    repo: str,
    cache_dir: StrPath,
    env: Mapping[str, str],
    timeout_s: float,
    host: Host = LOCAL_HOST,
) -> Fetched:
    """Fetch branches and tags into a private namespace of the repository `cache_dir` names.

    `cache_dir` is one of: a checkout (the `in_place` strategy's `repo_path`), fetched from its
    `origin` as the runbook does; a bare repository or a path named `*.git`, fetched from `repo`
    (and created when missing); any other directory (the `releases` strategy's `deploy_path`),
    whose `repo.git` is that bare repository. The namespace leaves a checkout's own branches
    and tags untouched. All of it on `host`.
    """
    place = Path(cache_dir)
    if await host.lexists(str(place / ".git")):
        fetched = Fetched(tuple(in_checkout(place)), f"origin of {place}")
        source = "origin"
    else:
        bare = await bare_cache_path(place, host=host)
        await _ensure_bare_repository(bare, env=env, timeout_s=timeout_s, host=host)
        fetched = Fetched(tuple(in_bare(bare)), display_url(repo))
        source = repo
    await git(
        # `--refmap=`: not even origin/* moves; only the namespace is written.
        [*fetched.at, "fetch", "--prune", "--no-tags", "--refmap=", "--", source]
        + list(_FETCH_REFSPECS),
        env=env,
        timeout_s=timeout_s,
        what=f"fetching {fetched.source}",
        secrets=url_secrets(repo),
        host=host,
    )
    return fetched


async def _ensure_bare_repository(
    path: Path, *, env: Mapping[str, str], timeout_s: float, host: Host
) -> None:
    if await _is_bare_repository(path, host):
        return
    await _claim_empty_directory(path, host)
    await git(
        ["init", "--bare", "--quiet", "--", str(path)],
        env=env,
        timeout_s=timeout_s,
        what=f"creating the repository cache {path}",
        host=host,
    )


async def _is_bare_repository(path: Path, host: Host) -> bool:
    return await host.is_file(str(path / "HEAD")) and await host.is_dir(str(path / "objects"))


async def _claim_empty_directory(path: Path, host: Host) -> None:
    """Create `path`, or check it is empty: a cache never moves into someone else's files."""
    if await host.is_dir(str(path)) and await host.listdir(str(path)):
        raise Refused(
            f"{path} is neither a git repository nor empty: "
            "refusing to create the repository cache there"
        )
    if await host.lexists(str(path)) and not await host.is_dir(str(path)):
        raise Refused(f"{path} is not a directory: refusing to create the repository cache there")
    await host.makedirs(str(path))


async def resolve_ref(
    *,
    repo: str,
    cache_dir: StrPath,
    ref: str,
    env: Mapping[str, str],
    timeout_s: float,
    host: Host = LOCAL_HOST,
) -> str:
    """Fetch (see `fetch_into_cache` for `cache_dir`) and return the commit `ref` names.

    `ref` is a branch, a tag (tags win, as in git) or a possibly abbreviated commit id,
    validated before any git call. `BadInput` when it is malformed or names no commit;
    `CommandFailed` when the fetch fails.
    """
    ref = validate_ref(ref)
    fetched = await fetch_into_cache(
        repo=repo, cache_dir=cache_dir, env=env, timeout_s=timeout_s, host=host
    )
    for candidate in _fetched_names(ref):
        commit = await commit_of(fetched.at, candidate, env=env, timeout_s=timeout_s, host=host)
        if commit is not None:
            return commit
    raise BadInput(
        f"no commit named {ref!r} in {fetched.source} "
        "(an abbreviated commit id must be unambiguous)"
    )


def _fetched_names(ref: str) -> list[str]:
    """Where `ref` can be found after `fetch_into_cache`, in git's order of precedence."""
    if _COMMIT.fullmatch(ref.lower()):
        return [ref.lower()]
    for kind in ("heads", "tags"):
        if ref.startswith(f"refs/{kind}/"):
            return [f"{_NAMESPACE}/{kind}/{ref.removeprefix(f'refs/{kind}/')}"]
    names = [f"{_NAMESPACE}/tags/{ref}", f"{_NAMESPACE}/heads/{ref}"]
    return names + [ref] if _ABBREVIATED_COMMIT.fullmatch(ref) else names


def in_bare(git_dir: StrPath) -> list[str]:
    """Git options that address the bare repository `git_dir`, with no discovery."""
    return ["--git-dir", os.fspath(git_dir)]


def in_checkout(path: StrPath) -> list[str]:
    """Git options that address the checkout at `path` itself, never a repository above it."""
    root = os.fspath(path)
    return ["--git-dir", os.path.join(root, ".git"), "--work-tree", root]


async def commit_of(
    at: Sequence[str],
    rev: str,
    *,
    env: Mapping[str, str],
    timeout_s: float,
    host: Host = LOCAL_HOST,
) -> str | None:
    """The commit `rev` names in the repository `at` addresses, or None.

    `rev` can only ever be read as a revision, whatever it holds.
    """
    done = await git(
        [*at, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        env=env,
        timeout_s=timeout_s,
        what=f"resolving {rev!r}",
        check=False,
        host=host,
    )
    # stderr shares the pipe: a warning (a broken ref, say) must not hide the id.
    commits = [line for line in done.lines if _COMMIT.fullmatch(line)]
    return commits[-1] if done.returncode == 0 and len(commits) == 1 else None


async def require_commit(
    at: Sequence[str],
    commit: str,
    *,
    source: str,
    env: Mapping[str, str],
    timeout_s: float,
    host: Host = LOCAL_HOST,
) -> None:
    """`Refused` unless `commit` is present in the repository `at` addresses."""
    if await commit_of(at, commit, env=env, timeout_s=timeout_s, host=host) != commit:
        raise Refused(
            f"commit {commit} is not in {source} "
            "(was it force-pushed away, or is this the wrong repository?)"
        )
