"""The steady-state check: when is a live object already what we would apply?"""

from __future__ import annotations

import copy

from op_helpers import make_model

from inference_operator.diff import APPLIED_HASH_ANNOTATION, contains, stamp, up_to_date
from inference_operator.manifests import configmap, deployment
from inference_operator.settings import OperatorSettings


def built() -> dict:
    model = make_model({"model": {"path": "m"}, "resources": {"requests": {"cpu": 2, "memory": "1Gi"}}})
    return stamp(deployment(model, OperatorSettings(), configmap(model)))


def as_server_returns(obj: dict) -> dict:
    """What an API server hands back: defaults filled in, quantities as strings, extra metadata."""
    live = copy.deepcopy(obj)
    live["metadata"].update(uid="u1", resourceVersion="7", managedFields=[])
    pod = live["spec"]["template"]["spec"]
    pod.update(dnsPolicy="ClusterFirst", restartPolicy="Always", schedulerName="default-scheduler")
    c = pod["containers"][0]
    c.update(terminationMessagePath="/dev/termination-log", imagePullPolicy="IfNotPresent")
    c["resources"]["requests"]["cpu"] = "2"
    c["startupProbe"]["successThreshold"] = 1
    live["status"] = {"replicas": 1}
    return live


def test_server_defaults_and_normalised_quantities_are_up_to_date() -> None:
    desired = built()
    assert up_to_date(as_server_returns(desired), desired)


def test_missing_object_is_not_up_to_date() -> None:
    assert not up_to_date(None, built())


def test_hand_edit_is_detected() -> None:
    desired = built()
    live = as_server_returns(desired)
    live["spec"]["template"]["spec"]["containers"][0]["args"][1] = "someone-else"
    assert not up_to_date(live, desired)
    live = as_server_returns(desired)
    live["spec"]["replicas"] = 7
    assert not up_to_date(live, desired)


def test_removed_field_is_detected_through_the_hash() -> None:
    """A field we stopped setting is still live; only the applied-hash annotation reveals the change."""
    with_env = built()
    with_env["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})
    live = as_server_returns(stamp(with_env))
    assert contains(live["spec"], built()["spec"])  # the subset test alone would miss it
    assert not up_to_date(live, built())


def test_entries_others_added_to_named_lists_are_tolerated() -> None:
    desired = built()
    live = as_server_returns(desired)
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "x"})
    assert up_to_date(live, desired)


def test_stamp_is_stable_and_changes_with_content() -> None:
    one, two = built(), built()
    assert (
        one["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
        == two["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
    )
    assert stamp(one) == one  # re-stamping ignores the old stamp
    two["spec"]["replicas"] = 2
    assert (
        stamp(two)["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
        != one["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
    )


def test_quantities_compare_by_value_only() -> None:
    assert contains({"cpu": "500m"}, {"cpu": "0.5"})
    assert contains({"gpu": "2"}, {"gpu": 2})
    assert not contains({"memory": "1Gi"}, {"memory": "1G"})
    assert not contains({"flag": "true"}, {"flag": True})
    assert not contains({"name": "abc"}, {"name": "abd"})
