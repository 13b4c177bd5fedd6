"""The chart, rendered by the real helm: lint, schema validation for a current Kubernetes, names for any
release, and the contracts with the operator (its flags, environment, peering name) and the top-level CRD.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_helpers import (
    CHART,
    EXAMPLE_VALUES,
    KUBE_VERSION,
    MONITORING_API,
    REPO,
    Helm,
    HelmError,
    env_of,
    key,
    only,
    operator_container,
)

from inference_operator import settings as operator_settings

pytestmark = pytest.mark.helm

# Value sets that change which templates render: each must lint and validate.
VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "namespaced": ["watchNamespaces={models,team-b}"],
    "standalone": ["leaderElection.enabled=false"],
    "existing-service-account": [
        "rbac.create=false",
        "serviceAccount.create=false",
        "serviceAccount.name=ops",
    ],
    "ha": ["replicaCount=3"],
}
# The only kinds without a Kubernetes schema: kopf's peering objects, checked against crds/ instead.
PEERING_CRDS = CHART / "crds" / "kopf-peering.yaml"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _cases() -> Iterator[Any]:
    for name, sets in VALUE_SETS.items():
        yield pytest.param([], sets, id=name)
    for path in EXAMPLE_VALUES:
        yield pytest.param([path], [], id=path.name)


def test_there_is_an_example_values_file() -> None:
    assert any(path.name == "values-airgapped.yaml" for path in EXAMPLE_VALUES)


@pytest.mark.parametrize(("values", "set_values"), _cases())
def test_lint(helm: Helm, values: list[Path], set_values: list[str]) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
    for path in values:
        args += ["--values", str(path)]
    for item in set_values:
        args += ["--set", item]
    helm.run(*args)


@pytest.mark.parametrize(("values", "set_values"), _cases())
def test_rendered_objects_pass_strict_schema_validation(
    helm: Helm, values: list[Path], set_values: list[str]
) -> None:
    objects = helm.template(values=values, set_values=set_values, api_versions=[MONITORING_API])
    assert only(objects, "Deployment"), "the chart must render the operator Deployment"
    peering_schemas = {
        crd["spec"]["names"]["kind"]: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for crd in yaml.safe_load_all(PEERING_CRDS.read_text())
    }
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] in peering_schemas, f"{key(obj)} is neither built in nor a peering object"
            jsonschema.Draft4Validator(peering_schemas[obj["kind"]]).validate(obj)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{key(obj)} is invalid for Kubernetes {KUBE_VERSION}: {exc.message} at {exc.path}")


@pytest.mark.parametrize(
    ("release", "namespace"),
    [
        ("x", "default"),
        ("inference-operator", "ops"),  # contains the chart name: the fullname is the release name
        ("team-a-llm-serving-platform-operator-release-01", "a-namespace-with-a-rather-long-name"),
    ],
)
def test_any_release_name_and_namespace(helm: Helm, release: str, namespace: str) -> None:
    objects = helm.template(release, namespace, set_values=["watchNamespaces={models}"])
    for obj in objects:
        kind, obj_namespace, name = key(obj)
        if kind in ("ServiceAccount", "Deployment"):
            assert obj_namespace == namespace, f"{kind} must live in the release namespace"
        if kind not in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):  # RBAC names: 253 chars
            assert len(name) <= 63 and DNS_LABEL.match(name), f"{kind} name {name!r} is not a DNS label"
    (deployment,) = only(objects, "Deployment")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (account,) = only(objects, "ServiceAccount")
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    bindings = only(objects, "RoleBinding") + only(objects, "ClusterRoleBinding")
    assert bindings
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
        ]
        role_kind = binding["roleRef"]["kind"]
        role_namespace = binding["metadata"].get("namespace", "")
        assert (role_kind, role_namespace, binding["roleRef"]["name"]) in {key(o) for o in objects}


def _object_keys(helm: Helm, namespace: str, *set_values: str) -> set[tuple[str, str, str]]:
    return {key(obj) for obj in helm.template("inference", namespace, set_values=list(set_values))}


def test_same_release_name_in_two_namespaces_does_not_collide(helm: Helm) -> None:
    team_a = _object_keys(helm, "team-a", "watchNamespaces={models-a}")
    team_b = _object_keys(helm, "team-b", "watchNamespaces={models-b}")
    assert not team_a & team_b


def test_two_cluster_wide_operators_share_only_the_peering_object(helm: Helm) -> None:
    """By design: two cluster-wide operators would reconcile the same models, so their releases clash
    on the ClusterKopfPeering and Helm refuses the second; everything else is per release."""
    first = _object_keys(helm, "team-a")
    second = _object_keys(helm, "team-b")
    assert {kind for kind, _, _ in first & second} == {"ClusterKopfPeering"}
    standalone = _object_keys(helm, "team-c", "leaderElection.enabled=false")
    assert not first & standalone


@pytest.mark.parametrize("watch", [[], ["models", "team-b"]])
def test_peering_objects_are_the_ones_the_operator_reports_to(helm: Helm, watch: list[str]) -> None:
    objects = helm.template(set_values=[f"watchNamespaces={{{','.join(watch)}}}"] if watch else [])
    peerings = only(objects, "KopfPeering") + only(objects, "ClusterKopfPeering")
    expected_name = operator_settings.OperatorSettings().peering_name
    assert {p["metadata"]["name"] for p in peerings} == {expected_name}
    if watch:
        assert sorted(p["metadata"]["namespace"] for p in peerings) == sorted(watch)
    else:
        assert [p["kind"] for p in peerings] == ["ClusterKopfPeering"]
    standalone = helm.template(set_values=["leaderElection.enabled=false"])
    assert not only(standalone, "KopfPeering") + only(standalone, "ClusterKopfPeering")
    assert "--standalone" in operator_container(standalone)["args"]


def _operator_settings(objects: list[dict[str, Any]]) -> operator_settings.OperatorSettings:
    """What the operator would run with, parsed by its own code from the rendered args and environment."""
    container = operator_container(objects)
    return operator_settings.parse(container["args"], environ=env_of(container))


@pytest.mark.parametrize("watch", [[], ["models", "team-b"]])
def test_operator_gets_the_configured_settings(helm: Helm, watch: list[str]) -> None:
    set_values = [
        "logFormat=text",
        "clusterDomain=corp.local",
        "resyncSeconds=30",
        "runtimeImage.tag=0.1.0-cpu",
        "allowedHostPaths={/srv/models,/data}",
        "allowedImagePrefixes={registry.example.invalid/inference}",
    ]
    if watch:
        set_values.append(f"watchNamespaces={{{','.join(watch)}}}")
    settings = _operator_settings(helm.template(set_values=set_values))
    assert settings.namespaces == tuple(watch)
    assert settings.clusterwide is (not watch)
    assert settings.log_format == "text"
    assert settings.cluster_domain == "corp.local"
    assert settings.resync_seconds == 30
    assert settings.runtime_image == "vllm-inference-runtime:0.1.0-cpu"
    assert settings.allowed_host_paths == ("/srv/models", "/data")
    assert settings.allowed_image_prefixes == ("registry.example.invalid/inference",)
    assert not settings.standalone


def test_host_paths_are_off_and_images_open_by_default(helm: Helm) -> None:
    settings = _operator_settings(helm.template())
    assert (settings.allowed_host_paths, settings.allowed_image_prefixes) == ((), ())


def test_probes_point_at_the_operators_liveness_endpoint(helm: Helm) -> None:
    objects = helm.template()
    container = operator_container(objects)
    endpoint = _operator_settings(objects).liveness_endpoint
    match = re.fullmatch(r"http://0\.0\.0\.0:(\d+)(/\S+)", endpoint or "")
    assert match, f"the operator's liveness endpoint {endpoint!r} must listen on all interfaces"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["health"] == int(match[1])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": match[2], "port": "health"}


def test_the_metrics_port_is_the_one_the_operator_serves_and_can_be_turned_off(helm: Helm) -> None:
    objects = helm.template()
    ports = {port["name"]: port["containerPort"] for port in operator_container(objects)["ports"]}
    assert ports["metrics"] == _operator_settings(objects).metrics_port == 8081
    off = helm.template(set_values=["metrics.port=0"])
    assert [port["name"] for port in operator_container(off)["ports"]] == ["health"]
    assert _operator_settings(off).metrics_port is None


def test_operator_pod_is_locked_down(helm: Helm) -> None:
    (deployment,) = only(helm.template(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container([deployment])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_images_default_to_the_project_version_and_follow_the_registry_switch(helm: Helm) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    objects = helm.template()
    assert operator_container(objects)["image"] == f"vllm-inference-operator:{version}"
    assert _operator_settings(objects).runtime_image == f"vllm-inference-runtime:{version}"

    mirrored = helm.template(
        set_values=["global.imageRegistry=mirror.example:5000", "image.digest=sha256:" + "a" * 64]
    )
    assert operator_container(mirrored)["image"] == (
        f"mirror.example:5000/vllm-inference-operator:{version}@sha256:{'a' * 64}"
    )
    assert (
        _operator_settings(mirrored).runtime_image == f"mirror.example:5000/vllm-inference-runtime:{version}"
    )

    own_registry = helm.template(set_values=["image.registry=ops.example"])
    assert operator_container(own_registry)["image"].startswith("ops.example/")
    assert _operator_settings(own_registry).runtime_image == f"vllm-inference-runtime:{version}"


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        (["replicaCount=two"], "replicaCount"),
        (["logFormat=xml"], "logFormat"),
        (["image.tag=latest"], "image.tag"),
        (["watchNamespaces={Not_A_Namespace}"], "watchNamespaces"),
        (["replicaSount=2"], "replicaSount"),
        (["allowedHostPaths={relative}"], "allowedHostPaths"),
        (["allowedHostPaths={/data/}"], "allowedHostPaths"),
        (["replicaCount=2", "leaderElection.enabled=false"], "leaderElection.enabled=true"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(helm: Helm, set_values: list[str], message: str) -> None:
    with pytest.raises(HelmError, match=re.escape(message)):
        helm.template(set_values=set_values)


def _value_keys(text: str) -> Iterator[tuple[str, list[str]]]:
    """(dotted key, comment lines right above it) for every key in a values file."""
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("# "))
            continue
        match = re.match(r"^(\s*)([A-Za-z][\w-]*):", line)
        if match:
            indent = len(match[1])
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, match[2])]
            yield ".".join(k for _, k in stack), comments
        comments = []


def test_every_value_is_documented_by_a_comment_starting_with_its_key() -> None:
    """A key needs its own comment, unless an ancestor's comment describes it as part of a free-form
    object (podSecurityContext.runAsUser) or it only groups documented keys (image -> image.tag)."""
    entries = list(_value_keys((CHART / "values.yaml").read_text()))
    documented = {
        dotted
        for dotted, comments in entries
        if comments and re.match(rf"{re.escape(dotted)}(?![\w.-])", comments[0])
    }
    for dotted, _ in entries:
        parts = dotted.split(".")
        by_ancestor = any(".".join(parts[:n]) in documented for n in range(1, len(parts)))
        groups_documented = any(other.startswith(dotted + ".") for other in documented)
        assert dotted in documented or by_ancestor or groups_documented, (
            f"values.yaml: {dotted} needs a comment starting with '{dotted} '"
        )
