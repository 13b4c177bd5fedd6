"""The ConfigMap carrying the runtime's model_config.json entry (format: docs/architecture.md)."""

from __future__ import annotations

import json
from typing import Any

from inference_operator.manifests.common import Model, metadata
from inference_policy.model_source import HubSource

CONFIG_KEY = "model_config.json"


def model_config(model: Model) -> dict[str, Any]:
    """The model_config.json document: one entry, keyed by the served model name."""
    spec = model.spec
    # A remote source is its URI: the runtime resolves it to model_dir(MODEL_ROOT, source), where the
    # download (init container or Job) put it.
    source = spec.model.download_source()
    entry: dict[str, Any] = {
        "class_name": spec.protocol,
        "model_path": source.uri if source else spec.model.path,
        "max_model_len": spec.max_model_len,
        "chat_template": spec.chat_template,
        "dtype": spec.dtype,
        "tensor_parallel_size": spec.tensor_parallel_size,
        "gpu_memory_utilization": spec.gpu_memory_utilization,
        "engine_args": dict(spec.engine_args),
    }
    if isinstance(source, HubSource) and source.patterns:
        entry["allow_patterns"] = list(source.patterns)
    return {model.served_name: entry}


def configmap(model: Model) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(model, model.config_name),
        "data": {CONFIG_KEY: json.dumps(model_config(model), indent=2, sort_keys=True) + "\n"},
    }
