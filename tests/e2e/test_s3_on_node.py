"""Models from S3 on the real node: the shared download Job, the cache volume, honest status, clean-up.

The S3-compatible store is moto's standalone server, started inside the node's network namespace on the
node's address (pods reach it there; nothing leaves the namespace). The cache is a PersistentVolume of
type hostPath, so the test can look at what the Job wrote; pods mount it through a claim, which the
restricted pod security policy of the node allows.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.test_journey import QUESTION
from prometheus_client.parser import text_string_to_metric_families

from fixtures.helpers import REPO, wait_for
from fixtures.node import EXAMPLE, NODE_IP, OPERATOR_NAMESPACE, Node
from fixtures.prereq import require_path
from fixtures.processes import stop_process
from inference_policy.model_source import COMPLETE_MARKER, S3Source, model_dir

S3_ENDPOINT = f"http://{NODE_IP}:9000"
BUCKET = "models"
PREFIX = "smollm2/"
CLAIM = "model-cache"
RUNTIME_UID = 10001  # Dockerfile.runtime's user: the download Job writes the cache as it
URI_ANNOTATION = "inference.vif.dev/model-uri"


def _in_node(node: Node, *cmd: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "hack" / "node.sh"), "exec", str(node.workdir), *cmd],
        env=node.env,
        capture_output=True,
        text=True,
        check=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def node_s3(release: Node) -> Iterator[str]:
    """moto's S3 server on the node's address, holding the SmolLM2 folder under s3://models/smollm2/."""
    smollm2 = require_path("VIF_SMOLLM2_MODEL", "SmolLM2 model")
    moto = [sys.executable, "-m", "moto.server", "-H", NODE_IP, "-p", "9000"]
    with in_node_server(release, "moto", *moto, port=9000):
        put = release.netns("s3-put", S3_ENDPOINT, BUCKET, PREFIX, str(smollm2))
        assert put["files"] >= 4, put
        yield S3_ENDPOINT


@pytest.fixture(scope="module")
def cache(release: Node) -> Iterator[Path]:
    """A hostPath PersistentVolume bound to the claim ``model-cache``, and the S3 credentials Secret."""
    folder = release.workdir / "model-cache"
    folder.mkdir()
    os.chown(folder, RUNTIME_UID, RUNTIME_UID)
    objects = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "model-cache"},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "hostPath": {"path": str(folder), "type": "Directory"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM, "namespace": "default"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": "model-cache",
                "resources": {"requests": {"storage": "5Gi"}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-creds", "namespace": "default"},
            "stringData": {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"},
        },
    ]
    release.kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    yield folder


@contextmanager
def in_node_server(node: Node, name: str, *cmd: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` (a server on NODE_IP:port) inside the node's network namespace until the test ends."""
    log = (node.workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [str(REPO / "hack" / "node.sh"), "exec", str(node.workdir), *cmd],
        env=node.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        probe = f"import socket; socket.create_connection(('{NODE_IP}', {port}), 2)"
        wait_for(
            lambda: proc.poll() is not None or _in_node(node, sys.executable, "-c", probe).returncode == 0,
            what=f"{name} in the node",
        )
        assert proc.poll() is None, (node.workdir / f"{name}.log").read_text()[-2000:]
        yield proc
    finally:
        stop_process(proc, grace=10)
        log.close()


def s3_model(name: str, uri: str, replicas: int = 1, endpoint: str = S3_ENDPOINT) -> dict[str, Any]:
    """The CPU example, with its model taken from S3 through the cache instead of the image."""
    body = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    body["metadata"] = {"name": name, "namespace": "default"}
    body["spec"]["servedModelName"] = name
    body["spec"]["replicas"] = replicas
    body["spec"]["monitoring"] = {"enabled": False}
    body["spec"]["model"] = {
        "source": {
            "s3": {
                "uri": uri,
                "endpoint": endpoint,
                "region": "us-east-1",
                "credentialsSecret": {"name": "s3-creds"},
            }
        },
        "cache": {"claimName": CLAIM},
    }
    return body


def operator_metric(node: Node, name: str, **labels: str) -> float:
    """A sample of the operator's /metrics (port 8081, the chart's default), scraped inside the node."""
    (pod,) = node.get("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=inference-operator")[
        "items"
    ]
    scraped = node.netns("get", f"http://{pod['status']['podIP']}:8081/metrics")
    assert scraped["status"] == 200, scraped
    for family in text_string_to_metric_families(scraped["body"]):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return 0.0


def jobs_for(node: Node, uri: str) -> list[dict[str, Any]]:
    jobs = node.get("jobs", "-n", "default")["items"]
    return [j for j in jobs if j["metadata"].get("annotations", {}).get(URI_ANNOTATION) == uri]


@pytest.mark.timeout(1800)  # a hang guard: a download, then a model start (torch compilation) on 2 cores
def test_a_model_from_s3_is_downloaded_once_into_the_cache_served_and_cleaned_up(
    release: Node, node_s3: str, cache: Path
) -> None:
    uri = f"s3://{BUCKET}/{PREFIX}"
    release.kubectl("apply", "-f", "-", stdin=json.dumps(s3_model("smollm2-s3", uri)))
    wait_for(
        lambda: release.condition("smollm2-s3", "ModelAvailable").get("reason") == "Downloaded",
        timeout=900,
        what="ModelAvailable=Downloaded",
    )
    (job,) = jobs_for(release, f"s3://{BUCKET}/{PREFIX}")
    folder = model_dir(cache, S3Source(bucket=BUCKET, prefix=PREFIX, endpoint=node_s3))
    assert (folder / COMPLETE_MARKER).is_file() and (folder / "config.json").is_file()
    # The download in the operator's metrics: the bytes of every object, its duration, one success.
    size = sum(
        p.stat().st_size for p in require_path("VIF_SMOLLM2_MODEL", "SmolLM2").rglob("*") if p.is_file()
    )
    where = {"namespace": "default", "source": uri}
    assert operator_metric(release, "inference_operator_model_download_bytes_total", **where) == size
    assert operator_metric(release, "inference_operator_model_download_duration_seconds_count", **where) == 1
    downloaded = {**where, "result": "downloaded"}
    assert operator_metric(release, "inference_operator_model_downloads_total", **downloaded) == 1
    release.wait_ready("smollm2-s3")
    url = release.service_url("smollm2-s3")
    assert "Paris" in release.netns("chat", url, "smollm2-s3", QUESTION)["content"]

    # A second model naming the same source and revision reuses the download: no second Job.
    release.kubectl("apply", "-f", "-", stdin=json.dumps(s3_model("smollm2-s3-again", uri, replicas=0)))
    wait_for(
        lambda: release.condition("smollm2-s3-again", "ModelAvailable").get("reason") == "Downloaded",
        what="the second model to find the download",
    )
    assert [j["metadata"]["name"] for j in jobs_for(release, uri)] == [job["metadata"]["name"]]
    assert operator_metric(release, "inference_operator_model_downloads_total", **downloaded) == 1

    # Both gone: the cached revision is removed (the operator's clean-up Job), and only that folder.
    release.kubectl("delete", "inferencemodel", "smollm2-s3", "smollm2-s3-again", "--wait=true")
    wait_for(lambda: not folder.exists(), timeout=600, what="the cached revision to be removed")
    assert cache.is_dir()


def test_a_missing_bucket_says_not_found_and_starts_no_pod(release: Node, node_s3: str, cache: Path) -> None:
    release.kubectl("apply", "-f", "-", stdin=json.dumps(s3_model("no-bucket", "s3://no-such-bucket/m/")))
    failed = wait_for(
        lambda: (
            (c := release.condition("no-bucket", "ModelAvailable")).get("reason") == "DownloadFailed" and c
        ),
        timeout=900,
        what="ModelAvailable=DownloadFailed",
    )
    assert "not found" in failed["message"], failed
    failures = {"namespace": "default", "source": "s3://no-such-bucket/m/", "result": "failed"}
    assert operator_metric(release, "inference_operator_model_downloads_total", **failures) == 1
    assert "not-a-real-secret" not in json.dumps(release.im("no-bucket"))
    ready = release.condition("no-bucket", "Ready")
    assert ready["status"] == "False" and ready["reason"] == "DownloadFailed", ready
    assert release.pods("no-bucket") == []  # nothing crash-loops while the model is not there
    release.kubectl("delete", "inferencemodel", "no-bucket", "--wait=true")


def test_a_corrupted_download_says_checksum_mismatch_and_serves_nothing(
    release: Node, node_s3: str, cache: Path
) -> None:
    """The same bucket through a proxy that damages every ``config.json`` it serves (a stand-in for a store
    or network that corrupts bytes): the checksum the store keeps for each object (s3-put's boto3 adds one)
    catches it; nothing is marked complete."""
    proxy = [sys.executable, str(REPO / "tests" / "fixtures" / "corrupting_proxy.py")]
    endpoint = f"http://{NODE_IP}:9001"
    uri = f"s3://{BUCKET}/{PREFIX}"
    with in_node_server(release, "proxy", *proxy, NODE_IP, "9001", node_s3, "config.json", port=9001):
        release.kubectl("apply", "-f", "-", stdin=json.dumps(s3_model("corrupted", uri, endpoint=endpoint)))
        failed = wait_for(
            lambda: (
                (c := release.condition("corrupted", "ModelAvailable")).get("reason") == "DownloadFailed"
                and c
            ),
            timeout=900,
            what="ModelAvailable=DownloadFailed",
        )
        assert "checksum mismatch:" in failed["message"], failed
        assert release.pods("corrupted") == []
        folder = model_dir(cache, S3Source(bucket=BUCKET, prefix=PREFIX, endpoint=endpoint))
        assert not (folder / COMPLETE_MARKER).exists()
        release.kubectl("delete", "inferencemodel", "corrupted", "--wait=true")
