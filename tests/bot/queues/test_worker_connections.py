"""Worker connections found by Node's client names; "unknown" when CLIENT LIST is denied."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as redis

from bot.queues import connected_workers
from tests.conftest import REDIS_URL


@contextlib.asynccontextmanager
async def named_connections(url: str, names: list[str]) -> AsyncIterator[None]:
    clients = [redis.Redis.from_url(url, single_connection_client=True) for _ in names]
    try:
        for client, name in zip(clients, names, strict=True):
            await client.client_setname(name)
        yield
    finally:
        for client in clients:
            await client.aclose()


async def test_node_worker_names_are_counted(
    redis_client: redis.Redis, prefix: str, queue_name: str
) -> None:
    node_name = f"{prefix}:{base64.b64encode(queue_name.encode()).decode()}"
    names = [
        f"{node_name}:w:test",  # a named Node worker's blocking connection
        node_name,  # an unnamed Node worker
        f"{node_name}:qe",  # QueueEvents: not a worker
        f"{prefix}:{queue_name}",  # Python bullmq's naming: not a Node worker
        f"{prefix}:{base64.b64encode(b'other').decode()}:w:test",  # another queue
    ]
    async with named_connections(REDIS_URL, names):
        found = await connected_workers(redis_client, prefix=prefix, queue=queue_name)
    assert found.known is True
    assert found.count == 2
    by_name = {c.client_name: c for c in found.connections}
    assert set(by_name) == {f"{node_name}:w:test", node_name}
    assert by_name[f"{node_name}:w:test"].worker_name == "test"
    assert by_name[node_name].worker_name is None
    assert all(c.addr.startswith("127.0.0.1:") and c.idle_s >= 0 for c in found.connections)


async def test_none_connected_is_zero(
    redis_client: redis.Redis, prefix: str, queue_name: str
) -> None:
    found = await connected_workers(redis_client, prefix=prefix, queue=queue_name)
    assert (found.known, found.count) == (True, 0)


async def test_denied_client_list_is_unknown(private_redis: str) -> None:
    admin = redis.Redis.from_url(private_redis, decode_responses=True)
    try:
        await admin.acl_setuser(
            "bot",
            enabled=True,
            passwords=["+secret"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-client|list"],
        )
        user_url = private_redis.replace("redis://", "redis://bot:secret@")
        limited = redis.Redis.from_url(user_url, decode_responses=True)
        try:
            async with named_connections(private_redis, ["bull:cQ==:w:x"]):
                found = await connected_workers(limited, prefix="bull", queue="q")
        finally:
            await limited.aclose()
    finally:
        await admin.aclose()
    assert found.known is False
    assert found.count is None
    assert found.unknown_reason is not None
    assert found.unknown_reason.startswith("CLIENT LIST refused: ")
    assert "no permissions" in found.unknown_reason
