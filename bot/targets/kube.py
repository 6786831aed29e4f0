"""One worker as a Kubernetes Deployment, through the API server (lightkube, kubeconfig or
in-cluster service account).

A restart is `kubectl rollout restart` (the `restartedAt` template annotation); a deploy sets
the container's image; a rollback is `kubectl rollout undo` to a chosen image: apps/v1 has no
rollback endpoint, so the Deployment's template is replaced with the one the ReplicaSet that ran
that image kept. Readiness is the rollout finished (watched, as `kubectl rollout status` judges
it) and the marker in the log of every pod of the new ReplicaSet; a pod stuck in a crash loop or
an image pull fails the wait at once rather than at the progress deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Collection
from datetime import UTC, datetime

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ConfigError
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret
from lightkube.types import PatchType

from bot.abc import LineSink, LogCursor, WorkerStatus
from bot.aio import cancel_and_wait
from bot.errors import OperationFailed, Refused
from bot.redact import redact
from bot.targets.kube_objects import (
    RESTARTED_AT,
    TEMPLATE_HASH,
    Obj,
    container,
    meta,
    new_replicaset,
    pod_problem,
    replicaset_with_image,
    revision,
    rollout,
    template_without_hash,
    worker_status,
)
from bot.targets.pm2 import secret_env_values

_POD_CHECK_S = 1.0
_LOG_RETRY_S = 0.5


def kube_client(*, kubeconfig: str | None, context: str | None, namespace: str) -> AsyncClient:
    """A client for the kubeconfig named, else the pod's service account, else $KUBECONFIG or
    ~/.kube/config (lightkube's order)."""
    try:
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        single = config.get(context_name=context)
    except ConfigError as exc:
        raise Refused(f"no usable Kubernetes configuration: {exc}") from None
    return AsyncClient(config=single, namespace=namespace, field_manager="chatops")


class KubeTarget:
    def __init__(
        self,
        *,
        client: AsyncClient,
        deployment: str,
        namespace: str,
        container: str | None = None,
    ) -> None:
        self.name = f"deployment/{deployment}"
        self.deployment = deployment
        self.namespace = namespace
        self._client = client
        self._container = container

    # ---- the Target protocol ------------------------------------------------------------------

    async def status(self) -> WorkerStatus:
        deployment = await self._get_deployment()
        pods = await self._current_pods(deployment) if deployment is not None else []
        return worker_status(self.name, deployment, pods, container_name=self._container)

    async def log_cursor(self) -> LogCursor:
        deployment = await self._require_deployment()
        return LogCursor(path=str(revision(deployment)), offset=meta(deployment)["generation"])

    async def reload(self, *, on_line: LineSink | None = None) -> None:
        """`kubectl rollout restart`: new pods from an unchanged template, rolled as usual."""
        await self._require_deployment()
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
        await self._patch(patch, PatchType.STRATEGIC, doing=f"restart {self.name}")

    async def wait_ready(
        self,
        pattern: re.Pattern[str],
        *,
        since: LogCursor,
        timeout_s: float,
        on_line: LineSink | None = None,
    ) -> str:
        secrets = secret_env_values(await self._environment())
        try:
            async with asyncio.timeout(timeout_s):
                deployment = await self._rolled_out(since, on_line)
                pods = await self._current_pods(deployment)
                if not pods:
                    raise OperationFailed(f"{self.name} rolled out with no pod to read")
                lines = await asyncio.gather(
                    *(
                        self._marker(pod, pattern, secrets, on_line if i == 0 else None)
                        for i, pod in enumerate(pods)
                    )
                )
        except TimeoutError:
            raise OperationFailed(
                f"{self.name}: not rolled out with /{pattern.pattern}/ in every new pod's log "
                f"within {timeout_s:g} s"
            ) from None
        return f"{lines[0]} ({len(pods)} of {len(pods)} pods, revision {revision(deployment)})"

    async def logs(self, *, lines: int) -> list[str]:
        deployment = await self._require_deployment()
        secrets = secret_env_values(await self._environment())
        pods = await self._current_pods(deployment)
        out: list[str] = []
        for pod in pods:
            name = meta(pod)["name"]
            prefix = f"[{name}] " if len(pods) > 1 else ""
            async with self._api(f"read the log of pod {name}"):
                async for line in self._client.log(
                    name,
                    namespace=self.namespace,
                    container=self._container_name(deployment),
                    tail_lines=lines,
                    newlines=False,
                ):
                    out.append(prefix + redact(line, secrets=secrets))
        return out

    async def env_keys(self) -> frozenset[str]:
        return frozenset(await self._environment())

    async def read_text(self, path: str) -> str | None:
        return None  # a pod's files are in its image; .env.example is read from source_repo

    async def env_value(self, name: str) -> str | None:
        return (await self._environment()).get(name)

    # ---- releases -------------------------------------------------------------------------------

    async def current_image(self) -> str:
        deployment = await self._require_deployment()
        image: str = container(self._template(deployment), self._container).get("image", "")
        return image

    async def set_image(self, image: str) -> None:
        deployment = await self._require_deployment()
        index, name = self._container_index(deployment)
        path = f"/spec/template/spec/containers/{index}"
        patch = [
            {"op": "test", "path": f"{path}/name", "value": name},
            {"op": "replace", "path": f"{path}/image", "value": image},
        ]
        await self._patch(patch, PatchType.JSON, doing=f"set the image of {self.name}")

    async def undo_to(self, image: str) -> int:
        """`kubectl rollout undo --to-revision`, the revision being the newest that ran `image`.
        Returns that revision."""
        deployment = await self._require_deployment()
        replicasets = await self._replicasets(deployment)
        rs = replicaset_with_image(deployment, replicasets, image, self._container)
        if rs is None:
            kept = (deployment.get("spec") or {}).get("revisionHistoryLimit", 10)
            raise OperationFailed(
                f"no ReplicaSet of {self.name} ran {image} any more (it keeps {kept} old "
                "revisions): deploy that image instead"
            )
        template = template_without_hash(rs["spec"]["template"])
        patch = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": meta(deployment)["resourceVersion"],
            },
            {"op": "replace", "path": "/spec/template", "value": template},
        ]
        await self._patch(patch, PatchType.JSON, doing=f"roll back {self.name}")
        return revision(rs)

    # ---- reading the cluster --------------------------------------------------------------------

    async def _rolled_out(self, since: LogCursor, on_line: LineSink | None) -> Obj:
        """The Deployment once the change made after `since` has rolled out; fails at once on a
        progress deadline or a stuck pod of the new ReplicaSet."""
        watch = asyncio.create_task(self._watch_rollout(since, on_line))
        pods = asyncio.create_task(self._watch_pods())
        try:
            await asyncio.wait({watch, pods}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(watch, pods)
        if pods.done() and not pods.cancelled() and pods.exception() is not None:
            raise pods.exception()  # type: ignore[misc]
        return watch.result()

    async def _watch_rollout(self, since: LogCursor, on_line: LineSink | None) -> Obj:
        said = ""
        async with self._api(f"watch {self.name}"):
            async for _kind, obj in self._client.watch(
                Deployment,
                namespace=self.namespace,
                fields={"metadata.name": self.deployment},
            ):
                deployment = obj.to_dict()
                state = rollout(deployment)
                changed = meta(deployment).get("generation", 0) > since.offset
                if state.message != said and on_line is not None:
                    await on_line(state.message)
                    said = state.message
                if state.failed:
                    raise OperationFailed(state.message)
                if state.done and changed:
                    return deployment
        raise OperationFailed(f"the watch of {self.name} ended before its rollout did")

    async def _watch_pods(self) -> None:
        """Returns only by raising: a new pod that will not start without a change."""
        while True:
            await asyncio.sleep(_POD_CHECK_S)
            deployment = await self._require_deployment()
            for pod in await self._current_pods(deployment):
                problem = pod_problem(pod)
                if problem:
                    raise OperationFailed(f"{self.name}: {problem}")

    async def _marker(
        self,
        pod: Obj,
        pattern: re.Pattern[str],
        secrets: Collection[str],
        on_line: LineSink | None,
    ) -> str:
        name = meta(pod)["name"]
        while True:
            try:
                async for line in self._client.log(
                    name,
                    namespace=self.namespace,
                    container=self._container,
                    follow=True,
                    newlines=False,
                ):
                    shown = redact(line, secrets=secrets)
                    if on_line is not None:
                        await on_line(shown)
                    if pattern.search(line):
                        return shown
            except ApiError as exc:
                if exc.status.code != 400:  # 400: the container is not running (yet)
                    raise self._failure(f"read the log of pod {name}", exc) from None
            except httpx2.TransportError as exc:
                raise self._failure(f"read the log of pod {name}", exc) from None
            current = await self._get_pod(name)
            problem = pod_problem(current) if current else f"pod {name} is gone"
            if problem:
                raise OperationFailed(
                    f"{self.name}: {problem} before /{pattern.pattern}/ appeared in its log"
                )
            await asyncio.sleep(_LOG_RETRY_S)

    async def _patch(self, patch: Obj | list[Obj], patch_type: PatchType, *, doing: str) -> None:
        async with self._api(doing):
            await self._client.patch(
                Deployment, self.deployment, patch, namespace=self.namespace, patch_type=patch_type
            )

    async def _get_deployment(self) -> Obj | None:
        async with self._api(f"read {self.name}"):
            return await _or_none(
                self._client.get(Deployment, self.deployment, namespace=self.namespace)
            )

    async def _require_deployment(self) -> Obj:
        deployment = await self._get_deployment()
        if deployment is None:
            raise Refused(f"no {self.name} in namespace {self.namespace}")
        return deployment

    async def _get_pod(self, name: str) -> Obj | None:
        async with self._api(f"read pod {name}"):
            return await _or_none(self._client.get(Pod, name, namespace=self.namespace))

    async def _replicasets(self, deployment: Obj) -> list[Obj]:
        labels = deployment["spec"]["selector"].get("matchLabels") or {}
        async with self._api(f"list the ReplicaSets of {self.name}"):
            return [
                rs.to_dict()
                async for rs in self._client.list(
                    ReplicaSet, namespace=self.namespace, labels=labels
                )
            ]

    async def _current_pods(self, deployment: Obj) -> list[Obj]:
        """The live pods of the new ReplicaSet (none while it does not exist yet)."""
        rs = new_replicaset(deployment, await self._replicasets(deployment))
        if rs is None:
            return []
        labels = dict(deployment["spec"]["selector"].get("matchLabels") or {})
        labels[TEMPLATE_HASH] = meta(rs)["labels"][TEMPLATE_HASH]
        async with self._api(f"list the pods of {self.name}"):
            pods = [
                pod.to_dict()
                async for pod in self._client.list(Pod, namespace=self.namespace, labels=labels)
            ]
        return [p for p in pods if not meta(p).get("deletionTimestamp")]

    async def _environment(self) -> dict[str, str]:
        """The container's environment as the pods get it; names every entry, values where the
        API holds them (plain values, ConfigMaps, Secrets)."""
        deployment = await self._require_deployment()
        spec = container(self._template(deployment), self._container)
        merged: dict[str, str] = {}
        # Kubernetes applies envFrom first; `env` entries override it.
        for source in spec.get("envFrom") or ():
            prefix = source.get("prefix", "")
            for kind in ("configMapRef", "secretRef"):
                if kind in source:
                    ref = source[kind]
                    data = await self._data(kind, ref["name"], optional=ref.get("optional", False))
                    merged.update({prefix + k: v for k, v in data.items()})
        for entry in spec.get("env") or ():
            merged[entry["name"]] = await self._env_entry(entry)
        return merged

    async def _env_entry(self, entry: Obj) -> str:
        if "value" in entry:
            return str(entry["value"])
        source = entry.get("valueFrom") or {}
        for kind, key_ref in (("secretKeyRef", "secretRef"), ("configMapKeyRef", "configMapRef")):
            if kind in source:
                ref = source[kind]
                data = await self._data(key_ref, ref["name"], optional=ref.get("optional", False))
                return data.get(ref["key"], "")
        return ""  # fieldRef / resourceFieldRef: set by the kubelet, not secret

    async def _data(self, kind: str, name: str, *, optional: bool) -> dict[str, str]:
        what = "Secret" if kind == "secretRef" else "ConfigMap"
        async with self._api(f"read {what} {name}"):
            try:
                if kind == "secretRef":
                    secret = await self._client.get(Secret, name, namespace=self.namespace)
                    return {
                        k: base64.b64decode(v).decode("utf-8", "replace")
                        for k, v in (secret.data or {}).items()
                    }
                configmap = await self._client.get(ConfigMap, name, namespace=self.namespace)
                return dict(configmap.data or {})
            except ApiError as exc:
                if exc.status.code == 404 and optional:
                    return {}
                raise

    def _template(self, deployment: Obj) -> Obj:
        template: Obj = (deployment.get("spec") or {}).get("template") or {}
        return template

    def _container_name(self, deployment: Obj) -> str:
        name: str = container(self._template(deployment), self._container)["name"]
        return name

    def _container_index(self, deployment: Obj) -> tuple[int, str]:
        name = self._container_name(deployment)
        containers = self._template(deployment)["spec"]["containers"]
        return next(i for i, c in enumerate(containers) if c["name"] == name), name

    @contextlib.asynccontextmanager
    async def _api(self, doing: str) -> AsyncIterator[None]:
        try:
            yield
        except ApiError as exc:
            raise self._failure(doing, exc) from None
        except httpx2.TransportError as exc:
            raise self._failure(doing, exc) from None

    def _failure(self, doing: str, exc: Exception) -> Exception:
        if isinstance(exc, ApiError):
            code = exc.status.code
            message = exc.status.message or exc.status.reason or "no message"
            if code in (401, 403):
                return Refused(f"Kubernetes refused to {doing} ({code}): {message}")
            return OperationFailed(f"Kubernetes could not {doing} ({code}): {message}")
        return OperationFailed(
            f"Kubernetes API unreachable while trying to {doing}: "
            f"{type(exc).__name__} {exc}".rstrip()
        )


async def _or_none(read: Awaitable[Deployment | Pod]) -> Obj | None:
    """The object as JSON; None when the API server says it does not exist."""
    try:
        found = await read
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    return found.to_dict()
