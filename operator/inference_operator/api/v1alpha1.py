"""``InferenceModel`` v1alpha1: the pydantic model here is the single source of the CRD's schema.

``python -m inference_operator.crdgen`` renders it into ``crds/``; the operator parses every resource
with the same model, so the rules the API server cannot check (Kubernetes 1.20 has no CEL, and cross-field
rules need it) are still enforced, as a ``Degraded`` condition instead of a rejected write.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic.alias_generators import to_camel

from inference_policy import model_source
from inference_policy.engine import (
    PATH_ENGINE_ARGS,
    RESERVED_ENGINE_ARGS,
    refused_engine_args,
    refused_in_spec_env,
)

GROUP = "inference.vif.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceModel"
PLURAL = "inferencemodels"
SINGULAR = "inferencemodel"
SHORT_NAMES = ["vifm"]

# Environment variables the operator sets in the runtime container; a spec may not override them.
RESERVED_ENV = frozenset(
    {"MODEL_ROOT", "API_KEYS_FILE", "API_KEYS", "MODEL_CONFIG", "MODEL_NAME", "SERVICE_PORT"}
)

# A Kubernetes quantity ("500m", "16Gi", 2): integer or string, as the API server stores it.
Quantity = Annotated[
    int | str,
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}),
]
# A free-form Kubernetes object (tolerations, affinity, valueFrom): validated by the API server when the
# operator applies the Deployment, so its schema here only keeps the fields from being pruned.
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "description": "A Kubernetes object of the named kind, passed through as written.",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    ),
]

# RE2 (the API server) and Rust (pydantic) have no look-ahead: ".." segments are refused by a validator.
_RELATIVE_PATH = r"^[^/]"
_DURATION = r"^[0-9]+(ms|s|m|h)$"
_SERVED_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
_RESOURCE_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # a DNS subdomain, as Secret and PVC names are
_HTTP_URL = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"
# Variables that make the runtime compute a different cache folder than the operator mounts (the
# endpoint is part of the cache key): with a remote source they come from model.source only.
SOURCE_ENV = frozenset({"HF_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_REGION"})
# A stopping pod first waits PRE_STOP_SECONDS (its preStop hook: endpoints controllers and kube-proxy take
# a moment to stop sending it connections), then the runtime drains for its grace period less
# ENGINE_STOP_SECONDS, which the engine's own shutdown gets before the kubelet's SIGKILL.
PRE_STOP_SECONDS = 5
ENGINE_STOP_SECONDS = 5
MIN_TERMINATION_GRACE_SECONDS = PRE_STOP_SECONDS + ENGINE_STOP_SECONDS + 10  # a drain of at least 10 s


class _Schema(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class PersistentVolumeClaimSource(_Schema):
    """Models live on an existing PersistentVolumeClaim, mounted read-only at /models."""

    claim_name: str = Field(
        min_length=1, description="Name of the PersistentVolumeClaim in the same namespace."
    )
    sub_path: str | None = Field(
        None,
        pattern=_RELATIVE_PATH,
        description="Folder inside the volume to mount at /models (default: its root).",
    )

    @field_validator("sub_path")
    @classmethod
    def _inside_volume(cls, value: str | None) -> str | None:
        return (
            value
            if value is None
            else _no_parent_segments(value, "model.source.persistentVolumeClaim.subPath")
        )


def normalised_folder(path: str) -> bool:
    """An absolute folder other than '/', written in normal form (POSIX keeps a leading '//')."""
    return path != "/" and not path.startswith("//") and posixpath.normpath(path) == path and path[0] == "/"


def _no_parent_segments(value: str, field: str) -> str:
    if ".." in value.split("/"):
        raise ValueError(f"{field} must stay inside /models: '..' is not allowed")
    return value


class HostPathSource(_Schema):
    """Models live in a folder on every node that may run the model, mounted read-only at /models.

    Only under the prefixes the cluster admin allows (operator setting; none by default), and not in
    namespaces that enforce the Pod Security Standards' restricted profile, which forbids hostPath.
    """

    path: str = Field(
        pattern=r"^/",
        description="Absolute, normalised folder on the node, under a prefix the cluster admin allows.",
    )

    @field_validator("path")
    @classmethod
    def _normalised(cls, value: str) -> str:
        # What the operator compares with the allowed prefixes must be what the node mounts: no '.',
        # '..', '//' or trailing '/' a prefix check could be fooled by, and never the node's root.
        if not normalised_folder(value):
            raise ValueError(
                "must be a normalised absolute folder other than '/' (no '.', '..', '//' or trailing '/')"
            )
        return value


class SecretKeySelector(_Schema):
    """A key of a Secret in the same namespace, passed to the download as an environment variable."""

    name: str = Field(min_length=1, max_length=253, pattern=_RESOURCE_NAME, description="Secret name.")
    key: str = Field("token", min_length=1, description="Key whose value is the Hugging Face token.")


class SecretReference(_Schema):
    """A Secret in the same namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=_RESOURCE_NAME, description="Secret name.")


class HuggingFaceSource(_Schema):
    """Download a model repository from the Hugging Face Hub (model.path must be omitted)."""

    repo: str = Field(min_length=1, max_length=192, description="Repository id, `owner/name` (or `name`).")
    revision: str = Field(
        model_source.DEFAULT_HF_REVISION,
        min_length=1,
        max_length=128,
        description="Branch, tag or commit to serve; a change downloads the new revision, then rolls pods.",
    )
    endpoint: str | None = Field(
        None,
        pattern=_HTTP_URL,
        max_length=512,
        description="http(s) URL of another Hub, e.g. a mirror inside the cluster (HF_ENDPOINT); "
        "default: the public Hub.",
    )
    token_secret: SecretKeySelector | None = Field(
        None, description="Secret key holding a Hub token (HF_TOKEN), for gated or private repositories."
    )
    files: list[
        Annotated[str, Field(min_length=1, description="A glob pattern relative to the repository.")]
    ] = Field(
        default_factory=list,
        description="Glob patterns of the files to download, e.g. ['*.json', '*.safetensors']; "
        "default: every file.",
    )

    @model_validator(mode="after")
    def _valid_source(self) -> HuggingFaceSource:
        model_source.HubSource(
            repo=self.repo, revision=self.revision, patterns=tuple(self.files), endpoint=self.endpoint
        )
        return self


class S3ModelSource(_Schema):
    """Download every object under a prefix of an S3 (or S3-compatible) bucket; omit model.path."""

    uri: str = Field(
        pattern=r"^s3://", max_length=1100, description="`s3://bucket/prefix` of the model's folder."
    )
    endpoint: str | None = Field(
        None,
        pattern=_HTTP_URL,
        max_length=512,
        description="http(s) URL of an S3-compatible store (AWS_ENDPOINT_URL); default: AWS.",
    )
    region: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$", description="Region (AWS_REGION)."
    )
    credentials_secret: SecretReference | None = Field(
        None,
        description="Secret with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; default: anonymous "
        "access (or whatever the node's environment provides).",
    )

    @model_validator(mode="after")
    def _valid_source(self) -> S3ModelSource:
        model_source.parse_model_uri(self.uri, s3_endpoint=self.endpoint, s3_region=self.region)
        return self


class ModelSource(_Schema):
    """Where /models comes from: at most one kind. Leave every field out when the image carries the model."""

    persistent_volume_claim: PersistentVolumeClaimSource | None = Field(
        None, description="Mount an existing PersistentVolumeClaim at /models."
    )
    host_path: HostPathSource | None = Field(None, description="Mount a node folder at /models.")
    hugging_face: HuggingFaceSource | None = Field(
        None, description="Download a Hugging Face Hub repository before the runtime starts."
    )
    s3: S3ModelSource | None = Field(None, description="Download an S3 prefix before the runtime starts.")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        kinds = [
            alias
            for alias, value in (
                ("persistentVolumeClaim", self.persistent_volume_claim),
                ("hostPath", self.host_path),
                ("huggingFace", self.hugging_face),
                ("s3", self.s3),
            )
            if value is not None
        ]
        if len(kinds) > 1:
            raise ValueError(
                "set only one of model.source.persistentVolumeClaim, hostPath, huggingFace and s3 "
                f"(found {' and '.join(kinds)})"
            )
        return self

    @property
    def remote(self) -> HuggingFaceSource | S3ModelSource | None:
        """The download source, if the model is downloaded rather than mounted."""
        return self.hugging_face or self.s3


class ModelCache(_Schema):
    """A PersistentVolumeClaim shared by every model of the namespace that downloads its weights.

    One Job downloads each (source, revision) once into it; pods mount it read-only. Use a ReadWriteMany
    claim when pods may run on several nodes.
    """

    claim_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=_RESOURCE_NAME,
        description="Name of the PersistentVolumeClaim in the same namespace.",
    )


class ModelSpec(_Schema):
    """The weights to serve."""

    path: str | None = Field(
        None,
        min_length=1,
        pattern=_RELATIVE_PATH,
        description="Hugging Face model folder, relative to /models (the runtime's MODEL_ROOT). Required "
        "unless model.source is huggingFace or s3, and omitted then.",
    )
    source: ModelSource | None = Field(
        None,
        description="How /models is provided: a PersistentVolumeClaim, a host path, a download from Hugging "
        "Face or S3, or (omitted) the image.",
    )
    cache: ModelCache | None = Field(
        None,
        description="Shared download cache for huggingFace and s3 sources; without it every pod downloads "
        "into its own emptyDir.",
    )

    @field_validator("path")
    @classmethod
    def _inside_models(cls, value: str | None) -> str | None:
        return value if value is None else _no_parent_segments(value, "model.path")

    @model_validator(mode="after")
    def _path_matches_source(self) -> ModelSpec:
        remote = self.source.remote if self.source else None
        if remote is not None and self.path is not None:
            raise ValueError(
                "omit model.path with a huggingFace or s3 source: the downloaded folder is the model"
            )
        if remote is None and self.path is None:
            raise ValueError("model.path is required unless model.source is huggingFace or s3")
        if remote is None and self.cache is not None:
            raise ValueError("model.cache applies to huggingFace and s3 sources only")
        return self

    def download_source(self) -> model_source.ModelSource | None:
        """The runtime's view of the remote source (cache key, folder, URI), None for local sources."""
        remote = self.source.remote if self.source else None
        if isinstance(remote, HuggingFaceSource):
            uri = f"{model_source.HF_SCHEME}{remote.repo}@{remote.revision}"
            return model_source.parse_model_uri(
                uri, patterns=tuple(remote.files), hf_endpoint=remote.endpoint
            )
        if isinstance(remote, S3ModelSource):
            return model_source.parse_model_uri(
                remote.uri, s3_endpoint=remote.endpoint, s3_region=remote.region
            )
        return None


class ResourceRequirements(_Schema):
    """CPU/memory (and other) requests and limits of the runtime container."""

    requests: dict[str, Quantity] | None = Field(
        None, description="Minimum resources, e.g. {cpu: 2, memory: 8Gi}."
    )
    limits: dict[str, Quantity] | None = Field(
        None, description="Maximum resources. nvidia.com/gpu is set from spec.gpus; do not set it here."
    )


class EnvVar(_Schema):
    """An extra environment variable of the runtime container."""

    name: str = Field(min_length=1, description="Variable name.")
    value: str | None = Field(None, description="Literal value.")
    value_from: FreeForm | None = Field(
        None, description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, ...)."
    )


class SecretKeyRef(_Schema):
    """A key of a Secret in the same namespace."""

    name: str = Field(min_length=1, description="Secret name.")
    key: str = Field(
        "keys", min_length=1, description="Key whose value is the API-keys file (one key a line)."
    )


class ServiceSpec(_Schema):
    """The Service in front of the model's pods."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP", description="Service type.")
    port: int = Field(
        8000, ge=1, le=65535, description="Service port (named http); pods always listen on 8000."
    )


class MonitoringSpec(_Schema):
    """Prometheus scraping through a ServiceMonitor (needs the monitoring.coreos.com CRDs)."""

    enabled: bool = Field(True, description="Create a ServiceMonitor when its CRD is installed.")
    interval: str = Field("30s", pattern=_DURATION, description="Scrape interval, e.g. 30s or 1m.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the ServiceMonitor, e.g. to match a Prometheus selector.",
    )


_OBJECT_DEFAULT = {"default": {}}


class InferenceModelSpec(_Schema):
    """The desired state of one served model."""

    model: ModelSpec = Field(description="The weights to serve and where they come from.")
    served_model_name: str | None = Field(
        None,
        max_length=128,
        pattern=_SERVED_NAME,
        description="Name clients use in requests (the `model` field); default: the resource's name.",
    )
    protocol: str = Field(
        "OpenAIServingChat",
        min_length=1,
        description="Serving class of the primary protocol, e.g. OpenAIServingChat, OpenAIServingCompletion, "
        "ServingGenerate, or a plugin's class name.",
    )
    tensor_parallel_size: int = Field(
        1, ge=1, le=64, description="GPUs (or CPU workers) one replica shards over."
    )
    gpus: int = Field(
        0,
        ge=0,
        le=64,
        description="nvidia.com/gpu per replica; 0 runs on CPU. Must be >= tensorParallelSize if set.",
    )
    replicas: int = Field(1, ge=0, description="Number of runtime pods.")
    image: str | None = Field(
        None, min_length=1, description="Runtime image; default: the operator's setting."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        None, description="Pull policy of the runtime image; default: Kubernetes' default for the tag."
    )
    resources: ResourceRequirements | None = Field(None, description="Container resources besides GPUs.")
    max_model_len: int | None = Field(None, gt=0, description="Context length; default: the model's own.")
    chat_template: str | None = Field(None, description="Jinja chat template text; default: the model's own.")
    dtype: Literal["auto", "bfloat16", "float16", "half", "float32", "float"] = Field(
        "auto", description="Weight and activation dtype."
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of GPU memory vLLM may use.")
    engine_args: FreeForm = Field(
        default_factory=dict, description="Further vLLM engine arguments (snake_case)."
    )
    env: list[EnvVar] = Field(default_factory=list, description="Extra environment variables of the runtime.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the pods must match."
    )
    tolerations: list[FreeForm] = Field(
        default_factory=list, description="Kubernetes tolerations of the pods."
    )
    affinity: FreeForm | None = Field(None, description="Kubernetes affinity of the pods.")
    api_key_secret: SecretKeyRef | None = Field(
        None, description="Secret with the API keys clients must send; without it the API is open."
    )
    service: ServiceSpec = Field(
        default_factory=ServiceSpec, description="Service settings.", json_schema_extra=_OBJECT_DEFAULT
    )
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,
        description="Metrics scraping settings.",
        json_schema_extra=_OBJECT_DEFAULT,
    )
    startup_timeout_seconds: int = Field(
        1800, ge=30, description="How long a pod may take to load the model before it is restarted."
    )
    termination_grace_period_seconds: int = Field(
        60,
        ge=MIN_TERMINATION_GRACE_SECONDS,
        le=86400,
        description=f"How long a pod may take to stop: a {PRE_STOP_SECONDS} s wait for the Service to stop "
        "sending it connections, then the runtime lets in-flight requests and streams finish for the rest "
        f"but {ENGINE_STOP_SECONDS} s. Raise it when single generations can run longer than that.",
    )

    @field_validator("engine_args")
    @classmethod
    def _no_reserved_engine_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(RESERVED_ENGINE_ARGS & value.keys())
        if clash:
            raise ValueError(f"set {', '.join(clash)} through the spec's own fields, not engineArgs")
        refused = refused_engine_args(value)
        if refused:
            raise ValueError(f"{'; '.join(refused)}: engine arguments that load code are not allowed")
        for arg in sorted(PATH_ENGINE_ARGS.keys() & value.keys()):
            raw = value[arg]
            # The runtime resolves these under /models and refuses what leaves its roots; say so here.
            if isinstance(raw, str) and raw not in PATH_ENGINE_ARGS[arg]:
                _no_parent_segments(raw, f"engineArgs.{arg}")
                if raw.startswith("/"):
                    raise ValueError(f"engineArgs.{arg} must be a path relative to /models")
        return value

    @field_validator("env")
    @classmethod
    def _no_reserved_env(cls, value: list[EnvVar]) -> list[EnvVar]:
        clash = sorted(RESERVED_ENV & {var.name for var in value})
        if clash:
            raise ValueError(f"{', '.join(clash)} are set by the operator and cannot be overridden")
        for var in value:
            why = refused_in_spec_env(var.name)
            if why:
                raise ValueError(f"{var.name} may not be set: {why}")
        return value

    @model_validator(mode="after")
    def _source_env_from_source(self) -> InferenceModelSpec:
        if self.model.source and self.model.source.remote:
            clash = sorted(SOURCE_ENV & {var.name for var in self.env})
            if clash:
                raise ValueError(
                    f"{', '.join(clash)} must come from model.source with a huggingFace or s3 source "
                    "(they select the download's cache folder)"
                )
        return self

    @field_validator("resources")
    @classmethod
    def _no_gpu_in_resources(cls, value: ResourceRequirements | None) -> ResourceRequirements | None:
        for part in (value.requests, value.limits) if value else ():
            if part and "nvidia.com/gpu" in part:
                raise ValueError("set GPUs with spec.gpus, not in resources")
        return value

    @model_validator(mode="after")
    def _gpus_cover_tp(self) -> InferenceModelSpec:
        if self.gpus and self.gpus < self.tensor_parallel_size:
            raise ValueError(
                f"gpus ({self.gpus}) must be at least tensorParallelSize ({self.tensor_parallel_size})"
            )
        return self


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_Schema):
    """One aspect of the resource's state, in the usual Kubernetes shape."""

    type: str = Field(description="Ready, Progressing, Degraded, MonitoringAvailable or ModelAvailable.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason, stable for automation.")
    message: str = Field(description="Human-readable explanation.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(None, description="metadata.generation the condition is about.")


class InferenceModelStatus(_Schema):
    """What the operator observed; written once per reconcile pass, only when it changed."""

    observed_generation: int | None = Field(None, description="metadata.generation last reconciled.")
    served_model_name: str | None = Field(None, description="Effective served model name.")
    replicas: int | None = Field(None, description="Runtime pods that exist (not terminating).")
    ready_replicas: int | None = Field(None, description="Runtime pods that pass the readiness probe.")
    ready_text: str | None = Field(None, description="Ready replicas out of desired, as in `1/2`.")
    selector: str | None = Field(None, description="Label selector of the pods (for the scale subresource).")
    endpoint: str | None = Field(None, description="In-cluster URL of the model's Service.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing, Degraded, MonitoringAvailable and ModelAvailable.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_name(name: str) -> None:
    """Child objects share the resource's name; a Service name must be a DNS-1035 label (<= 63 chars)."""
    if not DNS_LABEL.match(name):
        raise ValueError(
            f"name '{name}' must be a DNS-1035 label (lowercase letters, digits and '-', starting with a "
            "letter, at most 63 characters) because the model's Service takes the same name"
        )
