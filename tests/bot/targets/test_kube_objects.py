"""The decisions made on Kubernetes objects, on JSON shaped as the API server returns it
(`captured/kube_deployment_rolling.json` is `kubectl get deploy mailer -o json` mid-rollout)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bot.errors import BadInput
from bot.targets.kube_objects import (
    container,
    image_for,
    image_key,
    image_tag,
    new_replicaset,
    pod_problem,
    replicaset_with_image,
    rollout,
    template_without_hash,
    worker_status,
)

CAPTURED = Path(__file__).parent / "captured"
REPO = "registry.example/mailer"


def rolling() -> dict[str, Any]:
    return json.loads((CAPTURED / "kube_deployment_rolling.json").read_text())


def finished(deployment: dict[str, Any]) -> dict[str, Any]:
    done = copy.deepcopy(deployment)
    done["status"].update(replicas=2, updatedReplicas=2, availableReplicas=2, readyReplicas=2)
    done["status"].pop("unavailableReplicas")
    return done


def replicaset(
    deployment: dict[str, Any], *, hash_: str, revision: int, image: str
) -> dict[str, Any]:
    template = copy.deepcopy(deployment["spec"]["template"])
    template["metadata"]["labels"]["pod-template-hash"] = hash_
    template["spec"]["containers"][0]["image"] = image
    return {
        "metadata": {
            "name": f"mailer-{hash_}",
            "labels": {"app": "mailer", "pod-template-hash": hash_},
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "mailer",
                    "uid": deployment["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {"template": template},
    }


def test_rollout_reads_as_kubectl_rollout_status() -> None:
    deployment = rolling()
    assert rollout(deployment).message == "1 of 2 new replicas updated"
    deployment["status"]["updatedReplicas"] = 2
    assert rollout(deployment).message == "1 old replica(s) pending termination"
    assert rollout(finished(deployment)).done
    deployment["metadata"]["generation"] = 5
    assert rollout(deployment).message == "waiting for the deployment spec update to be observed"


def test_progress_deadline_is_a_failure() -> None:
    deployment = rolling()
    deployment["status"]["conditions"][1].update(status="False", reason="ProgressDeadlineExceeded")
    state = rollout(deployment)
    assert state.failed and not state.done
    assert "exceeded its progress deadline" in state.message


def test_the_new_replicaset_is_the_one_with_the_deployments_template() -> None:
    deployment = rolling()
    old = replicaset(deployment, hash_="5b7f9c6d4a", revision=2, image=f"{REPO}:v1.4.1")
    new = replicaset(deployment, hash_="7d9c8b6f5d", revision=3, image=f"{REPO}:v1.4.2")
    assert new_replicaset(deployment, [old, new]) is new
    stranger = replicaset(deployment, hash_="1111111111", revision=9, image=f"{REPO}:v1.4.2")
    stranger["metadata"]["ownerReferences"][0]["uid"] = "another"
    assert new_replicaset(deployment, [stranger]) is None


def test_undo_takes_the_newest_replicaset_that_ran_the_image_without_its_hash() -> None:
    deployment = rolling()
    older = replicaset(deployment, hash_="aaaaaaaaaa", revision=1, image=f"{REPO}:v1.4.1")
    newer = replicaset(deployment, hash_="bbbbbbbbbb", revision=2, image=f"{REPO}:v1.4.1")
    found = replicaset_with_image(deployment, [newer, older], f"{REPO}:v1.4.1", None)
    assert found is newer
    template = template_without_hash(found["spec"]["template"])
    assert "pod-template-hash" not in template["metadata"]["labels"]
    assert "pod-template-hash" in found["spec"]["template"]["metadata"]["labels"]
    assert replicaset_with_image(deployment, [older], f"{REPO}:v0.1", None) is None


def test_stuck_pods_are_named_with_their_reason() -> None:
    pod = {
        "metadata": {"name": "mailer-7d9c8b6f5d-x2k9p"},
        "status": {
            "containerStatuses": [
                {
                    "name": "worker",
                    "restartCount": 3,
                    "state": {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": "back-off 40s restarting failed container",
                        }
                    },
                }
            ]
        },
    }
    assert pod_problem(pod) == "pod mailer-7d9c8b6f5d-x2k9p: CrashLoopBackOff after 3 restart(s)"
    pod["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}
    }
    assert "ImagePullBackOff" in (pod_problem(pod) or "")
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
    assert pod_problem(pod) is None


def test_worker_status_of_a_deployment() -> None:
    status = worker_status("deployment/mailer", finished(rolling()), [], container_name=None)
    assert (status.status, status.pid, status.kill_timeout_ms) == ("online", None, 45_000)
    assert status.script == f"{REPO}:v1.4.2"
    assert (
        worker_status("deployment/mailer", rolling(), [], container_name=None).status == "launching"
    )
    assert worker_status("deployment/x", None, [], container_name=None).status == "missing"


def test_several_containers_need_a_name() -> None:
    template = rolling()["spec"]["template"]
    template["spec"]["containers"].append({"name": "sidecar", "image": "envoy"})
    with pytest.raises(BadInput, match="several containers"):
        container(template, None)
    assert container(template, "sidecar")["image"] == "envoy"
    with pytest.raises(BadInput, match="no container 'web'"):
        container(template, "web")


@pytest.mark.parametrize(
    ("ref", "image"),
    [
        ("v1.4.3", f"{REPO}:v1.4.3"),
        ("sha256:" + "a" * 64, f"{REPO}@sha256:" + "a" * 64),
        ("@sha256:" + "b" * 64, f"{REPO}@sha256:" + "b" * 64),
        (f"{REPO}:v2", f"{REPO}:v2"),
        (f"{REPO}:v2@sha256:" + "c" * 64, f"{REPO}:v2@sha256:" + "c" * 64),
    ],
)
def test_images_a_deploy_may_name(ref: str, image: str) -> None:
    assert image_for(ref, REPO) == image


@pytest.mark.parametrize(
    ("ref", "complaint"),
    [
        ("evil.example/mailer:v1", "not in registry.example/mailer"),
        (f"{REPO}", "not an image tag"),
        ("v1;rm -rf /", "not an image tag"),
        ("", "not an image tag"),
        ("-v1", "not an image tag"),
    ],
)
def test_images_a_deploy_may_not_name(ref: str, complaint: str) -> None:
    with pytest.raises(BadInput, match=complaint):
        image_for(ref, REPO)


def test_no_repository_no_deploy() -> None:
    with pytest.raises(BadInput, match="image_repository"):
        image_for("v1", None)


def test_tags_and_keys() -> None:
    assert image_tag(f"{REPO}:v1.4.2") == "v1.4.2"
    assert image_tag("localhost:5000/mailer:v3") == "v3"
    assert image_tag(f"{REPO}@sha256:" + "a" * 64) is None
    key = image_key(f"{REPO}:v1")
    assert len(key) == 40 and key != image_key(f"{REPO}:v2")


@pytest.mark.parametrize(
    "ref", [f"{REPO}:v2", "@sha256:" + "d" * 64, f"localhost:5000/mailer@sha256:{'e' * 64}"]
)
def test_slash_commands_take_image_references(ref: str) -> None:
    from commands.grammar import parse

    assert parse("worker", f"deploy mailer --ref {ref}").ref == ref


@pytest.mark.parametrize("ref", [f"{REPO}:v2;id", f"{REPO}:$(id)", "x:"])
def test_what_is_neither_a_git_ref_nor_an_image_is_refused(ref: str) -> None:
    from commands.grammar import parse

    with pytest.raises(BadInput, match="invalid ref"):
        parse("worker", f"deploy mailer --ref {ref}")
