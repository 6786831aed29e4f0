"""What every door (CLI, Slack, scheduler) opens at start and closes at the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis.asyncio as redis
from lightkube import AsyncClient

from bot.abc import Target
from bot.clock import Clock, SystemClock
from bot.config import BotSettings, Config, WorkerConfig, load_config, secret_values
from bot.engine.runner import Engine
from bot.hosts import Host, LocalHost, SshAddress
from bot.store import Store
from bot.targets.kube import KubeTarget, kube_client
from bot.targets.pm2 import Pm2Target
from bot.targets.systemd import SystemdTarget

if TYPE_CHECKING:
    from bot.ssh import SshHost

logger = logging.getLogger(__name__)

# redis-py 8 re-sends a call that outlasts its socket timeout (BULLMQ.md, trap 2): every call
# the bot makes is short, so a generous timeout only bounds a dead connection.
_REDIS_SOCKET_TIMEOUT_S = 15.0


def redis_client(url: str, *, timeout_s: float = _REDIS_SOCKET_TIMEOUT_S) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=min(5.0, timeout_s),
    )


@dataclass
class Runtime:
    settings: BotSettings
    config: Config
    environ: Mapping[str, str]
    store: Store
    clock: Clock
    secrets: tuple[str, ...]
    heartbeat_s: float
    # Set when `chatops serve` stops (SIGTERM): running operations stop at a safe point.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _redis: dict[str, redis.Redis] = field(default_factory=dict)
    _ssh: dict[tuple[str, str | None, str | None], SshHost] = field(default_factory=dict)
    _kube: dict[tuple[str | None, str | None, str], AsyncClient] = field(default_factory=dict)

    def redis_for(self, env_name: str) -> redis.Redis:
        url = self.config.env(env_name).redis_url
        return self._client(url)

    def coordination(self, env_name: str) -> redis.Redis:
        return self._client(self.settings.CHATOPS_REDIS_URL or self.config.env(env_name).redis_url)

    def _client(self, url: str) -> redis.Redis:
        if url not in self._redis:
            self._redis[url] = redis_client(url, timeout_s=self.settings.CHATOPS_REDIS_TIMEOUT_S)
        return self._redis[url]

    @property
    def engine(self) -> Engine:
        return Engine(
            store=self.store,
            clock=self.clock,
            coordination=self.coordination,
            heartbeat_s=self.heartbeat_s,
            store_patience_s=self.settings.CHATOPS_STORE_PATIENCE_S,
            secrets=self.secrets,
            stopping=self.stopping,
        )

    def tool_env(self, worker: WorkerConfig) -> dict[str, str]:
        """The environment for pm2 and builds: a PATH and HOME, plus the worker's own extras.

        Never the bot's environment: `pm2 reload --update-env` and builds would carry its
        Slack tokens and database URL into the worker.
        """
        base = {k: self.environ[k] for k in ("PATH", "HOME", "LANG") if k in self.environ}
        return {**base, **worker.env}

    def target_for(self, name: str, worker: WorkerConfig) -> Target:
        if worker.manager == "kubernetes":
            return KubeTarget(
                client=self._kube_client(worker),
                deployment=worker.app,
                namespace=worker.namespace,
                container=worker.container,
            )
        if worker.manager == "systemd":
            return SystemdTarget(
                unit=worker.unit_name,
                systemctl=worker.systemctl_bin,
                journalctl=worker.journalctl_bin,
                env=self.tool_env(worker),
            )
        assert worker.pm2_home is not None  # the configuration requires it for pm2
        return Pm2Target(
            app=worker.app,
            pm2_bin=worker.pm2_bin,
            pm2_home=worker.pm2_home,
            env=self.tool_env(worker),
            host=self.host_for(worker),
        )

    def _kube_client(self, worker: WorkerConfig) -> AsyncClient:
        key = (worker.kubeconfig, worker.kube_context, worker.namespace)
        if key not in self._kube:
            self._kube[key] = kube_client(
                kubeconfig=worker.kubeconfig,
                context=worker.kube_context,
                namespace=worker.namespace,
            )
        return self._kube[key]

    def host_for(self, worker: WorkerConfig) -> Host:
        if worker.host == "local":
            return LocalHost()
        key = (worker.host, worker.ssh_key, worker.known_hosts)
        if key not in self._ssh:
            from bot.ssh import SshHost  # asyncssh: slow to import, and most setups are local

            self._ssh[key] = SshHost(
                SshAddress.parse(worker.host),
                key_path=worker.ssh_key,
                known_hosts=worker.known_hosts,
            )
        return self._ssh[key]

    async def aclose(self) -> None:
        for host in self._ssh.values():
            await host.aclose()
        self._ssh.clear()
        for kube in self._kube.values():
            await kube.close()
        self._kube.clear()
        for client in self._redis.values():
            await client.aclose()
        self._redis.clear()


@contextlib.asynccontextmanager
async def open_runtime(
    environ: Mapping[str, str],
    *,
    config: Config | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Runtime]:
    settings = BotSettings.from_environ(environ)
    config = config or load_config(settings, environ)
    url = settings.database_url(environ)
    if url.startswith("sqlite") and not settings.CHATOPS_DATABASE_URL:
        await asyncio.to_thread(settings.state_dir(environ).mkdir, parents=True, exist_ok=True)
    secrets = tuple(secret_values(settings, config))
    async with contextlib.AsyncExitStack() as stack:
        timeout_s = settings.CHATOPS_DATABASE_TIMEOUT_S
        store = await Store.open(
            url, secrets=secrets, connect_timeout_s=timeout_s, command_timeout_s=3 * timeout_s
        )
        stack.push_async_callback(store.close)
        await store.upgrade()
        runtime = Runtime(
            settings=settings,
            config=config,
            environ=environ,
            store=store,
            clock=clock or SystemClock(),
            secrets=secrets,
            heartbeat_s=settings.CHATOPS_HEARTBEAT_S,
        )
        stack.push_async_callback(runtime.aclose)
        yield runtime
