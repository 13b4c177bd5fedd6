"""README's own curl commands, run verbatim with the real curl against SmolLM2 served with the shipped
example config (conf/model_config.json.example, what hack/serve.sh installs).

Only the address changes (README's 127.0.0.1:8000 becomes the test server's). A command followed by a
``json`` block before the next curl shows its answer: the real answer must be that text.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fixtures.helpers import REPO
from fixtures.prereq import missing
from fixtures.runtime_server import RunningServer, start_runtime

pytestmark = pytest.mark.smollm2

README = REPO / "README.md"
EXAMPLE_CONFIG = REPO / "conf" / "model_config.json.example"
ADDRESS = "http://127.0.0.1:8000"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    command: str
    shown: dict[str, object] | None  # the answer README prints after it, if any


def commands(block: str) -> list[str]:
    """The ``curl -s http://127.0.0.1:8000/...`` commands of a shell block, each with its quoted and
    continued lines, exactly as written."""
    found: list[str] = []
    lines = block.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not line.startswith(f"curl -s {ADDRESS}/"):
            continue
        command = ""
        for more in lines[i:]:
            command += more
            try:
                shlex.split(command)
            except ValueError:  # an open quote: the command goes on
                continue
            if not command.rstrip().endswith("\\"):
                break
        found.append(command.strip())
    return found


def readme_examples() -> list[Example]:
    examples: list[Example] = []
    for match in FENCE.finditer(README.read_text()):
        lang, body = match.groups()
        if lang == "bash" and (found := commands(body)):
            examples += [Example(command, None) for command in found]
        elif lang == "json" and examples and examples[-1].shown is None:
            examples[-1] = Example(examples[-1].command, json.loads(body))
    return examples


def answer(response: dict[str, object]) -> str:
    """The generated text of a chat, completion or /generate response."""
    if "text" in response:
        return str(response["text"])
    (choice,) = response["choices"]  # type: ignore[misc]
    return str(choice["message"]["content"] if "message" in choice else choice["text"])


EXAMPLES = readme_examples()


@pytest.fixture(scope="module")
def shipped(smollm2_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    [(name, entry)] = json.loads(EXAMPLE_CONFIG.read_text()).items()
    if not (smollm2_model_path.parent / entry["model_path"]).is_dir():
        missing(f"the example config's model {entry['model_path']} beside {smollm2_model_path}")
    with start_runtime(
        tmp_path_factory.mktemp("readme"), name, entry, model_root=smollm2_model_path.parent
    ) as server:
        yield server


def test_readme_has_the_examples_this_test_runs() -> None:
    assert len(EXAMPLES) >= 3, EXAMPLES
    assert EXAMPLES[0].shown is not None and "Paris" in answer(EXAMPLES[0].shown)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.command.split()[2].removeprefix(ADDRESS))
def test_readme_curl_command(shipped: RunningServer, example: Example) -> None:
    if shutil.which("curl") is None:
        missing("the curl command")
    command = example.command.replace(ADDRESS, shipped.base_url)
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert "error" not in response, response
    if "usage" in response or "choices" in response:  # a generation (the tokenizer routes have no usage)
        assert response["usage"]["completion_tokens"] >= 1, response
    if example.shown is not None:
        assert answer(response) == answer(example.shown), (response, example.shown)
        assert response["object"] == example.shown["object"]
