"""The thin API client's addressing and error classification (no cluster needed)."""

from __future__ import annotations

import pytest

from inference_operator.kube import ApiError, Ref


@pytest.mark.parametrize(
    ("ref", "path"),
    [
        (Ref("v1", "Pod", "ns"), "/api/v1/namespaces/ns/pods"),
        (Ref("apps/v1", "Deployment", "ns", "m1"), "/apis/apps/v1/namespaces/ns/deployments/m1"),
        (
            Ref("monitoring.coreos.com/v1", "ServiceMonitor", "ns", "m1"),
            "/apis/monitoring.coreos.com/v1/namespaces/ns/servicemonitors/m1",
        ),
        (
            Ref("inference.vif.dev/v1alpha1", "InferenceModel", "ns", "m1"),
            "/apis/inference.vif.dev/v1alpha1/namespaces/ns/inferencemodels/m1",
        ),
    ],
)
def test_paths(ref: Ref, path: str) -> None:
    assert ref.path == path


def test_ref_of_an_object() -> None:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m1", "namespace": "ns"}}
    assert Ref.of(obj).path == "/api/v1/namespaces/ns/services/m1"


@pytest.mark.parametrize(
    ("status", "transient"),
    [(0, True), (409, True), (429, True), (503, True), (404, False), (422, False), (403, False)],
)
def test_only_retryable_errors_are_transient(status: int, transient: bool) -> None:
    assert ApiError(status, "Reason", "message").transient is transient
