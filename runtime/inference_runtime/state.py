"""The server's shared state, built by the app factory and filled in when the engine is up."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from inference_runtime.auth import KeyRing
from inference_runtime.config import ResolvedModel
from inference_runtime.engine_api import EngineClient
from inference_runtime.metrics import Metrics
from inference_runtime.serving.admission import Admission
from inference_runtime.serving.base import BaseServingEngine
from inference_runtime.settings import Settings


@dataclass
class RuntimeState:
    settings: Settings
    model: ResolvedModel
    serving_classes: list[type[BaseServingEngine]]
    keys: KeyRing
    metrics: Metrics
    admission: Admission
    created: int = field(default_factory=lambda: int(time.time()))
    engine: EngineClient | None = None
    servings: dict[str, BaseServingEngine] = field(default_factory=dict)  # route path -> serving
    load_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.engine is not None and not self.admission.draining and not self.engine.dead
