"""The chart against the real test API server (Kubernetes 1.20): a server-side dry run, a real install,
and the operator reconciling a model with exactly the chart's ServiceAccount and RBAC, without one 403.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from chart_helpers import CHART, Helm

from fixtures.cluster import SERVICEMONITOR_CRD, KubeCluster, install_crd, uninstall_crd
from fixtures.helpers import free_port, wait_for
from fixtures.processes import stop_process
from inference_operator.settings import OperatorSettings

pytestmark = [pytest.mark.helm, pytest.mark.cluster]

PEERING = OperatorSettings().peering_name
MODEL_NAME = "smollm2"
MODEL_API = ("inference.vif.dev", "v1alpha1")
MODEL = {
    "apiVersion": "inference.vif.dev/v1alpha1",
    "kind": "InferenceModel",
    "metadata": {"name": MODEL_NAME},
    "spec": {"model": {"path": "smollm2-135m-instruct"}, "maxModelLen": 2048},
}


@contextlib.contextmanager
def _namespaces(cluster: KubeCluster, *prefixes: str) -> Iterator[list[str]]:
    """Fresh namespaces, deleted (with everything in them) afterwards."""
    names = [f"{prefix}-{uuid.uuid4().hex[:8]}" for prefix in prefixes]
    with cluster.api_client() as client:
        core = kubernetes.client.CoreV1Api(client)
        for name in names:
            core.create_namespace({"metadata": {"name": name}})
        try:
            yield names
        finally:
            for name in names:
                core.delete_namespace(name)


def _install_chart_crds(cluster: KubeCluster) -> None:
    """What `helm install` does with crds/ before anything else (a dry run skips it)."""
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for manifest in yaml.safe_load_all(path.read_text()):
            install_crd(cluster, manifest)


def _helm_install(helm: Helm, cluster: KubeCluster, release: str, namespace: str, *args: str) -> str:
    return helm.run(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kubeconfig",
        str(cluster.kubeconfig),
        *args,
    )


def test_install_dry_run_on_the_server(helm: Helm, kube_cluster: KubeCluster) -> None:
    _install_chart_crds(kube_cluster)
    with _namespaces(kube_cluster, "ops", "models") as (ops, models):
        out = _helm_install(
            helm, kube_cluster, "inference", ops, "--dry-run=server", "--set", f"watchNamespaces={{{models}}}"
        )
        assert "STATUS: pending-install" in out
        rendered = [
            doc for doc in yaml.safe_load_all(out.split("MANIFEST:", 1)[1].split("NOTES:", 1)[0]) if doc
        ]
        kinds = Counter(doc["kind"] for doc in rendered)
        assert kinds["Deployment"] == 1 and kinds["Role"] == 1 and kinds["KopfPeering"] == 1
        with kube_cluster.api_client() as client:
            deployments = kubernetes.client.AppsV1Api(client).list_namespaced_deployment(ops).items
        assert deployments == [], "a dry run must not create anything"


@dataclass(frozen=True)
class Release:
    """An installed release and the namespace(s) whose models it serves."""

    name: str
    namespace: str
    models_namespace: str
    cluster_wide: bool


@pytest.fixture(params=["namespaced", "cluster-wide"])
def release(request: pytest.FixtureRequest, helm: Helm, kube_cluster: KubeCluster) -> Iterator[Release]:
    """A real `helm install` (CRDs, ServiceAccount, RBAC, peering objects, the operator Deployment)."""
    cluster_wide = request.param == "cluster-wide"
    with _namespaces(kube_cluster, "ops", "models") as (ops, models):
        name = f"rel-{uuid.uuid4().hex[:6]}"
        args = [] if cluster_wide else ["--set", f"watchNamespaces={{{models}}}"]
        notes = _helm_install(helm, kube_cluster, name, ops, *args)
        assert f"kubectl -n {models if not cluster_wide else 'default'} apply -f -" in notes
        try:
            yield Release(name, ops, models, cluster_wide)
        finally:
            helm.run("uninstall", name, "--namespace", ops, "--kubeconfig", str(kube_cluster.kubeconfig))


def _service_account_kubeconfig(cluster: KubeCluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig holding a fresh token of the ServiceAccount (TokenRequest API), nothing more."""
    with cluster.api_client() as client:
        request = kubernetes.client.CoreV1Api(client).create_namespaced_service_account_token(
            account, namespace, {"spec": {"expirationSeconds": 3600}}
        )
    # The admin kubeconfig's cluster entry (server and how to trust it), with the ServiceAccount as user.
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    context = {"cluster": config["clusters"][0]["name"], "user": account, "namespace": namespace}
    config["users"] = [{"name": account, "user": {"token": request.status.token}}]
    config["contexts"] = [{"name": "sa", "context": context}]
    config["current-context"] = "sa"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _forbidden_counts(cluster: KubeCluster) -> Counter[str]:
    """The API server's count of 403 answers, per request kind (its own metrics)."""
    with cluster.api_client() as client:
        text = client.call_api(
            "/metrics",
            "GET",
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        ).data
    counts: Counter[str] = Counter()
    for line in text.decode().splitlines():
        if line.startswith("apiserver_request_total{") and 'code="403"' in line:
            labels, value = line.rsplit(" ", 1)
            counts[labels] += int(float(value))
    return counts


@contextlib.contextmanager
def _operator_as_deployed(
    cluster: KubeCluster, release: Release, kubeconfig: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The operator process with the installed Deployment's arguments and environment, authenticated as
    its ServiceAccount; the liveness endpoint moves to a free loopback port."""
    with cluster.api_client() as client:
        deployment = kubernetes.client.AppsV1Api(client).read_namespaced_deployment(
            f"{release.name}-inference-operator", release.namespace
        )
    (container,) = deployment.spec.template.spec.containers
    port = free_port()
    args = [
        re.sub(r"^--liveness=.*", f"--liveness=http://127.0.0.1:{port}/healthz", a) for a in container.args
    ]
    env = {var.name: var.value for var in container.env if var.value is not None}
    env.update(KUBECONFIG=str(kubeconfig), POD_ID="operator-under-test", PATH=os.environ["PATH"])
    if os.environ.get("PYTHONPATH"):  # the code under test, when it is not the installed checkout
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference_operator", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: process.poll() is not None or _healthy(port), timeout=120, what="operator liveness")
        assert process.poll() is None, f"the operator exited:\n{log.read_text()[-3000:]}"
        yield process
    finally:
        stop_process(process)


def _healthy(port: int) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response,
    ):
        return response.status == 200
    return False


def _reconciled(cluster: KubeCluster, namespace: str) -> dict[str, Any] | None:
    """The model's status once the operator applied all three children and wrote status for them."""
    with cluster.api_client() as client:
        model = _model(cluster, namespace)
        core, apps = kubernetes.client.CoreV1Api(client), kubernetes.client.AppsV1Api(client)
        children = []
        for read, name in (
            (apps.read_namespaced_deployment, MODEL_NAME),
            (core.read_namespaced_service, MODEL_NAME),
            (core.read_namespaced_config_map, f"{MODEL_NAME}-config"),
        ):
            try:
                children.append(read(name, namespace))
            except kubernetes.client.ApiException as exc:
                if exc.status == 404:
                    return None
                raise
    status = model.get("status") or {}
    if status.get("observedGeneration") != model["metadata"]["generation"] or not status.get("conditions"):
        return None
    owner_uids = {ref.uid for child in children for ref in child.metadata.owner_references or []}
    assert owner_uids == {model["metadata"]["uid"]}, "every child must be owned by the InferenceModel"
    return status


def test_operator_reconciles_with_exactly_the_charts_rbac(
    kube_cluster: KubeCluster, release: Release, tmp_path: Path
) -> None:
    """Create a model (children, status, ServiceMonitor), switch monitoring off (ServiceMonitor deleted),
    delete the model (finalizer released), then download a model into a cache and remove it from the
    cache: every verb the operator uses, under the chart's RBAC."""
    account = f"{release.name}-inference-operator"
    kubeconfig = _service_account_kubeconfig(
        kube_cluster, release.namespace, account, tmp_path / "kubeconfig"
    )
    log = tmp_path / "operator.log"
    namespace = release.models_namespace
    install_crd(kube_cluster, SERVICEMONITOR_CRD)
    forbidden_before = _forbidden_counts(kube_cluster)
    try:
        with (
            _operator_as_deployed(kube_cluster, release, kubeconfig, log),
            kube_cluster.api_client() as client,
        ):
            models = kubernetes.client.CustomObjectsApi(client)
            models.create_namespaced_custom_object(*MODEL_API, namespace, "inferencemodels", MODEL)
            try:
                status = wait_for(lambda: _reconciled(kube_cluster, namespace), timeout=120, what="reconcile")
            except pytest.fail.Exception:
                seen = _model(kube_cluster, namespace).get("status")
                pytest.fail(f"not reconciled; model status: {seen}\noperator log:\n{_log_tail(log)}")
            assert status["endpoint"].startswith(f"http://{MODEL_NAME}.{namespace}.svc.")
            assert _servicemonitor(kube_cluster, namespace) is not None

            peering = _peering_status(kube_cluster, release)
            assert "operator-under-test" in peering, f"the operator must report to its peering: {peering}"

            monitoring_off = {"spec": {"monitoring": {"enabled": False}}}
            models.patch_namespaced_custom_object(
                *MODEL_API, namespace, "inferencemodels", MODEL_NAME, monitoring_off
            )
            wait_for(lambda: _servicemonitor(kube_cluster, namespace) is None, timeout=120, what="pruning")

            models.delete_namespaced_custom_object(*MODEL_API, namespace, "inferencemodels", MODEL_NAME)
            wait_for(lambda: _model_gone(kube_cluster, namespace), timeout=120, what="model deleted")

            _download_and_cleanup(kube_cluster, namespace, client)
    finally:
        uninstall_crd(kube_cluster, SERVICEMONITOR_CRD["metadata"]["name"])

    output = log.read_text()
    assert "Traceback" not in output, _log_tail(log)
    # Word-bounded 403 only: timestamps and UIDs contain the digits too.
    denial = re.search(r"forbidden|not enough permissions|\b403\b", output, re.IGNORECASE)
    assert not denial, f"the operator hit an RBAC denial ({denial[0]!r}):\n{_log_tail(log)}"
    new_denials = _forbidden_counts(kube_cluster) - forbidden_before
    assert not new_denials, f"the API server answered 403 to: {sorted(new_denials)}"


def _download_and_cleanup(cluster: KubeCluster, namespace: str, client: Any) -> None:
    """A Hugging Face model with a cache: its download Job (created, watched, its pod's log read), its
    Deployment once the Job succeeded, and after the model's deletion the cleanup Job, then both Jobs
    deleted. This test bed runs no job controller or kubelet: where the test writes Job and pod status it
    stands in for them."""
    batch, core = kubernetes.client.BatchV1Api(client), kubernetes.client.CoreV1Api(client)
    apps, models = kubernetes.client.AppsV1Api(client), kubernetes.client.CustomObjectsApi(client)
    source = {"huggingFace": {"repo": "HuggingFaceTB/SmolLM2-135M-Instruct"}}
    hub = {
        **MODEL,
        "metadata": {"name": "hub"},
        "spec": {"model": {"source": source, "cache": {"claimName": "c"}}},
    }
    models.create_namespaced_custom_object(*MODEL_API, namespace, "inferencemodels", hub)
    selector = "app.kubernetes.io/component=model-download"
    (job,) = wait_for(
        lambda: batch.list_namespaced_job(namespace, label_selector=selector).items or None, what="Job"
    )
    name = job.metadata.name
    pod = {
        "metadata": {"name": f"{name}-a", "labels": {"job-name": name}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "download", "image": "x"}]},
    }
    core.create_namespaced_pod(namespace, pod)
    running = {
        "name": "download",
        "ready": True,
        "restartCount": 0,
        "image": "x",
        "imageID": "",
        "state": {"running": {}},
    }
    core.patch_namespaced_pod_status(f"{name}-a", namespace, {"status": {"containerStatuses": [running]}})

    def finish(job_name: str) -> None:
        now = "2026-01-01T00:00:00Z"
        condition = {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}
        status = {"startTime": now, "completionTime": now, "succeeded": 1, "conditions": [condition]}
        batch.patch_namespaced_job_status(job_name, namespace, {"status": status})

    def job_exists(job_name: str) -> bool:
        try:
            batch.read_namespaced_job(job_name, namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    finish(name)
    wait_for(
        lambda: apps.list_namespaced_deployment(namespace, field_selector="metadata.name=hub").items,
        what="hub",
    )
    models.delete_namespaced_custom_object(*MODEL_API, namespace, "inferencemodels", "hub")
    cleanup = "rm-" + name.removeprefix("dl-")
    wait_for(lambda: job_exists(cleanup), timeout=120, what="the cleanup Job")
    finish(cleanup)
    wait_for(lambda: not job_exists(name) and not job_exists(cleanup), timeout=120, what="both Jobs deleted")


def _servicemonitor(cluster: KubeCluster, namespace: str) -> dict[str, Any] | None:
    with cluster.api_client() as client:
        try:
            return kubernetes.client.CustomObjectsApi(client).get_namespaced_custom_object(
                "monitoring.coreos.com", "v1", namespace, "servicemonitors", MODEL_NAME
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise


def _peering_status(cluster: KubeCluster, release: Release) -> dict[str, Any]:
    with cluster.api_client() as client:
        custom = kubernetes.client.CustomObjectsApi(client)
        if release.cluster_wide:
            peering = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
        else:
            peering = custom.get_namespaced_custom_object(
                "kopf.dev", "v1", release.models_namespace, "kopfpeerings", PEERING
            )
    return peering.get("status") or {}


def _model(cluster: KubeCluster, namespace: str) -> dict[str, Any]:
    with cluster.api_client() as client:
        return kubernetes.client.CustomObjectsApi(client).get_namespaced_custom_object(
            *MODEL_API, namespace, "inferencemodels", MODEL_NAME
        )


def _model_gone(cluster: KubeCluster, namespace: str) -> bool:
    try:
        _model(cluster, namespace)
    except kubernetes.client.ApiException as exc:
        return exc.status == 404
    return False


def _log_tail(log: Path) -> str:
    """The operator's last log lines, for failure messages."""
    return "\n".join(log.read_text().splitlines()[-40:])
