"""Workers as a Kubernetes Deployment: restart, deploy, rollback and their refusals through the
`chatops` CLI, against a fake API server over HTTP (tests/fixtures/fake_kube.py: no cluster can
run here) whose pods are the real Node BullMQ worker. The image tags name git tags of a source
repository holding `.env.example`, as a team that tags images with their release would."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from tests.fixtures.fake_kube import FakeKube, Image
from tests.fixtures.pm2 import CANARY_SECRET, FIXTURE_DIR, REDIS_URL, WORKER_JS, tool_path
from tests.scenarios.conftest import Result, Scenario
from tests.scenarios.test_worker_cli import _git

REPO = "registry.test/mailer"
NS = "workers"
EXAMPLE = "REDIS_URL=\nQUEUES=\nBULLMQ_PREFIX=\nWORKER_NAME=\nAPI_TOKEN=\nPRINT_ENV_KEY=\n"


@dataclass
class Cluster:
    scenario: Scenario
    kube: FakeKube

    async def chatops(self, *args: str) -> Result:
        return await self.scenario.chatops(*args, timeout_s=180)

    def deployment(self) -> dict[str, Any]:
        return self.kube.deployment(NS, "mailer")

    def image(self) -> str:
        image: str = self.deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
        return image

    def pods(self) -> set[str]:
        return {
            p["metadata"]["name"]
            for p in self.kube.pods(NS, "mailer-")
            if not p["metadata"].get("deletionTimestamp")
        }


def source_repo(path: Path) -> None:
    """Tags v1, v2 and broken share one .env.example; v3 adds a key the Deployment lacks."""
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    (path / ".env.example").write_text(EXAMPLE)
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "v1")
    for tag in ("v1", "v2", "broken"):
        _git(path, "tag", tag)
    (path / ".env.example").write_text(EXAMPLE + "MAILER_FROM=\n")
    _git(path, "commit", "-q", "-am", "v3")
    _git(path, "tag", "v3")


@pytest.fixture
async def cluster(scenario: Scenario) -> AsyncIterator[Cluster]:
    node = shutil.which("node", path=tool_path())
    assert node is not None
    worker = Image(argv=(node, str(WORKER_JS)), cwd=str(FIXTURE_DIR))
    images = {
        f"{REPO}:v1": worker,
        f"{REPO}:v2": worker,
        f"{REPO}:v3": worker,
        f"{REPO}:broken": Image(argv=(node, "-e", "process.exit(3)"), cwd=str(FIXTURE_DIR)),
    }
    async with FakeKube(scenario.tmp / "kube", images=images) as kube:
        kube.add_secret(NS, "mailer", {"redis-url": REDIS_URL, "api-token": CANARY_SECRET})
        kube.add_configmap(
            NS, "mailer", {"QUEUES": "sla", "BULLMQ_PREFIX": scenario.prefix, "WORKER_NAME": "m"}
        )
        secret = "mailer"
        kube.add_deployment(
            NS,
            "mailer",
            image=f"{REPO}:v1",
            replicas=2,
            env=[
                {
                    "name": "REDIS_URL",
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": "redis-url"}},
                },
                {
                    "name": "API_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": "api-token"}},
                },
                # The worker prints this variable's value: the bot must mask it everywhere.
                {"name": "PRINT_ENV_KEY", "value": "API_TOKEN"},
            ],
            env_from=[{"configMapRef": {"name": "mailer"}}],
            progress_deadline_s=60,
            termination_grace_s=10,
        )
        await kube.wait_rollout(NS, "mailer")
        kubeconfig = kube.write_kubeconfig(scenario.tmp / "kubeconfig", namespace=NS)
        source_repo(scenario.tmp / "source")
        scenario.configure(
            workers={
                "mailer": {
                    "manager": "kubernetes",
                    "app": "mailer",
                    "namespace": NS,
                    "kubeconfig": str(kubeconfig),
                    "image_repository": REPO,
                    "source_repo": str(scenario.tmp / "source"),
                    "queues": ["sla"],
                    "ready_timeout_s": 40,
                    "active_wait_s": 15,
                    "completing_wait_s": 15,
                }
            }
        )
        yield Cluster(scenario, kube)


def _secrets_kept(cluster: Cluster, *results: Result) -> None:
    for result in results:
        assert CANARY_SECRET not in result.output
        assert cluster.kube.token not in result.output


async def test_restart_rolls_new_pods_and_proves_them_ready(cluster: Cluster):
    scenario = cluster.scenario
    await scenario.produce("sla", 20)
    before = cluster.pods()
    assert len(before) == 2
    status = await scenario.json("worker", "status", "mailer", "--env", "test")
    assert status["status"] == "online" and status["script"] == f"{REPO}:v1"

    result = await cluster.chatops("worker", "restart", "mailer", "--env", "test", "--yes")
    assert result.code == 0, result.output
    assert "worker:ready" in result.output and "2 of 2 pods" in result.output
    after = cluster.pods()
    assert len(after) == 2 and not after & before
    assert (
        "kubectl.kubernetes.io/restartedAt"
        in (cluster.deployment()["spec"]["template"]["metadata"]["annotations"])
    )
    assert (await scenario.counts())["waiting"] == 0

    logs = await cluster.chatops("worker", "logs", "mailer", "--env", "test", "--lines", "50")
    assert logs.code == 0 and "worker:ready" in logs.stdout and "worker:debug" in logs.stdout
    check = await scenario.json("worker", "env-check", "mailer", "--env", "test")
    assert check["found"] is True and check["missing"] == [] and check["extra"] == []
    _secrets_kept(cluster, result, logs)


async def test_deploy_then_roll_back_to_the_known_good_image(cluster: Cluster):
    good = await cluster.chatops("worker", "mark-good", "mailer", "v1", "--env", "test")
    assert good.code == 0, good.output
    deploy = await cluster.chatops(
        "worker", "deploy", "mailer", "--env", "test", "--ref", "v2", "--yes"
    )
    assert deploy.code == 0, deploy.output
    assert cluster.image() == f"{REPO}:v2"
    v1_replicaset = f"mailer-{_hash_of(cluster, f'{REPO}:v1')}"

    back = await cluster.chatops("worker", "rollback", "mailer", "--env", "test", "--yes")
    assert back.code == 0, back.output
    assert cluster.image() == f"{REPO}:v1"
    assert f"image {REPO}:v2 → {REPO}:v1" in " ".join(back.stdout.split())  # its plan
    # As `kubectl rollout undo`: the old ReplicaSet runs again, under a new revision.
    rs = {r["metadata"]["name"]: r for r in cluster.kube.replicasets(NS)}[v1_replicaset]
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert rs["status"]["replicas"] == 2

    releases = await cluster.chatops("worker", "releases", "mailer", "--env", "test")
    assert f"{REPO}:v1" in releases.output and f"{REPO}:v2" in releases.output
    incidents = await cluster.chatops("ops", "incidents", "--env", "test")
    assert "rollback" in incidents.output
    _secrets_kept(cluster, deploy, back)


def _hash_of(cluster: Cluster, image: str) -> str:
    for rs in cluster.kube.replicasets(NS):
        if rs["spec"]["template"]["spec"]["containers"][0]["image"] == image:
            label: str = rs["metadata"]["labels"]["pod-template-hash"]
            return label
    raise AssertionError(f"no ReplicaSet ran {image}")


async def test_a_crash_looping_image_is_undone_and_the_old_pods_kept_serving(cluster: Cluster):
    before = cluster.pods()
    result = await cluster.chatops(
        "worker", "deploy", "mailer", "--env", "test", "--ref", "broken", "--yes"
    )
    assert result.code != 0
    said = " ".join(result.output.split())
    assert "CrashLoopBackOff" in said, said
    assert cluster.image() == f"{REPO}:v1"
    await cluster.kube.wait_rollout(NS, "mailer")
    # maxUnavailable 0: the broken pods never replaced the serving ones, which still serve.
    assert cluster.pods() == before
    await cluster.scenario.produce("sla", 5)
    for _ in range(100):
        if (await cluster.scenario.counts())["completed"] >= 5:
            break
    else:
        raise AssertionError("the pods kept after the failed deploy processed nothing")
    status = await cluster.scenario.json("worker", "status", "mailer", "--env", "test")
    assert status["status"] == "online"


async def test_a_token_the_api_server_refuses_is_named_not_leaked(cluster: Cluster):
    kubeconfig = Path(cluster.scenario.environments["test"]["workers"]["mailer"]["kubeconfig"])
    kubeconfig.write_text(kubeconfig.read_text().replace(cluster.kube.token, "not-the-token"))
    result = await cluster.chatops("worker", "status", "mailer", "--env", "test")
    assert result.code != 0
    said = " ".join(result.output.split())
    assert "Kubernetes refused to read deployment/mailer (401)" in said, said
    assert "not-the-token" not in said


async def test_refusals_change_nothing(cluster: Cluster):
    generation = cluster.deployment()["metadata"]["generation"]
    elsewhere = await cluster.chatops(
        "worker", "deploy", "mailer", "--env", "test", "--ref", "evil.test/mailer:v1", "--yes"
    )
    assert elsewhere.code != 0
    assert "not in registry.test/mailer" in " ".join(elsewhere.output.split())

    missing = await cluster.chatops(
        "worker", "deploy", "mailer", "--env", "test", "--ref", "v3", "--yes"
    )
    assert missing.code != 0
    assert "lacks MAILER_FROM" in " ".join(missing.output.split())

    nothing_good = await cluster.chatops("worker", "rollback", "mailer", "--env", "test", "--yes")
    assert nothing_good.code != 0
    assert "no known-good image" in " ".join(nothing_good.output.split())
    assert cluster.deployment()["metadata"]["generation"] == generation
    assert cluster.image() == f"{REPO}:v1"


async def test_a_rollout_that_never_becomes_available_stops_at_its_deadline(cluster: Cluster):
    # New pods become ready but, with minReadySeconds far away, never available: no progress,
    # so the controller gives up at progressDeadlineSeconds.
    config = KubeConfig.from_file(cluster.scenario.tmp / "kubeconfig")
    async with contextlib.aclosing(AsyncClient(config)) as client:
        await client.patch(
            Deployment,
            "mailer",
            {"spec": {"minReadySeconds": 600, "progressDeadlineSeconds": 2}},
            namespace=NS,
            patch_type=PatchType.MERGE,
        )
    before = cluster.pods()
    result = await cluster.chatops("worker", "restart", "mailer", "--env", "test", "--yes")
    assert result.code != 0
    said = " ".join(result.output.split())
    assert "deployment mailer exceeded its progress deadline" in said, said
    assert before <= {p["metadata"]["name"] for p in cluster.kube.pods(NS, "mailer-")}
    assert "put back: queue sla resumed" in said
    (incident,) = await cluster.scenario.json("ops", "incidents")
    assert incident["kind"] == "restart failed"
