"""vLLM general plugin: ask Linux for permission to use AMX before the first forward pass.

On x86 CPUs with AMX (Intel Sapphire Rapids and later), Linux lets a process execute AMX tile
instructions only after it asked for the AMX state component (``arch_prctl(ARCH_REQ_XCOMP_PERM)``);
without that, the first AMX instruction kills the process with SIGILL. oneDNN asks when it first runs a
large enough matmul, but vLLM 0.32's CPU attention kernel (``cpu_attention_with_kv_cache``, which picks
its AMX path when ``torch.cpu._is_amx_tile_supported()``) does not. When the first forward pass after
start is a short prefill, attention runs AMX before any oneDNN matmul has asked, and the engine worker
dies with exit code -4 (reproduced with a 2-token first prompt to a bf16 model in eager mode, on our
runtime and on vLLM's own server alike). docs/upstream-amx-sigill.md is the report for vLLM.

vLLM runs every entry point of the group ``vllm.general_plugins`` in each process it starts (engine core
and workers), before a model is loaded, which is where the permission must be asked for: it is per
process. The runtime registers :func:`request_amx_permission` there (pyproject.toml).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def request_amx_permission() -> None:
    """Ask the kernel for AMX tile state in this process; a no-op on CPUs without AMX."""
    import torch  # already imported in every vLLM process; kept local so the runtime imports stay light

    if not torch.cpu._is_amx_tile_supported():
        return
    if torch.cpu._init_amx():
        logger.debug("AMX tile state granted to this process")
    else:
        logger.warning("this CPU has AMX but the kernel refused AMX state; vLLM's AMX kernels may crash")
