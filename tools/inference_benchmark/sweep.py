"""A sweep: the same load settings applied at several load points, against a server or any ``send``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from inference_benchmark import client
from inference_benchmark.prompts import Prompt, load_jsonl, synthetic_prompts, take
from inference_benchmark.runner import LoadPoint, RunResult, Send, run_point
from inference_benchmark.stats import RequestRecord


@dataclass(frozen=True)
class LoadSettings:
    """Everything about the load that must be identical when two targets are compared."""

    points: tuple[LoadPoint, ...]
    num_requests: int
    warmup: int
    input_len: int
    output_len: int
    prompts_file: Path | None
    stream: bool
    temperature: float
    ignore_eos: bool
    seed: int
    progress: bool

    def describe(self) -> dict[str, object]:
        """The settings as JSON-ready values, stored next to the results."""
        return {
            "points": [p.label for p in self.points],
            "num_requests": self.num_requests,
            "warmup": self.warmup,
            "input_len": None if self.prompts_file else self.input_len,
            "output_len": self.output_len,
            "prompts_file": str(self.prompts_file) if self.prompts_file else None,
            "stream": self.stream,
            "temperature": self.temperature,
            "ignore_eos": self.ignore_eos,
            "seed": self.seed,
        }

    def to_argv(self) -> list[str]:
        """Command-line options that rebuild these settings (to hand them to another process)."""
        if self.points[0].rate is not None:
            argv = ["--request-rate", ",".join(f"{p.rate:g}" for p in self.points)]
            if self.points[0].concurrency:
                argv += ["--max-concurrency", str(self.points[0].concurrency)]
        else:
            argv = ["--concurrency", ",".join(str(p.concurrency) for p in self.points)]
        argv += [
            "--num-requests", str(self.num_requests), "--warmup", str(self.warmup),
            "--input-len", str(self.input_len), "--output-len", str(self.output_len),
            "--temperature", repr(self.temperature), "--seed", str(self.seed),
            "--stream" if self.stream else "--no-stream",
            "--ignore-eos" if self.ignore_eos else "--no-ignore-eos",
            "--progress" if self.progress else "--no-progress",
        ]  # fmt: skip
        if self.prompts_file:
            argv += ["--prompts-file", str(self.prompts_file)]
        return argv

    def prompts(self, point: LoadPoint) -> tuple[list[Prompt], list[Prompt]]:
        """The timed prompts and the warm-up prompts of one load point.

        Synthetic prompts are fresh for every point (seeded by the point), so a prefix cache filled by
        one point or by the warm-up does not flatter the next.
        """
        if self.prompts_file:
            pool = load_jsonl(self.prompts_file, self.output_len)
            return take(pool, self.num_requests), take(pool, self.warmup)
        timed = synthetic_prompts(
            self.num_requests, self.input_len, self.output_len, f"{self.seed}/{point.label}"
        )
        warm = (
            synthetic_prompts(self.warmup, self.input_len, self.output_len, f"{self.seed}/warm/{point.label}")
            if self.warmup
            else []
        )
        return timed, warm

    @property
    def max_in_flight(self) -> int | None:
        """The most requests ever in flight, or ``None`` when an uncapped rate leaves it open."""
        caps = [p.concurrency for p in self.points]
        return None if None in caps else max(c for c in caps if c is not None)


def _csv(kind: type) -> object:
    def parse(text: str) -> list:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected positive values, got {text!r}")
        return values

    return parse


def add_load_arguments(parser: argparse.ArgumentParser, default_concurrency: str = "1") -> None:
    """The load options, shared by the benchmark, the side-by-side command and the engine ceiling."""
    load = parser.add_argument_group("load")
    load.add_argument(
        "--concurrency",
        type=_csv(int),
        default=_csv(int)(default_concurrency),
        help=f"requests kept in flight; a comma-separated list is a sweep (default {default_concurrency})",
    )
    load.add_argument(
        "--request-rate",
        type=_csv(float),
        default=None,
        help="Poisson arrival rate(s) in requests/s instead of a fixed concurrency; a list is a sweep",
    )
    load.add_argument(
        "--max-concurrency", type=int, default=None, help="with --request-rate: cap on requests in flight"
    )
    load.add_argument(
        "--num-requests", type=int, default=64, help="timed requests per load point (default 64)"
    )
    load.add_argument(
        "--warmup", type=int, default=4, help="uncounted requests before each load point (default 4)"
    )
    load.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream the replies (default on)",
    )
    prompts = parser.add_argument_group("prompts")
    prompts.add_argument(
        "--input-len", type=int, default=64, help="synthetic prompt length, ~tokens (default 64)"
    )
    prompts.add_argument("--output-len", type=int, default=64, help="max_tokens per request (default 64)")
    prompts.add_argument(
        "--prompts-file",
        type=Path,
        default=None,
        help='JSONL file, one {"prompt": ..., "max_tokens": N} per line, instead of synthetic prompts',
    )
    prompts.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    prompts.add_argument(
        "--ignore-eos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask the server to generate exactly max_tokens tokens (vLLM's ignore_eos; default on)",
    )
    prompts.add_argument(
        "--seed", type=int, default=0, help="seed of the prompts and arrival times (default 0)"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=sys.stderr.isatty(),
        help="live progress bar on stderr (default: on when stderr is a terminal)",
    )


def load_settings(args: argparse.Namespace) -> LoadSettings:
    """Turn parsed load options into settings, refusing contradictory ones with a clear message."""
    if args.request_rate:
        points = tuple(LoadPoint(concurrency=args.max_concurrency, rate=r) for r in args.request_rate)
    else:
        if args.max_concurrency is not None:
            raise ValueError("--max-concurrency only applies with --request-rate; use --concurrency")
        points = tuple(LoadPoint(concurrency=c) for c in args.concurrency)
    for name in ("num_requests", "input_len", "output_len"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if args.warmup < 0:
        raise ValueError("--warmup must not be negative")
    return LoadSettings(
        points=points,
        num_requests=args.num_requests,
        warmup=args.warmup,
        input_len=args.input_len,
        output_len=args.output_len,
        prompts_file=args.prompts_file,
        stream=args.stream,
        temperature=args.temperature,
        ignore_eos=args.ignore_eos,
        seed=args.seed,
        progress=args.progress,
    )


# A closed-loop point with fewer waves than this leaves TTFT percentiles on one wave's prefill steps.
STEADY_WAVES = 3


def few_waves_line(load: LoadSettings) -> str | None:
    """A note naming the closed-loop points that send fewer than :data:`STEADY_WAVES` waves.

    With ``c`` requests in flight, ``c`` requests sent at once reach the engine as one wave, and their
    first tokens come in groups, one per prefill step (SmolLM2, c=32, 158-token prompts: 1, 12, 13 and
    6 requests, 1.2-2.6 s apart). In a single wave the median sits on those groups: one request more
    in the engine's first step moved it from inside a group to between two, 20% earlier
    (docs/benchmark.md). Later waves arrive as earlier requests finish, so over a few the percentiles
    settle.
    """
    short = [
        f"{p.label} ({load.num_requests / p.concurrency:.3g})"
        for p in load.points
        if p.rate is None and p.concurrency and load.num_requests < STEADY_WAVES * p.concurrency
    ]
    if not short:
        return None
    return (
        f"note: fewer than {STEADY_WAVES} waves of requests at {', '.join(short)}: TTFT percentiles "
        "there fall on a wave's prefill steps; read the TTFT mean, or raise --num-requests"
    )


async def run_sweep(send: Send, load: LoadSettings) -> list[RunResult]:
    """Every load point of ``load``, one after the other, through ``send``."""
    results = []
    for point in load.points:
        timed, warm = load.prompts(point)
        results.append(await run_point(send, timed, warm, point, seed=load.seed, progress=load.progress))
    return results


@dataclass(frozen=True)
class HttpTarget:
    """Where and how to send: a base URL, the protocol, and its path (the protocol's default if unset)."""

    base_url: str
    api: str
    model: str | None = None
    path: str | None = None
    api_key: str | None = None
    timeout_s: float = 600.0
    structured: str | None = None


async def http_sweep(target: HttpTarget, load: LoadSettings) -> tuple[str, list[RunResult]]:
    """Run the sweep against a server; returns the model name used (asked from /v1/models if unset)."""
    in_flight = load.max_in_flight
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else None
    path = target.path or client.API_PATHS[target.api]
    async with httpx.AsyncClient(
        base_url=target.base_url, timeout=target.timeout_s, limits=limits, headers=headers
    ) as http:
        model = target.model or await client.first_model(http)
        options = client.RequestOptions(
            target.api, model, load.stream, load.temperature, load.ignore_eos, target.structured
        )

        async def send(prompt: Prompt) -> RequestRecord:
            return await client.send(http, path, client.build_body(prompt, options))

        return model, await run_sweep(send, load)


def results_json(meta: dict[str, object], results: Sequence[RunResult]) -> dict[str, object]:
    return {**meta, "runs": [r.as_dict() for r in results]}
