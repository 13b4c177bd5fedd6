"""Running the real helm binary on charts/inference-operator and reading what it renders."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "inference-operator"
EXAMPLE_VALUES = sorted((REPO / "examples").glob("values*.yaml"))
# Kubernetes version the manifests are validated for (a current release; kubernetes-validate has it).
KUBE_VERSION = "1.32.0"
# The capability that switches on objects for prometheus-operator, when a template gates on it.
MONITORING_API = "monitoring.coreos.com/v1"


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its stderr."""


@dataclass(frozen=True)
class Helm:
    """The helm binary, run with a private home so no user or machine configuration leaks in."""

    binary: Path
    home: Path

    def run(self, *args: str, env: Mapping[str, str] | None = None, check: bool = True) -> str:
        """Run ``helm ARGS`` and return stdout; raise HelmError with stderr when it fails and ``check``."""
        environ = {
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "PATH": "/usr/bin:/bin",
            **(env or {}),
        }
        done = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=environ, check=False, timeout=300
        )
        if check and done.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout if check else done.stdout + done.stderr

    def template(
        self,
        release: str = "inference",
        namespace: str = "inference-system",
        *,
        values: Sequence[Path] = (),
        set_values: Sequence[str] = (),
        api_versions: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """``helm template`` for the current Kubernetes version; returns the rendered objects."""
        args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
        for path in values:
            args += ["--values", str(path)]
        for item in set_values:
            args += ["--set", item]
        for api in api_versions:
            args += ["--api-versions", api]
        return [doc for doc in yaml.safe_load_all(self.run(*args)) if doc]


def key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of a rendered object; namespace is "" for cluster-scoped ones."""
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def only(objects: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    """The rendered objects of one kind."""
    return [obj for obj in objects if obj["kind"] == kind]


def operator_container(objects: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The operator container of the rendered Deployment (the chart renders exactly one)."""
    (deployment,) = only(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    """A container's literal environment variables (valueFrom entries left out)."""
    return {var["name"]: var["value"] for var in container.get("env", []) if "value" in var}
