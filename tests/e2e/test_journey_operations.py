"""Day-2 operations on the real node: scale out and in, an engine killed in a running pod, probes under a
saturating load, and the operator itself replaced in the middle of a rollout.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from e2e.test_journey import QUESTION, _metric, patch_spec

from fixtures.helpers import wait_for
from fixtures.node import MODEL, OPERATOR_NAMESPACE, Node

REVISION = "deployment.kubernetes.io/revision"
STREAM_TOKENS = 800  # a stream still running when the test cuts it (the engine-kill test)
RELAY_TOKENS = 48  # each stream of the scale-in relay


def pod_url(pod: dict[str, Any]) -> str:
    return f"http://{pod['status']['podIP']}:8000"


def test_scale_out_serves_from_both_and_scale_in_drains(release: Node, tmp_path: Path) -> None:
    release.kubectl("scale", "inferencemodels.inference.vif.dev", MODEL, "--replicas", "2")
    release.wait_ready(MODEL, replicas=2)
    pods = release.pods(MODEL)
    assert len(pods) == 2
    for pod in pods:
        assert "Paris" in release.netns("chat", pod_url(pod), MODEL, QUESTION)["content"]
    # Each pod has two streams in flight at every moment (a relay, tests/fixtures/netns_client.py) and its
    # log followed to its end. Scaling in removes one pod: it gets SIGTERM with streams in flight, which must
    # all end complete; it refuses the relay's next ones (503, then no response: no connection, or a reset of
    # one left in the closing listener's backlog); its log must say that it drained them. The kept pod serves
    # its relay throughout. Its drain is the example's terminationGracePeriodSeconds less 10 s (the preStop
    # wait and the engine's stop): with the default 60 s, a CI run on a loaded node cut a stream that got
    # under 1 token/s (45 of 48 tokens, then the grace period's error event).
    grace = release.im(MODEL)["spec"]["terminationGracePeriodSeconds"]
    stop = tmp_path / "stop"
    logs = [
        subprocess.Popen(
            ["kubectl", "--kubeconfig", str(release.kubeconfig), "logs", "-f", pod["metadata"]["name"]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pod in pods
    ]
    relays = [release.spawn_netns("relay", pod_url(pod), MODEL, str(RELAY_TOKENS), str(stop)) for pod in pods]
    for pod in pods:
        wait_for(
            lambda pod=pod: _metric(release, pod_url(pod), "inference_requests_in_flight{") >= 2,
            what="streams",
        )
    release.kubectl("scale", "inferencemodels.inference.vif.dev", MODEL, "--replicas", "1")
    release.wait_ready(MODEL, replicas=1)
    wait_for(lambda: len(release.pods(MODEL)) == 1, what="the removed pod to be gone", timeout=grace + 60)
    (kept,) = release.pods(MODEL)
    (removed,) = [i for i, pod in enumerate(pods) if pod["metadata"]["name"] != kept["metadata"]["name"]]
    stop.touch()
    drained, served = release.result(relays[removed], 300), release.result(relays[1 - removed], 300)
    assert drained["broken"] == [] and drained["complete"] >= 2, drained
    assert len(drained["refused"]) == 2, drained
    assert served["broken"] == [] and served["refused"] == [] and served["complete"] >= 2, served
    removed_log = logs[removed].communicate(timeout=120)[0]  # `logs -f` ends with the container
    logs[1 - removed].kill()
    assert re.search(rf"draining: [1-9]\d* request\(s\) in flight, grace {grace - 10} s", removed_log), (
        removed_log[-3000:]
    )
    assert "grace period over" not in removed_log, removed_log[-3000:]


def test_an_engine_killed_mid_stream_ends_it_restarts_the_container_and_the_cr_says_so(
    release: Node, tmp_path: Path
) -> None:
    (pod,) = release.pods(MODEL)
    name = pod["metadata"]["name"]
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    # The client itself says when its first token has arrived (a file), so the kill lands mid-stream
    # however slowly the loaded node starts it; if the stream ends first, its own result says why.
    started = tmp_path / "started"
    stream = release.spawn_netns("stream", pod_url(pod), MODEL, str(STREAM_TOKENS), str(started))
    wait_for(lambda: started.exists() or stream.poll() is not None, what="the stream's first token")
    assert stream.poll() is None, release.result(stream)
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
