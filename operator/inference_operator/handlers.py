"""The kopf wiring, and nothing else: every handler delegates to ``Reconciler.reconcile``.

Handlers are registered into an explicit registry by ``register`` (so tests run the operator in-process
with its own settings), and kopf itself is configured in the startup handler: its own finalizer and
annotation prefix under our API group, peering for a single active replica, events only for warnings.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import kopf

from inference_operator.api import v1alpha1 as api
from inference_operator.kube import ApiError, Kube, load_client
from inference_operator.names import CLEANUP_COMPONENT, DOWNLOAD_COMPONENT, MANAGED_BY, MODEL_LABEL
from inference_operator.reconciler import Reconciler
from inference_operator.settings import OperatorSettings

# Children whose events re-run the owner's reconcile: pod changes update the status, and hand edits
# or deletions of the managed objects are undone at once instead of at the next resync.
CHILDREN = (
    ("apps", "v1", "deployments"),
    ("", "v1", "pods"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
)


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """Register every handler of the operator into ``registry``."""
    operator_settings = settings  # kopf passes its own ``settings`` to handlers under that name

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # An explicit registry does not get kopf's default login handlers; use the same sources as
        # load_client (in-cluster service account, else KUBECONFIG / ~/.kube/config).
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        _configure_kopf(settings, operator_settings)
        memo.client = load_client()
        memo.reconciler = Reconciler(Kube(memo.client, operator_settings.field_manager), operator_settings)

    @kopf.on.cleanup(id="close", registry=registry)
    def close(memo: kopf.Memo, **_: Any) -> None:
        memo.client.close()

    @kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL, id="reconcile", registry=registry)
    @kopf.on.create(api.GROUP, api.VERSION, api.PLURAL, id="reconcile", registry=registry)
    @kopf.on.update(api.GROUP, api.VERSION, api.PLURAL, id="reconcile", registry=registry)
    def reconcile_model(name: str, namespace: str, memo: kopf.Memo, **_: Any) -> None:
        _reconcile(memo.reconciler, namespace, name)

    @kopf.timer(
        api.GROUP, api.VERSION, api.PLURAL, id="resync", interval=settings.resync_seconds, registry=registry
    )
    def resync_model(name: str, namespace: str, memo: kopf.Memo, **_: Any) -> None:
        _reconcile(memo.reconciler, namespace, name)

    for group, version, plural in CHILDREN:

        @kopf.on.event(
            group,
            version,
            plural,
            labels={MODEL_LABEL: kopf.PRESENT},
            id=f"child-{plural}",
            registry=registry,
        )
        def child_changed(labels: kopf.Labels, namespace: str, memo: kopf.Memo, **_: Any) -> None:
            _reconcile(memo.reconciler, namespace, labels[MODEL_LABEL])

    @kopf.on.event(
        "batch",
        "v1",
        "jobs",
        labels={"app.kubernetes.io/component": _cache_job, "app.kubernetes.io/managed-by": MANAGED_BY},
        id="download-jobs",
        registry=registry,
    )
    def download_changed(name: str, namespace: str, memo: kopf.Memo, **_: Any) -> None:
        # A shared download Job has no one owner: every model that uses it starts (or fails) with it. A
        # cleanup Job's end, or a download no model uses, moves the removal of unused revisions on.
        try:
            users = memo.reconciler.users(namespace, name)
            if not users:
                memo.reconciler.collect(namespace)
        except ApiError as err:
            raise kopf.TemporaryError(f"API call failed, will retry: {err}", delay=5) from err
        for model in users:
            _reconcile(memo.reconciler, namespace, model)


def _cache_job(value: str | None, **_: Any) -> bool:
    """The label filter of the download and cleanup Jobs."""
    return value in (DOWNLOAD_COMPONENT, CLEANUP_COMPONENT)


def _reconcile(reconciler: Reconciler, namespace: str, name: str) -> None:
    try:
        reconciler.reconcile(namespace, name)
    except ApiError as err:
        # Only transient errors get here (conflicts, throttling, outages); kopf retries with a backoff.
        raise kopf.TemporaryError(f"API call failed, will retry: {err}", delay=5) from err


def _configure_kopf(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    prefix = api.GROUP
    kopf_settings.persistence.finalizer = f"{prefix}/finalizer"
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    kopf_settings.peering.name = settings.peering_name
    kopf_settings.peering.mandatory = False
    if settings.priority is None and kopf_settings.peering.priority == 0:
        # Replicas with equal priority would all keep working; random ones let exactly one lead.
        kopf_settings.peering.priority = random.randint(1, 2**31 - 1)
    # Kubernetes Events only for warnings: info-level events on every resync would be writes.
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.watching.server_timeout = 300
    kopf_settings.execution.max_workers = 8
