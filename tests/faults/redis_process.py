"""A private redis-server the test can stop and start again on the same port.

    async with redis_process(persistent=True) as server:
        ...
        await server.restart()  # SIGKILL, then a new server on the same port and directory

`persistent=True` keeps an append-only file in the server's own directory (Redis's default
`appendfsync everysec`: each write reaches the file before its reply is sent, so killing the
process, even with SIGKILL, loses nothing acknowledged): a Redis restart or failover without data
loss. `persistent=False` (`--save ""`, no AOF) loses every key on a restart: the worst case.

(`appendfsync always` would widen a trap: a command executed but not yet answered while the
fsync runs is lost with its reply, and clients that re-send it on reconnect, as ioredis does,
run it twice.)
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from tests.conftest import free_port

_START_TIMEOUT_S = 15.0


class RedisProcess:
    def __init__(self, *, persistent: bool, workdir: Path) -> None:
        self.port = free_port()
        self.persistent = persistent
        self.workdir = workdir
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def _argv(self) -> list[str]:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.workdir), "--save", ""]
        if self.persistent:
            return [*argv, "--appendonly", "yes", "--appendfsync", "everysec"]
        return [*argv, "--appendonly", "no"]

    async def start(self) -> None:
        """Start the server and return once it answers PING (data loaded)."""
        assert not self.running, "already running"
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        async with asyncio.timeout(_START_TIMEOUT_S):
            while not await asyncio.to_thread(self._pong):
                if self._proc.returncode is not None:
                    raise RuntimeError(f"redis-server on port {self.port} exited at start")
                await asyncio.sleep(0.02)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    async def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop the server (SIGKILL: a crash; SIGTERM: a clean shutdown) and wait for it."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def restart(self, sig: signal.Signals = signal.SIGKILL) -> None:
        await self.stop(sig)
        await self.start()


@contextlib.asynccontextmanager
async def redis_process(*, persistent: bool) -> AsyncIterator[RedisProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="redis-restart-"))
    server = RedisProcess(persistent=persistent, workdir=workdir)
    try:
        await server.start()
        yield server
    finally:
        await server.stop(signal.SIGTERM)
        shutil.rmtree(workdir, ignore_errors=True)
