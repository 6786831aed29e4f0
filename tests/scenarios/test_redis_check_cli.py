"""`chatops redis check` and the quick check before a drain, through the CLI, against the
shared Redis and against private redis-servers configured the way the runbook warns about."""

from __future__ import annotations

import json
import uuid

import redis as sync_redis

from tests.conftest import free_port, redis_server
from tests.scenarios.conftest import Scenario


def _by_check(report: dict[str, object]) -> dict[str, dict[str, str]]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return {f["check"]: f for f in findings}


async def test_a_healthy_redis_passes_every_check(scenario: Scenario):
    result = await scenario.chatops("redis", "check", "--env", "test", "--json")
    assert result.code == 0, result.output
    report = json.loads(result.stdout)
    checks = _by_check(report)
    assert report["ok"] is True
    assert checks["maxmemory-policy"]["level"] == "ok"
    assert checks["CLIENT LIST"]["level"] == "ok"
    assert checks["EVAL"]["level"] == "ok"
    assert checks["SET/DEL"]["level"] == "ok"
    assert checks["version"]["detail"].startswith("Redis ")
    assert "connected as default" in checks["user"]["detail"]
    leftovers = await scenario.redis.keys(f"chatops:{scenario.prefix}:check:*")
    assert leftovers == []


async def test_eviction_and_a_user_without_client_list_are_both_reported(scenario: Scenario):
    password = uuid.uuid4().hex
    with redis_server("--maxmemory-policy", "allkeys-lru", "--maxmemory", "64mb") as port:
        admin = sync_redis.Redis(port=port)
        admin.execute_command(
            "ACL", "SETUSER", "chatops", "on", f">{password}", "~*", "&*", "+@all", "-client|list"
        )
        admin.close()
        scenario.configure(redis_url=f"redis://chatops:{password}@127.0.0.1:{port}/0")

        result = await scenario.chatops("redis", "check", "--env", "test", "--json")
        assert result.code == 1, result.output
        report = json.loads(result.stdout)
        checks = _by_check(report)
        assert checks["maxmemory-policy"]["level"] == "fail"
        assert "allkeys-lru" in checks["maxmemory-policy"]["detail"]
        assert "noeviction" in checks["maxmemory-policy"]["detail"]
        assert checks["CLIENT LIST"]["level"] == "fail"
        assert "needed for seeing which workers are connected" in checks["CLIENT LIST"]["detail"]
        assert "connected as chatops" in checks["user"]["detail"]
        assert "of 64.0 MiB (" in checks["memory"]["detail"]
        assert password not in result.output

        text = await scenario.chatops("redis", "check", "--env", "test")
        assert text.code == 1
        assert "fail  maxmemory-policy: allkeys-lru" in text.stdout
        assert password not in text.output

        # A drain refuses before it touches anything, naming the reason.
        admin = sync_redis.Redis(port=port)
        admin.hset(f"{scenario.prefix}:sla:meta", "opts.maxLenEvents", "10000")
        admin.close()
        drain = await scenario.chatops("queue", "drain", "sla", "--env", "test", "--yes")
        assert drain.code != 0
        assert "Redis is not fit for a drain of sla: maxmemory-policy: allkeys-lru" in drain.output
        admin = sync_redis.Redis(port=port)
        assert admin.get(f"{scenario.prefix}:flags:WORKER_ACCEPT_JOBS") is None  # untouched
        admin.close()


async def test_an_unreachable_redis_is_one_clear_failure(scenario: Scenario):
    scenario.configure(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    result = await scenario.chatops("redis", "check", "--env", "test", "--json")
    assert result.code == 1
    report = json.loads(result.stdout)
    assert [f["check"] for f in report["findings"]] == ["ping"]
    assert report["findings"][0]["detail"].startswith("unreachable: ConnectionError")
