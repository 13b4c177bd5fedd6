#!/usr/bin/env python3
"""Benchmark an inference server: ``python tools/benchmark.py --help``.

A thin launcher for the ``inference_benchmark`` package next to it, so it works from a plain clone
with the project's venv, installed or not; installed, the same tool is the ``inference-benchmark``
console script.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
