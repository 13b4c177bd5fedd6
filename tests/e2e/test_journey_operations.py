"""Day-2 operations on the real node: scale out and in, an engine killed in a running pod, probes under a
saturating load, and the operator itself replaced in the middle of a rollout.
"""

from __future__ import annotations

import subprocess
from typing import Any

from e2e.test_journey import QUESTION, _metric, patch_spec

from fixtures.helpers import wait_for
from fixtures.node import MODEL, OPERATOR_NAMESPACE, Node

REVISION = "deployment.kubernetes.io/revision"
STREAM_TOKENS = 800  # a stream still running when the test cuts it (the engine-kill test)
DRAIN_STREAM_SECONDS = 15


def pod_url(pod: dict[str, Any]) -> str:
    return f"http://{pod['status']['podIP']}:8000"


def test_scale_out_serves_from_both_and_scale_in_drains(release: Node) -> None:
    release.kubectl("scale", "inferencemodels.inference.vif.dev", MODEL, "--replicas", "2")
    release.wait_ready(MODEL, replicas=2)
    pods = release.pods(MODEL)
    assert len(pods) == 2
    for pod in pods:
        assert "Paris" in release.netns("chat", pod_url(pod), MODEL, QUESTION)["content"]
    # Streams that last about DRAIN_STREAM_SECONDS at the speed both pods show right now: in flight when
    # the removed pod gets SIGTERM (after its 5 s preStop wait), well inside its 50 s drain. Each pod's log
    # is followed to its end: scaling in removes one pod, whose stream must still end complete, and whose
    # log must show that it drained it.
    probes = [release.spawn_netns("stream", pod_url(pod), MODEL, "64") for pod in pods]
    speed = min(r["completion_tokens"] / r["seconds"] for r in map(release.result, probes))
    tokens = max(64, min(1500, int(speed * DRAIN_STREAM_SECONDS)))
    logs = [
        subprocess.Popen(
            ["kubectl", "--kubeconfig", str(release.kubeconfig), "logs", "-f", pod["metadata"]["name"]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pod in pods
    ]
    streams = [release.spawn_netns("stream", pod_url(pod), MODEL, str(tokens)) for pod in pods]
    for pod in pods:
        wait_for(
            lambda pod=pod: _metric(release, pod_url(pod), "inference_requests_in_flight{") >= 1,
            what="streams",
        )
    release.kubectl("scale", "inferencemodels.inference.vif.dev", MODEL, "--replicas", "1")
    results = [release.result(s, 300) for s in streams]
    for result in results:
        assert result["error"] is None and result["done"], result
        assert result["completion_tokens"] == tokens, result
    release.wait_ready(MODEL, replicas=1)
    wait_for(lambda: len(release.pods(MODEL)) == 1, what="the removed pod to be gone")
    (kept,) = release.pods(MODEL)
    (removed,) = [i for i, pod in enumerate(pods) if pod["metadata"]["name"] != kept["metadata"]["name"]]
    removed_log = logs[removed].communicate(timeout=120)[0]  # `logs -f` ends with the container
    logs[1 - removed].kill()
    assert "draining: 1 request(s) in flight" in removed_log, removed_log[-3000:]
    assert "grace period over" not in removed_log, removed_log[-3000:]


def test_an_engine_killed_mid_stream_ends_it_restarts_the_container_and_the_cr_says_so(release: Node) -> None:
    (pod,) = release.pods(MODEL)
    name = pod["metadata"]["name"]
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    stream = release.spawn_netns("stream", pod_url(pod), MODEL, str(STREAM_TOKENS))
    wait_for(lambda: _metric(release, pod_url(pod), "inference_requests_in_flight{") >= 1, what="a stream")
    # Kill vLLM's engine core inside the runtime container: the runtime answers 503, exits 1, restarts.
    release.kubectl(
        "exec", name, "--", "python", "-c",
        "import os, signal\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit() and int(pid) != 1 and int(pid) != os.getpid():\n"
        "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read()\n"
        "        if b'resource_tracker' not in cmd and os.getppid() != int(pid):\n"
        "            os.kill(int(pid), signal.SIGKILL)\n",
    )  # fmt: skip
    # The stream in flight ends at once with the protocol's error event, not a hang or a cut connection.
    cut = release.result(stream, 120)
    assert cut["error"] == "The inference engine is not available." and cut["done"], cut
    wait_for(lambda: release.condition(MODEL, "Ready").get("status") == "False", what="Ready=False")
    body = release.wait_ready(MODEL)
    (after,) = release.pods(MODEL)
    assert after["metadata"]["name"] == name
    assert after["status"]["containerStatuses"][0]["restartCount"] == restarts + 1
    last = after["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 1 and "engine died" in last.get("message", "")
    assert body["status"]["readyReplicas"] == 1


def test_liveness_holds_under_a_saturating_load(release: Node) -> None:
    (pod,) = release.pods(MODEL)
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    url = release.service_url(MODEL)
    load = [release.spawn_netns("stream", url, MODEL, "200") for _ in range(12)]
    try:
        probes = release.netns("probe", pod_url(pod), "30")
    finally:
        results = [release.result(s, 600) for s in load]
    assert all(r["error"] is None for r in results), results
    # The kubelet's probes time out after 5 s; the probe endpoints must answer well inside it.
    assert probes["failures"] == [] and probes["worst_seconds"] < 5, probes
    (after,) = release.pods(MODEL)
    assert after["status"]["containerStatuses"][0]["restartCount"] == restarts


def test_the_operator_pod_replaced_mid_rollout_converges(release: Node) -> None:
    revision = int(release.get("deployment", MODEL)["metadata"]["annotations"][REVISION])
    current = release.im(MODEL)["spec"].get("maxModelLen")
    patch_spec(release, MODEL, {"maxModelLen": 1792 if current != 1792 else 2048})
    release.kubectl(
        "delete", "pod", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=inference-operator"
    )
    body = release.wait_ready(MODEL)
    # One spec change, one new pod template: the replacement operator wrote no second one.
    assert int(release.get("deployment", MODEL)["metadata"]["annotations"][REVISION]) == revision + 1
    replica_sets = release.get("replicasets", "-l", f"app.kubernetes.io/instance={MODEL}")["items"]
    assert len([rs for rs in replica_sets if rs["spec"]["replicas"] > 0]) == 1
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
