"""What every builder shares: the model being built, object metadata and a stable content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from inference_operator.api.v1alpha1 import InferenceModelSpec
from inference_operator.names import child_labels


@dataclass(frozen=True)
class Model:
    """One InferenceModel, parsed: all a builder may depend on besides the operator settings."""

    name: str
    namespace: str
    spec: InferenceModelSpec

    @property
    def served_name(self) -> str:
        return self.spec.served_model_name or self.name

    @property
    def config_name(self) -> str:
        return f"{self.name}-config"


def metadata(model: Model, name: str | None = None) -> dict[str, Any]:
    return {"name": name or model.name, "namespace": model.namespace, "labels": child_labels(model.name)}


def content_hash(value: Any) -> str:
    """A short, order-independent digest of JSON-able data (pods roll when their config's hash changes)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


CONFIG_PATH = "/etc/inference/model_config.json"
MODELS_DIR = "/models"
# A fatal error's one line becomes the container's termination message, which the status shows.
TERMINATION_LOG = "/dev/termination-log"
RUNTIME_UID = 10001  # the user Dockerfile.runtime creates (owns /models and its home)


def pod_security_context() -> dict[str, Any]:
    """Pod-level security of every pod running the runtime image (restricted Pod Security Standard)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "fsGroup": RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Container-level security of every container running the runtime image (restricted profile)."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
