"""A worker app under a local pm2 daemon.

Environment: every pm2 call runs with PATH, HOME, PM2_HOME and the configured extras only, and
never with `--update-env`. `pm2 start` copies the calling process's environment into the app,
and so does `reload --update-env`: the bot's own Slack tokens would reach the worker.

Logs: pm2 writes an app's stdout and stderr to two files (`pm_out_log_path`, `pm_err_log_path`;
one file when the app sets `merge_logs`/`log`). The readiness cursor is on the out log, where
the worker prints its marker; `logs()` reads both. An app with several instances (cluster mode)
is described by its first instance, with the worst status and the summed restarts.

Releases behind a `current` symlink (measured with pm2 7.0.4, fork and cluster mode): for an app
whose script is `<dir>/current/dist/worker.js` with cwd `<dir>/current`, re-pointing `current`
and running `pm2 reload <app>` starts the new release's code. pm2 keeps the unresolved path,
and Node resolves the symlink each time a process starts (its cwd is the new release's
directory too). No ecosystem file and no `--update-env` are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.abc import LineSink, LogCursor, WorkerStatus
from bot.errors import CommandFailed, OperationFailed
from bot.hosts import Host, LocalHost
from bot.process import Completed
from bot.redact import redact

Instance = dict[str, Any]

_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_POLL_S = 0.2
_HEALTH_EVERY_S = 1.0
_RESTART_LOOP = 3
_DEFAULT_KILL_TIMEOUT_MS = 1600
_MIN_SECRET_LEN = 4
_MIN_UNNAMED_SECRET_LEN = 16
_SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASS|DSN|AUTH|CREDENTIAL|PRIVATE|SESSION|COOKIE|SALT|CERT|SIGN",
    re.IGNORECASE,
)
_READ_CHUNK = 1 << 20
_MAX_TEXT_FILE = 1 << 20
_TAIL_BLOCK = 1 << 16
_TAIL_MAX_BYTES = 1 << 22
_MAX_LINE = 1 << 20
# Env values shown in logs as they are: paths and pm2's own bookkeeping. Of the others, a value
# is masked when its name says it is a secret, or when it looks like a credential whatever its
# name (long, letters and digits, not a path): masking every value would hide the app's name.
_PLAIN_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "PWD",
        "LANG",
        "NODE_ENV",
        "PM2_HOME",
        "PM2_USAGE",
        "PM2_JSON_PROCESSING",
        "PM2_INTERACTOR_PROCESSING",
        "NODE_APP_INSTANCE",
        "unique_id",
    }
)
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_STATUS_RANK = {"errored": 0, "stopped": 1, "stopping": 2, "launching": 3, "online": 4}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_DECODER = json.JSONDecoder()


class Pm2Target:
    """One pm2 app, operated through the pm2 CLI of a local daemon."""

    def __init__(
        self,
        *,
        app: str,
        pm2_bin: str,
        pm2_home: str,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
        host: Host | None = None,
    ) -> None:
        self.name = app
        self._host: Host = host or LocalHost()
        self._pm2_bin = pm2_bin
        self._pm2_home = pm2_home
        self._timeout_s = timeout_s
        self._env = {
            "PATH": _DEFAULT_PATH,
            "HOME": os.path.expanduser("~"),
            **(env or {}),
            "PM2_HOME": pm2_home,
        }

    async def status(self) -> WorkerStatus:
        instances = await self._instances()
        if not instances:
            return _missing(self.name)
        return _status_of(self.name, instances)

    async def log_cursor(self) -> LogCursor:
        first = (await self._require_instances())[0]
        path = _out_log(first)
        stat = await self._host.stat(path)
        return LogCursor(path=path, offset=stat.size if stat else 0)

    async def reload(self, *, on_line: LineSink | None = None) -> None:
        instances = await self._require_instances()
        # The CLI waits for each old process to exit, which may take its whole kill_timeout.
        kill_timeout_ms = _status_of(self.name, instances).kill_timeout_ms
        grace_s = len(instances) * (kill_timeout_ms or _DEFAULT_KILL_TIMEOUT_MS) / 1000
        await self._pm2(
            "reload",
            self.name,
            on_line=_cleaning(on_line),
            timeout_s=self._timeout_s + grace_s,
        )

    async def wait_ready(
        self,
        pattern: re.Pattern[str],
        *,
        since: LogCursor,
        timeout_s: float,
        on_line: LineSink | None = None,
    ) -> str:
        tail = _LogTail(since.path, since.offset)
        try:
            async with asyncio.timeout(timeout_s):
                return await self._watch(pattern, tail, on_line)
        except TimeoutError:
            raise OperationFailed(await self._not_ready(pattern, since, timeout_s)) from None

    async def logs(self, *, lines: int) -> list[str]:
        instances = await self._require_instances()
        secrets = _secret_values(instances)
        paths = _log_paths(instances[0])
        tail = await _tail_of_files(self._host, paths, lines)
        return [_clean(line, secrets) for line in tail]

    async def env_keys(self) -> frozenset[str]:
        names: set[str] = set()
        for instance in await self._require_instances():
            names.update(k for k in _dict(_pm2_env(instance).get("env")) if _ENV_NAME.match(k))
        return frozenset(names)

    async def read_text(self, path: str) -> str | None:
        data = await self._host.read(path, 0, _MAX_TEXT_FILE)
        return None if data is None else data.decode("utf-8", errors="replace")

    async def env_value(self, name: str) -> str | None:
        for instance in await self._require_instances():
            value = _dict(_pm2_env(instance).get("env")).get(name)
            if isinstance(value, str):
                return value
        return None

    async def _watch(
        self, pattern: re.Pattern[str], tail: _LogTail, on_line: LineSink | None
    ) -> str:
        instances = await self._require_instances()
        secrets = _secret_values(instances)
        baseline = previous = _status_of(self.name, instances)
        loop = asyncio.get_running_loop()
        next_check = loop.time() + _HEALTH_EVERY_S  # the status was just read: baseline
        while True:
            for raw in await tail.read_lines(self._host):
                plain = _ANSI.sub("", raw)
                shown = redact(plain, secrets=secrets)
                if on_line is not None:
                    await on_line(shown)
                if pattern.search(plain):
                    return shown
            if loop.time() >= next_check:
                previous = await self._check_health(baseline, previous, secrets)
                next_check = loop.time() + _HEALTH_EVERY_S
            if not tail.behind:  # else read on at once: a chatty worker must not outrun us
                await asyncio.sleep(_POLL_S)

    async def _not_ready(self, pattern: re.Pattern[str], since: LogCursor, timeout_s: float) -> str:
        now = "unknown"
        with contextlib.suppress(OperationFailed, CommandFailed):
            status = await self.status()
            now = f"{status.status}, pid {status.pid}"
        return (
            f"pm2 app {self.name!r} logged no line matching {pattern.pattern!r} within "
            f"{timeout_s:g} s (read {since.path} from offset {since.offset}; pm2 says {now})"
        )

    async def _check_health(
        self, baseline: WorkerStatus, previous: WorkerStatus, secrets: set[str]
    ) -> WorkerStatus:
        """Fail fast when the app will not become ready; return its current status."""
        instances = await self._instances()
        if not instances:
            raise OperationFailed(f"pm2 app {self.name!r} disappeared while starting")
        current = _status_of(self.name, instances)
        problem = _health_problem(baseline, previous, current)
        if problem is None:
            return current
        last = await _last_errors(self._host, instances[0])
        hint = f"; last stderr: {' | '.join(_clean(x, secrets) for x in last)}" if last else ""
        raise OperationFailed(f"pm2 app {self.name!r} {problem} (PM2_HOME {self._pm2_home}){hint}")

    async def _require_instances(self) -> list[Instance]:
        instances = await self._instances()
        if not instances:
            raise OperationFailed(f"pm2 has no app {self.name!r} (PM2_HOME {self._pm2_home})")
        return instances

    async def _instances(self) -> list[Instance]:
        done = await self._pm2("jlist")
        apps = _parse_jlist(done.output, app=self.name)
        mine = [a for a in apps if a.get("name") == self.name]
        return sorted(mine, key=lambda a: _int(a.get("pm_id")) or 0)

    async def _pm2(
        self, *args: str, on_line: LineSink | None = None, timeout_s: float | None = None
    ) -> Completed:
        daemon = await self._check_daemon()
        try:
            done = await self._host.run(
                [self._pm2_bin, *args],
                env=self._env,
                timeout_s=timeout_s or self._timeout_s,
                on_line=on_line,
            )
        except CommandFailed as exc:
            await self._check_daemon(same_as=daemon, during=args[0])
            detail = _clean(str(exc).removeprefix(f"{exc.argv0}: "), ())
            raise CommandFailed(
                "pm2", f"{' '.join(args)} failed for app {self.name!r}: {detail}"
            ) from exc
        # A daemon that dies while the command talks to it is replaced by a new, empty one,
        # whose answer (no apps) would read as a wrong app name. Only the pid file is read: a
        # daemon dying after answering is found by the next call.
        await self._check_daemon(same_as=daemon, during=args[0], alive=False)
        return done

    async def _check_daemon(
        self, *, same_as: int | None = None, during: str = "", alive: bool = True
    ) -> int:
        """The pid of the app's daemon. Any pm2 command starts a daemon when none runs, and a
        new, empty one would report the app as missing (a wrong PM2_HOME looks the same), so
        say that the daemon is not there, or (`same_as`) that it is not the one it was."""
        pid_file = os.path.join(self._pm2_home, "pm2.pid")
        where = "" if self._host.name == "local" else f" on {self._host.name}"
        raw = await self._host.read(pid_file, 0, 64)
        try:
            pid = int((raw or b"").decode().strip())
        except ValueError:
            if same_as is None:
                raise OperationFailed(
                    f"pm2 daemon for {self.name!r} is not running{where}: no {pid_file} "
                    "(is pm2_home right, and is pm2 started?)"
                ) from None
            pid = -1
        if same_as is not None and pid != same_as:
            replaced = f"; pm2 started a new one, pid {pid}, which runs no app" if pid > 0 else ""
            raise OperationFailed(
                f"pm2 daemon for {self.name!r} is not running{where}: pid {same_as} from "
                f"{pid_file} is gone (it died during `pm2 {during}`{replaced})"
            )
        if alive and not await self._host.pid_alive(pid):
            raise OperationFailed(
                f"pm2 daemon for {self.name!r} is not running{where}: pid {pid} from "
                f"{pid_file} is gone"
            )
        return pid


def _health_problem(
    baseline: WorkerStatus, previous: WorkerStatus, current: WorkerStatus
) -> str | None:
    restarts = current.restarts - baseline.restarts
    if current.status == "errored":
        return f"is errored: it exited {current.restarts} time(s) and pm2 gave up restarting it"
    # A reload passes through `stopped` briefly; twice in a row means it stays stopped.
    if current.status == "stopped" and previous.status == "stopped":
        return "is stopped and will not become ready"
    if restarts >= _RESTART_LOOP:
        return f"keeps restarting: {restarts} restarts while waiting for it to become ready"
    return None


def _parse_jlist(output: str, *, app: str) -> list[Instance]:
    """The JSON array in `pm2 jlist` output, after any warnings pm2 prints first."""
    for match in re.finditer(r"^\[", output, re.MULTILINE):
        try:
            value, _ = _DECODER.raw_decode(output, match.start())
        except ValueError:
            continue
        if isinstance(value, list):
            return [a for a in value if isinstance(a, dict)]
    head = _clean(output[:200], ())
    raise CommandFailed("pm2", f"jlist printed no process list (app {app!r}): {head!r}")


def _missing(name: str) -> WorkerStatus:
    return WorkerStatus(
        name=name,
        status="missing",
        pid=None,
        restarts=0,
        unstable_restarts=0,
        uptime_s=None,
        memory_bytes=None,
        kill_timeout_ms=None,
        exec_mode=None,
        script=None,
        cwd=None,
    )


def _status_of(name: str, instances: Sequence[Instance]) -> WorkerStatus:
    """Only named, non-environment fields of pm2_env are read here."""
    envs = [_pm2_env(i) for i in instances]
    first = envs[0]
    status = min((str(e.get("status", "unknown")) for e in envs), key=_rank)
    started_ms = _int(first.get("pm_uptime"))
    uptime = (
        round(max(0.0, time.time() - started_ms / 1000), 1)
        if status == "online" and started_ms
        else None
    )
    memory = [m for i in instances if (m := _int(_dict(i.get("monit")).get("memory"))) is not None]
    exec_mode = first.get("exec_mode")
    return WorkerStatus(
        name=name,
        status=status,
        pid=_int(instances[0].get("pid")) or None,
        restarts=sum(_int(e.get("restart_time")) or 0 for e in envs),
        unstable_restarts=sum(_int(e.get("unstable_restarts")) or 0 for e in envs),
        uptime_s=uptime,
        memory_bytes=sum(memory) if memory else None,
        # pm2 leaves kill_timeout out of its list when it is the default.
        kill_timeout_ms=_int(first.get("kill_timeout")) or _DEFAULT_KILL_TIMEOUT_MS,
        exec_mode=exec_mode.removesuffix("_mode") if isinstance(exec_mode, str) else None,
        script=_str(first.get("pm_exec_path")),
        cwd=_str(first.get("pm_cwd")),
    )


def _rank(status: str) -> int:
    return _STATUS_RANK.get(status, -1)


def secret_env_values(env: Mapping[str, object]) -> set[str]:
    """The values of an app's environment that must be masked wherever its output is shown."""
    return {
        value
        for name, value in env.items()
        if isinstance(value, str) and name not in _PLAIN_ENV and _looks_secret(name, value)
    }


def _secret_values(instances: Iterable[Instance]) -> set[str]:
    """Values of the apps' own environment that must never be shown."""
    values: set[str] = set()
    for instance in instances:
        pm2_env = _pm2_env(instance)
        flattened = {k: v for k, v in pm2_env.items() if _ENV_NAME.match(k)}
        values |= secret_env_values({**flattened, **_dict(pm2_env.get("env"))})
    return values


def _looks_secret(name: str, value: str) -> bool:
    if _SECRET_NAME.search(name):
        return len(value) >= _MIN_SECRET_LEN
    return (
        len(value) >= _MIN_UNNAMED_SECRET_LEN
        and not value.startswith(("/", "."))
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
    )


def _pm2_env(instance: Instance) -> dict[str, Any]:
    return _dict(instance.get("pm2_env"))


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _out_log(instance: Instance) -> str:
    path = _str(_pm2_env(instance).get("pm_out_log_path"))
    if path is None:
        raise OperationFailed(f"pm2 reports no out log for {instance.get('name')!r}")
    return path


def _log_paths(instance: Instance) -> list[str]:
    env = _pm2_env(instance)
    paths = [_str(env.get("pm_out_log_path")), _str(env.get("pm_err_log_path"))]
    return list(dict.fromkeys(p for p in paths if p))


def _clean(line: str, secrets: Iterable[str]) -> str:
    return redact(_ANSI.sub("", line), secrets=secrets)


def _cleaning(on_line: LineSink | None) -> LineSink | None:
    if on_line is None:
        return None
    sink = on_line

    async def cleaned(line: str) -> None:
        await sink(_clean(line, ()))

    return cleaned


async def _tail_of_files(host: Host, paths: Sequence[str], lines: int) -> list[str]:
    """The last `lines` lines of several logs, the most recently written file's lines last.

    pm2 does not timestamp lines unless told to, so out and err cannot be interleaved exactly.
    """
    chunks: list[tuple[float, list[str]]] = []
    for path in paths:
        stat = await host.stat(path)
        if stat is None:
            continue
        chunks.append((stat.mtime, await _tail_lines(host, path, stat.size, lines)))
    chunks.sort(key=lambda chunk: chunk[0])
    merged = [line for _, chunk in chunks for line in chunk]
    return merged[-lines:] if lines > 0 else []


async def _tail_lines(host: Host, path: str, size: int, lines: int) -> list[str]:
    block = _TAIL_BLOCK
    while True:
        start = max(0, size - block)
        data = await host.read(path, start, size - start) or b""
        found = data.decode(errors="replace").splitlines()
        if start == 0 or len(found) > lines or block >= _TAIL_MAX_BYTES:
            break
        block *= 4
    if start > 0:
        found = found[1:]  # begins mid-line
    return found[-lines:] if lines > 0 else []


async def _last_errors(host: Host, instance: Instance, count: int = 3) -> list[str]:
    path = _str(_pm2_env(instance).get("pm_err_log_path"))
    if path is None or path == _str(_pm2_env(instance).get("pm_out_log_path")):
        return []
    stat = await host.stat(path)
    if stat is None:
        return []
    return [line for line in await _tail_lines(host, path, stat.size, count) if line.strip()]


class _LogTail:
    """Reads the lines appended to a log after an offset, across truncation and rotation."""

    def __init__(self, path: str, offset: int) -> None:
        self._path = path
        self._offset = offset
        self._inode: int | None = None
        self._partial = b""
        self.behind = False  # the last read stopped at its size limit: more is there already

    async def read_lines(self, host: Host) -> list[str]:
        stat = await host.stat(self._path)
        if stat is None:
            return []  # rotated away, not yet recreated
        replaced = stat.inode is not None and self._inode is not None and stat.inode != self._inode
        if replaced or stat.size < self._offset:
            self._offset = 0
            self._partial = b""
        self._inode = stat.inode
        data = await host.read(self._path, self._offset, _READ_CHUNK) or b""
        self._offset += len(data)
        self.behind = len(data) == _READ_CHUNK
        *complete, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > _MAX_LINE:
            complete.append(self._partial)
            self._partial = b""
        return [line.decode(errors="replace").rstrip("\r") for line in complete]
