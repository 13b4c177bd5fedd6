"""Models from anywhere: download an ``hf://`` or ``s3://`` source into the shared cache, once.

``ensure_model`` is the one entry. A folder with its complete marker is served as it is, without any
network access (pods mount the cache read-only); anything else is downloaded under a lock, each file
checked before it is renamed into place, and the marker written last. Failures raise
:class:`DownloadError`, whose text starts with a category the operator understands.

No vLLM here: only ``inference_runtime.engine`` imports it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from inference_policy.model_source import HubSource, ModelSource, model_dir
from inference_runtime.sources.store import (
    ERROR,
    REFUSED,
    DownloadError,
    Progress,
    check_space,
    download_file,
    folder_lock,
    read_marker,
    write_marker,
)

if TYPE_CHECKING:
    from inference_runtime.sources.hub import HubFetch
    from inference_runtime.sources.s3 import S3Fetch

__all__ = ["DownloadError", "ensure_model"]

logger = logging.getLogger("inference_runtime.sources")


def ensure_model(source: ModelSource, root: Path, env: Mapping[str, str] | None = None) -> Path:
    """The folder holding ``source`` under ``root``, downloading it first unless it is complete.

    ``env`` (default ``os.environ``) gives the credentials: ``HF_TOKEN``; ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``. Endpoints and region are part of ``source``.
    """
    env = os.environ if env is None else env
    target = model_dir(root, source)
    manifest = read_marker(target)
    if manifest is not None:
        revision = manifest.get("revision", "?")
        logger.info("model %s is already downloaded in %s (revision %s)", source.uri, root, revision)
        return target
    _refuse_symlinks(root, target, source.uri)
    with folder_lock(target, source.uri):
        manifest = read_marker(target)  # another process may have finished it while we waited
        if manifest is not None:
            logger.info("model %s was downloaded by another process", source.uri)
            return target
        _download(source, root, target, env)
    return target


def _download(source: ModelSource, root: Path, target: Path, env: Mapping[str, str]) -> None:
    fetch = _fetcher(source, env)
    logger.info("downloading %s into %s", source.uri, target)
    files = fetch.listing()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(ERROR, f"{source.uri}: cannot create the model folder: {exc.strerror}") from None
    _refuse_symlinks(root, target, source.uri)
    check_space(target, files, source.uri)
    progress = Progress(source.uri, files)
    for remote in files:
        download_file(target, remote, fetch, progress, source.uri)
    write_marker(target, source.uri, fetch.revision, files)
    progress.finished(fetch.revision)


def _refuse_symlinks(root: Path, target: Path, uri: str) -> None:
    """The cache-key and revision folders must be real folders below ``root`` (the lock file and every
    download go there): a planted symlink could point anywhere."""
    for path in (target.parent, target):
        if path.is_symlink():
            raise DownloadError(REFUSED, f"{uri}: {path.relative_to(root)} in the model root is a symlink")


def _fetcher(source: ModelSource, env: Mapping[str, str]) -> HubFetch | S3Fetch:
    """The store's client, imported only when a download is needed (boto3 is slow to import)."""
    if isinstance(source, HubSource):
        from inference_runtime.sources.hub import HubFetch

        return HubFetch(source, env)
    from inference_runtime.sources.s3 import S3Fetch

    return S3Fetch(source, env)
