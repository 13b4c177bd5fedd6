"""Names and labels that the builders, the reconciler and the handlers agree on.

Changing a selector label orphans every running model (a Deployment's selector is immutable), so
these live in one place of their own.
"""

from __future__ import annotations

from inference_operator.api.v1alpha1 import GROUP

HTTP_PORT = 8000
PORT_NAME = "http"
MODEL_LABEL = f"{GROUP}/model"
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
MANAGED_BY = "inference-operator"


def selector_labels(name: str) -> dict[str, str]:
    """Labels that pick model ``name``'s pods; never change them (a Deployment's selector is immutable)."""
    return {"app.kubernetes.io/name": "inference-runtime", "app.kubernetes.io/instance": name}


def child_labels(name: str) -> dict[str, str]:
    """Labels of every child object of model ``name``; the operator finds the owner through MODEL_LABEL."""
    return {
        **selector_labels(name),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MODEL_LABEL: name,
    }


DOWNLOAD_COMPONENT = "model-download"
CLEANUP_COMPONENT = "model-cache-cleanup"


def download_labels() -> dict[str, str]:
    """Labels of the shared download Jobs (and their pods): no model label, several models share one."""
    return {
        "app.kubernetes.io/name": "inference-runtime",
        "app.kubernetes.io/component": DOWNLOAD_COMPONENT,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
