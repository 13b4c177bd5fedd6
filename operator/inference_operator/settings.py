"""Operator settings: command-line flags over environment variables over defaults.

Everything the builders need from outside the resource (the default runtime image, the cluster domain)
lives here, so manifests stay pure functions of (spec, settings) and air-gapped installs can point the
operator at their own registry without touching any resource.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from inference_operator.api.v1alpha1 import normalised_folder

DEFAULT_RUNTIME_IMAGE = "vllm-inference-runtime:0.1.0"
FIELD_MANAGER = "inference-operator"
LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class OperatorSettings:
    """How this operator process runs; immutable once started."""

    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    log_format: LogFormat = "text"
    cluster_domain: str = "cluster.local"
    resync_seconds: float = 60.0  # drift check of every resource, even without events
    peering_name: str = "inference-operator"
    priority: int | None = None  # peering priority; None: random, so one replica leads
    standalone: bool = False  # skip peering (single replica, tests)
    liveness_endpoint: str | None = "http://0.0.0.0:8080/healthz"
    metrics_port: int | None = None  # Prometheus /metrics (inference_operator.metrics); None: not served
    field_manager: str = field(default=FIELD_MANAGER)
    # Folders under which an InferenceModel may mount a node folder (hostPath); empty: none may.
    allowed_host_paths: tuple[str, ...] = ()
    # Registry/repository prefixes spec.image must start with; empty: any image.
    allowed_image_prefixes: tuple[str, ...] = ()

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def parse(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Build settings from ``argv`` and ``environ`` (defaults: the process's own)."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="inference-operator", description="Reconciles InferenceModel resources."
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="namespace to watch (repeatable; env WATCH_NAMESPACES, comma-separated)",
    )
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument(
        "--runtime-image",
        default=env.get("RUNTIME_IMAGE") or DEFAULT_RUNTIME_IMAGE,
        help="image of resources that set none (env RUNTIME_IMAGE; default %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=env.get("LOG_FORMAT") or "text",
        help="log line format (env LOG_FORMAT)",
    )
    parser.add_argument(
        "--cluster-domain",
        default=env.get("CLUSTER_DOMAIN") or "cluster.local",
        help="DNS domain of Services in status.endpoint (env CLUSTER_DOMAIN)",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=float(env.get("RESYNC_SECONDS") or 60),
        help="interval of the drift check of every resource (env RESYNC_SECONDS)",
    )
    parser.add_argument("--priority", type=int, default=None, help="peering priority (default: random)")
    parser.add_argument("--standalone", action="store_true", help="run without peering (one replica only)")
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL; empty disables it (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env.get("METRICS_PORT") or 8081),
        help="port of the Prometheus /metrics endpoint (download bytes and durations); 0 disables it "
        "(env METRICS_PORT; default %(default)s)",
    )
    parser.add_argument(
        "--allow-host-path",
        action="append",
        default=[],
        metavar="DIR",
        help="node folder under which InferenceModels may mount hostPath model sources (repeatable; "
        "env ALLOWED_HOST_PATHS, comma-separated; default: none, hostPath is refused)",
    )
    parser.add_argument(
        "--allow-image-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="registry or repository prefix spec.image must have (repeatable; env ALLOWED_IMAGE_PREFIXES, "
        "comma-separated; default: any image)",
    )
    args = parser.parse_args(argv)
    host_paths = args.allow_host_path or _split(env.get("ALLOWED_HOST_PATHS", ""))
    for path in host_paths:
        if not normalised_folder(path):
            parser.error(f"allowed host path {path!r} must be a normalised absolute folder other than '/'")
    if not 0 <= args.metrics_port <= 65535:
        parser.error(f"metrics port {args.metrics_port} must be 0 (off) to 65535")
    if args.log_format not in ("text", "json"):
        parser.error(f"LOG_FORMAT must be text or json, not {args.log_format!r}")
    namespaces = args.namespaces
    if not namespaces and not args.all_namespaces:
        namespaces = _split(env.get("WATCH_NAMESPACES", ""))
    return OperatorSettings(
        runtime_image=args.runtime_image,
        namespaces=tuple(namespaces or ()),
        log_format=args.log_format,
        cluster_domain=args.cluster_domain,
        resync_seconds=args.resync_seconds,
        priority=args.priority,
        standalone=args.standalone,
        liveness_endpoint=args.liveness or None,
        metrics_port=args.metrics_port or None,
        allowed_host_paths=tuple(host_paths),
        allowed_image_prefixes=tuple(
            args.allow_image_prefix or _split(env.get("ALLOWED_IMAGE_PREFIXES", ""))
        ),
    )


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
