"""Where a worker runs: this host, or another one over SSH (`bot.ssh.SshHost`, imported only
where a worker has an `ssh://` host: asyncssh is slow to import for every command). A process
manager's target runs the same argv lists and reads the same files through either, and a
release directory (`bot.releases`) is fetched, built and switched through the same few file
operations.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.abc import LineSink
from bot.config import ssh_address
from bot.process import Completed, run

logger = logging.getLogger(__name__)

KEEP_LINES = 400  # of a command's output, kept for its error message


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime: float
    inode: int | None  # None where the host does not say (then only size says it was replaced)


class Host(Protocol):
    name: str

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
        """As `bot.process.run`: a missing program or a timeout is always `CommandFailed`, a
        non-zero exit only with `check`."""
        ...

    async def stat(self, path: str) -> FileStat | None: ...

    async def read(self, path: str, offset: int, length: int) -> bytes | None: ...

    async def pid_alive(self, pid: int) -> bool: ...

    # The few file operations a release directory needs (`bot.releases`).
    async def is_file(self, path: str) -> bool: ...

    async def is_dir(self, path: str) -> bool: ...

    async def lexists(self, path: str) -> bool: ...

    async def readlink(self, path: str) -> str | None:
        """Where the symlink `path` points; None when `path` is not a symlink."""
        ...

    async def listdir(self, path: str) -> list[str]: ...

    async def makedirs(self, path: str) -> None: ...

    async def write_text(self, path: str, text: str) -> None: ...

    async def symlink(self, target: str, link: str) -> None: ...

    async def replace(self, source: str, destination: str) -> None:
        """Rename, atomically replacing `destination`."""
        ...

    async def unlink(self, path: str) -> None:
        """Remove a file or symlink; nothing when it does not exist."""
        ...

    async def rmtree(self, path: str) -> None:
        """Delete a directory tree, ignoring errors (a best-effort cleanup)."""
        ...

    async def sync_dir(self, path: str) -> None:
        """Make the renames in directory `path` durable where the host allows it."""
        ...


class LocalHost:
    name = "local"

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
        return await run(argv, env=env, timeout_s=timeout_s, on_line=on_line, cwd=cwd, check=check)

    async def stat(self, path: str) -> FileStat | None:
        try:
            st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            return None
        return FileStat(st.st_size, st.st_mtime, st.st_ino)

    async def read(self, path: str, offset: int, length: int) -> bytes | None:
        return await asyncio.to_thread(_read_local, path, offset, length)

    async def pid_alive(self, pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, owned by another user
        # A killed daemon stays a zombie until its parent (init) reaps it, which a container's
        # PID 1 may do late or never: signal 0 still reaches it, yet nothing runs.
        return not await asyncio.to_thread(_is_zombie, pid)

    async def is_file(self, path: str) -> bool:
        return await asyncio.to_thread(os.path.isfile, path)

    async def is_dir(self, path: str) -> bool:
        return await asyncio.to_thread(os.path.isdir, path)

    async def lexists(self, path: str) -> bool:
        return await asyncio.to_thread(os.path.lexists, path)

    async def readlink(self, path: str) -> str | None:
        try:
            return await asyncio.to_thread(os.readlink, path)
        except (FileNotFoundError, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno == errno.EINVAL:
                return None
            raise

    async def listdir(self, path: str) -> list[str]:
        return await asyncio.to_thread(os.listdir, path)

    async def makedirs(self, path: str) -> None:
        await asyncio.to_thread(os.makedirs, path, exist_ok=True)

    async def write_text(self, path: str, text: str) -> None:
        await asyncio.to_thread(_write_local, path, text)

    async def symlink(self, target: str, link: str) -> None:
        await asyncio.to_thread(os.symlink, target, link)

    async def replace(self, source: str, destination: str) -> None:
        await asyncio.to_thread(os.replace, source, destination)

    async def unlink(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, path)

    async def rmtree(self, path: str) -> None:
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)

    async def sync_dir(self, path: str) -> None:
        await asyncio.to_thread(_fsync_dir, path)


LOCAL_HOST = LocalHost()


def _write_local(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False  # no /proc (not Linux), or gone since: signal 0 had the last word
    # `pid (comm) state ...`: comm may hold spaces and parentheses, the state follows the last ')'.
    fields = stat.rpartition(")")[2].split()
    return bool(fields) and fields[0] == "Z"


def _read_local(path: str, offset: int, length: int) -> bytes | None:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class SshAddress:
    user: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> SshAddress:
        """A URL the configuration has already checked (`bot.config.ssh_address`)."""
        return cls(*ssh_address(url))

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"
