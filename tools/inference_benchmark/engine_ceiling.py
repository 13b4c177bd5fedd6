"""The engine ceiling: vLLM's AsyncLLM driven in-process, with no HTTP, under the same load.

No server can beat the engine it wraps, so this is the reference both servers are read against: the
gap between a server and the ceiling is what its HTTP layer costs. It drives the engine through the
runtime's adapter (``inference_runtime.engine``, the project's one module that imports vLLM), and it is
meant to run as its own process (the side-by-side command starts it):

    python -m inference_benchmark.engine_ceiling --model PATH --output-json OUT.json [load options]

vLLM spawns its engine-core process, hence the ``__main__`` guard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from inference_benchmark import machine
from inference_benchmark.prompts import Prompt
from inference_benchmark.servers import EngineSettings
from inference_benchmark.stats import RequestRecord
from inference_benchmark.sweep import LoadSettings, add_load_arguments, load_settings, results_json, run_sweep
from inference_runtime.engine import Engine
from inference_runtime.engine_api import EngineOptions
from inference_runtime.generation import SamplingSpec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference_benchmark.engine_ceiling",
        description="Drive vLLM's AsyncLLM in-process (no HTTP) with the benchmark's load.",
    )
    parser.add_argument("--model", type=Path, required=True, help="HF model folder")
    parser.add_argument("--model-name", default="ceiling")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--max-num-seqs", type=int, default=32)
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--output-json", type=Path, required=True, help="where to write the results")
    add_load_arguments(parser)
    return parser


def engine_options(engine: EngineSettings) -> EngineOptions:
    return EngineOptions(
        model_path=str(engine.model_path),
        served_model_name=engine.model_name,
        max_model_len=engine.max_model_len,
        dtype=engine.dtype,
        extra={"max_num_seqs": engine.max_num_seqs, "enforce_eager": engine.enforce_eager},
    )


async def run(engine: EngineSettings, load: LoadSettings) -> dict[str, object]:
    llm = await Engine.start(engine_options(engine))

    async def send(prompt: Prompt) -> RequestRecord:
        """One request, recorded exactly as the HTTP client records one (text-carrying chunks)."""
        spec = SamplingSpec(
            max_tokens=prompt.max_tokens, temperature=load.temperature, ignore_eos=load.ignore_eos
        )
        start = time.perf_counter()
        chunk_times: list[float] = []
        prompt_tokens = output_tokens = 0
        try:
            token_ids = llm.tokenizer.encode(prompt.text)  # as vLLM does for a text prompt
            async for out in llm.generate(token_ids, spec, uuid.uuid4().hex, stream=load.stream):
                choice = out.choices[0]
                if load.stream and choice.text:
                    chunk_times.append(time.perf_counter())
                output_tokens += choice.num_tokens
                prompt_tokens = out.prompt_tokens
        except Exception as exc:  # a failed request is a result, like an HTTP error
            return RequestRecord(start, time.perf_counter(), type(exc).__name__, error=str(exc)[:200])
        return RequestRecord(
            start, time.perf_counter(), 200, tuple(chunk_times), prompt_tokens, output_tokens
        )

    try:
        results = await run_sweep(send, load)
    finally:
        llm.shutdown()
    meta = {"engine": engine.describe(), "load": load.describe(), "machine": machine.describe()}
    return results_json(meta, results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        load = load_settings(args)
    except ValueError as exc:
        parser.error(str(exc))
    engine = EngineSettings(
        args.model, args.model_name, args.dtype, args.max_model_len, args.max_num_seqs, args.enforce_eager
    )
    document = asyncio.run(run(engine, load))
    args.output_json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
