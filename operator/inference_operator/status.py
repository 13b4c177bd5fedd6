"""Status from what is really there: the Deployment, its pods and the outcome of this pass.

Pure functions; the reconciler feeds them live objects. Conditions follow the Kubernetes conventions:
``Ready`` (is the model serving all desired replicas), ``Progressing`` (is a rollout under way),
``Degraded`` (is something wrong that needs a human: a bad spec, a failed apply, a pod-level failure
such as an image pull error, a crash loop, an OOM kill or no node that fits), and
``MonitoringAvailable``, and ``ModelAvailable`` (are the weights where the pods read them: a local source,
or a finished download). A condition keeps its lastTransitionTime while its status does not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})


@dataclass(frozen=True)
class Problem:
    """Why the model is not as desired: a stable CamelCase reason and a message for humans."""

    reason: str
    message: str


DOWNLOAD_CONTAINER = "download"  # the init container's and the Job's container (manifests.download)
JobState = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class Download:
    """Where the model's weights come from, and what is known about getting them there.

    ``kind``: ``local`` (the image, a PVC or a host folder: nothing to download), ``pod`` (each pod's
    init container downloads into its own volume) or ``job`` (a shared Job downloads into the cache).
    """

    kind: Literal["local", "pod", "job"]
    what: str  # the URI, or for a local source where the files are
    job: Mapping[str, Any] | None = None  # the live download Job (kind job)
    job_pods: Sequence[Mapping[str, Any]] = ()  # its pods (kind job)
    progress: str | None = None  # the last "download progress:" of the download's log
    claim: str | None = None  # the cache PersistentVolumeClaim (kind job)


@dataclass(frozen=True)
class Observed:
    """The inputs of one status computation."""

    generation: int
    desired_replicas: int
    deployment: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]]
    problem: Problem | None = None  # the spec or the apply failed
    spec_valid: bool = True
    download: Download | None = None  # None: no ModelAvailable condition (not looked at)


# Most specific first: an OOM kill also shows as a crash loop, and is the more useful thing to say.
_PRIORITY = ("OOMKilled", "ImagePullFailed", "CrashLoopBackOff", "ContainerConfigError", "Unschedulable")


def _live(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]


def is_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _pod_problems(pod: Mapping[str, Any]) -> Iterable[Problem]:
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status", {})
    for cond in status.get("conditions", []):
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            yield Problem(
                "Unschedulable", f"pod {name} cannot be scheduled: {cond.get('message', '')}".rstrip(": ")
            )
    for cs in [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]:
        container = cs.get("name", "?")
        state, last = cs.get("state", {}), cs.get("lastState", {})
        waiting = state.get("waiting", {})
        terminated = state.get("terminated") or last.get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            yield Problem(
                "OOMKilled",
                f"pod {name}: container {container} was killed for exceeding its memory limit; "
                "raise spec.resources.limits.memory or lower maxModelLen",
            )
        reason = waiting.get("reason", "")
        detail = f": {waiting['message']}" if waiting.get("message") else ""
        if reason in IMAGE_PULL_REASONS:
            yield Problem("ImagePullFailed", f"pod {name}: {reason}{detail}")
        elif reason == "CrashLoopBackOff":
            exit_code = terminated.get("exitCode")
            code = f" (last exit code {exit_code})" if exit_code is not None else ""
            said = _last_line(terminated.get("message", ""))
            yield Problem(
                "CrashLoopBackOff",
                f"pod {name}: container {container} keeps exiting{code}"
                + (f": {said}" if said else "")
                + f"; see `kubectl logs {name} --previous`",
            )
        elif reason in CONFIG_REASONS:
            yield Problem("ContainerConfigError", f"pod {name}: {reason}{detail}")


def _last_line(message: str, limit: int = 300) -> str:
    """The last non-empty line of a termination message (the runtime writes one line; the kubelet's
    fallback is the log's tail, whose last line is the error), shortened for a condition message."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def pod_problem(pods: Iterable[Mapping[str, Any]]) -> Problem | None:
    """The most specific problem among the pods, noting how many other pods have problems too."""
    found = [(pod["metadata"].get("name"), p) for pod in _live(pods) for p in _pod_problems(pod)]
    if not found:
        return None
    found.sort(key=lambda item: _PRIORITY.index(item[1].reason))
    first_pod, first = found[0]
    others = len({pod for pod, _ in found} - {first_pod})
    suffix = f" (and problems in {others} more pod{'s' if others > 1 else ''})" if others else ""
    return Problem(first.reason, first.message + suffix)


def _deployment_problem(deployment: Mapping[str, Any] | None) -> Problem | None:
    for cond in (deployment or {}).get("status", {}).get("conditions", []):
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return Problem("ReplicaFailure", f"Deployment cannot create pods: {cond.get('message', '')}")
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Problem("ProgressDeadlineExceeded", cond.get("message", "the rollout is stuck"))
    return None


def job_state(job: Mapping[str, Any] | None) -> JobState:
    """Where a Job is, from the conditions the job controller sets (no Job yet: running, as it will be)."""
    for cond in (job or {}).get("status", {}).get("conditions", []):
        if cond.get("status") == "True" and cond.get("type") == "Complete":
            return "succeeded"
        if cond.get("status") == "True" and cond.get("type") == "Failed":
            return "failed"
    return "running"


def downloaded(download: Download | None) -> bool:
    """Whether the pods may start: the weights are local, each pod fetches its own, or the Job succeeded."""
    return download is None or download.kind != "job" or job_state(download.job) == "succeeded"


def _terminated(pod: Mapping[str, Any], *, init: bool) -> list[Mapping[str, Any]]:
    """The download container's terminations in ``pod`` (current state first, then the previous one)."""
    key = "initContainerStatuses" if init else "containerStatuses"
    found = []
    for cs in pod.get("status", {}).get(key, []):
        if cs.get("name") == DOWNLOAD_CONTAINER:
            for state in (cs.get("state", {}), cs.get("lastState", {})):
                if state.get("terminated"):
                    found.append(state["terminated"])
    return found


def _failure(pods: Iterable[Mapping[str, Any]], *, init: bool) -> str | None:
    """The download's own one-line reason (its termination message: ``not found: ...`` and so on)."""
    for pod in pods:
        for terminated in _terminated(pod, init=init):
            if terminated.get("exitCode", 0) != 0:
                said = _last_line(terminated.get("message", ""))
                return said or f"exit code {terminated.get('exitCode')} ({terminated.get('reason', 'Error')})"
    return None


def model_condition(download: Download, pods: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ModelAvailable condition. ``pods``: the runtime pods (their init containers download, kind pod)."""
    progress = f": {download.progress}" if download.progress else ""
    if download.kind == "local":
        return condition("ModelAvailable", True, "LocalSource", f"the model is read from {download.what}")
    if download.kind == "pod":
        own = "each pod downloads it into its own volume before the runtime starts (no model.cache)"
        live = _live(pods)
        failed = _failure(live, init=True)
        if failed:
            return condition("ModelAvailable", False, "DownloadFailed", f"{download.what}: {failed}; {own}")
        if any(t.get("exitCode") == 0 for pod in live for t in _terminated(pod, init=True)):
            return condition("ModelAvailable", True, "Downloaded", f"{download.what} is downloaded; {own}")
        return condition("ModelAvailable", False, "Downloading", f"{download.what}{progress}; {own}")
    name = (download.job or {}).get("metadata", {}).get("name", "?")
    where = f"cache claim {download.claim}"
    state = job_state(download.job)
    if state == "succeeded":
        return condition("ModelAvailable", True, "Downloaded", f"{download.what} is in {where} (Job {name})")
    if state == "failed":
        failed = _failure(download.job_pods, init=False) or _job_failure(download.job)
        return condition(
            "ModelAvailable",
            False,
            "DownloadFailed",
            f"Job {name} could not download {download.what}: {failed}; delete the Job to retry",
        )
    return condition(
        "ModelAvailable",
        False,
        "Downloading",
        f"Job {name} is downloading {download.what} into {where}{progress or ': waiting for it to start'}",
    )


def _job_failure(job: Mapping[str, Any] | None) -> str:
    for cond in (job or {}).get("status", {}).get("conditions", []):
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".rstrip(": ")
    return "the Job failed"


def _rollout(obs: Observed, ready: int, terminating: int) -> tuple[bool, str, str]:
    """(progressing, reason, message) of the Deployment's rollout."""
    if not obs.spec_valid:
        return False, "InvalidSpec", "changes are not applied until the spec is fixed"
    if obs.problem is not None:
        return False, obs.problem.reason, "the latest spec could not be applied (see Degraded)"
    if not downloaded(obs.download):
        if job_state(obs.download.job if obs.download else None) == "failed":
            return False, "DownloadFailed", "the pods are not updated until the download succeeds"
        if obs.deployment is None:
            return True, "Downloading", "the Deployment is created once the download is complete"
        return True, "Downloading", "the pods move to the new source once its download is complete"
    deployment = obs.deployment
    if deployment is None:
        return True, "Creating", "the Deployment does not exist yet"
    status = deployment.get("status", {})
    generation = deployment.get("metadata", {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return True, "RollingOut", "waiting for the Deployment controller to observe the latest spec"
    updated = status.get("updatedReplicas", 0)
    if updated < obs.desired_replicas:
        return True, "RollingOut", f"{updated}/{obs.desired_replicas} replicas updated"
    if ready < obs.desired_replicas:
        return True, "RollingOut", f"{ready}/{obs.desired_replicas} replicas ready"
    old = status.get("replicas", 0) - updated
    if old > 0:
        # The Deployment keeps old pods serving until the updated ones are available.
        return True, "RollingOut", f"{old} old replica(s) still serving until the updated ones are available"
    if terminating:
        return True, "RollingOut", f"{terminating} old pod(s) terminating"
    return False, "RolloutComplete", f"{ready}/{obs.desired_replicas} replicas ready and up to date"


def condition(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if status else "False", "reason": reason, "message": message}


def conditions(obs: Observed) -> list[dict[str, Any]]:
    """Ready, Progressing, Degraded and (with ``obs.download``) ModelAvailable, without timestamps."""
    pods = _live(obs.pods)
    ready = sum(1 for pod in pods if is_ready(pod))
    model = model_condition(obs.download, obs.pods) if obs.download else None
    if obs.desired_replicas == 0:
        ready_cond = condition("Ready", False, "ScaledToZero", "spec.replicas is 0")
    else:
        ok = ready >= obs.desired_replicas
        ready_cond = condition(
            "Ready",
            ok,
            "ReplicasReady" if ok else "ReplicasNotReady",
            f"{ready}/{obs.desired_replicas} replicas ready",
        )
    if model and model["status"] != "True" and not ready and obs.desired_replicas:
        # Nothing serves until the weights are there: say why, not just "0/1 replicas ready".
        ready_cond = condition("Ready", False, model["reason"], model["message"])
    terminating = len(obs.pods) - len(pods)
    progressing = condition("Progressing", *_rollout(obs, ready, terminating))
    failed = model if model and model["reason"] == "DownloadFailed" else None
    problem = (
        obs.problem
        or (Problem(failed["reason"], failed["message"]) if failed else None)
        or pod_problem(pods)
        or _deployment_problem(obs.deployment)
    )
    if problem:
        degraded = condition("Degraded", True, problem.reason, problem.message)
    else:
        degraded = condition("Degraded", False, "AsExpected", "no problems found")
    return [ready_cond, progressing, degraded, *([model] if model else [])]


def with_times(
    new: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]], *, generation: int, now: str
) -> list[dict[str, Any]]:
    """Stamp observedGeneration and lastTransitionTime, keeping the old time where status did not change."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in new:
        old = before.get(cond["type"])
        since = old["lastTransitionTime"] if old and old.get("status") == cond["status"] else now
        out.append({**cond, "lastTransitionTime": since, "observedGeneration": generation})
    return out


def replica_status(pods: Iterable[Mapping[str, Any]], desired: int) -> dict[str, Any]:
    """The replica fields of the status: existing and ready pods (not counting those being deleted),
    and ``readyText``, ready out of desired as ``kubectl get`` shows it (``1/2``)."""
    live = _live(pods)
    ready = sum(1 for pod in live if is_ready(pod))
    return {"replicas": len(live), "readyReplicas": ready, "readyText": f"{ready}/{desired}"}
