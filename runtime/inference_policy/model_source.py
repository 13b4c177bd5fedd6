"""Remote model sources (``hf://``, ``s3://``) and where their downloads live: one definition, two users.

The runtime downloads a source into ``model_dir(root, source)`` (``--download-only``, or before the engine
starts); the operator mounts that same folder of a shared cache volume into every pod serving the source and
names the download Job after ``cache_key``. Both must agree to the byte, so the layout is computed here only.

Dependency-free and pure: no network, no filesystem.

Layout: ``<root>/<cache_key>/<revision_dir>/`` holds the model's files; ``COMPLETE_MARKER`` inside it is
written last, after every file was checked, so a folder without it is never served.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import TypeVar

HF_SCHEME = "hf://"
S3_SCHEME = "s3://"
DEFAULT_HF_REVISION = "main"
S3_REVISION_DIR = "latest"  # S3 objects have no revision: one download per (bucket, prefix, endpoint)
COMPLETE_MARKER = ".vif-complete"  # JSON manifest: resolved revision, files and sizes; written last

_HF_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HF_REPO = re.compile(rf"^(?:{_HF_NAME}/)?{_HF_NAME}$")
_HF_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,128}$")
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()/ -]{0,1024}$")  # S3's "safe characters", no leading '/'
_Root = TypeVar("_Root", bound=PurePath)
_PATTERN = re.compile(r"^[A-Za-z0-9._*?\[\]/-]{1,200}$")


class SourceError(ValueError):
    """The source cannot be used as written; the message names what to change."""


@dataclass(frozen=True, slots=True)
class HubSource:
    """A Hugging Face Hub model repository at a revision (branch, tag or commit)."""

    repo: str
    revision: str = DEFAULT_HF_REVISION
    patterns: tuple[str, ...] = ()  # glob patterns of the files to fetch; empty: every file
    endpoint: str | None = None  # another Hub (HF_ENDPOINT); None: the public one

    def __post_init__(self) -> None:
        if not _HF_REPO.match(self.repo) or ".." in self.repo:
            raise SourceError(f"'{self.repo}' is not a Hugging Face repository id (owner/name)")
        if not _HF_REVISION.match(self.revision) or _has_dot_segment(self.revision):
            raise SourceError(f"'{self.revision}' is not a revision (branch, tag or commit)")
        if "--" in self.revision:  # revision_dir spells '/' as '--': 'a--b' would share the folder of 'a/b'
            raise SourceError(
                f"'{self.revision}' contains '--', which the cache folder names cannot tell from '/'"
            )
        for pattern in self.patterns:
            if not _PATTERN.match(pattern) or _has_dot_segment(pattern) or pattern.startswith("/"):
                raise SourceError(f"'{pattern}' is not a relative file pattern")

    @property
    def uri(self) -> str:
        return f"{HF_SCHEME}{self.repo}@{self.revision}"


@dataclass(frozen=True, slots=True)
class S3Source:
    """Every object under the folder ``prefix`` in an S3 (or S3-compatible) bucket.

    The prefix is a folder: ``models/llama`` is stored as ``models/llama/`` so that it never also
    matches ``models/llama2/``.
    """

    bucket: str
    prefix: str = ""
    endpoint: str | None = None  # an S3-compatible store (AWS_ENDPOINT_URL); None: AWS
    region: str | None = None

    def __post_init__(self) -> None:
        if not _S3_BUCKET.match(self.bucket) or ".." in self.bucket:
            raise SourceError(f"'{self.bucket}' is not an S3 bucket name")
        if not _S3_PREFIX.match(self.prefix) or self.prefix.startswith("/") or _has_dot_segment(self.prefix):
            raise SourceError(f"'{self.prefix}' is not an S3 key prefix (relative, no '.' or '..' segments)")
        if self.prefix and not self.prefix.endswith("/"):
            object.__setattr__(self, "prefix", self.prefix + "/")

    @property
    def uri(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}"


ModelSource = HubSource | S3Source


def is_remote(model_path: str) -> bool:
    """Whether a config's ``model_path`` names a remote source rather than a folder."""
    return model_path.startswith((HF_SCHEME, S3_SCHEME))


def parse_model_uri(
    uri: str,
    *,
    patterns: tuple[str, ...] = (),
    hf_endpoint: str | None = None,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
) -> ModelSource:
    """``hf://owner/name[@revision]`` or ``s3://bucket[/prefix]``; SourceError otherwise."""
    if uri.startswith(HF_SCHEME):
        repo, _, revision = uri[len(HF_SCHEME) :].partition("@")
        return HubSource(
            repo=repo, revision=revision or DEFAULT_HF_REVISION, patterns=patterns, endpoint=hf_endpoint
        )
    if uri.startswith(S3_SCHEME):
        if patterns:
            raise SourceError("file patterns apply to Hugging Face sources only")
        bucket, _, prefix = uri[len(S3_SCHEME) :].partition("/")
        return S3Source(bucket=bucket, prefix=prefix, endpoint=s3_endpoint, region=s3_region)
    raise SourceError(f"'{uri}' is neither an {HF_SCHEME} nor an {S3_SCHEME} URI")


def cache_key(source: ModelSource) -> str:
    """Folder name of a source in the cache: readable, and unique per what identifies the files.

    The revision is not part of it (it is the folder below), so a source's revisions sit together and the
    old ones can be found and removed. The hash covers the endpoint: two stores can hold a same-named
    repository or bucket with different files.
    """
    if isinstance(source, HubSource):
        identity = {
            "hf": source.repo,
            "endpoint": _endpoint(source.endpoint),
            "patterns": sorted(source.patterns),
        }
        readable = "hf-" + source.repo.replace("/", "--")
    else:
        identity = {"s3": source.bucket, "prefix": source.prefix, "endpoint": _endpoint(source.endpoint)}
        readable = "s3-" + source.bucket
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return f"{readable.lower()[:80]}-{digest}"


def revision_dir(source: ModelSource) -> str:
    """Folder name of the source's revision below its cache key ('/' in a branch name becomes '--')."""
    return source.revision.replace("/", "--") if isinstance(source, HubSource) else S3_REVISION_DIR


def model_dir(root: _Root, source: ModelSource) -> _Root:
    """Where ``source`` is (or will be) downloaded under ``root``."""
    return root / cache_key(source) / revision_dir(source)


def _endpoint(endpoint: str | None) -> str:
    return (endpoint or "").rstrip("/").lower()


def _has_dot_segment(value: str) -> bool:
    return any(part in {".", ".."} for part in value.split("/"))
