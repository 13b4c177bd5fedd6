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
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.test_journey import QUESTION

from fixtures.helpers import REPO, wait_for
from fixtures.node import EXAMPLE, NODE_IP, Node
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
    log = (release.workdir / "moto.log").open("wb")
    moto = [sys.executable, "-m", "moto.server", "-H", NODE_IP, "-p", "9000"]
    proc = subprocess.Popen(
        [str(REPO / "hack" / "node.sh"), "exec", str(release.workdir), *moto],
        env=release.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        probe = f"import socket; socket.create_connection(('{NODE_IP}', 9000), 2)"
        wait_for(
            lambda: proc.poll() is not None or _in_node(release, sys.executable, "-c", probe).returncode == 0,
            what="moto's S3 server in the node",
        )
        assert proc.poll() is None, (release.workdir / "moto.log").read_text()[-2000:]
        put = release.netns("s3-put", S3_ENDPOINT, BUCKET, PREFIX, str(smollm2))
        assert put["files"] >= 4, put
        yield S3_ENDPOINT
    finally:
        stop_process(proc, grace=10)
        log.close()


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


def s3_model(name: str, uri: str, replicas: int = 1) -> dict[str, Any]:
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
                "endpoint": S3_ENDPOINT,
                "region": "us-east-1",
                "credentialsSecret": {"name": "s3-creds"},
            }
        },
        "cache": {"claimName": CLAIM},
    }
    return body


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
    assert "not-a-real-secret" not in json.dumps(release.im("no-bucket"))
    ready = release.condition("no-bucket", "Ready")
    assert ready["status"] == "False" and ready["reason"] == "DownloadFailed", ready
    assert release.pods("no-bucket") == []  # nothing crash-loops while the model is not there
    release.kubectl("delete", "inferencemodel", "no-bucket", "--wait=true")
