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
