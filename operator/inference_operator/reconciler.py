"""One level-based reconcile pass: read the resource, build the desired objects, apply what differs,
observe, and write status once if it changed. Every trigger (create, update, resume, the resync timer,
events of child objects) runs the same pass, so there is no edge-triggered state to lose.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pydantic import ValidationError

from inference_operator import manifests, metrics, status
from inference_operator.api import v1alpha1 as api
from inference_operator.api.policy import check_cluster_policy
from inference_operator.diff import stamp, up_to_date
from inference_operator.kube import ApiError, Kube, Ref
from inference_operator.manifests.download import SERVES_ANNOTATION, cleanup_job, cleanup_target
from inference_operator.manifests.service import endpoint
from inference_operator.manifests.servicemonitor import API_VERSION as MONITORING_API
from inference_operator.names import CLEANUP_COMPONENT, DOWNLOAD_COMPONENT, MANAGED_BY, selector_labels
from inference_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

# The runtime's --download-only log lines: progress while it runs, a summary at the end.
PROGRESS_LINE = re.compile(r"download progress: (.+?)\s*$", re.MULTILINE)
FINISHED_LINE = re.compile(
    r"downloaded \S+ at revision \S+ \(\d+ files, [^,)]+, (?P<bytes>\d+) bytes\) in (?P<seconds>[0-9.]+) s"
)
LOG_TAIL_LINES = 20
JOB_NAME_LABEL = "job-name"  # set by the job controller on a Job's pods


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
        self._namespace_locks: dict[str, threading.Lock] = {}
        # Download progress read from pod logs, by (namespace, pod): read at most once per resync interval.
        self._progress: dict[tuple[str, str], tuple[float, str | None]] = {}
        # Download Jobs already in the metrics, by uid: every model that shares a Job sees it end.
        self._counted: set[str] = set()

    def reconcile(self, namespace: str, name: str) -> None:
        """Bring one InferenceModel to its desired state. Raises ApiError only for transient failures."""
        # Handlers of the resource, its children and the timer may run at once in kopf's thread pool.
        with self._locks.setdefault((namespace, name), threading.Lock()):  # setdefault is atomic
            body = self.kube.get(Ref(api.API_VERSION, api.KIND, namespace, name))
            if body is not None and not body["metadata"].get("deletionTimestamp"):
                self._pass(body)
            # Gone: garbage collection removes the children through their ownerReferences; the events of
            # their deletion come here too, and may leave a cached revision unused.
        self.collect(namespace)

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
        kept = _kept(previous, "MonitoringAvailable", "ModelAvailable")
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
        download = None
        deployment = self.kube.get(Ref("apps/v1", "Deployment", model.namespace, model.name))
        serving = bool((deployment or {}).get("status", {}).get("availableReplicas"))
        try:
            download = self._download(model, body)
            plan = manifests.desired(
                model,
                self.settings,
                monitoring_available=monitoring.available,
                serving=serving,
                downloaded=status.downloaded(download),
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
        if download is not None and download.kind == "pod":
            download = dataclasses.replace(download, progress=self._read_progress(model.namespace, pods))
        observed = status.Observed(
            generation, model.spec.replicas, deployment, pods, problem, download=download
        )
        monitoring_condition = status.condition("MonitoringAvailable", *monitoring)
        # Without a download observation (the apply failed first) the last one still stands.
        extra = [monitoring_condition, *([] if download else _kept(previous, "ModelAvailable"))]
        conditions = self._conditions(observed, previous, extra)
        if download is not None:
            self._announce(body, previous, conditions, download)
        new = {
            "observedGeneration": generation,
            "servedModelName": model.served_name,
            **status.replica_status(pods, model.spec.replicas),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(selector_labels(model.name).items())),
            "endpoint": endpoint(model, self.settings.cluster_domain),
            "conditions": conditions,
        }
        self._write_status(ref, previous, new)

    def _download(self, model: manifests.Model, owner: Mapping[str, Any]) -> status.Download:
        """Where the weights come from; with model.cache, the shared Job, created if it does not exist.

        The Job is never updated (its name is its content and its pod template is immutable) and owned
        by no model: several share it, and the cleanup of unused revisions removes it.
        """
        source = manifests.source_of(model)
        if source is None:
            return status.Download("local", _local_where(model))
        cache = model.spec.model.cache
        if cache is None:
            return status.Download("pod", source.uri)
        job = manifests.download_job(model, self.settings)
        name = job["metadata"]["name"]
        live = self.kube.get(Ref.of(job))
        if live is None:
            log.info(
                "starting the download of %s into cache claim %s/%s (Job %s) for InferenceModel %s",
                source.uri,
                model.namespace,
                cache.claim_name,
                name,
                model.name,
            )
            live = self.kube.apply(stamp(job))
            self._event(
                owner,
                "Normal",
                "DownloadStarted",
                f"Job {name} downloads {source.uri} into {cache.claim_name}",
            )
        state = status.job_state(live)
        pods = [] if state == "succeeded" else self._job_pods(model.namespace, name)
        return status.Download(
            "job",
            source.uri,
            job=live,
            job_pods=pods,
            progress=self._read_progress(model.namespace, pods) if state == "running" else None,
            claim=cache.claim_name,
        )

    def _job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return self.kube.list(Ref("v1", "Pod", namespace), {JOB_NAME_LABEL: job})

    def _read_progress(self, namespace: str, pods: Sequence[Mapping[str, Any]]) -> str | None:
        """The last ``download progress:`` of a running download, from its log; at most one log read per
        pod and resync interval (the timer), whatever else triggers passes."""
        for pod in pods:
            if not _download_running(pod):
                continue
            key = (namespace, pod["metadata"]["name"])
            now = time.monotonic()
            read_at, progress = self._progress.get(key, (-self.settings.resync_seconds, None))
            if now - read_at >= self.settings.resync_seconds:
                found = PROGRESS_LINE.findall(self._log(namespace, key[1]))
                progress = found[-1] if found else progress
                self._progress[key] = (now, progress)
            return progress
        return None

    def _log(self, namespace: str, pod: str) -> str:
        try:
            return self.kube.log_tail(namespace, pod, status.DOWNLOAD_CONTAINER, LOG_TAIL_LINES)
        except ApiError as err:
            log.info("cannot read the log of pod %s/%s: %s", namespace, pod, err)
            return ""

    def _announce(
        self,
        owner: Mapping[str, Any],
        previous: Mapping[str, Any],
        conditions: Sequence[Mapping[str, Any]],
        download: status.Download,
    ) -> None:
        """An Event and a log line when the download finishes or fails (transitions only: no writes in
        steady state), with the runtime's own summary (files, size, duration) when its log has it."""
        (new,) = (c for c in conditions if c["type"] == "ModelAvailable")
        old = next((c for c in previous.get("conditions") or [] if c.get("type") == "ModelAvailable"), {})
        if download.kind == "local" or new["reason"] == old.get("reason"):
            return
        meta = owner["metadata"]
        if new["reason"] == "Downloaded":
            summary = self._summary(meta["namespace"], download)
            message = summary[0] if summary else new["message"]
            log.info("InferenceModel %s/%s: %s", meta["namespace"], meta["name"], message)
            self._event(owner, "Normal", "Downloaded", message)
            self._count(meta["namespace"], download, "downloaded", summary)
        elif new["reason"] == "DownloadFailed":
            log.warning("InferenceModel %s/%s: %s", meta["namespace"], meta["name"], new["message"])
            self._event(owner, "Warning", "DownloadFailed", new["message"])
            self._count(meta["namespace"], download, "failed", None)

    def _summary(self, namespace: str, download: status.Download) -> re.Match[str] | None:
        """The runtime's final ``downloaded <uri> at revision <commit> (<n> files, <size>, <bytes> bytes)
        in <s> s`` line, matched by :data:`FINISHED_LINE`."""
        if download.kind != "job" or download.job is None:
            return None
        for pod in self._job_pods(namespace, download.job["metadata"]["name"]):
            found = list(FINISHED_LINE.finditer(self._log(namespace, pod["metadata"]["name"])))
            if found:
                return found[-1]
        return None

    def _count(
        self, namespace: str, download: status.Download, result: str, summary: re.Match[str] | None
    ) -> None:
        """Each download Job's end in the metrics once, however many models share it."""
        if download.kind != "job" or download.job is None or download.job["metadata"]["uid"] in self._counted:
            return
        self._counted.add(download.job["metadata"]["uid"])
        metrics.DOWNLOADS.labels(namespace, download.what, result).inc()
        if summary:
            metrics.DOWNLOAD_BYTES.labels(namespace, download.what).inc(int(summary["bytes"]))
            metrics.DOWNLOAD_SECONDS.labels(namespace, download.what).observe(float(summary["seconds"]))

    def _event(self, owner: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """A Kubernetes Event about ``owner``; losing one is logged, never fails the pass."""
        meta = owner["metadata"]
        now = _now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": MANAGED_BY},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.kube.create(event)
        except ApiError as err:
            log.warning("cannot post the %s event of %s/%s: %s", reason, meta["namespace"], meta["name"], err)

    def collect(self, namespace: str) -> None:
        """Remove the cached revisions no InferenceModel of ``namespace`` uses, nor any Deployment serves.

        A finished download Job that is unused gets a cleanup Job (``rm -rf`` of exactly its folder);
        once that succeeded both are deleted. A running download is left to finish first; a failed cleanup
        Job is left for a human to look at. Writes only when there is something to remove, and one list
        call in a namespace without download Jobs: steady state stays write-free.
        """
        with self._namespace_locks.setdefault(namespace, threading.Lock()):
            try:
                self._collect(namespace)
            except ApiError as err:
                if err.transient:
                    raise
                # E.g. an operator upgraded without its new RBAC: serving models must not suffer for it.
                log.warning("cannot remove unused cached revisions in %s: %s", namespace, err)

    def _collect(self, namespace: str) -> None:
        jobs = self.kube.list(Ref("batch/v1", "Job", namespace), {"app.kubernetes.io/managed-by": MANAGED_BY})
        downloads = {
            j["metadata"]["name"]: j
            for j in jobs
            if j["metadata"].get("labels", {}).get("app.kubernetes.io/component") == DOWNLOAD_COMPONENT
        }
        cleanups = {
            j["metadata"]["name"]: j
            for j in jobs
            if j["metadata"].get("labels", {}).get("app.kubernetes.io/component") == CLEANUP_COMPONENT
        }
        if not downloads:
            return
        in_use = self._jobs_in_use(namespace)
        for name, job in downloads.items():
            if name in in_use or status.job_state(job) == "running":
                continue
            cleanup = cleanup_job(job, self.settings)
            if cleanup is None:
                log.warning("download Job %s/%s has no removable folder; leaving it", namespace, name)
                continue
            live = cleanups.get(cleanup["metadata"]["name"])
            if live is None:
                log.info(
                    "removing %s from the cache: no model uses Job %s/%s",
                    cleanup_target(job),
                    namespace,
                    name,
                )
                self.kube.apply(stamp(cleanup))
            elif status.job_state(live) == "succeeded":
                log.info("removed the cached revision of Job %s/%s", namespace, name)
                # Listed items carry no apiVersion/kind: name the Jobs explicitly.
                self.kube.delete(Ref("batch/v1", "Job", namespace, name))
                self.kube.delete(Ref("batch/v1", "Job", namespace, cleanup["metadata"]["name"]))

    def _jobs_in_use(self, namespace: str) -> set[str]:
        """Download Jobs some model's spec names, or whose folder some live Deployment serves."""
        used = set()
        for body in self.kube.list(Ref(api.API_VERSION, api.KIND, namespace), {}):
            try:
                spec = api.InferenceModelSpec.model_validate(body.get("spec") or {})
            except ValidationError:
                continue  # an invalid spec changes nothing that runs: its Deployment still counts below
            job = manifests.served_job(manifests.Model(body["metadata"]["name"], namespace, spec))
            if job:
                used.add(job)
        for deployment in self.kube.list(
            Ref("apps/v1", "Deployment", namespace), {"app.kubernetes.io/managed-by": MANAGED_BY}
        ):
            served = (deployment["metadata"].get("annotations") or {}).get(SERVES_ANNOTATION)
            if served:
                used.add(served)
        return used

    def users(self, namespace: str, job: str) -> list[str]:
        """The InferenceModels of ``namespace`` whose (valid) spec downloads through Job ``job``."""
        found = []
        for body in self.kube.list(Ref(api.API_VERSION, api.KIND, namespace), {}):
            try:
                spec = api.InferenceModelSpec.model_validate(body.get("spec") or {})
            except ValidationError:
                continue
            source, cache = spec.model.download_source(), spec.model.cache
            if source and cache and manifests.job_name(namespace, cache.claim_name, source) == job:
                found.append(body["metadata"]["name"])
        return found

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


def _kept(previous: Mapping[str, Any], *kinds: str) -> list[dict[str, Any]]:
    """The previous conditions of ``kinds``, for a pass that did not look at them."""
    return [c for c in previous.get("conditions") or [] if c.get("type") in kinds]


def _local_where(model: manifests.Model) -> str:
    source = model.spec.model.source
    if source and source.persistent_volume_claim:
        return f"PersistentVolumeClaim {source.persistent_volume_claim.claim_name}"
    if source and source.host_path:
        return f"host folder {source.host_path.path}"
    return "the runtime image"


def _download_running(pod: Mapping[str, Any]) -> bool:
    """Whether the pod's download container (a Job's, or a runtime pod's init container) is running."""
    status_ = pod.get("status", {})
    return any(
        cs.get("name") == status.DOWNLOAD_CONTAINER and "running" in (cs.get("state") or {})
        for cs in [*status_.get("initContainerStatuses", []), *status_.get("containerStatuses", [])]
    )


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
