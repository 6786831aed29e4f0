"""Pm2Target against a real pm2 daemon (private PM2_HOME), the fixture worker and real Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

import bot.targets.pm2 as pm2_module
from bot.abc import LineSink
from bot.errors import OperationFailed
from bot.targets.pm2 import Pm2Target, _parse_jlist
from tests.fixtures.pm2 import (
    CANARY_SECRET,
    FIXTURE_DIR,
    PRODUCER_JS,
    READY,
    RELEASE,
    WORKER_JS,
    Pm2Home,
    build_release,
    node_job_counts,
    pm2_home,
    point_current,
    release_app,
    run_node,
    worker_app,
)


@pytest.fixture
async def pm2(redis_client: redis.Redis) -> AsyncIterator[Pm2Home]:
    # Depends on redis_client so that the test's prefix is cleaned after the daemon is gone.
    async with pm2_home() as home:
        yield home


async def _started(pm2: Pm2Home, app: dict[str, object]) -> Pm2Target:
    await pm2.start(app)
    target = pm2.target(str(app["name"]))
    await target.wait_ready(READY, since=await pm2.start_cursor(target.name), timeout_s=15)
    return target


def _collector() -> tuple[list[str], LineSink]:
    seen: list[str] = []

    async def sink(line: str) -> None:
        seen.append(line)

    return seen, sink


async def test_status_of_an_online_app(pm2: Pm2Home, prefix: str) -> None:
    target = await _started(pm2, worker_app("w", prefix=prefix, kill_timeout=3000))

    status = await target.status()

    assert status.name == "w"
    assert status.status == "online"
    assert isinstance(status.pid, int) and status.pid > 0
    assert (status.restarts, status.unstable_restarts) == (0, 0)
    assert status.uptime_s is not None and 0 <= status.uptime_s < 60
    assert status.memory_bytes is not None and status.memory_bytes > 0
    assert status.kill_timeout_ms == 3000
    assert status.exec_mode == "fork"
    assert (status.script, status.cwd) == (str(WORKER_JS), str(FIXTURE_DIR))
    assert CANARY_SECRET not in repr(status)


async def test_status_of_an_unknown_app_is_missing(pm2: Pm2Home) -> None:
    status = await pm2.target("nosuch").status()

    assert status.status == "missing"
    assert status.pid is None


async def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    target = Pm2Target(app="w", pm2_bin="pm2", pm2_home=str(tmp_path))

    with pytest.raises(OperationFailed, match=r"pm2 daemon for 'w' is not running"):
        await target.status()
    assert not (tmp_path / "pm2.pid").exists()


async def test_reload_starts_a_new_process_and_readiness_comes_from_it(
    pm2: Pm2Home, prefix: str
) -> None:
    target = await _started(pm2, worker_app("w", prefix=prefix))
    before = await target.status()
    cursor = await target.log_cursor()

    # The `worker:ready` already in the log is before the cursor: it must not count.
    with pytest.raises(
        OperationFailed, match=r"pm2 app 'w' logged no line matching .* pm2 says online"
    ):
        await target.wait_ready(READY, since=cursor, timeout_s=1)

    reload_lines, reload_sink = _collector()
    await target.reload(on_line=reload_sink)
    seen, sink = _collector()
    line = await target.wait_ready(READY, since=cursor, timeout_s=15, on_line=sink)
    after = await target.status()

    assert line == "worker:ready"
    assert seen == ["worker:closing", "worker:closed", "worker:ready"]
    assert any("reload" in x for x in reload_lines)
    assert after.pid != before.pid and after.status == "online"
    assert after.restarts == before.restarts + 1


async def test_readiness_survives_a_truncated_log(pm2: Pm2Home, prefix: str) -> None:
    target = await _started(pm2, worker_app("w", prefix=prefix))
    cursor = await target.log_cursor()

    await pm2.pm2("flush", "w")  # empties the log: the cursor now points past its end
    await target.reload()

    assert await target.wait_ready(READY, since=cursor, timeout_s=15) == "worker:ready"


async def test_readiness_is_found_behind_megabytes_of_output_at_once(
    pm2: Pm2Home, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that logs more between the cursor and its marker than one read takes: the
    tail reads on without waiting a poll period per read (here 30 s: it would time out)."""
    target = await _started(pm2, worker_app("w", prefix=prefix))
    cursor = await target.log_cursor()
    monkeypatch.setattr(pm2_module, "_POLL_S", 30.0)
    chatter = b"".join(b"job %07d done\n" % i for i in range(300_000))  # about 5 MiB
    with open(cursor.path, "ab") as log:
        log.write(chatter + b"worker:ready\n")
    assert len(chatter) > 4 * pm2_module._READ_CHUNK
    seen, sink = _collector()
    assert await target.wait_ready(READY, since=cursor, timeout_s=20, on_line=sink) == (
        "worker:ready"
    )
    assert len(seen) == 300_001


async def test_reload_never_passes_the_callers_environment(
    pm2: Pm2Home, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = await _started(pm2, worker_app("w", prefix=prefix))
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-canary")
    cursor = await target.log_cursor()

    await target.reload()
    await target.wait_ready(READY, since=cursor, timeout_s=15)

    (app,) = [a for a in await pm2.jlist() if a["name"] == "w"]
    raw = json.dumps(app)
    assert "SLACK_BOT_TOKEN" not in raw and "xoxb-canary" not in raw
    assert app["pm2_env"]["env"]["EMAIL_API_KEY"] == CANARY_SECRET  # its own env is kept


async def test_a_worker_that_never_logs_ready_times_out(pm2: Pm2Home, prefix: str) -> None:
    await pm2.start(worker_app("stuck", prefix=prefix, env={"NEVER_READY": "1"}))
    target = pm2.target("stuck")

    started = time.monotonic()
    with pytest.raises(OperationFailed) as failed:
        await target.wait_ready(READY, since=await pm2.start_cursor("stuck"), timeout_s=3)

    assert time.monotonic() - started < 8
    message = str(failed.value)
    assert "pm2 app 'stuck' logged no line matching '^worker:ready$' within 3 s" in message
    assert "pm2 says online" in message


@pytest.mark.parametrize(
    ("options", "problem"),
    [({}, "keeps restarting: "), ({"max_restarts": 1}, "is errored: it exited ")],
    ids=["restart-loop", "errored"],
)
async def test_a_worker_that_crashes_on_start_fails_fast(
    pm2: Pm2Home, prefix: str, options: dict[str, Any], problem: str
) -> None:
    unreachable = {"REDIS_URL": "redis://127.0.0.1:1/0"}
    await pm2.start(worker_app("crashy", prefix=prefix, env=unreachable, **options))
    target = pm2.target("crashy")

    started = time.monotonic()
    with pytest.raises(OperationFailed) as failed:
        await target.wait_ready(READY, since=await pm2.start_cursor("crashy"), timeout_s=60)

    assert time.monotonic() - started < 15
    message = str(failed.value)
    assert message.startswith(f"pm2 app 'crashy' {problem}"), message
    assert "last stderr: worker:redis-unreachable ECONNREFUSED" in message


async def test_a_stopped_worker_fails_fast(pm2: Pm2Home, prefix: str) -> None:
    target = await _started(pm2, worker_app("w", prefix=prefix))
    cursor = await target.log_cursor()
    await pm2.pm2("stop", "w")

    with pytest.raises(OperationFailed, match=r"^pm2 app 'w' is stopped and will not become ready"):
        await target.wait_ready(READY, since=cursor, timeout_s=15)


async def test_logs_never_show_the_apps_secrets(pm2: Pm2Home, prefix: str) -> None:
    leaky = {"PRINT_ENV_KEY": "EMAIL_API_KEY"}
    target = await _started(pm2, worker_app("leaky", prefix=prefix, env=leaky))
    log_dir = pm2.path / "logs"
    assert CANARY_SECRET in (log_dir / "leaky-out.log").read_text()  # the worker did leak it
    assert CANARY_SECRET in (log_dir / "leaky-error.log").read_text()

    lines = await target.logs(lines=20)

    assert not any(CANARY_SECRET in line for line in lines)
    assert "worker:debug key=*** value=***" in lines  # PRINT_ENV_KEY's value is masked too
    assert "worker:debug stderr value=***" in lines
    assert "worker:ready" in lines
    assert len(await target.logs(lines=1)) == 1


async def test_reload_follows_a_repointed_current_symlink(
    pm2: Pm2Home, prefix: str, tmp_path: Path
) -> None:
    await build_release(tmp_path, "r1")
    await build_release(tmp_path, "r2")
    point_current(tmp_path, "r1")
    await pm2.start(release_app("rel", tmp_path, prefix=prefix))
    target = pm2.target("rel")
    first = await target.wait_ready(RELEASE, since=await pm2.start_cursor("rel"), timeout_s=15)
    await target.wait_ready(READY, since=await pm2.start_cursor("rel"), timeout_s=15)

    point_current(tmp_path, "r2")
    cursor = await target.log_cursor()
    await target.reload()
    second = await target.wait_ready(RELEASE, since=cursor, timeout_s=15)

    assert (first, second) == ("worker:release r1", "worker:release r2")
    status = await target.status()
    assert status.cwd == str(tmp_path / "current")
    assert status.script == str(tmp_path / "current" / "dist" / "worker.js")
    assert status.pid is not None
    assert _cwd_of(status.pid) == tmp_path / "releases" / "r2"


async def test_the_fixture_worker_runs_jobs_and_producers_honour_the_flag(
    pm2: Pm2Home, prefix: str, redis_client: redis.Redis
) -> None:
    await _started(pm2, worker_app("w", prefix=prefix, queues="sla,bulk"))

    added = await run_node(PRODUCER_JS, "--queue", "sla", "--count", "20", prefix=prefix)
    failing = '{"error": "boom\\nsecond line", "ms": 1}'
    await run_node(PRODUCER_JS, "--queue", "sla", "--count", "2", "--data", failing, prefix=prefix)
    await redis_client.set(f"{prefix}:flags:WORKER_ACCEPT_JOBS", "false")
    held = await run_node(PRODUCER_JS, "--queue", "sla", "--count", "5", prefix=prefix)

    assert added.lines[-1] == "producer:added 20"
    assert held.lines[-2:] == ("producer:held", "producer:added 0")
    for _ in range(50):
        counts = await node_job_counts("sla", prefix=prefix)
        if counts["completed"] + counts["failed"] == 22:
            break
        await asyncio.sleep(0.1)
    assert (counts["completed"], counts["failed"], counts["waiting"]) == (20, 2, 0)
    assert await redis_client.hlen(f"{prefix}:sla:fixture:runs") == 22


def _cwd_of(pid: int) -> Path:
    return Path(f"/proc/{pid}/cwd").resolve()


def test_jlist_output_after_pm2_warnings_is_parsed() -> None:
    output = ">>>> In-memory PM2 is out-of-date, do:\n>>>> $ pm2 update\n" + json.dumps(
        [{"name": "w", "pm_id": 0}]
    )

    assert _parse_jlist(output, app="w") == [{"name": "w", "pm_id": 0}]


async def test_cursor_of_unknown_app_names_it(pm2: Pm2Home) -> None:
    with pytest.raises(OperationFailed, match=r"pm2 has no app 'nosuch'"):
        await pm2.target("nosuch").log_cursor()
    with pytest.raises(OperationFailed, match=r"pm2 has no app 'nosuch'"):
        await pm2.target("nosuch").reload()
