"""The Service in front of the model's pods; its DNS name is the status endpoint."""

from __future__ import annotations

from typing import Any

from inference_operator.manifests.common import Model, metadata
from inference_operator.names import PORT_NAME, selector_labels


def service(model: Model) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(model),
        "spec": {
            "type": model.spec.service.type,
            "selector": selector_labels(model.name),
            # protocol is explicit: server-side apply of Service ports keys on (port, protocol), and
            # API servers before 1.26 reject an apply that leaves protocol to defaulting.
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": model.spec.service.port,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def endpoint(model: Model, cluster_domain: str) -> str:
    """In-cluster URL of the model's Service."""
    host = f"{model.name}.{model.namespace}.svc.{cluster_domain}"
    return f"http://{host}:{model.spec.service.port}"
