"""Units of the model-source contract (inference_policy.model_source) and of the download store.

The layout functions are shared with the operator, so their outputs are pinned here literally: a change
that moves a cache folder must fail a test, not silently orphan every download.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from inference_operator.reconciler import FINISHED_LINE
from inference_policy.model_source import (
    COMPLETE_MARKER,
    HubSource,
    S3Source,
    SourceError,
    cache_key,
    is_remote,
    model_dir,
    parse_model_uri,
    revision_dir,
)
from inference_runtime.sources import DownloadError, ensure_model
from inference_runtime.sources.store import (
    Progress,
    RemoteFile,
    check_space,
    confined,
    download_file,
    read_marker,
    safe_name,
    write_marker,
)

# --- URIs ---------------------------------------------------------------------------------------------


def test_hub_uris_parse_with_revision_patterns_and_endpoint() -> None:
    source = parse_model_uri("hf://owner/name@v1.0", patterns=("*.json",), hf_endpoint="http://127.0.0.1:9")
    assert source == HubSource(
        repo="owner/name", revision="v1.0", patterns=("*.json",), endpoint="http://127.0.0.1:9"
    )
    assert parse_model_uri("hf://owner/name").revision == "main"
    assert parse_model_uri("hf://gpt2").uri == "hf://gpt2@main"


def test_s3_uris_parse_with_the_prefix_as_a_folder() -> None:
    source = parse_model_uri("s3://models/llama", s3_endpoint="http://127.0.0.1:9", s3_region="eu-west-1")
    assert source == S3Source(
        bucket="models", prefix="llama/", endpoint="http://127.0.0.1:9", region="eu-west-1"
    )
    assert source.uri == "s3://models/llama/"
    assert parse_model_uri("s3://models").prefix == ""


@pytest.mark.parametrize(
    "uri",
    [
        "hf://",
        "hf://../etc",
        "hf://a/b/c",
        "hf://owner/name@../x",
        "hf://owner/name@a/../../b",
        "hf://owner/na me",
        "s3://",
        "s3://UPPER/x",
        "s3://ab/x",
        "s3://bucket//abs",
        "s3://bucket/a/../b",
        "s3://bucket/a\\b",
        "gs://bucket/x",
        "/models/x",
    ],
)
def test_bad_uris_are_refused(uri: str) -> None:
    with pytest.raises(SourceError):
        parse_model_uri(uri)


@pytest.mark.parametrize("pattern", ["../*", "/etc/*", "a/../*", "x\x00"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(SourceError):
        parse_model_uri("hf://owner/name", patterns=(pattern,))


def test_patterns_are_for_hub_sources_only() -> None:
    with pytest.raises(SourceError, match="Hugging Face"):
        parse_model_uri("s3://bucket/x", patterns=("*.json",))


def test_remote_paths_are_told_from_folders() -> None:
    assert is_remote("hf://a/b") and is_remote("s3://bucket")
    assert not is_remote("models/tiny") and not is_remote("/models/hf:/x")


# --- the cache layout (shared with the operator: pinned literally) --------------------------------------


def test_cache_layout_is_stable() -> None:
    hub = parse_model_uri("hf://Owner/Name@refs/pr/1")
    assert cache_key(hub) == "hf-owner--name-" + cache_key(hub)[-10:]
    assert revision_dir(hub) == "refs--pr--1"
    assert model_dir(PurePosixPath("/models"), hub) == PurePosixPath("/models", cache_key(hub), "refs--pr--1")
    s3 = parse_model_uri("s3://models/llama")
    assert revision_dir(s3) == "latest"
    assert cache_key(s3).startswith("s3-models-")
    assert re.fullmatch(r"[a-z0-9.-]+-[0-9a-f]{10}", cache_key(hub))


def test_cache_key_separates_what_identifies_the_files() -> None:
    base = parse_model_uri("hf://owner/name")
    assert cache_key(base) == cache_key(parse_model_uri("hf://owner/name@v2"))  # revisions sit together
    assert cache_key(base) != cache_key(parse_model_uri("hf://owner/name", hf_endpoint="http://127.0.0.1:1"))
    assert cache_key(base) != cache_key(parse_model_uri("hf://owner/name", patterns=("*.json",)))
    assert cache_key(parse_model_uri("hf://owner/name", patterns=("a", "b"))) == cache_key(
        parse_model_uri("hf://owner/name", patterns=("b", "a"))
    )
    assert cache_key(parse_model_uri("hf://a", hf_endpoint="http://127.0.0.1:1/")) == cache_key(
        parse_model_uri("hf://a", hf_endpoint="HTTP://127.0.0.1:1")
    )
    s3 = parse_model_uri("s3://models/llama")
    assert cache_key(s3) != cache_key(parse_model_uri("s3://models/llama2"))
    assert cache_key(s3) == cache_key(parse_model_uri("s3://models/llama/"))


def test_revisions_that_would_share_a_folder_are_refused() -> None:
    """'a/b' is stored as 'a--b': a revision spelt 'a--b' would land in the same folder."""
    with pytest.raises(SourceError, match="--"):
        parse_model_uri("hf://owner/name@a--b")


# --- names from a listing -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["config.json", "sub/dir/model.safetensors", "a.b/c-d_e"])
def test_plain_names_pass(name: str) -> None:
    assert safe_name(name, "hf://x@main") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x",
        "/etc/x",
        "a/../../x",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "x\x00",
        "x\ny",
        COMPLETE_MARKER,
        "a.partial",
    ],
)
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(DownloadError) as caught:
        safe_name(name, "hf://x@main")
    assert caught.value.category == "refused"
    assert str(caught.value).startswith("refused: hf://x@main: ")


def test_non_string_names_are_refused() -> None:
    with pytest.raises(DownloadError, match=r"^refused: "):
        safe_name(None, "s3://b/")


def test_names_through_a_symlink_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "link").symlink_to(tmp_path)
    with pytest.raises(DownloadError, match=r"^refused: .*symlink"):
        confined(target, "link/x", "hf://x@main")
    assert confined(target, "sub/x", "hf://x@main") == target / "sub" / "x"


# --- one file: partial name, checks, rename -----------------------------------------------------------


class StoreStandin:
    """Stands in for a remote store's file transfer: serves ``data`` from an offset, records the offsets."""

    def __init__(self, data: bytes, honour_range: bool = True) -> None:
        self.data = data
        self.honour_range = honour_range
        self.offsets: list[int] = []

    @contextlib.contextmanager
    def stream(self, remote: RemoteFile, offset: int) -> Iterator[tuple[int, Iterator[bytes], RemoteFile]]:
        self.offsets.append(offset)
        start = offset if self.honour_range else 0
        yield start, iter([self.data[start : start + 7], self.data[start + 7 :]]), remote


def remote_for(data: bytes, name: str = "w.bin", **digests: str) -> RemoteFile:
    return RemoteFile(name=name, size=len(data), **digests)


def progress_for(*files: RemoteFile) -> Progress:
    return Progress("hf://x@main", list(files))


DATA = bytes(range(256)) * 8


def test_a_file_is_checked_then_renamed(tmp_path: Path) -> None:
    remote = remote_for(DATA, sha256=hashlib.sha256(DATA).hexdigest(), md5=hashlib.md5(DATA).hexdigest())
    download_file(tmp_path, remote, StoreStandin(DATA), progress_for(remote), "hf://x@main")
    assert (tmp_path / "w.bin").read_bytes() == DATA
    assert not (tmp_path / "w.bin.partial").exists()


@pytest.mark.parametrize("digest", ["sha256", "md5"])
def test_a_digest_mismatch_deletes_the_partial_file(tmp_path: Path, digest: str) -> None:
    wrong = hashlib.sha256(b"other").hexdigest() if digest == "sha256" else hashlib.md5(b"other").hexdigest()
    remote = remote_for(DATA, **{digest: wrong})
    with pytest.raises(DownloadError, match=r"^checksum mismatch: hf://x@main: 'w\.bin'"):
        download_file(tmp_path, remote, StoreStandin(DATA), progress_for(remote), "hf://x@main")
    assert list(tmp_path.iterdir()) == []


def test_more_bytes_than_listed_is_a_mismatch(tmp_path: Path) -> None:
    remote = RemoteFile(name="w.bin", size=10)
    with pytest.raises(DownloadError, match=r"^checksum mismatch: .*longer"):
        download_file(tmp_path, remote, StoreStandin(DATA), progress_for(remote), "hf://x@main")
    assert not (tmp_path / "w.bin").exists() and not (tmp_path / "w.bin.partial").exists()


def test_fewer_bytes_than_listed_keeps_the_partial_for_a_rerun(tmp_path: Path) -> None:
    remote = RemoteFile(name="w.bin", size=len(DATA) + 1)
    with pytest.raises(DownloadError, match=r"^unreachable: .*ended early"):
        download_file(tmp_path, remote, StoreStandin(DATA), progress_for(remote), "hf://x@main")
    assert (tmp_path / "w.bin.partial").read_bytes() == DATA


@pytest.mark.parametrize("honour_range", [True, False], ids=["resumed", "store-sent-all"])
def test_a_partial_file_is_resumed(tmp_path: Path, honour_range: bool) -> None:
    (tmp_path / "w.bin.partial").write_bytes(DATA[:100])
    remote = remote_for(DATA, sha256=hashlib.sha256(DATA).hexdigest())
    store = StoreStandin(DATA, honour_range=honour_range)
    download_file(tmp_path, remote, store, progress_for(remote), "hf://x@main")
    assert store.offsets == [100]
    assert (tmp_path / "w.bin").read_bytes() == DATA


def test_a_whole_partial_file_is_checked_without_a_transfer(tmp_path: Path) -> None:
    (tmp_path / "w.bin.partial").write_bytes(DATA)
    remote = remote_for(DATA, sha256=hashlib.sha256(DATA).hexdigest())
    store = StoreStandin(b"")
    download_file(tmp_path, remote, store, progress_for(remote), "hf://x@main")
    assert store.offsets == []
    assert (tmp_path / "w.bin").read_bytes() == DATA


def test_a_planted_partial_symlink_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    target = tmp_path / "model"
    target.mkdir()
    (target / "w.bin.partial").symlink_to(outside)
    remote = remote_for(DATA)
    with pytest.raises(DownloadError, match=r"^refused: "):
        download_file(target, remote, StoreStandin(DATA), progress_for(remote), "hf://x@main")
    assert outside.read_bytes() == b"keep"


# --- the marker ---------------------------------------------------------------------------------------


def test_the_marker_is_a_manifest_and_is_checked_against_the_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"{}")
    files = [RemoteFile(name="a.json", size=2)]
    assert read_marker(tmp_path) is None
    write_marker(tmp_path, "hf://x@main", "0" * 40, files)
    manifest = json.loads((tmp_path / COMPLETE_MARKER).read_text())
    assert manifest["uri"] == "hf://x@main" and manifest["revision"] == "0" * 40
    assert manifest["files"] == {"a.json": 2}
    assert read_marker(tmp_path) == manifest
    (tmp_path / "a.json").write_bytes(b"{ }")  # a file changed or lost since: not complete any more
    assert read_marker(tmp_path) is None
    (tmp_path / COMPLETE_MARKER).write_text("{not json")
    assert read_marker(tmp_path) is None


def test_a_complete_folder_is_returned_without_a_client(tmp_path: Path) -> None:
    source = parse_model_uri("hf://owner/name", hf_endpoint="http://127.0.0.1:1")  # nothing listens there
    target = model_dir(tmp_path, source)
    target.mkdir(parents=True)
    (target / "config.json").write_bytes(b"{}")
    write_marker(target, source.uri, "1" * 40, [RemoteFile(name="config.json", size=2)])
    assert read_marker(target) is not None
    assert ensure_model(source, tmp_path, env={}) == target


# --- progress lines (the operator parses the last one) -----------------------------------------------


def test_progress_lines_have_the_documented_shape(caplog: pytest.LogCaptureFixture) -> None:
    files = [RemoteFile(name="a", size=3 << 20), RemoteFile(name="b", size=1 << 20)]
    progress = Progress("s3://bucket/x/", files)
    with caplog.at_level(logging.INFO, logger="inference_runtime.sources"):
        progress.add(3 << 20)
        progress.file_done()
        progress.add(1 << 20)
        progress.file_done()
        progress.finished("latest")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "download progress: 75% (3.0 MiB of 4.0 MiB, 0 of 2 files)"  # the first, at once
    assert lines[-2] == "download progress: 100% (4.0 MiB of 4.0 MiB, 2 of 2 files)"
    assert re.fullmatch(
        r"downloaded s3://bucket/x/ at revision latest \(2 files, 4\.0 MiB, 4194304 bytes\) in \d+\.\d s",
        lines[-1],
    )
    found = FINISHED_LINE.search(lines[-1])  # what the operator reads back for its metrics
    assert found is not None and found["bytes"] == str(4 << 20)


# --- S3 digests ---------------------------------------------------------------------------------------


def test_s3_digests_are_taken_only_where_they_describe_the_bytes() -> None:
    from inference_runtime.sources.s3 import _with_digests

    remote = RemoteFile(name="w", size=3)
    md5 = hashlib.md5(b"abc").hexdigest()
    sha_b64 = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="  # base64 of sha256(b"abc")
    plain = _with_digests(
        remote, {"ETag": f'"{md5}"', "ChecksumSHA256": sha_b64, "ContentLength": 3}, "s3://b/"
    )
    assert plain.md5 == md5 and plain.sha256 == hashlib.sha256(b"abc").hexdigest()
    multipart = _with_digests(remote, {"ETag": '"0123-2"', "ChecksumSHA256": sha_b64 + "-2"}, "s3://b/")
    assert multipart.md5 is None and multipart.sha256 is None
    kms = _with_digests(remote, {"ETag": f'"{md5}"', "ServerSideEncryption": "aws:kms"}, "s3://b/")
    assert kms.md5 is None
    with pytest.raises(DownloadError, match=r"^error: s3://b/: 'w' changed size"):
        _with_digests(remote, {"ContentLength": 4}, "s3://b/")


def test_hub_offline_mode_is_one_line_saying_what_to_set(tmp_path: Path) -> None:
    """The runtime image sets HF_HUB_OFFLINE=1 for vLLM: a download must say how to allow it."""
    from huggingface_hub import constants

    source = parse_model_uri("hf://owner/name", hf_endpoint="http://127.0.0.1:1")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        with pytest.raises(DownloadError, match=r"^error: .*set HF_HUB_OFFLINE=0"):
            ensure_model(source, tmp_path, env={})
    assert read_marker(model_dir(tmp_path, source)) is None


def test_too_little_space_is_refused_before_the_first_byte(tmp_path: Path) -> None:
    files = [RemoteFile(name="huge.bin", size=1 << 60)]
    with pytest.raises(DownloadError, match=r"^no space: s3://b/: needs "):
        check_space(tmp_path, files, "s3://b/")
    assert list(tmp_path.iterdir()) == []


def test_a_planted_cache_folder_symlink_gets_nothing_written_through_it(tmp_path: Path) -> None:
    source = parse_model_uri("hf://owner/name", hf_endpoint="http://127.0.0.1:1")
    root, outside = tmp_path / "models", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / cache_key(source)).symlink_to(outside)
    with pytest.raises(DownloadError, match=r"^refused: .*symlink"):
        ensure_model(source, root, env={})
    assert list(outside.iterdir()) == []


def test_a_file_and_a_folder_of_one_name_is_one_error_line(tmp_path: Path) -> None:
    """S3 can hold both ``x`` and ``x/y``; a folder cannot hold both."""
    files = [RemoteFile(name="x", size=len(DATA)), RemoteFile(name="x/y", size=len(DATA))]
    progress = progress_for(*files)
    download_file(tmp_path, files[0], StoreStandin(DATA), progress, "s3://b/")
    with pytest.raises(DownloadError, match=r"^error: s3://b/: cannot write to the model root"):
        download_file(tmp_path, files[1], StoreStandin(DATA), progress, "s3://b/")
