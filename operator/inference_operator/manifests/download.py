"""Downloads of huggingFace and s3 sources: the pod's init container (no cache) or a shared Job (cache).

Both run the runtime image's ``inference-runtime --download-only`` (docs/architecture.md), which puts the
files into ``model_source.model_dir(/models, source)``; the serving runtime resolves the config's URI to
that same folder. Where the folder is, and what the cache key is, comes from ``inference_policy.model_source``
only: the endpoint is part of the key, so the runtime container gets the same endpoint variables as the
download (never the credentials).

Credentials reach the download only as ``secretKeyRef`` variables: no object the operator writes contains
a secret's value.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Any

from inference_operator.api.v1alpha1 import GROUP, HuggingFaceSource, S3ModelSource
from inference_operator.manifests.common import (
    CONFIG_PATH,
    MODELS_DIR,
    TERMINATION_LOG,
    Model,
    container_security_context,
    pod_security_context,
)
from inference_operator.names import CLEANUP_COMPONENT, download_labels
from inference_operator.settings import OperatorSettings
from inference_policy import model_source

CONTAINER = "download"
MODELS_VOLUME = "models"
# A failed download is retried by the Job a few times (a flaky network), not forever: a wrong repository
# or a missing credential does not heal, and the termination message says which it is.
BACKOFF_LIMIT = 2
# Large models take hours on a slow link; a stuck transfer must still end so the status says so.
ACTIVE_DEADLINE_SECONDS = 6 * 3600
URI_ANNOTATION = f"{GROUP}/model-uri"
CLAIM_ANNOTATION = f"{GROUP}/cache-claim"
KEY_ANNOTATION = f"{GROUP}/cache-key"
REVISION_ANNOTATION = f"{GROUP}/revision-dir"
MODEL_DIR_ANNOTATION = f"{GROUP}/model-dir"  # model_dir(/models, source): what the cleanup removes
# On a Deployment: the download Job whose folder its pods serve (kept while a new revision downloads).
SERVES_ANNOTATION = f"{GROUP}/download-job"
CLEANUP_DEADLINE_SECONDS = 3600
_JOB_NAME_CHARS = re.compile(r"[^a-z0-9]+")


def source_of(model: Model) -> model_source.ModelSource | None:
    """The model's remote source, or None when /models is the image, a PVC or a host folder."""
    return model.spec.model.download_source()


def source_env(model: Model) -> list[dict[str, Any]]:
    """Variables the download and the runtime both need to find the same cache folder (no secrets)."""
    remote = model.spec.model.source.remote if model.spec.model.source else None
    if isinstance(remote, HuggingFaceSource):
        return [{"name": "HF_ENDPOINT", "value": remote.endpoint}] if remote.endpoint else []
    if not isinstance(remote, S3ModelSource):
        return []
    env = []
    if remote.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": remote.endpoint})
    if remote.region:
        env.append({"name": "AWS_REGION", "value": remote.region})
    return env


def credential_env(model: Model) -> list[dict[str, Any]]:
    """The download's credentials, by reference to the user's Secret."""
    source = model.spec.model.source
    if source and source.hugging_face and source.hugging_face.token_secret:
        ref = source.hugging_face.token_secret
        return [_secret_var("HF_TOKEN", ref.name, ref.key)]
    if source and source.s3 and source.s3.credentials_secret:
        name = source.s3.credentials_secret.name
        return [_secret_var(var, name, var) for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    return []


def _secret_var(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def config_download_args(model: Model) -> list[str]:
    """The init container's command line: download the config entry's source into /models."""
    return [
        "--download-only",
        "--config",
        CONFIG_PATH,
        "--model",
        model.served_name,
        "--model-root",
        MODELS_DIR,
        "--termination-log",
        TERMINATION_LOG,
    ]


def uri_download_args(source: model_source.ModelSource) -> list[str]:
    """The Job's command line: download ``source`` into the cache volume, no config file."""
    patterns = source.patterns if isinstance(source, model_source.HubSource) else ()
    args = ["--download-only", "--model-uri", source.uri]
    for pattern in patterns:
        args += ["--allow-pattern", pattern]
    return [*args, "--model-root", MODELS_DIR, "--termination-log", TERMINATION_LOG]


def _download_container(
    model: Model, settings: OperatorSettings, args: list[str], mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": model.spec.image or settings.runtime_image,
        "command": ["inference-runtime"],
        "args": args,
        # The runtime image sets HF_HUB_OFFLINE=1 so that a serving process never reaches the Hub; the
        # download is the one place that must.
        "env": [{"name": "HF_HUB_OFFLINE", "value": "0"}, *source_env(model), *credential_env(model)],
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
    }
    if model.spec.image_pull_policy:
        container["imagePullPolicy"] = model.spec.image_pull_policy
    return container


def init_container(model: Model, settings: OperatorSettings, config_mount: dict[str, Any]) -> dict[str, Any]:
    """The runtime pod's ``download`` init container (no model.cache): fills the pod's own /models."""
    mounts = [config_mount, {"name": MODELS_VOLUME, "mountPath": MODELS_DIR}]
    return _download_container(model, settings, config_download_args(model), mounts)


def job_name(namespace: str, claim: str, source: model_source.ModelSource) -> str:
    """The download Job of ``source`` in cache ``claim``: the same for every model naming the same
    source and revision, a DNS label of at most 63 characters (the Job's pods carry it as a label)."""
    key, revision = model_source.cache_key(source), model_source.revision_dir(source)
    identity = json.dumps([namespace, claim, key, revision])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    readable = _JOB_NAME_CHARS.sub("-", key[: -len(digest) - 1].lower()).strip("-")[:30].strip("-")
    rev = _JOB_NAME_CHARS.sub("-", revision.lower()).strip("-")[:17].strip("-")
    return "-".join(part for part in ("dl", readable, rev, digest) if part)


def download_job(model: Model, settings: OperatorSettings) -> dict[str, Any]:
    """The shared download Job of the model's source into its cache claim.

    Not owned by any one model (several may use it) and never updated: its name is its content, and a
    Job's pod template is immutable. The cleanup of unused revisions deletes it.
    """
    source = source_of(model)
    cache = model.spec.model.cache
    if source is None or cache is None:
        raise ValueError("download_job needs a huggingFace or s3 source and model.cache")
    labels = download_labels()
    mounts = [{"name": MODELS_VOLUME, "mountPath": MODELS_DIR}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(model.namespace, cache.claim_name, source),
            "namespace": model.namespace,
            "labels": labels,
            "annotations": {
                URI_ANNOTATION: source.uri,
                CLAIM_ANNOTATION: cache.claim_name,
                KEY_ANNOTATION: model_source.cache_key(source),
                REVISION_ANNOTATION: model_source.revision_dir(source),
                MODEL_DIR_ANNOTATION: str(model_source.model_dir(PurePosixPath(MODELS_DIR), source)),
            },
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": ACTIVE_DEADLINE_SECONDS,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [_download_container(model, settings, uri_download_args(source), mounts)],
                    "volumes": [
                        {"name": MODELS_VOLUME, "persistentVolumeClaim": {"claimName": cache.claim_name}}
                    ],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                },
            },
        },
    }


def served_job(model: Model) -> str | None:
    """The download Job whose folder the model's pods read (with model.cache), for the Deployment's
    annotation that keeps the revision from being removed while any pod may still serve it."""
    source, cache = source_of(model), model.spec.model.cache
    return job_name(model.namespace, cache.claim_name, source) if source and cache else None


def cleanup_target(job: dict[str, Any]) -> str | None:
    """The cached folder a download Job filled, from its annotation, if it has exactly the cache layout
    ``/models/<cache_key>/<revision_dir>`` (anything else, e.g. a hand-edited path, is never removed)."""
    path = (job.get("metadata", {}).get("annotations") or {}).get(MODEL_DIR_ANNOTATION, "")
    parts = PurePosixPath(path).parts
    if len(parts) != 4 or parts[:2] != ("/", MODELS_DIR.strip("/")) or str(PurePosixPath(*parts)) != path:
        return None
    if any(part in {".", ".."} or not _CACHE_SEGMENT.match(part) for part in parts[2:]):
        return None
    return path


_CACHE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


def cleanup_job(download: dict[str, Any], settings: OperatorSettings) -> dict[str, Any] | None:
    """The Job removing the folder of a download Job no model uses any more (None: no safe target).

    Same image, security and volume as the download; ``rm -rf`` of exactly that revision's folder.
    """
    target = cleanup_target(download)
    if target is None:
        return None
    meta = download["metadata"]
    pod = download["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    labels = {**download_labels(), "app.kubernetes.io/component": CLEANUP_COMPONENT}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "rm-" + meta["name"].removeprefix("dl-"),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {MODEL_DIR_ANNOTATION: target},
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": CLEANUP_DEADLINE_SECONDS,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "cleanup",
                            "image": container["image"],
                            "command": ["rm", "-rf", "--", target],
                            "volumeMounts": [{"name": MODELS_VOLUME, "mountPath": MODELS_DIR}],
                            "securityContext": container_security_context(),
                        }
                    ],
                    "volumes": pod["volumes"],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                },
            },
        },
    }
