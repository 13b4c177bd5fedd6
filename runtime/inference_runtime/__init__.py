"""vLLM Inference Framework runtime: one model, several protocols, one vLLM engine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vllm-inference-framework")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
