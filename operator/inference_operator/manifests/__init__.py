"""Pure builders: each turns (model, settings) into one manifest, with no I/O.

``desired`` is the whole plan of one pass; the reconciler diffs it against the cluster and applies.
"""

from __future__ import annotations

from typing import Any

from inference_operator.manifests.common import Model
from inference_operator.manifests.configmap import configmap
from inference_operator.manifests.deployment import deployment
from inference_operator.manifests.download import download_job, job_name, served_job, source_of
from inference_operator.manifests.service import service
from inference_operator.manifests.servicemonitor import servicemonitor
from inference_operator.settings import OperatorSettings

__all__ = [
    "Model",
    "configmap",
    "deployment",
    "desired",
    "download_job",
    "job_name",
    "served_job",
    "service",
    "servicemonitor",
    "source_of",
]


def desired(
    model: Model,
    settings: OperatorSettings,
    *,
    monitoring_available: bool,
    serving: bool = True,
    downloaded: bool = True,
) -> list[dict[str, Any]]:
    """Every object the model needs, in apply order (config before the pods that read it).

    ``serving``: whether any replica of the model is available now (it decides how pods are replaced).
    ``downloaded``: whether the shared cache holds the spec's source (always, without model.cache). Until
    it does, the ConfigMap and the Deployment are left out, so the reconciler leaves the live ones as
    they are: no pods before the first download, the old revision's pods serving during a new one's.
    """
    objects = []
    if downloaded:
        config = configmap(model)
        objects += [config, deployment(model, settings, config, serving=serving)]
    objects.append(service(model))
    if model.spec.monitoring.enabled and monitoring_available:
        objects.append(servicemonitor(model))
    return objects
