"""The fault proxy itself, against a small echo server: the other fault tests rely on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.faults.proxy import FaultProxy, fault_proxy


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def roundtrip(proxy: FaultProxy, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(payload)
        await writer.drain()
        return await reader.readexactly(len(payload))
    finally:
        writer.close()


async def test_pass_and_delay_forward_everything(echo: int) -> None:
    async with fault_proxy("127.0.0.1", echo) as proxy:
        assert await roundtrip(proxy, b"hello") == b"hello"
        proxy.set_mode("delay", delay_s=0.01)
        assert await roundtrip(proxy, b"late") == b"late"


async def test_blackhole_answers_nothing_then_delivers_when_the_link_is_back(echo: int) -> None:
    async with fault_proxy("127.0.0.1", echo) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"one")
        assert await reader.readexactly(3) == b"one"
        proxy.set_mode("blackhole")
        writer.write(b"two")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(3), 0.3)
        # New connections are accepted, and nothing answers them either.
        new_reader, new_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        new_writer.write(b"new")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(new_reader.readexactly(3), 0.3)
        proxy.set_mode("pass")
        assert await asyncio.wait_for(reader.readexactly(3), 10) == b"two"
        assert await asyncio.wait_for(new_reader.readexactly(3), 10) == b"new"
        writer.close()
        new_writer.close()


async def test_reset_aborts_open_connections_and_refuses_new_ones(echo: int) -> None:
    async with fault_proxy("127.0.0.1", echo) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        proxy.set_mode("reset")
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 10)
        writer.close()
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await roundtrip(proxy, b"y")
