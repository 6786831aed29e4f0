"""Which Node workers are connected to a queue, from `CLIENT LIST` (BullMQ has no heartbeat key).

A Node BullMQ 6 worker names its blocking connection `<prefix>:<base64(queue)>`, followed by
`:w:<worker name>` when the worker has a name; the connection goes away when the worker exits.
(Python bullmq's `get_workers` looks for `<prefix>:<queue>` and so finds no Node worker.)
Without permission for `CLIENT LIST` the answer is "unknown", never "none".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bot.queues.keys import worker_client_name


@dataclass(frozen=True)
class WorkerConnection:
    client_name: str
    worker_name: str | None
    addr: str
    idle_s: int
    age_s: int


@dataclass(frozen=True)
class WorkerConnections:
    known: bool
    connections: list[WorkerConnection]
    unknown_reason: str | None = None

    @property
    def count(self) -> int | None:
        return len(self.connections) if self.known else None


def _connection(client: dict[str, Any], base: str) -> WorkerConnection | None:
    client_name = str(client.get("name") or "")
    named = f"{base}:w:"
    if client_name != base and not client_name.startswith(named):
        return None
    return WorkerConnection(
        client_name=client_name,
        worker_name=client_name[len(named) :] if client_name != base else None,
        addr=str(client.get("addr", "")),
        idle_s=int(client.get("idle", 0)),
        age_s=int(client.get("age", 0)),
    )


async def connected_workers(redis: aioredis.Redis, *, prefix: str, queue: str) -> WorkerConnections:
    return (await connected_workers_of(redis, prefix=prefix, queues=[queue]))[queue]


async def connected_workers_of(
    redis: aioredis.Redis, *, prefix: str, queues: Sequence[str]
) -> dict[str, WorkerConnections]:
    """`connected_workers` of each queue, from one `CLIENT LIST`."""
    try:
        clients = [dict(client) for client in await redis.client_list()]
    except ResponseError as err:  # NOPERM under an ACL, or CLIENT disabled by a provider
        unknown = WorkerConnections(
            known=False, connections=[], unknown_reason=f"CLIENT LIST refused: {err}"
        )
        return dict.fromkeys(queues, unknown)
    found: dict[str, WorkerConnections] = {}
    for queue in queues:
        base = worker_client_name(prefix, queue)
        mine = [c for c in (_connection(client, base) for client in clients) if c]
        found[queue] = WorkerConnections(known=True, connections=mine)
    return found
