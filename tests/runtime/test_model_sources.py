"""Models from anywhere: ``inference-runtime`` downloading ``hf://`` and ``s3://`` sources to its model root.

Every case runs the real CLI in a fresh process against a real server on 127.0.0.1: moto's S3 server, and
the Hub stand-in of tests/fixtures/hub_standin.py (driven by the installed ``huggingface_hub`` client).
Failures must be one categorised line on stderr and in the termination log, never a traceback or a secret.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from botocore.config import Config

from fixtures.helpers import REPO, free_port, listening, wait_for
from fixtures.hub_standin import HubStandin, StandinRepo
from fixtures.prereq import missing
from fixtures.processes import stop_process
from fixtures.runtime_server import runtime_command, spawn_runtime, tiny_entry, write_config
from fixtures.s3_server import S3Server
from inference_policy.model_source import COMPLETE_MARKER, model_dir, parse_model_uri
from inference_runtime.sources.store import RemoteFile, write_marker

REPO_ID = "vif-test/tiny-llama"
URI = f"hf://{REPO_ID}"
PROGRESS = re.compile(r"download progress: (\d+)% \(\d+\.\d MiB of \d+\.\d MiB, (\d+) of (\d+) files\)")
CATEGORIES = (
    "not found: ",
    "unauthorised: ",
    "no space: ",
    "checksum mismatch: ",
    "refused: ",
    "unreachable: ",
    "error: ",
)
SECRET_TOKEN = "hf_" + "s3cr3t" * 6


def base_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any credential or Hub setting, plus ``extra``."""
    drop = ("HF_", "AWS_", "HUGGING")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **extra}


def run_cli(
    *args: str, env: dict[str, str], termination_log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [*runtime_command(), *args]
    if termination_log is not None:
        cmd += ["--termination-log", str(termination_log)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def download(
    uri: str, root: Path, env: dict[str, str], *args: str, log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "--download-only", "--model-uri", uri, "--model-root", str(root), *args, env=env, termination_log=log
    )


def read_only(cmd_args: list[str], root: Path) -> list[str]:
    """``cmd_args`` run with ``root`` mounted read-only (a private mount namespace: root ignores modes)."""
    if os.geteuid() != 0:
        missing("the read-only model root cases need root (a private mount namespace)")
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root), *cmd_args]


def assert_failed(done: subprocess.CompletedProcess[str], prefix: str, log: Path | None = None) -> str:
    """Exit 1, and the last stderr line (the only one not a log record) starts with ``prefix``."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(prefix), done.stderr
    assert line.startswith(CATEGORIES)
    if log is not None:
        assert log.read_text().strip() == line
    return line


def hub_repo(hub: HubStandin, tiny: Path, **kwargs: object) -> StandinRepo:
    repo = StandinRepo.from_folder(tiny, **kwargs)
    hub.repos[REPO_ID] = repo
    return repo


def hub_target(hub: HubStandin, root: Path, uri: str = URI, patterns: tuple[str, ...] = ()) -> Path:
    return model_dir(root, parse_model_uri(uri, patterns=patterns, hf_endpoint=hub.endpoint))


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def all_files(top: Path) -> list[str]:
    return sorted(p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file())


# --- the Hub ------------------------------------------------------------------------------------------


def test_hub_download_only_fetches_every_file_at_the_resolved_commit(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    repo = hub_repo(hub_standin, tiny_model_path)
    root = tmp_path / "models"
    done = download(URI, root, base_env(HF_ENDPOINT=hub_standin.endpoint))
    assert done.returncode == 0, done.stderr
    target = hub_target(hub_standin, root)
    marker = json.loads((target / COMPLETE_MARKER).read_text())
    assert marker["revision"] == repo.commit
    assert marker["uri"] == f"{URI}@main"
    assert marker["files"] == {name: len(data) for name, data in repo.files.items()}
    assert {k: v for k, v in folder_files(target).items() if k != COMPLETE_MARKER} == repo.files
    assert not [p for p in all_files(root) if p.endswith(".partial")]
    # One listing at the branch, then every file at the commit it resolved to.
    paths = [path for _, path, _ in hub_standin.requests]
    assert paths[0] == f"/api/models/{REPO_ID}/revision/main"
    resolved = sorted(p for p in paths if "/resolve/" in p)
    assert resolved == sorted(f"/{REPO_ID}/resolve/{repo.commit}/{name}" for name in repo.files)
    # LFS files through the Hub's redirect to its content host, as the real one sends them.
    lfs = sorted(f"/cdn/{REPO_ID}/{repo.commit}/{name}" for name in repo.files if repo.is_lfs(name))
    assert lfs and sorted(p for p in paths if p.startswith("/cdn/")) == lfs
    assert len(paths) == 1 + len(resolved) + len(lfs)
    progress = PROGRESS.findall(done.stderr)
    assert progress and progress[-1] == ("100", str(len(repo.files)), str(len(repo.files)))
    nbytes = sum(map(len, repo.files.values()))
    counts = rf"\({len(repo.files)} files, {nbytes / (1 << 20):.1f} MiB, {nbytes} bytes\)"
    last = rf"downloaded {re.escape(URI)}@main at revision {repo.commit} {counts} in \d+\.\d s"
    assert re.search(last, done.stderr), done.stderr


def test_hub_complete_download_is_served_without_any_request_even_read_only(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    hub_repo(hub_standin, tiny_model_path)
    root = tmp_path / "models"
    env = base_env(HF_ENDPOINT=hub_standin.endpoint)
    assert download(URI, root, env).returncode == 0
    hub_standin.requests.clear()
    again = download(URI, root, env)
    assert again.returncode == 0, again.stderr
    assert "already downloaded" in again.stderr
    cmd = [*runtime_command(), "--download-only", "--model-uri", URI, "--model-root", str(root)]
    on_read_only = subprocess.run(read_only(cmd, root), capture_output=True, text=True, env=env, timeout=300)
    assert on_read_only.returncode == 0, on_read_only.stderr
    assert hub_standin.requests == []


def test_read_only_root_without_the_download_is_one_clear_line(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    """What a pod sees when it starts before the download Job finished (the serving path)."""
    hub_repo(hub_standin, tiny_model_path)
    root = tmp_path / "models"
    root.mkdir()
    config = write_config(tmp_path, "tiny", tiny_entry(Path(URI)) | {"model_path": URI})
    log = tmp_path / "termination-log"
    cmd = [*runtime_command(), "--model-name", "tiny", "--config", str(config), "--model-root", str(root)]
    cmd += ["--termination-log", str(log)]
    env = base_env(HF_ENDPOINT=hub_standin.endpoint)
    done = subprocess.run(read_only(cmd, root), capture_output=True, text=True, env=env, timeout=300)
    line = assert_failed(done, "error: ", log)
    assert "read-only" in line
    assert hub_standin.requests == []


def test_hub_unknown_repository_is_not_found(hub_standin: HubStandin, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    done = download(
        "hf://vif-test/no-such-model",
        tmp_path / "models",
        base_env(HF_ENDPOINT=hub_standin.endpoint),
        log=log,
    )
    assert_failed(done, "not found: ", log)
    assert not (tmp_path / "models").exists() or not [
        p for p in all_files(tmp_path / "models") if not p.endswith(".lock")
    ]


@pytest.mark.parametrize("token", [None, "hf_wrong"], ids=["missing", "wrong"])
def test_hub_private_repository_needs_its_token(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path, token: str | None
) -> None:
    hub_repo(hub_standin, tiny_model_path, token=SECRET_TOKEN)
    env = base_env(HF_ENDPOINT=hub_standin.endpoint, **({"HF_TOKEN": token} if token else {}))
    log = tmp_path / "termination-log"
    done = download(URI, tmp_path / "models", env, log=log)
    line = assert_failed(done, "unauthorised: ", log)
    assert "HF_TOKEN" in line
    with_token = download(
        URI, tmp_path / "models", base_env(HF_ENDPOINT=hub_standin.endpoint, HF_TOKEN=SECRET_TOKEN)
    )
    assert with_token.returncode == 0, with_token.stderr
    assert SECRET_TOKEN not in with_token.stderr + with_token.stdout


def test_hub_bytes_that_do_not_match_the_published_sha256_are_refused(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    listed = (tiny_model_path / "model.safetensors").read_bytes()
    tampered = listed[:-8] + bytes(8)
    assert tampered != listed
    hub_repo(hub_standin, tiny_model_path, serve_instead={"model.safetensors": tampered})
    log = tmp_path / "termination-log"
    done = download(URI, tmp_path / "models", base_env(HF_ENDPOINT=hub_standin.endpoint), log=log)
    line = assert_failed(done, "checksum mismatch: ", log)
    assert "model.safetensors" in line
    target = hub_target(hub_standin, tmp_path / "models")
    assert not (target / COMPLETE_MARKER).exists()
    assert not (target / "model.safetensors").exists()
    assert not (target / "model.safetensors.partial").exists()


@pytest.mark.parametrize(
    "name", ["../x", "/etc/x", "a/../../x", "a\\..\\x", "a//x", "x\x00y", ".vif-complete"]
)
def test_hub_hostile_file_names_are_refused_and_nothing_is_written_outside(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path, name: str
) -> None:
    hub_repo(hub_standin, tiny_model_path, extra_names=[name])
    root = tmp_path / "cache" / "models"
    log = tmp_path / "termination-log"
    done = download(URI, root, base_env(HF_ENDPOINT=hub_standin.endpoint), log=log)
    assert_failed(done, "refused: ", log)
    assert [p for p in all_files(tmp_path) if not p.startswith("cache/models/")] == ["termination-log"]
    assert not [p for p in all_files(root) if not p.endswith(".lock")]  # refused before the first byte
    assert not [r for r in hub_standin.requests if "/resolve/" in r[1]]


@pytest.mark.parametrize(
    ("sibling", "prefix"),
    [
        ({"rfilename": 5, "size": 1}, "refused: "),
        ({"rfilename": "x.json"}, "error: "),
        ({"rfilename": "x.json", "size": True}, "error: "),
        ({"size": 1}, "error: "),
        ("not an object", "error: "),
    ],
)
def test_hub_listing_of_the_wrong_shape_is_one_line(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path, sibling: object, prefix: str
) -> None:
    hub_repo(hub_standin, tiny_model_path, raw_siblings=[sibling])
    done = download(URI, tmp_path / "models", base_env(HF_ENDPOINT=hub_standin.endpoint))
    assert "unexpectedly" not in assert_failed(done, prefix)


def test_hub_file_name_through_a_planted_symlink_is_refused(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    hub_repo(hub_standin, tiny_model_path)
    hub_standin.repos[REPO_ID].files["sub/x.json"] = b"{}"
    root = tmp_path / "models"
    outside = tmp_path / "outside"
    outside.mkdir()
    target = hub_target(hub_standin, root)
    target.mkdir(parents=True)
    (target / "sub").symlink_to(outside)
    done = download(URI, root, base_env(HF_ENDPOINT=hub_standin.endpoint))
    line = assert_failed(done, "refused: ")
    assert "symlink" in line
    assert list(outside.iterdir()) == []


def test_hub_interrupted_download_resumes_and_completes(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    repo = hub_repo(hub_standin, tiny_model_path, drop_after={"model.safetensors": 100_000})
    root = tmp_path / "models"
    env = base_env(HF_ENDPOINT=hub_standin.endpoint)
    first = download(URI, root, env)
    assert_failed(first, "unreachable: ")
    target = hub_target(hub_standin, root)
    assert not (target / COMPLETE_MARKER).exists()
    assert (target / "model.safetensors.partial").stat().st_size == 100_000
    hub_standin.requests.clear()
    second = download(URI, root, env)
    assert second.returncode == 0, second.stderr
    assert folder_files(target)["model.safetensors"] == repo.files["model.safetensors"]
    resumed = [r for r in hub_standin.requests if r[1].endswith("/model.safetensors")]
    assert resumed == [
        ("GET", f"/{REPO_ID}/resolve/{repo.commit}/model.safetensors", "bytes=100000-"),
        ("GET", f"/cdn/{REPO_ID}/{repo.commit}/model.safetensors", "bytes=100000-"),  # through the redirect
    ]
    assert json.loads((target / COMPLETE_MARKER).read_text())["revision"] == repo.commit


def test_hub_allow_patterns_fetch_only_matching_files(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    repo = hub_repo(hub_standin, tiny_model_path)
    root = tmp_path / "models"
    done = download(URI, root, base_env(HF_ENDPOINT=hub_standin.endpoint), "--allow-pattern", "*.json")
    assert done.returncode == 0, done.stderr
    target = hub_target(hub_standin, root, patterns=("*.json",))
    assert target != hub_target(hub_standin, root)
    expected = sorted(n for n in repo.files if n.endswith(".json"))
    assert sorted(json.loads((target / COMPLETE_MARKER).read_text())["files"]) == expected


def test_two_downloads_of_one_folder_fetch_each_file_once(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    repo = hub_repo(hub_standin, tiny_model_path)
    root = tmp_path / "models"
    env = base_env(HF_ENDPOINT=hub_standin.endpoint)
    cmd = [*runtime_command(), "--download-only", "--model-uri", URI, "--model-root", str(root)]
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    fetched = sorted(path for _, path, _ in hub_standin.requests if "/resolve/" in path)
    assert fetched == sorted(f"/{REPO_ID}/resolve/{repo.commit}/{name}" for name in repo.files)


def test_a_second_downloader_waits_for_the_lock_then_finds_the_folder_complete(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    """This test is the first downloader: it holds the folder's lock, fills the folder, then lets go."""
    repo = hub_repo(hub_standin, tiny_model_path)
    root = tmp_path / "models"
    target = hub_target(hub_standin, root)
    target.parent.mkdir(parents=True)
    log = tmp_path / "second.log"
    cmd = [*runtime_command(), "--download-only", "--model-uri", URI, "--model-root", str(root)]
    with (target.parent / f"{target.name}.lock").open("w") as lock, log.open("w") as out:
        fcntl.flock(lock, fcntl.LOCK_EX)
        second = subprocess.Popen(cmd, env=base_env(HF_ENDPOINT=hub_standin.endpoint), stderr=out)
        wait_for(lambda: "another process is downloading" in log.read_text(), what="the second to wait")
        assert second.poll() is None
        shutil.copytree(tiny_model_path, target)
        write_marker(
            target, f"{URI}@main", repo.commit, [RemoteFile(n, len(d)) for n, d in repo.files.items()]
        )
        fcntl.flock(lock, fcntl.LOCK_UN)
        assert second.wait(120) == 0, log.read_text()
    assert "was downloaded by another process" in log.read_text()
    assert hub_standin.requests == []


def test_download_only_from_a_config_entry(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    repo = hub_repo(hub_standin, tiny_model_path)
    config = write_config(
        tmp_path, "tiny", {"model_path": f"{URI}@main", "allow_patterns": ["*.json", "*.jinja"]}
    )
    root = tmp_path / "models"
    env = base_env(HF_ENDPOINT=hub_standin.endpoint)
    done = run_cli(
        "--download-only", "--model-name", "tiny", "--config", str(config), "--model-root", str(root), env=env
    )
    assert done.returncode == 0, done.stderr
    target = hub_target(hub_standin, root, patterns=("*.json", "*.jinja"))
    expected = sorted(n for n in repo.files if n.endswith((".json", ".jinja")))
    assert sorted(json.loads((target / COMPLETE_MARKER).read_text())["files"]) == expected


def test_model_uri_goes_with_download_only(tmp_path: Path) -> None:
    done = run_cli("--model-uri", URI, "--model-root", str(tmp_path), env=base_env())
    assert done.returncode == 2
    assert "--model-uri and --allow-pattern go with --download-only" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_model_uri_is_one_error_line(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    done = download("hf://../../etc", tmp_path / "models", base_env(), log=log)
    assert_failed(done, "error: ", log)
    assert not (tmp_path / "models").exists()


# --- S3 -----------------------------------------------------------------------------------------------


@pytest.fixture
def s3_bucket(s3_server: S3Server, tiny_model_path: Path) -> str:
    """A fresh bucket holding the tiny model under ``tiny/`` (config.json with a ChecksumSHA256), and the
    empty "folder" objects a console creates."""
    bucket = f"vif-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    for folder in ("tiny/", "tiny/empty/"):
        client.put_object(Bucket=bucket, Key=folder, Body=b"")
    s3_server.upload_folder(bucket, "tiny/", tiny_model_path, sha256_for=("config.json",))
    return bucket


def test_s3_download_only_fetches_every_object(
    s3_server: S3Server, s3_bucket: str, tiny_model_path: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    uri = f"s3://{s3_bucket}/tiny"
    done = download(uri, root, base_env(**s3_server.env()))
    assert done.returncode == 0, done.stderr
    target = model_dir(root, parse_model_uri(uri, s3_endpoint=s3_server.endpoint, s3_region="us-east-1"))
    expected = folder_files(tiny_model_path)
    assert {k: v for k, v in folder_files(target).items() if k != COMPLETE_MARKER} == expected
    marker = json.loads((target / COMPLETE_MARKER).read_text())
    assert marker["revision"] == "latest"
    assert marker["files"] == {name: len(data) for name, data in expected.items()}
    assert re.search(
        rf"downloaded s3://{s3_bucket}/tiny/ at revision latest \({len(expected)} files, ", done.stderr
    )
    assert s3_server.secret_access_key not in done.stderr
    again = download(uri, root, base_env(**s3_server.env()))
    assert again.returncode == 0 and "already downloaded" in again.stderr


@pytest.mark.parametrize("key", ["tiny/../escape.json", "tiny//etc/x.json", "tiny/a/../../escape.json"])
def test_s3_hostile_keys_are_refused_and_nothing_is_written_outside(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, key: str
) -> None:
    s3_server.client().put_object(Bucket=s3_bucket, Key=key, Body=b"{}")
    root = tmp_path / "cache" / "models"
    log = tmp_path / "termination-log"
    done = download(f"s3://{s3_bucket}/tiny", root, base_env(**s3_server.env()), log=log)
    assert_failed(done, "refused: ", log)
    assert [p for p in all_files(tmp_path) if not p.startswith("cache/models/")] == ["termination-log"]
    assert not [p for p in all_files(root) if not p.endswith(".lock")]  # refused before the first byte


def test_s3_unknown_bucket_is_not_found(s3_server: S3Server, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    done = download("s3://vif-no-such-bucket/tiny", tmp_path / "models", base_env(**s3_server.env()), log=log)
    assert_failed(done, "not found: ", log)


def test_s3_empty_prefix_is_not_found(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    done = download(f"s3://{s3_bucket}/tin", tmp_path / "models", base_env(**s3_server.env()))
    assert "no objects" in assert_failed(done, "not found: ")


def test_s3_wrong_secret_is_unauthorised(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    wrong = "wrong" + s3_server.secret_access_key[5:][::-1]
    env = base_env(**(s3_server.env() | {"AWS_SECRET_ACCESS_KEY": wrong}))
    log = tmp_path / "termination-log"
    done = download(f"s3://{s3_bucket}/tiny", tmp_path / "models", env, log=log)
    assert_failed(done, "unauthorised: ", log)
    assert wrong not in done.stderr and s3_server.access_key_id not in done.stderr


@contextmanager
def corrupting_proxy(upstream: str, damaged: str) -> Iterator[str]:
    """tests/fixtures/corrupting_proxy.py on 127.0.0.1 in front of ``upstream``, damaging every file whose
    name ends with ``damaged``; its endpoint."""
    port = free_port()
    proxy = [sys.executable, str(REPO / "tests" / "fixtures" / "corrupting_proxy.py")]
    proc = subprocess.Popen(
        [*proxy, "127.0.0.1", str(port), upstream, damaged],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: proc.poll() is not None or listening(port), what="the corrupting proxy")
        assert proc.poll() is None
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, grace=5)


@pytest.mark.parametrize(
    "damaged",
    [
        pytest.param("config.json", id="caught-by-the-stores-own-checksum"),  # ChecksumSHA256, and CRC32
        pytest.param("tokenizer.json", id="caught-by-the-etag-md5"),  # stored without a flexible checksum
    ],
)
def test_s3_bytes_damaged_on_the_way_are_a_checksum_mismatch(
    s3_server: S3Server, s3_bucket: str, tiny_model_path: Path, tmp_path: Path, damaged: str
) -> None:
    # tokenizer.json again, as a client that adds no checksum of its own stores it: only its ETag (the MD5
    # of a single-part upload) names the bytes.
    plain = s3_server.client(config=Config(request_checksum_calculation="when_required"))
    tokenizer = (tiny_model_path / "tokenizer.json").read_bytes()
    plain.put_object(Bucket=s3_bucket, Key="tiny/tokenizer.json", Body=tokenizer)
    head = plain.head_object(Bucket=s3_bucket, Key="tiny/tokenizer.json", ChecksumMode="ENABLED")
    assert not [k for k in head if k.startswith("Checksum") and k != "ChecksumType"], head
    root, log = tmp_path / "models", tmp_path / "termination-log"
    uri = f"s3://{s3_bucket}/tiny"
    with corrupting_proxy(s3_server.endpoint, damaged) as endpoint:
        env = base_env(**(s3_server.env() | {"AWS_ENDPOINT_URL": endpoint}))
        line = assert_failed(download(uri, root, env, log=log), "checksum mismatch: ", log)
    assert damaged in line and s3_server.secret_access_key not in line
    target = model_dir(root, parse_model_uri(uri, s3_endpoint=endpoint, s3_region="us-east-1"))
    assert not (target / COMPLETE_MARKER).exists()
    assert not [p for p in target.rglob("*") if p.name in (damaged, damaged + ".partial")]


# --- the real engine ----------------------------------------------------------------------------------


@pytest.mark.engine
def test_runtime_serves_a_model_it_downloaded_from_the_hub(
    hub_standin: HubStandin, tiny_model_path: Path, tmp_path: Path
) -> None:
    repo = hub_repo(hub_standin, tiny_model_path)
    root = tmp_path / "models"
    entry = tiny_entry(tiny_model_path) | {"model_path": URI}
    env = {"HF_ENDPOINT": hub_standin.endpoint, "HF_HUB_OFFLINE": "0"}
    server = spawn_runtime(tmp_path / "run", "tiny", entry, env=env, model_root=root)
    try:
        server.wait_ready()
        answer = httpx.post(
            server.base_url + "/v1/completions",
            json={"model": "tiny", "prompt": "Hello", "max_tokens": 4},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["text"] is not None
    finally:
        server.stop()
    log = server.log()
    assert "Traceback" not in log
    assert f"at revision {repo.commit}" in log
    assert str(hub_target(hub_standin, root)) in log
    digest = hashlib.sha256((hub_target(hub_standin, root) / "model.safetensors").read_bytes()).hexdigest()
    assert digest == hashlib.sha256(repo.files["model.safetensors"]).hexdigest()
