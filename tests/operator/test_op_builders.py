"""Manifest builders: each object from a range of specs; built-in objects valid for Kubernetes 1.32."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
from op_helpers import make_model

from fixtures.prereq import require_module
from inference_operator.manifests import configmap, deployment, desired, service, servicemonitor
from inference_operator.names import CONFIG_HASH_ANNOTATION
from inference_operator.settings import OperatorSettings

SETTINGS = OperatorSettings(runtime_image="registry.invalid/runtime:1")
SPECS: dict[str, dict[str, Any]] = {
    "minimal": {"model": {"path": "smollm2"}},
    "cpu-full": {
        "model": {"path": "models/smollm2", "source": {"hostPath": {"path": "/srv/models"}}},
        "servedModelName": "smol",
        "protocol": "ServingGenerate",
        "replicas": 3,
        "image": "mirror.invalid/runtime:2",
        "imagePullPolicy": "IfNotPresent",
        "resources": {"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"memory": "6Gi"}},
        "maxModelLen": 2048,
        "chatTemplate": "{{ messages }}",
        "engineArgs": {"enforce_eager": True},
        "env": [
            {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "1"},
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        ],
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "service": {"type": "NodePort", "port": 9000},
        "monitoring": {"enabled": False},
    },
    "gpu-tp2": {
        "model": {
            "path": "llama",
            "source": {"persistentVolumeClaim": {"claimName": "models", "subPath": "hf"}},
        },
        "tensorParallelSize": 2,
        "gpus": 2,
        "apiKeySecret": {"name": "keys", "key": "api-keys"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["h100"]}]}
                    ]
                }
            }
        },
        "monitoring": {"interval": "15s", "labels": {"release": "prometheus"}},
    },
}


def container(dep: dict[str, Any]) -> dict[str, Any]:
    (only,) = dep["spec"]["template"]["spec"]["containers"]
    return only


def env_of(dep: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(dep)["env"]}


def mounts_of(dep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container(dep)["volumeMounts"]}


@pytest.mark.parametrize("name", SPECS)
def test_every_builtin_object_is_valid_for_kubernetes_1_32(name: str) -> None:
    for obj in desired(make_model(SPECS[name]), SETTINGS, monitoring_available=True):
        if obj["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(obj, "1.32.0", strict=True)


@pytest.mark.parametrize("name", SPECS)
def test_runtime_command_follows_the_process_contract(name: str) -> None:
    model = make_model(SPECS[name])
    c = container(deployment(model, SETTINGS, configmap(model)))
    assert c["command"] == ["inference-runtime"]
    args = c["args"]
    assert args[args.index("--model-name") + 1] == model.served_name
    assert args[args.index("--config") + 1] == "/etc/inference/model_config.json"
    assert args[args.index("--port") + 1] == "8000"
    assert args[args.index("--tensor-parallel-size") + 1] == str(model.spec.tensor_parallel_size)
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert env_of(deployment(model, SETTINGS, configmap(model)))["MODEL_ROOT"] == "/models"
    assert mounts_of(deployment(model, SETTINGS, configmap(model)))["/etc/inference/model_config.json"][
        "readOnly"
    ]


def test_probes_match_the_contract() -> None:
    model = make_model({"model": {"path": "m"}, "startupTimeoutSeconds": 600})
    c = container(deployment(model, SETTINGS, configmap(model)))
    assert c["startupProbe"]["httpGet"] == {"path": "/ready", "port": "http", "scheme": "HTTP"}
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 600
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"


def test_pod_is_locked_down() -> None:
    model = make_model(SPECS["gpu-tp2"])
    dep = deployment(model, SETTINGS, configmap(model))
    pod = dep["spec"]["template"]["spec"]
    security = container(dep)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False


def test_default_image_comes_from_the_settings_and_the_spec_overrides_it() -> None:
    minimal, full = make_model(SPECS["minimal"]), make_model(SPECS["cpu-full"])
    assert (
        container(deployment(minimal, SETTINGS, configmap(minimal)))["image"] == "registry.invalid/runtime:1"
    )
    assert container(deployment(full, SETTINGS, configmap(full)))["image"] == "mirror.invalid/runtime:2"


def test_gpus_shm_and_api_keys() -> None:
    model = make_model(SPECS["gpu-tp2"])
    dep = deployment(model, SETTINGS, configmap(model))
    assert container(dep)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory"}
    assert mounts_of(dep)["/dev/shm"]["name"] == "dshm"
    assert volumes["api-keys"]["secret"]["secretName"] == "keys"
    assert volumes["api-keys"]["secret"]["items"] == [{"key": "api-keys", "path": "keys"}]
    assert mounts_of(dep)["/etc/inference/api-keys"]["readOnly"]
    assert env_of(dep)["API_KEYS_FILE"] == "/etc/inference/api-keys/keys"
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert mounts_of(dep)["/models"]["subPath"] == "hf"
    # GPUs are scarce: a rollout replaces pods in place instead of surging.
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_cpu_model_has_no_gpu_has_shm_and_surges_while_serving() -> None:
    model = make_model(SPECS["cpu-full"])
    dep = deployment(model, SETTINGS, configmap(model))
    assert "nvidia.com/gpu" not in container(dep)["resources"].get("limits", {})
    # vLLM's CPU build always runs a multiprocess executor: 64 MiB of /dev/shm crash-loops every model.
    shm = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}[
        mounts_of(dep)["/dev/shm"]["name"]
    ]
    assert shm["emptyDir"] == {"medium": "Memory"}
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert env_of(dep)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert mounts_of(dep)["/models"]["readOnly"]


def test_config_hash_rolls_pods_only_when_the_config_changes() -> None:
    def pod_hash(spec: dict[str, Any]) -> str:
        model = make_model(spec)
        return deployment(model, SETTINGS, configmap(model))["spec"]["template"]["metadata"]["annotations"][
            CONFIG_HASH_ANNOTATION
        ]

    base = {"model": {"path": "m"}}
    assert pod_hash(base) == pod_hash({**base, "replicas": 5})  # scaling does not touch the config
    assert pod_hash(base) != pod_hash({**base, "maxModelLen": 1024})


def test_selector_does_not_depend_on_the_spec() -> None:
    one, other = make_model(SPECS["minimal"]), make_model(SPECS["gpu-tp2"])
    assert (
        deployment(one, SETTINGS, configmap(one))["spec"]["selector"]
        == deployment(other, SETTINGS, configmap(other))["spec"]["selector"]
    )


@pytest.mark.parametrize("name", SPECS)
def test_configmap_is_a_valid_runtime_model_config(name: str) -> None:
    config = require_module("inference_runtime.config", "the runtime's config module")
    model = make_model(SPECS[name])
    document = json.loads(configmap(model)["data"]["model_config.json"])
    assert list(document) == [model.served_name]
    entry = config.ModelConfig.model_validate(document[model.served_name])
    assert entry.class_name == model.spec.protocol
    assert entry.tensor_parallel_size == model.spec.tensor_parallel_size
    assert entry.model_path == model.spec.model.path


def test_service_names_its_port_and_sets_tcp() -> None:
    model = make_model(SPECS["cpu-full"])
    svc = service(model)
    assert svc["spec"]["ports"] == [{"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["type"] == "NodePort"
    dep = deployment(model, SETTINGS, configmap(model))
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_servicemonitor_scrapes_metrics_on_the_named_port() -> None:
    model = make_model(SPECS["gpu-tp2"])
    sm = servicemonitor(model)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "scheme": "http", "interval": "15s"}
    ]
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"]["matchLabels"] == service(model)["spec"]["selector"]


@pytest.mark.parametrize(
    ("name", "available", "kinds"),
    [
        ("minimal", True, ["ConfigMap", "Deployment", "Service", "ServiceMonitor"]),
        ("minimal", False, ["ConfigMap", "Deployment", "Service"]),
        ("cpu-full", True, ["ConfigMap", "Deployment", "Service"]),  # monitoring disabled in the spec
    ],
)
def test_desired_objects(name: str, available: bool, kinds: list[str]) -> None:
    objects = desired(make_model(SPECS[name]), SETTINGS, monitoring_available=available)
    assert [o["kind"] for o in objects] == kinds
    assert all(o["metadata"]["namespace"] == "ns1" for o in objects)


@pytest.mark.parametrize("spec", ["cpu-full", "gpu-tp2"])
def test_a_model_with_nothing_serving_replaces_all_pods_at_once(spec: str) -> None:
    """A crash-looping or pending pod may hold the CPU or GPUs its replacement needs: with no replica
    available there is no traffic to protect, so a fixed spec must never wait behind the broken pod."""
    model = make_model(SPECS[spec])
    dep = deployment(model, SETTINGS, configmap(model), serving=False)
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": "100%"}


def test_runtime_reports_fatal_errors_as_its_termination_message() -> None:
    dep = deployment(make_model(SPECS["minimal"]), SETTINGS, configmap(make_model(SPECS["minimal"])))
    runtime = container(dep)
    path = runtime["terminationMessagePath"]
    assert runtime["args"][runtime["args"].index("--termination-log") + 1] == path
    assert runtime["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert mounts_of(dep)["/var/cache/inference"]["name"] == "cache"  # compile caches survive restarts


@pytest.mark.parametrize(("grace", "drain"), [(None, 50), (20, 10), (600, 590)])
def test_the_runtime_drains_within_the_pods_grace_period(grace: int | None, drain: int) -> None:
    """preStop wait + drain + the engine's own stop fill the grace, so the kubelet's SIGKILL cuts nothing."""
    spec = {"model": {"path": "m"}} | ({"terminationGracePeriodSeconds": grace} if grace else {})
    model = make_model(spec)
    dep = deployment(model, SETTINGS, configmap(model))
    runtime = container(dep)
    assert float(runtime["args"][runtime["args"].index("--shutdown-grace") + 1]) == drain
    pre_stop = int(runtime["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pre_stop + drain + 5 == dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_cpu_pods_do_not_pin_vllm_to_fixed_cores_unless_asked() -> None:
    """Every pod would pin its engine to the same core ids (vLLM's "auto"), whatever the node runs."""
    cpu = make_model({"model": {"path": "m"}})
    assert env_of(deployment(cpu, SETTINGS, configmap(cpu)))["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    asked = make_model(
        {"model": {"path": "m"}, "env": [{"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "auto"}]}
    )
    assert env_of(deployment(asked, SETTINGS, configmap(asked)))["VLLM_CPU_OMP_THREADS_BIND"] == "auto"
    gpu = make_model(SPECS["gpu-tp2"])
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env_of(deployment(gpu, SETTINGS, configmap(gpu)))
