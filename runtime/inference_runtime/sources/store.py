"""The local side of a download: confined names, partial files, checks, the lock and the complete marker.

Every remote file is written as ``<name>.partial`` inside the target folder, checked (size always, a digest
where the store publishes one), then renamed into place. The marker (``COMPLETE_MARKER``, a JSON manifest)
is written last and atomically: a folder without it is never served, so an interrupted download is at
worst a folder of checked files and one ``.partial`` the next run resumes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from inference_policy.model_source import COMPLETE_MARKER

logger = logging.getLogger("inference_runtime.sources")

PARTIAL_SUFFIX = ".partial"
CHUNK = 1 << 20
PROGRESS_EVERY = 2.0  # seconds between progress lines
MAX_NAME = 1024
MAX_FILES = 100_000

# The categories a failure's one line starts with; the operator turns them into its condition message.
NOT_FOUND = "not found"
UNAUTHORISED = "unauthorised"
NO_SPACE = "no space"
CHECKSUM = "checksum mismatch"
REFUSED = "refused"
UNREACHABLE = "unreachable"
ERROR = "error"


class DownloadError(Exception):
    """A download failed; ``str()`` is the one line to show: ``<category>: <what happened>``.

    Messages are written here, never copied from a remote answer or an exception, so they carry no
    credential and no traceback.
    """

    def __init__(self, category: str, message: str) -> None:
        super().__init__(f"{category}: {message}")
        self.category = category


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file of a listing, its name already confined (see :func:`safe_name`)."""

    name: str
    size: int
    sha256: str | None = None  # hex digest, where the store publishes it
    md5: str | None = None  # hex digest (an S3 ETag of a single-part upload)


def safe_name(raw: object, uri: str) -> str:
    """A remote file name as a relative POSIX path, or ``refused`` if it could point anywhere else."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_NAME:
        raise DownloadError(REFUSED, f"{uri}: the listing has a file name that is empty or too long")
    shown = raw.encode("unicode_escape").decode("ascii")[:200]
    if "\x00" in raw or "\\" in raw or raw.startswith("/") or any(ord(c) < 32 for c in raw):
        raise DownloadError(
            REFUSED, f"{uri}: the listing names the file '{shown}', which is not a relative path"
        )
    parts = raw.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise DownloadError(REFUSED, f"{uri}: the listing names the file '{shown}', which leaves its folder")
    if parts[-1].endswith(PARTIAL_SUFFIX) or raw == COMPLETE_MARKER:
        raise DownloadError(REFUSED, f"{uri}: the listing names the file '{shown}', a name the cache uses")
    return str(PurePosixPath(*parts))


def confined(target: Path, name: str, uri: str) -> Path:
    """``target/name``, refused if any existing part of it is a symlink or it resolves outside ``target``."""
    path = target.joinpath(*name.split("/"))
    probe = target
    for part in name.split("/"):
        probe = probe / part
        if probe.is_symlink():
            raise DownloadError(REFUSED, f"{uri}: '{name}' would be written through a symlink")
    if not path.resolve().is_relative_to(target.resolve()):
        raise DownloadError(REFUSED, f"{uri}: '{name}' resolves outside the model folder")
    return path


class Progress:
    """Logs ``download progress: ...`` at most every :data:`PROGRESS_EVERY` seconds, and the last line."""

    def __init__(self, uri: str, files: list[RemoteFile]) -> None:
        self.uri = uri
        self.total_bytes = sum(f.size for f in files)
        self.total_files = len(files)
        self.done_bytes = 0
        self.done_files = 0
        self.started = time.monotonic()
        self._last = 0.0

    def add(self, nbytes: int) -> None:
        self.done_bytes += nbytes
        self._maybe_log()

    def file_done(self) -> None:
        self.done_files += 1
        self._maybe_log(force=self.done_files == self.total_files)

    def _maybe_log(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_EVERY:
            self._last = now
            percent = 100 * self.done_bytes // self.total_bytes if self.total_bytes else 100
            logger.info(
                "download progress: %d%% (%s of %s, %d of %d files)",
                percent,
                mib(self.done_bytes),
                mib(self.total_bytes),
                self.done_files,
                self.total_files,
            )

    def finished(self, revision: str) -> None:
        logger.info(
            "downloaded %s at revision %s (%d files, %s, %d bytes) in %.1f s",
            self.uri,
            revision,
            self.total_files,
            mib(self.total_bytes),
            self.total_bytes,
            time.monotonic() - self.started,
        )


def mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.1f} MiB"


def check_space(target: Path, files: list[RemoteFile], uri: str) -> None:
    """``no space`` before the first byte when what is still missing cannot fit."""
    missing = 0
    for remote in files:
        path = target.joinpath(*remote.name.split("/"))
        if not _complete(path, remote):
            partial = _partial(path)
            missing += remote.size - (partial.stat().st_size if partial.is_file() else 0)
    free = _disk_free(target)
    if missing > free:
        raise DownloadError(NO_SPACE, f"{uri}: needs {mib(missing)} more, {mib(free)} free in the model root")


def _disk_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _complete(path: Path, remote: RemoteFile) -> bool:
    """A file already in place was checked before its rename: its size is enough to trust it."""
    return path.is_file() and not path.is_symlink() and path.stat().st_size == remote.size


class Fetch(Protocol):
    """How a store sends one file's bytes."""

    def stream(
        self, remote: RemoteFile, offset: int
    ) -> contextlib.AbstractContextManager[tuple[int, Iterator[bytes], RemoteFile]]:
        """Yields ``(start, chunks, checked)``: ``start`` is ``offset``, or 0 when the store sent the whole
        file; ``checked`` is ``remote`` with the digests the store gave for this object."""


def download_file(target: Path, remote: RemoteFile, fetch: Fetch, progress: Progress, uri: str) -> None:
    """Fetch one file into ``<name>.partial`` (resuming one left over), check it, rename it into place."""
    path = confined(target, remote.name, uri)
    if _complete(path, remote):
        progress.add(remote.size)
        progress.file_done()
        return
    partial = confined(target, remote.name + PARTIAL_SUFFIX, uri)
    checked = remote
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # fails where a listed file has the folder's name
        offset = partial.stat().st_size if partial.is_file() else 0
        if offset > remote.size:  # longer than it can be: start again
            offset = 0
        if offset == remote.size:  # whole already: checked below
            progress.add(offset)
        else:
            checked = _fetch_into(partial, remote, fetch, progress, offset, uri)
    except OSError as exc:
        raise _disk_error(exc, uri) from None
    except DownloadError as exc:
        if exc.category == CHECKSUM:  # bytes known to be wrong are never resumed from
            partial.unlink(missing_ok=True)
        raise
    _verify(partial, checked, uri)
    try:
        os.replace(partial, path)
    except OSError as exc:
        raise _disk_error(exc, uri) from None
    progress.file_done()


def _fetch_into(
    partial: Path, remote: RemoteFile, fetch: Fetch, progress: Progress, offset: int, uri: str
) -> RemoteFile:
    """Append to (``offset`` > 0) or rewrite the partial file with what the store sends."""
    with fetch.stream(remote, offset) as (start, chunks, checked):
        mode = "ab" if start and start == offset else "wb"
        written = offset if mode == "ab" else 0
        progress.add(written)
        with _open_nofollow(partial, mode) as out:
            for chunk in chunks:
                written += len(chunk)
                if written > remote.size:
                    raise DownloadError(CHECKSUM, f"{uri}: '{remote.name}' is longer than the listing says")
                out.write(chunk)
                progress.add(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    return checked


def _open_nofollow(path: Path, mode: str) -> IO[bytes]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o644), mode)


def _verify(partial: Path, remote: RemoteFile, uri: str) -> None:
    """Size, then the published digests; a mismatching file is deleted so a rerun fetches it afresh."""
    size = partial.stat().st_size
    if size < remote.size:  # kept: the next run resumes it
        raise DownloadError(
            UNREACHABLE, f"{uri}: the transfer of '{remote.name}' ended early; run again to resume"
        )
    problem = None
    if size != remote.size:
        problem = f"'{remote.name}' has {size} bytes, the listing says {remote.size}"
    elif remote.sha256 or remote.md5:
        sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        with partial.open("rb") as f:
            while block := f.read(CHUNK):
                sha256.update(block)
                md5.update(block)
        if remote.sha256 and sha256.hexdigest() != remote.sha256.lower():
            problem = f"'{remote.name}' does not have the published sha256 {remote.sha256}"
        elif remote.md5 and md5.hexdigest() != remote.md5.lower():
            problem = f"'{remote.name}' does not have the published MD5 {remote.md5}"
    if problem:
        partial.unlink(missing_ok=True)
        raise DownloadError(CHECKSUM, f"{uri}: {problem}")


def _disk_error(exc: OSError, uri: str) -> DownloadError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(NO_SPACE, f"{uri}: the model root is full")
    if exc.errno == errno.ELOOP:
        return DownloadError(REFUSED, f"{uri}: a file would be written through a symlink")
    return DownloadError(ERROR, f"{uri}: cannot write to the model root: {exc.strerror}")


def read_marker(target: Path) -> dict[str, Any] | None:
    """The manifest of a complete download whose files are all still there at their sizes, else None."""
    try:
        manifest = json.loads((target / COMPLETE_MARKER).read_text(encoding="utf-8"))
        files = manifest["files"]
        for name, size in files.items():
            path = target.joinpath(*name.split("/"))
            if path.is_symlink() or path.stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return manifest


def write_marker(target: Path, uri: str, revision: str, files: list[RemoteFile]) -> None:
    """The manifest, written to a temporary name and renamed: it exists whole or not at all."""
    manifest = {
        "uri": uri,
        "revision": revision,
        "files": {f.name: f.size for f in files},
        "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = target / (COMPLETE_MARKER + PARTIAL_SUFFIX)
    try:
        with _open_nofollow(tmp, "wb") as out:
            out.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target / COMPLETE_MARKER)
        dir_fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise _disk_error(exc, uri) from None


@contextlib.contextmanager
def folder_lock(target: Path, uri: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``<target>.lock``: one downloader per folder; the next waits for it."""
    lock_path = target.with_name(target.name + ".lock")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise DownloadError(
                ERROR, f"{uri} is not downloaded in the read-only model root {target.parent.parent}"
            ) from None
        raise _disk_error(exc, uri) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("another process is downloading %s; waiting for it", uri)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
