#!/usr/bin/env python3
"""Our runtime against vLLM's own OpenAI server: ``python tools/side_by_side.py --help``.

The same as ``inference-benchmark side-by-side``; this launcher works from a plain clone with the venv.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_benchmark.side_by_side import main

if __name__ == "__main__":
    sys.exit(main())
