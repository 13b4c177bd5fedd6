"""The pod spec the operator generates really starts the runtime.

The Deployment's container command, args and env are run as a local process, with the pod's paths
mapped onto local files (the ConfigMap's model_config.json, the Secret's keys file, /models) and its
port onto a free one; then the probe paths and port the Deployment declares must answer 200 once the
model is loaded. Nothing else about the container is changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from op_helpers import make_model

from fixtures.helpers import free_port, wait_for
from fixtures.processes import stop_process
from inference_operator.manifests import configmap, deployment
from inference_operator.manifests.configmap import CONFIG_KEY
from inference_operator.manifests.deployment import API_KEYS_FILE, CONFIG_PATH, MODELS_DIR
from inference_operator.settings import OperatorSettings

pytestmark = pytest.mark.engine
API_KEY = "sk-test-operator"
LOAD_TIMEOUT = float(os.environ.get("VIF_START_TIMEOUT", "600"))  # hang guard for a cold engine start


def translate(value: str, mapping: dict[str, str]) -> str:
    """A pod path or port turned into its local stand-in."""
    return mapping.get(value, value)


@pytest.fixture
def pod_process(tiny_model_path: Path, tmp_path: Path) -> Any:
    model = make_model(
        {
            "model": {"path": tiny_model_path.name},
            "servedModelName": "tiny",
            "maxModelLen": 256,
            "engineArgs": {"enforce_eager": True},
            "apiKeySecret": {"name": "keys"},
            "env": [{"name": "VLLM_CPU_KVCACHE_SPACE", "value": "1"}],
        }
    )
    config = configmap(model)
    dep = deployment(model, OperatorSettings(), config)
    (container,) = dep["spec"]["template"]["spec"]["containers"]

    # The pod's files: the ConfigMap key, the Secret's keys file, the model volume.
    config_file = tmp_path / "etc" / CONFIG_KEY
    config_file.parent.mkdir()
    config_file.write_text(config["data"][CONFIG_KEY])
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"test:{API_KEY}\n")
    port = free_port()
    (http,) = container["ports"]
    mapping = {
        CONFIG_PATH: str(config_file),
        API_KEYS_FILE: str(keys_file),
        MODELS_DIR: str(tiny_model_path.parent),
        str(http["containerPort"]): str(port),
        "0.0.0.0": "127.0.0.1",  # the pod's own network namespace, here: loopback
    }
    command = [shutil.which(container["command"][0], path=str(Path(sys.executable).parent)) or "missing"]
    args = [translate(arg, mapping) for arg in container["args"]]
    env = {var["name"]: translate(var["value"], mapping) for var in container["env"]}
    process_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "VLLM_RPC_BASE_PATH": str(tmp_path),
        **env,
    }
    log = (tmp_path / "runtime.log").open("wb")
    proc = subprocess.Popen([*command, *args], env=process_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield container, port, proc, tmp_path / "runtime.log"
    finally:
        stop_process(proc)
        log.close()


def test_probes_the_deployment_declares_answer_once_the_model_is_loaded(pod_process: Any) -> None:
    container, port, proc, log_path = pod_process
    probes = {
        kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert {p["port"] for p in probes.values()} == {container["ports"][0]["name"]}

    def status(path: str) -> int:
        assert proc.poll() is None, f"runtime exited:\n{log_path.read_text(errors='replace')[-3000:]}"
        try:
            return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code
        except httpx.TransportError:
            return 0

    wait_for(
        lambda: status(probes["startupProbe"]["path"]) == 200, timeout=LOAD_TIMEOUT, what="the startup probe"
    )
    for kind, probe in probes.items():
        assert status(probe["path"]) == 200, kind

    # The API key from the mounted Secret file is what clients must send (probes need none).
    models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
    assert models.status_code == 200 and [m["id"] for m in models.json()["data"]] == ["tiny"]
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
