"""Is this Redis fit to run BullMQ and to be operated by the bot? The runbook's Redis checks.

Each finding is `ok`, `warn`, `fail` or `info`. BullMQ needs `maxmemory-policy noeviction`
(any eviction policy may drop a job's keys and corrupt the queue); the bot needs `CLIENT LIST`
to see which workers are connected, and Lua (`EVAL`), as BullMQ's own commands are scripts.
Every probe is read-only, except a SET and DEL of a key of the bot's own that lives 5 s.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from bot.errors import Refused

Level = Literal["ok", "warn", "fail", "info"]

MIN_VERSION = (6, 2, 0)  # BullMQ's Lua scripts need Redis 6.2 or newer
MEMORY_WARN = 0.80
MEMORY_FAIL = 0.95


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    detail: str


@dataclass(frozen=True)
class RedisReport:
    findings: tuple[Finding, ...]

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "findings": [
                {"check": f.check, "level": f.level, "detail": f.detail} for f in self.findings
            ],
        }


async def check_redis(
    redis: aioredis.Redis, *, prefix: str, quick: bool = False, pings: int = 5
) -> RedisReport:
    """All the checks; `quick` only those a drain or restart must not run without: Redis
    answers, and will not evict job keys."""
    findings: list[Finding] = []
    latency = await _ping(redis, pings if not quick else 1)
    if isinstance(latency, Finding):
        return RedisReport((latency,))
    findings.append(Finding("ping", "ok", f"answers in {latency:.2f} ms"))
    info = await _info(redis)
    findings.append(_eviction(info))
    if quick:
        return RedisReport(tuple(findings))
    findings.append(await _probe("CLIENT LIST", lambda: redis.client_list(), needed_for=_WORKERS))
    findings.append(await _whoami(redis))
    findings.append(await _probe("EVAL", lambda: redis.eval("return 1", 0), needed_for=_SCRIPTS))
    key = f"chatops:{prefix}:check:{uuid.uuid4().hex}"
    findings.append(
        await _probe(
            "SET/DEL", lambda: _set_and_delete(redis, key), needed_for="the bot's locks and flags"
        )
    )
    findings.append(_memory(info))
    findings.append(_version(info))
    return RedisReport(tuple(findings))


_WORKERS = "seeing which workers are connected (drain, restart)"
_SCRIPTS = "BullMQ's commands (pause, retry, promote), which are Lua scripts"


async def _ping(redis: aioredis.Redis, count: int) -> float | Finding:
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            await redis.ping()
            samples.append((time.perf_counter() - started) * 1000)
    except (RedisError, OSError) as exc:
        return Finding("ping", "fail", f"unreachable: {type(exc).__name__}: {_short(exc)}")
    return statistics.median(samples)


async def _info(redis: aioredis.Redis) -> dict[str, Any]:
    """INFO server and memory; empty where the user may not run INFO (a finding says so)."""
    info: dict[str, Any] = {}
    for section in ("server", "memory"):
        try:
            info.update(await redis.info(section))
        except ResponseError:
            continue
    return info


def _eviction(info: dict[str, Any]) -> Finding:
    policy = info.get("maxmemory_policy")
    if policy is None:
        return Finding("maxmemory-policy", "warn", "unknown: INFO memory was refused")
    if policy != "noeviction":
        return Finding(
            "maxmemory-policy",
            "fail",
            f"{policy}: BullMQ needs noeviction, or Redis may evict job keys and break queues "
            "(CONFIG SET maxmemory-policy noeviction, and in redis.conf)",
        )
    return Finding("maxmemory-policy", "ok", "noeviction")


async def _whoami(redis: aioredis.Redis) -> Finding:
    try:
        user = await redis.acl_whoami()
    except ResponseError as exc:
        return Finding("user", "info", f"ACL WHOAMI refused or unsupported ({_short(exc)})")
    name = user.decode() if isinstance(user, bytes) else str(user)
    return Finding("user", "info", f"connected as {name}")


async def _probe(name: str, call: Callable[[], Awaitable[object]], *, needed_for: str) -> Finding:
    try:
        await call()
    except NoPermissionError as exc:
        return Finding(
            name, "fail", f"refused to the bot's user ({_short(exc)}); needed for {needed_for}"
        )
    except ResponseError as exc:
        return Finding(name, "fail", f"refused: {_short(exc)}; needed for {needed_for}")
    return Finding(name, "ok", "allowed")


async def _set_and_delete(redis: aioredis.Redis, key: str) -> None:
    await redis.set(key, "1", px=5000)
    await redis.delete(key)


def _memory(info: dict[str, Any]) -> Finding:
    used = info.get("used_memory")
    limit = info.get("maxmemory")
    if not isinstance(used, int):
        return Finding("memory", "warn", "unknown: INFO memory was refused")
    if not isinstance(limit, int) or limit == 0:
        return Finding("memory", "info", f"{_mib(used)} used, no maxmemory limit")
    share = used / limit
    level: Level = "fail" if share >= MEMORY_FAIL else "warn" if share >= MEMORY_WARN else "ok"
    return Finding("memory", level, f"{_mib(used)} of {_mib(limit)} ({share:.0%})")


def _version(info: dict[str, Any]) -> Finding:
    raw = info.get("redis_version")
    if not isinstance(raw, str):
        return Finding("version", "warn", "unknown: INFO server was refused")
    parts = tuple(int(p) for p in raw.split(".")[:3] if p.isdigit())
    if parts < MIN_VERSION:
        wanted = ".".join(map(str, MIN_VERSION))
        return Finding("version", "fail", f"Redis {raw}: BullMQ needs {wanted} or newer")
    return Finding("version", "ok", f"Redis {raw}")


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


async def require_fit_redis(redis: aioredis.Redis, *, prefix: str, doing: str) -> None:
    """The quick check before an operation: Refused, naming each failure, if Redis is unfit."""
    report = await check_redis(redis, prefix=prefix, quick=True)
    if not report.ok:
        reasons = "; ".join(f"{f.check}: {f.detail}" for f in report.failures)
        raise Refused(f"Redis is not fit for {doing}: {reasons}")
