"""Pure builders: each turns (model, settings) into one manifest, with no I/O.

``desired`` is the whole plan of one pass; the reconciler diffs it against the cluster and applies.
"""

from __future__ import annotations

from typing import Any

from inference_operator.manifests.common import Model
from inference_operator.manifests.configmap import configmap
from inference_operator.manifests.deployment import deployment
from inference_operator.manifests.service import service
from inference_operator.manifests.servicemonitor import servicemonitor
from inference_operator.settings import OperatorSettings

__all__ = ["Model", "configmap", "deployment", "desired", "service", "servicemonitor"]


def desired(
    model: Model, settings: OperatorSettings, *, monitoring_available: bool, serving: bool = True
) -> list[dict[str, Any]]:
    """Every object the model needs, in apply order (config before the pods that read it).

    ``serving``: whether any replica of the model is available now (it decides how pods are replaced).
    """
    config = configmap(model)
    objects = [config, deployment(model, settings, config, serving=serving), service(model)]
    if model.spec.monitoring.enabled and monitoring_available:
        objects.append(servicemonitor(model))
    return objects
