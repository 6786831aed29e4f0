"""Releases against real git repositories and real node builds, all local to a tmp dir."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import bot.git
import bot.hosts
import bot.process
from bot.errors import BadInput, CommandFailed, Refused
from bot.git import validate_ref
from bot.releases import (
    BUILT_MARKER,
    current_commit,
    head_commit,
    prepare_release,
    release_path,
    repo_cache_path,
    resolve_ref,
    switch_current,
)

PNPM_BIN = Path(__file__).resolve().parents[1] / "fixtures/worker/node_modules/.bin"
NODE_BUILD = [["node", "build.js"]]
TIMEOUT_S = 60.0

PACKAGE_JSON = """{
  "name": "fixture-app",
  "version": "1.0.0",
  "private": true,
  "scripts": {"build": "node build.js"}
}
"""
# What pnpm 12 writes for a project without dependencies.
PNPM_LOCK = """lockfileVersion: '9.0'

settings:
  autoInstallPeers: true
  excludeLinksFromLockfile: false

importers:

  .: {}
"""
BUILD_JS = """const fs = require("fs");
if (process.env.BUILD_COUNTER) fs.appendFileSync(process.env.BUILD_COUNTER, "built\\n");
fs.mkdirSync("dist", { recursive: true });
fs.writeFileSync("dist/release.txt", "%s\\n");
"""
FAILING_BUILD_JS = """console.log("compiling...");
console.error("build failed: intentional breakage");
process.exit(1);
"""


@dataclass(frozen=True)
class Remote:
    path: Path
    v1: str
    v2: str
    broken: str  # the head of main: its build fails


def _git(cwd: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    """A repository with a tiny node app: v1 and v2 build, main's head does not."""
    repo = tmp_path / "remote"
    repo.mkdir()
    _git(repo, "init", "-q")
    v1 = _commit(
        repo,
        {
            "package.json": PACKAGE_JSON,
            "pnpm-lock.yaml": PNPM_LOCK,
            ".gitignore": "node_modules/\ndist/\n",
            "build.js": BUILD_JS % "one",
        },
        "v1",
    )
    _git(repo, "tag", "v1")
    v2 = _commit(repo, {"build.js": BUILD_JS % "two"}, "v2")
    _git(repo, "tag", "-a", "v2", "-m", "release two")
    broken = _commit(repo, {"build.js": FAILING_BUILD_JS}, "broken")
    return Remote(repo, v1, v2, broken)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A build environment of its own: a HOME without any git config proves we need none."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "BUILD_COUNTER": str(tmp_path / "build-count.txt"),
    }


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    return tmp_path / "deploy"


def _absent(path: Path) -> bool:
    return not os.path.lexists(path)


def _builds(env: dict[str, str]) -> int:
    counter = Path(env["BUILD_COUNTER"])
    return len(counter.read_text().splitlines()) if counter.exists() else 0


async def _resolve(remote: Remote, deploy: Path, env: dict[str, str], ref: str) -> str:
    return await resolve_ref(
        repo=str(remote.path),
        cache_dir=deploy,
        ref=ref,
        env=env,
        timeout_s=TIMEOUT_S,
    )


async def _prepare(
    remote: Remote,
    deploy: Path,
    env: dict[str, str],
    commit: str,
    *,
    build: list[list[str]] | None = None,
    timeout_s: float = TIMEOUT_S,
):
    return await prepare_release(
        repo=str(remote.path),
        deploy_path=deploy,
        commit=commit,
        build=NODE_BUILD if build is None else build,
        env=env,
        timeout_s=timeout_s,
    )


async def test_resolve_branch_tag_annotated_tag_and_short_sha(remote, deploy, env):
    assert await _resolve(remote, deploy, env, "main") == remote.broken
    assert await _resolve(remote, deploy, env, "v1") == remote.v1
    assert await _resolve(remote, deploy, env, "v2") == remote.v2  # annotated: peeled
    assert await _resolve(remote, deploy, env, "refs/tags/v1") == remote.v1
    assert await _resolve(remote, deploy, env, remote.v2[:7]) == remote.v2
    assert await _resolve(remote, deploy, env, remote.v2[:10].upper()) == remote.v2
    assert await _resolve(remote, deploy, env, remote.v1) == remote.v1


async def test_the_deploy_directory_and_its_cache_are_the_same_cache_dir(remote, deploy, env):
    by_deploy_path = await _resolve(remote, deploy, env, "v1")
    by_cache_path = await resolve_ref(
        repo=str(remote.path),
        cache_dir=repo_cache_path(deploy),
        ref="v2",
        env=env,
        timeout_s=TIMEOUT_S,
    )
    assert (by_deploy_path, by_cache_path) == (remote.v1, remote.v2)
    assert sorted(p.name for p in deploy.iterdir()) == ["repo.git"]
    assert _git(repo_cache_path(deploy), "rev-parse", "--is-bare-repository") == "true"


async def test_resolve_an_ambiguous_name_as_git_does(remote, deploy, env):
    _git(remote.path, "branch", "v1", remote.v2)
    assert await _resolve(remote, deploy, env, "v1") == remote.v1  # the tag wins
    assert await _resolve(remote, deploy, env, "refs/heads/v1") == remote.v2


async def test_resolve_sees_new_commits_after_a_fetch(remote, deploy, env):
    assert await _resolve(remote, deploy, env, "main") == remote.broken
    newer = _commit(remote.path, {"README.md": "hi\n"}, "newer")
    assert await _resolve(remote, deploy, env, "main") == newer


async def test_unknown_ref_is_bad_input(remote, deploy, env):
    with pytest.raises(BadInput, match="no commit named 'nope'"):
        await _resolve(remote, deploy, env, "nope")
    with pytest.raises(BadInput, match="no commit named 'deadbeef'"):
        await _resolve(remote, deploy, env, "deadbeef")
    with pytest.raises(BadInput, match="no commit named 'HEAD'"):
        await _resolve(remote, deploy, env, "HEAD")


@pytest.mark.parametrize(
    "template",
    [
        "v1;touch {marker}",
        "$(touch {marker})",
        "`touch {marker}`",
        "--upload-pack=touch {marker}",
        "--upload-pack=touch${{IFS}}{marker}",
        "-c core.sshCommand=touch {marker}",
        "../x{marker}",
        "a b{marker}",
        "v1\n{marker}",
    ],
)
async def test_hostile_refs_are_refused_before_any_git_call(
    remote, deploy, env, tmp_path, monkeypatch, template
):
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    ref = template.format(marker=marker)
    calls: list[list[str]] = []
    real_run = bot.process.run

    async def spy(argv, **kwargs):
        calls.append(list(argv))
        return await real_run(argv, **kwargs)

    monkeypatch.setattr(bot.hosts, "run", spy)
    with pytest.raises(BadInput) as caught:
        await _resolve(remote, deploy, env, ref)
    assert "invalid ref" in str(caught.value)
    assert calls == []
    assert not marker.exists()
    assert not deploy.exists()


@pytest.mark.parametrize(
    "ref",
    ["", "HEAD~1", "main^", "v1:x", "@{-1}", "@", "a..b", ".hidden", "x/.y", "x.lock", "a//b"]
    + ["refs/heads/", "ends.", "-x", "a\\b", "tab\tx", "ünïcode", "x" * 201, "a*", "a?", "a[b"],
)
def test_validate_ref_refuses(ref):
    with pytest.raises(BadInput, match="invalid ref"):
        validate_ref(ref)


@pytest.mark.parametrize(
    "ref",
    ["main", "v1.2.3", "release/2024-06", "v1.2.3+build.5", "@acme/worker@1.4.0", "abc1234"]
    + ["feature/JIRA-12_x", "0123456789abcdef0123456789abcdef01234567"],
)
def test_validate_ref_accepts(ref):
    assert validate_ref(ref) == ref


async def test_a_ref_that_slipped_through_is_still_only_a_revision(
    remote, deploy, env, tmp_path, monkeypatch
):
    await _resolve(remote, deploy, env, "main")
    marker = tmp_path / "pwned"
    hostile = f"--output={marker}"
    calls: list[list[str]] = []
    real_run = bot.process.run

    async def spy(argv, **kwargs):
        calls.append(list(argv))
        return await real_run(argv, **kwargs)

    monkeypatch.setattr(bot.hosts, "run", spy)
    at = bot.git.in_bare(repo_cache_path(deploy))
    assert await bot.git.commit_of(at, hostile, env=env, timeout_s=TIMEOUT_S) is None
    [argv] = calls
    assert argv[-2:] == ["--end-of-options", f"{hostile}^{{commit}}"]
    assert not marker.exists()


async def test_prepare_and_switch(remote, deploy, env):
    v1 = await _resolve(remote, deploy, env, "v1")
    release = await _prepare(remote, deploy, env, v1)
    assert (release.commit, release.path, release.reused) == (v1, release_path(deploy, v1), False)
    assert (release.path / "dist/release.txt").read_text() == "one\n"
    assert (release.path / BUILT_MARKER).is_file()
    assert await current_commit(deploy) is None

    assert await switch_current(deploy_path=deploy, commit=v1) is None
    assert await current_commit(deploy) == v1
    assert (deploy / "current/dist/release.txt").read_text() == "one\n"

    v2 = await _resolve(remote, deploy, env, "v2")
    await _prepare(remote, deploy, env, v2)
    assert await switch_current(deploy_path=deploy, commit=v2) == v1
    assert os.readlink(deploy / "current") == f"releases/{v2}"
    assert (deploy / "current/dist/release.txt").read_text() == "two\n"
    assert sorted(p.name for p in deploy.iterdir()) == ["current", "releases", "repo.git"]
    assert (release_path(deploy, v1) / "dist/release.txt").read_text() == "one\n"


async def test_release_is_an_independent_checkout_of_exactly_that_commit(remote, deploy, env):
    v1 = await _resolve(remote, deploy, env, "v1")
    release = await _prepare(remote, deploy, env, v1)
    assert _git(release.path, "rev-parse", "HEAD") == v1
    shutil.rmtree(repo_cache_path(deploy))
    assert (release.path / "build.js").read_text() == BUILD_JS % "one"


async def test_failed_build_leaves_current_alone_and_nothing_behind(remote, deploy, env):
    v1 = await _resolve(remote, deploy, env, "v1")
    await _prepare(remote, deploy, env, v1)
    await switch_current(deploy_path=deploy, commit=v1)

    broken = await _resolve(remote, deploy, env, "main")
    lines: list[str] = []

    async def collect(line: str) -> None:
        lines.append(line)

    with pytest.raises(CommandFailed) as caught:
        await prepare_release(
            repo=str(remote.path),
            deploy_path=deploy,
            commit=broken,
            build=NODE_BUILD,
            env=env,
            timeout_s=TIMEOUT_S,
            on_line=collect,
        )
    message = str(caught.value)
    assert "build step 1 of 1 (node build.js)" in message
    assert "exited 1" in message
    assert "build failed: intentional breakage" in message
    assert lines[0] == "$ node build.js"
    assert "compiling..." in lines
    assert await current_commit(deploy) == v1
    assert _absent(release_path(deploy, broken))
    assert sorted(p.name for p in (deploy / "releases").iterdir()) == [v1]
    with pytest.raises(Refused, match="not built"):
        await switch_current(deploy_path=deploy, commit=broken)


async def test_a_crashed_build_is_rebuilt_not_reused(remote, deploy, env):
    v1 = await _resolve(remote, deploy, env, "v1")
    half_built = release_path(deploy, v1)
    (half_built / "dist").mkdir(parents=True)
    (half_built / "dist/release.txt").write_text("stale\n")
    (deploy / "releases" / f".{v1}.removing-0000").mkdir()
    with pytest.raises(Refused, match="not built"):
        await switch_current(deploy_path=deploy, commit=v1)

    release = await _prepare(remote, deploy, env, v1)
    assert not release.reused
    assert (release.path / "dist/release.txt").read_text() == "one\n"
    assert sorted(p.name for p in (deploy / "releases").iterdir()) == [v1]


async def test_second_prepare_of_a_built_commit_reuses_it(remote, deploy, env):
    v1 = await _resolve(remote, deploy, env, "v1")
    first = await _prepare(remote, deploy, env, v1)
    second = await _prepare(remote, deploy, env, v1)
    assert (first.reused, second.reused) == (False, True)
    assert second.path == first.path
    assert _builds(env) == 1


async def test_rollback_switches_back_without_rebuilding_and_rebuilds_when_gone(
    remote, deploy, env
):
    v1 = await _resolve(remote, deploy, env, "v1")
    v2 = await _resolve(remote, deploy, env, "v2")
    for commit in (v1, v2):
        await _prepare(remote, deploy, env, commit)
        await switch_current(deploy_path=deploy, commit=commit)
    assert _builds(env) == 2

    back = await _prepare(remote, deploy, env, v1)
    assert back.reused
    assert await switch_current(deploy_path=deploy, commit=v1) == v2
    assert (deploy / "current/dist/release.txt").read_text() == "one\n"
    assert _builds(env) == 2

    await switch_current(deploy_path=deploy, commit=v2)
    shutil.rmtree(release_path(deploy, v1))
    rebuilt = await _prepare(remote, deploy, env, v1)
    assert not rebuilt.reused
    assert _builds(env) == 3
    assert await switch_current(deploy_path=deploy, commit=v1) == v2
    assert (deploy / "current/dist/release.txt").read_text() == "one\n"


async def test_prepare_fetches_a_commit_the_cache_does_not_have(remote, deploy, env):
    v1 = await _resolve(remote, deploy, env, "v1")
    shutil.rmtree(repo_cache_path(deploy))
    release = await _prepare(remote, deploy, env, v1)
    assert (release.path / "dist/release.txt").read_text() == "one\n"


async def test_prepare_refuses_a_commit_the_repository_does_not_have(remote, deploy, env):
    with pytest.raises(Refused, match="is not in"):
        await _prepare(remote, deploy, env, "0" * 40)
    assert _absent(release_path(deploy, "0" * 40))


async def test_prepare_refuses_a_malformed_commit(remote, deploy, env):
    with pytest.raises(BadInput, match="expected 40 hexadecimal digits"):
        await _prepare(remote, deploy, env, "v1")


@pytest.fixture
def checkout(remote: Remote, tmp_path: Path) -> Path:
    """The runbook's single checkout on the worker host, cloned from the remote at v1."""
    path = tmp_path / "worker"
    _git(tmp_path, "clone", "-q", str(remote.path), str(path))
    _git(path, "checkout", "-q", "--detach", remote.v1)
    return path


async def _prepare_in_place(remote: Remote, checkout: Path, env: dict[str, str], commit: str):
    return await prepare_release(
        strategy="in_place",
        repo=str(remote.path),
        repo_path=checkout,
        commit=commit,
        build=NODE_BUILD,
        env=env,
        timeout_s=TIMEOUT_S,
    )


async def test_in_place_fetches_checks_out_and_builds(remote, checkout, env):
    newer = _commit(remote.path, {"build.js": BUILD_JS % "three"}, "three")
    release = await _prepare_in_place(remote, checkout, env, newer)
    assert (release.commit, release.path, release.reused) == (newer, checkout, False)
    assert await head_commit(repo_path=checkout, env=env, timeout_s=TIMEOUT_S) == newer
    assert (checkout / "dist/release.txt").read_text() == "three\n"

    rolled_back = await _prepare_in_place(remote, checkout, env, remote.v1)
    assert rolled_back.commit == remote.v1
    assert (checkout / "dist/release.txt").read_text() == "one\n"
    assert _builds(env) == 2


async def test_in_place_resolves_against_origin_leaving_local_refs_alone(remote, checkout, env):
    own_refs = _git(checkout, "for-each-ref", "refs/heads", "refs/tags", "refs/remotes")
    newer = _commit(remote.path, {"build.js": BUILD_JS % "fixed"}, "fixed")
    resolved = await resolve_ref(
        repo="", cache_dir=checkout, ref="main", env=env, timeout_s=TIMEOUT_S
    )
    assert resolved == newer
    assert (
        await resolve_ref(repo="", cache_dir=checkout, ref="v2", env=env, timeout_s=TIMEOUT_S)
        == remote.v2
    )
    assert _git(checkout, "for-each-ref", "refs/heads", "refs/tags", "refs/remotes") == own_refs
    release = await _prepare_in_place(remote, checkout, env, resolved)
    assert release.commit == newer
    assert (checkout / "dist/release.txt").read_text() == "fixed\n"


async def test_in_place_refuses_a_dirty_checkout_naming_the_files(remote, checkout, env):
    (checkout / "build.js").write_text("// hotfix on the host\n")
    (checkout / "package.json").write_text("{}\n")
    (checkout / "untracked.txt").write_text("not ours\n")
    with pytest.raises(Refused, match="uncommitted changes") as caught:
        await _prepare_in_place(remote, checkout, env, remote.v2)
    assert "build.js" in str(caught.value)
    assert "package.json" in str(caught.value)
    assert "untracked.txt" not in str(caught.value)
    assert await head_commit(repo_path=checkout, env=env, timeout_s=TIMEOUT_S) == remote.v1
    assert _builds(env) == 0


async def test_in_place_refuses_a_commit_origin_does_not_have(remote, checkout, env):
    with pytest.raises(Refused, match="is not in"):
        await _prepare_in_place(remote, checkout, env, "0" * 40)


async def test_cache_is_never_created_among_other_files(remote, tmp_path, env):
    busy = tmp_path / "busy.git"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine\n")
    with pytest.raises(Refused, match="neither a git repository nor empty"):
        await resolve_ref(
            repo=str(remote.path), cache_dir=busy, ref="main", env=env, timeout_s=TIMEOUT_S
        )
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]


async def test_unreachable_remote_fails_clearly_without_the_password(deploy, env):
    url = "https://deployer:s3cret@127.0.0.1:1/repo.git"
    with pytest.raises(CommandFailed) as caught:
        await resolve_ref(
            repo=url, cache_dir=repo_cache_path(deploy), ref="main", env=env, timeout_s=TIMEOUT_S
        )
    message = str(caught.value)
    assert message.startswith("git: fetching https://deployer:***@127.0.0.1:1/repo.git: ")
    assert "exited 128" in message
    assert "127.0.0.1 port 1" in message
    assert "s3cret" not in message
    assert "s3cret" not in "".join(traceback.format_exception(caught.value))


async def test_a_token_as_url_user_is_masked_too(deploy, env):
    url = "https://ghp_abcdefgh12345678@127.0.0.1:1/repo.git"
    with pytest.raises(CommandFailed) as caught:
        await resolve_ref(
            repo=url, cache_dir=repo_cache_path(deploy), ref="main", env=env, timeout_s=TIMEOUT_S
        )
    assert "ghp_abcdefgh12345678" not in str(caught.value)
    assert "https://***@127.0.0.1:1/repo.git" in str(caught.value)


async def test_missing_remote_repository_fails_with_gits_message(deploy, env, tmp_path):
    with pytest.raises(CommandFailed, match="does not appear to be a git repository"):
        await resolve_ref(
            repo=str(tmp_path / "nowhere"),
            cache_dir=repo_cache_path(deploy),
            ref="main",
            env=env,
            timeout_s=TIMEOUT_S,
        )


def _processes_mentioning(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline:
            found.append(int(entry.name))
    return found


async def test_a_hanging_build_times_out_and_leaves_no_process(remote, deploy, env):
    v1 = await _resolve(remote, deploy, env, "v1")
    token = f"hang-{uuid.uuid4().hex}"
    # The build starts a grandchild too: the whole process group must go.
    hang = (
        "require('child_process').spawn(process.execPath,"
        f" ['-e', 'setTimeout(()=>{{}},1e9)', '{token}'], {{stdio: 'ignore'}});"
        "setTimeout(()=>{},1e9)"
    )
    with pytest.raises(CommandFailed, match="timed out after 2s"):
        await _prepare(remote, deploy, env, v1, build=[["node", "-e", hang, token]], timeout_s=2)
    assert _processes_mentioning(token) == []
    assert list((deploy / "releases").iterdir()) == []
    assert await current_commit(deploy) is None


async def test_a_cancelled_build_is_killed_and_removed(remote, deploy, env):
    v1 = await _resolve(remote, deploy, env, "v1")
    token = f"cancel-{uuid.uuid4().hex}"
    started = asyncio.Event()

    async def on_line(line: str) -> None:
        if line == "waiting":
            started.set()

    build = [["node", "-e", "console.log('waiting'); setTimeout(()=>{},1e9)", token]]
    task = asyncio.create_task(
        prepare_release(
            repo=str(remote.path),
            deploy_path=deploy,
            commit=v1,
            build=build,
            env=env,
            timeout_s=TIMEOUT_S,
            on_line=on_line,
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _processes_mentioning(token) == []
    assert list((deploy / "releases").iterdir()) == []


async def test_switch_refuses_when_current_is_a_real_directory(remote, deploy, env):
    v1 = await _resolve(remote, deploy, env, "v1")
    await _prepare(remote, deploy, env, v1)
    (deploy / "current").mkdir()
    with pytest.raises(Refused, match="not a symlink"):
        await switch_current(deploy_path=deploy, commit=v1)


async def test_build_with_the_pinned_pnpm_offline(remote, deploy, env):
    if not (PNPM_BIN / "pnpm").exists():
        pytest.skip(
            f"pnpm is not installed at {PNPM_BIN / 'pnpm'} (npm ci in tests/fixtures/worker)"
        )
    offline_env = {
        **env,
        "PATH": f"{PNPM_BIN}{os.pathsep}{env['PATH']}",
        "npm_config_offline": "true",
        "npm_config_update_notifier": "false",
    }
    v2 = await _resolve(remote, deploy, offline_env, "v2")
    release = await _prepare(
        remote,
        deploy,
        offline_env,
        v2,
        build=[["pnpm", "install", "--frozen-lockfile"], ["pnpm", "build"]],
    )
    assert (release.path / "dist/release.txt").read_text() == "two\n"
    assert (release.path / "pnpm-lock.yaml").read_text() == PNPM_LOCK
