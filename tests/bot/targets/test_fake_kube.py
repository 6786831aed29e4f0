"""The fake Kubernetes API (tests/fixtures/fake_kube.py) driven through lightkube's AsyncClient,
configured by the kubeconfig the fake writes: it speaks what a real client expects, and its
controllers and kubelet behave as a cluster's, with the real Node worker on real Redis."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import redis.asyncio as redis
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.models.apps_v1 import DeploymentCondition
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret
from lightkube.types import PatchType

from tests.fixtures.fake_kube import FakeKube, Image
from tests.fixtures.pm2 import FIXTURE_DIR, REDIS_URL, WORKER_JS

T = TypeVar("T")

NS = "workers"
WORKER = "registry.example/bullmq-worker:1.4.0"
MISSING = "registry.example/bullmq-worker:9.9.9"
CRASHER = "registry.example/crasher:1"
ENV_PRINTER = "registry.example/env-printer:1"
STUBBORN = "registry.example/stubborn:1"
SLEEPER = "registry.example/sleeper:1"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"

_PRINT_ENV = (
    "const e = process.env;"
    "console.log(['env', e.FROM_SECRET, e.FROM_CM, e.CFG_QUEUES, e.COMBINED].join('|'));"
    "setInterval(() => {}, 1000);"
)
IMAGES = {
    WORKER: Image(("node", str(WORKER_JS)), str(FIXTURE_DIR)),
    CRASHER: Image(("node", "-e", "console.log('crasher:start'); process.exit(3)"), "/"),
    ENV_PRINTER: Image(("node", "-e", _PRINT_ENV), "/"),
    SLEEPER: Image(("node", "-e", "setInterval(() => {}, 1000)"), "/"),
    # Ignores SIGTERM and has a child in its process group: only SIGKILL to the group ends it.
    STUBBORN: Image(("sh", "-c", "trap '' TERM; sleep 300 & wait"), "/"),
}


@pytest.fixture
async def kube(tmp_path: Path, redis_client: redis.Redis) -> AsyncIterator[FakeKube]:
    # Depends on redis_client so that the prefix's keys are deleted after the pods are gone.
    async with FakeKube(
        tmp_path / "kube", images=IMAGES, ready_after_s=0.2, crash_backoff_s=0.3
    ) as fake:
        yield fake


@pytest.fixture
async def client(kube: FakeKube, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    path = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    client = AsyncClient(KubeConfig.from_file(path), trust_env=False)
    try:
        yield client
    finally:
        await client.close()


def worker_env(prefix: str) -> list[dict[str, Any]]:
    return [
        {"name": "REDIS_URL", "value": REDIS_URL},
        {"name": "BULLMQ_PREFIX", "value": prefix},
        {"name": "WORKER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]


async def eventually(probe: Callable[[], Awaitable[T]], what: str, timeout_s: float = 15) -> T:
    """The first truthy value of `probe`, polled (a cluster only tells through the API)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def raw(
    kube: FakeKube,
    method: str,
    path: str,
    *,
    authorized: bool = True,
    body: bytes | None = None,
    content_type: str | None = None,
) -> tuple[int, str, bytes]:
    """A request without lightkube: status, Content-Type, body."""
    headers = {}
    if authorized:
        headers["Authorization"] = f"Bearer {kube.token}"
    if content_type:
        headers["Content-Type"] = content_type
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, kube.url + path, headers=headers, data=body) as response,
    ):
        return response.status, response.headers["Content-Type"], await response.read()


def condition(obj: Deployment, kind: str) -> DeploymentCondition:
    assert obj.status is not None and obj.status.conditions is not None
    return next(c for c in obj.status.conditions if c.type == kind)


async def pods_of(client: AsyncClient, app: str) -> list[Pod]:
    return [p async for p in client.list(Pod, labels={"app": app})]


async def replicasets_of(client: AsyncClient, app: str) -> dict[str, ReplicaSet]:
    """By revision."""
    found = [rs async for rs in client.list(ReplicaSet, labels={"app": app})]
    return {rs.metadata.annotations[REVISION]: rs for rs in found}


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is in process group `pgid`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


async def test_requests_without_the_token_are_unauthorized(kube: FakeKube) -> None:
    status, content_type, body = await raw(
        kube, "GET", f"/apis/apps/v1/namespaces/{NS}/deployments", authorized=False
    )

    assert (status, content_type) == (401, "application/json")
    assert json.loads(body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    config = KubeConfig.from_one(cluster=Cluster(server=kube.url), user=User(token="wrong"))
    async with AsyncClient(config, trust_env=False) as client:
        with pytest.raises(ApiError) as error:
            await client.get(Deployment, "w", namespace=NS)
    assert (error.value.status.code, error.value.status.reason) == (401, "Unauthorized")
    assert [(r.method, r.path) for r in kube.requests] == [
        ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments"),
        ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/w"),
    ]


async def test_deployment_replicaset_and_pod_objects(
    kube: FakeKube, client: AsyncClient, prefix: str
) -> None:
    kube.add_deployment(
        NS,
        "w",
        image=WORKER,
        replicas=2,
        env=worker_env(prefix),
        labels={"app": "w", "tier": "jobs"},
    )
    await kube.wait_rollout(NS, "w")

    deployment = await client.get(Deployment, "w")
    meta, spec, status = deployment.metadata, deployment.spec, deployment.status
    assert (deployment.apiVersion, deployment.kind) == ("apps/v1", "Deployment")
    assert meta.uid and meta.resourceVersion and meta.resourceVersion.isdigit()
    assert (meta.generation, meta.namespace, meta.annotations) == (1, NS, {REVISION: "1"})
    assert meta.creationTimestamp is not None
    assert spec.selector.matchLabels == {"app": "w", "tier": "jobs"}
    assert spec.strategy.type == "RollingUpdate"
    container = spec.template.spec.containers[0]
    assert (container.name, container.image, container.imagePullPolicy) == (
        "worker",
        WORKER,
        "IfNotPresent",
    )
    assert spec.template.spec.terminationGracePeriodSeconds == 10
    assert (status.observedGeneration, status.replicas, status.updatedReplicas) == (1, 2, 2)
    assert (status.readyReplicas, status.availableReplicas, status.unavailableReplicas) == (
        2,
        2,
        None,
    )
    available = condition(deployment, "Available")
    assert (available.status, available.reason) == ("True", "MinimumReplicasAvailable")
    assert available.message == "Deployment has minimum availability."

    [rs] = [rs async for rs in client.list(ReplicaSet, labels={"app": "w"})]
    pod_hash = rs.metadata.labels[HASH]
    assert re.fullmatch(r"[a-z0-9]{10}", pod_hash) and rs.metadata.name == f"w-{pod_hash}"
    assert rs.spec.selector.matchLabels == {"app": "w", "tier": "jobs", HASH: pod_hash}
    assert rs.spec.template.metadata.labels == {"app": "w", "tier": "jobs", HASH: pod_hash}
    [owner] = rs.metadata.ownerReferences
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "Deployment",
        "w",
        meta.uid,
        True,
    )
    assert rs.metadata.annotations == {
        REVISION: "1",
        "deployment.kubernetes.io/desired-replicas": "2",
        "deployment.kubernetes.io/max-replicas": "4",
    }
    assert (rs.status.replicas, rs.status.readyReplicas, rs.status.availableReplicas) == (2, 2, 2)
    assert (await client.get(ReplicaSet, rs.metadata.name)).metadata.uid == rs.metadata.uid
    progressing = condition(deployment, "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "NewReplicaSetAvailable")
    assert progressing.message == f'ReplicaSet "{rs.metadata.name}" has successfully progressed.'

    pods = await pods_of(client, "w")
    assert len(pods) == 2
    for pod in pods:
        assert re.fullmatch(rf"{rs.metadata.name}-[a-z0-9]{{5}}", pod.metadata.name)
        assert pod.metadata.ownerReferences[0].uid == rs.metadata.uid
        assert pod.spec.nodeName == "fake-node"
        assert pod.status.phase == "Running" and pod.status.podIP and pod.status.startTime
        assert {(c.type, c.status) for c in pod.status.conditions} == {
            (kind, "True")
            for kind in (
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            )
        }
        [state] = pod.status.containerStatuses
        assert (state.name, state.image, state.ready, state.started, state.restartCount) == (
            "worker",
            WORKER,
            True,
            True,
            0,
        )
        assert state.imageID and state.containerID and state.state.running.startedAt

    # Selectors: equality, set-based, fields; list metadata and items as the real server's.
    assert [d.metadata.name async for d in client.list(Deployment, labels={"tier": "jobs"})] == [
        "w"
    ]
    assert [d.metadata.name async for d in client.list(Deployment, labels={"app": ("w", "x")})] == [
        "w"
    ]
    assert [d async for d in client.list(Deployment, fields={"metadata.name": "other"})] == []
    status_code, content_type, body = await raw(
        kube, "GET", f"/apis/apps/v1/namespaces/{NS}/deployments"
    )
    listed = json.loads(body)
    assert (status_code, content_type) == (200, "application/json")
    assert (listed["kind"], listed["apiVersion"]) == ("DeploymentList", "apps/v1")
    assert listed["metadata"]["resourceVersion"].isdigit()
    assert "kind" not in listed["items"][0] and listed["items"][0]["metadata"]["name"] == "w"

    for kind, name, message, details in (
        (Deployment, "nope", 'deployments.apps "nope" not found', ("apps", "deployments")),
        (Pod, "nope", 'pods "nope" not found', (None, "pods")),
    ):
        with pytest.raises(ApiError) as error:
            await client.get(kind, name)
        got = error.value.status
        assert (got.code, got.reason, got.message) == (404, "NotFound", message)
        assert (got.details.group, got.details.kind, got.details.name) == (*details, name)


async def test_a_restarted_at_merge_patch_rolls_out_a_new_replicaset(
    kube: FakeKube, client: AsyncClient, prefix: str
) -> None:
    kube.add_deployment(NS, "w", image=WORKER, env=worker_env(prefix))
    await kube.wait_rollout(NS, "w")
    [old_pod] = await pods_of(client, "w")
    old_pid = kube.pid(NS, old_pod.metadata.name)
    assert old_pid is not None

    async def follow(name: str) -> list[str]:
        return [line.rstrip("\n") async for line in client.log(name, follow=True)]

    # Following the old pod's log ends when its container does, after SIGTERM.
    following = asyncio.create_task(follow(old_pod.metadata.name))

    async def log_requested() -> bool:
        return any(r.path.endswith(f"/{old_pod.metadata.name}/log") for r in kube.requests)

    await eventually(log_requested, "the log request")
    patched = await client.patch(
        Deployment,
        "w",
        {
            "spec": {
                "template": {"metadata": {"annotations": {RESTARTED_AT: "2026-01-01T00:00:00Z"}}}
            }
        },
        patch_type=PatchType.MERGE,
    )
    assert patched.metadata.generation == 2

    async def rolled_out() -> bool:
        deployment = await client.get(Deployment, "w")
        pods = await pods_of(client, "w")
        return (
            deployment.metadata.annotations[REVISION] == "2"
            and condition(deployment, "Progressing").reason == "NewReplicaSetAvailable"
            and [p.metadata.name for p in pods] != [old_pod.metadata.name]
            and len(pods) == 1
        )

    await eventually(rolled_out, "revision 2 to roll out")
    replicasets = await replicasets_of(client, "w")
    assert sorted(replicasets) == ["1", "2"]
    old_rs, new_rs = replicasets["1"], replicasets["2"]
    assert new_rs.metadata.labels[HASH] != old_rs.metadata.labels[HASH]
    assert new_rs.spec.template.metadata.annotations == {RESTARTED_AT: "2026-01-01T00:00:00Z"}
    assert (old_rs.spec.replicas, new_rs.spec.replicas) == (0, 1)

    [new_pod] = await pods_of(client, "w")
    assert new_pod.metadata.labels[HASH] == new_rs.metadata.labels[HASH]
    async with (
        asyncio.timeout(15),
        contextlib.aclosing(client.log(new_pod.metadata.name, follow=True)) as lines,
    ):
        async for line in lines:
            if line.strip() == "worker:ready":
                break
    old_lines = await asyncio.wait_for(following, 15)
    assert old_lines[0] == "worker:ready"
    assert old_lines[-2:] == ["worker:closing", "worker:closed"]
    with pytest.raises(ApiError) as error:
        await client.get(Pod, old_pod.metadata.name)
    assert error.value.status.code == 404
    assert not group_alive(old_pid)


async def test_an_unknown_image_keeps_the_old_pods_serving_past_the_deadline(
    kube: FakeKube, client: AsyncClient, prefix: str
) -> None:
    kube.add_deployment(NS, "w", image=WORKER, env=worker_env(prefix), progress_deadline_s=2)
    await kube.wait_rollout(NS, "w")
    [old_pod] = await pods_of(client, "w")
    old_pid = kube.pid(NS, old_pod.metadata.name)

    await client.patch(
        Deployment,
        "w",
        [
            {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "worker"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": MISSING},
        ],
        patch_type=PatchType.JSON,
    )

    async def timed_out() -> Deployment | None:
        deployment = await client.get(Deployment, "w")
        return deployment if condition(deployment, "Progressing").status == "False" else None

    deployment = await eventually(timed_out, "ProgressDeadlineExceeded")
    new_rs = (await replicasets_of(client, "w"))["2"]
    progressing = condition(deployment, "Progressing")
    assert progressing.reason == "ProgressDeadlineExceeded"
    assert progressing.message == f'ReplicaSet "{new_rs.metadata.name}" has timed out progressing.'
    assert condition(deployment, "Available").status == "True"
    status = deployment.status
    assert (status.replicas, status.updatedReplicas, status.availableReplicas) == (2, 1, 1)
    assert status.unavailableReplicas == 1

    pods = {p.metadata.labels[HASH]: p for p in await pods_of(client, "w")}
    still = pods[old_pod.metadata.labels[HASH]]
    assert still.metadata.name == old_pod.metadata.name and still.status.containerStatuses[0].ready
    assert kube.pid(NS, old_pod.metadata.name) == old_pid
    stuck = pods[new_rs.metadata.labels[HASH]]
    [state] = stuck.status.containerStatuses
    assert state.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff")
    assert (state.ready, state.started, state.restartCount, state.imageID) == (False, False, 0, "")
    assert stuck.status.phase == "Pending"
    with pytest.raises(ApiError) as error:
        async for _ in client.log(stuck.metadata.name):
            pass
    assert (error.value.status.code, error.value.status.reason) == (400, "BadRequest")
    assert re.fullmatch(
        rf'container "worker" in pod "{stuck.metadata.name}" is waiting to start: '
        "(image can't be pulled|trying and failing to pull image)",
        error.value.status.message,
    )


async def test_reverting_the_template_reuses_the_old_replicaset(
    kube: FakeKube, client: AsyncClient, prefix: str
) -> None:
    kube.add_deployment(NS, "w", image=WORKER, env=worker_env(prefix))
    await kube.wait_rollout(NS, "w")
    [good_pod] = await pods_of(client, "w")
    good_pid = kube.pid(NS, good_pod.metadata.name)
    image = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": MISSING}]
    await client.patch(Deployment, "w", image, patch_type=PatchType.JSON)

    async def bad_pod_waiting() -> bool:
        pods = await pods_of(client, "w")
        return len(pods) == 2 and any(
            p.status.containerStatuses for p in pods if p.metadata.name != good_pod.metadata.name
        )

    await eventually(bad_pod_waiting, "the bad release's pod")
    good_rs = (await replicasets_of(client, "w"))["1"]
    template = good_rs.spec.template.to_dict()
    del template["metadata"]["labels"][HASH]
    await client.patch(
        Deployment,
        "w",
        [{"op": "replace", "path": "/spec/template", "value": template}],
        patch_type=PatchType.JSON,
    )

    async def rolled_back() -> bool:
        deployment = await client.get(Deployment, "w")
        pods = await pods_of(client, "w")
        return (
            deployment.metadata.annotations[REVISION] == "3"
            and condition(deployment, "Progressing").reason == "NewReplicaSetAvailable"
            and [p.metadata.name for p in pods] == [good_pod.metadata.name]
        )

    await eventually(rolled_back, "the rollback to finish")
    replicasets = await replicasets_of(client, "w")
    assert sorted(replicasets) == ["2", "3"]
    reused, bad = replicasets["3"], replicasets["2"]
    assert reused.metadata.uid == good_rs.metadata.uid
    assert reused.metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert (reused.spec.replicas, bad.spec.replicas) == (1, 0)
    # The pod of the old template was never replaced.
    assert kube.pid(NS, good_pod.metadata.name) == good_pid


async def test_a_crash_looping_container_restarts_after_a_back_off(
    kube: FakeKube, client: AsyncClient
) -> None:
    kube.add_deployment(NS, "crash", image=CRASHER)

    restarts: list[int] = []
    reasons: set[str] = set()
    async with (
        asyncio.timeout(20),
        contextlib.aclosing(client.watch(Pod, labels={"app": "crash"})) as events,
    ):
        async for _, pod in events:
            if not pod.status.containerStatuses:
                continue
            [state] = pod.status.containerStatuses
            restarts.append(state.restartCount)
            if state.state.waiting is not None:
                reasons.add(state.state.waiting.reason)
            if state.restartCount >= 2 and "CrashLoopBackOff" in reasons:
                break

    assert restarts == sorted(restarts)
    terminated = state.lastState.terminated
    assert (terminated.exitCode, terminated.reason) == (3, "Error")
    assert terminated.startedAt <= terminated.finishedAt
    assert pod.status.phase == "Running" and not state.ready
    name = pod.metadata.name
    status, content_type, body = await raw(
        kube, "GET", f"/api/v1/namespaces/{NS}/pods/{name}/log?previous=true"
    )
    assert (status, content_type, body) == (200, "text/plain", b"crasher:start\n")

    async def unavailable() -> Deployment | None:
        deployment = await client.get(Deployment, "crash")
        return deployment if condition(deployment, "Available").status == "False" else None

    available = condition(await eventually(unavailable, "Available=False"), "Available")
    assert (available.reason, available.message) == (
        "MinimumReplicasUnavailable",
        "Deployment does not have minimum availability.",
    )


async def test_watch_streams_added_and_modified_events(kube: FakeKube, client: AsyncClient) -> None:
    kube.add_deployment(NS, "w", image=MISSING)

    seen: list[tuple[str, int, int]] = []
    async with (
        asyncio.timeout(10),
        contextlib.aclosing(client.watch(Deployment, fields={"metadata.name": "w"})) as events,
    ):
        async for kind, deployment in events:
            seen.append((kind, deployment.metadata.generation, deployment.spec.replicas))
            if kind == "ADDED":
                await client.patch(Deployment, "w", {"spec": {"replicas": 2}})
            elif deployment.spec.replicas == 2:
                break
    assert seen[0] == ("ADDED", 1, 1) and seen[-1] == ("MODIFIED", 2, 2)
    assert {kind for kind, _, _ in seen} == {"ADDED", "MODIFIED"}

    # From a list's resourceVersion: only what changed since (the controller's status writes
    # may come first), no ADDED replay of what the list already had.
    listing = client.list(Deployment)
    [_ async for _ in listing]
    await client.patch(
        Deployment, "w", {"metadata": {"labels": {"release": "r2"}}}, patch_type=PatchType.MERGE
    )
    kinds: list[str] = []
    async with (
        asyncio.timeout(10),
        contextlib.aclosing(
            client.watch(Deployment, resource_version=listing.resourceVersion)
        ) as events,
    ):
        async for kind, deployment in events:
            kinds.append(kind)
            if (deployment.metadata.labels or {}).get("release") == "r2":
                break
    assert set(kinds) == {"MODIFIED"}
    assert int(deployment.metadata.resourceVersion) > int(listing.resourceVersion)


async def test_old_replicasets_beyond_the_history_limit_are_deleted(
    kube: FakeKube, client: AsyncClient
) -> None:
    kube.add_deployment(NS, "w", image=SLEEPER, revision_history_limit=1)
    await kube.wait_rollout(NS, "w")
    first = kube.replicasets(NS, "w")[0]["metadata"]["name"]

    deleted: list[str] = []

    async def record() -> None:
        async with contextlib.aclosing(client.watch(ReplicaSet, labels={"app": "w"})) as events:
            async for kind, rs in events:
                if kind == "DELETED":
                    deleted.append(rs.metadata.name)

    watching = asyncio.create_task(record())
    try:
        for n in (1, 2):
            restart = {RESTARTED_AT: f"2026-01-0{n}T00:00:00Z"}
            await client.patch(
                Deployment,
                "w",
                {"spec": {"template": {"metadata": {"annotations": restart}}}},
                patch_type=PatchType.MERGE,
            )
            await kube.wait_rollout(NS, "w")

        async def cleaned_up() -> bool:
            return sorted(await replicasets_of(client, "w")) == ["2", "3"]

        await eventually(cleaned_up, "revision 1's ReplicaSet to go")

        async def deletion_seen() -> bool:
            return bool(deleted)

        await eventually(deletion_seen, "the DELETED event")
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    assert deleted == [first]
    assert [rs["metadata"]["annotations"][REVISION] for rs in kube.replicasets(NS, "w")] == [
        "2",
        "3",
    ]


async def test_configmap_and_secret_env_reach_the_process(
    kube: FakeKube, client: AsyncClient
) -> None:
    kube.add_configmap(NS, "settings", {"QUEUES": "sla,bulk", "MODE": "fast"})
    kube.add_deployment(
        NS,
        "env",
        image=ENV_PRINTER,
        env=[
            {
                "name": "FROM_SECRET",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
            },
            {
                "name": "FROM_CM",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}},
            },
            {"name": "COMBINED", "value": "$(FROM_CM)-$(HOSTNAME)"},
        ],
        env_from=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
    )

    async def config_error() -> Any:
        pods = await pods_of(client, "env")
        statuses = pods[0].status.containerStatuses if pods else None
        waiting = statuses[0].state.waiting if statuses else None
        return waiting if waiting and waiting.reason == "CreateContainerConfigError" else None

    waiting = await eventually(config_error, "CreateContainerConfigError")
    assert waiting.message == 'secret "creds" not found'

    kube.add_secret(NS, "creds", {"password": "s3cret pass"})
    await kube.wait_rollout(NS, "env")
    [pod] = await pods_of(client, "env")
    name = pod.metadata.name

    async def printed() -> list[str]:
        return [line async for line in client.log(name)]

    assert await eventually(printed, "the env line") == [
        f"env|s3cret pass|fast|sla,bulk|fast-{name}\n"
    ]
    [stamped] = [line async for line in client.log(name, tail_lines=1, timestamps=True)]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z env\|s3cret pass\|.*\n", stamped)
    assert [line async for line in client.log(name, tail_lines=0)] == []
    secret = await client.get(Secret, "creds")
    assert (secret.type, secret.data) == (
        "Opaque",
        {"password": base64.b64encode(b"s3cret pass").decode()},
    )
    assert (await client.get(ConfigMap, "settings")).data == {"QUEUES": "sla,bulk", "MODE": "fast"}


async def test_patches_conflicts_and_validation(kube: FakeKube, client: AsyncClient) -> None:
    env = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    kube.add_deployment(NS, "w", image=MISSING, env=env)

    failed = [
        {"op": "test", "path": "/spec/replicas", "value": 5},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
    ]
    with pytest.raises(ApiError) as error:
        await client.patch(Deployment, "w", failed, patch_type=PatchType.JSON)
    got = error.value.status
    assert (got.code, got.reason, got.message) == (
        422,
        "Invalid",
        "testing value /spec/replicas failed: test failed",
    )
    unchanged = await client.get(Deployment, "w")
    assert (unchanged.metadata.generation, unchanged.spec.replicas) == (1, 1)

    # Strategic merge (lightkube's default): containers and env merge by name.
    container = {
        "name": "worker",
        "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
    }
    merged = await client.patch(
        Deployment, "w", {"spec": {"template": {"spec": {"containers": [container]}}}}
    )
    [merged_container] = merged.spec.template.spec.containers
    assert [(e.name, e.value) for e in merged_container.env] == [
        ("A", "1"),
        ("B", "two"),
        ("C", "3"),
    ]
    assert (merged_container.image, merged.metadata.generation) == (MISSING, 2)
    deleting = {"name": "worker", "env": [{"name": "A", "$patch": "delete"}]}
    pruned = await client.patch(
        Deployment, "w", {"spec": {"template": {"spec": {"containers": [deleting]}}}}
    )
    assert [e.name for e in pruned.spec.template.spec.containers[0].env] == ["B", "C"]
    # A JSON merge patch replaces lists; null deletes.
    replaced = await client.patch(
        Deployment,
        "w",
        {
            "metadata": {"labels": {"app": None}},
            "spec": {"template": {"spec": {"containers": [{"name": "worker", "image": MISSING}]}}},
        },
        patch_type=PatchType.MERGE,
    )
    assert replaced.spec.template.spec.containers[0].env is None
    assert replaced.metadata.labels is None

    stale = await client.get(Deployment, "w")
    await client.patch(
        Deployment, "w", {"metadata": {"labels": {"release": "r2"}}}, patch_type=PatchType.MERGE
    )
    with pytest.raises(ApiError) as error:
        await client.replace(stale)
    assert (error.value.status.code, error.value.status.reason) == (409, "Conflict")
    assert error.value.status.message == (
        'Operation cannot be fulfilled on deployments.apps "w": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    # The controller writes status too, so a read-modify-write retries on conflict (client-go's
    # RetryOnConflict), as against a real cluster.
    for _ in range(20):
        fresh = await client.get(Deployment, "w")
        fresh.spec.replicas = 2
        try:
            replaced_by_put = await client.replace(fresh)
            break
        except ApiError as e:
            if e.status.code != 409:
                raise
    else:
        raise AssertionError("PUT kept conflicting")
    assert (replaced_by_put.spec.replicas, replaced_by_put.metadata.generation) == (
        2,
        fresh.metadata.generation + 1,
    )

    with pytest.raises(ApiError) as error:
        await client.patch(
            Deployment,
            "w",
            [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": ""}],
            patch_type=PatchType.JSON,
        )
    got = error.value.status
    assert (got.code, got.reason) == (422, "Invalid")
    assert (
        got.message
        == 'Deployment.apps "w" is invalid: spec.template.spec.containers[0].image: Required value'
    )
    assert [c.field for c in got.details.causes] == ["spec.template.spec.containers[0].image"]

    status, _, body = await raw(
        kube,
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/w",
        body=b"{}",
        content_type="application/json",
    )
    assert (status, json.loads(body)["reason"]) == (415, "UnsupportedMediaType")
    patches = [r.content_type for r in kube.requests if r.method == "PATCH"]
    assert patches[:3] == [
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/strategic-merge-patch+json",
    ]


async def test_a_terminating_pod_is_killed_after_its_grace_period_and_close_kills_the_rest(
    tmp_path: Path,
) -> None:
    async with FakeKube(tmp_path / "kube", images=IMAGES, ready_after_s=0.2) as kube:
        config = KubeConfig.from_file(kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS))
        async with AsyncClient(config, trust_env=False) as client:
            kube.add_deployment(NS, "s", image=STUBBORN, termination_grace_s=2)
            await kube.wait_rollout(NS, "s")
            [old] = await pods_of(client, "s")
            old_pgid = kube.pid(NS, old.metadata.name)
            assert old_pgid is not None

            await client.patch(
                Deployment,
                "s",
                {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "now"}}}}},
                patch_type=PatchType.MERGE,
            )

            async def terminating() -> Pod | None:
                pod = await client.get(Pod, old.metadata.name)
                return pod if pod.metadata.deletionTimestamp else None

            # SIGTERM is ignored: the pod stays, terminating, until SIGKILL after 2 s.
            pod = await eventually(terminating, "the old pod to terminate")
            assert pod.metadata.deletionGracePeriodSeconds == 2
            assert group_alive(old_pgid)
            await kube.wait_rollout(NS, "s")
            assert not group_alive(old_pgid)
            [new] = await pods_of(client, "s")
            new_pgid = kube.pid(NS, new.metadata.name)
            assert new_pgid is not None and group_alive(new_pgid)
    assert not group_alive(new_pgid)
