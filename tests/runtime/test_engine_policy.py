"""The code-loading lists of inference_policy.engine against the installed vLLM.

Heuristics (what "looks as if it loads code"): an engine argument, or a field of a config object an
engine argument takes, is suspect when its name contains one of SUSPECT_NAME's words (cls, class, plugin,
module, impl, processor, parser, path, dir, file, backend, loader, overrides, remote, format, extension,
method, hook, function) or its type is a class, a callable, a free-form dict or a config object. An
environment variable of vllm/envs.py is suspect when its name matches SUSPECT_ENV (plugin, class,
module, shared object, library, import, serialization, pickle, logging config, hook, a name ending in
_PATH, trust, remote, include, redirect, loader). Every
suspect must be refused, path-checked or explicitly judged safe (with a reason) in inference_policy.engine,
and every name those lists judge must still exist, so the lists follow vLLM upgrades.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_policy import engine as policy
from inference_runtime.app import engine_options
from inference_runtime.cli import prepare
from inference_runtime.config import ConfigError
from inference_runtime.settings import settings_from_args

SUSPECT_NAME = re.compile(
    r"cls|class|plugin|module|impl|processor|parser|path|dir|file|backend|loader|overrides|remote|format"
    r"|extension|method|hook|function"
)
SUSPECT_TYPE = re.compile(r"type\[|Callable|dict|Dict|Mapping")
SUSPECT_ENV = re.compile(
    r"PLUGIN|CLS|CLASS|MODULE|_SO_|LIB|IMPORT|SERIALIZ|PICKLE|LOGGING_CONFIG|HOOK|_PATH$|TRUST|REMOTE"
    r"|INCLUDE|REDIRECT|LOADER"
)


def _config_classes(tp: object) -> list[type]:
    """The config objects (dataclasses) a field's type allows."""
    return [c for c in (typing.get_args(tp) or (tp,)) if isinstance(c, type) and dataclasses.is_dataclass(c)]


def _hints(cls: type) -> dict[str, object]:
    """Resolved annotations; a few of vLLM's name types only imported under TYPE_CHECKING stay strings."""
    try:
        return typing.get_type_hints(cls)
    except NameError:
        return {}


def _suspect(name: str, tp: object) -> bool:
    return bool(SUSPECT_NAME.search(name) or SUSPECT_TYPE.search(str(tp)) or _config_classes(tp))


def _engine_arg_suspects() -> Iterator[str]:
    engine_args = pytest.importorskip("vllm.engine.arg_utils").EngineArgs
    hints = _hints(engine_args)
    for field in dataclasses.fields(engine_args):
        if field.name.startswith("_") or field.name in policy.CODE_LOADING_ENGINE_ARGS:
            continue
        tp = hints.get(field.name, field.type)
        if _suspect(field.name, tp):
            yield field.name
        for cls in _config_classes(tp):
            sub_hints = _hints(cls)
            for sub in dataclasses.fields(cls):
                if not sub.name.startswith("_") and _suspect(sub.name, sub_hints.get(sub.name, sub.type)):
                    yield f"{field.name}.{sub.name}"


def _judged() -> set[str]:
    return {*policy.CODE_LOADING_ENGINE_ARGS, *policy.PATH_ENGINE_ARGS, *policy.JUDGED_SAFE_ENGINE_ARGS}


def test_every_code_loading_looking_engine_argument_is_judged() -> None:
    unjudged = sorted(set(_engine_arg_suspects()) - _judged())
    assert unjudged == [], (
        "engine arguments that look as if they load code are in none of inference_policy.engine's lists: "
        f"{unjudged}"
    )


def test_every_judged_engine_argument_exists() -> None:
    engine_args = pytest.importorskip("vllm.engine.arg_utils").EngineArgs
    hints = _hints(engine_args)
    fields = {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(engine_args)}
    missing = []
    for name in sorted(_judged()):
        outer, _, inner = name.partition(".")
        if outer not in fields or (
            inner and not any(inner in c.__dataclass_fields__ for c in _config_classes(fields[outer]))
        ):
            missing.append(name)
    assert missing == []
    judged_twice = set(policy.CODE_LOADING_ENGINE_ARGS) & set(policy.JUDGED_SAFE_ENGINE_ARGS)
    assert sorted(judged_twice | (set(policy.PATH_ENGINE_ARGS) & set(policy.JUDGED_SAFE_ENGINE_ARGS))) == []


def test_every_code_loading_looking_environment_variable_is_judged() -> None:
    envs = pytest.importorskip("vllm.envs")
    suspects = {name for name in envs.environment_variables if SUSPECT_ENV.search(name)}
    judged = {*policy.CODE_LOADING_ENV, *policy.PROCESS_START_ENV, *policy.JUDGED_SAFE_ENV}
    unjudged = sorted(suspects - judged)
    assert unjudged == [], f"vLLM variables in none of inference_policy.engine's lists: {unjudged}"
    vllm_judged = {n for n in (*policy.CODE_LOADING_ENV, *policy.JUDGED_SAFE_ENV) if n.startswith("VLLM_")}
    assert sorted(vllm_judged - set(envs.environment_variables)) == []


# What each refused argument is set to: a name of the canary module wherever a name is taken.
CANARY = "vif_canary"


def _hostile_engine_args(name: str) -> dict[str, object]:
    outer, _, inner = name.partition(".")
    value: object = True if name == "trust_remote_code" else f"{CANARY}.Thing"
    if name == "logits_processors":
        value = [f"{CANARY}:Thing"]
    return {outer: {inner: value}} if inner else {outer: value}


# Runs main() once per case in one fresh interpreter; a case is (argv, environment overrides). The canary
# module writes a marker when imported, so "imported nothing" covers a module the engine would name.
_MAIN_PER_CASE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from inference_runtime.cli import main
results = []
for argv, env in json.loads(sys.argv[2]):
    os.environ.update(env)
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    for name in env:
        del os.environ[name]
    results.append(code)
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('vllm', 'torch', 'vif_canary'))
print(json.dumps({'codes': results, 'loaded': loaded}))
"""


def _run_cases(tmp_path: Path, cases: list[tuple[list[str], dict[str, str]]]) -> tuple[list[int], str]:
    canary_dir = tmp_path / "canary"
    canary_dir.mkdir()
    marker = tmp_path / "canary-imported"
    (canary_dir / f"{CANARY}.py").write_text(f"open({str(marker)!r}, 'w').close()\nThing = object\n")
    done = subprocess.run(
        [sys.executable, "-c", _MAIN_PER_CASE, str(canary_dir), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], "a refused config imported code"
    assert not marker.exists(), "the canary module was imported"
    return result["codes"], done.stderr


def _config(tmp_path: Path, engine_args: dict[str, object]) -> list[str]:
    (tmp_path / "models" / "m").mkdir(parents=True, exist_ok=True)
    config = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.json"
    config.write_text(json.dumps({"m": {"model_path": "m", "engine_args": engine_args}}))
    return ["--model-name", "m", "--config", str(config), "--model-root", str(tmp_path / "models")]


def test_each_code_loading_engine_argument_exits_2_naming_it_and_imports_nothing(tmp_path: Path) -> None:
    names = sorted(policy.CODE_LOADING_ENGINE_ARGS)
    codes, stderr = _run_cases(tmp_path, [(_config(tmp_path, _hostile_engine_args(n)), {}) for n in names])
    assert codes == [2] * len(names)
    errors = [line for line in stderr.splitlines() if line.startswith("inference-runtime: error:")]
    assert len(errors) == len(names)
    for name, line in zip(names, errors, strict=True):
        assert f"model 'm': field 'engine_args': '{name}' " in line


def test_each_code_loading_environment_variable_exits_2_naming_it_and_imports_nothing(
    tmp_path: Path,
) -> None:
    names = sorted(policy.CODE_LOADING_ENV)
    argv = _config(tmp_path, {})
    codes, stderr = _run_cases(tmp_path, [(argv, {n: f"{CANARY}.Thing"}) for n in names])
    assert codes == [2] * len(names)
    errors = [line for line in stderr.splitlines() if line.startswith("inference-runtime: error:")]
    for name, line in zip(names, errors, strict=True):
        assert f"environment variable {name} (" in line


def _prepare(tmp_path: Path, engine_args: dict[str, object], *flags: str) -> dict[str, object]:
    settings = settings_from_args([*_config(tmp_path, engine_args), *flags])
    model, _, _ = prepare(settings)
    return engine_options(settings, model).extra


def test_allow_engine_arg_lets_exactly_that_one_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hostile = {"worker_extension_cls": f"{CANARY}.Thing", "trust_remote_code": True}
    with caplog.at_level(logging.WARNING, logger="inference_runtime"):
        extra = _prepare(
            tmp_path,
            {"worker_extension_cls": f"{CANARY}.Thing"},
            "--allow-engine-arg",
            "worker_extension_cls",
        )
    assert extra == {"worker_extension_cls": f"{CANARY}.Thing"}
    assert "engine argument worker_extension_cls allowed by --allow-engine-arg" in caplog.text
    with pytest.raises(ConfigError) as refused:
        _prepare(tmp_path, hostile, "--allow-engine-arg", "worker_extension_cls")
    assert "'trust_remote_code'" in str(refused.value)
    assert "worker_extension_cls" not in str(refused.value)


def test_allow_env_lets_exactly_that_one_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CXX", "/models/m/c++")
    with caplog.at_level(logging.WARNING, logger="inference_runtime"):
        assert _prepare(tmp_path, {}, "--allow-env", "CXX") == {}
    assert "environment variable CXX allowed by --allow-env" in caplog.text
    monkeypatch.setenv("VLLM_PLUGINS", "")  # set, even empty: it would switch the runtime's plugin off
    with pytest.raises(ConfigError, match="environment variable VLLM_PLUGINS") as refused:
        _prepare(tmp_path, {}, "--allow-env", "CXX")
    assert "CXX" not in str(refused.value)


@pytest.mark.parametrize(
    ("engine_args", "allowed"),
    [
        ({"worker_cls": "auto", "distributed_executor_backend": "mp", "trust_remote_code": False}, True),
        ({"worker_extension_cls": "", "logits_processors": [], "hf_overrides": {}}, True),
        ({"compilation_config": {"mode": 0}, "enforce_eager": True}, True),
        ({"distributed_executor_backend": f"{CANARY}.Executor"}, False),
        ({"compilation_config": {"backend": f"{CANARY}.compile"}}, False),
        ({"trust_remote_code": 1}, False),  # only the JSON value false is the built-in one
    ],
)
def test_built_in_values_pass_and_others_are_refused(engine_args: dict[str, object], allowed: bool) -> None:
    assert (policy.refused_engine_args(engine_args) == []) is allowed


def test_path_engine_arguments_resolve_inside_the_roots(tmp_path: Path) -> None:
    (tmp_path / "models" / "tok").mkdir(parents=True)
    extra = _prepare(tmp_path, {"tokenizer": "tok", "generation_config": "auto"})
    assert extra == {"tokenizer": str((tmp_path / "models" / "tok").resolve()), "generation_config": "auto"}
    (tmp_path / "models" / "escape").symlink_to("/etc")
    for raw in ("/etc", "../../etc", "escape"):
        with pytest.raises(
            ConfigError, match=r"engine_args\.tokenizer: .* resolves outside the allowed roots"
        ):
            _prepare(tmp_path, {"tokenizer": raw})
    with pytest.raises(ConfigError, match=r"engine_args\.download_dir: must be a path"):
        _prepare(tmp_path, {"download_dir": ["/x"]})
    assert _prepare(tmp_path, {"tokenizer": "/etc"}, "--allow-engine-arg", "tokenizer") == {
        "tokenizer": "/etc"
    }
