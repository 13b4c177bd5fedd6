"""One level-based reconcile pass: read the resource, build the desired objects, apply what differs,
observe, and write status once if it changed. Every trigger (create, update, resume, the resync timer,
events of child objects) runs the same pass, so there is no edge-triggered state to lose.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import ValidationError

from inference_operator import manifests, status
from inference_operator.api import v1alpha1 as api
from inference_operator.api.policy import check_cluster_policy
from inference_operator.diff import stamp, up_to_date
from inference_operator.kube import ApiError, Kube, Ref
from inference_operator.manifests.service import endpoint
from inference_operator.manifests.servicemonitor import API_VERSION as MONITORING_API
from inference_operator.names import MANAGED_BY, selector_labels
from inference_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


class Monitoring(NamedTuple):
    """The MonitoringAvailable condition's content: is the ServiceMonitor applied, and why (not)."""

    available: bool
    reason: str
    message: str


class Reconciler:
    """Holds the API client and settings; ``reconcile`` is safe to call from any thread."""

    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def reconcile(self, namespace: str, name: str) -> None:
        """Bring one InferenceModel to its desired state. Raises ApiError only for transient failures."""
        # Handlers of the resource, its children and the timer may run at once in kopf's thread pool.
        with self._locks.setdefault((namespace, name), threading.Lock()):  # setdefault is atomic
            body = self.kube.get(Ref(api.API_VERSION, api.KIND, namespace, name))
            if body is None or body["metadata"].get("deletionTimestamp"):
                return  # gone: garbage collection removes the children through their ownerReferences
            self._pass(body)

    def _pass(self, body: Mapping[str, Any]) -> None:
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        ref = Ref(api.API_VERSION, api.KIND, namespace, name)
        try:
            api.check_name(name)
            spec = api.InferenceModelSpec.model_validate(body.get("spec") or {})
            check_cluster_policy(
                spec,
                host_path_prefixes=self.settings.allowed_host_paths,
                image_prefixes=self.settings.allowed_image_prefixes,
            )
        except (ValidationError, ValueError) as exc:
            self._hold(ref, body, status.Problem("InvalidSpec", describe(exc)))
        else:
            self._converge(ref, body, manifests.Model(name, namespace, spec))

    def _hold(self, ref: Ref, body: Mapping[str, Any], problem: status.Problem) -> None:
        """The spec cannot be honoured: change nothing that runs, only say why in the status."""
        previous = body.get("status") or {}
        generation = body["metadata"].get("generation", 0)
        live = self.kube.get(Ref("apps/v1", "Deployment", ref.namespace, ref.name))
        replicas = (live or {}).get("spec", {}).get("replicas", 0)
        pods = self._pods(ref.namespace, body["metadata"]["name"])
        observed = status.Observed(generation, replicas, live, pods, problem, spec_valid=False)
        # Monitoring was not looked at: keep what the last good pass said about it.
        kept = [c for c in previous.get("conditions") or [] if c.get("type") == "MonitoringAvailable"]
        new = {
            **previous,
            **status.replica_status(pods, replicas),
            "observedGeneration": generation,
            "conditions": self._conditions(observed, previous, kept),
        }
        self._write_status(ref, previous, new)

    def _converge(self, ref: Ref, body: Mapping[str, Any], model: manifests.Model) -> None:
        """Apply what differs from the desired objects, then report what is there."""
        previous = body.get("status") or {}
        generation = body["metadata"].get("generation", 0)
        monitoring = self._monitoring(model)
        problem = None
        deployment = self.kube.get(Ref("apps/v1", "Deployment", model.namespace, model.name))
        serving = bool((deployment or {}).get("status", {}).get("availableReplicas"))
        try:
            plan = manifests.desired(
                model, self.settings, monitoring_available=monitoring.available, serving=serving
            )
            for obj in plan:
                live = self._ensure(_owned(obj, body))
                if obj["kind"] == "Deployment":
                    deployment = live
            if not model.spec.monitoring.enabled:
                self._prune_servicemonitor(model)
        except ApiError as err:
            if err.transient:
                raise
            problem = status.Problem("ApplyFailed", f"the API server rejected a child object: {err.message}")
        pods = self._pods(model.namespace, model.name)
        observed = status.Observed(generation, model.spec.replicas, deployment, pods, problem)
        monitoring_condition = status.condition("MonitoringAvailable", *monitoring)
        new = {
            "observedGeneration": generation,
            "servedModelName": model.served_name,
            **status.replica_status(pods, model.spec.replicas),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(selector_labels(model.name).items())),
            "endpoint": endpoint(model, self.settings.cluster_domain),
            "conditions": self._conditions(observed, previous, [monitoring_condition]),
        }
        self._write_status(ref, previous, new)

    def _ensure(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Apply ``obj`` unless the live object already matches it; return the live object."""
        desired = stamp(obj)
        live = self.kube.get(Ref.of(desired))
        if up_to_date(live, desired):
            return live  # type: ignore[return-value]  # up_to_date(None, ...) is False
        log.info(
            "applying %s %s/%s",
            desired["kind"],
            desired["metadata"]["namespace"],
            desired["metadata"]["name"],
        )
        return self.kube.apply(desired)

    def _monitoring(self, model: manifests.Model) -> Monitoring:
        if not model.spec.monitoring.enabled:
            return Monitoring(False, "Disabled", "spec.monitoring.enabled is false")
        if not self.kube.serves(MONITORING_API, "servicemonitors"):
            return Monitoring(
                False,
                "ServiceMonitorCRDMissing",
                f"{MONITORING_API} ServiceMonitor is not installed; metrics are still served at /metrics "
                "on port http",
            )
        return Monitoring(
            True, "ServiceMonitorReady", "Prometheus scrapes /metrics through the ServiceMonitor"
        )

    def _prune_servicemonitor(self, model: manifests.Model) -> None:
        """Monitoring was switched off: remove the ServiceMonitor this operator made, if the kind exists."""
        if not self.kube.serves(MONITORING_API, "servicemonitors"):
            return
        ref = Ref(MONITORING_API, "ServiceMonitor", model.namespace, model.name)
        live = self.kube.get(ref)
        if live and live["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == MANAGED_BY:
            self.kube.delete(ref)

    def _pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self.kube.list(Ref("v1", "Pod", namespace), selector_labels(name))

    @staticmethod
    def _conditions(
        observed: status.Observed, previous: Mapping[str, Any], extra: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Ready, Progressing, Degraded plus ``extra``, timestamped against the previous ones."""
        old = previous.get("conditions") or []
        return status.with_times(
            status.conditions(observed) + extra, old, generation=observed.generation, now=_now()
        )

    def _write_status(self, ref: Ref, previous: Mapping[str, Any], new: dict[str, Any]) -> None:
        """One status write per pass, and none when nothing changed (steady state makes no writes)."""
        if {k: v for k, v in previous.items() if v is not None} == {
            k: v for k, v in new.items() if v is not None
        }:
            return
        # A merge patch keeps keys it does not mention: null out the ones that went away.
        patch = {**{k: None for k in previous if k not in new}, **new}
        self.kube.patch_status(ref, patch)


def _owned(obj: dict[str, Any], owner: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` with a controller ownerReference to ``owner``: deleting the owner deletes it."""
    meta = owner["metadata"]
    reference = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {**obj, "metadata": {**obj["metadata"], "ownerReferences": [reference]}}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def describe(exc: Exception) -> str:
    """A one-line, input-free explanation of why a spec is invalid (no values echoed back)."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in ("spec", *err["loc"]))
            parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        return "; ".join(parts)
    return str(exc)
