"""``inference-benchmark`` (``python tools/benchmark.py``): load-test one OpenAI-compatible server.

``inference-benchmark side-by-side ...`` compares our runtime with vLLM's own server instead (see
``inference-benchmark side-by-side --help``); ``inference-benchmark request-path ...`` measures the CPU
the runtime's own request path costs, in-process with a stand-in engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from inference_benchmark import machine, report
from inference_benchmark.client import API_PATHS, STRUCTURED_MODES
from inference_benchmark.prompts import PromptFileError
from inference_benchmark.sweep import (
    HttpTarget,
    add_load_arguments,
    few_waves_line,
    http_sweep,
    load_settings,
    results_json,
)

EXAMPLES = """\
examples:
  # streaming completions at concurrency 1, 8 and 32, 64 prompt tokens -> 128 output tokens
  inference-benchmark --base-url http://127.0.0.1:8000 --api completions \\
      --concurrency 1,8,32 --input-len 64 --output-len 128 --output-json result.json
  # Poisson arrivals at 2 and 4 requests/s, chat, no streaming, at most 16 in flight
  inference-benchmark --api chat --request-rate 2,4 --max-concurrency 16 --no-stream
  # our /generate protocol with prompts from a file
  inference-benchmark --api generate --prompts-file prompts.jsonl
  # the same chat request as a forced tool call, then under response_format json_schema
  inference-benchmark --api chat --structured tool-choice --no-ignore-eos --concurrency 4
  inference-benchmark --api chat --structured json-schema --no-ignore-eos --concurrency 4
  # our runtime against vLLM's own server on the same model and engine settings
  inference-benchmark side-by-side --help
  # CPU per request of the runtime's own request path, in-process with a stand-in engine
  inference-benchmark request-path --help

Metrics: TTFT is the time to the first chunk carrying text; ITL the gaps between such chunks; TPOT
(last chunk - first chunk) / (output tokens - 1); E2E the whole request. Token counts are the server's
own usage figures (streams ask for stream_options.include_usage); they are never estimated.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-benchmark",
        description="Async load generator for OpenAI-compatible servers and the /generate protocol. "
        "Prints a table per load point and a sweep summary; --output-json keeps everything.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_argument_group("target")
    target.add_argument(
        "--base-url", default="http://127.0.0.1:8000", help="server root (default %(default)s)"
    )
    target.add_argument(
        "--api", choices=sorted(API_PATHS), default="completions", help="protocol (default completions)"
    )
    target.add_argument("--path", default=None, help="route to call instead of the protocol's default")
    target.add_argument("--model", default=None, help="model name to request (default: first of /v1/models)")
    target.add_argument("--api-key", default=None, help="sent as 'Authorization: Bearer KEY'")
    target.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds to connect, and to wait for each read (default 600)",
    )
    target.add_argument(
        "--structured",
        choices=STRUCTURED_MODES,
        default=None,
        help="chat only: ask for one JSON object (client.STRUCTURED_SCHEMA) as a forced tool call or "
        "with response_format json_schema",
    )
    add_load_arguments(parser)
    parser.add_argument("--output-json", type=Path, default=None, help="write settings and results here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["side-by-side"]:
        from inference_benchmark import side_by_side

        return side_by_side.main(argv[1:])
    if argv[:1] == ["request-path"]:
        from inference_benchmark import request_path

        return request_path.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        load = load_settings(args)
        target = HttpTarget(
            args.base_url, args.api, args.model, args.path, args.api_key, args.timeout, args.structured
        )
        model, results = asyncio.run(http_sweep(target, load))
    except (ValueError, PromptFileError, OSError) as exc:
        parser.error(str(exc))
    except httpx.HTTPError as exc:
        hint = "" if args.model else " (without --model, the model name is asked from /v1/models)"
        parser.exit(2, f"inference-benchmark: cannot talk to {args.base_url}: {exc!r}{hint}\n")
    except KeyboardInterrupt:
        return 130
    for result in results:
        print(report.run_table(result), end="\n\n")
    print(report.sweep_table([r.as_dict() for r in results]))
    if note := few_waves_line(load):
        print(note)
    if args.output_json:
        meta = {
            "target": {
                "base_url": args.base_url,
                "api": args.api,
                "path": args.path,
                "model": model,
                "structured": args.structured,
            },
            "load": load.describe(),
            "machine": machine.describe(),
        }
        args.output_json.write_text(json.dumps(results_json(meta, results), indent=2) + "\n")
    return 0 if all(r.stats.completed for r in results) else 1
