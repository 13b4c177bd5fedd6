"""Does a live object already carry what we would apply? The check that keeps steady state write-free.

Two tests, both needed:
- ``applied-hash`` annotation equal to the desired object's hash: nothing in our spec changed since the
  last apply, including fields we *removed* (a subset test cannot see removals);
- every desired field present with an equal value in the live object: nobody edited our fields by hand.
Server-side defaults and other managers' additions are ignored; quantities compare by value ("2" == 2).
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes.utils import parse_quantity

from inference_operator.api.v1alpha1 import GROUP
from inference_operator.manifests.common import content_hash

APPLIED_HASH_ANNOTATION = f"{GROUP}/applied-hash"


def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` annotated with the hash of its own content."""
    stamped = copy.deepcopy(obj)
    annotations = stamped["metadata"].setdefault("annotations", {})
    annotations.pop(APPLIED_HASH_ANNOTATION, None)
    annotations[APPLIED_HASH_ANNOTATION] = content_hash(stamped)
    return stamped


def up_to_date(live: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """True when applying the stamped ``desired`` would change nothing we own in ``live``."""
    return live is not None and contains(live, desired)


def contains(live: Any, desired: Any) -> bool:
    """Whether every field of ``desired`` is in ``live`` with an equal value."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        if desired and all(isinstance(item, dict) and "name" in item for item in desired):
            # Lists merged by name (containers, env, volumes, ports): others may add entries.
            by_name = {item.get("name"): item for item in live if isinstance(item, dict)}
            return all(item["name"] in by_name and contains(by_name[item["name"]], item) for item in desired)
        return len(live) == len(desired) and all(contains(a, b) for a, b in zip(live, desired, strict=True))
    return live == desired or _same_quantity(live, desired)


def _same_quantity(live: Any, desired: Any) -> bool:
    if isinstance(live, bool) or isinstance(desired, bool) or not isinstance(live, (int, float, str)):
        return False
    if not isinstance(desired, (int, float, str)):
        return False
    try:
        return parse_quantity(live) == parse_quantity(desired)
    except ValueError:
        return False
