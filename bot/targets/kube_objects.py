"""Reading Kubernetes objects as the API returns them (plain JSON dicts): rollout progress as
`kubectl rollout status` judges it, which ReplicaSet is the new one, the template a `kubectl
rollout undo` puts back, pods that will never become ready, and image references a deploy may
name. No I/O here; `bot/targets/kube.py` fetches, this module decides.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.abc import WorkerStatus
from bot.errors import BadInput

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
TEMPLATE_HASH = "pod-template-hash"

# Waiting reasons after which a container does not start without someone changing something.
STUCK_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)

_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
_REPOSITORY = r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_IMAGE = re.compile(rf"^(?P<repo>{_REPOSITORY})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")


@dataclass(frozen=True)
class Rollout:
    done: bool
    message: str
    failed: bool = False


def meta(obj: Obj) -> Obj:
    value: Obj = obj.get("metadata") or {}
    return value


def revision(obj: Obj) -> int:
    try:
        return int((meta(obj).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def rollout(deployment: Obj) -> Rollout:
    """What `kubectl rollout status` says of a Deployment (its DeploymentStatusViewer)."""
    name = meta(deployment).get("name", "?")
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    if meta(deployment).get("generation", 0) > status.get("observedGeneration", 0):
        return Rollout(False, "waiting for the deployment spec update to be observed")
    for condition in status.get("conditions") or ():
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return Rollout(False, f"deployment {name} exceeded its progress deadline", failed=True)
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return Rollout(False, f"{updated} of {wanted} new replicas updated")
    if total > updated:
        return Rollout(False, f"{total - updated} old replica(s) pending termination")
    if available < updated:
        return Rollout(False, f"{available} of {updated} updated replicas available")
    return Rollout(True, f"deployment {name} successfully rolled out")


def template_without_hash(template: Obj) -> Obj:
    """A pod template as the Deployment holds it: the ReplicaSet's, minus its hash label."""
    clean = copy.deepcopy(template)
    labels = (clean.get("metadata") or {}).get("labels") or {}
    labels.pop(TEMPLATE_HASH, None)
    return clean


def owned(replicasets: list[Obj], deployment: Obj) -> list[Obj]:
    uid = meta(deployment).get("uid")
    return [
        rs
        for rs in replicasets
        if any(
            ref.get("uid") == uid and ref.get("controller")
            for ref in meta(rs).get("ownerReferences") or ()
        )
    ]


def new_replicaset(deployment: Obj, replicasets: list[Obj]) -> Obj | None:
    """The ReplicaSet whose template is the Deployment's (how the controller and kubectl tell)."""
    wanted = (deployment.get("spec") or {}).get("template") or {}
    for rs in owned(replicasets, deployment):
        if template_without_hash((rs.get("spec") or {}).get("template") or {}) == wanted:
            return rs
    return None


def container(template: Obj, name: str | None) -> Obj:
    containers: list[Obj] = (template.get("spec") or {}).get("containers") or []
    if name is None:
        if len(containers) != 1:
            names = ", ".join(c.get("name", "?") for c in containers)
            raise BadInput(f"the pods have several containers ({names}): set 'container'")
        return containers[0]
    for item in containers:
        if item.get("name") == name:
            return item
    raise BadInput(f"no container {name!r} in the pod template")


def replicaset_with_image(
    deployment: Obj, replicasets: list[Obj], image: str, container_name: str | None
) -> Obj | None:
    """The newest ReplicaSet of this Deployment that ran `image`, for an undo to it."""
    candidates = [
        rs
        for rs in owned(replicasets, deployment)
        if container((rs.get("spec") or {}).get("template") or {}, container_name).get("image")
        == image
    ]
    return max(candidates, key=revision, default=None)


def pod_problem(pod: Obj) -> str | None:
    """Why this pod will not become ready without a change, or None."""
    name = meta(pod).get("name", "?")
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in STUCK_REASONS:
            detail = waiting.get("message") or ""
            restarts = status.get("restartCount", 0)
            return f"pod {name}: {reason} after {restarts} restart(s)" + (
                f" ({detail})" if detail and reason != "CrashLoopBackOff" else ""
            )
    return None


def pod_restarts(pod: Obj) -> int:
    return sum(
        s.get("restartCount", 0) for s in (pod.get("status") or {}).get("containerStatuses") or ()
    )


def pod_started(pod: Obj) -> datetime | None:
    text = (pod.get("status") or {}).get("startTime")
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def worker_status(
    name: str, deployment: Obj | None, pods: list[Obj], *, container_name: str | None
) -> WorkerStatus:
    """A Deployment and its current pods in the shape the engine reads for every manager."""
    if deployment is None:
        return WorkerStatus(name, "missing", None, 0, 0, None, None, None, None, None, None)
    spec = deployment.get("spec") or {}
    template = spec.get("template") or {}
    state = rollout(deployment)
    problems = [p for p in map(pod_problem, pods) if p]
    if spec.get("replicas", 1) == 0:
        status = "stopped"
    elif state.failed or problems:
        status = "errored"
    elif state.done:
        status = "online"
    else:
        status = "launching"
    starts = [t for t in map(pod_started, pods) if t is not None]
    uptime = (datetime.now(UTC) - min(starts)).total_seconds() if starts else None
    grace = (template.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
    return WorkerStatus(
        name=name,
        status=status,
        pid=None,
        restarts=sum(map(pod_restarts, pods)),
        unstable_restarts=0,
        uptime_s=uptime,
        memory_bytes=None,
        kill_timeout_ms=int(grace * 1000),
        exec_mode=f"{len(pods)}/{spec.get('replicas', 1)} pod(s), revision {revision(deployment)}",
        script=container(template, container_name).get("image"),
        cwd=None,
    )


def image_for(ref: str, repository: str | None) -> str:
    """The image a deploy names: a tag or digest of the configured repository, or a full
    reference in it. Anything else is refused: an image is code that will run."""
    if repository is None:
        raise BadInput("this worker has no 'image_repository' configured: nothing to deploy")
    ref = ref.strip()
    if re.fullmatch(_TAG, ref):
        return f"{repository}:{ref}"
    if re.fullmatch(_DIGEST, ref.removeprefix("@")):
        return f"{repository}@{ref.removeprefix('@')}"
    parsed = _IMAGE.match(ref)
    if parsed is None or not (parsed["tag"] or parsed["digest"]):
        raise BadInput(f"not an image tag, digest or reference: {ref!r}")
    if parsed["repo"] != repository:
        raise BadInput(f"{ref!r} is not in {repository}, the only repository this worker runs")
    return ref


def is_image_reference(ref: str) -> bool:
    """Whether `ref` reads as an image reference or digest (what a Kubernetes deploy takes
    besides a tag); which repository it may name is checked against the worker's."""
    if re.fullmatch(_DIGEST, ref.removeprefix("@")):
        return True
    parsed = _IMAGE.match(ref)
    return parsed is not None and bool(parsed["tag"] or parsed["digest"])


def image_tag(image: str) -> str | None:
    parsed = _IMAGE.match(image)
    return parsed["tag"] if parsed else None


def image_key(image: str) -> str:
    """A release's key in the store (40 hex digits, where a git release keeps its commit)."""
    return hashlib.sha1(image.encode(), usedforsecurity=False).hexdigest()
