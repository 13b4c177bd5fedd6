"""What an InferenceModel's author may not ask for: code-loading engine arguments and environment, host
folders and images the cluster admin did not allow. Each is an InvalidSpec naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from inference_operator.api import v1alpha1 as api
from inference_operator.api.policy import check_cluster_policy
from inference_operator.reconciler import describe
from inference_operator.settings import parse
from inference_policy import engine as policy


def refusal(spec: dict[str, Any], **allowed: tuple[str, ...]) -> str:
    """describe() of why ``spec`` is refused (the status message), '' when it passes."""
    try:
        parsed = api.InferenceModelSpec.model_validate({"model": {"path": "m"}, **spec})
        check_cluster_policy(
            parsed,
            host_path_prefixes=allowed.get("host_paths", ()),
            image_prefixes=allowed.get("images", ()),
        )
    except (ValidationError, ValueError) as exc:
        return describe(exc)
    return ""


@pytest.mark.parametrize("name", sorted(policy.CODE_LOADING_ENGINE_ARGS))
def test_each_code_loading_engine_argument_is_refused(name: str) -> None:
    outer, _, inner = name.partition(".")
    value: Any = True if name == "trust_remote_code" else "vif_canary.Thing"
    message = refusal({"engineArgs": {outer: {inner: value}} if inner else {outer: value}})
    assert message.startswith("spec.engineArgs: ")
    assert f"'{name}'" in message


def test_built_in_engine_argument_values_and_plain_settings_pass() -> None:
    assert refusal({"engineArgs": {"enforce_eager": True, "max_num_seqs": 4, "worker_cls": "auto"}}) == ""
    assert refusal({"engineArgs": {"tokenizer": "tok", "generation_config": "vllm"}}) == ""


@pytest.mark.parametrize("raw", ["/etc", "../etc", "tok/../../etc"])
def test_path_engine_arguments_stay_under_models(raw: str) -> None:
    assert "spec.engineArgs: engineArgs.tokenizer" in refusal({"engineArgs": {"tokenizer": raw}})


ENV_REFUSED = sorted(
    {*policy.CODE_LOADING_ENV, *policy.PROCESS_START_ENV, *policy.SPEC_REFUSED_ENV, "LD_BIND_NOW", "PYTHONX"}
)


@pytest.mark.parametrize("name", ENV_REFUSED)
def test_env_may_not_load_code_or_change_the_loader(name: str) -> None:
    message = refusal({"env": [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": name, "value": "x"}]})
    assert message.startswith(f"spec.env: {name} may not be set: ")


def test_plain_env_passes() -> None:
    assert refusal({"env": [{"name": "OMP_NUM_THREADS", "value": "2"}, {"name": "VLLM_LOGGING_LEVEL"}]}) == ""


def host(path: str) -> dict[str, Any]:
    return {"model": {"path": "m", "source": {"hostPath": {"path": path}}}}


@pytest.mark.parametrize("path", ["/", "/data/", "/data/../etc", "/data/./m", "//data", "/data//m", "/."])
def test_host_paths_must_be_normalised_and_not_the_root(path: str) -> None:
    assert "spec.model.source.hostPath.path: must be a normalised absolute folder" in refusal(
        host(path), host_paths=("/data",)
    )


def test_host_paths_are_off_until_the_admin_allows_a_prefix() -> None:
    assert "host paths are not allowed on this cluster" in refusal(host("/data/m"))
    allowed = ("/data", "/srv/models")
    assert refusal(host("/data"), host_paths=allowed) == ""
    assert refusal(host("/srv/models/llama"), host_paths=allowed) == ""
    for outside in ("/database", "/data2/m", "/srv/model", "/srv", "/etc"):
        message = refusal(host(outside), host_paths=allowed)
        assert message.startswith(
            "spec.model.source.hostPath.path: not under a folder the cluster admin allows"
        )


def test_images_follow_the_allowlist_by_whole_components() -> None:
    assert refusal({"image": "anything.example.invalid/x:1"}) == ""  # no list: any image
    allowed = ("registry.example.invalid/inference",)
    for image in (
        "registry.example.invalid/inference/runtime:1",
        "registry.example.invalid/inference:2",
        "registry.example.invalid/inference@sha256:" + "0" * 64,
    ):
        assert refusal({"image": image}, images=allowed) == ""
    for image in (
        "registry.example.invalid/inference-evil/runtime:1",
        "registry.example.invalid.other/inference/runtime:1",
        "other.example.invalid/inference/runtime:1",
        "runtime:1",
    ):
        assert refusal({"image": image}, images=allowed).startswith("spec.image: not from an allowed")
    assert refusal({}, images=allowed) == ""  # the operator's own default image is the admin's choice


def test_settings_take_the_allowlists_from_flags_or_environment() -> None:
    from_env = parse(
        [], environ={"ALLOWED_HOST_PATHS": "/data, /srv/m", "ALLOWED_IMAGE_PREFIXES": "r.invalid/a"}
    )
    assert from_env.allowed_host_paths == ("/data", "/srv/m")
    assert from_env.allowed_image_prefixes == ("r.invalid/a",)
    flags = parse(["--allow-host-path", "/x", "--allow-image-prefix", "r.invalid/b"], environ={})
    assert (flags.allowed_host_paths, flags.allowed_image_prefixes) == (("/x",), ("r.invalid/b",))
    assert parse([], environ={}).allowed_host_paths == ()
    for bad in ("/", "relative", "/data/", "/data/../etc"):
        with pytest.raises(SystemExit):
            parse(["--allow-host-path", bad], environ={})


def test_the_operator_loads_the_shared_rules_without_the_runtime_or_the_engine() -> None:
    """The operator image has neither vLLM nor the runtime: its checks must not need them."""
    code = (
        "import json, sys\n"
        "import inference_operator.reconciler, inference_operator.handlers\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('vllm', 'torch', 'inference_runtime', 'fastapi'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
