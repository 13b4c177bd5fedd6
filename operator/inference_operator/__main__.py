"""``inference-operator`` / ``python -m inference_operator``: run the operator (kopf under the hood)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import kopf

from inference_operator import metrics
from inference_operator import settings as settings_module
from inference_operator.handlers import register


def main(argv: Sequence[str] | None = None) -> int:
    settings = settings_module.parse(argv)
    kopf.configure(
        verbose=False,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    registry = kopf.OperatorRegistry()
    register(registry, settings)
    kopf.run(
        registry=registry,
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        standalone=settings.standalone or None,
        priority=settings.priority,
        liveness_endpoint=settings.liveness_endpoint,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
