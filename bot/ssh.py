"""A worker's host over SSH: `ssh://user@host[:port]`, a key file from the configuration or the
SSH agent, and the host's key checked against a known_hosts file, never skipped: an unknown or
changed host key refuses the connection with a message saying so. Each argv is quoted word by
word for the remote shell (`shlex.join`), preceded by `env -i K=V ...` so the remote command
gets exactly the environment asked for, as a local run does (with `cwd`: `cd -- DIR && exec
...`). Files are read and release directories changed over SFTP; `current` is switched with
OpenSSH's `posix-rename`, atomic as a local `os.replace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
from collections.abc import AsyncIterator, Mapping, Sequence

import asyncssh

from bot.abc import LineSink
from bot.errors import CommandFailed, OperationFailed
from bot.hosts import KEEP_LINES, FileStat, SshAddress
from bot.process import Completed

logger = logging.getLogger(__name__)

_PID_MARK = "chatops-pid:"
_CONNECT_TIMEOUT_S = 15.0
# What a connection lost under an SFTP call raises (asyncssh's errors and the socket's).
_CONNECTION_LOST = (
    asyncssh.SFTPNoConnection,
    asyncssh.SFTPConnectionLost,
    asyncssh.DisconnectError,
    asyncssh.ChannelOpenError,
    ConnectionError,
)


class SshHost:
    def __init__(
        self, address: SshAddress, *, key_path: str | None, known_hosts: str | None
    ) -> None:
        self.name = str(address)
        self._address = address
        self._key_path = key_path
        self._known_hosts = known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._lock:
            if self._conn is None:
                self._conn = await self._connect()
            return self._conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        if not await asyncio.to_thread(os.path.exists, self._known_hosts):
            raise OperationFailed(
                f"ssh {self.name}: no known_hosts file at {self._known_hosts}; add the host's "
                "key there (ssh-keyscan, checked by hand): host keys are never skipped"
            )
        keys = [self._key_path] if self._key_path else ()
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                return await asyncssh.connect(
                    self._address.host,
                    port=self._address.port,
                    username=self._address.user,
                    known_hosts=self._known_hosts,
                    client_keys=keys or None,
                    agent_path=None if keys else (os.environ.get("SSH_AUTH_SOCK") or None),
                    config=None,
                )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise OperationFailed(
                f"ssh {self.name}: the host's key is not the one in {self._known_hosts} "
                f"({exc.reason}); refusing to connect"
            ) from None
        except asyncssh.PermissionDenied:
            raise OperationFailed(
                f"ssh {self.name}: permission denied for the configured key"
            ) from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise OperationFailed(
                f"ssh {self.name}: cannot connect ({type(exc).__name__}: {exc})"
            ) from None

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        timeout_s: float,
        on_line: LineSink | None = None,
        cwd: str | None = None,
        check: bool = True,
    ) -> Completed:
        if not argv:
            raise ValueError("empty argv")
        name = os.path.basename(argv[0])
        command = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv])
        if cwd is not None:
            command = f"cd -- {shlex.quote(cwd)} && exec {command}"
        # sshd starts each session in a process group of its own, led by the shell, whose pid
        # the command keeps (exec): said first, it is what a timeout kills, children included.
        command = f"echo {_PID_MARK}$$; {command}"
        conn = await self._connection()
        lines: list[str] = []
        group: int | None = None
        proc: asyncssh.SSHClientProcess[str] | None = None
        try:
            async with asyncio.timeout(timeout_s):
                proc = await conn.create_process(command, stderr=asyncssh.STDOUT)
                async for raw in proc.stdout:
                    if not raw:
                        # asyncssh's line iterator ends with "" when EOF lands after its
                        # last check: not a line of output (an empty line is "\n").
                        break
                    line = str(raw).rstrip("\r\n")
                    if group is None and line.startswith(_PID_MARK):
                        group = int(line.removeprefix(_PID_MARK))
                        continue
                    lines.append(line)
                    del lines[:-KEEP_LINES]
                    if on_line is not None:
                        await on_line(line)
                done = await proc.wait()
        except TimeoutError:
            await self._kill_group(conn, group)
            raise CommandFailed(name, f"timed out after {timeout_s:g} s on {self.name}") from None
        except (OSError, asyncssh.Error) as exc:
            self._forget()
            raise CommandFailed(name, f"ssh {self.name}: {type(exc).__name__}: {exc}") from None
        finally:
            if proc is not None:
                proc.close()
        code = done.exit_status if done.exit_status is not None else -1
        if code == 127:
            raise CommandFailed(name, f"program not found on {self.name}")
        if code != 0 and check:
            tail = " | ".join(lines[-5:])
            raise CommandFailed(name, f"exited {code} on {self.name}: {tail}")
        return Completed(tuple(argv), code, tuple(lines))

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        conn = await self._connection()
        async with self._lock:
            if self._sftp is None:
                self._sftp = await conn.start_sftp_client()
            return self._sftp

    async def _kill_group(self, conn: asyncssh.SSHClientConnection, group: int | None) -> None:
        """What a timed-out command left running on the host: its process group, killed (else
        a hung build would run on after the step gave up on it)."""
        if group is None:
            return
        kill = shlex.join(["kill", "-KILL", "--", f"-{group}"])
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                await conn.run(kill, check=False)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            logger.warning("ssh %s: could not kill process group %d: %s", self.name, group, exc)

    @contextlib.asynccontextmanager
    async def _sftp_session(self) -> AsyncIterator[asyncssh.SFTPClient]:
        """The SFTP client. A connection lost under it is forgotten, so that the next call
        connects again, and is `CommandFailed` naming this host (not an internal error)."""
        try:
            yield await self._sftp_client()
        except _CONNECTION_LOST as exc:
            self._forget()
            raise CommandFailed("sftp", f"ssh {self.name}: {type(exc).__name__}: {exc}") from None

    def _forget(self) -> None:
        """Drop a broken connection and the SFTP session riding on it."""
        if self._conn is not None:
            self._conn.abort()
        self._conn = None
        self._sftp = None

    async def stat(self, path: str) -> FileStat | None:
        async with self._sftp_session() as sftp:
            try:
                attrs = await sftp.stat(path)
            except asyncssh.SFTPNoSuchFile:
                return None
        return FileStat(attrs.size or 0, float(attrs.mtime or 0), None)

    async def read(self, path: str, offset: int, length: int) -> bytes | None:
        async with self._sftp_session() as sftp:
            try:
                async with sftp.open(path, "rb") as f:
                    await f.seek(offset)
                    data = await f.read(length)
            except asyncssh.SFTPNoSuchFile:
                return None
        return data if isinstance(data, bytes) else str(data).encode()

    async def pid_alive(self, pid: int) -> bool:
        # check=False: only ps's own answer says the pid is gone; a lost connection or a
        # timeout is `CommandFailed` naming this host, not a dead process. ps sees processes
        # of every user, and shows a zombie (killed, not yet reaped: nothing runs) as Z.
        done = await self.run(
            ["ps", "-o", "stat=", "-p", str(pid)],
            env={"PATH": "/usr/bin:/bin"},
            timeout_s=15,
            check=False,
        )
        state = done.output.strip()
        return done.returncode == 0 and bool(state) and not state.startswith("Z")

    async def is_file(self, path: str) -> bool:
        async with self._sftp_session() as sftp:
            return bool(await sftp.isfile(path))

    async def is_dir(self, path: str) -> bool:
        async with self._sftp_session() as sftp:
            return bool(await sftp.isdir(path))

    async def lexists(self, path: str) -> bool:
        async with self._sftp_session() as sftp:
            return bool(await sftp.lexists(path))

    async def readlink(self, path: str) -> str | None:
        async with self._sftp_session() as sftp:
            if not await sftp.islink(path):
                return None
            return str(await sftp.readlink(path))

    async def listdir(self, path: str) -> list[str]:
        async with self._sftp_session() as sftp:
            names = await sftp.listdir(path)
        return [str(n) for n in names if n not in (".", "..")]

    async def makedirs(self, path: str) -> None:
        async with self._sftp_session() as sftp:
            await sftp.makedirs(path, exist_ok=True)

    async def write_text(self, path: str, text: str) -> None:
        async with self._sftp_session() as sftp, sftp.open(path, "w") as f:
            await f.write(text)

    async def symlink(self, target: str, link: str) -> None:
        async with self._sftp_session() as sftp:
            await sftp.symlink(target, link)

    async def replace(self, source: str, destination: str) -> None:
        async with self._sftp_session() as sftp:
            await sftp.posix_rename(source, destination)

    async def unlink(self, path: str) -> None:
        async with self._sftp_session() as sftp:
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await sftp.remove(path)

    async def rmtree(self, path: str) -> None:
        async with self._sftp_session() as sftp:
            await sftp.rmtree(path, ignore_errors=True)

    async def sync_dir(self, path: str) -> None:
        return None  # SFTP syncs files, not directories: the rename is atomic, not durable

    async def aclose(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
            self._sftp = None
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None
