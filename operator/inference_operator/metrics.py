"""The operator's Prometheus metrics: what the shared model downloads moved and how long they took.

Read from the runtime's last ``--download-only`` line once a download Job ends (see
``Reconciler._announce``). The ``source`` label is the model URI (``hf://owner/name@revision``,
``s3://bucket/prefix/``), never an endpoint or a credential. Served at ``/metrics`` on
``--metrics-port``.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

DOWNLOADS = Counter(
    "inference_operator_model_downloads",
    "Model downloads by shared download Jobs that ended, by result (downloaded, failed)",
    ["namespace", "source", "result"],
)
DOWNLOAD_BYTES = Counter(
    "inference_operator_model_download_bytes",
    "Bytes of the models that shared download Jobs downloaded",
    ["namespace", "source"],
)
DOWNLOAD_SECONDS = Histogram(
    "inference_operator_model_download_duration_seconds",
    "How long each completed model download took, from the runtime's own timing",
    ["namespace", "source"],
    buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400),
)


def serve(port: int) -> None:
    """Serve the default registry on ``port`` (all interfaces), in a daemon thread."""
    start_http_server(port)
