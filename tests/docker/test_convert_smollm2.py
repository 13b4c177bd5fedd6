"""hack/convert_smollm2.py leaves a model folder the runtime user (UID 10001) can read."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_converted_folder_is_readable_by_every_user(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("convert_smollm2", REPO / "hack" / "convert_smollm2.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # light: torch and transformers are imported only to convert
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    for path in (folder / "model.safetensors", folder / "sub" / "tokenizer.json"):
        path.write_bytes(b"x")
        path.chmod(0o600)  # what save_pretrained leaves on model.safetensors
    (folder / "sub").chmod(0o700)
    folder.chmod(0o700)
    module.make_readable(str(folder))
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    assert modes == {
        "model": 0o755,
        "model/sub": 0o755,
        "model/model.safetensors": 0o644,
        "model/sub/tokenizer.json": 0o644,
    }
