"""ServingRequest: the base request model, declaring every field the shared request path reads.

Every protocol's request model (built-in or plugin) derives from it, so ``BaseServingEngine``'s hooks
never meet a request without the fields they read: a plugin model declares only its own fields and
inherits these, each with a default that means "not asked for".
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ServingRequest(BaseModel):
    """Sampling knobs (OpenAI names plus vLLM's extras), ``max_tokens`` and the streaming options.

    ``BaseServingEngine.sampling_params`` reads the sampling fields, ``requested_max_tokens`` reads
    ``max_tokens``, ``is_stream`` reads ``stream`` and ``include_usage`` reads ``stream_options``.
    Two more fields are read when a protocol declares them: ``model`` (checked against the served
    model's name) and ``n`` (choices per prompt, capped by ``--max-n``). They are not declared here
    because a request model that forbids unknown fields (``/generate``) would then accept them.
    """

    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1, description="vLLM extra; 0 or -1 disables")
    min_p: float | None = Field(None, ge=0, le=1, description="vLLM extra")
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    repetition_penalty: float | None = Field(None, gt=0, le=2, description="vLLM extra")
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(None, ge=1)
    ignore_eos: bool = Field(False, description="vLLM extra: keep generating past end-of-sequence")
    min_tokens: int = Field(0, ge=0, description="vLLM extra")
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)
