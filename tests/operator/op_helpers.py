"""Helpers shared by the operator tests (imported by name: tests/operator is on sys.path under pytest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from inference_operator.api.v1alpha1 import InferenceModelSpec
from inference_operator.manifests import Model

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples" / "inferencemodels").glob("*.yaml"))
CRD_FILE = REPO / "crds" / "inference.vif.dev_inferencemodels.yaml"


def make_model(spec: dict[str, Any], name: str = "m1", namespace: str = "ns1") -> Model:
    """A parsed model from a spec written as in a manifest (camelCase)."""
    return Model(name, namespace, InferenceModelSpec.model_validate(spec))


def crd_schema() -> dict[str, Any]:
    """The committed CRD's openAPIV3Schema."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate_against_crd(document: dict[str, Any]) -> None:
    """Validate a whole InferenceModel document with the CRD's schema.

    A CRD schema is OpenAPI 3.0, whose numeric keywords follow JSON Schema draft 4 (boolean
    ``exclusiveMinimum``); the ``x-kubernetes-*`` extensions are ignored by the validator.
    """
    jsonschema.Draft4Validator(crd_schema()).validate(document)


def unschedulable_pod(name: str, nodes: int) -> dict[str, Any]:
    """A pending pod as the scheduler leaves it when no node has a free GPU."""
    return {
        "metadata": {"name": name},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": f"0/{nodes} nodes are available: {nodes} Insufficient nvidia.com/gpu.",
                }
            ],
        },
    }
