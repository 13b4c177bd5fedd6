"""What a user does with the project on a real node, and what goes wrong there, end to end.

Every test starts from the example model Ready with one replica (the ``release`` fixture) and leaves it
so: tests do not depend on each other's order. Failures are produced by the real kubelet and container
runtime, never written by hand.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.helpers import wait_for
from fixtures.node import EXAMPLE, MODEL, OPERATOR_NAMESPACE, READY_TIMEOUT, Node

pytestmark = pytest.mark.e2e
# A clear margin over the next token ("The" -0.63 vs "Paris" -2.0), both on the way to Paris; the one-word
# variant is a near tie that kernel choice flips between pods.
QUESTION = "What is the capital of France? Answer in one sentence."


@pytest.fixture
def release(release: Node) -> Node:
    """The example model as every test starts: one replica, Ready (a failed test may have left two)."""
    if release.im(MODEL)["spec"].get("replicas") != 1:
        release.kubectl("scale", "inferencemodels.inference.vif.dev", MODEL, "--replicas", "1")
    release.wait_ready(MODEL)
    wait_for(lambda: len(release.pods(MODEL)) == 1, what="one pod of the example model")
    return release


def test_the_example_model_answers_through_its_service(release: Node) -> None:
    url = release.service_url(MODEL)
    reply = release.netns("chat", url, MODEL, QUESTION)
    assert "Paris" in reply["content"]
    assert reply["usage"]["completion_tokens"] > 0
    metrics = release.netns("get", url + "/metrics")
    assert metrics["status"] == 200
    assert "inference_requests_total{" in metrics["body"] and "vllm:" in metrics["body"]


def test_kubectl_get_shows_the_printer_columns(release: Node) -> None:
    table = release.kubectl("get", "inferencemodels.inference.vif.dev", MODEL)
    header, row = table.strip().splitlines()
    assert header.split()[:3] == ["NAME", "MODEL", "PROTOCOL"]
    assert row.split()[:3] == [MODEL, MODEL, "OpenAIServingChat"]
    assert f"http://{MODEL}.default.svc" in row  # the endpoint column


def patch_spec(node: Node, name: str, spec: dict[str, Any]) -> None:
    node.kubectl(
        "patch",
        "inferencemodels.inference.vif.dev",
        name,
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": spec}),
    )


def test_a_spec_change_rolls_the_pods_without_a_failed_request(release: Node, tmp_path: Path) -> None:
    url = release.service_url(MODEL)
    before = {p["metadata"]["name"] for p in release.pods(MODEL)}
    stop, out = tmp_path / "stop", tmp_path / "steady.json"
    client = release.spawn_netns("steady", url, MODEL, str(stop), str(out))
    try:
        wait_for(
            lambda: client.poll() is not None or _requests_seen(release, url) >= 3, what="steady traffic"
        )
        current = release.im(MODEL)["spec"].get("maxModelLen")
        patched = time.time()
        patch_spec(release, MODEL, {"maxModelLen": 1536 if current != 1536 else 2048})
        body = release.wait_ready(MODEL)
        ready = time.time()
        wait_for(
            lambda: not (before & {p["metadata"]["name"] for p in release.pods(MODEL)}), what="old pods gone"
        )
        gone = time.time()
        assert body["status"]["readyReplicas"] == 1
    finally:
        stop.touch()
        client.wait(300)
    summary = json.loads(out.read_text())
    assert summary["ok"] > 0
    # A failure says when, against the rollout's own timeline (seconds after the patch).
    when = [round(at - patched, 1) for at in summary["failed_at"]]
    timeline = (
        f"failed at {when} s; Ready at {ready - patched:.1f} s, old pods gone at {gone - patched:.1f} s"
    )
    assert summary["failed"] == 0, (timeline, summary["errors"])


def _metric(node: Node, url: str, prefix: str, label: str = "") -> float:
    """The sum of a metric's samples (those whose line starts with ``prefix`` and holds ``label``)."""
    text = node.netns("get", url + "/metrics")["body"]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and label in line
    )


def _requests_seen(node: Node, url: str) -> float:
    return _metric(node, url, "inference_requests_total{", 'status="200"')


BROKEN = "broken"


def broken_model(node: Node, **spec: Any) -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    example["metadata"] = {"name": BROKEN}
    example["spec"].update(spec)
    example["spec"]["servedModelName"] = BROKEN
    node.kubectl("apply", "-f", "-", stdin=json.dumps(example))


def wait_degraded(node: Node, reason: str, fragment: str) -> dict[str, Any]:
    def degraded() -> dict[str, Any] | None:
        cond = node.condition(BROKEN, "Degraded")
        return cond if cond.get("reason") == reason else None

    cond = wait_for(degraded, timeout=READY_TIMEOUT, what=f"Degraded={reason}")
    assert cond["status"] == "True"
    assert fragment in cond["message"], cond
    assert node.condition(BROKEN, "Ready")["status"] == "False"
    return cond


def test_real_failures_show_on_the_resource_and_a_fixed_spec_heals_each(release: Node) -> None:
    """Image pull, crash loop (with the runtime's own error) and OOM, each healed by fixing the spec."""
    example_image = release.im(MODEL)["spec"]["image"]
    broken_model(release, image="registry.example.invalid/no-such-runtime:0.0.0")
    wait_degraded(release, "ImagePullFailed", "no-such-runtime")
    # Fixing the image heals the pull; the model path is wrong now: the runtime's one line is shown.
    patch_spec(release, BROKEN, {"image": example_image, "model": {"path": "no-such-model-folder"}})
    wait_degraded(release, "CrashLoopBackOff", "model_path 'no-such-model-folder' is not a folder")
    example_path = release.im(MODEL)["spec"]["model"]["path"]
    patch_spec(
        release,
        BROKEN,
        {"model": {"path": example_path}, "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                        "limits": {"memory": "256Mi"}}},
    )  # fmt: skip
    wait_degraded(release, "OOMKilled", "memory limit")
    patch_spec(release, BROKEN, {"resources": release.im(MODEL)["spec"]["resources"]})
    release.wait_ready(BROKEN)
    assert release.condition(BROKEN, "Degraded")["status"] == "False"
    release.kubectl("delete", "inferencemodels.inference.vif.dev", BROKEN, "--wait=true")


def test_every_pod_runs_under_the_restricted_policy(release: Node) -> None:
    """The node admits pods only under the `restricted` PodSecurityPolicy (tests/fixtures/node.py)."""
    pods = [*release.pods(MODEL), *release.get("pods", "-n", OPERATOR_NAMESPACE)["items"]]
    assert pods and {p["metadata"]["annotations"].get("kubernetes.io/psp") for p in pods} == {"restricted"}
    root_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "as-root"},
        "spec": {
            "containers": [{"name": "c", "image": "localhost/pause:3.2", "securityContext": {"runAsUser": 0}}]
        },
    }
    refused = release.kubectl("apply", "-f", "-", stdin=json.dumps(root_pod), check=False)
    assert release.kubectl("get", "pod", "as-root", "--ignore-not-found") == "", refused
