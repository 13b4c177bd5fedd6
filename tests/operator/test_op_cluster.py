"""The operator against a real kube-apiserver (+ garbage collector), running in-process via KopfRunner.

There is no kubelet, scheduler or Deployment controller in the test cluster: pods and their states are
written by the tests, exactly as the kubelet would write them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
from op_helpers import unschedulable_pod

from fixtures.cluster import SERVICEMONITOR_CRD, KubeCluster, install_crd, namespaced_crd, uninstall_crd
from fixtures.helpers import free_port, wait_for
from inference_operator.api.v1alpha1 import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.cluster

SPEC = {"model": {"path": "smollm2"}, "resources": {"requests": {"cpu": 1}}}
SELECTOR = {"app.kubernetes.io/name": "inference-runtime", "app.kubernetes.io/instance": "smollm2"}


class Api:
    """The typed clients a test needs, on one connection."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.ns = namespace
        self.core = kubernetes.client.CoreV1Api(client)
        self.apps = kubernetes.client.AppsV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)

    def create_model(self, spec: dict[str, Any], name: str = "smollm2") -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceModel",
            "metadata": {"name": name},
            "spec": spec,
        }
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def model(self, name: str = "smollm2") -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def patch_spec(self, patch: dict[str, Any], name: str = "smollm2") -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, {"spec": patch})

    def condition(self, kind: str, name: str = "smollm2") -> dict[str, Any]:
        conditions = self.model(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), {})

    def table_row(self, name: str = "smollm2") -> dict[str, Any]:
        """The model's row as ``kubectl get`` shows it: the API server renders the printer columns."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}/{name}"
        client = self.custom.api_client
        reply = client.call_api(
            path,
            "GET",
            header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
        response = json.loads(reply.data)
        columns = [c["name"] for c in response["columnDefinitions"]]
        (row,) = response["rows"]
        return dict(zip(columns, row["cells"], strict=True))

    def service_uid(self, name: str = "smollm2") -> str | None:
        with contextlib.suppress(kubernetes.client.ApiException):
            return self.core.read_namespaced_service(name, self.ns).metadata.uid
        return None

    def deployment(self, name: str = "smollm2") -> Any:
        with contextlib.suppress(kubernetes.client.ApiException):
            return self.apps.read_namespaced_deployment(name, self.ns)
        return None

    def wait_condition(self, kind: str, status: str, reason: str | None = None) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            cond = self.condition(kind)
            ok = cond.get("status") == status and (reason is None or cond.get("reason") == reason)
            return cond if ok else None

        return wait_for(matches, what=f"{kind}={status} ({reason})")

    def wait_observed(self, generation: int) -> dict[str, Any]:
        """The status once it reports ``generation``."""

        def observed() -> dict[str, Any] | None:
            status = self.model().get("status", {})
            return status if status.get("observedGeneration") == generation else None

        return wait_for(observed, what=f"status of generation {generation}")

    def resource_versions(self) -> dict[str, str]:
        """resourceVersion of every object in the namespace the operator could write."""
        versions = {"model": self.model()["metadata"]["resourceVersion"]}
        for kind, items in (
            ("cm", self.core.list_namespaced_config_map(self.ns).items),
            ("svc", self.core.list_namespaced_service(self.ns).items),
            ("deploy", self.apps.list_namespaced_deployment(self.ns).items),
            ("event", self.core.list_namespaced_event(self.ns).items),
            ("job", kubernetes.client.BatchV1Api(self.custom.api_client).list_namespaced_job(self.ns).items),
        ):
            versions |= {f"{kind}/{o.metadata.name}": o.metadata.resource_version for o in items}
        return versions


@pytest.fixture
def api(kube_cluster: KubeCluster, namespace: str, inference_crd: dict[str, Any]) -> Iterator[Api]:
    with kube_cluster.api_client() as client:
        yield Api(client, namespace)


@pytest.fixture
def operator(run_operator: Callable[..., Any], api: Api) -> Iterator[Any]:
    with run_operator(api.ns) as runner:
        yield runner


def args_of(deployment: Any) -> list[str]:
    return deployment.spec.template.spec.containers[0].args


def test_crd_applies_defaults_and_rejects_bad_resources(api: Api) -> None:
    created = api.create_model({"model": {"path": "m"}}, name="defaults")
    assert created["spec"]["protocol"] == "OpenAIServingChat"
    assert created["spec"]["tensorParallelSize"] == 1 and created["spec"]["replicas"] == 1
    assert created["spec"]["service"] == {"type": "ClusterIP", "port": 8000}
    for bad in (
        {"model": {"path": "m"}, "tensorParallelSize": 0},
        {"model": {"path": "m"}, "protocol": ""},
        {},
    ):
        with pytest.raises(kubernetes.client.ApiException) as info:
            api.create_model(bad, name="bad")
        assert info.value.status == 422


def test_create_builds_owned_objects_and_reports_status(api: Api, run_operator: Callable[..., Any]) -> None:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    with run_operator(api.ns, liveness=liveness):
        uid = api.create_model(SPEC)["metadata"]["uid"]
        status = api.wait_observed(1)
        for obj in (
            wait_for(api.deployment, what="Deployment"),
            api.core.read_namespaced_service("smollm2", api.ns),
            api.core.read_namespaced_config_map("smollm2-config", api.ns),
        ):
            (owner,) = obj.metadata.owner_references
            assert (owner.kind, owner.uid, owner.controller) == ("InferenceModel", uid, True)
        assert status["endpoint"] == f"http://smollm2.{api.ns}.svc.cluster.local:8000"
        assert status["servedModelName"] == "smollm2"
        assert (status["replicas"], status["readyReplicas"], status["readyText"]) == (0, 0, "0/1")
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Ready"]["status"] == "False"  # no pod is ready
        assert conditions["Progressing"]["status"] == "True"
        assert conditions["Degraded"]["status"] == "False"
        assert conditions["MonitoringAvailable"]["reason"] == "ServiceMonitorCRDMissing"
        with urllib.request.urlopen(liveness, timeout=10) as response:
            assert response.status == 200


def test_update_rolls_the_deployment(api: Api, operator: Any) -> None:
    api.create_model(SPEC)
    first = wait_for(api.deployment, what="Deployment")
    old_hash = first.spec.template.metadata.annotations["inference.vif.dev/config-hash"]
    api.patch_spec({"tensorParallelSize": 2, "image": "mirror.invalid/runtime:2"})

    def rolled() -> Any:
        dep = api.deployment()
        return dep if args_of(dep)[args_of(dep).index("--tensor-parallel-size") + 1] == "2" else None

    dep = wait_for(rolled, what="Deployment with TP 2")
    assert dep.spec.template.spec.containers[0].image == "mirror.invalid/runtime:2"
    assert dep.spec.template.metadata.annotations["inference.vif.dev/config-hash"] != old_hash
    assert any(v.name == "dshm" and v.empty_dir.medium == "Memory" for v in dep.spec.template.spec.volumes)
    config = api.core.read_namespaced_config_map("smollm2-config", api.ns).data["model_config.json"]
    assert '"tensor_parallel_size": 2' in config
    api.wait_observed(2)


def test_hand_edits_and_deletions_are_restored(api: Api, operator: Any) -> None:
    api.create_model(SPEC)
    wait_for(api.deployment, what="Deployment")
    service_uid = wait_for(lambda: api.service_uid(), what="Service")  # one pass writes both, in turn
    api.apps.patch_namespaced_deployment(
        "smollm2",
        api.ns,
        {
            "spec": {
                "replicas": 5,
                "template": {"spec": {"containers": [{"name": "runtime", "image": "evil:1"}]}},
            }
        },
    )
    api.core.delete_namespaced_service("smollm2", api.ns, _preload_content=False)  # 1.20 answers a Status
    api.core.patch_namespaced_config_map("smollm2-config", api.ns, {"data": {"model_config.json": "{}"}})

    def restored() -> bool:
        dep = api.deployment()
        with contextlib.suppress(kubernetes.client.ApiException):
            svc = api.core.read_namespaced_service("smollm2", api.ns)
            config = api.core.read_namespaced_config_map("smollm2-config", api.ns).data["model_config.json"]
            return (
                dep.spec.replicas == 1
                and dep.spec.template.spec.containers[0].image == "vllm-inference-runtime:0.1.0"
                and svc.metadata.uid != service_uid
                and '"smollm2"' in config
            )
        return False

    wait_for(restored, what="hand edits undone and the Service recreated")


def test_delete_garbage_collects_children(api: Api, operator: Any) -> None:
    api.create_model(SPEC)
    wait_for(api.deployment, what="Deployment")
    api.custom.delete_namespaced_custom_object(GROUP, VERSION, api.ns, PLURAL, "smollm2")

    def gone() -> bool:
        left = [
            *api.apps.list_namespaced_deployment(api.ns).items,
            *api.core.list_namespaced_service(api.ns).items,
            *[
                c
                for c in api.core.list_namespaced_config_map(api.ns).items
                if c.metadata.name == "smollm2-config"
            ],
        ]
        return not left

    wait_for(gone, what="children garbage-collected")


class ResyncCounter(logging.Handler):
    """Counts the operator's completed resync passes from its log (it runs in this process)."""

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Timer 'resync' succeeded" in record.getMessage():
            self.passes += 1


def test_steady_state_makes_no_writes(api: Api, run_operator: Callable[..., Any]) -> None:
    _assert_no_writes_in_steady_state(api, run_operator, SPEC)


def _assert_no_writes_in_steady_state(
    api: Api,
    run_operator: Callable[..., Any],
    spec: dict[str, Any],
    settle: Callable[[], None] = lambda: None,
) -> None:
    """Create a model from ``spec``, ``settle`` it (e.g. finish its download), then count writes over three
    resync passes: there must be none."""
    counter = ResyncCounter()
    logging.getLogger("kopf.objects").addHandler(counter)
    try:
        with run_operator(api.ns):
            api.create_model(spec)
            api.wait_observed(1)
            settle()
            wait_for(api.deployment, what="Deployment")
            # kopf records a handled creation in an annotation: after that, nothing is left to write.
            handled = "inference.vif.dev/last-handled-configuration"
            wait_for(
                lambda: handled in api.model()["metadata"].get("annotations", {}), what="creation handled"
            )
            # One more full pass after the Deployment exists: what that creation triggered is written.
            settled = counter.passes
            wait_for(lambda: counter.passes > settled, what="a resync after the Deployment exists")
            before, passes = api.resource_versions(), counter.passes
            changes: list[dict[str, str]] = []

            def three_more_resyncs() -> bool:
                now = api.resource_versions()
                if now != before:
                    changes.append(now)
                return counter.passes >= passes + 3

            wait_for(three_more_resyncs, what="three more resync passes")
    finally:
        logging.getLogger("kopf.objects").removeHandler(counter)
    assert not changes, f"resyncs of an unchanged resource wrote: {changes[0]} vs {before}"


def _pod(name: str) -> dict[str, Any]:
    labels = {**SELECTOR, "inference.vif.dev/model": "smollm2"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "runtime", "image": "x"}]},
    }


def _container_status(**state: Any) -> dict[str, Any]:
    return {
        "status": {
            "containerStatuses": [
                {"name": "runtime", "ready": False, "restartCount": 3, "image": "x", "imageID": "", **state}
            ]
        }
    }


POD_STATES = [
    (
        _container_status(
            state={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
        ),
        "ImagePullFailed",
    ),
    (
        _container_status(
            state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            lastState={"terminated": {"reason": "Error", "exitCode": 1}},
        ),
        "CrashLoopBackOff",
    ),
    (
        _container_status(
            state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            lastState={"terminated": {"reason": "OOMKilled", "exitCode": 137}},
        ),
        "OOMKilled",
    ),
]


def test_pod_states_surface_as_degraded_reasons(api: Api, operator: Any) -> None:
    api.create_model(SPEC)
    wait_for(api.deployment, what="Deployment")
    api.core.create_namespaced_pod(api.ns, _pod("smollm2-a"))
    for pod_status, reason in POD_STATES:
        api.core.patch_namespaced_pod_status("smollm2-a", api.ns, copy.deepcopy(pod_status))
        api.wait_condition("Degraded", "True", reason)
        assert api.condition("Ready")["status"] == "False"

    api.core.delete_namespaced_pod("smollm2-a", api.ns, grace_period_seconds=0)
    api.core.create_namespaced_pod(api.ns, _pod("smollm2-b"))
    api.core.patch_namespaced_pod_status("smollm2-b", api.ns, unschedulable_pod("smollm2-b", nodes=4))
    degraded = api.wait_condition("Degraded", "True", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in degraded["message"]

    running = {
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "runtime",
                    "ready": True,
                    "restartCount": 0,
                    "image": "x",
                    "imageID": "",
                    "state": {"running": {}},
                }
            ],
        }
    }
    api.core.patch_namespaced_pod_status("smollm2-b", api.ns, running)
    api.wait_condition("Ready", "True")
    assert api.condition("Degraded")["status"] == "False"
    assert api.model()["status"]["readyReplicas"] == 1
    assert api.table_row()["Ready"] == "1/1"


def test_unhonourable_spec_degrades_and_keeps_what_runs(api: Api, operator: Any) -> None:
    api.create_model(SPEC)
    before = wait_for(api.deployment, what="Deployment")
    api.patch_spec({"gpus": 1, "tensorParallelSize": 2})  # valid per schema; the operator refuses it
    degraded = api.wait_condition("Degraded", "True", "InvalidSpec")
    assert "gpus (1) must be at least tensorParallelSize (2)" in degraded["message"]
    after = api.deployment()
    assert after.metadata.uid == before.metadata.uid
    assert args_of(after) == args_of(before)
    api.patch_spec({"gpus": 2})
    api.wait_condition("Degraded", "False")
    # Valid for the CRD, refused by the API server when the Deployment is applied.
    api.patch_spec({"tolerations": [{"key": "a", "operator": "Sometimes"}]})
    degraded = api.wait_condition("Degraded", "True", "ApplyFailed")
    assert "Unsupported value" in degraded["message"] and "Sometimes" in degraded["message"]
    assert api.deployment().metadata.uid == before.metadata.uid


HOSTILE = [
    ({"engineArgs": {"worker_extension_cls": "this.Nothing"}}, "spec.engineArgs: 'worker_extension_cls'"),
    ({"engineArgs": {"trust_remote_code": True}}, "spec.engineArgs: 'trust_remote_code'"),
    ({"model": {"path": "m", "source": {"hostPath": {"path": "/"}}}}, "spec.model.source.hostPath.path"),
    ({"model": {"path": "m", "source": {"hostPath": {"path": "/srv/modelsx"}}}}, "not under a folder"),
    ({"image": "other.example.invalid/runtime:1"}, "spec.image: not from an allowed"),
    ({"env": [{"name": "LD_PRELOAD", "value": "/models/m/x.so"}]}, "spec.env: LD_PRELOAD may not be set"),
    ({"env": [{"name": "PYTHONPATH", "value": "/models/m"}]}, "spec.env: PYTHONPATH may not be set"),
    ({"env": [{"name": "VLLM_PLUGINS", "value": "none"}]}, "spec.env: VLLM_PLUGINS may not be set"),
]


def test_hostile_specs_are_refused_and_change_nothing(api: Api, run_operator: Callable[..., Any]) -> None:
    allowed = (
        "--allow-host-path",
        "/srv/models",
        "--allow-image-prefix",
        "registry.example.invalid/inference",
    )
    good = {
        **SPEC,
        "model": {"path": "smollm2", "source": {"hostPath": {"path": "/srv/models"}}},
        "image": "registry.example.invalid/inference/runtime:1",
    }
    with run_operator(api.ns, *allowed):
        api.create_model({**SPEC, "engineArgs": {"worker_cls": "vif_canary.Worker"}}, name="hostile")
        refused = wait_for(
            lambda: next(
                (
                    c
                    for c in api.model("hostile").get("status", {}).get("conditions", [])
                    if c["type"] == "Degraded"
                ),
                None,
            ),
            what="Degraded of a resource created hostile",
        )
        assert (refused["status"], refused["reason"]) == ("True", "InvalidSpec")
        assert "spec.engineArgs: 'worker_cls'" in refused["message"]
        assert api.deployment("hostile") is None
        assert (
            api.core.list_namespaced_config_map(
                api.ns, label_selector="app.kubernetes.io/instance=hostile"
            ).items
            == []
        )

        api.create_model(good)
        before = wait_for(api.deployment, what="Deployment")
        api.wait_condition("Degraded", "False")
        generation = api.model()["metadata"]["generation"]
        for patch, fragment in HOSTILE:
            # Undo the previous hostile field (a merge patch), then set this one.
            api.patch_spec({key: good.get(key) for key in ("engineArgs", "env", "model", "image")} | patch)
            generation += 1
            status = api.wait_observed(generation)
            degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
            assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec"), patch
            assert fragment in degraded["message"], degraded["message"]
            after = api.deployment()
            assert after.metadata.uid == before.metadata.uid
            assert after.metadata.resource_version == before.metadata.resource_version, patch


def test_servicemonitor_follows_its_crd_and_the_spec(
    api: Api, kube_cluster: KubeCluster, operator: Any
) -> None:
    install_crd(kube_cluster, SERVICEMONITOR_CRD)
    try:
        uid = api.create_model({**SPEC, "monitoring": {"interval": "15s"}})["metadata"]["uid"]
        api.wait_condition("MonitoringAvailable", "True", "ServiceMonitorReady")
        monitor = api.custom.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", api.ns, "servicemonitors", "smollm2"
        )
        assert monitor["metadata"]["ownerReferences"][0]["uid"] == uid
        assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
        api.patch_spec({"monitoring": {"enabled": False}})
        api.wait_condition("MonitoringAvailable", "False", "Disabled")

        def deleted() -> bool:
            items = api.custom.list_namespaced_custom_object(
                "monitoring.coreos.com", "v1", api.ns, "servicemonitors"
            )
            return not items["items"]

        wait_for(deleted, what="ServiceMonitor removed")
    finally:
        uninstall_crd(kube_cluster, SERVICEMONITOR_CRD["metadata"]["name"])


def test_entry_point_runs_the_operator_from_its_environment(
    api: Api, kube_cluster: KubeCluster, tmp_path
) -> None:
    """``python -m inference_operator`` as the chart runs it: settings from the environment, JSON logs."""
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    env = {
        **kube_cluster.env(),
        "WATCH_NAMESPACES": api.ns,
        "RUNTIME_IMAGE": "mirror.invalid/runtime:9",
        "LOG_FORMAT": "json",
    }
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inference_operator", "--standalone", f"--liveness={liveness}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            api.create_model(SPEC)
            dep = wait_for(api.deployment, what="Deployment")
            assert dep.spec.template.spec.containers[0].image == "mirror.invalid/runtime:9"
            with urllib.request.urlopen(liveness, timeout=10) as response:
                assert response.status == 200
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines and all(json.loads(line)["message"] for line in lines)


KOPF_PEERING_CRD = namespaced_crd(
    "kopf.dev",
    "KopfPeering",
    {
        "type": "object",
        "properties": {"status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    },
)


def test_replicas_elect_a_leader_through_kopf_peering(
    api: Api, kube_cluster: KubeCluster, run_operator: Callable[..., Any]
) -> None:
    install_crd(kube_cluster, KOPF_PEERING_CRD)
    body = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "inference-operator"}}
    api.custom.create_namespaced_custom_object("kopf.dev", "v1", api.ns, "kopfpeerings", body)

    def keepalives() -> dict[str, Any]:
        peering = api.custom.get_namespaced_custom_object(
            "kopf.dev", "v1", api.ns, "kopfpeerings", "inference-operator"
        )
        return peering.get("status") or {}

    with run_operator(api.ns, standalone=False):
        (peer,) = wait_for(keepalives, what="a keep-alive in the inference-operator peering").values()
        assert peer["priority"] > 0  # random: replicas of equal priority would all work at once
        api.create_model(SPEC)
        wait_for(api.deployment, what="Deployment from the peered operator")


# Models from Hugging Face and S3. This test bed runs no job controller or kubelet: where a test marks a
# download Job succeeded or failed (its status subresource) or writes a download pod's termination
# message, it stands in for the controller-manager and the kubelet, which it does not run.
HF_SECRET_VALUE = "hf_not_a_real_token_8c1f"
S3_SECRET_VALUE = "not-a-real-aws-secret-5e2a"
HF_CACHED = {
    "model": {
        "source": {
            "huggingFace": {"repo": "HuggingFaceTB/SmolLM2-135M-Instruct", "tokenSecret": {"name": "hf"}}
        },
        "cache": {"claimName": "model-cache"},
    }
}
DOWNLOADS = {"app.kubernetes.io/component": "model-download"}


def _jobs(api: Api) -> list[Any]:
    selector = ",".join(f"{k}={v}" for k, v in DOWNLOADS.items())
    return (
        kubernetes.client.BatchV1Api(api.custom.api_client)
        .list_namespaced_job(api.ns, label_selector=selector)
        .items
    )


def _job(api: Api, name: str) -> Any:
    with contextlib.suppress(kubernetes.client.ApiException):
        return kubernetes.client.BatchV1Api(api.custom.api_client).read_namespaced_job(name, api.ns)
    return None


def _finish_job(api: Api, name: str, *, succeeded: bool) -> None:
    """Stand-in for the job controller: the Job's terminal status, as it would write it."""
    now = "2026-01-01T00:00:00Z"
    condition = {"type": "Complete" if succeeded else "Failed", "status": "True", "lastProbeTime": now}
    condition |= {"lastTransitionTime": now}
    if not succeeded:
        condition |= {
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }
    status: dict[str, Any] = {"startTime": now, "conditions": [condition]}
    status |= {"succeeded": 1, "completionTime": now} if succeeded else {"failed": 3}
    batch = kubernetes.client.BatchV1Api(api.custom.api_client)
    batch.patch_namespaced_job_status(name, api.ns, {"status": status})


def _secret(api: Api, name: str, data: dict[str, str]) -> None:
    body = {"metadata": {"name": name}, "stringData": data}
    api.core.create_namespaced_secret(api.ns, body)


def _everything(api: Api) -> str:
    """Every object the operator may write in the namespace, and the models with their status, as text."""
    client = api.custom.api_client
    objects = [
        *api.apps.list_namespaced_deployment(api.ns).items,
        *api.core.list_namespaced_config_map(api.ns).items,
        *api.core.list_namespaced_event(api.ns).items,
        *api.core.list_namespaced_pod(api.ns).items,
        *_jobs(api),
    ]
    models = api.custom.list_namespaced_custom_object(GROUP, VERSION, api.ns, PLURAL)
    return json.dumps([client.sanitize_for_serialization(o) for o in objects]) + json.dumps(models)


def _events(api: Api, model: str) -> dict[str, str]:
    events = api.core.list_namespaced_event(api.ns, field_selector=f"involvedObject.name={model}").items
    return {e.reason: e.message for e in events}


def test_hf_source_with_a_cache_downloads_once_before_any_pod(api: Api, operator: Any) -> None:
    _secret(api, "hf", {"token": HF_SECRET_VALUE})
    api.create_model(HF_CACHED)
    api.create_model({**HF_CACHED, "replicas": 2}, name="second")  # the same source and revision
    (job,) = wait_for(lambda: _jobs(api) or None, what="the download Job")
    for name in ("smollm2", "second"):
        wait_for(
            lambda name=name: api.condition("ModelAvailable", name).get("reason") == "Downloading",
            what=f"{name} downloading",
        )
        ready = api.condition("Ready", name)
        assert (ready["status"], ready["reason"]) == ("False", "Downloading")
        assert job.metadata.name in api.condition("ModelAvailable", name)["message"]
    assert len(_jobs(api)) == 1, "a second model with the same source must reuse the Job"
    # No pods may be requested before the download is there: no Deployment, no ConfigMap for them yet.
    assert api.deployment() is None and api.deployment("second") is None
    assert not [
        c for c in api.core.list_namespaced_config_map(api.ns).items if c.metadata.name.endswith("-config")
    ]
    assert api.core.read_namespaced_service("smollm2", api.ns)  # the endpoint exists from the start

    container = job.spec.template.spec.containers[0]
    assert container.args[:3] == [
        "--download-only",
        "--model-uri",
        "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main",
    ]
    offline, token = container.env  # the image's HF_HUB_OFFLINE=1 is lifted for the download only
    assert (offline.name, offline.value) == ("HF_HUB_OFFLINE", "0")
    assert (token.name, token.value_from.secret_key_ref.name, token.value_from.secret_key_ref.key) == (
        "HF_TOKEN",
        "hf",
        "token",
    )
    (volume,) = job.spec.template.spec.volumes
    assert volume.persistent_volume_claim.claim_name == "model-cache"
    assert not volume.persistent_volume_claim.read_only
    assert job.spec.template.spec.security_context.run_as_non_root is True
    assert not job.metadata.owner_references  # shared: no one model owns it
    # On the model whose pass created the Job (either: both were created at once); the other's
    # ModelAvailable names the Job (checked above).
    assert "DownloadStarted" in {**_events(api, "smollm2"), **_events(api, "second")}

    _finish_job(api, job.metadata.name, succeeded=True)
    for name in ("smollm2", "second"):
        dep = wait_for(lambda name=name: api.deployment(name), what=f"the Deployment of {name}")
        pod = dep.spec.template.spec
        (models,) = (v for v in pod.volumes if v.name == "models")
        assert (models.persistent_volume_claim.claim_name, models.persistent_volume_claim.read_only) == (
            "model-cache",
            True,
        )
        assert not pod.init_containers
        config = api.core.read_namespaced_config_map(f"{name}-config", api.ns).data["model_config.json"]
        assert json.loads(config)[name]["model_path"] == "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"
        wait_for(
            lambda name=name: api.condition("ModelAvailable", name).get("reason") == "Downloaded",
            what=f"{name} downloaded",
        )
    wait_for(lambda: "Downloaded" in _events(api, "smollm2"), what="the Downloaded event")
    assert len(_jobs(api)) == 1
    assert HF_SECRET_VALUE not in _everything(api)


def test_a_new_revision_downloads_while_the_old_pods_serve(api: Api, operator: Any) -> None:
    api.create_model(HF_CACHED)
    (first,) = wait_for(lambda: _jobs(api) or None, what="the download Job")
    _finish_job(api, first.metadata.name, succeeded=True)
    old = wait_for(api.deployment, what="the Deployment")
    old_hash = old.spec.template.metadata.annotations["inference.vif.dev/config-hash"]

    api.patch_spec({"model": {"source": {"huggingFace": {"revision": "v2"}}}})
    jobs = wait_for(lambda: _jobs(api) if len(_jobs(api)) == 2 else None, what="the new revision's Job")
    (second,) = (j for j in jobs if j.metadata.name != first.metadata.name)
    assert second.spec.template.spec.containers[0].args[2].endswith("@v2")
    api.wait_observed(2)
    assert api.condition("ModelAvailable")["reason"] == "Downloading"
    assert api.condition("Progressing")["reason"] == "Downloading"
    # The old revision's pods are left as they are until the new one is downloaded.
    still = api.deployment()
    assert still.spec.template.metadata.annotations["inference.vif.dev/config-hash"] == old_hash
    config = api.core.read_namespaced_config_map("smollm2-config", api.ns).data["model_config.json"]
    assert "@main" in config

    _finish_job(api, second.metadata.name, succeeded=True)

    def rolled() -> bool:
        dep = api.deployment()
        return dep.spec.template.metadata.annotations["inference.vif.dev/config-hash"] != old_hash

    wait_for(rolled, what="the pods rolled to v2")
    config = api.core.read_namespaced_config_map("smollm2-config", api.ns).data["model_config.json"]
    assert "@v2" in config
    api.wait_condition("ModelAvailable", "True", "Downloaded")

    # No model uses main any more and no Deployment serves it: a cleanup Job removes exactly its folder.
    key = first.metadata.annotations["inference.vif.dev/cache-key"]
    cleanup = wait_for(lambda: _job(api, "rm-" + first.metadata.name.removeprefix("dl-")), what="cleanup Job")
    (container,) = cleanup.spec.template.spec.containers
    assert container.command == ["rm", "-rf", "--", f"/models/{key}/main"]
    assert cleanup.spec.template.spec.volumes[0].persistent_volume_claim.claim_name == "model-cache"
    assert _job(api, second.metadata.name) is not None  # the revision in use stays
    _finish_job(api, cleanup.metadata.name, succeeded=True)
    wait_for(
        lambda: _job(api, first.metadata.name) is None and _job(api, cleanup.metadata.name) is None,
        what="the old download Job and the cleanup Job deleted",
    )
    assert _job(api, second.metadata.name) is not None

    # The last user deleted: once garbage collection removed its Deployment, its revision goes too.
    api.custom.delete_namespaced_custom_object(GROUP, VERSION, api.ns, PLURAL, "smollm2")
    last = wait_for(lambda: _job(api, "rm-" + second.metadata.name.removeprefix("dl-")), what="cleanup of v2")
    assert last.spec.template.spec.containers[0].command[-1] == f"/models/{key}/v2"


def test_a_failed_s3_download_says_why(api: Api, operator: Any) -> None:
    _secret(api, "s3", {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": S3_SECRET_VALUE})
    source = {
        "uri": "s3://models/llama",
        "endpoint": "http://127.0.0.1:9000",
        "region": "eu-west-1",
        "credentialsSecret": {"name": "s3"},
    }
    api.create_model({"model": {"source": {"s3": source}, "cache": {"claimName": "model-cache"}}})
    (job,) = wait_for(lambda: _jobs(api) or None, what="the download Job")
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert env["AWS_ENDPOINT_URL"].value == "http://127.0.0.1:9000" and env["AWS_REGION"].value == "eu-west-1"
    assert env["AWS_SECRET_ACCESS_KEY"].value_from.secret_key_ref.to_dict() == {
        "name": "s3",
        "key": "AWS_SECRET_ACCESS_KEY",
        "optional": None,
    }
    # Stand-in for the job controller and the kubelet: the Job's pod, its download exited 1 with the
    # runtime's one-line message in the termination log.
    said = "unauthorised: the store refused the credentials for s3://models/llama/"
    pod = {
        "metadata": {
            "name": f"{job.metadata.name}-x1",
            "labels": {"job-name": job.metadata.name, **DOWNLOADS},
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": "download", "image": "x"}]},
    }
    api.core.create_namespaced_pod(api.ns, pod)
    terminated = {"exitCode": 1, "reason": "Error", "message": said}
    status = {
        "containerStatuses": [
            {"name": "download", "ready": False, "restartCount": 0, "image": "x", "imageID": ""}
        ]
    }
    status["containerStatuses"][0]["state"] = {"terminated": terminated}
    api.core.patch_namespaced_pod_status(pod["metadata"]["name"], api.ns, {"status": status})
    _finish_job(api, job.metadata.name, succeeded=False)

    available = api.wait_condition("ModelAvailable", "False", "DownloadFailed")
    assert said in available["message"]
    assert api.condition("Ready")["reason"] == "DownloadFailed"
    assert api.condition("Degraded")["reason"] == "DownloadFailed"
    assert api.deployment() is None
    wait_for(lambda: "DownloadFailed" in _events(api, "smollm2"), what="the DownloadFailed event")
    assert S3_SECRET_VALUE not in _everything(api)


def test_without_a_cache_each_pod_downloads_in_an_init_container(api: Api, operator: Any) -> None:
    api.create_model({"model": {"source": HF_CACHED["model"]["source"]}})
    api.create_model(SPEC, name="local")
    dep = wait_for(api.deployment, what="the Deployment")  # nothing to wait for: pods download themselves
    pod = dep.spec.template.spec
    (init,) = pod.init_containers
    assert init.name == "download" and init.args[:2] == ["--download-only", "--config"]
    (models,) = (v for v in pod.volumes if v.name == "models")
    assert models.empty_dir is not None
    assert {m.mount_path: m.read_only for m in pod.containers[0].volume_mounts}["/models"] is True
    config = api.core.read_namespaced_config_map("smollm2-config", api.ns).data["model_config.json"]
    assert json.loads(config)["smollm2"]["model_path"] == "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"
    assert _jobs(api) == []
    available = api.wait_condition("ModelAvailable", "False", "Downloading")
    assert "own volume" in available["message"]
    wait_for(lambda: api.condition("ModelAvailable", "local").get("reason") == "LocalSource", what="local")


def test_steady_state_with_a_finished_download_makes_no_writes(
    api: Api, run_operator: Callable[..., Any]
) -> None:
    def finish() -> None:
        (job,) = wait_for(lambda: _jobs(api) or None, what="the download Job")
        _finish_job(api, job.metadata.name, succeeded=True)

    _assert_no_writes_in_steady_state(api, run_operator, HF_CACHED, finish)
