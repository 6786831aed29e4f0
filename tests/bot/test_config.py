from pathlib import Path

import pytest

from bot.config import (
    BotSettings,
    config_from_runbook_env,
    load_config_file,
    parse_config,
    secret_values,
)
from bot.errors import ConfigError, UnknownEnvironment, UnknownQueue, UnknownWorker

ROOT = Path(__file__).resolve().parents[2]


def _problems(raw, environ=None):
    with pytest.raises(ConfigError) as info:
        parse_config(raw, environ=environ or {}, source="test.yml")
    return info.value.problems


def test_example_file_is_valid():
    config = load_config_file(
        ROOT / "config.example.yml",
        environ={"STAGING_REDIS_URL": "redis://:pw@h:6379/0", "PROD_REDIS_URL": "redis://h2"},
    )
    staging = config.env("staging")
    assert staging.flag_key == "bullmq:flags:WORKER_ACCEPT_JOBS"
    worker = staging.worker("notification", env="staging")
    assert worker.ready_regex.search("BullMQ queue ready")
    assert worker.build[0] == ("pnpm", "install", "--frozen-lockfile")
    assert config.env("prod").protected


def test_every_bad_key_is_named():
    problems = _problems(
        {
            "environments": {
                "staging": {
                    "redis_url": "redis://x",
                    "queues": ["sla", "bad name"],
                    "colour": "red",
                    "workers": {
                        "w": {
                            "app": "w",
                            "pm2_home": "/tmp/x",
                            "quiesce": "sometimes",
                            "ready_pattern": "([",
                        }
                    },
                },
            },
            "permissions": {"ghost": {"staging": ["drain"]}},
        }
    )
    text = "\n".join(problems)
    assert "environments.staging.queues" in text
    assert "environments.staging.colour" in text
    assert "environments.staging.workers.w.quiesce" in text
    assert "environments.staging.workers.w.ready_pattern" in text


def test_references_to_unknown_roles_and_operations():
    problems = _problems(
        {
            "environments": {"s": {"redis_url": "redis://x", "queues": ["q"]}},
            "roles": {"ops": {"users": ["U1"]}},
            "permissions": {
                "ops": {"s": ["drain", "explode", "queue status", "worker *", "queue deploy"]},
                "ghost": {"nowhere": ["*"]},
            },
            "approvals": {"rollback": {"nowhere": 1}},
        }
    )
    text = "\n".join(problems)
    assert "'explode' is neither an operation nor a command's" in text
    assert "'queue deploy' is neither" in text  # /queue has no deploy
    assert "'queue status'" not in text and "'worker *'" not in text
    assert "permissions.ghost: no such role" in text
    assert "approvals.rollback.nowhere: no such environment" in text


def test_worker_queue_must_belong_to_environment():
    problems = _problems(
        {
            "environments": {
                "s": {
                    "redis_url": "redis://x",
                    "queues": ["sla"],
                    "workers": {"w": {"app": "w", "pm2_home": "/p", "queues": ["other"]}},
                }
            }
        }
    )
    assert any("serves queues not in this environment: other" in p for p in problems)


def test_interpolation_and_missing_variables():
    raw = {"environments": {"s": {"redis_url": "${R}", "prefix": "${P:-bull}", "queues": ["q"]}}}
    config = parse_config(raw, environ={"R": "redis://h/1"}, source="t")
    assert config.env("s").redis_url == "redis://h/1"
    assert config.env("s").prefix == "bull"
    assert _problems(raw) == ["environments.s.redis_url: environment variable R is not set"]


def test_deploy_strategy_needs_its_paths():
    problems = _problems(
        {
            "environments": {
                "s": {
                    "redis_url": "redis://x",
                    "queues": ["q"],
                    "workers": {
                        "w": {"app": "w", "pm2_home": "/p", "deploy": {"strategy": "in_place"}}
                    },
                }
            }
        }
    )
    assert any("in_place" in p and "repo_path" in p for p in problems)


def test_unknown_names_list_the_known_ones():
    config = config_from_runbook_env({"REDIS_URL": "redis://h", "PM2_APP": "worker"})
    with pytest.raises(UnknownEnvironment, match="known: default"):
        config.env("prod")
    env = config.env("default")
    with pytest.raises(UnknownQueue, match="known: default, sla"):
        env.queue("slq", env="default")
    with pytest.raises(UnknownWorker, match="known: worker"):
        env.worker("api", env="default")


def test_runbook_variables_alone_make_an_environment():
    config = config_from_runbook_env(
        {"REDIS_URL": "redis://:pw@h:6379", "BULLMQ_PREFIX": "", "NODE_ENV": "production"}
    )
    env = config.env("default")
    assert env.prefix == "bullmq"  # the runbook's default, not BullMQ's
    assert env.queues == ("sla", "default")
    assert env.protected
    with pytest.raises(ConfigError, match="REDIS_URL"):
        config_from_runbook_env({})


def test_settings_come_only_from_the_given_mapping(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-process")
    settings = BotSettings.from_environ({"CHATOPS_REDIS_URL": "redis://:s3cret@h"})
    assert settings.SLACK_BOT_TOKEN is None
    assert list(secret_values(settings, None)) == ["s3cret"]
    with pytest.raises(ConfigError, match="CHATOPS_LOG_FORMAT"):
        BotSettings.from_environ({"CHATOPS_LOG_FORMAT": "xml"})


def test_every_permission_a_command_needs_can_be_granted() -> None:
    from bot.config import OPERATIONS
    from commands.grammar import ACTIONS, permission_of

    needed = {permission_of(c, a) for c, actions in ACTIONS.items() for a in actions} - {"help"}
    assert needed <= set(OPERATIONS), needed - set(OPERATIONS)


@pytest.mark.parametrize(
    ("worker", "says"),
    [
        ({"app": "w"}, "pm2_home: required for manager pm2"),
        ({"app": "w", "pm2_home": "/p", "host": "worker-1"}, "ssh://user@host[:port]"),
        ({"app": "w", "pm2_home": "/p", "host": "ssh://u:pw@h"}, "no password in the URL"),
        ({"app": "w", "manager": "systemd", "host": "ssh://u@h"}, "pm2 workers, not systemd"),
        ({"app": "w", "manager": "systemd", "unit": "a b.service"}, "unit"),
        ({"app": "Mailer", "manager": "kubernetes"}, "not a Kubernetes Deployment name"),
        ({"app": "m", "manager": "kubernetes", "namespace": "a_b"}, "namespace"),
        (
            {"app": "m", "manager": "kubernetes", "deploy": {"repo": "r", "deploy_path": "/d"}},
            "a Kubernetes worker deploys images",
        ),
    ],
)
def test_where_a_worker_runs_is_checked(worker, says):
    raw = {"environments": {"s": {"redis_url": "redis://x", "workers": {"w": worker}}}}
    problems = _problems(raw)
    assert any(says in p for p in problems), problems
    assert not any("pw" in p for p in problems)
