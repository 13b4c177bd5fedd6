"""The base request model's old home, kept for plugins: it is :mod:`inference_runtime.serving.request`."""

from __future__ import annotations

from inference_runtime.serving.request import ServingRequest

# The name before ServingRequest: plugins written against the example import it from here.
SamplingFields = ServingRequest
