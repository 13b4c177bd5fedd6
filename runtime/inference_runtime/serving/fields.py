"""Wire fields shared by every protocol: sampling knobs and streaming options."""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)


class OpenAIBaseModel(BaseModel):
    """OpenAI-style requests accept unknown fields (clients send many), but we log which were ignored."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    @model_validator(mode="after")
    def _log_ignored(self) -> OpenAIBaseModel:
        if self.model_extra:
            logger.debug("ignored request fields: %s", ", ".join(sorted(self.model_extra)[:20]))
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class SamplingFields(BaseModel):
    """Sampling parameters common to all protocols (OpenAI names plus vLLM's extras)."""

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
