"""A thin, synchronous Kubernetes client for the few calls the operator makes.

It speaks plain REST through the official client's connection handling (auth, TLS, kubeconfig or
in-cluster config) so that server-side apply, status patches and discovery are explicit and the same
for built-in and custom kinds. Errors surface as ``ApiError`` carrying the API server's own message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import kubernetes
import urllib3

from inference_operator.api import v1alpha1 as api

# Plural resource names of every kind the operator touches: discovery for four fixed kinds is not worth
# its latency and its caching problems.
PLURALS: Mapping[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("batch/v1", "Job"): "jobs",
    ("apps/v1", "Deployment"): "deployments",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitors",
    (api.API_VERSION, api.KIND): api.PLURAL,
}


class ApiError(Exception):
    """A failed API call: the HTTP status and the API server's message (safe to show to users)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        """Worth retrying as-is: conflicts, throttling, server errors and connection failures (status 0)."""
        return self.status in (0, 409, 429) or self.status >= 500


@dataclass(frozen=True)
class Ref:
    """Where an object lives in the API."""

    api_version: str
    kind: str
    namespace: str
    name: str | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Ref:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])

    @property
    def path(self) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{prefix}/namespaces/{quote(self.namespace)}/{PLURALS[(self.api_version, self.kind)]}"
        return f"{path}/{quote(self.name)}" if self.name else path


def load_client() -> kubernetes.client.ApiClient:
    """An API client from the in-cluster service account, else from KUBECONFIG / ~/.kube/config."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        # The library reads KUBECONFIG once at import; read it now so a changed environment counts.
        kubernetes.config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=config
        )
    client = kubernetes.client.ApiClient(config)
    client.user_agent = "inference-operator"  # also the name in managedFields of status writes
    return client


class Kube:
    """The operator's API calls. Every method is one HTTP request."""

    def __init__(self, client: kubernetes.client.ApiClient, field_manager: str) -> None:
        self._client = client
        self._field_manager = field_manager

    def get(self, ref: Ref) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            return self._call("GET", ref.path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list(self, ref: Ref, label_selector: Mapping[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(label_selector.items()))
        return self._call("GET", ref.path, query={"labelSelector": selector})["items"]

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as the operator's field manager, taking over fields others changed (force)."""
        return self._call(
            "PATCH",
            Ref.of(obj).path,
            query={"fieldManager": self._field_manager, "force": "true"},
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``obj`` (POST): for objects written once, such as Events."""
        ref = Ref(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"])
        return self._call("POST", ref.path, body=obj)

    def log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        """The last ``lines`` lines of a container's log (empty when the pod has no log yet)."""
        path = f"{Ref('v1', 'Pod', namespace, pod).path}/log"
        try:
            data = self._request("GET", path, query={"container": container, "tailLines": str(lines)})
        except ApiError as err:
            if err.transient:
                raise
            return ""  # not started, no node, or gone: nothing to read yet
        return data.decode(errors="replace")

    def delete(self, ref: Ref) -> None:
        """Delete, and let garbage collection remove what it owns (a Job's pods) in the background."""
        try:
            self._call("DELETE", ref.path, body={"propagationPolicy": "Background"})
        except ApiError as err:
            if err.status != 404:
                raise

    def patch_status(self, ref: Ref, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (a JSON merge patch replaces lists such as conditions whole)."""
        return self._call(
            "PATCH",
            f"{ref.path}/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    def serves(self, api_version: str, plural: str) -> bool:
        """Whether the API server serves ``plural`` in ``api_version`` (e.g. a CRD is installed)."""
        try:
            resources = self._call("GET", f"/apis/{api_version}")["resources"]
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in resources)

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        data = self._request(method, path, query=query, body=body, content_type=content_type)
        return json.loads(data) if data else {}

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> bytes:
        """One HTTP request; the response body, or ApiError with the API server's message."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            # The generated client's raw call (kubernetes 36): no model (de)serialisation, the body as
            # sent by the API server. It raises ApiException for every status outside 2xx.
            response = self._client.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=30,
            )
            return response.data
        except kubernetes.client.ApiException as exc:
            if not exc.status:  # the transport failed (TLS, connection): there is no answer
                raise ApiError(0, "Unavailable", str(exc.reason or "no response")) from exc
            raise _api_error(exc.status, exc.body, exc.reason) from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise ApiError(0, "Unavailable", exc.__class__.__name__) from exc


def _api_error(status: int, body: bytes | str | None, reason: str | None) -> ApiError:
    """The API server's own reason and message from an error answer's body (a Status object)."""
    raw = body.encode() if isinstance(body, str) else body or b""
    try:
        document = json.loads(raw) if raw else {}
    except ValueError:  # e.g. the plain-text "404 page not found" of an unknown API group
        document = {"message": raw[:200].decode(errors="replace").strip()}
    if not isinstance(document, dict):
        document = {}
    return ApiError(status, document.get("reason", ""), document.get("message", str(reason or "")))
