"""Configuration: the bot's own settings from the environment, and the environments it operates.

Parsed once at start into frozen models from an injected mapping, so nothing downstream reads
`os.environ`. Every problem is reported with the dotted key it belongs to.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bot.errors import ConfigError, UnknownEnvironment, UnknownQueue, UnknownWorker

DEFAULT_READY_PATTERN = r"worker:ready|BullMQ queue ready"
DEFAULT_FLAG_KEY = "{prefix}:flags:WORKER_ACCEPT_JOBS"
DEFAULT_MAINTENANCE_KEY = "{prefix}:flags:MAINTENANCE"
OPERATIONS = (
    "status",
    "drain",
    "pause",
    "resume",
    "failed",
    "retry",
    "delayed",
    "promote",
    "restart",
    "deploy",
    "rollback",
    "build",
    "logs",
    "releases",
    "env-check",
    "redis-check",
    "duplicates",
    "mark-good",
    "cancel",
    "history",
    "window",
)
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_DAY_S = 86_400.0  # no wait in an operation is longer: beyond it a typo, not a plan


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DrainConfig(_Model):
    stall_s: float = Field(60.0, gt=0, le=_DAY_S)
    timeout_s: float = Field(300.0, gt=0, le=_DAY_S)
    poll_interval_s: float = Field(1.0, gt=0, le=_DAY_S)
    # Producers may cache the flag this long (the README's contract): adds within it are allowed.
    producer_grace_s: float = Field(3.0, ge=0, le=_DAY_S)


class FlagsConfig(_Model):
    producer_key: str = DEFAULT_FLAG_KEY
    # Set while a maintenance window is open (for the alerting side: suppress SLA alerts).
    maintenance_key: str = DEFAULT_MAINTENANCE_KEY


class DeployConfig(_Model):
    strategy: Literal["releases", "in_place"] = "releases"
    repo: str | None = None
    deploy_path: str | None = None
    repo_path: str | None = None
    default_ref: str = "main"
    # How long `git fetch` may take to resolve the ref; a remote that hangs fails the deploy then.
    fetch_timeout_s: float = Field(120.0, gt=0, le=_DAY_S)
    build_timeout_s: float = Field(600.0, gt=0, le=_DAY_S)

    @model_validator(mode="after")
    def _paths_for_strategy(self) -> DeployConfig:
        if self.strategy == "releases" and (not self.repo or not self.deploy_path):
            raise ValueError("strategy 'releases' needs both 'repo' and 'deploy_path'")
        if self.strategy == "in_place" and not self.repo_path:
            raise ValueError("strategy 'in_place' needs 'repo_path'")
        return self


class CanaryConfig(_Model):
    queue: str
    name: str = "chatops-canary"
    data: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(30.0, gt=0, le=_DAY_S)


_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class DuplicatesConfig(_Model):
    """The runbook's duplicate-notification check: a read-only query on the worker's database.

    By default: values of `column` in `table` seen more than once in the last `hours` (by
    `time_column`). `query` replaces it: any SELECT returning (value, copies) rows, with `$1`
    the hours. `database_url` defaults to the worker's own `DATABASE_URL` (from pm2).
    """

    database_url: str | None = None
    table: str = Field("notification_token", pattern=_IDENTIFIER)
    column: str = Field("notification_token", pattern=_IDENTIFIER)
    time_column: str = Field("created_at", pattern=_IDENTIFIER)
    hours: float = Field(24.0, gt=0, le=24 * 365)
    query: str | None = None
    timeout_s: float = Field(30.0, gt=0, le=600)


def ssh_address(url: str) -> tuple[str, str, int]:
    """`ssh://user@host[:port]` as (user, host, port); ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname or not parts.username:
        raise ValueError(f"host: 'local' or ssh://user@host[:port], not {url!r}")
    if parts.password:
        raise ValueError("host: no password in the URL; use ssh_key or the SSH agent")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"host: only ssh://user@host[:port], not {url!r}")
    return parts.username, parts.hostname, parts.port or 22


class WorkerConfig(_Model):
    manager: Literal["pm2", "systemd", "kubernetes"] = "pm2"
    # pm2 app name, or the Kubernetes Deployment's. Pydantic's (Rust) regex: `$` is the very end
    app: str = Field(pattern=rf"^{_NAME}$")
    pm2_home: str | None = None  # pm2: required
    unit: str | None = Field(None, pattern=r"^[A-Za-z0-9@_.:-]{1,255}$")  # systemd: APP.service
    systemctl_bin: str = "systemctl"
    journalctl_bin: str = "journalctl"
    namespace: str = Field("default", pattern=_DNS_LABEL)  # kubernetes
    container: str | None = Field(None, pattern=_DNS_LABEL)  # kubernetes: if the pod has several
    kubeconfig: str | None = None  # kubernetes: else in-cluster, else $KUBECONFIG, ~/.kube/config
    kube_context: str | None = None
    image_repository: str | None = None  # kubernetes: the only repository deploys may name
    source_repo: str | None = None  # kubernetes: a local git clone; .env.example at the image tag
    host: str = "local"  # or ssh://user@host[:port] (pm2 only)
    ssh_key: str | None = None  # a private key file; else the SSH agent
    known_hosts: str | None = None  # default ~/.ssh/known_hosts; host keys are always checked
    pm2_bin: str = "pm2"
    queues: tuple[str, ...] = ()
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment for pm2 and the build (PATH, HOME); never the bot's own",
    )
    deploy: DeployConfig | None = None
    build: tuple[tuple[str, ...], ...] = (
        ("pnpm", "install", "--frozen-lockfile"),
        ("pnpm", "build"),
    )
    ready_pattern: str = DEFAULT_READY_PATTERN
    ready_timeout_s: float = Field(60.0, gt=0, le=_DAY_S)
    quiesce: Literal["pause", "graceful"] = "pause"
    active_wait_s: float = Field(60.0, gt=0, le=_DAY_S)
    completing_wait_s: float = Field(20.0, gt=0, le=_DAY_S)
    canary: CanaryConfig | None = None
    duplicates: DuplicatesConfig = Field(default_factory=DuplicatesConfig)

    @model_validator(mode="after")
    def _manager_fields(self) -> WorkerConfig:
        if self.manager == "pm2" and not self.pm2_home:
            raise ValueError("pm2_home: required for manager pm2 (every pm2 call starts a daemon)")
        if self.host != "local":
            ssh_address(self.host)
            if self.manager != "pm2":
                raise ValueError(f"host: ssh:// is for pm2 workers, not {self.manager}")
        if self.manager == "kubernetes" and not re.fullmatch(_DNS_SUBDOMAIN, self.app):
            raise ValueError(f"app: {self.app!r} is not a Kubernetes Deployment name")
        if self.manager == "kubernetes" and self.deploy is not None:
            raise ValueError(
                "deploy: git releases are for pm2 and systemd; a Kubernetes worker deploys "
                "images of image_repository"
            )
        return self

    @property
    def unit_name(self) -> str:
        return self.unit or f"{self.app}.service"

    @field_validator("ready_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @field_validator("build")
    @classmethod
    def _argv_lists(cls, value: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        if any(not argv or not argv[0] for argv in value):
            raise ValueError("each build command is a non-empty argv list")
        return value

    @property
    def ready_regex(self) -> re.Pattern[str]:
        return re.compile(self.ready_pattern)


class EnvironmentConfig(_Model):
    redis_url: str
    prefix: str = Field("bull", pattern=r"^[^\s:]+$")
    queues: tuple[str, ...] = Field(min_length=1)
    channel: str | None = None
    protected: bool = False
    workers: dict[str, WorkerConfig] = Field(default_factory=dict)
    drain: DrainConfig = DrainConfig()
    flags: FlagsConfig = FlagsConfig()

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [q for q in value if not re.fullmatch(_NAME, q)]
        if bad:
            raise ValueError(f"queue names must match {_NAME}: {', '.join(map(repr, bad))}")
        if len(set(value)) != len(value):
            raise ValueError("queue names repeat")
        return value

    @model_validator(mode="after")
    def _worker_queues_known(self) -> EnvironmentConfig:
        for name, worker in self.workers.items():
            unknown = [q for q in worker.queues if q not in self.queues]
            if unknown:
                raise ValueError(
                    f"worker {name!r} serves queues not in this environment: {', '.join(unknown)}"
                )
            if worker.canary is not None and worker.canary.queue not in worker.queues:
                raise ValueError(
                    f"worker {name!r}: canary queue {worker.canary.queue!r} is not one it serves"
                )
        return self

    @property
    def flag_key(self) -> str:
        return self.flags.producer_key.replace("{prefix}", self.prefix)

    @property
    def maintenance_key(self) -> str:
        return self.flags.maintenance_key.replace("{prefix}", self.prefix)

    def worker(self, name: str, *, env: str) -> WorkerConfig:
        try:
            return self.workers[name]
        except KeyError:
            raise UnknownWorker(name, env=env, known=self.workers) from None

    def queue(self, name: str, *, env: str) -> str:
        if name not in self.queues:
            raise UnknownQueue(name, env=env, known=self.queues)
        return name

    def workers_serving(self, queue: str) -> list[str]:
        return [name for name, w in self.workers.items() if queue in w.queues]


class RoleConfig(_Model):
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


class IncidentsConfig(_Model):
    """Where incidents (rollbacks, failed restarts) are told, besides the store."""

    channel: str | None = None  # a Slack channel, through the outbox
    webhook_url: str | None = None  # a JSON POST (incident tools, chat webhooks); a secret
    webhook_timeout_s: float = Field(10.0, gt=0, le=120)

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("webhook_url must be an http(s) URL")
        return value


class WindowsConfig(_Model):
    """Maintenance windows: the zone a time without one is read in (when Slack does not say
    the user's), the reminders before each start, and how late a notice may still be sent."""

    timezone: str = "UTC"
    reminders_min: tuple[int, ...] = (60, 15)
    grace_s: float = Field(600.0, ge=0, le=_DAY_S)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("reminders_min")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(m <= 0 or m > 7 * 24 * 60 for m in value):
            raise ValueError("reminders are minutes before the start, 1 to 10080")
        return value


class Config(_Model):
    """The YAML file: environments, and who may do what (used by the Slack door)."""

    environments: dict[str, EnvironmentConfig] = Field(min_length=1)
    roles: dict[str, RoleConfig] = Field(default_factory=dict)
    # role -> environment (or "*") -> operations, `command subcommand`s, `command *`s (or "*")
    permissions: dict[str, dict[str, tuple[str, ...]]] = Field(default_factory=dict)
    # operation -> environment (or "*") -> approvals needed
    approvals: dict[str, dict[str, int]] = Field(default_factory=dict)
    # how long an approval request waits for its approvals before it is cancelled
    approval_expiry_min: int = Field(default=30, ge=1, le=7 * 24 * 60)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    windows: WindowsConfig = Field(default_factory=WindowsConfig)

    @field_validator("environments")
    @classmethod
    def _env_names(cls, value: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
        bad = [name for name in value if not re.fullmatch(_NAME, name)]
        if bad:
            raise ValueError(f"environment names must match {_NAME}: {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _references(self) -> Config:
        # The grammar imports bot.git, which imports this module.
        from commands.grammar import COMMAND_GRANTS

        problems: list[str] = []
        envs = set(self.environments) | {"*"}
        for role, grants in self.permissions.items():
            if role not in self.roles:
                problems.append(f"permissions.{role}: no such role")
            for env, ops in grants.items():
                if env not in envs:
                    problems.append(f"permissions.{role}.{env}: no such environment")
                problems += [
                    f"permissions.{role}.{env}: {op!r} is neither an operation nor a command's "
                    "(`queue status`, `queue *`)"
                    for op in ops
                    if op != "*" and op not in OPERATIONS and op not in COMMAND_GRANTS
                ]
        for op, by_env in self.approvals.items():
            if op not in OPERATIONS:
                problems.append(f"approvals.{op}: no such operation")
            problems += [
                f"approvals.{op}.{env}: must be a whole number from 0 to 10"
                for env, count in by_env.items()
                if not 0 <= count <= 10
            ]
            problems += [
                f"approvals.{op}.{env}: no such environment" for env in by_env if env not in envs
            ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def env(self, name: str) -> EnvironmentConfig:
        try:
            return self.environments[name]
        except KeyError:
            raise UnknownEnvironment(name, known=self.environments) from None


class BotSettings(BaseSettings):
    """The bot's own settings, from environment variables (names as written, case-sensitive)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    CHATOPS_CONFIG: str | None = None
    CHATOPS_DATABASE_URL: str | None = None
    CHATOPS_REDIS_URL: str | None = None
    CHATOPS_STATE_DIR: str | None = None
    CHATOPS_LOG_FORMAT: Literal["text", "json"] = "text"
    # Unset: warnings for commands, info for `chatops serve`.
    CHATOPS_LOG_LEVEL: Literal["debug", "info", "warning", "error"] | None = None
    # How often a running operation proves it is alive; five missed beats mark it interrupted.
    CHATOPS_HEARTBEAT_S: float = Field(2.0, gt=0)
    # How often the leading scheduler looks at windows (its leadership lasts 3 of these).
    CHATOPS_SCHEDULER_TICK_S: float = Field(5.0, gt=0, le=60)
    # Longest wait for one Redis reply; BullMQ's keys are small and every call the bot makes is
    # short, so a slow answer means an unreachable server (reported, never waited out).
    CHATOPS_REDIS_TIMEOUT_S: float = Field(15.0, gt=0)
    # Longest wait to connect to the bot's own database; one statement may take three times it.
    CHATOPS_DATABASE_TIMEOUT_S: float = Field(10.0, gt=0)
    # How long a running operation waits for its database to come back to record a step or its
    # outcome; past it, it stops after its current step, puts back what it changed and says so.
    CHATOPS_STORE_PATIENCE_S: float = Field(60.0, ge=0)
    SLACK_BOT_TOKEN: str | None = None
    SLACK_SIGNING_SECRET: str | None = None
    SLACK_APP_TOKEN: str | None = None
    SLACK_API_URL: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what `from_environ` hands over: the mapping is injected, never read implicitly.
        return (init_settings,)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> BotSettings:
        names = cls.model_fields.keys()
        try:
            given: dict[str, Any] = {k: v for k, v in environ.items() if k in names and v}
            return cls.model_validate(given)
        except ValidationError as exc:
            raise ConfigError(_problems(exc), source="environment") from None

    def state_dir(self, environ: Mapping[str, str]) -> Path:
        if self.CHATOPS_STATE_DIR:
            return Path(self.CHATOPS_STATE_DIR)
        base = environ.get("XDG_STATE_HOME") or os.path.join(
            environ.get("HOME", "."), ".local", "state"
        )
        return Path(base) / "bullmq-chatops"

    def database_url(self, environ: Mapping[str, str]) -> str:
        if self.CHATOPS_DATABASE_URL:
            return self.CHATOPS_DATABASE_URL
        return f"sqlite+aiosqlite:///{self.state_dir(environ) / 'chatops.sqlite3'}"


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


_MAX_NODES = 100_000  # a configuration is small; YAML aliases can make it explode


class _TooLarge(Exception):
    pass


def _interpolate(
    node: Any, environ: Mapping[str, str], path: str, problems: list[str], budget: list[int]
) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if isinstance(node, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = environ.get(name)
            if value is None or value == "":
                if default is None:
                    problems.append(f"{path}: environment variable {name} is not set")
                    return ""
                return default
            return value

        return _VAR.sub(substitute, node)
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            where = f"{path}.{key}" if path else repr(key) if key == "" else str(key)
            if not isinstance(key, str):
                problems.append(
                    f"{where}: the key {key!r} is not text (YAML reads yes/no/on/off and numbers "
                    "as such: quote it)"
                )
                continue
            out[key] = _interpolate(value, environ, where, problems, budget)
        return out
    if isinstance(node, list):
        return [
            _interpolate(v, environ, f"{path}[{i}]", problems, budget) for i, v in enumerate(node)
        ]
    return node


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"] if not str(part).startswith("function-"))
        message = err["msg"].removeprefix("Value error, ")
        out.append(f"{loc or '(top level)'}: {message}")
    return out


def parse_config(raw: Any, *, environ: Mapping[str, str], source: str) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping with 'environments'"], source=source)
    problems: list[str] = []
    try:
        data = _interpolate(raw, environ, "", problems, [_MAX_NODES])
    except _TooLarge:
        raise ConfigError(
            [f"(top level): more than {_MAX_NODES} values (YAML aliases expanding?)"], source=source
        ) from None
    except RecursionError:
        raise ConfigError(
            ["(top level): nested too deeply, or refers to itself"], source=source
        ) from None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += [p for p in _problems(exc) if p not in problems]
    except RecursionError:
        problems.append("(top level): nested too deeply")
    if problems:
        raise ConfigError(problems, source=source)
    return config


def load_config_file(path: str | Path, *, environ: Mapping[str, str]) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror}"], source=str(path)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source=str(path)) from None
    except (ValueError, TypeError, AttributeError) as exc:
        # PyYAML's constructors raise these for values such as 2020-13-01 or !!int x.
        raise ConfigError(
            [f"not valid YAML: a value cannot be read ({exc})"], source=str(path)
        ) from None
    except RecursionError:
        raise ConfigError(["not valid YAML: nested too deeply"], source=str(path)) from None
    return parse_config(raw, environ=environ, source=str(path))


def config_from_runbook_env(environ: Mapping[str, str]) -> Config:
    """One environment from the runbook's own variables, for teams without a YAML file."""
    if not environ.get("REDIS_URL"):
        raise ConfigError(
            [
                "no configuration: set CHATOPS_CONFIG to a YAML file, "
                "or REDIS_URL (and BULLMQ_PREFIX)"
            ],
            source="environment",
        )
    name = environ.get("CHATOPS_ENV", "default")
    queues = [
        q.strip() for q in environ.get("BULLMQ_QUEUES", "sla,default").split(",") if q.strip()
    ]
    env: dict[str, Any] = {
        "redis_url": environ["REDIS_URL"],
        "prefix": environ.get("BULLMQ_PREFIX") or "bullmq",
        "queues": queues,
        "protected": environ.get("NODE_ENV") == "production",
    }
    if environ.get("PM2_APP"):
        env["workers"] = {
            environ["PM2_APP"]: {
                "app": environ["PM2_APP"],
                "pm2_home": environ.get("PM2_HOME")
                or os.path.join(environ.get("HOME", "."), ".pm2"),
                "queues": queues,
                **(
                    {"deploy": {"strategy": "in_place", "repo_path": environ["WORKER_REPO_PATH"]}}
                    if environ.get("WORKER_REPO_PATH")
                    else {}
                ),
            }
        }
    return parse_config({"environments": {name: env}}, environ=environ, source="environment")


def load_config(settings: BotSettings, environ: Mapping[str, str]) -> Config:
    if settings.CHATOPS_CONFIG:
        return load_config_file(settings.CHATOPS_CONFIG, environ=environ)
    return config_from_runbook_env(environ)


def secret_values(settings: BotSettings, config: Config | None) -> Iterator[str]:
    """Every value that must be masked wherever the bot writes text."""
    for value in (
        settings.SLACK_BOT_TOKEN,
        settings.SLACK_SIGNING_SECRET,
        settings.SLACK_APP_TOKEN,
    ):
        if value:
            yield value
    urls = [settings.CHATOPS_DATABASE_URL, settings.CHATOPS_REDIS_URL]
    if config is not None:
        for env in config.environments.values():
            urls.append(env.redis_url)
            urls += [w.duplicates.database_url for w in env.workers.values()]
    for url in urls:
        if url and (password := urlsplit(url).password):
            yield password
    if config is not None and config.incidents.webhook_url:
        yield config.incidents.webhook_url  # its path is the credential (chat webhooks)
