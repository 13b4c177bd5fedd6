"""Rules that depend on what the cluster admin allows (operator settings), not on the spec alone.

The InferenceModel's author is not trusted with the operator's own permissions: a host folder mounted
into a pod, or an image of the author's choosing, is what the admin has allowed, or nothing is applied.
"""

from __future__ import annotations

from inference_operator.api.v1alpha1 import InferenceModelSpec


def check_cluster_policy(
    spec: InferenceModelSpec, *, host_path_prefixes: tuple[str, ...], image_prefixes: tuple[str, ...]
) -> None:
    """Raise ValueError naming the field when ``spec`` asks for what the admin did not allow.

    ``host_path_prefixes``: folders under which hostPath model sources may lie (none: hostPath is off).
    ``image_prefixes``: what ``spec.image`` must start with (none: any image).
    """
    source = spec.model.source
    if source is not None and source.host_path is not None:
        path = source.host_path.path  # normalised by the schema, so a component-wise check is exact
        if not host_path_prefixes:
            raise ValueError("spec.model.source.hostPath: host paths are not allowed on this cluster")
        if not any(path == p or path.startswith(p + "/") for p in host_path_prefixes):
            raise ValueError(
                "spec.model.source.hostPath.path: not under a folder the cluster admin allows "
                f"({', '.join(host_path_prefixes)})"
            )
    if (
        spec.image is not None
        and image_prefixes
        and not any(_image_under(spec.image, p) for p in image_prefixes)
    ):
        raise ValueError(
            f"spec.image: not from an allowed registry or repository ({', '.join(image_prefixes)})"
        )


def _image_under(image: str, prefix: str) -> bool:
    """``image`` is ``prefix`` or lies below it by whole name components.

    ``registry.example.invalid/team`` admits ``registry.example.invalid/team/x:1`` and
    ``registry.example.invalid/team:2``, not ``registry.example.invalid/team-b/x`` or
    ``registry.example.invalid.other/x``.
    """
    base = prefix.rstrip("/")
    return image == base or image.startswith((f"{base}/", f"{base}:", f"{base}@"))
