"""``inference-benchmark side-by-side``: our runtime against vLLM's own OpenAI server, same engine, same load.

Both servers start one after the other on 127.0.0.1 with the same engine settings and get the same
sweep, one load point at a time on each in turn (never both under load at once). Halfway through the
rounds both are stopped and started again in the other order: on a small VM one start of a server can
run 5-10% faster or slower than the next for its whole life, so each server is measured over two starts
(docs/benchmark.md). Then the in-process engine ceiling runs in its own process. The summary gives,
per load point, the ratio ours/vLLM of throughput and of TTFT p50/p99/mean: a throughput ratio >= 1
and TTFT ratios <= 1 mean our HTTP layer costs nothing extra.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from inference_benchmark import machine, profile, report, servers
from inference_benchmark.servers import CLASS_FOR_API, EngineSettings, ServerError
from inference_benchmark.sweep import (
    HttpTarget,
    LoadSettings,
    add_load_arguments,
    few_waves_line,
    http_sweep,
    load_settings,
)

TARGETS = ("ours", "vllm", "engine")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-benchmark side-by-side",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  inference-benchmark side-by-side --model ~/.cache/inference-stack/models/"
        "tiny-llama-v1 --model-name tiny --output-json sbs.json",
    )
    engine = parser.add_argument_group("engine (identical for every target)")
    engine.add_argument("--model", type=Path, required=True, help="HF model folder")
    engine.add_argument("--model-name", default="bench", help="served model name (default bench)")
    engine.add_argument("--dtype", default="bfloat16", help="default bfloat16")
    engine.add_argument("--max-model-len", type=int, default=1024, help="default 1024")
    engine.add_argument("--max-num-seqs", type=int, default=32, help="default 32")
    engine.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True)
    run = parser.add_argument_group("run")
    run.add_argument(
        "--api", choices=sorted(CLASS_FOR_API), default="completions", help="default completions"
    )
    run.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated subset of {','.join(TARGETS)} (default all)",
    )
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each load point per server, alternating servers; the median run is reported. "
        "From 2 on, the servers are started again in the other order for the second half",
    )
    run.add_argument(
        "--runtime-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="a flag for our runtime only (repeatable), e.g. --runtime-arg=--stream-write-budget=800: "
        "a serving option of ours, measured against vLLM's server as it is; printed with the settings",
    )
    run.add_argument(
        "--vllm-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="a flag for vLLM's server only (repeatable), e.g. --vllm-arg=--stream-interval=2; printed "
        "with the settings",
    )
    run.add_argument("--server-timeout", type=float, default=600.0, help="seconds to wait for readiness")
    run.add_argument("--workdir", type=Path, default=None, help="keep configs and server logs here")
    run.add_argument(
        "--profile",
        action="store_true",
        help="after the counted rounds, each point's load again on each server under py-spy (not counted):"
        " raw profiles in the workdir, each process's share of the samples in the output",
    )
    run.add_argument(
        "--profile-seconds",
        type=float,
        default=20.0,
        help="with --profile: send each point's load again until this long has been sampled",
    )
    add_load_arguments(parser, default_concurrency="1,8,32")
    parser.add_argument(
        "--output-json", type=Path, default=None, help="write every result and the ratios here"
    )
    return parser


COMPARED = (
    ("tok/s", "output_throughput", None),
    ("TTFT p50", "ttft_ms", "p50"),
    ("TTFT p99", "ttft_ms", "p99"),
    # A closed-loop wave's first tokens come in groups, one per prefill step, so a percentile can move
    # by a whole step when one request changes group; the mean moves by that request's share.
    ("TTFT mean", "ttft_ms", "mean"),
)


def _figure(run: dict[str, Any], metric: str, statistic: str | None) -> float | None:
    return run[metric] if statistic is None else report.latency(run, metric, statistic)


def ratios(
    ours: Sequence[Sequence[dict[str, Any]]], vllm: Sequence[Sequence[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Per load point, ours/vLLM of throughput and TTFT p50/p99/mean, formed round by round.

    ``ours[i]`` and ``vllm[i]`` hold the runs of load point i in round order; the runs of one round ran
    back to back, under the same background load, so their ratio is the fair comparison even when the
    machine's speed drifts between rounds. Each figure is ``{"median", "min", "max", "rounds"}`` over the
    rounds where both sides have it (``None`` where no round does).
    """
    rows = []
    for mine, theirs in zip(ours, vllm, strict=True):
        paired = list(zip(mine, theirs, strict=True))
        row: dict[str, Any] = {"load": mine[0]["load"]}
        for name, metric, statistic in COMPARED:
            row[name] = _spread(_round_ratios(paired, metric, statistic))
        # The throughput ratio of the rounds in which each server had been started first.
        row["tok/s by first started"] = {
            first: _spread(
                _round_ratios([p for p in paired if p[0].get("started_first") == first], "output_throughput")
            )
            for first in ("ours", "vllm")
        }
        rows.append(row)
    return rows


def _round_ratios(
    paired: Sequence[tuple[dict[str, Any], dict[str, Any]]], metric: str, statistic: str | None = None
) -> list[float]:
    """Ours/vLLM of one figure in each round where both sides have it."""
    figures = [(_figure(a, metric, statistic), _figure(b, metric, statistic)) for a, b in paired]
    return [a / b for a, b in figures if a is not None and b]


def _spread(rounds: list[float]) -> dict[str, Any] | None:
    if not rounds:
        return None
    return {"median": statistics.median(rounds), "min": min(rounds), "max": max(rounds), "rounds": rounds}


def start_order_line(ratio_rows: Sequence[dict[str, Any]]) -> str:
    """Per load point, the throughput ratio of the rounds after each start order, so that a run shows
    how much the order moved it (the overall ratio pairs both halves)."""
    parts = []
    for row in ratio_rows:
        cells = [
            f"{first} first {_ratio_cell(spread)}"
            for first, spread in row["tok/s by first started"].items()
            if spread is not None
        ]
        parts.append(f"{row['load']}: {', '.join(cells)}")
    return "ratio tok/s by the server started first: " + "; ".join(parts)


def _ratio_cell(ratio: dict[str, Any] | None) -> str:
    """``median [min-max]``, or just the value for a single round."""
    if ratio is None:
        return "-"
    if len(ratio["rounds"]) == 1:
        return report.fmt(ratio["median"], 2)
    return f"{ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}]"


def comparison_table(
    results: dict[str, list[dict[str, Any]]], ratio_rows: Sequence[dict[str, Any]] = ()
) -> str:
    """Per load point: each target's median run (throughput, TTFT p50/p99/mean), then the ours/vLLM ratios
    of :func:`ratios` (median over rounds, and their range)."""
    present = [t for t in TARGETS if t in results]
    header = f"{'load':<18}" + "".join(f"{f'{t} {name}':>18}" for name, _, _ in COMPARED for t in present)
    if ratio_rows:
        header += "".join(f"{f'ratio {name}':>22}" for name, _, _ in COMPARED)
    lines = [header]
    for i, run in enumerate(results[present[0]]):
        line = f"{run['load']:<18}"
        for _, metric, statistic in COMPARED:
            line += "".join(f"{report.fmt(_figure(results[t][i], metric, statistic)):>18}" for t in present)
        if ratio_rows:
            line += "".join(f"{_ratio_cell(ratio_rows[i][name]):>22}" for name, _, _ in COMPARED)
        lines.append(line)
    return "\n".join(lines)


def settings_line(
    engine: EngineSettings,
    load: LoadSettings,
    api: str,
    repeat: int,
    runtime_args: Sequence[str] = (),
    vllm_args: Sequence[str] = (),
) -> str:
    """What the run measured, printed with its figures so a pasted table carries its own settings."""
    e, lo, m = engine.describe(), load.describe(), machine.describe()
    flags = f"; ours with {' '.join(runtime_args)}" if runtime_args else ""
    flags += f"; vLLM with {' '.join(vllm_args)}" if vllm_args else ""
    return (
        f"{e['model_name']} ({Path(str(e['model_path'])).name}), {api}, dtype {e['dtype']}, "
        f"{'eager' if e['enforce_eager'] else 'compiled'}, max_model_len {e['max_model_len']}, "
        f"max_num_seqs {e['max_num_seqs']}, KV cache {e['kv_cache_gib']} GiB; "
        f"{','.join(lo['points'])} x {lo['num_requests']} requests (+{lo['warmup']} warm-up), "
        f"input {lo['input_len'] or lo['prompts_file']}, output {lo['output_len']}, "
        f"{'stream' if lo['stream'] else 'no stream'}, {repeat} round(s); "
        f"{m['cpu']} x{m['cpu_count']}, load average {m['load_average'][0]:.2f} at {m['date_utc']}{flags}"
    )


def cpu_table(results: dict[str, list[dict[str, Any]]]) -> str:
    """Per load point, each server's CPU milliseconds per request: HTTP process, and all processes."""
    present = [t for t in ("ours", "vllm") if t in results]
    kinds = (("HTTP", "http_process"), ("all", "all_processes"))
    lines = [
        f"{'CPU ms/request':<16}" + "".join(f"{f'{t} {name}':>14}" for name, _ in kinds for t in present)
    ]
    for i, run in enumerate(results[present[0]]):
        cells = (results[t][i]["server_cpu_ms_per_request"][key] for _, key in kinds for t in present)
        lines.append(f"{run['load']:<16}" + "".join(f"{report.fmt(v, 2):>14}" for v in cells))
    return "\n".join(lines)


def _engine_ceiling(engine: EngineSettings, load: LoadSettings, workdir: Path) -> list[dict[str, Any]]:
    """Run the ceiling in its own process: it imports vLLM and spawns the engine core."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    out = workdir / "engine.json"
    argv = [
        sys.executable, "-m", "inference_benchmark.engine_ceiling",
        "--model", str(engine.model_path), "--model-name", engine.model_name, "--dtype", engine.dtype,
        "--max-model-len", str(engine.max_model_len), "--max-num-seqs", str(engine.max_num_seqs),
        "--enforce-eager" if engine.enforce_eager else "--no-enforce-eager",
        "--output-json", str(out), *replace(load, progress=False).to_argv(),
    ]  # fmt: skip
    with (workdir / "engine.log").open("wb") as log:
        done = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise ServerError(f"the engine ceiling run failed ({done.returncode}); see {workdir / 'engine.log'}")
    return json.loads(out.read_text())["runs"]


def start_orders(repeat: int) -> list[tuple[tuple[str, str], int]]:
    """The sittings of a run: the order the two servers start in, and how many rounds follow.

    Ours first for the first half of the rounds (the larger one), vLLM's first for the rest. Rounds
    within one start agree far better than whole runs do (SmolLM2 at c=8: 0.89-0.95 in one run,
    1.01-1.18 in another the same day, docs/benchmark.md): what a start draws lasts the server's life.
    Two starts of each server, in both orders, keep one draw, and the start order, from deciding the
    ratio.
    """
    first = (repeat + 1) // 2
    orders = [(("ours", "vllm"), first), (("vllm", "ours"), repeat - first)]
    return [(order, rounds) for order, rounds in orders if rounds]


def _start_servers(
    stack: contextlib.ExitStack,
    engine: EngineSettings,
    args: argparse.Namespace,
    workdir: Path,
    order: Sequence[str],
    sitting: int,
) -> tuple[dict[str, servers.RunningServer], dict[str, str]]:
    """Start the wanted servers one after the other in ``order``; returns those that run (in that
    order) and, per failed one, why. Sitting n >= 2 logs to ``ours-n.log`` and ``vllm-n.log``."""
    started: dict[str, servers.RunningServer] = {}
    failures: dict[str, str] = {}
    for target in order:
        log = workdir / (f"{target}.log" if sitting == 1 else f"{target}-{sitting}.log")
        print(f"starting {target} (log: {log})", file=sys.stderr, flush=True)
        try:
            port = servers.free_port()
            command = (
                servers.runtime_command(engine, port, workdir, CLASS_FOR_API[args.api], args.runtime_arg)
                if target == "ours"
                else servers.vllm_command(engine, port, args.vllm_arg)
            )
            started[target] = stack.enter_context(servers.running(command, log, args.server_timeout))
        except (ServerError, OSError) as exc:
            failures[target] = str(exc)
            print(f"{target}: {exc}", file=sys.stderr, flush=True)
    return started, failures


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median output throughput (the lower middle for an even count).

    One whole run is kept, not a median per figure, so the figures reported together were measured
    together.
    """
    ranked = sorted(runs, key=lambda run: run["output_throughput"] or 0.0)
    return ranked[(len(ranked) - 1) // 2]


def _measured_run(
    server: servers.RunningServer, engine: EngineSettings, load: LoadSettings, api: str
) -> dict[str, Any]:
    """One load point against one server, with the server's CPU time per request sent (warm-up included)."""
    before = server.cpu_seconds()
    _, runs = asyncio.run(http_sweep(HttpTarget(server.base_url, api, engine.model_name), load))
    after = server.cpu_seconds()
    [run] = [r.as_dict() for r in runs]
    sent = load.num_requests + load.warmup
    run["server_cpu_ms_per_request"] = {
        "http_process": 1000 * (after[0] - before[0]) / sent,
        "all_processes": 1000 * (after[1] - before[1]) / sent,
    }
    return run


def _interleaved_sweeps(
    servers_up: dict[str, servers.RunningServer],
    engine: EngineSettings,
    load: LoadSettings,
    api: str,
    repetitions: range,
    trials: dict[str, list[list[dict[str, Any]]]],
) -> None:
    """Every load point once per repetition against every server in turn, alternating who goes first;
    each run is appended to ``trials[target][point]`` and records which server was started first.

    The machine is shared, so background load drifts; taking each point on both servers back to back
    (instead of one whole sweep after the other) exposes them to the same conditions. An idle vLLM
    server costs about 2% of a core, so keeping both up meanwhile does not disturb the other. Each
    repetition gets fresh prompts (the seed moves on), the same for both servers, so a prefix cache
    warmed by one repetition does not flatter the next.
    """
    if not servers_up:
        return
    started_first = next(iter(servers_up))
    for i, point in enumerate(load.points):
        for repetition in repetitions:
            order = list(servers_up) if repetition % 2 == 0 else list(reversed(servers_up))
            for target in order:
                once = replace(load, points=(point,), seed=load.seed + repetition)
                run = _measured_run(servers_up[target], engine, once, api)
                run["started_first"] = started_first
                trials[target][i].append(run)


def _profiled_rounds(
    servers_up: dict[str, servers.RunningServer],
    engine: EngineSettings,
    load: LoadSettings,
    api: str,
    workdir: Path,
    seconds: float,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every point on every server under py-spy for at least ``seconds``; per target and load, the summary.

    The point's load is sent again and again (each time with prompts no counted round used) until
    ``seconds`` have passed, so that a short point still gives a sample of every process; py-spy first
    gets a second to attach to the whole tree. None of this is counted in the figures: sampling at 100 Hz
    costs the sampled processes a little, and the machine a py-spy process.
    """
    profiles: dict[str, dict[str, dict[str, Any]]] = {target: {} for target in servers_up}
    for point in load.points:
        for target, server in servers_up.items():
            raw = workdir / f"profile-{target}-{point.label}.txt"
            print(f"profiling {target} at {point.label} ({raw})", file=sys.stderr, flush=True)
            spec = HttpTarget(server.base_url, api, engine.model_name)
            with profile.sampling(server.pid, raw):
                time.sleep(1.0)
                started, rounds = time.monotonic(), 0
                while rounds == 0 or time.monotonic() - started < seconds:
                    rounds += 1
                    asyncio.run(http_sweep(spec, replace(load, points=(point,), seed=load.seed - rounds)))
            profiles[target][point.label] = profile.summarize(raw, server.pid)
    return profiles


def _raise_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into an exception, so the servers' context managers stop them on the way out."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.targets = [t for t in TARGETS if t in {part.strip() for part in args.targets.split(",")}]
    if not args.targets:
        parser.error(f"--targets names none of {', '.join(TARGETS)}")
    if not (args.model / "config.json").is_file():
        parser.error(f"{args.model} is not a Hugging Face model folder (no config.json)")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.profile:
        try:
            profile.py_spy()
        except profile.ProfilerError as exc:
            parser.error(str(exc))
    try:
        load = load_settings(args)
    except ValueError as exc:
        parser.error(str(exc))
    engine = EngineSettings(
        args.model.resolve(),
        args.model_name,
        args.dtype,
        args.max_model_len,
        args.max_num_seqs,
        args.enforce_eager,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vif-side-by-side-"))
    workdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    servers_wanted = [t for t in ("ours", "vllm") if t in args.targets]
    trials: dict[str, list[list[dict[str, Any]]]] = {t: [[] for _ in load.points] for t in servers_wanted}
    failures: dict[str, str] = {}
    profiles: dict[str, dict[str, dict[str, Any]]] = {}
    counted = 0
    sittings = start_orders(args.repeat)
    for sitting, (order, rounds) in enumerate(sittings, start=1):
        with contextlib.ExitStack() as stack:
            wanted = [t for t in order if t in trials]  # a server that failed once is not started again
            servers_up, failed = _start_servers(stack, engine, args, workdir, wanted, sitting)
            failures.update(failed)
            for target in failed:
                del trials[target]
            _interleaved_sweeps(servers_up, engine, load, args.api, range(counted, counted + rounds), trials)
            counted += rounds
            if args.profile and sitting == len(sittings):
                profiles = _profiled_rounds(servers_up, engine, load, args.api, workdir, args.profile_seconds)
    results = {target: [median_run(runs) for runs in per_point] for target, per_point in trials.items()}
    if "engine" in args.targets:
        print(f"running the engine ceiling (log: {workdir / 'engine.log'})", file=sys.stderr, flush=True)
        try:
            results["engine"] = _engine_ceiling(engine, load, workdir)
        except (ServerError, OSError) as exc:
            failures["engine"] = str(exc)
            print(f"engine: {exc}", file=sys.stderr, flush=True)
    ratio_rows = ratios(trials["ours"], trials["vllm"]) if {"ours", "vllm"} <= trials.keys() else []
    print(
        f"settings: {settings_line(engine, load, args.api, args.repeat, args.runtime_arg, args.vllm_arg)}\n"
    )
    for target, runs in results.items():
        print(f"{target}:\n{report.sweep_table(runs)}\n")
    if results:
        print(comparison_table(results, ratio_rows))
    if len(sittings) > 1 and ratio_rows:
        print(start_order_line(ratio_rows))
    if results and (note := few_waves_line(load)):
        print(note)
    if trials:
        print(f"\n{cpu_table(results)}")
    if profiles:
        print(f"\n{profile.profile_table(profiles)}")
    if args.output_json:
        document = {
            "machine": machine.describe(),
            "engine": engine.describe(),
            "load": load.describe(),
            "api": args.api,
            "runtime_args": args.runtime_arg,
            "vllm_args": args.vllm_arg,
            "repeat": args.repeat,
            "results": results,
            "trials": trials,
            "failures": failures,
            "ratios": ratio_rows or None,
            "profiles": profiles or None,
        }
        args.output_json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if failures else 0
