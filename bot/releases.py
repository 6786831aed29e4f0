"""Releases: check out a commit and build it, then point the worker at it.

Two strategies, per worker in configuration:

`releases` (default). Under `deploy_path`:
    repo.git/           bare cache of the configured repository (`bot.git.fetch_into_cache`)
    releases/<commit>/  an independent clone of the cache at exactly that commit, built in place;
                        `.chatops-built` inside marks a finished build
    current ->          symlink to `releases/<commit>`, switched atomically by `switch_current`
Each release is built at its final path because node tooling (pnpm's shims, generated clients)
bakes absolute paths in; the marker, written last, is what makes a directory a release. A
failed or interrupted build is removed, and one left by a crash (no marker) is never reused or
switched to. Rolling back switches `current` to a release that is still built, so it needs no
rebuild. Releases are clones (`git clone --local`, objects hardlinked), not worktrees, so that
deleting one or pruning the cache never breaks another.

`in_place`: the runbook's single checkout `repo_path` (also `resolve_ref`'s `cache_dir`):
refuse uncommitted changes, `git fetch origin`, `git checkout --detach <commit>`, build. There
preparing IS switching: the worker's files change under it, so the engine must reload right
after, and a failed build leaves the checkout at the new commit with a broken build (the
running process is untouched until the next reload). Rolling back means preparing the
known-good commit again, which rebuilds it.

Nothing here talks to the process manager or the store; the engine sequences the steps and
must hold the target's lock, since two prepares of one deploy directory would collide.
"""

from __future__ import annotations

import os
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot.abc import LineSink
from bot.errors import CommandFailed, Refused
from bot.git import (
    CACHE_NAME,
    StrPath,
    commit_of,
    fetch_into_cache,
    git,
    in_bare,
    in_checkout,
    redacting_sink,
    require_commit,
    resolve_ref,
    validate_commit,
)
from bot.hosts import LOCAL_HOST, Host
from bot.redact import redact

__all__ = [
    "BUILT_MARKER",
    "Release",
    "Strategy",
    "current_commit",
    "head_commit",
    "is_built",
    "prepare_release",
    "release_path",
    "repo_cache_path",
    "resolve_ref",
    "switch_current",
]

Strategy = Literal["releases", "in_place"]

BUILT_MARKER = ".chatops-built"
_CURRENT = "current"
_RELEASES = "releases"
_REMOVING = ".removing-"
_MAX_DIRTY_SHOWN = 10
_TAIL_LINES = 5


@dataclass(frozen=True)
class Release:
    commit: str
    path: Path
    reused: bool  # True when an existing build was kept and nothing was run


def repo_cache_path(deploy_path: StrPath) -> Path:
    """The bare cache of the `releases` strategy: `resolve_ref` fetches into it when given
    `deploy_path` (or this path itself) as `cache_dir`."""
    return Path(deploy_path) / CACHE_NAME


def release_path(deploy_path: StrPath, commit: str) -> Path:
    """Where the release of `commit` lives (built or not); `BadInput` for a malformed commit."""
    return Path(deploy_path) / _RELEASES / validate_commit(commit)


async def is_built(deploy_path: StrPath, commit: str, *, host: Host = LOCAL_HOST) -> bool:
    """Whether `commit` has a finished build that `switch_current` can point at."""
    return await host.is_file(str(release_path(deploy_path, commit) / BUILT_MARKER))


async def current_commit(deploy_path: StrPath, *, host: Host = LOCAL_HOST) -> str | None:
    """The commit `current` points to; None when there is no `current` yet."""
    link = Path(deploy_path) / _CURRENT
    pointed = await host.readlink(str(link))
    if pointed is None:
        if await host.lexists(str(link)):
            raise Refused(f"{link} is not a symlink; move it away to use the releases strategy")
        return None
    target = Path(pointed)
    if target.parent.name != _RELEASES:
        raise Refused(f"{link} points to {target}, not to a release directory")
    return validate_commit(target.name)


async def prepare_release(
    *,
    strategy: Strategy = "releases",
    repo: str | None = None,
    commit: str,
    build: Sequence[Sequence[str]],
    env: Mapping[str, str],
    timeout_s: float,
    deploy_path: StrPath | None = None,
    repo_path: StrPath | None = None,
    on_line: LineSink | None = None,
    host: Host = LOCAL_HOST,
) -> Release:
    """Check out `commit` and run each `build` argv in it.

    `releases` needs `repo` (fetched when the cache lacks the commit) and `deploy_path`;
    `in_place` needs `repo_path` and fetches its `origin`. The path the other strategy needs is
    ignored. `env` is the whole environment of git and of the build (PATH, HOME...): never the
    bot's secrets. `timeout_s` bounds each command. `CommandFailed` (git's or the build's last
    lines) or `Refused` (dirty checkout, unknown commit) on failure; `current` is never touched.
    """
    commit = validate_commit(commit)
    if strategy == "releases":
        if not repo or deploy_path is None:
            raise ValueError("the releases strategy needs repo and deploy_path")
        return await _prepare_release_dir(
            repo=repo,
            deploy_path=Path(deploy_path),
            commit=commit,
            build=build,
            env=env,
            timeout_s=timeout_s,
            on_line=on_line,
            host=host,
        )
    if strategy == "in_place":
        if repo_path is None:
            raise ValueError("the in_place strategy needs repo_path")
        return await _prepare_in_place(
            repo_path=Path(repo_path),
            commit=commit,
            build=build,
            env=env,
            timeout_s=timeout_s,
            on_line=on_line,
            host=host,
        )
    raise ValueError(f"unknown release strategy {strategy!r}")


async def switch_current(
    *, deploy_path: StrPath, commit: str, host: Host = LOCAL_HOST
) -> str | None:
    """Point `current` at the built release of `commit` in one atomic rename.

    Returns the commit it pointed to before (None on the first switch). `Refused` when the
    release is not built. `releases` strategy only: with `in_place`, preparing is switching.
    """
    return await _switch_symlink(Path(deploy_path), validate_commit(commit), host)


async def _switch_symlink(deploy_path: Path, commit: str, host: Host) -> str | None:
    if not await is_built(deploy_path, commit, host=host):
        raise Refused(f"release {commit} is not built in {deploy_path}; prepare it first")
    previous = await current_commit(deploy_path, host=host)
    link = deploy_path / _CURRENT
    staged = deploy_path / f"{_CURRENT}.tmp-{secrets.token_hex(4)}"
    # Relative, so that the deploy directory can be moved or mounted elsewhere.
    await host.symlink(os.path.join(_RELEASES, commit), str(staged))
    try:
        await host.replace(str(staged), str(link))
    except BaseException:
        await host.unlink(str(staged))
        raise
    await host.sync_dir(str(deploy_path))
    return previous


async def _prepare_release_dir(
    *,
    repo: str,
    deploy_path: Path,
    commit: str,
    build: Sequence[Sequence[str]],
    env: Mapping[str, str],
    timeout_s: float,
    on_line: LineSink | None,
    host: Host,
) -> Release:
    target = release_path(deploy_path, commit)
    if await is_built(deploy_path, commit, host=host):
        return Release(commit, target, reused=True)
    await _remove_leftovers(target.parent, host)
    if (unfinished := await _unfinished_build(deploy_path, commit, host)) is not None:
        await _remove_tree(unfinished, host)
    cache = repo_cache_path(deploy_path)
    if await _missing_from_cache(cache, commit, env=env, timeout_s=timeout_s, host=host):
        fetched = await fetch_into_cache(
            repo=repo, cache_dir=cache, env=env, timeout_s=timeout_s, host=host
        )
        await require_commit(
            fetched.at, commit, source=fetched.source, env=env, timeout_s=timeout_s, host=host
        )
    await host.makedirs(str(target.parent))
    try:
        await _clone_at(cache, target, commit, env=env, timeout_s=timeout_s, host=host)
        await _run_build(
            build, cwd=target, env=env, timeout_s=timeout_s, on_line=on_line, host=host
        )
        await host.write_text(str(target / BUILT_MARKER), commit + "\n")
    except BaseException:
        await _remove_tree(target, host)
        raise
    return Release(commit, target, reused=False)


async def _missing_from_cache(
    cache: Path, commit: str, *, env: Mapping[str, str], timeout_s: float, host: Host
) -> bool:
    if not await host.is_file(str(cache / "HEAD")):
        return True
    found = await commit_of(in_bare(cache), commit, env=env, timeout_s=timeout_s, host=host)
    return found != commit


async def _unfinished_build(deploy_path: Path, commit: str, host: Host) -> Path | None:
    """What a crashed build left at the release's path; `Refused` if `current` points there."""
    target = release_path(deploy_path, commit)
    if not await host.lexists(str(target)):
        return None
    if await current_commit(deploy_path, host=host) == commit:
        raise Refused(
            f"{deploy_path / _CURRENT} points to {target}, which has no {BUILT_MARKER} marker; "
            "it was not built by this bot, so it is left alone"
        )
    return target


async def _clone_at(
    cache: Path,
    target: Path,
    commit: str,
    *,
    env: Mapping[str, str],
    timeout_s: float,
    host: Host,
) -> None:
    await git(
        ["clone", "--local", "--no-checkout", "--quiet", "--", str(cache), str(target)],
        env=env,
        timeout_s=timeout_s,
        what=f"cloning {commit} into {target}",
        host=host,
    )
    await git(
        [*in_checkout(target), "checkout", "--quiet", "--detach", commit, "--"],
        cwd=target,
        env=env,
        timeout_s=timeout_s,
        what=f"checking out {commit} in {target}",
        host=host,
    )


async def _prepare_in_place(
    *,
    repo_path: Path,
    commit: str,
    build: Sequence[Sequence[str]],
    env: Mapping[str, str],
    timeout_s: float,
    on_line: LineSink | None,
    host: Host,
) -> Release:
    checkout = in_checkout(repo_path)
    await _refuse_uncommitted_changes(repo_path, env=env, timeout_s=timeout_s, host=host)
    await git(
        [*checkout, "fetch", "origin"],
        cwd=repo_path,
        env=env,
        timeout_s=timeout_s,
        what=f"fetching origin in {repo_path}",
        host=host,
    )
    await require_commit(
        checkout,
        commit,
        source=f"origin of {repo_path}",
        env=env,
        timeout_s=timeout_s,
        host=host,
    )
    await git(
        [*checkout, "checkout", "--quiet", "--detach", commit, "--"],
        cwd=repo_path,
        env=env,
        timeout_s=timeout_s,
        what=f"checking out {commit} in {repo_path}",
        host=host,
    )
    await _run_build(build, cwd=repo_path, env=env, timeout_s=timeout_s, on_line=on_line, host=host)
    return Release(commit, repo_path, reused=False)


async def head_commit(
    *, repo_path: StrPath, env: Mapping[str, str], timeout_s: float, host: Host = LOCAL_HOST
) -> str | None:
    """The commit checked out in `repo_path` (the `in_place` counterpart of `current_commit`)."""
    return await commit_of(in_checkout(repo_path), "HEAD", env=env, timeout_s=timeout_s, host=host)


async def _refuse_uncommitted_changes(
    repo_path: Path, *, env: Mapping[str, str], timeout_s: float, host: Host
) -> None:
    """`Refused`, naming the files, when tracked files differ from HEAD.

    Untracked files do not count: checkout keeps them, and refuses by itself to overwrite one.
    """
    done = await git(
        [*in_checkout(repo_path), "status", "--porcelain", "--untracked-files=no"],
        cwd=repo_path,
        env=env,
        timeout_s=timeout_s,
        what=f"checking {repo_path} for uncommitted changes",
        host=host,
    )
    changed = [line[3:] for line in done.lines if line.strip()]
    if changed:
        shown = ", ".join(changed[:_MAX_DIRTY_SHOWN])
        more = len(changed) - _MAX_DIRTY_SHOWN
        suffix = f" and {more} more" if more > 0 else ""
        raise Refused(
            f"{repo_path} has uncommitted changes ({shown}{suffix}); "
            "commit, stash or discard them before deploying in place"
        )


async def _run_build(
    build: Sequence[Sequence[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    on_line: LineSink | None,
    host: Host,
) -> None:
    sink = redacting_sink(on_line)
    for step, argv in enumerate(build, start=1):
        shown = shlex.join(argv)
        what = f"build step {step} of {len(build)} ({shown})"
        if sink is not None:
            await sink(f"$ {shown}")
        try:
            done = await host.run(
                argv, env=env, cwd=str(cwd), timeout_s=timeout_s, on_line=sink, check=False
            )
        except CommandFailed as exc:  # timed out, or the program is missing
            detail = str(exc).removeprefix(f"{exc.argv0}: ")
            raise CommandFailed(exc.argv0, f"{what} {detail}") from exc
        if done.returncode != 0:
            said = [line.strip() for line in done.lines if line.strip()]
            tail = redact("; ".join(said[-_TAIL_LINES:]))
            raise CommandFailed(
                os.path.basename(argv[0]),
                f"{what} exited {done.returncode}" + (f": {tail}" if tail else ""),
            )


async def _remove_tree(path: Path, host: Host) -> None:
    """Take `path` out of the way at once (a rename), then delete it."""
    if not await host.lexists(str(path)):
        return
    doomed = path.with_name(f".{path.name}{_REMOVING}{secrets.token_hex(4)}")
    await host.replace(str(path), str(doomed))
    await host.rmtree(str(doomed))


async def _remove_leftovers(releases_dir: Path, host: Host) -> None:
    """Delete what a crash left half-removed by `_remove_tree`."""
    if await host.is_dir(str(releases_dir)):
        for name in await host.listdir(str(releases_dir)):
            if name.startswith(".") and _REMOVING in name:
                await host.rmtree(str(releases_dir / name))
