"""A dedicated client with the settings of another and a socket timeout of its own."""

from __future__ import annotations

import redis.asyncio as aioredis

# Per-pool state redis-py keeps among the connection settings; a new pool makes its own.
_POOL_STATE = ("himport_registry", "maint_notifications_pool_handler")
_POOL_STATE_PREFIX = "orig_"


def dedicated_client(like: aioredis.Redis, *, socket_timeout_s: float) -> aioredis.Redis:
    """A new single-connection client to the same server, with the same credentials.

    For blocking reads: the shared client's timeout (5 s by default in redis-py 8) would cut a
    longer block short.
    """
    pool = like.connection_pool
    settings = {
        name: value
        for name, value in pool.connection_kwargs.items()
        if name not in _POOL_STATE and not name.startswith(_POOL_STATE_PREFIX)
    }
    settings["socket_timeout"] = socket_timeout_s
    own_pool = aioredis.ConnectionPool(
        connection_class=pool.connection_class, max_connections=1, **settings
    )
    return aioredis.Redis.from_pool(own_pool)
