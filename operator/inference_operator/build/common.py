"""What every builder shares: the model being built, names, labels and a stable content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from inference_operator.api.v1alpha1 import GROUP, InferenceModelSpec

HTTP_PORT = 8000
PORT_NAME = "http"
MODEL_LABEL = f"{GROUP}/model"
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
MANAGED_BY = "inference-operator"


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


def selector_labels(name: str) -> dict[str, str]:
    """Labels that pick model ``name``'s pods; never change them (a Deployment's selector is immutable)."""
    return {"app.kubernetes.io/name": "inference-runtime", "app.kubernetes.io/instance": name}


def labels(model: Model) -> dict[str, str]:
    """Labels of every child object; the operator finds the owning model through MODEL_LABEL."""
    return {
        **selector_labels(model.name),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MODEL_LABEL: model.name,
    }


def metadata(model: Model, name: str | None = None) -> dict[str, Any]:
    return {"name": name or model.name, "namespace": model.namespace, "labels": labels(model)}


def content_hash(value: Any) -> str:
    """A short, order-independent digest of JSON-able data (pods roll when their config's hash changes)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
