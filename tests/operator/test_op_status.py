"""Status conditions from pods and Deployments shaped as kubelet and controllers write them."""

from __future__ import annotations

from typing import Any

import pytest
from op_helpers import unschedulable_pod

from inference_operator import status


def pod(name: str = "m1-abc", *, ready: bool = False, **container_status: Any) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    statuses = [{"name": "runtime", "ready": ready, **container_status}] if container_status else []
    return {"metadata": {"name": name}, "status": {"conditions": conditions, "containerStatuses": statuses}}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"state": {"waiting": {"reason": reason, "message": message}}}


UNSCHEDULABLE = unschedulable_pod("m1-gpu", nodes=3)
OOM = pod(
    **waiting("CrashLoopBackOff", "back-off 5m0s restarting failed container"),
    lastState={"terminated": {"reason": "OOMKilled", "exitCode": 137}},
)
CRASH = pod(**waiting("CrashLoopBackOff"), lastState={"terminated": {"reason": "Error", "exitCode": 1}})
PULL = pod(**waiting("ImagePullBackOff", 'Back-off pulling image "runtime:9"'))
ERR_PULL = pod(**waiting("ErrImagePull", "manifest unknown"))
CONFIG = pod(**waiting("CreateContainerConfigError", 'secret "keys" not found'))


def rollout_done(replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2},
        "status": {"observedGeneration": 2, "updatedReplicas": replicas, "readyReplicas": replicas},
    }


def by_type(conds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conds}


@pytest.mark.parametrize(
    ("pods", "reason", "fragment"),
    [
        ([UNSCHEDULABLE], "Unschedulable", "Insufficient nvidia.com/gpu"),
        ([OOM], "OOMKilled", "memory limit"),
        ([CRASH], "CrashLoopBackOff", "exit code 1"),
        ([PULL], "ImagePullFailed", "ImagePullBackOff"),
        ([ERR_PULL], "ImagePullFailed", "ErrImagePull: manifest unknown"),
        ([CONFIG], "ContainerConfigError", 'secret "keys" not found'),
    ],
)
def test_pod_problems_become_degraded_reasons(pods: list[dict], reason: str, fragment: str) -> None:
    conds = by_type(status.conditions(status.Observed(1, 1, rollout_done(1), pods)))
    assert conds["Degraded"]["status"] == "True"
    assert conds["Degraded"]["reason"] == reason
    assert fragment in conds["Degraded"]["message"]
    assert conds["Ready"]["status"] == "False"


def test_most_specific_problem_wins_and_others_are_counted() -> None:
    crash = pod("m1-b", **waiting("CrashLoopBackOff"))
    problem = status.pod_problem([crash, OOM])
    assert problem is not None and problem.reason == "OOMKilled"
    assert "1 more pod" in problem.message


def test_terminating_pods_are_ignored() -> None:
    leaving = {**PULL, "metadata": {"name": "old", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert status.pod_problem([leaving]) is None
    assert status.replica_status([leaving, pod(ready=True)], 1) == {
        "replicas": 1,
        "readyReplicas": 1,
        "readyText": "1/1",
    }


def test_ready_only_with_enough_ready_pods() -> None:
    never = status.conditions(status.Observed(1, 1, rollout_done(1), []))
    assert by_type(never)["Ready"]["status"] == "False"
    half = by_type(
        status.conditions(status.Observed(1, 2, rollout_done(2), [pod("a", ready=True), pod("b")]))
    )
    assert half["Ready"]["status"] == "False" and half["Ready"]["message"] == "1/2 replicas ready"
    full = by_type(status.conditions(status.Observed(1, 1, rollout_done(1), [pod(ready=True)])))
    assert full["Ready"]["status"] == "True"
    assert full["Progressing"] == status.condition(
        "Progressing", False, "RolloutComplete", full["Progressing"]["message"]
    )
    assert full["Degraded"]["status"] == "False"


def test_replica_status_reads_ready_out_of_desired() -> None:
    deleting = {
        **pod("c", ready=True),
        "metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"},
    }
    pods = [pod("a", ready=True), pod("b"), deleting]
    assert status.replica_status(pods, 2) == {"replicas": 2, "readyReplicas": 1, "readyText": "1/2"}
    assert status.replica_status([], 0)["readyText"] == "0/0"


def test_scaled_to_zero_is_not_ready() -> None:
    conds = by_type(status.conditions(status.Observed(1, 0, rollout_done(0), [])))
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "ScaledToZero")


def test_progressing_until_the_deployment_controller_catches_up() -> None:
    stale = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2}}
    conds = by_type(status.conditions(status.Observed(1, 1, stale, [pod(ready=True)])))
    assert conds["Progressing"]["status"] == "True"
    assert by_type(status.conditions(status.Observed(1, 1, None, [])))["Progressing"]["reason"] == "Creating"


def test_stuck_rollout_is_degraded() -> None:
    stuck = rollout_done(1)
    stuck["status"]["conditions"] = [
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "too slow",
        }
    ]
    conds = by_type(status.conditions(status.Observed(1, 1, stuck, [pod()])))
    assert conds["Degraded"]["reason"] == "ProgressDeadlineExceeded"


def test_spec_problem_wins_and_stops_progress() -> None:
    problem = status.Problem("InvalidSpec", "spec.gpus: too few")
    conds = by_type(
        status.conditions(status.Observed(4, 1, rollout_done(1), [pod(ready=True)], problem, False))
    )
    assert conds["Degraded"]["reason"] == "InvalidSpec"
    assert conds["Progressing"]["reason"] == "InvalidSpec"
    assert conds["Ready"]["status"] == "True"  # what already runs keeps serving


def test_transition_time_is_kept_while_status_holds() -> None:
    first = status.with_times([status.condition("Ready", False, "A", "")], [], generation=1, now="t1")
    same = status.with_times([status.condition("Ready", False, "B", "x")], first, generation=2, now="t2")
    flipped = status.with_times([status.condition("Ready", True, "C", "")], same, generation=2, now="t3")
    assert [c["lastTransitionTime"] for c in (*first, *same, *flipped)] == ["t1", "t1", "t3"]
    assert same[0]["observedGeneration"] == 2


def test_a_crash_loop_says_what_the_runtime_said() -> None:
    said = "inference-runtime: error: model 'm': model_path 'no-such-model-folder' is not a folder"
    crashed = pod(
        **waiting("CrashLoopBackOff"),
        lastState={"terminated": {"reason": "Error", "exitCode": 2, "message": f"log line\n{said}\n"}},
    )
    degraded = by_type(status.conditions(status.Observed(1, 1, rollout_done(1), [crashed])))["Degraded"]
    assert said in degraded["message"] and "exit code 2" in degraded["message"]


def test_old_replicas_kept_serving_are_not_called_terminating() -> None:
    """Surge-first: the new pod crash-loops, the old one is kept serving on purpose."""
    deployment = rollout_done(1)
    deployment["status"].update(replicas=2, updatedReplicas=1)
    pods = [pod("m1-old", ready=True), CRASH]
    progressing = by_type(status.conditions(status.Observed(1, 1, deployment, pods)))["Progressing"]
    assert progressing["status"] == "True"
    assert "still serving" in progressing["message"] and "terminating" not in progressing["message"]


def test_a_refused_apply_is_not_a_complete_rollout() -> None:
    problem = status.Problem("ApplyFailed", "the API server rejected a child object: limits < requests")
    observed = status.Observed(2, 1, rollout_done(1), [pod(ready=True)], problem)
    conds = by_type(status.conditions(observed))
    assert conds["Progressing"]["status"] == "False" and conds["Progressing"]["reason"] == "ApplyFailed"
    assert conds["Degraded"]["reason"] == "ApplyFailed"


# ModelAvailable: downloads of huggingFace/s3 sources (objects as the job controller and kubelet write them).
URI = "hf://o/n@main"


def job(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    conds = [{"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conditions]
    return {"metadata": {"name": "dl-hf-o--n-main-0123456789"}, "status": {"conditions": conds}}


def download_pod(exit_code: int, message: str, *, init: bool = False) -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed", "message": message}
    key = "initContainerStatuses" if init else "containerStatuses"
    return {
        "metadata": {"name": "p"},
        "status": {key: [{"name": "download", "state": {"terminated": terminated}}]},
    }


def in_cache(
    job_: dict[str, Any] | None, pods: list[dict[str, Any]] = (), progress: str | None = None
) -> Any:
    return status.Download("job", URI, job=job_, job_pods=pods, progress=progress, claim="cache")


def test_local_sources_are_available() -> None:
    conds = by_type(
        status.conditions(
            status.Observed(
                1, 1, rollout_done(1), [pod(ready=True)], download=status.Download("local", "the image")
            )
        )
    )
    assert conds["ModelAvailable"]["status"] == "True" and conds["ModelAvailable"]["reason"] == "LocalSource"
    assert conds["Ready"]["status"] == "True"


def test_while_the_job_downloads_ready_is_false_with_its_progress() -> None:
    progress = "27% (12.3 MiB of 45.6 MiB, 3 of 10 files)"
    conds = by_type(
        status.conditions(status.Observed(1, 1, None, [], download=in_cache(job(), progress=progress)))
    )
    available = conds["ModelAvailable"]
    assert (available["status"], available["reason"]) == ("False", "Downloading")
    assert progress in available["message"] and "cache" in available["message"]
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "Downloading")
    assert conds["Ready"]["message"] == available["message"]
    assert (conds["Progressing"]["status"], conds["Progressing"]["reason"]) == ("True", "Downloading")
    assert conds["Degraded"]["status"] == "False"
    assert not status.downloaded(in_cache(job()))


def test_a_job_not_yet_started_says_so() -> None:
    message = by_type(status.conditions(status.Observed(1, 1, None, [], download=in_cache(None))))[
        "ModelAvailable"
    ]["message"]
    assert "waiting for it to start" in message


def test_a_succeeded_job_makes_the_model_available() -> None:
    done = in_cache(job(("Complete", "", "")))
    assert status.downloaded(done)
    conds = by_type(
        status.conditions(status.Observed(1, 1, rollout_done(1), [pod(ready=True)], download=done))
    )
    assert (conds["ModelAvailable"]["status"], conds["ModelAvailable"]["reason"]) == ("True", "Downloaded")
    assert (conds["Ready"]["status"], conds["Progressing"]["reason"]) == ("True", "RolloutComplete")


def test_a_failed_job_says_what_the_download_said() -> None:
    said = "unauthorised: the Hub refused the token for o/n (set model.source.huggingFace.tokenSecret)"
    failed = in_cache(
        job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        [download_pod(1, said)],
    )
    conds = by_type(status.conditions(status.Observed(1, 1, None, [], download=failed)))
    assert (conds["ModelAvailable"]["reason"], conds["Ready"]["reason"]) == (
        "DownloadFailed",
        "DownloadFailed",
    )
    assert (
        said in conds["ModelAvailable"]["message"] and "delete the Job" in conds["ModelAvailable"]["message"]
    )
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("True", "DownloadFailed")
    assert (conds["Progressing"]["status"], conds["Progressing"]["reason"]) == ("False", "DownloadFailed")
    # Without a pod to ask (deleted), the Job's own reason still tells something.
    bare = in_cache(job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")))
    message = by_type(status.conditions(status.Observed(1, 1, None, [], download=bare)))["ModelAvailable"][
        "message"
    ]
    assert "DeadlineExceeded" in message


def test_old_pods_keep_serving_while_a_new_revision_downloads() -> None:
    conds = by_type(
        status.conditions(status.Observed(2, 1, rollout_done(1), [pod(ready=True)], download=in_cache(job())))
    )
    assert conds["ModelAvailable"]["reason"] == "Downloading"
    assert conds["Ready"]["status"] == "True"  # the previous revision serves
    assert (conds["Progressing"]["status"], conds["Progressing"]["reason"]) == ("True", "Downloading")


def test_per_pod_downloads_say_each_pod_has_its_own_volume() -> None:
    own = status.Download("pod", URI)
    assert status.downloaded(own)
    waiting_ = by_type(status.conditions(status.Observed(1, 1, rollout_done(1), [pod()], download=own)))
    assert waiting_["ModelAvailable"]["reason"] == "Downloading"
    assert (
        "own volume" in waiting_["ModelAvailable"]["message"]
        and "model.cache" in waiting_["ModelAvailable"]["message"]
    )
    assert waiting_["Ready"]["reason"] == "Downloading"
    done = by_type(
        status.conditions(
            status.Observed(1, 1, rollout_done(1), [download_pod(0, "", init=True)], download=own)
        )
    )
    assert done["ModelAvailable"]["status"] == "True" and "own volume" in done["ModelAvailable"]["message"]
    failed = by_type(
        status.conditions(
            status.Observed(
                1, 1, rollout_done(1), [download_pod(1, "not found: o/n", init=True)], download=own
            )
        )
    )
    assert (
        failed["ModelAvailable"]["reason"] == "DownloadFailed"
        and "not found: o/n" in failed["ModelAvailable"]["message"]
    )


def test_without_a_download_observation_there_is_no_model_condition() -> None:
    assert "ModelAvailable" not in by_type(status.conditions(status.Observed(1, 1, None, [])))
