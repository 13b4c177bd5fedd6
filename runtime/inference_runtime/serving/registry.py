"""Serving classes by registered name. Only registered names can ever be loaded from config.

Built-ins are listed here; third-party classes register under the entry-point group
``inference_runtime.serving`` of their own distribution. A name from config is looked up in this
table and nothing else: no dotted path from a config file is ever imported.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from inference_runtime.config import ConfigError
from inference_runtime.serving.base import BaseServingEngine
from inference_runtime.serving.request import ServingRequest

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "inference_runtime.serving"
BUILTINS = {
    "OpenAIServingChat": "inference_runtime.protocols.chat.serving:OpenAIServingChat",
    "OpenAIServingCompletion": "inference_runtime.protocols.completion.serving:OpenAIServingCompletion",
    "ServingGenerate": "inference_runtime.protocols.generate.serving:ServingGenerate",
}


def registered() -> dict[str, str]:
    """Registered names -> ``module:attribute`` targets. Built-in names cannot be taken over."""
    table = dict(BUILTINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTINS:
            if ep.value != BUILTINS[ep.name]:
                logger.warning("entry point %s=%s ignored: that name is built in", ep.name, ep.value)
            continue
        table[ep.name] = ep.value
    return table


def import_target(target: str, what: str) -> object:
    """Import the ``module:attribute`` an entry point registered; a ConfigError naming ``what`` if not."""
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{what} is registered but cannot be loaded: {exc}") from exc


def load_serving_class(name: str) -> type[BaseServingEngine]:
    """Import the class registered as ``name``; a clear ConfigError otherwise."""
    table = registered()
    if name not in table:
        raise ConfigError(
            f"class_name '{name[:100]}' is not a registered serving class; "
            f"registered: {', '.join(sorted(table))}"
        )
    obj = import_target(table[name], f"serving class '{name}'")
    if not (isinstance(obj, type) and issubclass(obj, BaseServingEngine)):
        raise ConfigError(f"serving class '{name}' does not derive from BaseServingEngine")
    model = getattr(obj, "request_model", None)
    if not (isinstance(model, type) and issubclass(model, ServingRequest)):
        # Checked here, not per request: the shared path reads ServingRequest's fields.
        raise ConfigError(f"serving class '{name}': request_model does not derive from ServingRequest")
    return obj
