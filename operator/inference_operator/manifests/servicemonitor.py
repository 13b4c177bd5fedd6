"""The prometheus-operator ServiceMonitor scraping the runtime's /metrics on the named port."""

from __future__ import annotations

from typing import Any

from inference_operator.manifests.common import Model, metadata
from inference_operator.names import PORT_NAME, selector_labels

API_VERSION = "monitoring.coreos.com/v1"


def servicemonitor(model: Model) -> dict[str, Any]:
    meta = metadata(model)
    meta["labels"] = {**model.spec.monitoring.labels, **meta["labels"]}
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": selector_labels(model.name)},
            "namespaceSelector": {"matchNames": [model.namespace]},
            "endpoints": [
                {
                    "port": PORT_NAME,
                    "path": "/metrics",
                    "scheme": "http",
                    "interval": model.spec.monitoring.interval,
                }
            ],
        },
    }
