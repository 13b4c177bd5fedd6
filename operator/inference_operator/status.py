"""Status from what is really there: the Deployment, its pods and the outcome of this pass.

Pure functions; the reconciler feeds them live objects. Conditions follow the Kubernetes conventions:
``Ready`` (is the model serving all desired replicas), ``Progressing`` (is a rollout under way),
``Degraded`` (is something wrong that needs a human: a bad spec, a failed apply, a pod-level failure
such as an image pull error, a crash loop, an OOM kill or no node that fits), and
``MonitoringAvailable``. A condition keeps its lastTransitionTime while its status does not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})


@dataclass(frozen=True)
class Problem:
    """Why the model is not as desired: a stable CamelCase reason and a message for humans."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """The inputs of one status computation."""

    generation: int
    desired_replicas: int
    deployment: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]]
    problem: Problem | None = None  # the spec or the apply failed
    spec_valid: bool = True


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


def _rollout(obs: Observed, ready: int, terminating: int) -> tuple[bool, str, str]:
    """(progressing, reason, message) of the Deployment's rollout."""
    if not obs.spec_valid:
        return False, "InvalidSpec", "changes are not applied until the spec is fixed"
    if obs.problem is not None:
        return False, obs.problem.reason, "the latest spec could not be applied (see Degraded)"
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
    """Ready, Progressing and Degraded (without timestamps) for one observation."""
    pods = _live(obs.pods)
    ready = sum(1 for pod in pods if is_ready(pod))
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
    terminating = len(obs.pods) - len(pods)
    progressing = condition("Progressing", *_rollout(obs, ready, terminating))
    problem = obs.problem or pod_problem(pods) or _deployment_problem(obs.deployment)
    if problem:
        degraded = condition("Degraded", True, problem.reason, problem.message)
    else:
        degraded = condition("Degraded", False, "AsExpected", "no problems found")
    return [ready_cond, progressing, degraded]


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
