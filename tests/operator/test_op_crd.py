"""The committed CRD: in sync with the pydantic model, structural, documented; examples validate."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from op_helpers import CRD_FILE, EXAMPLES, REPO, crd_schema, validate_against_crd

from inference_operator import crdgen
from inference_operator.api.v1alpha1 import InferenceModelSpec


def test_both_committed_crds_are_generated_from_the_model() -> None:
    assert CRD_FILE in crdgen.CRD_FILES and len(set(crdgen.CRD_FILES)) == 2
    for path in crdgen.CRD_FILES:
        assert path.read_text() == crdgen.render(), (
            f"{path} is stale: run python -m inference_operator.crdgen"
        )
    assert crdgen.main(["--check"]) == 0


def test_check_names_a_stale_chart_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    top, chart = tmp_path / "top.yaml", tmp_path / "chart.yaml"
    top.write_text(crdgen.render())
    chart.write_text(crdgen.render().replace("Ready", "Readiness"))
    monkeypatch.setattr(crdgen, "CRD_FILES", (top, chart))
    assert crdgen.main(["--check"]) == 1
    assert str(chart) in capsys.readouterr().err
    assert crdgen.main([]) == 0 and chart.read_text() == top.read_text()


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_every_field_has_a_description_and_a_type() -> None:
    for path, node in _walk(crd_schema()):
        if (
            path.endswith("{}") or path == ".metadata"
        ):  # map values: see their map; metadata: fixed by Kubernetes
            continue
        assert node.get("description"), f"{path or 'root'} has no description"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"


def test_schema_is_structural() -> None:
    for path, node in _walk(crd_schema()):
        assert "$ref" not in node and "$defs" not in node, path
        assert node.get("additionalProperties") is not False, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{path}: anyOf only for int-or-string"
        assert not ("properties" in node and "additionalProperties" in node), path


def test_crd_surface() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    version = crd["spec"]["versions"][0]
    # Not "im", nor anything the Gateway API Inference Extension's InferenceModel (same kind, group
    # inference.networking.x-k8s.io), KServe, KubeAI or llm-d use: `kubectl get vifm` is never ambiguous.
    assert crd["spec"]["names"]["shortNames"] == ["vifm"]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert "status" in version["subresources"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Model", "Protocol", "TP", "GPUs", "Ready", "Endpoint", "Age"]
    ready = version["additionalPrinterColumns"][4]
    assert (ready["type"], ready["jsonPath"]) == ("string", ".status.readyText")  # reads like 1/2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd_and_the_model(path) -> None:
    document = yaml.safe_load(path.read_text())
    validate_against_crd(document)
    InferenceModelSpec.model_validate(document["spec"])


def _documented_models() -> list[tuple[str, dict]]:
    """Every InferenceModel in a fenced yaml block of README.md and docs/ (what users copy)."""
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in re.findall(r"^```yaml\n(.*?)^```", doc.read_text(), re.MULTILINE | re.DOTALL):
            for document in yaml.safe_load_all(block):
                if isinstance(document, dict) and document.get("kind") == "InferenceModel":
                    found.append((f"{doc.name}:{document['metadata']['name']}", document))
    return found


@pytest.mark.parametrize("document", [pytest.param(d, id=n) for n, d in _documented_models()])
def test_documented_models_validate_against_the_crd_and_the_model(document: dict) -> None:
    validate_against_crd(document)
    InferenceModelSpec.model_validate(document["spec"])


@pytest.mark.parametrize(
    "spec",
    [
        {"model": {"path": "m"}, "tensorParallelSize": 0},
        {"model": {"path": "m"}, "replicas": -1},
        {"model": {"path": "m"}, "terminationGracePeriodSeconds": 5},
        {"model": {"path": "m"}, "protocol": ""},
        {"model": {"path": ""}},
        {"model": {"source": {"s3": {"uri": "gs://bucket/m"}}}},
        {"model": {"source": {"s3": {"uri": "s3://bucket/m", "endpoint": "bucket.internal:9000"}}}},
        {"model": {"source": {"huggingFace": {"repo": "o/n"}}, "cache": {"claimName": "Not_A_Name"}}},
        {"model": {"source": {"huggingFace": {"repo": "o/n", "tokenSecret": {"key": "token"}}}}},
        {"model": {"path": "m"}, "service": {"type": "ExternalName"}},
        {"model": {"path": "m"}, "monitoring": {"interval": "soon"}},
    ],
)
def test_crd_schema_rejects_bad_specs(spec: dict) -> None:
    document = {
        "apiVersion": "inference.vif.dev/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": "x"},
    }
    with pytest.raises(jsonschema.ValidationError):
        validate_against_crd({**document, "spec": spec})
