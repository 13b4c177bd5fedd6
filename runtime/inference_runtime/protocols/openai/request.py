"""What OpenAI-style request models share beyond ServingRequest."""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, model_validator

logger = logging.getLogger(__name__)


class OpenAIBaseModel(BaseModel):
    """OpenAI-style requests accept unknown fields (clients send many), but we log which were ignored."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    @model_validator(mode="after")
    def _log_ignored(self) -> OpenAIBaseModel:
        if self.model_extra:
            logger.debug("ignored request fields: %s", ", ".join(sorted(self.model_extra)[:20]))
        return self
