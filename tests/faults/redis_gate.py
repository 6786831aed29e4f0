"""A TCP proxy in front of Redis that reads the commands its clients send and can stop a client
at one chosen command: the process then waits there, in a known step, for as long as the test
wants (until it is killed). Nothing else is changed: every other byte passes as sent.

    async with redis_gate("127.0.0.1", 6379) as gate:
        gate.arm(lambda cmd: cmd[0] == b"SET" and cmd[2] == b"false", forward=True)
        ...  # a process using redis://127.0.0.1:{gate.port}/0 runs
        await gate.wait_held(timeout_s=30)  # it sent that SET, Redis applied it, no reply yet

`forward=False` holds the command itself (Redis never sees it); `forward=True` sends it and
withholds the reply (Redis applied it; the client does not know). The gate fires once; new
connections, and the other connections of the same client, keep passing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

Command = list[bytes]
Match = Callable[[Command], bool]


def parse_command(buffer: bytearray) -> tuple[Command, int] | None:
    """The first complete RESP command in `buffer` (an array of bulk strings, as redis-py and
    ioredis send them) and its length in bytes; None while incomplete."""
    if not buffer.startswith(b"*"):
        # An inline command (redis-cli, telnet): one line.
        end = buffer.find(b"\r\n")
        return None if end < 0 else ([bytes(buffer[:end])], end + 2)
    end = buffer.find(b"\r\n")
    if end < 0:
        return None
    count, pos = int(buffer[1:end]), end + 2
    parts: Command = []
    for _ in range(count):
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            return None
        if buffer[pos : pos + 1] != b"$":
            raise ValueError(f"not a bulk string at {pos}: {bytes(buffer[pos : pos + 16])!r}")
        size = int(buffer[pos + 1 : end])
        start = end + 2
        if len(buffer) < start + size + 2:
            return None
        parts.append(bytes(buffer[start : start + size]))
        pos = start + size + 2
    return parts, pos


class RedisGate:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.held = asyncio.Event()
        self.held_command: Command | None = None
        self.seen: list[Command] = []  # every command, in arrival order: for failure messages
        self._match: Match | None = None
        self._forward = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, match: Match, *, forward: bool) -> None:
        """Stop the first connection that sends a command for which `match` is true."""
        self._match, self._forward = match, forward
        self.held.clear()
        self.held_command = None

    async def wait_held(self, timeout_s: float) -> Command:
        async with asyncio.timeout(timeout_s):
            await self.held.wait()
        assert self.held_command is not None
        return self.held_command

    async def start(self) -> RedisGate:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, server_w}
        withheld = asyncio.Event()  # set: replies stop flowing back to this client
        self._spawn(self._requests(client_r, server_w, withheld))
        self._spawn(self._replies(server_r, client_w, withheld))

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, withheld: asyncio.Event
    ) -> None:
        buffer = bytearray()
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                while (parsed := parse_command(buffer)) is not None:
                    command, size = parsed
                    raw = bytes(buffer[:size])
                    del buffer[:size]
                    self.seen.append(command)
                    if self._match is not None and self._match(command):
                        self._match = None  # fires once
                        if self._forward:
                            withheld.set()  # before the command leaves: its reply is withheld
                            writer.write(raw)
                            await writer.drain()
                        self.held_command = command
                        self.held.set()
                        await asyncio.Event().wait()  # this connection waits until killed
                    writer.write(raw)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _replies(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, withheld: asyncio.Event
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if withheld.is_set():
                    continue  # read and dropped: the client never hears back
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def redis_gate(host: str, port: int) -> AsyncIterator[RedisGate]:
    gate = await RedisGate(host, port).start()
    try:
        yield gate
    finally:
        await gate.close()
