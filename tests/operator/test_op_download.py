"""Builders for huggingFace and s3 sources: the download init container, the shared Job, the pods' mounts."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
from op_helpers import make_model
from prometheus_client import REGISTRY

from inference_operator import status
from inference_operator.manifests import configmap, deployment, desired, download_job, job_name
from inference_operator.manifests.common import container_security_context, pod_security_context
from inference_operator.manifests.configmap import CONFIG_KEY
from inference_operator.manifests.download import MODEL_DIR_ANNOTATION, SERVES_ANNOTATION, cleanup_job
from inference_operator.reconciler import FINISHED_LINE, Reconciler
from inference_operator.settings import OperatorSettings
from inference_policy import model_source

SETTINGS = OperatorSettings(runtime_image="registry.invalid/runtime:1")
HF = {
    "huggingFace": {
        "repo": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "revision": "v1.0",
        "tokenSecret": {"name": "hf-token"},
        "files": ["*.json", "*.safetensors"],
    }
}
S3 = {
    "s3": {
        "uri": "s3://models-bucket/llama/8b",
        "endpoint": "http://127.0.0.1:9000",
        "region": "eu-west-1",
        "credentialsSecret": {"name": "s3-creds"},
    }
}
SOURCES = {"hf": HF, "s3": S3}


def model(source: dict[str, Any], *, cache: bool, name: str = "m1", **spec: Any) -> Any:
    model_spec: dict[str, Any] = {"source": source}
    if cache:
        model_spec["cache"] = {"claimName": "model-cache"}
    return make_model({"model": model_spec, **spec}, name=name)


def pod_spec(dep: dict[str, Any]) -> dict[str, Any]:
    return dep["spec"]["template"]["spec"]


def built(m: Any) -> dict[str, Any]:
    return deployment(m, SETTINGS, configmap(m))


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("kind", SOURCES)
@pytest.mark.parametrize("cache", [False, True], ids=["own-volume", "cache"])
def test_objects_are_valid_for_kubernetes_1_32(kind: str, cache: bool) -> None:
    m = model(SOURCES[kind], cache=cache)
    objects = desired(m, SETTINGS, monitoring_available=False)
    if cache:
        objects.append(download_job(m, SETTINGS))
    for obj in objects:
        kubernetes_validate.validate(obj, "1.32.0", strict=True)


def test_model_config_names_the_uri_and_the_patterns() -> None:
    hub = json.loads(configmap(model(HF, cache=False))["data"][CONFIG_KEY])["m1"]
    assert hub["model_path"] == "hf://HuggingFaceTB/SmolLM2-135M-Instruct@v1.0"
    assert hub["allow_patterns"] == ["*.json", "*.safetensors"]
    s3 = json.loads(configmap(model(S3, cache=True))["data"][CONFIG_KEY])["m1"]
    assert s3["model_path"] == "s3://models-bucket/llama/8b/" and "allow_patterns" not in s3


def test_without_cache_an_init_container_downloads_into_the_pods_own_volume() -> None:
    spec = pod_spec(built(model(HF, cache=False, imagePullPolicy="IfNotPresent")))
    (init,) = spec["initContainers"]
    (runtime,) = spec["containers"]
    assert init["name"] == "download"
    assert (init["image"], init["imagePullPolicy"]) == (runtime["image"], "IfNotPresent")
    assert init["command"] == ["inference-runtime"]
    assert init["args"] == [
        "--download-only",
        "--config",
        "/etc/inference/model_config.json",
        "--model",
        "m1",
        "--model-root",
        "/models",
        "--termination-log",
        "/dev/termination-log",
    ]
    assert init["securityContext"] == runtime["securityContext"] == container_security_context()
    assert init["terminationMessagePath"] == "/dev/termination-log"
    assert env(init)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert "HF_TOKEN" not in env(runtime)  # the runtime serves offline: it gets no credentials
    (models,) = (v for v in spec["volumes"] if v["name"] == "models")
    assert models == {"name": "models", "emptyDir": {}}
    init_mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    assert init_mounts["/models"].get("readOnly") is not True
    assert init_mounts["/etc/inference/model_config.json"]["readOnly"] is True
    runtime_mounts = {m["mountPath"]: m for m in runtime["volumeMounts"]}
    assert runtime_mounts["/models"] == {"name": "models", "mountPath": "/models", "readOnly": True}


def test_with_cache_pods_mount_the_claim_read_only_and_have_no_init_container() -> None:
    spec = pod_spec(built(model(S3, cache=True)))
    assert "initContainers" not in spec
    (models,) = (v for v in spec["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "model-cache", "readOnly": True}
    (runtime,) = spec["containers"]
    assert {m["mountPath"]: m for m in runtime["volumeMounts"]}["/models"]["readOnly"] is True
    # The endpoint is part of the cache key: the runtime must compute the folder the Job filled.
    assert env(runtime)["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert env(runtime)["AWS_REGION"] == "eu-west-1"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & env(runtime).keys()


def test_hf_job_downloads_the_uri_into_the_cache_claim() -> None:
    m = model(HF, cache=True)
    job = download_job(m, SETTINGS)
    source = m.spec.model.download_source()
    assert job["metadata"]["name"] == job_name("ns1", "model-cache", source)
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "model-download"
    assert "ownerReferences" not in job["metadata"]  # shared by every model naming the source
    spec = job["spec"]
    assert spec["backoffLimit"] <= 3 and 3600 <= spec["activeDeadlineSeconds"] <= 24 * 3600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == pod_security_context()
    assert pod["automountServiceAccountToken"] is False
    assert pod["volumes"] == [{"name": "models", "persistentVolumeClaim": {"claimName": "model-cache"}}]
    (container,) = pod["containers"]
    assert container["securityContext"] == container_security_context()
    assert container["volumeMounts"] == [{"name": "models", "mountPath": "/models"}]
    assert container["args"] == [
        "--download-only",
        "--model-uri",
        "hf://HuggingFaceTB/SmolLM2-135M-Instruct@v1.0",
        "--allow-pattern",
        "*.json",
        "--allow-pattern",
        "*.safetensors",
        "--model-root",
        "/models",
        "--termination-log",
        "/dev/termination-log",
    ]
    # The image keeps serving processes off the Hub (HF_HUB_OFFLINE=1); the download turns that off.
    assert env(container) == {
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
    }
    annotations = job["metadata"]["annotations"]
    assert annotations["inference.vif.dev/cache-key"] == model_source.cache_key(source)
    assert annotations["inference.vif.dev/revision-dir"] == "v1.0"


def test_s3_job_gets_endpoint_region_and_credentials_by_reference() -> None:
    job = download_job(model(S3, cache=True), SETTINGS)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["--download-only", "--model-uri", "s3://models-bucket/llama/8b/"]
    assert "--allow-pattern" not in container["args"]
    assert env(container) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}},
        "AWS_SECRET_ACCESS_KEY": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}},
        "HF_HUB_OFFLINE": "0",
    }


def test_job_names_are_deterministic_short_labels_per_source_revision_claim_and_namespace() -> None:
    one = model(HF, cache=True, name="a", servedModelName="x")
    two = model(HF, cache=True, name="b", replicas=3)  # another model, same source: the same Job
    assert download_job(one, SETTINGS)["metadata"]["name"] == download_job(two, SETTINGS)["metadata"]["name"]
    hub = model_source.HubSource("o/" + "n" * 96, "feature/" + "x" * 100)
    names = {
        job_name("ns1", "cache", hub),
        job_name("ns2", "cache", hub),
        job_name("ns1", "other", hub),
        job_name("ns1", "cache", model_source.HubSource("o/" + "n" * 96, "main")),
        job_name("ns1", "cache", model_source.S3Source("bucket", "p", endpoint="http://127.0.0.1:1")),
        job_name("ns1", "cache", model_source.S3Source("bucket", "p", endpoint="http://127.0.0.1:2")),
    }
    assert len(names) == 6
    for name in names:
        assert len(name) <= 63 and name[0].isalpha() and name[-1].isalnum()
        assert all(c.islower() or c.isdigit() or c == "-" for c in name), name
    assert job_name("ns1", "cache", hub) == job_name("ns1", "cache", hub)


def test_pods_read_the_folder_the_job_writes() -> None:
    """The runtime resolves the config's URI (with the pod's endpoint variables) to the Job's folder."""
    m = model(S3, cache=True)
    entry = json.loads(configmap(m)["data"][CONFIG_KEY])["m1"]
    (runtime,) = pod_spec(built(m))["containers"]
    seen_by_runtime = model_source.parse_model_uri(
        entry["model_path"],
        s3_endpoint=env(runtime).get("AWS_ENDPOINT_URL"),
        s3_region=env(runtime).get("AWS_REGION"),
    )
    job = download_job(m, SETTINGS)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    seen_by_job = model_source.parse_model_uri(
        container["args"][2], s3_endpoint=env(container)["AWS_ENDPOINT_URL"]
    )
    root = PurePosixPath("/models")
    assert model_source.model_dir(root, seen_by_runtime) == model_source.model_dir(root, seen_by_job)


def test_a_hub_mirror_reaches_the_job_and_the_runtime_and_keys_the_cache() -> None:
    mirror = {"huggingFace": {**HF["huggingFace"], "endpoint": "http://hub-mirror.models:8080"}}
    m = model(mirror, cache=True)
    (runtime,) = pod_spec(built(m))["containers"]
    (container,) = download_job(m, SETTINGS)["spec"]["template"]["spec"]["containers"]
    assert env(runtime)["HF_ENDPOINT"] == env(container)["HF_ENDPOINT"] == "http://hub-mirror.models:8080"
    # Another Hub may hold other files under the same repository name: another folder, another Job.
    public = download_job(model(HF, cache=True), SETTINGS)
    assert download_job(m, SETTINGS)["metadata"]["name"] != public["metadata"]["name"]
    entry = json.loads(configmap(m)["data"][CONFIG_KEY])["m1"]
    seen_by_runtime = model_source.parse_model_uri(
        entry["model_path"], patterns=tuple(entry["allow_patterns"]), hf_endpoint=env(runtime)["HF_ENDPOINT"]
    )
    assert model_source.model_dir(PurePosixPath("/models"), seen_by_runtime) == PurePosixPath(
        download_job(m, SETTINGS)["metadata"]["annotations"]["inference.vif.dev/model-dir"]
    )


def test_no_built_object_contains_a_secret_value() -> None:
    # The spec only names Secrets; what reaches an object must be a reference, whatever the source.
    for kind in SOURCES:
        for cache in (False, True):
            m = model(SOURCES[kind], cache=cache)
            objects = desired(m, SETTINGS, monitoring_available=False)
            if cache:
                objects.append(download_job(m, SETTINGS))
            for container in (
                c
                for obj in objects
                if obj["kind"] in ("Deployment", "Job")
                for c in [
                    *obj["spec"]["template"]["spec"]["containers"],
                    *obj["spec"]["template"]["spec"].get("initContainers", []),
                ]
            ):
                for var in container.get("env", []):
                    if var["name"] in ("HF_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                        assert "value" not in var and "secretKeyRef" in var["valueFrom"]


def test_until_the_download_is_complete_the_pods_objects_are_left_alone() -> None:
    m = model(HF, cache=True)
    kinds = [o["kind"] for o in desired(m, SETTINGS, monitoring_available=False, downloaded=False)]
    assert kinds == ["Service"]
    kinds = [o["kind"] for o in desired(m, SETTINGS, monitoring_available=False)]
    assert kinds == ["ConfigMap", "Deployment", "Service"]


class LogOnlyKube:
    """A Kube that only answers log reads (what progress reading uses), counting them."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.reads = 0

    def log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        assert container == "download"
        self.reads += 1
        return self.text


RUNNING = {
    "metadata": {"name": "dl-x-1"},
    "status": {"containerStatuses": [{"name": "download", "state": {"running": {}}}]},
}


def test_progress_is_the_last_progress_line_read_at_most_once_per_resync() -> None:
    kube = LogOnlyKube(
        "starting\ndownload progress: 3% (1.0 MiB of 45.6 MiB, 0 of 10 files)\n"
        "download progress: 27% (12.3 MiB of 45.6 MiB, 3 of 10 files)\n"
    )
    reconciler = Reconciler(kube, OperatorSettings(resync_seconds=3600))  # type: ignore[arg-type]
    assert reconciler._read_progress("ns", [RUNNING]) == "27% (12.3 MiB of 45.6 MiB, 3 of 10 files)"
    kube.text = "download progress: 90% (41.0 MiB of 45.6 MiB, 9 of 10 files)\n"
    assert reconciler._read_progress("ns", [RUNNING]) == "27% (12.3 MiB of 45.6 MiB, 3 of 10 files)"
    assert kube.reads == 1  # other triggers within the interval reuse what the last read found
    fresh = Reconciler(kube, OperatorSettings(resync_seconds=0))  # type: ignore[arg-type]
    assert (fresh._read_progress("ns", [RUNNING]) or "").startswith("90%")  # no interval: read every time
    finished = {
        **RUNNING,
        "status": {"containerStatuses": [{"name": "download", "state": {"terminated": {}}}]},
    }
    assert reconciler._read_progress("ns", [finished]) is None


def test_the_runtimes_final_line_is_the_download_summary() -> None:
    line = "INFO downloaded hf://o/n@main at revision 0123abc (10 files, 45.6 MiB, 47815065 bytes) in 12.5 s"
    found = FINISHED_LINE.search(line)
    assert found is not None
    assert (
        found[0]
        == "downloaded hf://o/n@main at revision 0123abc (10 files, 45.6 MiB, 47815065 bytes) in 12.5 s"
    )
    assert (found["bytes"], found["seconds"]) == ("47815065", "12.5")


def test_the_cleanup_removes_exactly_the_folder_model_source_computes() -> None:
    m = model(HF, cache=True)
    job = download_job(m, SETTINGS)
    cleanup = cleanup_job(job, SETTINGS)
    assert cleanup is not None
    target = str(model_source.model_dir(PurePosixPath("/models"), m.spec.model.download_source()))
    pod = cleanup["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["rm", "-rf", "--", target]
    assert pod["volumes"] == job["spec"]["template"]["spec"]["volumes"]
    assert pod["securityContext"] == pod_security_context()
    assert container["securityContext"] == container_security_context()
    assert cleanup["metadata"]["name"] == "rm-" + job["metadata"]["name"].removeprefix("dl-")
    kubernetes_validate.validate(cleanup, "1.32.0", strict=True)
    # A hand-edited annotation never widens what is removed.
    for path in ("/models", "/models/x", "/models/x/../y", "/etc/x/y", "/models/x/y/z", "/models/x/.."):
        edited = {**job, "metadata": {**job["metadata"], "annotations": {MODEL_DIR_ANNOTATION: path}}}
        assert cleanup_job(edited, SETTINGS) is None, path


def test_the_deployment_names_the_download_its_pods_serve() -> None:
    m = model(S3, cache=True)
    dep = built(m)
    assert dep["metadata"]["annotations"][SERVES_ANNOTATION] == download_job(m, SETTINGS)["metadata"]["name"]
    assert "annotations" not in built(model(S3, cache=False))["metadata"]


def test_a_shared_download_job_is_counted_once_in_the_metrics() -> None:
    """Every model sharing a Job sees it end; the metrics count the Job, with the runtime's bytes and time."""
    uri = "s3://bucket/count-once/"
    line = f"downloaded {uri} at revision latest (2 files, 1.0 MiB, 1048576 bytes) in 3.5 s"
    job = {"metadata": {"name": "dl-count-once", "uid": "uid-count-once"}}
    download = status.Download("job", uri, job=job)
    reconciler = Reconciler(LogOnlyKube(""), SETTINGS)  # type: ignore[arg-type]
    for _ in range(2):
        reconciler._count("ns", download, "downloaded", FINISHED_LINE.search(line))
    where = {"namespace": "ns", "source": uri}
    sample = REGISTRY.get_sample_value
    assert sample("inference_operator_model_downloads_total", {**where, "result": "downloaded"}) == 1
    assert sample("inference_operator_model_download_bytes_total", where) == 1048576
    assert sample("inference_operator_model_download_duration_seconds_sum", where) == 3.5
    # A failed Job: counted, with no bytes or duration (there is no final line).
    failed = status.Download("job", "s3://bucket/fails/", job={"metadata": {"name": "dl-f", "uid": "uid-f"}})
    reconciler._count("ns", failed, "failed", None)
    where = {"namespace": "ns", "source": "s3://bucket/fails/"}
    assert sample("inference_operator_model_downloads_total", {**where, "result": "failed"}) == 1
    assert sample("inference_operator_model_download_bytes_total", where) is None
